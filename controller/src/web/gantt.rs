//! The calendar page (issue 19, item 4): a Gantt chart of the nodes (by
//! cluster, down) over a window of time (across), drawn on the server as
//! SVG inside the page, as OAR's drawgantt-svg does; and "find a slot",
//! which asks the same placement as `GET /api/v1/availability` and draws
//! the earliest slot on the chart, one click from booking it.
//!
//! The chart shows what `GET /api/v1/calendar` shows to the same caller,
//! through the same view (`http::views::busy`): the caller's own leases
//! (all of them for an admin) with their id and owner, others' as busy
//! time with a type and a state only. Geometry is computed here
//! ([`chart`], a pure function with unit tests) and written by the
//! template (`calendar.html`), which escapes every text. No script: hover
//! shows an SVG `<title>`; the caller's own bars are links to their line
//! in the table under the chart, so they take the keyboard focus too.

use std::sync::Arc;

use askama::Template;
use axum::Form;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use chrono::{DateTime, NaiveDate, Utc};
use serde::Deserialize;

use super::pages::when;
use super::session::SignedIn;
use super::{NavUser, WebError, page};
use crate::app::policy::{Preview, fmt_hours};
use crate::app::{Actor, App, AppError};
use crate::http::views;
use crate::model::Seconds;
use ferrum_api as api;

/// How much time the chart spans.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Zoom {
    Day,
    Week,
    Month,
}

impl Zoom {
    pub const ALL: [Zoom; 3] = [Zoom::Day, Zoom::Week, Zoom::Month];

    pub fn as_str(self) -> &'static str {
        match self {
            Zoom::Day => "day",
            Zoom::Week => "week",
            Zoom::Month => "month",
        }
    }

    fn parse(s: &str) -> Option<Zoom> {
        Zoom::ALL.into_iter().find(|z| z.as_str() == s)
    }

    /// The window's length.
    pub fn seconds(self) -> Seconds {
        match self {
            Zoom::Day => DAY,
            Zoom::Week => 7 * DAY,
            Zoom::Month => 30 * DAY,
        }
    }

    /// Seconds between two vertical lines, and between two labelled ones.
    fn ticks(self) -> (Seconds, Seconds) {
        match self {
            Zoom::Day => (3_600, 3 * 3_600),
            Zoom::Week => (6 * 3_600, DAY),
            Zoom::Month => (DAY, 7 * DAY),
        }
    }
}

const DAY: Seconds = 86_400;
/// The chart's size in CSS pixels: drawn at its own size (text as large
/// as the page's on any screen), 1,110 px wide to fit the page's column;
/// a narrower window scrolls it sideways in its box.
const LABEL_WIDTH: i64 = 190;
const TIME_WIDTH: i64 = 920;
const AXIS_HEIGHT: i64 = 30;
const CLUSTER_HEIGHT: i64 = 28;
const ROW_HEIGHT: i64 = 22;
/// A lease's bar in its row, and a found slot's outline.
const BAR_HEIGHT: i64 = 14;
const SLOT_HEIGHT: i64 = 18;

/// One node's line of the chart, as the calendar view gives it.
#[derive(Clone, Debug)]
pub struct NodeLine {
    pub name: String,
    pub cluster: String,
    pub state: api::NodeState,
    pub busy: Vec<api::BusyInterval>,
}

/// A slot to draw over the chart: its window and its nodes.
#[derive(Clone, Debug)]
pub struct SlotDraw {
    pub start: Seconds,
    pub end: Seconds,
    pub nodes: Vec<String>,
}

/// The chart as the template draws it, in SVG units.
#[derive(Debug, Default)]
pub struct Chart {
    pub width: i64,
    pub height: i64,
    pub time_x: i64,
    pub time_w: i64,
    pub row_h: i64,
    pub clusters: Vec<Band>,
    pub rows: Vec<Row>,
    pub ticks: Vec<Tick>,
    pub bars: Vec<Bar>,
    pub slot: Vec<Bar>,
    /// The now-line, when now is inside the window.
    pub now_x: Option<i64>,
    /// Leases drawn (distinct), and how many are the caller's.
    pub leases: usize,
    pub mine: usize,
}

