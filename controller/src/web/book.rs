//! The booking page (issue 19, item 5): `/book`, a form for a lease (a
//! count of nodes with an OAR filter, or nodes by name; a start in UTC or
//! as soon as possible; a duration; an environment to deploy with SSH keys
//! from the profile; the project; a name). "Check" shows what booking
//! would do, without booking: the slot the availability offers and what
//! the policy will say of it (`App::booking_preview`, the calendar's
//! `policy_preview` behind it); "Book" asks `App::create_lease`, as the API
//! does, and goes to the lease's page.
//!
//! Every field is read as text, so a bad value is said in words beside the
//! field the application's refusal names (`duration: ...`,
//! `nodes.filter: ...`); a policy's refusal is said at the top with the
//! API's status. The page counts the nodes the filter selects (the
//! hardware catalog's `list_nodes`), and `static/book.js` again as it is
//! typed (`/hardware/_count`).
//!
//! Must not: decide anything the application layer decides (placement,
//! policy, who may use which environment or project).

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDateTime, Utc};

use super::gantt::policy_lines;
use super::pages::when;
use super::session::SignedIn;
use super::{NavUser, WebError, page};
use crate::app::{App, AppError};
use ferrum_api as api;

/// The form as typed: every field text, every key chosen.
#[derive(Clone, Debug, Default)]
pub struct Typed {
    count: String,
    filter: String,
    names: String,
    /// `asap` or `at`.
    when: String,
    start: String,
    duration: String,
    environment: String,
    keys: Vec<i64>,
    exotic: bool,
    project: String,
    name: String,
}

impl Typed {
    fn from_pairs(pairs: &[(String, String)]) -> Typed {
        let mut t = Typed::default();
        for (k, v) in pairs {
            match k.as_str() {
                "count" => t.count = v.clone(),
                "filter" => t.filter = v.clone(),
                "names" => t.names = v.clone(),
                "when" => t.when = v.clone(),
                "start" => t.start = v.clone(),
                "duration" => t.duration = v.clone(),
                "environment" => t.environment = v.clone(),
                // A key id that is not a number is no key of anyone's.
                "key" => t.keys.extend(v.trim().parse::<i64>().ok()),
                "exotic" => t.exotic = !v.is_empty(),
                "project" => t.project = v.clone(),
                "name" => t.name = v.clone(),
                _ => {}
            }
        }
        t
    }

    fn asap(&self) -> bool {
        self.when != "at"
    }
}

/// The lease request the form makes (the SSH keys are the chosen ones of
/// the caller's profile), or the field that cannot be read.
fn request(t: &Typed, profile_keys: &[(i64, String)]) -> Result<api::LeaseCreate, AppError> {
    let names: Vec<String> = t.names.split(|c: char| c == ',' || c.is_whitespace()).filter(|n| !n.is_empty()).map(str::to_owned).collect();
    let count = match t.count.trim() {
        "" if names.is_empty() => return Err(AppError::bad_request("nodes.count: how many nodes, or name them below")),
        "" => None,
        c => Some(c.parse::<u32>().map_err(|_| AppError::bad_request("nodes.count: a whole number of nodes"))?),
    };
    let start = if t.asap() { None } else { Some(parse_start(&t.start)?) };
    let filter = Some(t.filter.trim().to_owned()).filter(|f| !f.is_empty());
    let environment = t.environment.trim();
    let deploy = (!environment.is_empty()).then(|| api::DeploySpec {
        environment: environment.to_owned(),
        ssh_keys: profile_keys.iter().filter(|(id, _)| t.keys.contains(id)).map(|(_, k)| k.clone()).collect(),
    });
    Ok(api::LeaseCreate {
        project: Some(t.project.trim().to_owned()).filter(|p| !p.is_empty()),
        nodes: api::NodeSelector { count, filter, names: (!names.is_empty()).then_some(names), ..Default::default() },
        start,
        duration: Some(t.duration.trim().to_owned()),
        exotic: t.exotic,
        deploy,
        name: Some(t.name.trim().to_owned()).filter(|n| !n.is_empty()),
        ..Default::default()
    })
}

/// A start in UTC: what a `datetime-local` control sends
/// (`2026-12-24T18:00`), `2026-12-24 18:00`, or RFC 3339.
fn parse_start(text: &str) -> Result<DateTime<Utc>, AppError> {
    let text = text.trim();
    if let Ok(t) = DateTime::parse_from_rfc3339(text) {
        return Ok(t.with_timezone(&Utc));
    }
    for format in ["%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M:%S"] {
        if let Ok(t) = NaiveDateTime::parse_from_str(text, format) {
            return Ok(t.and_utc());
        }
    }
    Err(AppError::bad_request("start: a time in UTC (2026-12-24 18:00), or choose as soon as possible"))
}

