//! The admin's nodes and audit log (issue 19). `/admin/nodes` lists every
//! node with its shown state, why it is suspect, dead, in maintenance or
//! retired (the reason of its latest event into that state, as the API's
//! `GET /nodes/{name}/events` shows it to an admin), its maintenance flag,
//! its power state as last observed and the lease holding it, filtered by
//! state and cluster on the server. `/admin/nodes/{name}` acts on one
//! node: maintenance on or off with a reason, power on, off, cycle or a
//! status read, through the API's own `set_maintenance` and
//! `request_power`; a power request the BMC has not finished yet is said
//! to be queued, and the page (its URL names the request) says how it
//! ended when reloaded. `/admin/audit` pages back through the audit log
//! with the API's filters (actor, action, target, time range; newest
//! first, by id).
//!
//! Handlers read the query or form, ask `require_admin` (a user gets the
//! 403 page, as on the other admin pages), check the session's
//! anti-forgery token and call the `App` function the API calls; the rules
//! (a reason is required, a retired node stays retired, a node without a
//! BMC has no power) are the application layer's, and a refusal is said
//! beside the form it concerns.
//!
//! Must not: show a node's BMC (address, user name, password): the pages
//! say only whether a node has one.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use serde::Deserialize;

use super::admin::refusal_status;
use super::pages::when;
use super::session::SignedIn;
use super::{NavUser, WebError, page};
use crate::app::{Actor, App, AppError};
use crate::db::{AuditFilter, LeaseRow, NodeRow, PowerRequestRow};
use crate::http::views;
use crate::model::node::shown_state;
use crate::model::time::Seconds;
use crate::model::{NodePolicy, PowerOperation, PowerRequestState};
use crate::power::{BootDevice, PowerAction};
use ferrum_api as api;

/// The audit log's page size.
const AUDIT_PAGE: i64 = 50;

/// The node's events shown on its page, newest first.
const EVENTS_SHOWN: usize = 10;

/// One node as the admin's list and page show it.
#[derive(Debug)]
pub struct NodeLine {
    pub name: String,
    pub site: String,
    pub cluster: String,
    pub state: &'static str,
    /// Why it is suspect, dead, in maintenance or retired: the reason of
    /// its latest event into that state, who and when.
    pub why: Option<String>,
    pub maintenance: &'static str,
    pub power: String,
    pub lease: Option<String>,
    pub has_bmc: bool,
}

fn power_words(reading: Option<&api::PowerReading>) -> String {
    match reading {
        None => "not read yet".into(),
        Some(r) => {
            let how = if r.source == "sync" { "the periodic reading" } else { "a power request" };
            format!("{} (read {}, by {how})", r.state, when(r.observed_at.timestamp()))
        }
    }
}

fn lease_words(lease: &LeaseRow) -> String {
    let name = lease.name.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
    format!("lease {}{name} of {}, {} until {}", lease.id.0, lease.owner, lease.state.as_str(), when(lease.end))
}

/// The reason of the node's latest event into `state`, as the API shows
/// events to `actor`. A node in maintenance while a lease still runs on it
/// shows the lease's state, without a reason (its events have it).
/// TODO-perf: one read of events per such node; a store call for every
/// node's latest event would make it one read for the list.
async fn why(app: &App, actor: &Actor, name: &str, state: api::NodeState) -> Result<Option<String>, WebError> {
    if !state.is_unavailable() {
        return Ok(None);
    }
    let events = views::node_events(app.node_events(actor, name).await?, actor);
    Ok(events.into_iter().rev().find(|e| e.to == state).map(|e| format!("{} ({}, {})", e.reason, e.actor, when(e.at.timestamp()))))
}

async fn node_line(app: &App, actor: &Actor, row: NodeRow, leases: &HashMap<i64, LeaseRow>) -> Result<NodeLine, WebError> {
    let lease = row.lease.and_then(|id| leases.get(&id.0)).map(lease_words);
    let maintenance = match row.policy {
        NodePolicy::InService => "no",
        NodePolicy::Maintenance => "yes",
        NodePolicy::Retired => "retired",
    };
    let view = views::node(row, None, actor.is_admin);
    Ok(NodeLine {
        why: why(app, actor, &view.name, view.state).await?,
        state: view.state.as_str(),
        power: power_words(view.power.as_ref()),
        has_bmc: view.bmc.is_some(),
        maintenance,
        lease,
        name: view.name,
        site: view.site,
        cluster: view.cluster,
    })
}