#[derive(Debug)]
pub struct Band {
    pub y: i64,
    pub name: String,
    pub nodes: usize,
}

#[derive(Debug)]
pub struct Row {
    pub y: i64,
    pub name: String,
    /// Why the row is shaded (`maintenance`, `suspect`, `dead`,
    /// `retired`): said in its label too, not by colour alone.
    pub shaded: Option<&'static str>,
}

#[derive(Debug)]
pub struct Tick {
    pub x: i64,
    pub label: Option<String>,
}

#[derive(Debug)]
pub struct Bar {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
    pub class: String,
    pub title: String,
    /// The caller's own lease: a link to its line under the chart.
    pub lease: Option<i64>,
}

fn shaded(state: api::NodeState) -> Option<&'static str> {
    state.is_unavailable().then(|| state.as_str())
}

fn state_name(state: api::LeaseState) -> &'static str {
    crate::model::lease::LeaseState::from(state).as_str()
}

/// `t` on the time axis of a window `[from, to)`, clamped to it.
fn x_of(t: Seconds, from: Seconds, to: Seconds) -> i64 {
    let t = t.clamp(from, to);
    LABEL_WIDTH + i64::try_from(i128::from(t - from) * i128::from(TIME_WIDTH) / i128::from((to - from).max(1))).unwrap_or(0)
}

fn short(t: Seconds) -> String {
    DateTime::from_timestamp(t, 0).map_or_else(|| t.to_string(), |d| d.format("%m-%d %H:%M").to_string())
}

/// Lays out the chart of `lines` (in cluster order) over `[from, to)`.
pub fn chart(lines: &[NodeLine], from: Seconds, to: Seconds, zoom: Zoom, now: Seconds, slot: Option<&SlotDraw>) -> Chart {
    let mut c = Chart { width: LABEL_WIDTH + TIME_WIDTH, time_x: LABEL_WIDTH, time_w: TIME_WIDTH, row_h: ROW_HEIGHT, ..Chart::default() };
    let (minor, major) = zoom.ticks();
    let mut t = from - from.rem_euclid(minor);
    while t < to {
        if t >= from {
            // Weeks start on Mondays (1970-01-05 was one); days and hours
            // fall on the same ticks either way.
            let label = ((t - 4 * DAY).rem_euclid(major) == 0).then(|| {
                let d = DateTime::from_timestamp(t, 0).unwrap_or_default();
                if zoom == Zoom::Day { d.format("%H:%M").to_string() } else { d.format("%a %d %b").to_string() }
            });
            c.ticks.push(Tick { x: x_of(t, from, to), label });
        }
        t += minor;
    }
    c.now_x = (from..to).contains(&now).then(|| x_of(now, from, to));
    let mut y = AXIS_HEIGHT;
    let mut seen = std::collections::HashSet::new();
    let mut mine = std::collections::HashSet::new();
    let mut busy_count = 0usize;
    for (i, line) in lines.iter().enumerate() {
        if i == 0 || lines[i - 1].cluster != line.cluster {
            let nodes = lines[i..].iter().take_while(|l| l.cluster == line.cluster).count();
            c.clusters.push(Band { y, name: line.cluster.clone(), nodes });
            y += CLUSTER_HEIGHT;
        }
        c.rows.push(Row { y, name: line.name.clone(), shaded: shaded(line.state) });
        for b in &line.busy {
            let (start, end) = (b.start.timestamp(), b.end.timestamp());
            if end <= from || start >= to {
                continue;
            }
            let x = x_of(start, from, to);
            let w = (x_of(end, from, to) - x).max(1);
            let mut class = format!("bar st-{}", state_name(b.state));
            if b.lease_type == api::LeaseType::Besteffort {
                class.push_str(" besteffort");
            }
            if b.mine {
                class.push_str(" mine");
            }
            let kind = if b.lease_type == api::LeaseType::Besteffort { "best-effort " } else { "" };
            let head = match (b.lease, &b.owner) {
                (Some(id), Some(owner)) => format!("Lease {id} of {owner}{}", if b.mine { " (yours)" } else { "" }),
                _ => "Busy".to_owned(),
            };
            let title = format!("{head}: {kind}{}, {} to {} UTC, {}", state_name(b.state), short(start), short(end), line.name);
            match b.lease {
                Some(id) => {
                    seen.insert(id);
                    if b.mine {
                        mine.insert(id);
                    }
                }
                None => busy_count += 1,
            }
            c.bars.push(Bar {
                x,
                y: y + (ROW_HEIGHT - BAR_HEIGHT) / 2,
                w,
                h: BAR_HEIGHT,
                class,
                title,
                lease: b.mine.then_some(b.lease).flatten(),
            });
        }
        if let Some(s) = slot.filter(|s| s.nodes.contains(&line.name) && s.end > from && s.start < to) {
            let x = x_of(s.start, from, to);
            let title = format!("Free for you: {} to {} UTC, {}", short(s.start), short(s.end), line.name);
            let w = (x_of(s.end, from, to) - x).max(1);
            c.slot.push(Bar { x, y: y + (ROW_HEIGHT - SLOT_HEIGHT) / 2, w, h: SLOT_HEIGHT, class: "slot".into(), title, lease: None });
        }
        y += ROW_HEIGHT;
    }
    c.height = y + 4;
    // Others' leases are anonymous: each busy interval counts as one.
    c.leases = seen.len() + busy_count;
    c.mine = mine.len();
    c
}

