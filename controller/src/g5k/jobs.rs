//! `/stable/sites/{site}/jobs`: OAR jobs as ferrum leases (API-SUBSET
//! §2.3, §4). A job is a lease, its `uid` the lease id; what OAR shows and
//! a lease lacks (types as given, queue, command, properties) is kept by
//! `app::jobs`. This file translates the OAR request into a lease request
//! ([`lease_request`]), the lease into OAR's job document ([`view`]), and
//! the application's refusals into the texts EnOSlib parses ("Reservation
//! not valid --> KO (This reservation could run at ...)", "Reservation too
//! old", "This job was already killed"). The command is stored, never run.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{NaiveDateTime, TimeZone};
use ferrum_api as api;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Collection, G5kBody, G5kError, G5kPath, G5kQuery, G5kResult, G5kUser, Link, fqdn, item_links};
use crate::app::jobs::{Job, JobFacts};
use crate::app::{App, AppError};
use crate::model::time::from_seconds;
use crate::model::{LeaseState, LeaseType, Seconds};

pub(super) fn routes() -> Router<Arc<App>> {
    Router::new()
        .route("/sites/{site}/jobs", get(list).post(create))
        .route("/sites/{site}/jobs/{uid}", get(show).delete(delete))
        .route("/sites/{site}/jobs/{uid}/walltime", get(walltime).post(change_walltime))
}

/// OAR's default walltime: one hour.
const DEFAULT_WALLTIME: Seconds = 3600;

/// OAR job types that change how resources are allocated: ferrum has no
/// such thing, so a job asking for one is refused rather than run wrongly.
const ALLOCATION_TYPES: &[&str] = &["container", "inner", "timesharing", "cosystem", "noop", "placeholder", "allow_classic_ssh_on_vm"];

/// The body of `POST /sites/{site}/jobs` (g5k-api's `Grid5000::Job`);
/// other keys (`directory`, `stdout`, `notify`, ...) are accepted and
/// ignored.
#[derive(Debug, Default, Deserialize)]
pub struct JobSubmission {
    #[serde(default)]
    pub resources: Option<String>,
    #[serde(default)]
    pub properties: Option<String>,
    #[serde(default)]
    pub types: Option<Value>,
    #[serde(default)]
    pub queue: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub project: Option<String>,
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub reservation: Option<Value>,
    #[serde(default)]
    pub walltime: Option<Value>,
}

/// An OAR job state (the subset ferrum's leases map to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JobState {
    Waiting,
    Launching,
    Running,
    Finishing,
    Terminated,
    Error,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Waiting => "waiting",
            JobState::Launching => "launching",
            JobState::Running => "running", // tidy:not-a-state (OAR's word)
            JobState::Finishing => "finishing",
            JobState::Terminated => "terminated",
            JobState::Error => "error",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        [JobState::Waiting, JobState::Launching, JobState::Running, JobState::Finishing, JobState::Terminated, JobState::Error]
            .into_iter()
            .find(|j| j.as_str() == s)
    }

    /// The state of a job's lease: [`super::oar_state`] (API-SUBSET §4,
    /// the one mapping), except that a lease ended before its end
    /// (released, pre-empted) is `error`, as OAR shows a deleted job.
    pub fn of(lease: &crate::db::LeaseRow) -> JobState {
        if lease.state == LeaseState::Finished && ended_early(lease) {
            return JobState::Error;
        }
        JobState::parse(super::oar_state(lease.state)).unwrap_or(JobState::Error)
    }
}

/// Whether a finished lease was ended before its time (its reason says
/// who released or pre-empted it).
fn ended_early(lease: &crate::db::LeaseRow) -> bool {
    lease.reason.as_deref().is_some_and(|r| r.starts_with("released by") || r.starts_with("pre-empted"))
}

/// Reads an OAR walltime (`hour:mn:sec`, `hour:mn` or `hour`, oarsub(1))
/// with [`crate::oar`]'s rules; the error names the field.
pub fn parse_walltime(text: &str) -> G5kResult<Seconds> {
    crate::oar::parse_walltime(text).map_err(|e| G5kError::bad_request(format!("walltime: {e}")))
}

