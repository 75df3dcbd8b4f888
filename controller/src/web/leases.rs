//! My leases (issue 19, item 6): `/leases`, the signed-in user's leases
//! (running and upcoming first, then those over in the last 30 days; an
//! admin's own, or everyone's with `?all=1`), and `/leases/{id}`, one
//! lease with its nodes, its deployments and each node's deploy progress,
//! and its actions as forms: extend, release or cancel, redeploy.
//!
//! Handlers read the form, check the session's anti-forgery token and call
//! the `App` function the API calls (`get_lease`, `list_leases`,
//! `extend_lease`, `end_lease`, `lease_deployments`, `create_deployment`),
//! so who may see or act on a lease is the application layer's: another
//! user's lease is the API's 404 (`lease 'N' does not exist`), whatever
//! the form says, and a refusal (policy, a booked node, the horizon, a
//! lease not active) comes back in words beside the form it concerns.
//!
//! Live progress: `/leases/{id}/events` is a Server-Sent Events stream of
//! the same session, fed by polling the deployments every second (what
//! `GET /api/v1/deployments/{id}` shows) while a deployment runs or the
//! lease is starting; it says `end` and closes when nothing moves.
//! `static/lease.js` writes each `progress` event into the page's table;
//! without it the page shows the state at load and a "Refresh" link.
//!
//! Must not: decide visibility (the application layer does), or show more
//! of a deployment than the API's view of it.

use std::sync::Arc;
use std::time::Duration;

use askama::Template;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, Utc};
use ferrum_api::deployment::{Deployment, NodeOperation};
use serde::{Deserialize, Serialize};

use super::pages::when;
use super::session::SignedIn;
use super::{NavUser, WebError, page};
use crate::app::leases::parse_duration;
use crate::app::{Actor, App, AppError};
use crate::db::LeaseRow;
use crate::model::{LeaseState, Seconds, lease};
use ferrum_api as api;

/// How far back the list shows leases that are over.
const PAST: Seconds = 30 * 24 * 3600;
/// How often the progress stream reads the deployments again.
const POLL: Duration = Duration::from_secs(1);
/// How long one progress stream lasts at most: then it closes and the
/// browser reconnects (after `RECONNECT`). A graceful shutdown waits for
/// open answers, so a stream is bounded as the agents' long polls are.
const STREAM_LIFE: Duration = Duration::from_secs(30);
/// When a browser reconnects a stream that closed without `end`.
const RECONNECT: Duration = Duration::from_secs(2);

/// `?all=1`: every user's leases (admins).
#[derive(Debug, Default, Deserialize)]
pub struct ListQuery {
    all: Option<String>,
}

/// One line of the list.
#[derive(Debug)]
pub struct LeaseLine {
    pub id: i64,
    pub name: String,
    pub owner: String,
    pub state: &'static str,
    pub start: String,
    pub end: String,
    pub count: usize,
    /// Its nodes' names, comma-separated.
    pub nodes: String,
}

#[derive(Template)]
#[template(path = "leases.html")]
struct ListPage {
    nav: Option<NavUser>,
    active: &'static str,
    is_admin: bool,
    all: bool,
    current: Vec<LeaseLine>,
    past: Vec<LeaseLine>,
}

/// A lease as the lists show it (here and on the home page).
pub(super) fn line(l: &LeaseRow) -> LeaseLine {
    LeaseLine {
        id: l.id.0,
        name: l.name.clone().unwrap_or_else(|| "-".into()),
        owner: l.owner.clone(),
        state: l.state.as_str(),
        start: when(l.start),
        end: when(l.end),
        count: l.nodes.len(),
        nodes: l.nodes.iter().map(|(_, n)| n.as_str()).collect::<Vec<_>>().join(", "),
    }
}

/// Splits leases into running and upcoming (soonest first) and those over
/// since `now - PAST` (latest end first); older ones are left out.
fn split(mut leases: Vec<LeaseRow>, now: Seconds) -> (Vec<LeaseRow>, Vec<LeaseRow>) {
    leases.retain(|l| !lease::is_terminal(l.state) || l.end >= now - PAST);
    let (mut past, mut current): (Vec<LeaseRow>, Vec<LeaseRow>) = leases.into_iter().partition(|l| lease::is_terminal(l.state));
    current.sort_by_key(|l| (l.start, l.id.0));
    past.sort_by_key(|l| (std::cmp::Reverse(l.end), std::cmp::Reverse(l.id.0)));
    (current, past)
}

