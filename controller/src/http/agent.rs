//! The agent protocol's endpoints (`/agent/v1`, see `ferrum_api::agent`;
//! served on the boot listener only) and the admin views of inventories and agent commands under
//! `/api/v1/nodes/{name}/...`.
//!
//! Agents authenticate with the session token their registration returned
//! (`Authorization: Bearer`), never with an API token. Must not: log a
//! token.

use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::extract::{FromRequestParts, State};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::routing::{get, post};
use ferrum_api::agent::{AgentAction, AgentCommand, AgentRegister, AgentSession, CommandProgress, CommandResult, InventoryUpload};
use ferrum_api::{self as api, ErrorBody};
use serde::Deserialize;

use super::error::{ApiError, ApiResult};
use super::extract::{Body, Caller, Params, PathParam};
use super::views;
use crate::app::App;
use crate::app::agent::AgentCaller;

/// The agent's session, from `Authorization: Bearer`.
#[derive(Debug)]
pub struct Agent(pub AgentCaller);

impl FromRequestParts<Arc<App>> for Agent {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let Some(token) = super::extract::bearer(parts) else {
            return Err(ApiError {
                status: StatusCode::UNAUTHORIZED,
                code: "unauthorized",
                message: "missing agent session: register first, then send 'Authorization: Bearer <session>'".into(),
                earliest_start: None,
            });
        };
        app.agent_caller(token).await.map(Agent).map_err(Into::into)
    }
}

/// The `/agent/v1` routes.
pub fn routes() -> axum::Router<Arc<App>> {
    axum::Router::new()
        .route("/agent/v1/register", post(register))
        .route("/agent/v1/inventory", post(inventory))
        .route("/agent/v1/command", get(command))
        .route("/agent/v1/commands/{id}/progress", post(progress))
        .route("/agent/v1/commands/{id}/result", post(result))
}

/// An agent registers with the one-time token of its kernel command line,
/// from the address that fetched the script carrying it.
#[utoipa::path(post, path = "/agent/v1/register", operation_id = "agent_register", tag = "agent", request_body = AgentRegister,
    responses((status = 200, body = AgentSession), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)))]
pub async fn register(
    State(app): State<Arc<App>>,
    axum::extract::ConnectInfo(peer): axum::extract::ConnectInfo<std::net::SocketAddr>,
    Body(req): Body<AgentRegister>,
) -> ApiResult<Json<AgentSession>> {
    Ok(Json(app.agent_register(req, peer.ip()).await?))
}

/// The agent's hardware inventory.
#[utoipa::path(post, path = "/agent/v1/inventory", operation_id = "agent_inventory", tag = "agent", request_body = InventoryUpload,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 409, description = "stale generation", body = ErrorBody)))]
pub async fn inventory(State(app): State<Arc<App>>, Agent(agent): Agent, Body(upload): Body<InventoryUpload>) -> ApiResult<StatusCode> {
    app.agent_inventory(&agent, upload).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WaitQuery {
    /// How long to hold the request open for a command (at most 30000).
    #[serde(default)]
    wait_ms: u64,
}

/// The next command (`wait` when there is none after `wait_ms`).
#[utoipa::path(get, path = "/agent/v1/command", operation_id = "agent_command", tag = "agent", params(("wait_ms" = Option<u64>, Query)),
    responses((status = 200, body = AgentCommand), (status = 401, body = ErrorBody), (status = 409, description = "stale generation", body = ErrorBody)))]
pub async fn command(State(app): State<Arc<App>>, Agent(agent): Agent, Params(q): Params<WaitQuery>) -> ApiResult<Json<AgentCommand>> {
    Ok(Json(app.agent_next_command(&agent, Duration::from_millis(q.wait_ms)).await?))
}

/// Progress of a command (bytes written or erased).
#[utoipa::path(post, path = "/agent/v1/commands/{id}/progress", operation_id = "agent_progress", tag = "agent", params(("id" = i64, Path)), request_body = CommandProgress,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn progress(
    State(app): State<Arc<App>>,
    Agent(agent): Agent,
    PathParam(id): PathParam<i64>,
    Body(p): Body<CommandProgress>,
) -> ApiResult<StatusCode> {
    app.agent_progress(&agent, id, p).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The outcome of a command.
#[utoipa::path(post, path = "/agent/v1/commands/{id}/result", operation_id = "agent_result", tag = "agent", params(("id" = i64, Path)), request_body = CommandResult,
    responses((status = 204), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn result(
    State(app): State<Arc<App>>,
    Agent(agent): Agent,
    PathParam(id): PathParam<i64>,
    Body(r): Body<CommandResult>,
) -> ApiResult<StatusCode> {
    app.agent_result(&agent, id, r).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// The node's reference description beside its agent's latest report, and
/// their differences.
#[utoipa::path(get, path = "/api/v1/nodes/{name}/inventory", operation_id = "nodes_inventory", tag = "nodes", params(("name" = String, Path)),
    responses((status = 200, body = api::NodeInventory), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn node_inventory(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
) -> ApiResult<Json<api::NodeInventory>> {
    let inv = app.node_inventory(&name).await?;
    Ok(Json(views::node_inventory(name, inv, actor.is_admin)))
}

/// Queue a command for the node's agent (admin).
#[utoipa::path(post, path = "/api/v1/nodes/{name}/agent-commands", operation_id = "nodes_agent_commands_create", tag = "nodes", params(("name" = String, Path)), request_body = AgentAction,
    responses((status = 201, body = api::AgentCommandView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_command(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
    Body(action): Body<AgentAction>,
) -> ApiResult<(StatusCode, Json<api::AgentCommandView>)> {
    let row = app.request_agent_command(&actor, &name, action).await?;
    Ok((StatusCode::CREATED, Json(views::agent_command(row, &name)?)))
}

/// The node's agent commands, oldest first (admin).
#[utoipa::path(get, path = "/api/v1/nodes/{name}/agent-commands", operation_id = "nodes_agent_commands_list", tag = "nodes", params(("name" = String, Path)),
    responses((status = 200, body = Vec<api::AgentCommandView>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list_commands(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
) -> ApiResult<Json<Vec<api::AgentCommandView>>> {
    let rows = app.agent_command_list(&actor, &name).await?;
    Ok(Json(rows.into_iter().map(|r| views::agent_command(r, &name)).collect::<Result<_, _>>()?))
}