/// When a job asks to start: OAR's `reservation` (`"YYYY-MM-DD hh:mm:ss"`,
/// optionally `",<end>"`, or `"now"`), read in the site's time zone.
#[derive(Debug, PartialEq, Eq)]
pub struct Reservation {
    pub start: Seconds,
    pub end: Option<Seconds>,
}

/// Reads `reservation` at `now` (`None`: as soon as possible). A date
/// more than `grace` seconds ago is "too old", as OAR says.
pub fn parse_reservation(value: Option<&Value>, tz: chrono_tz::Tz, now: Seconds, grace: Seconds) -> G5kResult<Option<Reservation>> {
    let text = match value {
        None | Some(Value::Null) => return Ok(None),
        Some(Value::String(s)) => s.trim(),
        Some(_) => return Err(G5kError::bad_request("`reservation` should be a String.")),
    };
    if text.eq_ignore_ascii_case("now") {
        return Ok(Some(Reservation { start: now, end: None }));
    }
    let (start_text, end_text) = match text.split_once(',') {
        Some((s, e)) => (s.trim(), Some(e.trim())),
        None => (text, None),
    };
    let local = |what: &str, t: &str| -> G5kResult<Seconds> {
        let naive = NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M:%S")
            .or_else(|_| NaiveDateTime::parse_from_str(t, "%Y-%m-%d %H:%M"))
            .map_err(|_| {
            G5kError::bad_request(format!(
                "Syntax error in reservation {what} date: '{t}' (expected YYYY-MM-DD hh:mm:ss, in the site's time zone {tz})"
            ))
        })?;
        let at = tz.from_local_datetime(&naive).earliest().ok_or_else(|| {
            G5kError::bad_request(format!("Syntax error in reservation {what} date: '{t}' does not exist in {tz} (a clock change)"))
        })?;
        Ok(at.timestamp())
    };
    let start = local("start", start_text)?;
    if start < now - grace {
        return Err(G5kError::bad_request(format!(
            "Reservation too old: {start_text} ({tz}) is in the past; it is now {}",
            local_time(tz, now)
        )));
    }
    let end = match end_text {
        Some(e) => {
            let end = local("end", e)?;
            if end <= start {
                return Err(G5kError::bad_request(format!("Syntax error in reservation end date: '{e}' is not after the start")));
            }
            Some(end)
        }
        None => None,
    };
    Ok(Some(Reservation { start: start.max(now), end }))
}

/// `YYYY-MM-DD HH:MM:SS` in `tz` (how OAR writes its dates).
pub fn local_time(tz: chrono_tz::Tz, at: Seconds) -> String {
    from_seconds(at).with_timezone(&tz).format("%Y-%m-%d %H:%M:%S").to_string()
}

/// The job's types as a list of strings (a lone string is one type).
fn types_of(value: Option<&Value>) -> G5kResult<Vec<String>> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::String(s)) => Ok(vec![s.clone()]),
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| v.as_str().map(str::to_owned).ok_or_else(|| G5kError::bad_request("types: a list of strings, e.g. [\"deploy\"]")))
            .collect(),
        Some(_) => Err(G5kError::bad_request("types: a list of strings, e.g. [\"deploy\"]")),
    }
}