pub async fn list(State(app): State<Arc<App>>, s: SignedIn, Query(q): Query<ListQuery>) -> Result<Response, WebError> {
    let actor = &s.0.actor;
    let all = actor.is_admin && q.all.as_deref().is_some_and(|v| v == "1" || v == "true");
    let mut leases = app.list_leases(actor, None, true).await?;
    if !all {
        leases.retain(|l| l.owner_id == actor.user_id);
    }
    let (current, past) = split(leases, app.now());
    let body = ListPage {
        nav: Some(NavUser::from(&s.0)),
        active: "leases",
        is_admin: actor.is_admin,
        all,
        current: current.iter().map(line).collect(),
        past: past.iter().map(line).collect(),
    };
    Ok(page(StatusCode::OK, &body))
}

/// One node's deploy, as the page and the progress stream show it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct OpLine {
    pub node: String,
    pub state: &'static str,
    pub phase: &'static str,
    pub attempt: u32,
    /// `12.0 of 48.0 MiB`, or `-` before the write.
    pub written: String,
    /// Since the deploy started (to its end once over).
    pub elapsed: String,
    /// In the current phase (`-` once over).
    pub in_phase: String,
    pub message: String,
    /// `ssh root@ADDRESS`, once deployed.
    pub ssh: Option<String>,
}

/// One deployment of the lease.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct DeploymentLine {
    pub id: i64,
    pub environment: String,
    pub version: u64,
    pub owner: Option<String>,
    pub sha256: Option<String>,
    pub state: &'static str,
    pub requested_by: String,
    pub created: String,
    pub error: Option<String>,
    pub nodes: Vec<OpLine>,
}

/// What the progress stream sends (event `progress`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Progress {
    pub lease_state: &'static str,
    /// Whether something may still change without a user's action.
    pub moving: bool,
    pub deployments: Vec<DeploymentLine>,
}

const MIB: f64 = 1024.0 * 1024.0;

/// Seconds in words: `42 s`, `3 min 05 s`, `1 h 02 min`.
pub fn duration_words(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as i64;
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {:02} s", s / 60, s % 60),
        _ => format!("{} h {:02} min", s / 3600, (s % 3600) / 60),
    }
}

fn written(op: &NodeOperation) -> String {
    match (op.bytes_written, op.bytes_total) {
        (Some(w), Some(t)) => format!("{:.1} of {:.1} MiB", w as f64 / MIB, t as f64 / MIB),
        (Some(w), None) => format!("{:.1} MiB", w as f64 / MIB),
        _ => "-".into(),
    }
}

pub fn op_line(op: &NodeOperation, now: DateTime<Utc>) -> OpLine {
    let until = op.finished_at.unwrap_or(now);
    let running = op.state == api::deployment::OperationState::Running;
    OpLine {
        node: op.node.clone(),
        state: op.state.as_str(),
        phase: op.phase.as_str(),
        attempt: op.attempt,
        written: written(op),
        elapsed: duration_words((until - op.started_at).num_milliseconds() as f64 / 1000.0),
        in_phase: if running { duration_words(op.phase_seconds) } else { "-".into() },
        message: op.message.clone().unwrap_or_else(|| "-".into()),
        ssh: op.ssh.as_ref().map(|s| format!("ssh {s}")),
    }
}

pub fn deployment_line(d: &Deployment, now: DateTime<Utc>) -> DeploymentLine {
    DeploymentLine {
        id: d.id,
        environment: d.environment.clone(),
        version: d.version,
        owner: d.environment_owner.clone(),
        sha256: d.image_sha256.clone(),
        state: d.state.as_str(),
        requested_by: d.requested_by.clone(),
        created: when(d.created_at.timestamp()),
        error: d.error.clone(),
        nodes: d.nodes.iter().map(|op| op_line(op, now)).collect(),
    }
}