/// The leases that may hold a node (not over), by id.
async fn current_leases(app: &App, actor: &Actor) -> Result<HashMap<i64, LeaseRow>, WebError> {
    Ok(app.list_leases(actor, None, false).await?.into_iter().map(|l| (l.id.0, l)).collect())
}

/// The list's filter, as the GET form sends it.
#[derive(Debug, Default, Deserialize)]
pub struct NodesQuery {
    #[serde(default)]
    state: String,
    #[serde(default)]
    cluster: String,
}

#[derive(Template)]
#[template(path = "admin_nodes.html")]
struct NodesPage {
    nav: Option<NavUser>,
    active: &'static str,
    error: Option<String>,
    states: Vec<&'static str>,
    clusters: Vec<String>,
    state: String,
    cluster: String,
    total: usize,
    nodes: Vec<NodeLine>,
}

pub async fn nodes(State(app): State<Arc<App>>, s: SignedIn, Query(q): Query<NodesQuery>) -> Result<Response, WebError> {
    let actor = &s.0.actor;
    actor.require_admin()?;
    let (state, cluster) = (q.state.trim().to_owned(), q.cluster.trim().to_owned());
    let mut error = None;
    let wanted = match state.as_str() {
        "" => None,
        s => match api::NodeState::ALL.into_iter().find(|st| st.as_str() == s) {
            Some(st) => Some(st),
            None => {
                let all: Vec<&str> = api::NodeState::ALL.iter().map(|s| s.as_str()).collect();
                error = Some(format!("state: one of {}", all.join(", ")));
                None
            }
        },
    };
    let rows = app.list_nodes(None).await?;
    let total = rows.len();
    let clusters: Vec<String> = rows.iter().map(|r| r.cluster.clone()).collect::<BTreeSet<_>>().into_iter().collect();
    let leases = current_leases(&app, actor).await?;
    let mut nodes = Vec::new();
    for row in rows {
        if !cluster.is_empty() && row.cluster != cluster {
            continue;
        }
        if wanted.is_some_and(|w| shown_state(row.state, row.policy) != w) {
            continue;
        }
        nodes.push(node_line(&app, actor, row, &leases).await?);
    }
    let status = if error.is_some() { StatusCode::BAD_REQUEST } else { StatusCode::OK };
    let body = NodesPage {
        nav: Some(NavUser::from(&s.0)),
        active: "admin-nodes",
        error,
        states: api::NodeState::ALL.iter().map(|s| s.as_str()).collect(),
        clusters,
        state,
        cluster,
        total,
        nodes,
    };
    Ok(page(status, &body))
}

/// What became of a power request, in words.
#[derive(Debug)]
pub struct PowerNote {
    pub text: String,
    /// Not finished: reload to see how it ends.
    pub pending: bool,
    pub failed: bool,
}

fn operation_words(operation: PowerOperation) -> &'static str {
    match operation {
        PowerOperation::Power(PowerAction::On) => "power on",
        PowerOperation::Power(PowerAction::Off) => "power off",
        PowerOperation::Power(PowerAction::SoftOff) => "soft power off",
        PowerOperation::Power(PowerAction::Cycle) => "power cycle",
        PowerOperation::Status => "power status",
        PowerOperation::Boot(BootDevice::Pxe) => "next boot from the network",
        PowerOperation::Boot(BootDevice::Disk) => "next boot from disk",
    }
}

/// `power` is the node's power state as last observed.
fn power_note(r: &PowerRequestRow, power: Option<&api::PowerReading>) -> PowerNote {
    let what = format!("Power request {} ({}) of {}", r.id, operation_words(r.operation), r.node_name);
    let (text, pending, failed) = match r.state {
        PowerRequestState::Queued => {
            (format!("{what} is queued: the BMC has not been asked yet. Reload this page to see how it ends."), true, false)
        }
        PowerRequestState::Running => (format!("{what} is under way at the BMC. Reload this page to see how it ends."), true, false),
        PowerRequestState::Done => {
            let at = r.finished_at.map(|t| format!(" at {}", when(t))).unwrap_or_default();
            let state = power.map(|p| format!(": the power is {}", p.state)).unwrap_or_default();
            (format!("{what} is done{at}{state}."), false, false)
        }
        PowerRequestState::Failed => {
            let why = r.error.as_deref().unwrap_or("the BMC operation failed");
            (format!("{what} failed: {why}."), false, true)
        }
    };
    PowerNote { text, pending, failed }
}