/// The lease request of an OAR job submitted to `site`, and the facts to
/// keep beside it; `now` and `grace` date a reservation. The one place
/// where OAR's submission becomes ferrum's.
pub fn lease_request(
    site: &str,
    job: &JobSubmission,
    tz: chrono_tz::Tz,
    now: Seconds,
    grace: Seconds,
) -> G5kResult<(api::LeaseCreate, JobFacts)> {
    let resources = match job.resources.as_deref().map(str::trim).filter(|r| !r.is_empty()) {
        Some(r) => crate::oar::parse_resources(r).map_err(|e| G5kError::bad_request(format!("resources: {e}")))?,
        None => crate::oar::Resources { groups: vec![crate::oar::Group { count: 1, filter: None }], walltime: None },
    };
    let walltime = match &job.walltime {
        None | Some(Value::Null) => None,
        Some(Value::Number(n)) => {
            Some(n.as_i64().filter(|s| *s > 0).ok_or_else(|| G5kError::bad_request("walltime: a positive number of seconds"))?)
        }
        Some(Value::String(s)) => Some(parse_walltime(s)?),
        Some(_) => return Err(G5kError::bad_request("walltime: hour:mn:sec, hour:mn, hour, or seconds")),
    }
    .or(resources.walltime)
    .unwrap_or(DEFAULT_WALLTIME);

    let types = types_of(job.types.as_ref())?;
    let (mut deploy, mut besteffort, mut exotic) = (false, false, false);
    for t in &types {
        let key = t.split('=').next().unwrap_or_default().trim();
        match key {
            "deploy" => deploy = true,
            "besteffort" => besteffort = true,
            "exotic" => exotic = true,
            k if ALLOCATION_TYPES.iter().any(|a| k == *a || k.starts_with("timesharing")) => {
                return Err(G5kError::bad_request(format!(
                    "types: '{t}' changes how OAR allocates resources; ferrum allocates whole nodes to one job and does not support it"
                )));
            }
            _ => {}
        }
    }
    let queue = job.queue.as_deref().map(str::trim).filter(|q| !q.is_empty()).unwrap_or("default");
    match queue {
        "default" => {}
        "besteffort" => besteffort = true,
        other => {
            return Err(G5kError::bad_request(format!("queue: '{other}' does not exist on ferrum; use default or besteffort")));
        }
    }
    if deploy && besteffort {
        return Err(G5kError::bad_request("types: a job cannot be both deploy and besteffort on ferrum"));
    }
    let lease_type = if besteffort {
        api::LeaseType::Besteffort
    } else if deploy {
        api::LeaseType::Deploy
    } else {
        api::LeaseType::Default
    };

    let reservation = parse_reservation(job.reservation.as_ref(), tz, now, grace)?;
    // Every group is of this site's nodes and takes the job's `properties`.
    let site_filter = format!("site = '{site}'");
    let mut groups: Vec<api::NodeGroup> = resources
        .groups
        .iter()
        .map(|g| {
            let own = crate::oar::and_properties(g.filter.as_deref(), job.properties.as_deref());
            api::NodeGroup { count: g.count, filter: crate::oar::and_properties(Some(&site_filter), own.as_deref()) }
        })
        .collect();
    let nodes = if groups.len() == 1 {
        let only = groups.remove(0);
        api::NodeSelector { count: Some(only.count), filter: only.filter, names: None, groups: None }
    } else {
        api::NodeSelector { count: None, filter: None, names: None, groups: Some(groups) }
    };
    let (start, duration, end) = match &reservation {
        Some(Reservation { start, end: Some(end) }) => (Some(*start), None, Some(from_seconds(*end))),
        Some(Reservation { start, end: None }) => (Some(*start), Some(format!("{walltime}s")), None),
        None => (None, Some(format!("{walltime}s")), None),
    };
    let request = api::LeaseCreate {
        project: job.project.clone(),
        nodes,
        start: start.map(from_seconds),
        duration,
        end,
        lease_type: Some(lease_type),
        exotic,
        deploy: None,
        name: job.name.clone(),
        resources: None,
        properties: None,
    };
    let facts = JobFacts {
        site: site.to_owned(),
        types,
        queue: queue.to_owned(),
        command: job.command.clone(),
        properties: job.properties.clone(),
    };
    Ok((request, facts))
}

/// What `/stable` needs of the nodes: the sites (those of the nodes and of
/// `[sites.NAME]`, `app::sites`), and each node's site and core count.
pub(super) struct Nodes {
    sites: std::collections::BTreeSet<String>,
    nodes: HashMap<String, (String, i64)>,
}

impl Nodes {
    pub(super) async fn read(app: &App) -> G5kResult<Nodes> {
        let tree = app.site_tree().await?;
        let mut nodes = HashMap::new();
        for (site, s) in &tree.sites {
            for n in s.clusters.values().flat_map(|c| &c.nodes) {
                let cores = n.properties.get("cpucore").and_then(Value::as_i64).unwrap_or(1).max(1);
                nodes.insert(n.name.clone(), (site.clone(), cores));
            }
        }
        Ok(Nodes { sites: tree.sites.keys().cloned().collect(), nodes })
    }