fn progress(state: LeaseState, deployments: &[Deployment], now: DateTime<Utc>) -> Progress {
    let running = deployments.iter().any(|d| d.state == api::deployment::DeploymentState::Running);
    Progress {
        lease_state: state.as_str(),
        moving: running || state == LeaseState::Starting,
        deployments: deployments.iter().map(|d| deployment_line(d, now)).collect(),
    }
}

/// The `ssh` lines of the nodes whose latest deploy is done, while the
/// lease holds them.
fn ssh_lines(state: LeaseState, deployments: &[DeploymentLine]) -> Vec<String> {
    if state != LeaseState::Active {
        return Vec::new();
    }
    let mut latest: Vec<(&str, Option<&String>)> = Vec::new();
    for op in deployments.iter().flat_map(|d| &d.nodes) {
        match latest.iter_mut().find(|(n, _)| *n == op.node) {
            Some(entry) => entry.1 = op.ssh.as_ref(),
            None => latest.push((&op.node, op.ssh.as_ref())),
        }
    }
    latest.into_iter().filter_map(|(_, ssh)| ssh.cloned()).collect()
}

/// Now on the application's clock (the one operations are timed on).
fn clock(app: &App) -> DateTime<Utc> {
    DateTime::from_timestamp(app.now(), 0).unwrap_or_default()
}

/// Which of the lease's forms a refusal concerns.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Action {
    Extend,
    End,
    Deploy,
}

/// A refusal beside its form, with what was typed.
#[derive(Debug, Default)]
pub struct Forms {
    pub extend_error: Option<String>,
    pub extend_typed: String,
    pub end_error: Option<String>,
    pub deploy_error: Option<String>,
    pub deploy_typed: String,
}

#[derive(Template)]
#[template(path = "lease.html")]
struct DetailPage {
    nav: Option<NavUser>,
    active: &'static str,
    csrf: String,
    note: Option<String>,
    id: i64,
    name: Option<String>,
    owner: String,
    mine: bool,
    project: String,
    lease_type: &'static str,
    state: &'static str,
    reason: Option<String>,
    start: String,
    end: String,
    created: String,
    nodes: Vec<String>,
    filter: Option<String>,
    /// What the lease deploys when it starts (booked with an environment).
    deploys: Option<String>,
    exotic: bool,
    can_extend: bool,
    /// `Release` (running) or `Cancel` (not started), if it can end.
    end_verb: Option<&'static str>,
    /// Whether it has started (release) or not (cancel).
    started: bool,
    can_deploy: bool,
    keys: usize,
    deployments: Vec<DeploymentLine>,
    ssh: Vec<String>,
    moving: bool,
    forms: Forms,
}

/// What the last action did, for the note at the top (no free text).
#[derive(Debug, Default, Deserialize)]
pub struct DoneQuery {
    done: Option<String>,
    deployment: Option<String>,
}

impl DoneQuery {
    fn note(&self) -> Option<String> {
        match self.done.as_deref()? {
            "extended" => Some("Extended: the new end is below.".into()),
            "released" => Some("Released: its nodes are being reset.".into()),
            "cancelled" => Some("Cancelled: its nodes are free again.".into()), // tidy:not-a-state
            "deployed" => {
                let id = self.deployment.as_deref().and_then(|d| d.parse::<i64>().ok())?;
                Some(format!("Deployment {id} started: its progress is below."))
            }
            _ => None,
        }
    }
}

