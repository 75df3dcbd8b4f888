//! Handlers of `/api/v1/leases/{id}/deployments`, `/api/v1/deployments/{id}`
//! and `/api/v1/nodes/{name}/operations`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use ferrum_api as api;
use ferrum_api::ErrorBody;
use ferrum_api::deployment::{Deployment, NodeOperation};

use super::error::ApiResult;
use super::extract::{Body, Caller, PathParam};
use crate::app::App;

/// Deploy an environment on the nodes of an active lease (its holder or an
/// admin): each node boots the deploy ramdisk, gets the image and the keys
/// written, boots it, and is `deployed` once the controller logged in as
/// root over SSH. Answers at once; follow progress with
/// `GET /api/v1/deployments/{id}`.
#[utoipa::path(post, path = "/api/v1/leases/{id}/deployments", operation_id = "deployments_create", tag = "deployments", params(("id" = i64, Path)),
    request_body = api::DeploymentCreate,
    responses((status = 201, body = Deployment), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "the lease is not active, or a node is already being deployed", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(id): PathParam<i64>,
    Body(req): Body<api::DeploymentCreate>,
) -> ApiResult<(StatusCode, Json<Deployment>)> {
    Ok((StatusCode::CREATED, Json(app.create_deployment(&actor, id, req).await?)))
}

/// The deployments of a lease, oldest first.
#[utoipa::path(get, path = "/api/v1/leases/{id}/deployments", operation_id = "deployments_list", tag = "deployments", params(("id" = i64, Path)),
    responses((status = 200, body = Vec<Deployment>), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn list(State(app): State<Arc<App>>, Caller(actor): Caller, PathParam(id): PathParam<i64>) -> ApiResult<Json<Vec<Deployment>>> {
    Ok(Json(app.lease_deployments(&actor, id).await?))
}

/// One deployment, with each node's phase, bytes written and phase times.
#[utoipa::path(get, path = "/api/v1/deployments/{id}", operation_id = "deployments_show", tag = "deployments", params(("id" = i64, Path)),
    responses((status = 200, body = Deployment), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn show(State(app): State<Arc<App>>, Caller(actor): Caller, PathParam(id): PathParam<i64>) -> ApiResult<Json<Deployment>> {
    Ok(Json(app.get_deployment(&actor, id).await?))
}

/// Cancel what still runs of a deployment; those nodes go back to the lease.
#[utoipa::path(delete, path = "/api/v1/deployments/{id}", operation_id = "deployments_cancel", tag = "deployments", params(("id" = i64, Path)),
    responses((status = 200, body = Deployment), (status = 404, body = ErrorBody)), security(("bearer" = [])))]
pub async fn cancel(State(app): State<Arc<App>>, Caller(actor): Caller, PathParam(id): PathParam<i64>) -> ApiResult<Json<Deployment>> {
    Ok(Json(app.cancel_deployment(&actor, id).await?))
}

/// A node's latest deploy and latest reset (admins).
#[utoipa::path(get, path = "/api/v1/nodes/{name}/operations", operation_id = "nodes_operations", tag = "nodes", params(("name" = String, Path)),
    responses((status = 200, body = Vec<NodeOperation>), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn node_operations(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
) -> ApiResult<Json<Vec<NodeOperation>>> {
    actor.require_admin()?;
    Ok(Json(app.node_operations(&name).await?))
}