    /// The site of node `name`, if it exists.
    pub(super) fn site_of_node(&self, name: &str) -> Option<&str> {
        self.nodes.get(name).map(|(s, _)| s.as_str())
    }

    fn cores(&self, name: &str) -> i64 {
        self.nodes.get(name).map_or(1, |(_, c)| *c)
    }

    /// The site of a job: the one it was submitted to, else its first
    /// node's.
    fn site_of<'a>(&'a self, job: &'a Job) -> Option<&'a str> {
        match &job.facts {
            Some(f) => Some(f.site.as_str()),
            None => job.lease.nodes.first().and_then(|(_, n)| self.site_of_node(n)),
        }
    }
}

/// 404 unless `site` is a site (Grid'5000's text).
pub(super) fn known_site(nodes: &Nodes, site: &str) -> G5kResult<()> {
    if nodes.sites.contains(site) { Ok(()) } else { Err(G5kError::not_found(format!("Couldn't find site '{site}'"))) }
}

fn job_not_found(uid: &str) -> G5kError {
    G5kError::not_found(format!("Couldn't find OAR::Job with 'job_id'={uid}"))
}

/// One event of a job's history.
#[derive(Debug, Serialize)]
struct Event {
    uid: i64,
    created_at: Seconds,
    #[serde(rename = "type")]
    kind: &'static str,
    description: String,
    to_check: &'static str,
}

/// OAR's job document (g5k-api's keys; integers where the clients need
/// them).
#[derive(Debug, Serialize)]
pub struct JobView {
    uid: i64,
    user: String,
    user_uid: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    project: Option<String>,
    queue: String,
    state: &'static str,
    message: String,
    mode: &'static str,
    command: String,
    directory: String,
    properties: String,
    types: Vec<String>,
    walltime: Seconds,
    submitted_at: Seconds,
    scheduled_at: Seconds,
    started_at: Seconds,
    #[serde(skip_serializing_if = "Option::is_none")]
    stopped_at: Option<Seconds>,
    assigned_nodes: Vec<String>,
    resources_by_type: Value,
    events: Vec<Event>,
    links: Vec<Link>,
}

