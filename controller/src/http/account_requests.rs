//! Handlers of `/api/v1/account-requests` and of project administration
//! (`PATCH /api/v1/projects/{name}`, members).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Json;
use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use ferrum_api::accounts as api;
use ferrum_api::{ErrorBody, Project};

use super::error::ApiResult;
use super::extract::{Body, Caller, Params, PathParam};
use super::views;
use crate::app::App;
use crate::app::account_requests::AccountAsk;
use crate::db::{AccountRequestRow, ProjectChange};
use crate::model::time::from_seconds;

fn request_view(r: AccountRequestRow, clash: Option<String>) -> api::AccountRequest {
    let state = r.state.into();
    api::AccountRequest {
        id: r.id,
        name: r.name,
        email: r.email,
        affiliation: r.affiliation,
        project: r.project,
        project_class: r.project_class,
        motivation: r.motivation,
        state,
        reason: r.reason,
        decided_by: r.decided_by,
        decided_at: r.decided_at.map(from_seconds),
        source: r.source,
        created_at: from_seconds(r.created_at),
        clash,
        status: r.status.as_deref().and_then(api::RequesterStatus::parse),
        email_verified_at: r.email_verified_at.map(from_seconds),
    }
}

/// Ask for an account (no token needed; at most 5 per hour from one
/// address). An admin decides. The answer is the same whether the login
/// is taken or not (the admin sees the clash).
#[utoipa::path(post, path = "/api/v1/account-requests", operation_id = "account_requests_create", tag = "accounts", request_body = api::AccountRequestCreate,
    responses((status = 202, body = api::AccountRequestAccepted), (status = 400, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn create(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: axum::http::HeaderMap,
    Body(req): Body<api::AccountRequestCreate>,
) -> ApiResult<(StatusCode, Json<api::AccountRequestAccepted>)> {
    let ask = AccountAsk {
        name: req.name,
        email: req.email,
        affiliation: req.affiliation,
        project: req.project,
        class: req.class,
        motivation: req.motivation,
        status: req.status,
    };
    // Counted per client: behind a trusted proxy, the address it forwards.
    let client = crate::web::session::client_address(peer.ip(), &headers, &app.config.web.trusted_proxies);
    let row = app.request_account(client, ask).await?;
    let message = format!("request {} for '{}' is waiting for an admin's decision", row.id, row.name);
    Ok((StatusCode::ACCEPTED, Json(api::AccountRequestAccepted { id: row.id, state: api::AccountRequestState::Pending, message })))
}

/// Account requests, oldest first (admin; a project's manager: those to join it).
#[utoipa::path(get, path = "/api/v1/account-requests", operation_id = "account_requests_list", tag = "accounts", params(api::AccountRequestListQuery),
    responses((status = 200, body = Vec<api::AccountRequest>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    Params(q): Params<api::AccountRequestListQuery>,
) -> ApiResult<Json<Vec<api::AccountRequest>>> {
    let rows = app.account_requests(&actor, q.state.map(Into::into)).await?;
    Ok(Json(rows.into_iter().map(|(r, clash)| request_view(r, clash)).collect()))
}

/// One account request (admin, or the manager of the project it asks to join).
#[utoipa::path(get, path = "/api/v1/account-requests/{id}", operation_id = "account_requests_show", tag = "accounts", params(("id" = i64, Path)),
    responses((status = 200, body = api::AccountRequest), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn show(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(id): PathParam<i64>,
) -> ApiResult<Json<api::AccountRequest>> {
    let (row, clash) = app.account_request(&actor, id).await?;
    Ok(Json(request_view(row, clash)))
}

/// Approve: creates the user (and the project if new, the requester as its
/// manager); to an admin the answer holds their first token, shown once
/// (admin; the manager of the project it asks to join may approve, without
/// class or quota, and gets no token).
#[utoipa::path(post, path = "/api/v1/account-requests/{id}/approve", operation_id = "account_requests_approve", tag = "accounts", params(("id" = i64, Path)),
    request_body = api::AccountRequestApprove,
    responses((status = 201, body = api::AccountRequestApproved), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn approve(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(id): PathParam<i64>,
    Body(req): Body<api::AccountRequestApprove>,
) -> ApiResult<(StatusCode, Json<api::AccountRequestApproved>)> {
    let approved =
        app.approve_account_request(&actor, id, req.reason.as_deref(), req.project_class.as_deref(), req.quota_node_hours).await?;
    Ok((
        StatusCode::CREATED,
        Json(api::AccountRequestApproved {
            request: request_view(approved.request, None),
            user: views::user(approved.user),
            token: approved.token,
            activation_url: approved.activation_url,
        }),
    ))
}

/// Reject, with a reason (admin, or the manager of the project it asks to join).
#[utoipa::path(post, path = "/api/v1/account-requests/{id}/reject", operation_id = "account_requests_reject", tag = "accounts", params(("id" = i64, Path)),
    request_body = api::AccountRequestReject,
    responses((status = 200, body = api::AccountRequest), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn reject(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(id): PathParam<i64>,
    Body(req): Body<api::AccountRequestReject>,
) -> ApiResult<Json<api::AccountRequest>> {
    Ok(Json(request_view(app.reject_account_request(&actor, id, &req.reason).await?, None)))
}

/// Change a project's class, quota or manager (admin; absent fields stay,
/// `null` clears).
#[utoipa::path(patch, path = "/api/v1/projects/{name}", operation_id = "projects_update", tag = "accounts", params(("name" = String, Path)), request_body = api::ProjectPatch,
    responses((status = 200, body = Project), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn update_project(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
    Body(req): Body<api::ProjectPatch>,
) -> ApiResult<Json<Project>> {
    let change = ProjectChange { class: req.class, quota_node_hours: req.quota_node_hours, manager: req.manager };
    Ok(Json(views::project(app.update_project(&actor, &name, change).await?)))
}

/// Add a member (admins and the project's manager).
#[utoipa::path(post, path = "/api/v1/projects/{name}/members", operation_id = "projects_members_add", tag = "accounts", params(("name" = String, Path)), request_body = api::MemberAdd,
    responses((status = 200, body = Project), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn add_member(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
    Body(req): Body<api::MemberAdd>,
) -> ApiResult<Json<Project>> {
    Ok(Json(views::project(app.set_project_member(&actor, &name, &req.user, true).await?)))
}

/// Remove a member (admins and the project's manager).
#[utoipa::path(delete, path = "/api/v1/projects/{name}/members/{user}", operation_id = "projects_members_remove", tag = "accounts", params(("name" = String, Path), ("user" = String, Path)),
    responses((status = 200, body = Project), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn remove_member(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam((name, user)): PathParam<(String, String)>,
) -> ApiResult<Json<Project>> {
    Ok(Json(views::project(app.set_project_member(&actor, &name, &user, false).await?)))
}