/// One event on a node's page.
#[derive(Debug)]
pub struct EventLine {
    pub at: String,
    pub actor: String,
    pub change: String,
    pub reason: String,
}

/// What a node page's query says was just done.
#[derive(Debug, Default, Deserialize)]
pub struct NodeQuery {
    maintenance: Option<String>,
    power: Option<String>,
}

/// A refusal of one of the node's forms.
#[derive(Debug)]
enum NodeRefusal {
    Maintenance { message: String, typed: String },
    Power(String),
}

#[derive(Template)]
#[template(path = "admin_node.html")]
struct NodePage {
    nav: Option<NavUser>,
    active: &'static str,
    csrf: String,
    node: NodeLine,
    in_maintenance: bool,
    retired: bool,
    note: Option<String>,
    power_note: Option<PowerNote>,
    maintenance_error: Option<String>,
    maintenance_typed: String,
    power_error: Option<String>,
    events: Vec<EventLine>,
    audit_link: String,
}

async fn node_page(
    app: &App,
    s: &SignedIn,
    name: &str,
    status: StatusCode,
    q: NodeQuery,
    refusal: Option<NodeRefusal>,
) -> Result<Response, WebError> {
    let actor = &s.0.actor;
    actor.require_admin()?;
    let detail = app.get_node(name).await?;
    let (in_maintenance, retired) = (detail.row.policy == NodePolicy::Maintenance, detail.row.policy == NodePolicy::Retired);
    let leases = current_leases(app, actor).await?;
    let reading = views::node(detail.row.clone(), None, true).power;
    let node = node_line(app, actor, detail.row, &leases).await?;
    let events = views::node_events(app.node_events(actor, name).await?, actor)
        .into_iter()
        .rev()
        .take(EVENTS_SHOWN)
        .map(|e| EventLine {
            at: when(e.at.timestamp()),
            change: if e.from == e.to { e.to.as_str().to_owned() } else { format!("{} → {}", e.from.as_str(), e.to.as_str()) },
            actor: e.actor,
            reason: e.reason,
        })
        .collect();
    let note = match q.maintenance.as_deref() {
        Some("on") => Some(format!("{name} is in maintenance now: no new lease gets it.")),
        Some("off") => Some(format!("{name} is back in service.")),
        _ => None,
    };
    let power_note = match q.power.as_deref().and_then(|p| p.parse::<i64>().ok()) {
        Some(id) => match app.power_request(actor, id).await {
            Ok(r) if r.node_name == name => Some(power_note(&r, reading.as_ref())),
            Ok(_) | Err(AppError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        },
        None => None,
    };
    let (mut maintenance_error, mut maintenance_typed, mut power_error) = (None, String::new(), None);
    match refusal {
        Some(NodeRefusal::Maintenance { message, typed }) => (maintenance_error, maintenance_typed) = (Some(message), typed),
        Some(NodeRefusal::Power(message)) => power_error = Some(message),
        None => {}
    }
    let audit_link =
        format!("/admin/audit?target={}", url::form_urlencoded::byte_serialize(format!("node/{name}").as_bytes()).collect::<String>());
    let body = NodePage {
        nav: Some(NavUser::from(&s.0)),
        active: "admin-nodes",
        csrf: s.0.csrf.clone(),
        node,
        in_maintenance,
        retired,
        note,
        power_note,
        maintenance_error,
        maintenance_typed,
        power_error,
        events,
        audit_link,
    };
    Ok(page(status, &body))
}

pub async fn node(
    State(app): State<Arc<App>>,
    s: SignedIn,
    Path(name): Path<String>,
    Query(q): Query<NodeQuery>,
) -> Result<Response, WebError> {
    node_page(&app, &s, &name, StatusCode::OK, q, None).await
}

/// The node page's address, for a redirect after a form.
fn node_path(name: &str) -> String {
    format!("/admin/nodes/{}", url::form_urlencoded::byte_serialize(name.as_bytes()).collect::<String>())
}

/// The maintenance form: on (`enabled=true`) or off, and why.
#[derive(Debug, Deserialize)]
pub struct MaintenanceForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    enabled: String,
    #[serde(default)]
    reason: String,
}