/// The calendar page's query: the window, the filter, and "find a slot".
/// Every field is text, so a bad value is said on the page.
#[derive(Debug, Default, Deserialize)]
pub struct CalendarQuery {
    #[serde(default)]
    pub zoom: Option<String>,
    /// `YYYY-MM-DD` (the window starts at its midnight UTC).
    #[serde(default)]
    pub from: Option<String>,
    #[serde(default)]
    pub filter: Option<String>,
    /// Find a slot: this many nodes...
    #[serde(default)]
    pub count: Option<String>,
    /// ...for this long.
    #[serde(default)]
    pub duration: Option<String>,
    /// ...for this project (asked only of a member of several).
    #[serde(default)]
    pub project: Option<String>,
    /// A lease just booked from this page.
    #[serde(default)]
    pub booked: Option<i64>,
}

/// One of the caller's leases in the window, under the chart.
#[derive(Debug)]
pub struct MineLine {
    pub id: i64,
    pub state: &'static str,
    pub start: String,
    pub end: String,
    pub nodes: String,
}

/// The earliest slot found, with what booking it takes.
#[derive(Debug)]
pub struct Found {
    pub start: String,
    pub end: String,
    pub nodes: String,
    pub names: String,
    pub start_rfc3339: String,
    pub duration: String,
    /// What the policy will say of it, line by line.
    pub policy: Vec<String>,
    /// Why the policy would refuse it (then it is not offered).
    pub refused: Option<String>,
    /// The booking page with these nodes and this duration (to deploy an
    /// environment with the profile's SSH keys).
    pub book_href: String,
}

/// The policy preview of a slot, in sentences.
pub(super) fn policy_lines(p: &Preview, nodes: usize, duration: &str) -> Vec<String> {
    let mut lines = vec![format!("{} node-hours: {nodes} node(s) for {duration}.", fmt_hours(p.node_seconds))];
    lines.push(match (&p.project, &p.quota) {
        (Some(_), Some(q)) => format!(
            "Project {}: {} of its {} node-hours booked from {} to {}.",
            q.project,
            fmt_hours(q.booked_seconds),
            q.quota_node_hours.unwrap_or_default(),
            when(q.from),
            when(q.to)
        ),
        (Some(name), None) => format!("Project {name} has no quota."),
        (None, _) => "An operator lease (no project): the policy does not limit it.".to_owned(),
    });
    lines.push(match &p.approval {
        Some(why) => format!("It {why}."),
        None => "It needs no admin's approval.".to_owned(),
    });
    lines
}