/// The job document of `job`, seen from `site` at `now`.
fn view(app: &App, nodes: &Nodes, site: &str, job: &Job, now: Seconds) -> JobView {
    let lease = &job.lease;
    let state = JobState::of(lease);
    let started = !matches!(lease.state, LeaseState::AwaitingApproval | LeaseState::Pending | LeaseState::Cancelled | LeaseState::Rejected)
        && lease.start <= now;
    let over = matches!(state, JobState::Terminated | JobState::Error);
    let (types, queue, command, properties) = match &job.facts {
        Some(f) => (f.types.clone(), f.queue.clone(), f.command.clone().unwrap_or_default(), f.properties.clone()),
        None => {
            let mut types = Vec::new();
            match lease.lease_type {
                LeaseType::Deploy => types.push("deploy".to_owned()),
                LeaseType::Besteffort => types.push("besteffort".to_owned()),
                LeaseType::Default => {}
            }
            if lease.exotic {
                types.push("exotic".to_owned());
            }
            let queue = if lease.lease_type == LeaseType::Besteffort { "besteffort" } else { "default" };
            (types, queue.to_owned(), String::new(), None)
        }
    };
    let assigned: Vec<String> = lease.nodes.iter().map(|(_, n)| fqdn(app, n, site)).collect();
    let cores: Vec<String> = lease
        .nodes
        .iter()
        .zip(&assigned)
        .flat_map(|((_, n), f)| {
            let count = nodes.cores(n);
            (0..count).map(move |i| format!("{f}/{i}"))
        })
        .collect();
    let message = match lease.state {
        LeaseState::AwaitingApproval => {
            format!("awaiting approval{}", lease.reason.as_deref().map(|r| format!(": {r}")).unwrap_or_default())
        }
        _ => lease.reason.clone().unwrap_or_default(),
    };
    let mut events = vec![Event {
        uid: 1,
        created_at: lease.created_at,
        kind: "SUBMISSION",
        description: format!("submitted by {}", lease.owner),
        to_check: "NO",
    }];
    if started {
        events.push(Event { uid: 2, created_at: lease.start, kind: "RUNNING", description: "the lease started".into(), to_check: "NO" });
    }
    if over {
        let kind = if state == JobState::Error { "FRAG_JOB_REQUEST" } else { "END" };
        let description = lease.reason.clone().unwrap_or_else(|| "the lease ended".into());
        events.push(Event { uid: 3, created_at: lease.end.min(now), kind, description, to_check: "NO" });
    }
    let path = format!("/sites/{site}/jobs/{}", lease.id);
    JobView {
        uid: lease.id.0,
        user: lease.owner.clone(),
        user_uid: lease.owner.clone(),
        name: lease.name.clone(),
        project: lease.project.clone(),
        queue,
        state: state.as_str(),
        message,
        mode: "PASSIVE",
        command,
        directory: String::new(),
        properties: properties.or_else(|| lease.filter.clone()).unwrap_or_default(),
        types,
        walltime: lease.end - lease.start,
        submitted_at: lease.created_at,
        scheduled_at: lease.start,
        started_at: if started { lease.start } else { 0 },
        stopped_at: over.then(|| lease.end.min(now)),
        assigned_nodes: assigned,
        resources_by_type: serde_json::json!({ "cores": cores }),
        events,
        links: item_links(&path, &format!("/sites/{site}")),
    }
}

/// A job of `site` that the caller may see, or OAR's 404.
async fn job_at(app: &App, actor: &crate::app::Actor, nodes: &Nodes, site: &str, uid: &str) -> G5kResult<Job> {
    let id: i64 = uid.parse().map_err(|_| job_not_found(uid))?;
    let job = match app.get_job(actor, id).await {
        Ok(job) => job,
        Err(AppError::NotFound(_)) => return Err(job_not_found(uid)),
        Err(e) => return Err(e.into()),
    };
    if nodes.site_of(&job) != Some(site) {
        return Err(job_not_found(uid));
    }
    Ok(job)
}

async fn create(
    State(app): State<Arc<App>>,
    G5kUser(actor): G5kUser,
    G5kPath(site): G5kPath<String>,
    G5kBody(submission): G5kBody<JobSubmission>,
) -> G5kResult<Response> {
    let nodes = Nodes::read(&app).await?;
    known_site(&nodes, &site)?;
    let tz = app.config.site(&site).timezone;
    let now = app.now();
    let grace = i64::try_from(app.config.leases.start_grace.as_secs()).unwrap_or(60);
    let (request, facts) = lease_request(&site, &submission, tz, now, grace)?;
    let job = match app.create_job(&actor, request, facts).await {
        Ok(job) => job,
        Err(AppError::Conflict { earliest_start: Some(at), .. }) => {
            return Err(G5kError::bad_request(format!(
                "Reservation not valid --> KO (This reservation could run at {})",
                local_time(tz, at)
            )));
        }
        Err(AppError::Conflict { message, .. } | AppError::BadRequest { message, .. }) => {
            return Err(G5kError::bad_request(format!("The job you are trying to submit is not valid: {message}")));
        }
        Err(e) => return Err(e.into()),
    };
    tracing::info!(lease = %job.lease.id, site = %site, user = %actor.name, "grid5000 job submitted");
    let body = view(&app, &nodes, &site, &job, now);
    Ok(super::located((StatusCode::CREATED, Json(body)).into_response(), &format!("/sites/{site}/jobs/{}", job.lease.id)))
}

/// Query of `GET /sites/{site}/jobs` (others are ignored).
#[derive(Debug, Default, Deserialize)]
struct ListQuery {
    name: Option<String>,
    state: Option<String>,
    user: Option<String>,
    user_uid: Option<String>,
    project: Option<String>,
    queue: Option<String>,
    offset: Option<usize>,
    limit: Option<usize>,
}