/// The page's field an application refusal names (`field: why`); empty:
/// the page's (said at the top).
fn field_of(message: &str) -> &'static str {
    super::control_of(
        message,
        &[
            ("nodes.count", "count"),
            ("count", "count"),
            ("nodes.filter", "filter"),
            ("filter", "filter"),
            ("nodes.names", "names"),
            ("nodes", "nodes"),
            ("start", "start"),
            ("duration", "duration"),
            ("end", "duration"),
            ("deploy", "environment"),
            ("deploy.environment", "environment"),
            ("deploy.ssh_keys", "keys"),
            ("project", "project"),
            ("name", "name"),
        ],
    )
}

/// A refusal to say on the page, with its status; anything else is an
/// error page.
fn refusal(e: AppError) -> Result<(StatusCode, &'static str, String), WebError> {
    let status = match &e {
        AppError::BadRequest { .. } => StatusCode::BAD_REQUEST,
        AppError::Conflict { .. } => StatusCode::CONFLICT,
        AppError::Forbidden(_) => StatusCode::FORBIDDEN,
        _ => return Err(e.into()),
    };
    let message = e.to_string();
    let field = if status == StatusCode::FORBIDDEN { "" } else { field_of(&message) };
    Ok((status, field, message))
}

/// An environment the caller may deploy.
#[derive(Debug)]
pub struct EnvironmentChoice {
    /// `OWNER/NAME`, what the lease names.
    value: String,
    label: String,
}

/// An SSH key of the caller's profile.
#[derive(Debug)]
pub struct KeyChoice {
    id: i64,
    label: String,
    checked: bool,
}

/// What "Check" found.
#[derive(Debug)]
pub struct Shown {
    placement: String,
    lines: Vec<String>,
    /// Why booking it would be refused.
    refused: Option<String>,
}