pub async fn maintenance(
    State(app): State<Arc<App>>,
    s: SignedIn,
    Path(name): Path<String>,
    Form(form): Form<MaintenanceForm>,
) -> Result<Response, WebError> {
    s.0.actor.require_admin()?;
    s.check_csrf(&form.csrf)?;
    let result = match form.enabled.as_str() {
        "true" => app.set_maintenance(&s.0.actor, &name, true, &form.reason).await.map(|_| true),
        "false" => app.set_maintenance(&s.0.actor, &name, false, &form.reason).await.map(|_| false),
        _ => Err(AppError::bad_request("enabled: true or false")),
    };
    match result {
        Ok(on) => Ok(Redirect::to(&format!("{}?maintenance={}", node_path(&name), if on { "on" } else { "off" })).into_response()),
        Err(e) => match refusal_status(&e) {
            Some(StatusCode::NOT_FOUND) | None => Err(e.into()),
            Some(status) => {
                let refusal = NodeRefusal::Maintenance { message: e.to_string(), typed: form.reason };
                node_page(&app, &s, &name, status, NodeQuery::default(), Some(refusal)).await
            }
        },
    }
}

/// The power form: which button was pressed.
#[derive(Debug, Deserialize)]
pub struct PowerForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    action: String,
}

/// A power action as the API names it (`on`, `off`, `soft-off`, `cycle`,
/// `status`): the portal offers the API's.
fn power_action(name: &str) -> Option<api::PowerActionName> {
    serde_json::from_value(serde_json::Value::String(name.to_owned())).ok()
}

pub async fn power(
    State(app): State<Arc<App>>,
    s: SignedIn,
    Path(name): Path<String>,
    Form(form): Form<PowerForm>,
) -> Result<Response, WebError> {
    s.0.actor.require_admin()?;
    s.check_csrf(&form.csrf)?;
    let result = match power_action(&form.action) {
        Some(action) => app.request_power(&s.0.actor, &name, crate::http::nodes::power_operation(action)).await,
        None => Err(AppError::bad_request("action: one of on, off, soft-off, cycle, status")),
    };
    match result {
        // Done, failed or still queued: the node's page says which, and
        // says it again on reload.
        Ok(request) => Ok(Redirect::to(&format!("{}?power={}", node_path(&name), request.id)).into_response()),
        Err(e) => match refusal_status(&e) {
            Some(StatusCode::NOT_FOUND) | None => Err(e.into()),
            Some(status) => node_page(&app, &s, &name, status, NodeQuery::default(), Some(NodeRefusal::Power(e.to_string()))).await,
        },
    }
}

/// The audit log's filter, as the GET form sends it.
#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    #[serde(default)]
    actor: String,
    #[serde(default)]
    action: String,
    #[serde(default)]
    target: String,
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
    #[serde(default)]
    before: String,
}

/// A time typed in the audit form (see [`super::typed_utc`]); a day alone
/// as the range's end includes that day.
fn parse_time(field: &str, text: &str) -> Result<Option<Seconds>, String> {
    if text.trim().is_empty() {
        return Ok(None);
    }
    super::typed_utc(text, field == "to").map(Some).ok_or_else(|| format!("{field}: a time in UTC, YYYY-MM-DD or YYYY-MM-DD HH:MM"))
}

/// An entry's detail in words: `key: value; ...` (text unquoted).
fn detail_words(detail: &str) -> String {
    match serde_json::from_str::<serde_json::Value>(detail) {
        Ok(serde_json::Value::Object(map)) if map.is_empty() => "-".into(),
        Ok(serde_json::Value::Object(map)) => map
            .iter()
            .map(|(k, v)| match v {
                serde_json::Value::String(s) => format!("{k}: {s}"),
                other => format!("{k}: {other}"),
            })
            .collect::<Vec<_>>()
            .join("; "),
        _ => detail.to_owned(),
    }
}

/// One audit entry.
#[derive(Debug)]
pub struct AuditLine {
    pub id: i64,
    pub at: String,
    pub actor: String,
    pub action: String,
    pub target: String,
    /// The admin page of the target, for a node.
    pub target_link: Option<String>,
    pub detail: String,
}

/// Which audit field an error concerns, for `aria-describedby`.
#[derive(Debug)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

#[derive(Template)]
#[template(path = "admin_audit.html")]
struct AuditPage {
    nav: Option<NavUser>,
    active: &'static str,
    q: AuditQuery,
    error: Option<FieldError>,
    entries: Vec<AuditLine>,
    older: Option<String>,
    paged: bool,
}

