//! `/stable`: environments (API-SUBSET §2.5, E1 and E2): the catalog
//! entries the caller may see (`App::list_environments`), as Kadeploy
//! describes them.
//!
//! Mapping (docs/grid5000-api.md): `uid` is `<name>_<arch>_<version>_<owner>`
//! as g5k-api builds it; `version` is ferrum's, already an integer (stock
//! images use `YYYYMMDDHH`, as Grid'5000 does); visibility `public` →
//! `public`, `project` → `shared`, `user` → `private`; images are whole
//! disks (`kind: "dd"`), `raw.zst` compressed with `zstd`. The same
//! environment is listed under every site (ferrum's catalog is global).
//! Must not decide who sees what: the application does.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use ferrum_api::agent::ImageFormat;
use ferrum_api::environment::{Environment, EnvironmentBoot, Visibility};
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Collection, G5kError, G5kPath, G5kQuery, G5kResult, G5kUser, item_links};
use crate::app::App;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new().route("/sites/{site}/environments", get(list)).route("/sites/{site}/environments/{uid}", get(one))
}

/// E1's filters; the others g5k-api takes are ignored.
#[derive(Debug, Default, Deserialize)]
struct Filters {
    name: Option<String>,
    arch: Option<String>,
    user: Option<String>,
    /// `yes`: only the newest version of each name and owner.
    latest_only: Option<String>,
}

/// E1: every environment the caller may see.
async fn list(
    State(app): State<Arc<App>>,
    G5kUser(actor): G5kUser,
    G5kPath(site): G5kPath<String>,
    G5kQuery(q): G5kQuery<Filters>,
) -> G5kResult<Collection<Value>> {
    app.site_tree().await?.site(&site)?;
    let latest_only = match q.latest_only.as_deref() {
        None | Some("no" | "false" | "0") => false,
        Some("yes" | "true" | "1") => true,
        Some(other) => return Err(G5kError::bad_request(format!("latest_only: '{other}' is neither yes nor no"))),
    };
    let mut seen = std::collections::BTreeSet::new();
    let items = app
        .list_environments(&actor)
        .await?
        .into_iter()
        .filter(|e| q.name.as_deref().is_none_or(|n| e.descriptor.name == n))
        .filter(|e| q.arch.as_deref().is_none_or(|a| e.descriptor.arch == a))
        .filter(|e| q.user.as_deref().is_none_or(|u| e.owner == u))
        // The catalog lists the newest version first per name.
        .filter(|e| !latest_only || seen.insert((e.descriptor.name.clone(), e.owner.clone())))
        .map(|e| document(&site, &e))
        .collect();
    Ok(Collection::all(&format!("/sites/{site}/environments"), items))
}

/// E2: one environment by uid.
async fn one(
    State(app): State<Arc<App>>,
    G5kUser(actor): G5kUser,
    G5kPath((site, uid)): G5kPath<(String, String)>,
) -> G5kResult<Json<Value>> {
    app.site_tree().await?.site(&site)?;
    let found = app.list_environments(&actor).await?.into_iter().find(|e| self::uid(e) == uid);
    match found {
        Some(e) => Ok(Json(document(&site, &e))),
        None => Err(G5kError::not_found(format!("Cannot find environment {uid}"))),
    }
}

/// `<name>_<arch>_<version>_<owner>`.
fn uid(e: &Environment) -> String {
    format!("{}_{}_{}_{}", e.descriptor.name, e.descriptor.arch, e.descriptor.version, e.owner)
}

/// A Kadeploy-style description.
fn document(site: &str, e: &Environment) -> Value {
    let d = &e.descriptor;
    let uid = uid(e);
    let visibility = match d.visibility {
        Visibility::Public => "public",
        Visibility::Project => "shared",
        Visibility::User => "private",
    };
    let compression = match d.format {
        ImageFormat::Raw => "none",
        ImageFormat::RawZst => "zstd",
    };
    json!({
        "uid": uid,
        "name": d.name,
        "alias": d.name,
        "arch": d.arch,
        "version": d.version,
        "description": d.description,
        "author": e.owner,
        "user": e.owner,
        "visibility": visibility,
        "destructive": false,
        "os": "linux",
        "image": { "file": e.image_url, "kind": "dd", "compression": compression, "sha256": d.sha256, "size": d.size },
        "postinstalls": [],
        "multipart": false,
        "boot": { "method": match d.boot { EnvironmentBoot::Local => "local", EnvironmentBoot::Kexec => "kexec" }, "root_partition": d.root_partition },
        "created_at": e.created_at.timestamp(),
        "links": item_links(&format!("/sites/{site}/environments/{uid}"), &format!("/sites/{site}")),
    })
}
