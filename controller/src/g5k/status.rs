//! `/stable`: node status (API-SUBSET §2.2, S1 and S2): for each node of a
//! cluster or of a site, by FQDN, its hardware and scheduling state and
//! its reservations from now on, as g5k-api's `OAR::Resource` status and
//! as EnOSlib's `can_start_on_cluster` reads it.
//!
//! The document is `{"uid": <now>, "nodes": {...}, "disks": {}, "links"}`
//! with no top-level `items` (python-grid5000's `status.list()` would
//! return `items` instead of the whole document).
//!
//! Privacy (SPEC §9, docs/grid5000-api.md): a reservation of the caller's
//! own (or any, for an admin) shows its lease id, owner, name and project;
//! another user's shows only when and how long (`queue`, `state`,
//! `scheduled_at`, `started_at`, `walltime`), which is what EnOSlib needs
//! to propose slots that do not fail. Must not decide anything: the
//! states and the calendar are the application's.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use super::{G5kPath, G5kResult, G5kUser, Link, fqdn, oar_state};
use crate::app::{Actor, App};
use crate::db::{BusyRow, LeaseRow, NodeRow};
use crate::model::node::shown_state;
use crate::model::{LeaseId, LeaseState, LeaseType, Seconds};
use ferrum_api::NodeState;

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new().route("/sites/{site}/status", get(site_status)).route("/sites/{site}/clusters/{cluster}/status", get(cluster_status))
}

/// S2: every node of a site.
async fn site_status(State(app): State<Arc<App>>, G5kUser(actor): G5kUser, G5kPath(site): G5kPath<String>) -> G5kResult<Json<Value>> {
    let tree = app.site_tree().await?;
    let nodes: Vec<&NodeRow> = tree.site(&site)?.clusters.values().flat_map(|c| &c.nodes).collect();
    let mut doc = status_document(&app, &actor, &site, &nodes, &format!("/sites/{site}/status"), &format!("/sites/{site}")).await?;
    // g5k-api's site status also maps VLANs and subnets: ferrum has none.
    doc["vlans"] = json!({});
    doc["subnets"] = json!({});
    Ok(Json(doc))
}

/// S1: every node of a cluster.
async fn cluster_status(
    State(app): State<Arc<App>>,
    G5kUser(actor): G5kUser,
    G5kPath((site, cluster)): G5kPath<(String, String)>,
) -> G5kResult<Json<Value>> {
    let tree = app.site_tree().await?;
    let nodes: Vec<&NodeRow> = tree.cluster(&site, &cluster)?.nodes.iter().collect();
    let path = format!("/sites/{site}/clusters/{cluster}");
    Ok(Json(status_document(&app, &actor, &site, &nodes, &format!("{path}/status"), &path).await?))
}

async fn status_document(app: &App, actor: &Actor, site: &str, nodes: &[&NodeRow], path: &str, parent: &str) -> G5kResult<Value> {
    let (now, mut busy) = app.upcoming_allocations().await?;
    // The caller's leases (every lease, for an admin), for the details
    // only they may see.
    let shown: HashMap<LeaseId, LeaseRow> = app.list_leases(actor, None, false).await?.into_iter().map(|l| (l.id, l)).collect();
    let mut out = Map::new();
    for node in nodes {
        let rows = busy.remove(&node.id).unwrap_or_default();
        out.insert(fqdn(app, &node.name, site), node_status(node, &rows, now, actor, &shown));
    }
    Ok(json!({
        "uid": now,
        "nodes": out,
        "disks": {},
        "links": [Link::item("self", path), Link::item("parent", parent)],
    }))
}

/// One node's `NodeStatus`: `hard` from its state, `soft` from the lease
/// holding it now, its reservations, and OAR's slots (one per core).
fn node_status(node: &NodeRow, rows: &[BusyRow], now: Seconds, actor: &Actor, shown: &HashMap<LeaseId, LeaseRow>) -> Value {
    let hard = match shown_state(node.state, node.policy) {
        NodeState::Available | NodeState::Reserved | NodeState::Deploying | NodeState::Deployed | NodeState::Resetting => "alive",
        NodeState::Enrolling | NodeState::Maintenance => "absent",
        NodeState::Suspect => "suspected",
        NodeState::Dead | NodeState::Retired => "dead",
    };
    let live: Vec<&BusyRow> = rows.iter().filter(|r| !crate::model::lease::is_terminal(r.state) && r.state != LeaseState::Ending).collect();
    let holding = live.iter().find(|r| r.start <= now && now < r.end && matches!(r.state, LeaseState::Starting | LeaseState::Active));
    let soft = match holding {
        Some(r) if r.lease_type == LeaseType::Besteffort => "busy_besteffort",
        Some(_) => "busy",
        None => "free",
    };
    let cores = ["core_count", "cpucore"].iter().filter_map(|k| node.properties.get(*k).and_then(Value::as_i64)).max().unwrap_or(1).max(1);
    let (free, busy, freeable) = match holding {
        None => (cores, 0, 0),
        Some(r) if r.lease_type == LeaseType::Besteffort => (0, cores, cores),
        Some(_) => (0, cores, 0),
    };
    let reservations: Vec<Value> = live.iter().map(|r| reservation(r, actor, shown.get(&r.lease))).collect();
    json!({
        "hard": hard,
        "soft": soft,
        "comment": "",
        "free_slots": free,
        "freeable_slots": freeable,
        "busy_slots": busy,
        "reservations": reservations,
    })
}

/// A reservation summary: times for everyone, who and what only for the
/// owner and admins.
fn reservation(r: &BusyRow, actor: &Actor, lease: Option<&LeaseRow>) -> Value {
    let started = matches!(r.state, LeaseState::Starting | LeaseState::Active);
    let mut summary = json!({
        "queue": if r.lease_type == LeaseType::Besteffort { "besteffort" } else { "default" },
        "state": oar_state(r.state),
        "scheduled_at": r.start,
        "walltime": r.end - r.start,
    });
    // Absent, not null, until it started: EnOSlib reads
    // `get("started_at", get("scheduled_at"))`.
    if started {
        summary["started_at"] = json!(r.start);
    }
    let visible = r.owner_id == actor.user_id || actor.is_admin;
    if let (true, Some(l)) = (visible, lease) {
        summary["uid"] = json!(l.id.0);
        summary["user"] = json!(l.owner);
        summary["user_uid"] = json!(l.owner);
        summary["project"] = json!(l.project);
        summary["name"] = json!(l.name);
        summary["types"] = json!(match l.lease_type {
            LeaseType::Default => vec![],
            LeaseType::Deploy => vec!["deploy"],
            LeaseType::Besteffort => vec!["besteffort"],
        });
        summary["submitted_at"] = json!(l.created_at);
    }
    summary
}