async fn list(
    State(app): State<Arc<App>>,
    G5kUser(actor): G5kUser,
    G5kPath(site): G5kPath<String>,
    G5kQuery(q): G5kQuery<ListQuery>,
) -> G5kResult<Collection<JobView>> {
    let nodes = Nodes::read(&app).await?;
    known_site(&nodes, &site)?;
    let states: Option<Vec<JobState>> = match q.state.as_deref().filter(|s| !s.trim().is_empty()) {
        Some(text) => Some(
            text.split(',')
                .map(|s| {
                    JobState::parse(s.trim()).ok_or_else(|| {
                        G5kError::bad_request(format!(
                            "state: '{}' is not a job state (waiting, launching, running, finishing, terminated, error)",
                            s.trim()
                        ))
                    })
                })
                .collect::<G5kResult<_>>()?,
        ),
        None => None,
    };
    let page = super::Page::of(q.offset, q.limit)?;
    let user = q.user.as_deref().or(q.user_uid.as_deref());
    let now = app.now();
    let mut leases = app.list_leases(&actor, None, true).await?;
    leases.sort_by_key(|l| std::cmp::Reverse(l.id));
    let mut matching = Vec::new();
    for lease in leases {
        if q.name.as_deref().is_some_and(|n| lease.name.as_deref() != Some(n))
            || user.is_some_and(|u| lease.owner != u)
            || q.project.as_deref().is_some_and(|p| lease.project.as_deref() != Some(p))
            || states.as_ref().is_some_and(|s| !s.contains(&JobState::of(&lease)))
        {
            continue;
        }
        let job = app.job_of(lease).await?;
        if nodes.site_of(&job) != Some(site.as_str()) {
            continue;
        }
        let view = view(&app, &nodes, &site, &job, now);
        if q.queue.as_deref().is_some_and(|queue| view.queue != queue) {
            continue;
        }
        matching.push(view);
    }
    Ok(Collection::page(&site, "jobs", matching, page))
}

async fn show(
    State(app): State<Arc<App>>,
    G5kUser(actor): G5kUser,
    G5kPath((site, uid)): G5kPath<(String, String)>,
) -> G5kResult<Json<JobView>> {
    let nodes = Nodes::read(&app).await?;
    let job = job_at(&app, &actor, &nodes, &site, &uid).await?;
    Ok(Json(view(&app, &nodes, &site, &job, app.now())))
}

async fn delete(
    State(app): State<Arc<App>>,
    G5kUser(actor): G5kUser,
    G5kPath((site, uid)): G5kPath<(String, String)>,
) -> G5kResult<Response> {
    let nodes = Nodes::read(&app).await?;
    let id: i64 = uid.parse().map_err(|_| job_not_found(&uid))?;
    // Another user's job: 403 (below), so look it up as an admin would.
    let lease = match app.store.get_lease(crate::model::LeaseId(id)).await {
        Ok(l) => l,
        Err(_) => return Err(job_not_found(&uid)),
    };
    let job = app.job_of(lease).await?;
    if nodes.site_of(&job) != Some(site.as_str()) {
        return Err(job_not_found(&uid));
    }
    match app.end_job(&actor, id).await {
        Ok(_) => {}
        Err(AppError::Conflict { message, .. }) => return Err(G5kError::bad_request(message)),
        Err(AppError::Forbidden(_)) => {
            return Err(G5kError::forbidden("You are not authorized to access this resource: this job is not yours"));
        }
        Err(e) => return Err(e.into()),
    }
    tracing::info!(lease = id, site = %site, user = %actor.name, "grid5000 job deleted");
    Ok(super::located(StatusCode::ACCEPTED.into_response(), &format!("/sites/{site}/jobs/{id}")))
}

