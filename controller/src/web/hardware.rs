//! The hardware catalog (issue 19), for signed-in users: `/hardware`
//! (sites and clusters, each cluster's facts and nodes per state, and the
//! filter builder), `/hardware/{cluster}` (its nodes),
//! `/hardware/nodes/{name}` (a node: its reference description beside its
//! agent's report with the differences marked, its state, recent events
//! and the leases on it) and `/hardware/_count` (the number of nodes a
//! filter selects, as JSON, for `static/hardware.js`).
//!
//! The handlers call the application functions the API's handlers call
//! (`list_nodes`, which parses a filter with the lease API's parser,
//! `get_node`, `node_inventory`, `node_events`, `calendar_view`) and shape
//! what they answer with the API's `http::views`, so a page shows a user
//! exactly what the API would: no BMC data, others' leases without owner
//! or id, events redacted. Must not: decide visibility itself, or parse a
//! filter any other way.

use std::collections::BTreeSet;
use std::sync::Arc;

use askama::Template;
use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use ferrum_api as api;
use serde::Deserialize;

use super::catalog::{self, ClusterSummary, Helpers, SiteSummary};
use super::inventory::{self, FactGroup};
use super::pages::when;
use super::session::{MaybeSignedIn, SignedIn};
use super::{NavUser, WebError, page};
use crate::app::{Actor, App, AppError};
use crate::http::views;
use crate::model::time::to_seconds;

/// How many of a node's latest events its page shows.
const RECENT_EVENTS: usize = 20;

/// How far ahead a node's page lists leases: the reservation horizon,
/// within the calendar's window limit.
const MAX_WINDOW: i64 = 400 * 86_400;