/// The audit page's query for `before` with the same filters.
fn audit_query(q: &AuditQuery, before: i64) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in [("actor", &q.actor), ("action", &q.action), ("target", &q.target), ("from", &q.from), ("to", &q.to)] {
        if !v.trim().is_empty() {
            s.append_pair(k, v.trim());
        }
    }
    s.append_pair("before", &before.to_string());
    format!("/admin/audit?{}", s.finish())
}

pub async fn audit(State(app): State<Arc<App>>, s: SignedIn, Query(q): Query<AuditQuery>) -> Result<Response, WebError> {
    let actor = &s.0.actor;
    actor.require_admin()?;
    let text = |v: &str| Some(v.trim().to_owned()).filter(|v| !v.is_empty());
    let filter = (|| {
        let from = parse_time("from", &q.from).map_err(|m| FieldError { field: "from", message: m })?;
        let to = parse_time("to", &q.to).map_err(|m| FieldError { field: "to", message: m })?;
        let before_id = match q.before.trim() {
            "" => None,
            b => Some(b.parse::<i64>().map_err(|_| FieldError { field: "before", message: "before: an entry's id".into() })?),
        };
        Ok::<_, FieldError>(AuditFilter {
            from,
            to,
            actor: text(&q.actor),
            action: text(&q.action),
            target: text(&q.target),
            before_id,
            // One more than shown: whether there are older entries.
            limit: AUDIT_PAGE + 1,
        })
    })();
    let (status, error, mut rows) = match filter {
        Ok(filter) => (StatusCode::OK, None, app.audit_log(actor, filter).await?),
        Err(e) => (StatusCode::BAD_REQUEST, Some(e), Vec::new()),
    };
    let more = rows.len() > AUDIT_PAGE as usize;
    rows.truncate(AUDIT_PAGE as usize);
    let older = if more { rows.last().map(|r| audit_query(&q, r.id)) } else { None };
    let entries = rows
        .into_iter()
        .map(|r| AuditLine {
            id: r.id,
            at: when(r.at),
            target_link: r.target.strip_prefix("node/").map(node_path),
            detail: detail_words(&r.detail),
            actor: r.actor,
            action: r.action,
            target: r.target,
        })
        .collect();
    let paged = !q.before.trim().is_empty();
    let body = AuditPage { nav: Some(NavUser::from(&s.0)), active: "admin-audit", q, error, entries, older, paged };
    Ok(page(status, &body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_times_are_utc_in_a_few_spellings() {
        let t = |s| parse_time("from", s);
        assert_eq!(t(""), Ok(None));
        assert_eq!(t("2026-12-07"), Ok(Some(1_796_601_600)));
        assert_eq!(t("2026-12-07 10:30"), Ok(Some(1_796_601_600 + 37_800)));
        assert_eq!(t("2026-12-07T10:30"), Ok(Some(1_796_601_600 + 37_800)));
        assert_eq!(t("2026-12-07T10:30:05Z"), Ok(Some(1_796_601_600 + 37_805)));
        assert_eq!(t("2026-12-07T11:30:05+01:00"), Ok(Some(1_796_601_600 + 37_805)));
        assert_eq!(t("yesterday"), Err("from: a time in UTC, YYYY-MM-DD or YYYY-MM-DD HH:MM".into()));
        // A day alone as the end includes that day.
        assert_eq!(parse_time("to", "2026-12-07"), Ok(Some(1_796_601_600 + 86_400)));
    }

    #[test]
    fn an_audit_detail_reads_as_words() {
        assert_eq!(detail_words(r#"{"maintenance":true,"reason":"disk swap"}"#), "maintenance: true; reason: disk swap");
        assert_eq!(detail_words("{}"), "-");
        assert_eq!(detail_words("not json"), "not json");
    }

    #[test]
    fn the_older_page_keeps_the_filters() {
        let q = AuditQuery { actor: " admin ".into(), target: "node/sim-1".into(), ..Default::default() };
        assert_eq!(audit_query(&q, 42), "/admin/audit?actor=admin&target=node%2Fsim-1&before=42");
    }

    #[test]
    fn only_the_apis_power_actions_are_offered() {
        assert_eq!(power_action("cycle"), Some(api::PowerActionName::Cycle));
        assert_eq!(power_action("Cycle"), None);
        assert_eq!(power_action("reboot"), None);
    }
}