/// `GET /sites/{site}/jobs/{uid}/walltime`: the walltime and what may
/// change it.
async fn walltime(
    State(app): State<Arc<App>>,
    G5kUser(actor): G5kUser,
    G5kPath((site, uid)): G5kPath<(String, String)>,
) -> G5kResult<Json<Value>> {
    let nodes = Nodes::read(&app).await?;
    let job = job_at(&app, &actor, &nodes, &site, &uid).await?;
    let walltime = job.lease.end - job.lease.start;
    let path = format!("/sites/{site}/jobs/{}/walltime", job.lease.id);
    Ok(Json(serde_json::json!({
        "walltime": hms(walltime),
        "possible": "UNLIMITED",
        "pending": "0:00:00", // tidy:not-a-state (OAR's key: the walltime change pending)
        "delay_next_jobs": "NO",
        "force": "NO",
        "links": item_links(&path, &format!("/sites/{site}/jobs/{}", job.lease.id)),
    })))
}

/// `h:mm:ss`, as OAR writes a walltime.
fn hms(s: Seconds) -> String {
    format!("{}:{:02}:{:02}", s / 3600, (s % 3600) / 60, s % 60)
}

#[derive(Debug, Deserialize)]
struct WalltimeChange {
    walltime: Value,
}

/// `POST /sites/{site}/jobs/{uid}/walltime` `{"walltime": "+1:00:00"}`
/// (or the new walltime `"3:00:00"`): the lease's extension. Only longer
/// walltimes are possible: ferrum ends a lease early by deleting it.
async fn change_walltime(
    State(app): State<Arc<App>>,
    G5kUser(actor): G5kUser,
    G5kPath((site, uid)): G5kPath<(String, String)>,
    G5kBody(change): G5kBody<WalltimeChange>,
) -> G5kResult<Response> {
    let nodes = Nodes::read(&app).await?;
    let job = job_at(&app, &actor, &nodes, &site, &uid).await?;
    let lease = &job.lease;
    let text = match &change.walltime {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => return Err(G5kError::bad_request("walltime: a string such as \"+1:00:00\" or \"3:00:00\"")),
    };
    let new_end = if let Some(delta) = text.strip_prefix('+') {
        lease.end + parse_walltime(delta)?
    } else if text.starts_with('-') {
        return Err(G5kError::bad_request("walltime: ferrum cannot shorten a job; delete it to end it early"));
    } else {
        lease.start + parse_walltime(&text)?
    };
    match app.extend_lease(&actor, lease.id.0, new_end).await {
        Ok(_) => {}
        Err(AppError::Conflict { message, .. } | AppError::BadRequest { message, .. }) => {
            return Err(G5kError::bad_request(format!("Walltime change refused: {message}")));
        }
        Err(e) => return Err(e.into()),
    }
    let response = (StatusCode::ACCEPTED, Json(serde_json::json!({ "status": "Walltime change request accepted" }))).into_response();
    Ok(super::located(response, &format!("/sites/{site}/jobs/{}/walltime", lease.id)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn walltimes_read_as_oar_reads_them() {
        assert_eq!(parse_walltime("2").ok(), Some(7200));
        assert_eq!(parse_walltime("2:00").ok(), Some(7200));
        assert_eq!(parse_walltime("0:10").ok(), Some(600));
        assert_eq!(parse_walltime("01:02:03").ok(), Some(3723));
        for bad in ["", "1h", "1:2:3:4", "-1", "0", "a:b", "1.5"] {
            assert!(parse_walltime(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_job_becomes_a_lease_request_of_its_site() {
        let job = |resources: &str, properties: Option<&str>| JobSubmission {
            resources: Some(resources.into()),
            properties: properties.map(str::to_owned),
            ..JobSubmission::default()
        };
        let tz = chrono_tz::Europe::Paris;
        let (one, _) = lease_request("lille", &job("{cluster='chifflot'}/nodes=2,walltime=0:10", None), tz, 0, 60).expect("one group");
        assert_eq!((one.nodes.count, one.nodes.filter.as_deref()), (Some(2), Some("(site = 'lille') AND (cluster='chifflot')")));
        assert_eq!(one.duration.as_deref(), Some("600s"));
        let (two, _) = lease_request("lille", &job("nodes=1+{gpu_count > 1}/nodes=1", Some("exotic='NO'")), tz, 0, 60).expect("two");
        let groups = two.nodes.groups.expect("groups");
        assert_eq!(groups[0].filter.as_deref(), Some("(site = 'lille') AND (exotic='NO')"));
        assert_eq!(groups[1].filter.as_deref(), Some("(site = 'lille') AND ((gpu_count > 1) AND (exotic='NO'))"));
        assert_eq!(two.duration.as_deref(), Some("3600s"), "OAR's default walltime: one hour");
        let (alone, _) = lease_request("lille", &job("walltime=2:00", None), tz, 0, 60).expect("walltime alone");
        assert_eq!((alone.nodes.count, alone.duration.as_deref()), (Some(1), Some("7200s")));
        for (bad, named) in
            [("core=4", "'core=4'"), ("slash_22=1", "subnets"), ("{type='kavlan'}/vlan=1", "KaVLAN"), ("nodes=BEST", "BEST")]
        {
            let e = lease_request("lille", &job(bad, None), tz, 0, 60).expect_err(bad);
            assert!(e.message.starts_with("resources: ") && e.message.contains(named), "{bad}: {}", e.message);
        }
    }

    #[test]
    fn reservations_are_read_in_the_sites_time_zone() {
        let tz = chrono_tz::Europe::Paris;
        // 2026-11-23 08:00 UTC is 09:00 in Paris.
        let now = chrono::Utc.with_ymd_and_hms(2026, 11, 23, 8, 0, 0).single().expect("time").timestamp();
        let r = parse_reservation(Some(&Value::String("2026-11-24 10:00:00".into())), tz, now, 60).expect("parses").expect("some");
        assert_eq!(r.start, chrono::Utc.with_ymd_and_hms(2026, 11, 24, 9, 0, 0).single().expect("time").timestamp());
        assert_eq!(local_time(tz, r.start), "2026-11-24 10:00:00");
        let e = parse_reservation(Some(&serde_json::json!(1720)), tz, now, 60).expect_err("a number");
        assert_eq!(e.message, "`reservation` should be a String.");
        let e = parse_reservation(Some(&Value::String("tomorrow".into())), tz, now, 60).expect_err("bad");
        assert!(e.message.starts_with("Syntax error in reservation start date"), "{}", e.message);
        let e = parse_reservation(Some(&Value::String("2026-11-23 08:30:00".into())), tz, now, 60).expect_err("past");
        assert!(e.message.contains("Reservation too old"), "{}", e.message);
        assert_eq!(
            parse_reservation(Some(&Value::String("now".into())), tz, now, 60).expect("now"),
            Some(Reservation { start: now, end: None })
        );
    }

    #[test]
    fn types_and_queues_map_to_lease_kinds() {
        let tz = chrono_tz::Europe::Paris;
        let submit = |types: Value, queue: Option<&str>| {
            let job = JobSubmission { types: Some(types), queue: queue.map(str::to_owned), ..Default::default() };
            lease_request("lille", &job, tz, 0, 60)
        };
        let (req, facts) = submit(serde_json::json!(["deploy", "origin=enoslib_g5k"]), Some("default")).expect("ok");
        assert_eq!(req.lease_type, Some(api::LeaseType::Deploy));
        assert_eq!(facts.types, ["deploy", "origin=enoslib_g5k"]);
        assert_eq!(req.nodes.filter.as_deref(), Some("site = 'lille'"));
        assert_eq!(req.duration.as_deref(), Some("3600s"));
        let (req, _) = submit(serde_json::json!(["exotic"]), Some("besteffort")).expect("ok");
        assert_eq!((req.lease_type, req.exotic), (Some(api::LeaseType::Besteffort), true));
        for (types, queue, named) in [
            (serde_json::json!(["container"]), None, "'container'"),
            (serde_json::json!(["inner=12"]), None, "'inner=12'"),
            (serde_json::json!(["timesharing=user,*"]), None, "'timesharing=user,*'"),
            (serde_json::json!([]), Some("production"), "'production'"),
        ] {
            let e = submit(types, queue).expect_err("refused");
            assert!(e.message.contains(named), "{}", e.message);
        }
    }
}