/// `text` encoded for a link's query.
fn encoded(text: &str) -> String {
    url::form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

/// Every node as `actor` may see it (the API's view).
async fn nodes(app: &App, actor: &Actor, filter: Option<&str>) -> Result<Vec<api::Node>, AppError> {
    Ok(app.list_nodes(filter).await?.into_iter().map(|r| views::node(r, None, actor.is_admin)).collect())
}

/// The names of the nodes `filter` selects, or the parser's words.
async fn matching(app: &App, filter: &str) -> Result<Result<Vec<String>, String>, WebError> {
    match app.list_nodes(Some(filter)).await {
        Ok(rows) => Ok(Ok(rows.into_iter().map(|r| r.name).collect())),
        Err(AppError::BadRequest { message, .. }) => Ok(Err(message)),
        Err(other) => Err(other.into()),
    }
}

/// The catalog's query: the filter text, the helpers as chosen, and as
/// they were when the page was drawn (`prev_*`: the conditions the text
/// holds already, which a changed helper replaces).
#[derive(Debug, Default, Deserialize)]
pub struct CatalogQuery {
    filter: Option<String>,
    #[serde(default)]
    cluster: String,
    #[serde(default)]
    gpu_model: String,
    #[serde(default)]
    min_gpus: String,
    #[serde(default)]
    min_memory: String,
    #[serde(default)]
    prev_cluster: String,
    #[serde(default)]
    prev_gpu_model: String,
    #[serde(default)]
    prev_min_gpus: String,
    #[serde(default)]
    prev_min_memory: String,
}

impl CatalogQuery {
    fn helpers(&self) -> (Helpers, Helpers) {
        let now = Helpers {
            cluster: self.cluster.clone(),
            gpu_model: self.gpu_model.clone(),
            min_gpus: self.min_gpus.clone(),
            min_memory: self.min_memory.clone(),
        };
        let before = Helpers {
            cluster: self.prev_cluster.clone(),
            gpu_model: self.prev_gpu_model.clone(),
            min_gpus: self.prev_min_gpus.clone(),
            min_memory: self.prev_min_memory.clone(),
        };
        (before, now)
    }
}

/// What the filter selected: `(matching, total)`, or the parser's words.
#[derive(Debug)]
pub enum FilterResult {
    Counted { matching: usize, total: usize },
    Refused(String),
}

#[derive(Template)]
#[template(path = "hardware.html")]
struct CatalogPage {
    nav: Option<NavUser>,
    active: &'static str,
    total: usize,
    sites: Vec<SiteSummary>,
    filter: String,
    /// The filter, encoded for a link's query.
    filter_query: String,
    helpers: Helpers,
    clusters: Vec<String>,
    gpu_models: Vec<String>,
    result: Option<FilterResult>,
}

pub async fn catalog(State(app): State<Arc<App>>, s: SignedIn, Query(q): Query<CatalogQuery>) -> Result<Response, WebError> {
    let actor = &s.0.actor;
    let all = nodes(&app, actor, None).await?;
    let (before, now) = q.helpers();
    let asked = q.filter.is_some() || now != Helpers::default();
    let filter = catalog::compose(q.filter.as_deref().unwrap_or_default(), &before, &now);
    let (result, names) = if asked && !filter.is_empty() {
        match matching(&app, &filter).await? {
            Ok(names) => (Some(FilterResult::Counted { matching: names.len(), total: all.len() }), Some(names)),
            Err(message) => (Some(FilterResult::Refused(message)), None),
        }
    } else {
        (None, None)
    };
    let clusters: BTreeSet<&str> = all.iter().map(|n| n.cluster.as_str()).collect();
    let mut clusters: Vec<String> = clusters.into_iter().map(str::to_owned).collect();
    clusters.sort_by(|a, b| crate::reference::natural_cmp(a, b));
    let models: BTreeSet<&str> =
        all.iter().filter_map(|n| n.properties.get("gpu_model").and_then(serde_json::Value::as_str)).filter(|m| !m.is_empty()).collect();
    let status = if matches!(result, Some(FilterResult::Refused(_))) { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let body = CatalogPage {
        nav: Some(NavUser::from(&s.0)),
        active: "hardware",
        total: all.len(),
        sites: catalog::catalog(&all, names.as_deref()),
        filter_query: encoded(&filter),
        filter,
        helpers: now,
        clusters,
        gpu_models: models.into_iter().map(str::to_owned).collect(),
        result,
    };
    Ok(page(status, &body))
}

/// The filter builder's question.
#[derive(Debug, Deserialize)]
pub struct CountQuery {
    #[serde(default)]
    filter: String,
}

/// The filter builder's answer: `{"count": N}`, or `{"error": "..."}` (the
/// parser's words, 400); 401 without a session.
pub async fn count(State(app): State<Arc<App>>, MaybeSignedIn(session): MaybeSignedIn, Query(q): Query<CountQuery>) -> Response {
    let error = |status: StatusCode, message: &str| (status, Json(serde_json::json!({ "error": message }))).into_response();
    if session.is_none() {
        return error(StatusCode::UNAUTHORIZED, "sign in again to count nodes");
    }
    match app.list_nodes(Some(&q.filter)).await {
        Ok(rows) => Json(serde_json::json!({ "count": rows.len() })).into_response(),
        Err(AppError::BadRequest { message, .. }) => error(StatusCode::BAD_REQUEST, &message),
        Err(e) => {
            tracing::error!(error = ?e, "internal error counting nodes for the portal");
            error(StatusCode::INTERNAL_SERVER_ERROR, "the server could not count the nodes; the error is in its log")
        }
    }
}

/// One node line of a cluster's page.
#[derive(Debug)]
pub struct NodeLine {
    pub name: String,
    pub state: &'static str,
    pub memory: String,
    pub gpus: String,
    pub accelerators: String,
    pub disks: String,
    pub network: String,
}

#[derive(Template)]
#[template(path = "hardware_cluster.html")]
struct ClusterPage {
    nav: Option<NavUser>,
    active: &'static str,
    summary: ClusterSummary,
    /// `cluster = 'NAME'`, encoded for the calendar link's query.
    calendar_filter: String,
    filter: String,
    error: Option<String>,
    nodes: Vec<NodeLine>,
}

#[derive(Debug, Deserialize)]
pub struct ClusterQuery {
    filter: Option<String>,
}

pub async fn cluster(
    State(app): State<Arc<App>>,
    s: SignedIn,
    Path(name): Path<String>,
    Query(q): Query<ClusterQuery>,
) -> Result<Response, WebError> {
    let all = nodes(&app, &s.0.actor, None).await?;
    let grouped = catalog::by_cluster(&all);
    let Some(members) = grouped.iter().flat_map(|(_, clusters)| clusters).find(|(c, _)| *c == name).map(|(_, n)| n) else {
        return Err(WebError::App(AppError::NotFound(format!("there is no cluster '{name}'"))));
    };
    let filter = q.filter.map(|f| f.trim().to_owned()).unwrap_or_default();
    let (names, error) = if filter.is_empty() {
        (None, None)
    } else {
        match matching(&app, &filter).await? {
            Ok(names) => (Some(names), None),
            Err(message) => (None, Some(message)),
        }
    };
    let nodes = members
        .iter()
        .filter(|n| names.as_ref().is_none_or(|names| names.contains(&n.name)))
        .map(|n| NodeLine {
            name: n.name.clone(),
            state: n.state.as_str(),
            memory: catalog::memory(n),
            gpus: catalog::gpus(n),
            accelerators: catalog::accelerators(n),
            disks: catalog::disks(n),
            network: catalog::network(n),
        })
        .collect();
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let body = ClusterPage {
        nav: Some(NavUser::from(&s.0)),
        active: "hardware-cluster",
        summary: ClusterSummary::of(members, names.as_deref()),
        calendar_filter: encoded(&format!("cluster = {}", catalog::quoted(&name))),
        filter,
        error,
        nodes,
    };
    Ok(page(status, &body))
}

/// One event line of a node's page.
#[derive(Debug)]
pub struct EventLine {
    pub at: String,
    pub from: &'static str,
    pub to: &'static str,
    pub actor: String,
    pub reason: String,
}

/// One lease interval on a node, as the calendar shows it to the caller.
#[derive(Debug)]
pub struct BusyLine {
    pub start: String,
    pub end: String,
    pub kind: &'static str,
    pub state: &'static str,
    /// Whose, in words: "yours (lease 12)", "lease 12 of bob", "another
    /// user's".
    pub whose: String,
}

/// A filter property line: name and value.
#[derive(Debug)]
pub struct PropertyLine {
    pub name: String,
    pub value: String,
}

#[derive(Template)]
#[template(path = "hardware_node.html")]
struct NodePage {
    nav: Option<NavUser>,
    active: &'static str,
    node: api::Node,
    /// `host = 'NAME'`, encoded for the calendar link's query.
    calendar_filter: String,
    bmc: Option<String>,
    power: Option<String>,
    has_reference: bool,
    reported: Option<String>,
    differences: Vec<String>,
    groups: Vec<FactGroup>,
    properties: Vec<PropertyLine>,
    events: Vec<EventLine>,
    busy: Vec<BusyLine>,
    until: String,
}

pub async fn node(State(app): State<Arc<App>>, s: SignedIn, Path(name): Path<String>) -> Result<Response, WebError> {
    let actor = &s.0.actor;
    let node = views::node_detail(app.get_node(&name).await?, actor.is_admin);
    let inv = views::node_inventory(name.clone(), app.node_inventory(&name).await?, actor.is_admin);
    let events = views::node_events(app.node_events(actor, &name).await?, actor);
    let now = app.now();
    let horizon = i64::try_from(app.config.leases.max_horizon.as_secs()).unwrap_or(MAX_WINDOW).clamp(86_400, MAX_WINDOW);
    let (_, until, calendar) = app.calendar_view(Some(now), Some(now + horizon), None).await?;
    let busy = calendar
        .into_iter()
        .find(|(n, _)| n.name == name)
        .map(|(_, busy)| busy)
        .unwrap_or_default()
        .into_iter()
        .map(|b| views::busy(b, actor))
        .map(|b| BusyLine {
            start: when(to_seconds(b.start)),
            end: when(to_seconds(b.end)),
            kind: b.lease_type.as_str(),
            state: b.state.as_str(),
            whose: match (b.mine, b.lease, b.owner) {
                (true, Some(id), _) => format!("yours (lease {id})"),
                (true, None, _) => "yours".into(),
                (false, Some(id), Some(owner)) => format!("lease {id} of {owner}"),
                _ => "another user's".into(),
            },
        })
        .collect();
    let events = events
        .into_iter()
        .rev()
        .take(RECENT_EVENTS)
        .map(|e| EventLine { at: when(to_seconds(e.at)), from: e.from.as_str(), to: e.to.as_str(), actor: e.actor, reason: e.reason })
        .collect();
    let differences = inv.differences.clone().unwrap_or_default();
    let report = inv.reported.as_ref().map(|r| &r.report);
    let groups = inventory::groups(inv.reference.as_ref(), report, &differences);
    let bmc = node.bmc.as_ref().map(|b| format!("{} {}:{}", b.driver, b.host, b.port));
    let power = node.power.as_ref().map(|p| format!("{} (read {} by {})", p.state, when(to_seconds(p.observed_at)), p.source));
    let properties = node
        .properties
        .iter()
        .map(|(k, v)| PropertyLine { name: k.clone(), value: v.as_str().map_or_else(|| v.to_string(), |t| format!("'{t}'")) })
        .collect();
    let body = NodePage {
        nav: Some(NavUser::from(&s.0)),
        active: "hardware-node",
        has_reference: inv.reference.is_some(),
        reported: inv.reported.as_ref().map(|r| format!("{} (agent generation {})", when(to_seconds(r.reported_at)), r.generation)),
        differences: differences.into_iter().map(|d| d.message).collect(),
        groups,
        properties,
        events,
        busy,
        until: when(until),
        bmc,
        power,
        calendar_filter: encoded(&format!("host = {}", catalog::quoted(&node.name))),
        node,
    };
    Ok(page(StatusCode::OK, &body))
}
