//! Handlers of `/api/v1/projects` and `/api/v1/users`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ferrum_api as api;
use ferrum_api::ErrorBody;

use super::error::ApiResult;
use super::extract::{Body, Caller, PathParam};
use super::views;
use crate::app::App;

/// Create a project (admin).
#[utoipa::path(post, path = "/api/v1/projects", operation_id = "projects_create", tag = "accounts", request_body = api::ProjectCreate,
    responses((status = 201, body = api::Project), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_project(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    Body(req): Body<api::ProjectCreate>,
) -> ApiResult<(StatusCode, Json<api::Project>)> {
    let p = app.create_project(&actor, &req.name, req.class.as_deref(), req.quota_node_hours).await?;
    Ok((StatusCode::CREATED, Json(views::project(p))))
}

/// Projects (the caller's own, all for admins).
#[utoipa::path(get, path = "/api/v1/projects", operation_id = "projects_list", tag = "accounts", responses((status = 200, body = Vec<api::Project>)), security(("bearer" = [])))]
pub async fn list_projects(State(app): State<Arc<App>>, Caller(actor): Caller) -> ApiResult<Json<Vec<api::Project>>> {
    Ok(Json(app.list_projects(&actor).await?.into_iter().map(views::project).collect()))
}

/// Create a user with a first API token, shown once (admin).
#[utoipa::path(post, path = "/api/v1/users", operation_id = "users_create", tag = "accounts", request_body = api::UserCreate,
    responses((status = 201, body = api::UserCreated), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_user(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    Body(req): Body<api::UserCreate>,
) -> ApiResult<(StatusCode, Json<api::UserCreated>)> {
    let (user, token) = app.create_user(&actor, &req.name, req.role == api::Role::Admin, req.email.as_deref(), &req.projects).await?;
    Ok((StatusCode::CREATED, Json(api::UserCreated { user: views::user(user), token })))
}

/// Every user (admin).
#[utoipa::path(get, path = "/api/v1/users", operation_id = "users_list", tag = "accounts", responses((status = 200, body = Vec<api::User>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list_users(State(app): State<Arc<App>>, Caller(actor): Caller) -> ApiResult<Json<Vec<api::User>>> {
    Ok(Json(app.list_users(&actor).await?.into_iter().map(views::user).collect()))
}

/// The caller.
#[utoipa::path(get, path = "/api/v1/users/me", operation_id = "users_me", tag = "accounts", responses((status = 200, body = api::User), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn me(State(app): State<Arc<App>>, Caller(actor): Caller) -> ApiResult<Json<api::User>> {
    Ok(Json(views::user(app.me(&actor).await?)))
}

/// A new API token for a user (admins for anyone, users for themselves).
#[utoipa::path(post, path = "/api/v1/users/{name}/tokens", operation_id = "users_tokens_create", tag = "accounts", params(("name" = String, Path)),
    responses((status = 201, body = api::TokenCreated), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn create_token(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
) -> ApiResult<(StatusCode, Json<api::TokenCreated>)> {
    let token = app.create_token(&actor, &name).await?;
    Ok((StatusCode::CREATED, Json(api::TokenCreated { user: name, token })))
}