#[derive(Debug, Template)]
#[template(path = "calendar.html")]
pub struct CalendarPage {
    nav: Option<NavUser>,
    active: &'static str,
    zoom: Zoom,
    zooms: [Zoom; 3],
    from_day: String,
    /// Links that keep the filter: the other zooms, the windows before and
    /// after, today's.
    zoom_links: Vec<(Zoom, String)>,
    prev_href: String,
    next_href: String,
    today_href: String,
    window: String,
    filter: String,
    count: String,
    duration: String,
    /// The caller's projects, when there is a choice to make.
    projects: Vec<String>,
    project: String,
    chart: Chart,
    mine: Vec<MineLine>,
    found: Option<Found>,
    booked: Option<i64>,
    /// A refusal, and the field it concerns (`filter`, `count`,
    /// `duration`, `from`, `zoom`, or empty for the page).
    error: Option<(String, String)>,
}

impl CalendarPage {
    fn error_for(&self, field: &str) -> Option<&str> {
        self.error.as_ref().filter(|(f, _)| f == field).map(|(_, m)| m.as_str())
    }
}

/// The calendar's address for a window and a filter.
fn href(zoom: Zoom, from: &str, filter: Option<&str>) -> String {
    let mut q = url::form_urlencoded::Serializer::new(String::new());
    q.append_pair("zoom", zoom.as_str()).append_pair("from", from);
    if let Some(f) = filter {
        q.append_pair("filter", f);
    }
    format!("/calendar?{}", q.finish())
}

fn day(t: Seconds) -> String {
    DateTime::from_timestamp(t, 0).map_or_else(String::new, |d| d.format("%Y-%m-%d").to_string())
}

/// The field an application refusal names (`field: why`), if it is one
/// of this page's.
fn field_of(message: &str) -> String {
    let controls = [
        ("filter", "filter"),
        ("nodes.filter", "filter"),
        ("count", "count"),
        ("nodes.count", "count"),
        ("duration", "duration"),
        ("from", "from"),
        ("zoom", "zoom"),
    ];
    super::control_of(message, &controls).to_owned()
}

fn refusal(e: AppError) -> Result<(String, String), WebError> {
    match e {
        AppError::BadRequest { .. } | AppError::Conflict { .. } => {
            let m = e.to_string();
            Ok((field_of(&m), m))
        }
        e => Err(e.into()),
    }
}

