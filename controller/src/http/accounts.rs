//! Handlers of `/api/v1/projects` and `/api/v1/users`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ferrum_api as api;
use ferrum_api::ErrorBody;

use super::error::ApiResult;
use super::extract::{Body, Caller, OptionalBody, PathParam};
use super::views;
use crate::app::App;
use crate::app::accounts::TokenAsk;
use crate::db::TokenRow;
use crate::model::Seconds;
use crate::model::time::{from_seconds, to_seconds};

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

pub(crate) fn token_view(t: TokenRow, now: Seconds) -> api::Token {
    api::Token {
        id: t.id,
        name: t.name,
        created_at: from_seconds(t.created_at),
        expires_at: t.expires_at.map(from_seconds),
        expired: t.expires_at.is_some_and(|at| at <= now),
        read_only: t.read_only,
    }
}

/// A new API token for a user (admins for anyone, users for themselves),
/// optionally named, expiring or read-only; the secret is shown once. A
/// user holds at most `[accounts] max_tokens_per_user` live tokens (409).
#[utoipa::path(post, path = "/api/v1/users/{name}/tokens", operation_id = "users_tokens_create", tag = "accounts", params(("name" = String, Path)),
    request_body(content = Option<api::TokenCreate>, description = "Optional: no body gives an unnamed full token that never expires"),
    responses((status = 201, body = api::TokenCreated), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_token(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
    OptionalBody(req): OptionalBody<api::TokenCreate>,
) -> ApiResult<(StatusCode, Json<api::TokenCreated>)> {
    let ask = TokenAsk { name: req.name, expires_in: req.expires_in, expires_at: req.expires_at.map(to_seconds), read_only: req.read_only };
    let (row, token) = app.create_token(&actor, &name, ask).await?;
    Ok((
        StatusCode::CREATED,
        Json(api::TokenCreated {
            user: name,
            token,
            id: row.id,
            name: row.name,
            expires_at: row.expires_at.map(from_seconds),
            read_only: row.read_only,
        }),
    ))
}

/// A user's tokens not revoked, oldest first, never their secrets (the
/// user themselves, or an admin).
#[utoipa::path(get, path = "/api/v1/users/{name}/tokens", operation_id = "users_tokens_list", tag = "accounts", params(("name" = String, Path)),
    responses((status = 200, body = Vec<api::Token>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_tokens(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
) -> ApiResult<Json<Vec<api::Token>>> {
    let now = app.now();
    Ok(Json(app.list_tokens(&actor, &name).await?.into_iter().map(|t| token_view(t, now)).collect()))
}

/// Revoke a token: it stops working at once (the user themselves, or an
/// admin).
#[utoipa::path(delete, path = "/api/v1/users/{name}/tokens/{id}", operation_id = "users_tokens_revoke", tag = "accounts", params(("name" = String, Path), ("id" = i64, Path)),
    responses((status = 200, body = api::Token, description = "The token revoked"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn revoke_token(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam((name, id)): PathParam<(String, i64)>,
) -> ApiResult<Json<api::Token>> {
    let token = app.revoke_token(&actor, &name, id).await?;
    Ok(Json(token_view(token, app.now())))
}

/// Disable a user (admin): their tokens stop working at once and their
/// leases end (running ones released, later ones cancelled) with the
/// reason. Not oneself, not the last admin.
#[utoipa::path(post, path = "/api/v1/users/{name}/disable", operation_id = "users_disable", tag = "accounts", params(("name" = String, Path)),
    request_body = api::UserDisable,
    responses((status = 200, body = api::User), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn disable_user(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
    Body(req): Body<api::UserDisable>,
) -> ApiResult<Json<api::User>> {
    Ok(Json(views::user(app.disable_user(&actor, &name, &req.reason).await?)))
}

/// Enable a disabled user again (admin): their tokens not revoked or
/// expired work again; ended leases stay ended.
#[utoipa::path(post, path = "/api/v1/users/{name}/enable", operation_id = "users_enable", tag = "accounts", params(("name" = String, Path)),
    responses((status = 200, body = api::User), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn enable_user(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
) -> ApiResult<Json<api::User>> {
    Ok(Json(views::user(app.enable_user(&actor, &name).await?)))
}

/// A one-time link where the user sets the password of the web portal
/// (admin): it works once, until `[web] activation_lifetime`; a newer link
/// replaces it. The first admin gets theirs this way too
/// (`ferrum admin user activation-link admin`).
#[utoipa::path(post, path = "/api/v1/users/{name}/activation-link", operation_id = "users_activation_link", tag = "accounts",
    params(("name" = String, Path)),
    responses((status = 201, body = api::ActivationLink), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "the user is disabled")),
    security(("bearer" = [])))]
pub async fn activation_link(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
) -> ApiResult<(StatusCode, Json<api::ActivationLink>)> {
    let link = app.activation_link(&actor, &name).await?;
    app.audit(&actor, "user.activation_link", &name, serde_json::json!({})).await;
    Ok((StatusCode::CREATED, Json(api::ActivationLink { user: name, url: link.url, expires_at: from_seconds(link.expires_at) })))
}

pub(crate) fn ssh_key_view(k: crate::db::SshKeyRow) -> api::SshKey {
    api::SshKey { id: k.id, name: k.name, public_key: k.public_key, fingerprint: k.fingerprint, created_at: from_seconds(k.created_at) }
}

/// A user's SSH public keys, oldest first (the user themselves, or an
/// admin).
#[utoipa::path(get, path = "/api/v1/users/{name}/ssh-keys", operation_id = "users_ssh_keys_list", tag = "accounts",
    params(("name" = String, Path)),
    responses((status = 200, body = Vec<api::SshKey>), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_ssh_keys(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
) -> ApiResult<Json<Vec<api::SshKey>>> {
    Ok(Json(app.ssh_keys(&actor, &name).await?.into_iter().map(ssh_key_view).collect()))
}

/// Register an SSH public key (the user themselves, or an admin); the
/// same key twice is a conflict.
#[utoipa::path(post, path = "/api/v1/users/{name}/ssh-keys", operation_id = "users_ssh_keys_add", tag = "accounts",
    params(("name" = String, Path)), request_body = api::SshKeyCreate,
    responses((status = 201, body = api::SshKey), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn add_ssh_key(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
    Body(req): Body<api::SshKeyCreate>,
) -> ApiResult<(StatusCode, Json<api::SshKey>)> {
    let key = app.add_ssh_key(&actor, &name, req.name.as_deref(), &req.public_key).await?;
    Ok((StatusCode::CREATED, Json(ssh_key_view(key))))
}

/// Remove an SSH key (the user themselves, or an admin).
#[utoipa::path(delete, path = "/api/v1/users/{name}/ssh-keys/{id}", operation_id = "users_ssh_keys_remove", tag = "accounts",
    params(("name" = String, Path), ("id" = i64, Path)),
    responses((status = 200, body = api::SshKey, description = "The key removed"), (status = 401, body = ErrorBody),
        (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn remove_ssh_key(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam((name, id)): PathParam<(String, i64)>,
) -> ApiResult<Json<api::SshKey>> {
    Ok(Json(ssh_key_view(app.remove_ssh_key(&actor, &name, id).await?)))
}

/// Everything ferrum stores about the caller (GDPR articles 15 and 20):
/// account, token names and dates (never a secret), SSH keys, the account
/// request that made the account, leases and usage records, as JSON.
#[utoipa::path(get, path = "/api/v1/users/me/export", operation_id = "users_me_export", tag = "accounts",
    responses((status = 200, body = api::PersonalData), (status = 401, body = ErrorBody)), security(("bearer" = [])))]
pub async fn export_me(State(app): State<Arc<App>>, Caller(actor): Caller) -> ApiResult<Json<api::PersonalData>> {
    Ok(Json(views::personal_data(app.export_personal_data(&actor, &actor.name).await?)))
}

/// A user's personal data, as `GET /api/v1/users/me/export` answers it
/// (the user themselves, or an admin; an admin's export is audited).
#[utoipa::path(get, path = "/api/v1/users/{name}/export", operation_id = "users_export", tag = "accounts", params(("name" = String, Path)),
    responses((status = 200, body = api::PersonalData), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn export_user(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
) -> ApiResult<Json<api::PersonalData>> {
    Ok(Json(views::personal_data(app.export_personal_data(&actor, &name).await?)))
}

/// Erase a user's personal data on request (admin; GDPR article 17): the
/// login becomes a pseudonym everywhere, e-mail and affiliation go, the
/// account is disabled and its tokens, sessions and SSH keys revoked;
/// leases and usage records stay under the pseudonym. Refused (409) while
/// the user holds a lease that is not over, for oneself and for the last
/// admin.
#[utoipa::path(post, path = "/api/v1/users/{name}/erase", operation_id = "users_erase", tag = "accounts", params(("name" = String, Path)),
    responses((status = 200, body = api::UserErased), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, body = ErrorBody, description = "a lease not over, oneself, or the last admin")),
    security(("bearer" = [])))]
pub async fn erase_user(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
) -> ApiResult<Json<api::UserErased>> {
    let pseudonym = app.erase_user(&actor, &name).await?;
    Ok(Json(api::UserErased { pseudonym, erased_at: from_seconds(app.now()) }))
}