#[derive(Debug, Template)]
#[template(path = "book.html")]
pub struct BookPage {
    nav: Option<NavUser>,
    active: &'static str,
    csrf: String,
    typed: Typed,
    environments: Vec<EnvironmentChoice>,
    keys: Vec<KeyChoice>,
    /// The caller's projects, when there is a choice to make.
    projects: Vec<String>,
    preview: Option<Shown>,
    /// How many nodes the filter selects (what `static/book.js` says as
    /// it is typed), and whether it does not parse.
    filter_count: String,
    filter_bad: bool,
    /// A refusal and the field it concerns (empty: the page).
    error: Option<(&'static str, String)>,
}

impl BookPage {
    fn error_for(&self, field: &str) -> Option<&str> {
        self.error.as_ref().filter(|(f, _)| *f == field).map(|(_, m)| m.as_str())
    }
}

/// The page for `typed` (the user's environments, keys and projects to
/// choose from).
async fn book_page(
    app: &App,
    s: &SignedIn,
    typed: Typed,
    fresh: bool,
    preview: Option<Shown>,
    error: Option<(&'static str, String)>,
) -> Result<BookPage, WebError> {
    let actor = &s.0.actor;
    let mut environments: Vec<EnvironmentChoice> = Vec::new();
    for e in app.list_environments(actor).await? {
        let value = format!("{}/{}", e.owner, e.descriptor.name);
        // Newest version first: the lease deploys the newest.
        if environments.iter().any(|c| c.value == value) {
            continue;
        }
        let label = format!("{} (version {}, by {})", e.descriptor.name, e.descriptor.version, e.owner);
        environments.push(EnvironmentChoice { value, label });
    }
    let keys = app
        .ssh_keys(actor, &actor.name)
        .await?
        .into_iter()
        .map(|k| KeyChoice {
            id: k.id,
            checked: fresh || typed.keys.contains(&k.id),
            label: format!("{} ({})", k.name.unwrap_or_else(|| "unnamed".into()), k.fingerprint),
        })
        .collect();
    let filter = typed.filter.trim();
    let (filter_count, filter_bad) = match app.list_nodes(Some(filter)).await {
        Ok(rows) if filter.is_empty() => (format!("No filter: any of {} nodes.", rows.len()), false),
        Ok(rows) => (format!("Matching nodes: {}.", rows.len()), false),
        Err(AppError::BadRequest { .. }) => ("No count: the filter does not read.".to_owned(), true),
        Err(e) => return Err(e.into()),
    };
    Ok(BookPage {
        nav: Some(NavUser::from(&s.0)),
        active: "book",
        csrf: s.0.csrf.clone(),
        typed,
        environments,
        keys,
        projects: if actor.projects.len() > 1 { actor.projects.iter().map(|(_, n)| n.clone()).collect() } else { Vec::new() },
        preview,
        filter_count,
        filter_bad,
        error,
    })
}

/// `GET /book`: the form, filled from the query (`count`, `filter`,
/// `duration`, ... as the form names them).
pub async fn form(State(app): State<Arc<App>>, s: SignedIn, Query(q): Query<Vec<(String, String)>>) -> Result<Response, WebError> {
    let typed = Typed::from_pairs(&q);
    let p = book_page(&app, &s, typed, true, None, None).await?;
    Ok(page(StatusCode::OK, &p))
}

/// `POST /book`: `action=check` shows what booking would do; `action=book`
/// books and goes to the lease's page.
pub async fn submit(State(app): State<Arc<App>>, s: SignedIn, Form(pairs): Form<Vec<(String, String)>>) -> Result<Response, WebError> {
    let posted = |name: &str| pairs.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).unwrap_or_default();
    s.check_csrf(posted("csrf"))?;
    let booking = posted("action") == "book";
    let typed = Typed::from_pairs(&pairs);
    let actor = &s.0.actor;
    let profile_keys: Vec<(i64, String)> = app.ssh_keys(actor, &actor.name).await?.into_iter().map(|k| (k.id, k.public_key)).collect();
    let req = match request(&typed, &profile_keys) {
        Ok(r) => r,
        Err(e) => {
            let (status, field, message) = refusal(e)?;
            let p = book_page(&app, &s, typed, false, None, Some((field, message))).await?;
            return Ok(page(status, &p));
        }
    };
    if booking {
        return match app.create_lease(actor, req).await {
            Ok(lease) => Ok(Redirect::to(&format!("/leases/{}", lease.id.0)).into_response()),
            Err(e) => {
                let (status, field, message) = refusal(e)?;
                let p = book_page(&app, &s, typed, false, None, Some((field, format!("not booked: {message}")))).await?;
                Ok(page(status, &p))
            }
        };
    }
    match app.booking_preview(actor, &req).await {
        Ok(b) => {
            let count = b.nodes.len();
            let placement = match b.not_at {
                Some(asked) => format!(
                    "The nodes are not free at {}: the earliest they are is from {} to {}, on {}.",
                    when(asked),
                    when(b.start),
                    when(b.end),
                    b.nodes.join(", ")
                ),
                None => format!("From {} to {}, on {}.", when(b.start), when(b.end), b.nodes.join(", ")),
            };
            let mut lines = policy_lines(&b.policy, count, typed.duration.trim());
            if typed.exotic && b.policy.refusal.is_none() {
                lines.push("Prototype (exotic) nodes may be chosen: the policy allows it.".to_owned());
            }
            let refused = match (b.policy.refusal, b.not_at) {
                (Some(why), _) => Some(why),
                (None, Some(_)) => Some("these nodes are busy at the start asked: choose as soon as possible, or another start".to_owned()),
                (None, None) => None,
            };
            let shown = Shown { placement, lines, refused };
            let p = book_page(&app, &s, typed, false, Some(shown), None).await?;
            Ok(page(StatusCode::OK, &p))
        }
        Err(e) => {
            let (status, field, message) = refusal(e)?;
            let p = book_page(&app, &s, typed, false, None, Some((field, message))).await?;
            Ok(page(status, &p))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_refusal_names_the_field_of_the_form_it_concerns() {
        assert_eq!(field_of("nodes.filter: unknown property 'gpus'"), "filter");
        assert_eq!(field_of("duration: not a duration"), "duration");
        assert_eq!(field_of("deploy.environment: environment 'x' does not exist"), "environment");
        assert_eq!(field_of("policy 'quota': project 'p' has 0 of 1 node-hours left"), "");
    }

    #[test]
    fn the_form_reads_as_a_lease_request() {
        let pairs: Vec<(String, String)> = [
            ("count", "2"),
            ("filter", " gpu_count >= 1 "),
            ("when", "at"),
            ("start", "2026-12-24T18:00"),
            ("duration", "2h"),
            ("environment", "admin/debian12"),
            ("key", "7"),
            ("key", "x"),
            ("name", ""),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        let typed = Typed::from_pairs(&pairs);
        let req = request(&typed, &[(7, "ssh-ed25519 AAAA seven".into()), (8, "ssh-ed25519 AAAA eight".into())]).expect("a request");
        assert_eq!(req.nodes.count, Some(2));
        assert_eq!(req.nodes.filter.as_deref(), Some("gpu_count >= 1"));
        assert_eq!(req.start.map(|t| t.to_rfc3339()).as_deref(), Some("2026-12-24T18:00:00+00:00"));
        let deploy = req.deploy.expect("a deploy");
        assert_eq!((deploy.environment.as_str(), deploy.ssh_keys), ("admin/debian12", vec!["ssh-ed25519 AAAA seven".to_owned()]));
        assert_eq!(req.name, None);
        let names = Typed { names: "a-1, a-2".into(), duration: "1h".into(), ..Typed::default() };
        let req = request(&names, &[]).expect("by name");
        assert_eq!((req.nodes.count, req.nodes.names), (None, Some(vec!["a-1".to_owned(), "a-2".to_owned()])));
        assert_eq!(req.start, None, "as soon as possible");
        let bad = Typed { count: "two".into(), ..Typed::default() };
        assert_eq!(request(&bad, &[]).map(|_| ()).map_err(|e| field_of(&e.to_string())), Err("count"));
        let bad = Typed { count: "1".into(), when: "at".into(), start: "tomorrow".into(), ..Typed::default() };
        assert_eq!(request(&bad, &[]).map(|_| ()).map_err(|e| field_of(&e.to_string())), Err("start"));
    }
}