async fn detail_page(
    app: &App,
    s: &SignedIn,
    id: i64,
    status: StatusCode,
    note: Option<String>,
    forms: Forms,
) -> Result<Response, WebError> {
    let actor = &s.0.actor;
    let l = app.get_lease(actor, id).await?;
    let deployments = app.lease_deployments(actor, id).await?;
    let p = progress(l.state, &deployments, clock(app));
    // A deployment installs the owner's keys (an admin's page says so).
    let keys = app.ssh_keys(actor, &l.owner).await?.len();
    let mut forms = forms;
    if forms.deploy_typed.is_empty() {
        forms.deploy_typed = deployments.last().map(|d| d.environment.clone()).unwrap_or_default();
    }
    let body = DetailPage {
        nav: Some(NavUser::from(&s.0)),
        active: "leases-detail",
        csrf: s.0.csrf.clone(),
        note,
        id: l.id.0,
        name: l.name.clone(),
        mine: l.owner_id == actor.user_id,
        owner: l.owner.clone(),
        project: l.project.clone().unwrap_or_else(|| "-".into()),
        lease_type: l.lease_type.as_str(),
        state: l.state.as_str(),
        reason: l.reason.clone(),
        start: when(l.start),
        end: when(l.end),
        created: when(l.created_at),
        nodes: l.nodes.iter().map(|(_, n)| n.clone()).collect(),
        filter: l.filter.clone(),
        deploys: l
            .deploy
            .as_deref()
            .and_then(|d| serde_json::from_str::<api::DeploySpec>(d).ok())
            .map(|d| format!("{}, with {} SSH key(s), when it starts", d.environment, d.ssh_keys.len())),
        exotic: l.exotic,
        can_extend: lease::holds_slot(l.state),
        // What the model says ending it now does: a cancellation before it
        // starts, a release while it runs, nothing once it ends.
        end_verb: match lease::next(l.state, lease::LeaseInput::Released) {
            Ok((LeaseState::Cancelled, _)) => Some("Cancel"),
            Ok((LeaseState::Ending, lease::LeaseAction::EndAndReset)) => Some("Release"),
            _ => None,
        },
        started: lease::RUNNING.contains(&l.state),
        can_deploy: l.state == LeaseState::Active,
        keys,
        ssh: ssh_lines(l.state, &p.deployments),
        moving: p.moving,
        deployments: p.deployments,
        forms,
    };
    Ok(page(status, &body))
}

pub async fn detail(
    State(app): State<Arc<App>>,
    s: SignedIn,
    Path(id): Path<i64>,
    Query(q): Query<DoneQuery>,
) -> Result<Response, WebError> {
    detail_page(&app, &s, id, StatusCode::OK, q.note(), Forms::default()).await
}

/// A refusal to show beside its form (with its status); anything else is
/// an error page (another user's lease: the API's 404). A deployment's
/// "not found" is its environment's (the lease was found first).
fn refused(app_error: AppError, action: Action, typed: String) -> Result<(StatusCode, Forms), WebError> {
    let status = match &app_error {
        AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
        AppError::Forbidden(_) => StatusCode::FORBIDDEN,
        AppError::Conflict { .. } => StatusCode::CONFLICT,
        AppError::NotFound(_) if action == Action::Deploy => StatusCode::NOT_FOUND,
        _ => return Err(app_error.into()),
    };
    let message = app_error.to_string();
    let mut forms = Forms::default();
    match action {
        Action::Extend => {
            forms.extend_error = Some(message);
            forms.extend_typed = typed;
        }
        Action::End => forms.end_error = Some(message),
        Action::Deploy => {
            forms.deploy_error = Some(message);
            forms.deploy_typed = typed;
        }
    }
    Ok((status, forms))
}

/// The new end a form asks for: `+DURATION` after the current end, or a
/// time in UTC (`YYYY-MM-DD HH:MM`, the `T` form, or RFC 3339).
pub fn new_end(text: &str, current_end: Seconds) -> Result<Seconds, AppError> {
    let text = text.trim();
    if let Some(rest) = text.strip_prefix('+') {
        return current_end
            .checked_add(parse_duration("end", rest.trim())?)
            .ok_or_else(|| AppError::bad_request("end: too far in the future"));
    }
    super::typed_utc(text, false)
        .ok_or_else(|| AppError::bad_request("end: a time in UTC (2026-12-24 18:00) or a duration to add (+2h, +30m, +1d)"))
}

#[derive(Debug, Deserialize)]
pub struct ExtendForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    end: String,
}