/// The calendar page of `actor` for `q` (also what the `gantt` bench
/// renders).
pub async fn calendar_page(
    app: &App,
    actor: &Actor,
    nav: Option<NavUser>,
    q: &CalendarQuery,
) -> Result<(StatusCode, CalendarPage), WebError> {
    let now = app.now();
    let mut error = None;
    let zoom = match q.zoom.as_deref().filter(|z| !z.is_empty()) {
        None => Zoom::Week,
        Some(z) => Zoom::parse(z).unwrap_or_else(|| {
            error = Some(("zoom".to_owned(), "zoom: one of day, week, month".to_owned()));
            Zoom::Week
        }),
    };
    let today = now - now.rem_euclid(DAY);
    let mut from = match q.from.as_deref().map(str::trim).filter(|f| !f.is_empty()) {
        None => today,
        Some(f) => match NaiveDate::parse_from_str(f, "%Y-%m-%d") {
            Ok(d) => d.and_hms_opt(0, 0, 0).map_or(today, |t| t.and_utc().timestamp()),
            Err(_) => {
                error = Some(("from".to_owned(), "from: a date, YYYY-MM-DD".to_owned()));
                today
            }
        },
    };
    let filter = q.filter.as_deref().map(str::trim).filter(|f| !f.is_empty());
    let count = q.count.as_deref().map(str::trim).unwrap_or_default();
    let duration = q.duration.as_deref().map(str::trim).unwrap_or_default();
    let project = q.project.as_deref().map(str::trim).filter(|p| !p.is_empty());

    // Find a slot, first: the window moves to show it.
    let mut found = None;
    let mut forbidden = false;
    let mut slot = None;
    if error.is_none() && (!count.is_empty() || !duration.is_empty()) {
        let ask = match count.parse::<u32>() {
            Err(_) => Err(("count".to_owned(), "count: a whole number of nodes".to_owned())),
            Ok(_) if duration.is_empty() => Err(("duration".to_owned(), "duration: how long, e.g. 2h or 1d".to_owned())),
            Ok(n) => Ok(n),
        };
        match ask {
            Err(e) => error = Some(e),
            Ok(n) => {
                let query = api::AvailabilityQuery {
                    count: n,
                    duration: duration.to_owned(),
                    filter: filter.map(str::to_owned),
                    limit: Some(1),
                    ..Default::default()
                };
                match app.availability(actor, &query).await {
                    Ok(slots) => match slots.into_iter().next() {
                        Some((start, end, nodes)) => {
                            if !(from..from + zoom.seconds()).contains(&start) {
                                from = start - start.rem_euclid(DAY);
                            }
                            let (policy, refused) = match app.policy_preview(actor, project, n, start, end, false).await {
                                Ok(p) => (policy_lines(&p, nodes.len(), duration), p.refusal),
                                Err(e) => (Vec::new(), Some(refusal(e).map(|(_, m)| m).unwrap_or_else(|e| e.to_string()))),
                            };
                            let mut book = url::form_urlencoded::Serializer::new(String::new());
                            book.append_pair("names", &nodes.join(",")).append_pair("duration", duration);
                            if let Some(p) = project {
                                book.append_pair("project", p);
                            }
                            found = Some(Found {
                                book_href: format!("/book?{}", book.finish()),
                                policy,
                                refused,
                                start: when(start),
                                end: when(end),
                                nodes: nodes.join(", "),
                                names: nodes.join(","),
                                start_rfc3339: DateTime::<Utc>::from_timestamp(start, 0).unwrap_or_default().to_rfc3339(),
                                duration: duration.to_owned(),
                            });
                            slot = Some(SlotDraw { start, end, nodes });
                        }
                        None => {
                            error = Some(("count".to_owned(), "no slot: not enough matching nodes before the booking horizon".to_owned()))
                        }
                    },
                    // The policy refuses any slot (quota, class limits): said
                    // at the top, with the API's status.
                    Err(AppError::Forbidden(why)) => {
                        forbidden = true;
                        error = Some((String::new(), why));
                    }
                    Err(e) => error = Some(refusal(e)?),
                }
            }
        }
    }

    let to = from + zoom.seconds();
    let rows = match app.calendar_view(Some(from), Some(to), filter).await {
        Ok((_, _, rows)) => rows,
        Err(e) => {
            error = Some(refusal(e)?);
            app.calendar_view(Some(from), Some(to), None).await?.2
        }
    };
    let mut lines: Vec<NodeLine> = rows
        .into_iter()
        .map(|(n, busy)| NodeLine {
            state: crate::model::node::shown_state(n.state, n.policy),
            name: n.name,
            cluster: n.cluster,
            busy: busy.into_iter().map(|b| views::busy(b, actor)).collect(),
        })
        .collect();
    lines.sort_by(|a, b| (&a.cluster, &a.name).cmp(&(&b.cluster, &b.name)));
    let chart = chart(&lines, from, to, zoom, now, slot.as_ref());

    let mut mine: Vec<MineLine> = Vec::new();
    for line in &lines {
        for b in line.busy.iter().filter(|b| b.mine) {
            let Some(id) = b.lease else { continue };
            match mine.iter_mut().find(|m| m.id == id) {
                Some(m) => {
                    m.nodes.push_str(", ");
                    m.nodes.push_str(&line.name);
                }
                None => mine.push(MineLine {
                    id,
                    state: state_name(b.state),
                    start: when(b.start.timestamp()),
                    end: when(b.end.timestamp()),
                    nodes: line.name.clone(),
                }),
            }
        }
    }
    mine.sort_by_key(|m| m.id);
    let status = match (&error, forbidden) {
        (_, true) => StatusCode::FORBIDDEN,
        (Some(_), false) => StatusCode::BAD_REQUEST,
        (None, false) => StatusCode::OK,
    };
    Ok((
        status,
        CalendarPage {
            nav,
            active: "calendar",
            zoom,
            zooms: Zoom::ALL,
            from_day: day(from),
            zoom_links: Zoom::ALL.into_iter().map(|z| (z, href(z, &day(from), filter))).collect(),
            prev_href: href(zoom, &day(from - zoom.seconds()), filter),
            next_href: href(zoom, &day(to), filter),
            today_href: href(zoom, &day(today), filter),
            window: format!("{} to {}", when(from), when(to)),
            filter: filter.unwrap_or_default().to_owned(),
            count: count.to_owned(),
            duration: duration.to_owned(),
            projects: if actor.projects.len() > 1 { actor.projects.iter().map(|(_, n)| n.clone()).collect() } else { Vec::new() },
            project: project.unwrap_or_default().to_owned(),
            chart,
            mine,
            found,
            booked: q.booked,
            error,
        },
    ))
}

