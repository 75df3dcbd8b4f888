//! The HTTP boot endpoints nodes use, outside `/api/v1` and without API
//! tokens (firmware has none; the MAC address is the node's identity on
//! the provisioning network):
//! - `GET /boot/ipxe?mac=` → the node's iPXE script (`text/plain`), 404 for
//!   a MAC the inventory does not know;
//! - `GET /boot/files/{file}` → the deploy ramdisk's kernel and initrd, with
//!   HTTP Range and HEAD support;
//! - `GET /images/{path}` → the images directory (environment images whose
//!   descriptor names a relative path), with Range support.
//!
//! Must not: log a script (a ramdisk script carries a one-time token).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use tower_http::services::ServeDir;

use super::error::ApiResult;
use super::extract::Params;
use crate::app::App;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptQuery {
    mac: String,
}

/// The boot routes, with the ramdisk directory served at `/boot/files`.
pub fn routes(app: &App) -> Router<Arc<App>> {
    Router::new()
        .route("/boot/ipxe", get(ipxe))
        .nest_service("/boot/files", ServeDir::new(app.config.ramdisk_dir()))
        .nest_service("/images", ServeDir::new(app.config.images_dir()))
}

/// The node's iPXE script.
#[utoipa::path(get, path = "/boot/ipxe", operation_id = "boot_ipxe", tag = "boot", params(("mac" = String, Query, description = "the booting NIC's MAC address")),
    responses((status = 200, description = "iPXE script", content_type = "text/plain"), (status = 400, body = ferrum_api::ErrorBody),
        (status = 404, description = "MAC not in the inventory", content_type = "text/plain")))]
pub async fn ipxe(State(app): State<Arc<App>>, Params(q): Params<ScriptQuery>) -> ApiResult<Response> {
    let plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8"), (header::CACHE_CONTROL, "no-store")];
    Ok(match app.boot_script(&q.mac).await? {
        Some(s) => {
            tracing::info!(node = %s.node, mac = %q.mac, target = s.target.as_str(), "iPXE script served");
            (plain, s.script).into_response()
        }
        None => {
            tracing::info!(mac = %q.mac, "iPXE script asked for a MAC not in the inventory");
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