pub async fn extend(
    State(app): State<Arc<App>>,
    s: SignedIn,
    Path(id): Path<i64>,
    Form(form): Form<ExtendForm>,
) -> Result<Response, WebError> {
    s.check_csrf(&form.csrf)?;
    let actor = &s.0.actor;
    // Another user's lease is not found here, before anything is parsed.
    let current = app.get_lease(actor, id).await?;
    let outcome = match new_end(&form.end, current.end) {
        Ok(end) => app.extend_lease(actor, id, end).await,
        Err(e) => Err(e),
    };
    match outcome {
        Ok(_) => Ok(Redirect::to(&format!("/leases/{id}?done=extended")).into_response()),
        Err(e) => {
            let (status, forms) = refused(e, Action::Extend, form.end)?;
            detail_page(&app, &s, id, status, None, forms).await
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

pub async fn end(State(app): State<Arc<App>>, s: SignedIn, Path(id): Path<i64>, Form(form): Form<CsrfForm>) -> Result<Response, WebError> {
    s.check_csrf(&form.csrf)?;
    match app.end_lease(&s.0.actor, id).await {
        Ok(l) => {
            let done = if l.state == LeaseState::Cancelled { "cancelled" } else { "released" }; // tidy:not-a-state
            Ok(Redirect::to(&format!("/leases/{id}?done={done}")).into_response())
        }
        Err(e) => {
            let (status, forms) = refused(e, Action::End, String::new())?;
            detail_page(&app, &s, id, status, None, forms).await
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct DeployForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    environment: String,
}

pub async fn deploy(
    State(app): State<Arc<App>>,
    s: SignedIn,
    Path(id): Path<i64>,
    Form(form): Form<DeployForm>,
) -> Result<Response, WebError> {
    s.check_csrf(&form.csrf)?;
    let actor = &s.0.actor;
    // Another user's lease is not found here (the API's 404 page).
    let lease = app.get_lease(actor, id).await?;
    // The keys of the lease owner's profile, as the API takes them: an
    // admin deploying on a user's lease must not lock its owner out.
    let ssh_keys = app.ssh_keys(actor, &lease.owner).await?.into_iter().map(|k| k.public_key).collect();
    let spec = api::DeploymentCreate { environment: form.environment.trim().to_owned(), ssh_keys, nodes: None };
    match app.create_deployment(actor, id, spec).await {
        Ok(d) => Ok(Redirect::to(&format!("/leases/{id}?done=deployed&deployment={}#deployment-{}", d.id, d.id)).into_response()),
        Err(e) => {
            let (status, forms) = refused(e, Action::Deploy, form.environment)?;
            detail_page(&app, &s, id, status, None, forms).await
        }
    }
}

/// Where the progress stream is.
enum StreamState {
    Poll,
    End,
    Closed,
}

/// The live progress of a lease's deployments (Server-Sent Events): a
/// `progress` event at once and each second while something moves, then
/// `end`; or, after `STREAM_LIFE`, the stream closes without `end` and
/// the browser asks again. Another user's lease: the 404 page, as the
/// lease's page.
pub async fn events(State(app): State<Arc<App>>, s: SignedIn, Path(id): Path<i64>) -> Result<Response, WebError> {
    let actor: Actor = s.0.actor.clone();
    app.get_lease(&actor, id).await?;
    let closes_at = tokio::time::Instant::now() + STREAM_LIFE;
    let mut ticks = tokio::time::interval(POLL);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let stream = futures_util::stream::unfold((StreamState::Poll, ticks), move |(state, mut ticks)| {
        let app = app.clone();
        let actor = actor.clone();
        async move {
            match state {
                StreamState::Poll => {
                    // The first tick is at once, then one per `POLL`.
                    ticks.tick().await;
                    if tokio::time::Instant::now() >= closes_at {
                        // Without `end`: the browser reconnects.
                        return None;
                    }
                    let read = async {
                        let l = app.get_lease(&actor, id).await?;
                        let deployments = app.lease_deployments(&actor, id).await?;
                        Ok::<_, AppError>(progress(l.state, &deployments, clock(&app)))
                    };
                    match read.await {
                        Ok(p) => {
                            let next = if p.moving { StreamState::Poll } else { StreamState::End };
                            let data = serde_json::to_string(&p).unwrap_or_else(|_| "{}".into());
                            let event = Event::default().event("progress").retry(RECONNECT).data(data);
                            Some((Ok::<_, std::convert::Infallible>(event), (next, ticks)))
                        }
                        // The lease went out of sight (the user was
                        // disabled) or the store failed: the stream ends.
                        Err(e) => {
                            tracing::debug!(lease = id, error = %e, "lease progress stream ends");
                            Some((Ok(Event::default().event("end").data("unavailable")), (StreamState::Closed, ticks)))
                        }
                    }
                }
                StreamState::End => Some((Ok(Event::default().event("end").data("nothing is running")), (StreamState::Closed, ticks))),
                StreamState::Closed => None,
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_new_end_is_a_duration_added_or_a_time_in_utc() {
        let end = 1_800_000_000;
        assert_eq!(new_end("+2h", end).ok(), Some(end + 7200));
        assert_eq!(new_end(" + 1h 30m ", end).ok(), Some(end + 5400));
        let t = DateTime::parse_from_rfc3339("2027-01-15T18:00:00Z").map(|t| t.timestamp()).ok();
        assert_eq!(new_end("2027-01-15 18:00", end).ok(), t);
        assert_eq!(new_end("2027-01-15T18:00", end).ok(), t);
        assert_eq!(new_end("2027-01-15T19:00:00+01:00", end).ok(), t);
        for bad in ["", "tomorrow", "+soon", "2027-13-01 10:00"] {
            let e = new_end(bad, end).expect_err(bad);
            assert!(e.to_string().starts_with("end: "), "{bad}: {e}");
        }
    }

    #[test]
    fn durations_are_in_words() {
        assert_eq!(duration_words(0.4), "0 s");
        assert_eq!(duration_words(42.0), "42 s");
        assert_eq!(duration_words(185.0), "3 min 05 s");
        assert_eq!(duration_words(3720.0), "1 h 02 min");
    }

    fn row(id: i64, state: LeaseState, start: Seconds, end: Seconds) -> LeaseRow {
        LeaseRow {
            id: crate::model::LeaseId(id),
            owner_id: crate::model::UserId(1),
            owner: "alice".into(),
            project: None,
            lease_type: crate::model::LeaseType::Default,
            state,
            start,
            end,
            exotic: false,
            filter: None,
            groups: None,
            deploy: None,
            name: None,
            reason: None,
            created_at: 0,
            nodes: Vec::new(),
        }
    }

    #[test]
    fn running_and_upcoming_first_then_the_last_thirty_days() {
        let now = 100 * 24 * 3600;
        let leases = vec![
            row(1, LeaseState::Finished, now - 40 * 24 * 3600, now - 31 * 24 * 3600),
            row(2, LeaseState::Finished, now - 3 * 24 * 3600, now - 2 * 24 * 3600),
            row(3, LeaseState::Pending, now + 3600, now + 7200),
            row(4, LeaseState::Active, now - 3600, now + 3600),
            row(5, LeaseState::Cancelled, now + 3600, now + 3 * 3600),
        ];
        let (current, past) = split(leases, now);
        assert_eq!(current.iter().map(|l| l.id.0).collect::<Vec<_>>(), [4, 3]);
        assert_eq!(past.iter().map(|l| l.id.0).collect::<Vec<_>>(), [5, 2]);
    }

    fn op(node: &str, ssh: Option<&str>) -> OpLine {
        OpLine {
            node: node.into(),
            state: "-",
            phase: "-",
            attempt: 1,
            written: "-".into(),
            elapsed: "-".into(),
            in_phase: "-".into(),
            message: "-".into(),
            ssh: ssh.map(str::to_owned),
        }
    }

    #[test]
    fn ssh_lines_follow_each_nodes_latest_deploy() {
        let d = |id, nodes| DeploymentLine {
            id,
            environment: "e".into(),
            version: 1,
            owner: None,
            sha256: None,
            state: "-",
            requested_by: "alice".into(),
            created: String::new(),
            error: None,
            nodes,
        };
        let ds = vec![d(1, vec![op("a", Some("ssh root@10.0.0.1")), op("b", Some("ssh root@10.0.0.2"))]), d(2, vec![op("a", None)])];
        assert_eq!(ssh_lines(LeaseState::Active, &ds), ["ssh root@10.0.0.2"]);
        assert!(ssh_lines(LeaseState::Ending, &ds).is_empty());
    }
}
