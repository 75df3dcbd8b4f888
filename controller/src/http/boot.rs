//! The HTTP boot endpoints nodes use, outside `/api/v1` and without API
//! tokens (firmware has none), served only on the boot listener(s) of
//! `[boot] listen` (the provisioning network), never on the API's:
//! - `GET /boot/ipxe?mac=` → the node's iPXE script (`text/plain`), only to
//!   the node's inventory address (403 from any other); 404 for a MAC the
//!   inventory does not know;
//! - `GET /boot/files/{file}` → the deploy ramdisk's kernel and initrd, with
//!   HTTP Range and HEAD support;
//! - `GET /images/{path}` → the images directory (environment images whose
//!   descriptor names a relative path), with Range support: a public
//!   environment's image to anyone, another only to an agent session whose
//!   current write command names it.
//!
//! And, on the API listener, the boot services' admin side:
//! `GET /api/v1/boot/unknown-macs`, `GET /api/v1/boot/hosts` (boot-service
//! token or admin), `POST /api/v1/boot/tokens` (admin).
//!
//! Must not: log a script (a ramdisk script carries a one-time token).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tower::ServiceExt;
use tower_http::services::ServeDir;

use super::error::{ApiError, ApiResult};
use super::extract::Params;
use crate::app::App;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptQuery {
    mac: String,
}

/// The boot routes of the boot listener, with the ramdisk directory served
/// at `/boot/files` and the images directory at `/images`.
// TODO(issue 17, finding 10): wrap ServeDir's empty 404s in the JSON error
// layer of http/error.rs once it lands (the lead applies it here).
pub fn routes(app: &App) -> Router<Arc<App>> {
    Router::new()
        .route("/boot/ipxe", get(ipxe))
        .nest_service("/boot/files", ServeDir::new(app.config.ramdisk_dir()))
        .route("/images/{*path}", get(image))
}

/// The node's iPXE script, to the node's inventory address only.
pub async fn ipxe(
    State(app): State<Arc<App>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    Params(q): Params<ScriptQuery>,
) -> ApiResult<Response> {
    let plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-store")];
    Ok(match app.boot_script(&q.mac, peer.ip()).await? {
        Some(s) => {
            tracing::info!(node = %s.node, mac = %q.mac, peer = %peer.ip(), target = s.target.as_str(), "iPXE script served");
            (plain, s.script).into_response()
        }
        None => {
            tracing::info!(mac = %q.mac, peer = %peer.ip(), "iPXE script asked for a MAC not in the inventory");
            // Firmware runs this script: it stays iPXE, not JSON.
            (
                StatusCode::NOT_FOUND,
                plain,
                axum::Extension(super::limits::KeepBody),
                "#!ipxe\necho ferrum: this MAC address is not in the inventory\nexit 1\n",
            )
                .into_response()
        }
    })
}

/// A file of the images directory, after [`App::image_access`].
async fn image(State(app): State<Arc<App>>, request: Request) -> Result<Response, ApiError> {
    let (mut parts, body) = request.into_parts();
    let axum::extract::Path(path) = axum::extract::Path::<String>::from_request_parts(&mut parts, &app).await.map_err(|e| ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "bad_request",
        message: format!("path: {e}"),
        earliest_start: None,
    })?;
    let session = super::extract::bearer(&parts).map(str::to_owned);
    app.image_access(&path, session.as_deref()).await?;
    // ServeDir sees the path below /images (it decodes and checks it again).
    let below = parts.uri.path().strip_prefix("/images").unwrap_or("/").to_owned();
    parts.uri = below.parse().map_err(|_| ApiError {
        status: StatusCode::BAD_REQUEST,
        code: "bad_request",
        message: "path: not a valid URI path".into(),
        earliest_start: None,
    })?;
    let request = Request::from_parts(parts, body);
    match ServeDir::new(app.config.images_dir()).oneshot(request).await {
        Ok(response) => Ok(response.into_response()),
        Err(never) => match never {},
    }
}

/// Mints a boot-service token for `ferrum-pxe` (admin).
#[utoipa::path(post, path = "/api/v1/boot/tokens", operation_id = "boot_tokens_create", tag = "boot",
    responses((status = 201, body = ferrum_api::BootTokenCreated), (status = 401, body = ferrum_api::ErrorBody), (status = 403, body = ferrum_api::ErrorBody)),
    security(("bearer" = [])))]
pub async fn create_token(
    State(app): State<Arc<App>>,
    super::extract::Caller(actor): super::extract::Caller,
) -> ApiResult<(StatusCode, axum::Json<ferrum_api::BootTokenCreated>)> {
    let token = app.create_boot_token(&actor).await?;
    Ok((StatusCode::CREATED, axum::Json(ferrum_api::BootTokenCreated { token })))
}

/// The MAC → node table of the boot services (a boot-service token, or an
/// admin's API token).
#[utoipa::path(get, path = "/api/v1/boot/hosts", operation_id = "boot_hosts_list", tag = "boot",
    responses((status = 200, body = Vec<ferrum_api::BootHost>), (status = 401, body = ferrum_api::ErrorBody), (status = 403, body = ferrum_api::ErrorBody)),
    security(("bearer" = [])))]
pub async fn hosts(State(app): State<Arc<App>>, parts: axum::http::request::Parts) -> ApiResult<axum::Json<Vec<ferrum_api::BootHost>>> {
    let token = super::extract::bearer(&parts).ok_or_else(|| ApiError {
        status: StatusCode::UNAUTHORIZED,
        code: "unauthorized",
        message: "missing token: send 'Authorization: Bearer <boot-service token>'".into(),
        earliest_start: None,
    })?;
    let rows = app.boot_host_table(token).await?;
    Ok(axum::Json(rows.into_iter().map(|r| ferrum_api::BootHost { mac: r.mac, name: r.name, ip: r.ip }).collect()))
}

/// MACs that asked for a network boot and are not in the inventory (admin;
/// remembered by this process since it started, at most 1,024).
#[utoipa::path(get, path = "/api/v1/boot/unknown-macs", operation_id = "boot_unknown_macs", tag = "boot",
    responses((status = 200, body = Vec<ferrum_api::UnknownMac>), (status = 403, body = ferrum_api::ErrorBody)), security(("bearer" = [])))]
pub async fn unknown_macs(
    State(app): State<Arc<App>>,
    super::extract::Caller(actor): super::extract::Caller,
) -> ApiResult<axum::Json<Vec<ferrum_api::UnknownMac>>> {
    actor.require_admin()?;
    let list = app
        .boot_hosts
        .unknown_macs()
        .into_iter()
        .map(|u| ferrum_api::UnknownMac {
            mac: u.mac.to_string(),
            interface: u.interface,
            pxe: u.pxe,
            arch: u.arch,
            first_seen: u.first_seen.into(),
            last_seen: u.last_seen.into(),
            requests: u.requests,
        })
        .collect();
    Ok(axum::Json(list))
}
