//! Handlers of `/api/v1/nodes`: parse, authorise, call one application
//! function, convert to a view.

use std::sync::Arc;

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use ferrum_api as api;
use ferrum_api::ErrorBody;

use super::error::ApiResult;
use super::extract::{Body, Caller, Params, PathParam};
use super::views;
use crate::app::nodes::{NodeSpec, ReferenceUpload};
use crate::app::{App, AppError};
use crate::model::PowerRequestState;

/// List nodes, optionally selected by an OAR property filter.
#[utoipa::path(get, path = "/api/v1/nodes", operation_id = "nodes_list", tag = "nodes", params(api::NodeListQuery),
    responses((status = 200, body = Vec<api::Node>), (status = 400, description = "bad filter", body = ErrorBody), (status = 401, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn list(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    Params(q): Params<api::NodeListQuery>,
) -> ApiResult<Json<Vec<api::Node>>> {
    let rows = app.list_nodes(q.filter.as_deref()).await?;
    Ok(Json(rows.into_iter().map(|r| views::node(r, None, actor.is_admin)).collect()))
}

/// Enrol a node (admin).
#[utoipa::path(post, path = "/api/v1/nodes", operation_id = "nodes_create", tag = "nodes", request_body = api::NodeCreate,
    responses((status = 201, body = api::Node), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 409, description = "name or MAC taken", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn create(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    Body(req): Body<api::NodeCreate>,
) -> ApiResult<(StatusCode, Json<api::Node>)> {
    let spec = NodeSpec {
        name: req.name,
        site: req.site,
        cluster: req.cluster,
        macs: req.macs,
        ip: req.ip,
        bmc: req.bmc,
        properties: req.properties.unwrap_or_default().into_iter().collect(),
        reference: req.reference,
    };
    let row = app.add_node(&actor, spec).await?;
    Ok((StatusCode::CREATED, Json(views::node(row, None, actor.is_admin))))
}

/// Import Grid'5000 Reference API node descriptions (admin). Idempotent.
#[utoipa::path(post, path = "/api/v1/nodes/import", operation_id = "nodes_import", tag = "nodes", request_body = api::NodeImport,
    responses((status = 200, body = api::ImportReport), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn import(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    Body(req): Body<api::NodeImport>,
) -> ApiResult<Json<api::ImportReport>> {
    let uploads = req.nodes.into_iter().map(|n| ReferenceUpload { site: n.site, cluster: n.cluster, description: n.description }).collect();
    let o = app.import_nodes(&actor, uploads).await?;
    Ok(Json(api::ImportReport { added: o.added, changed: o.changed, unchanged: o.unchanged }))
}

/// One node, with its reference description.
#[utoipa::path(get, path = "/api/v1/nodes/{name}", operation_id = "nodes_show", tag = "nodes", params(("name" = String, Path)),
    responses((status = 200, body = api::Node), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn show(State(app): State<Arc<App>>, Caller(actor): Caller, PathParam(name): PathParam<String>) -> ApiResult<Response> {
    // The rendered answer is kept while nothing is committed (`app::reads`):
    // a node's reference description is large, and read far more often
    // than it changes.
    let generation = app.store.read_generation();
    let key = (name, actor.is_admin);
    let render = async {
        let view = views::node_detail(app.get_node(&key.0).await?, key.1);
        serde_json::to_vec(&view).map(Bytes::from).map_err(|e| AppError::Internal(e.into()))
    };
    let body = app.reads.node_views.get_or_read(generation, &key, render).await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], Bytes::clone(&body)).into_response())
}

/// Put a node in maintenance or back in service (admin).
#[utoipa::path(post, path = "/api/v1/nodes/{name}/maintenance", operation_id = "nodes_maintenance", tag = "nodes", params(("name" = String, Path)), request_body = api::MaintenanceRequest,
    responses((status = 200, body = api::Node), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn maintenance(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
    Body(req): Body<api::MaintenanceRequest>,
) -> ApiResult<Json<api::Node>> {
    let row = app.set_maintenance(&actor, &name, req.enabled, &req.reason).await?;
    Ok(Json(views::node(row, None, actor.is_admin)))
}

/// Mark a suspect or dead node repaired (admin): it is enrolled again
/// (reset, inventory check) before anyone may reserve it.
#[utoipa::path(post, path = "/api/v1/nodes/{name}/repaired", operation_id = "nodes_repaired", tag = "nodes", params(("name" = String, Path)), request_body = api::RepairedRequest,
    responses((status = 200, body = api::Node), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, description = "the node is neither suspect nor dead", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn repaired(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
    Body(req): Body<api::RepairedRequest>,
) -> ApiResult<Json<api::Node>> {
    let row = app.mark_repaired(&actor, &name, &req.reason).await?;
    Ok(Json(views::node(row, None, actor.is_admin)))
}

/// The sites: each site that has nodes or a `[sites.NAME]` table, with
/// the time zone it reads dates in and its DNS domain (any signed-in user).
#[utoipa::path(get, path = "/api/v1/sites", operation_id = "sites_list", tag = "nodes",
    responses((status = 200, body = Vec<api::Site>)),
    security(("bearer" = [])))]
pub async fn sites(State(app): State<Arc<App>>, Caller(_actor): Caller) -> ApiResult<Json<Vec<api::Site>>> {
    let sites = app.list_sites().await?;
    Ok(Json(
        sites.into_iter().map(|(name, s)| api::Site { name, timezone: s.timezone.name().to_owned(), domain: s.domain.clone() }).collect(),
    ))
}

/// A node's recorded state changes, oldest first.
#[utoipa::path(get, path = "/api/v1/nodes/{name}/events", operation_id = "nodes_events", tag = "nodes", params(("name" = String, Path)),
    responses((status = 200, body = Vec<api::NodeEvent>), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn events(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
) -> ApiResult<Json<Vec<api::NodeEvent>>> {
    Ok(Json(views::node_events(app.node_events(&actor, &name).await?, &actor)))
}

fn power_answer(app_row: crate::db::PowerRequestRow, node_power: Option<String>) -> ApiResult<(StatusCode, Json<api::PowerOperation>)> {
    match app_row.state {
        PowerRequestState::Done => Ok((StatusCode::OK, Json(views::power_operation(app_row, node_power)))),
        PowerRequestState::Failed => Err(super::error::ApiError {
            status: StatusCode::BAD_GATEWAY,
            code: "bmc_error",
            message: app_row.error.unwrap_or_else(|| "the BMC operation failed".into()),
            earliest_start: None,
        }),
        PowerRequestState::Queued | PowerRequestState::Running => Ok((StatusCode::ACCEPTED, Json(views::power_operation(app_row, None)))),
    }
}

/// Power a node on, off, soft-off, cycle it, or read its power state now
/// (admins, and the holder of the node's running lease). 502 names the BMC
/// error; 202 means the operation goes on in the background.
#[utoipa::path(post, path = "/api/v1/nodes/{name}/power", operation_id = "nodes_power", tag = "nodes", params(("name" = String, Path)), request_body = api::PowerRequest,
    responses((status = 200, body = api::PowerOperation), (status = 202, body = api::PowerOperation), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "no BMC", body = ErrorBody), (status = 502, description = "the BMC failed", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn power(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
    Body(req): Body<api::PowerRequest>,
) -> ApiResult<(StatusCode, Json<api::PowerOperation>)> {
    let row = app.request_power(&actor, &name, crate::app::power::power_operation(req.action)).await?;
    let power = if row.state == PowerRequestState::Done { app.get_node(&name).await?.row.power.map(|(s, _, _)| s) } else { None };
    power_answer(row, power)
}

/// Set the device a node boots from next time (once).
#[utoipa::path(put, path = "/api/v1/nodes/{name}/boot-device", operation_id = "nodes_boot_device", tag = "nodes", params(("name" = String, Path)), request_body = api::BootDeviceRequest,
    responses((status = 200, body = api::PowerOperation), (status = 202, body = api::PowerOperation), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "no BMC", body = ErrorBody), (status = 502, description = "the BMC failed", body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn boot_device(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
    Body(req): Body<api::BootDeviceRequest>,
) -> ApiResult<(StatusCode, Json<api::PowerOperation>)> {
    use crate::app::power::PowerOperation;
    use crate::power::BootDevice;
    let op = PowerOperation::Boot(match req.device {
        api::BootDeviceName::Pxe => BootDevice::Pxe,
        api::BootDeviceName::Disk => BootDevice::Disk,
    });
    power_answer(app.request_power(&actor, &name, op).await?, None)
}

/// Set what a node boots next over the network (admin): `ramdisk` (ferrum's
/// deploy ramdisk) or `local` (its disk).
#[utoipa::path(put, path = "/api/v1/nodes/{name}/boot-target", operation_id = "nodes_boot_target", tag = "nodes", params(("name" = String, Path)), request_body = api::BootTargetRequest,
    responses((status = 200, body = api::Node), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn boot_target(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
    Body(req): Body<api::BootTargetRequest>,
) -> ApiResult<Json<api::Node>> {
    let row = app.set_boot_target(&actor, &name, req.target.into()).await?;
    Ok(Json(views::node(row, None, actor.is_admin)))
}