pub async fn calendar(State(app): State<Arc<App>>, s: SignedIn, Query(q): Query<CalendarQuery>) -> Result<Response, WebError> {
    let (status, p) = calendar_page(&app, &s.0.actor, Some(NavUser::from(&s.0)), &q).await?;
    Ok(page(status, &p))
}

/// "Book these nodes": the slot found, as the page showed it.
#[derive(Debug, Deserialize)]
pub struct BookForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    nodes: String,
    #[serde(default)]
    start: String,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    filter: String,
    #[serde(default)]
    zoom: String,
    #[serde(default)]
    project: String,
}

pub async fn book(State(app): State<Arc<App>>, s: SignedIn, Form(form): Form<BookForm>) -> Result<Response, WebError> {
    s.check_csrf(&form.csrf)?;
    let names: Vec<String> = form.nodes.split(',').map(str::trim).filter(|n| !n.is_empty()).map(str::to_owned).collect();
    // The start of the slot shown; one that does not read is refused, never
    // booked as soon as possible instead.
    let start = match form.start.trim() {
        "" => None,
        text => Some(
            DateTime::parse_from_rfc3339(text)
                .map_err(|_| AppError::bad_request(format!("start: '{text}' is not a time (RFC 3339)")))?
                .with_timezone(&Utc),
        ),
    };
    let req = api::LeaseCreate {
        project: Some(form.project.trim().to_owned()).filter(|p| !p.is_empty()),
        nodes: api::NodeSelector { names: Some(names.clone()), ..Default::default() },
        start,
        duration: Some(form.duration.trim().to_owned()),
        ..Default::default()
    };
    match app.create_lease(&s.0.actor, req).await {
        Ok(lease) => {
            let zoom = Zoom::parse(&form.zoom).unwrap_or(Zoom::Week);
            let filter = Some(form.filter.trim()).filter(|f| !f.is_empty());
            let to = format!("{}&booked={}", href(zoom, &day(lease.start), filter), lease.id.0);
            Ok(Redirect::to(&to).into_response())
        }
        Err(e) => {
            // The slot may be gone (someone booked it meanwhile): the page
            // says so and finds the next one.
            let status = if matches!(e, AppError::Conflict { .. }) { StatusCode::CONFLICT } else { StatusCode::BAD_REQUEST };
            let (field, message) = refusal(e)?;
            let q = CalendarQuery {
                zoom: Some(form.zoom),
                filter: Some(form.filter),
                count: Some(names.len().to_string()),
                duration: Some(form.duration),
                project: Some(form.project),
                ..CalendarQuery::default()
            };
            let (_, mut p) = calendar_page(&app, &s.0.actor, Some(NavUser::from(&s.0)), &q).await?;
            p.error = Some((field, format!("not booked: {message}")));
            Ok(page(status, &p))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn busy(start: Seconds, end: Seconds, lease: Option<i64>, mine: bool) -> api::BusyInterval {
        api::BusyInterval {
            start: DateTime::from_timestamp(start, 0).unwrap_or_default(),
            end: DateTime::from_timestamp(end, 0).unwrap_or_default(),
            lease_type: api::LeaseType::Default,
            state: api::LeaseState::Active,
            lease,
            owner: lease.map(|_| "alice".to_owned()),
            mine,
        }
    }

    fn line(name: &str, cluster: &str, state: api::NodeState, busy: Vec<api::BusyInterval>) -> NodeLine {
        NodeLine { name: name.into(), cluster: cluster.into(), state, busy }
    }

    #[test]
    fn bars_sit_on_their_row_clamped_to_the_window() {
        let from = 10 * DAY;
        let to = from + DAY;
        let lines = vec![
            line("a-1", "a", api::NodeState::Available, vec![busy(from - 3_600, from + 6 * 3_600, Some(7), true)]),
            line("a-2", "a", api::NodeState::Maintenance, vec![busy(from + 12 * 3_600, to + DAY, None, false)]),
            line("b-1", "b", api::NodeState::Available, vec![busy(to + 10, to + 20, None, false)]),
        ];
        let c = chart(&lines, from, to, Zoom::Day, from + 3_600, None);
        assert_eq!(c.clusters.iter().map(|b| (b.name.as_str(), b.nodes)).collect::<Vec<_>>(), [("a", 2), ("b", 1)]);
        assert_eq!(c.rows.len(), 3);
        assert_eq!(c.rows[1].shaded, Some("maintenance"));
        // The lease from before the window starts at its left edge and
        // spans a quarter of it; the one past its end stops at the right.
        assert_eq!(c.bars.len(), 2, "the bar outside the window is not drawn");
        assert_eq!((c.bars[0].x, c.bars[0].w), (LABEL_WIDTH, TIME_WIDTH / 4));
        assert_eq!(c.bars[0].y, c.rows[0].y + (ROW_HEIGHT - BAR_HEIGHT) / 2);
        assert_eq!(c.bars[0].lease, Some(7));
        assert!(c.bars[0].class.contains("mine") && c.bars[0].title.starts_with("Lease 7 of alice (yours)"), "{:?}", c.bars[0]);
        assert_eq!((c.bars[1].x, c.bars[1].x + c.bars[1].w), (LABEL_WIDTH + TIME_WIDTH / 2, LABEL_WIDTH + TIME_WIDTH));
        assert!(c.bars[1].title.starts_with("Busy: active"), "{}", c.bars[1].title);
        assert_eq!(c.bars[1].lease, None);
        assert_eq!(c.now_x, Some(LABEL_WIDTH + TIME_WIDTH / 24));
        assert_eq!((c.leases, c.mine), (2, 1));
        // Hourly lines, labelled every three hours.
        assert_eq!(c.ticks.len(), 24);
        assert_eq!(c.ticks.iter().filter(|t| t.label.is_some()).count(), 8);
    }

    #[test]
    fn the_slot_found_is_drawn_on_its_nodes_only() {
        let from = 0;
        let lines = vec![line("a-1", "a", api::NodeState::Available, vec![]), line("a-2", "a", api::NodeState::Available, vec![])];
        let slot = SlotDraw { start: DAY, end: 2 * DAY, nodes: vec!["a-2".into()] };
        let c = chart(&lines, from, from + 7 * DAY, Zoom::Week, -5, Some(&slot));
        assert_eq!(c.slot.len(), 1);
        assert_eq!(c.slot[0].y, c.rows[1].y + (ROW_HEIGHT - SLOT_HEIGHT) / 2);
        assert_eq!(c.slot[0].w, TIME_WIDTH / 7);
        assert_eq!(c.now_x, None, "now is before the window");
    }

    #[test]
    fn a_refusal_names_the_field_of_the_page_it_concerns() {
        assert_eq!(field_of("nodes.filter: unknown property 'gpus'"), "filter");
        assert_eq!(field_of("duration: not a duration"), "duration");
        assert_eq!(field_of("quota exceeded: 3 node-hours left"), "");
    }
}
