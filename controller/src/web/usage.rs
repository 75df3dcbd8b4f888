//! The usage page (issue 19, item 9): node-hours (and GPU-hours) per
//! project, user, cluster or GPU model, month by month, as a stacked bar
//! chart drawn on the server (SVG in the page) and a table, with a CSV
//! download. Each month is the API's `GET /api/v1/usage` report for that
//! month (`App::usage_report`), so who sees what is the API's rule: users
//! their own projects, project managers theirs, admins everything.

use std::collections::BTreeMap;
use std::sync::Arc;

use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use super::session::SignedIn;
use super::{NavUser, WebError, page};
use crate::app::{Actor, App, AppError};
use crate::http::usage::{csv_response, shown_key};
use crate::model::Seconds;
use crate::model::usage::{month_start, next_month};
use ferrum_api::usage::{UsageGroupBy, UsageQuery};

/// The page's query: every field text, so a bad value is said on the page.
#[derive(Debug, Default, Deserialize)]
pub struct UsageForm {
    #[serde(default)]
    group_by: Option<String>,
    /// How many months back, this one included (1 to 24; default 6).
    #[serde(default)]
    months: Option<String>,
    #[serde(default)]
    project: Option<String>,
    /// `csv`: the table as a file.
    #[serde(default)]
    format: Option<String>,
}

const GROUPS: [(&str, &str, UsageGroupBy); 4] = [
    ("project", "project", UsageGroupBy::Project),
    ("user", "user", UsageGroupBy::User),
    ("cluster", "cluster", UsageGroupBy::Cluster),
    ("gpu_model", "GPU model", UsageGroupBy::GpuModel),
];
/// Series drawn apart in the chart; the rest is "others".
const SERIES: usize = 7;
const CHART_W: i64 = 900;
const CHART_H: i64 = 260;
const AXIS_W: i64 = 70;

/// One key's line of the table: node-hours per month, then the total.
#[derive(Debug)]
pub struct KeyLine {
    pub key: String,
    pub series: usize,
    pub months: Vec<String>,
    pub total: String,
    pub gpu_total: String,
}

#[derive(Debug)]
pub struct Segment {
    pub x: i64,
    pub y: i64,
    pub w: i64,
    pub h: i64,
    pub series: usize,
    pub title: String,
}

#[derive(Debug)]
pub struct MonthLabel {
    pub x: i64,
    pub label: String,
}

#[derive(Debug, Template)]
#[template(path = "usage.html")]
pub struct UsagePage {
    nav: Option<NavUser>,
    active: &'static str,
    groups: [(&'static str, &'static str, UsageGroupBy); 4],
    group: &'static str,
    group_label: &'static str,
    months_asked: String,
    project: String,
    csv_href: String,
    month_names: Vec<String>,
    lines: Vec<KeyLine>,
    month_totals: Vec<String>,
    grand_total: String,
    legend: Vec<(usize, String)>,
    segments: Vec<Segment>,
    labels: Vec<MonthLabel>,
    /// The scale's top, in node-hours, and its y.
    top: String,
    chart_w: i64,
    chart_h: i64,
    axis_w: i64,
    error: Option<String>,
}

fn hours(seconds: i64) -> String {
    format!("{:.1}", seconds as f64 / 3600.0)
}

fn month_name(t: Seconds) -> String {
    chrono::DateTime::from_timestamp(t, 0).map_or_else(String::new, |d| d.format("%Y-%m").to_string())
}

/// One CSV line: a key's use in a month.
#[derive(Debug, Serialize)]
struct CsvLine {
    key: String,
    month: String,
    node_hours: f64,
    gpu_hours: f64,
    node_seconds: i64,
    gpu_seconds: i64,
}

/// The months `[start, end)` ending with this one, oldest first.
fn month_windows(now: Seconds, count: usize) -> Vec<(Seconds, Seconds)> {
    let mut start = month_start(now);
    let mut out = vec![(start, next_month(start))];
    while out.len() < count {
        start = month_start(start - 1);
        out.push((start, next_month(start)));
    }
    out.reverse();
    out
}

pub async fn usage(State(app): State<Arc<App>>, s: SignedIn, Query(form): Query<UsageForm>) -> Result<Response, WebError> {
    let actor: &Actor = &s.0.actor;
    let mut error = None;
    let (group, group_label, group_by) = match form.group_by.as_deref().filter(|g| !g.is_empty()) {
        None => GROUPS[0],
        Some(g) => GROUPS.into_iter().find(|(name, _, _)| *name == g).unwrap_or_else(|| {
            error = Some("group_by: one of project, user, cluster, gpu_model".to_owned());
            GROUPS[0]
        }),
    };
    let months_asked = form.months.as_deref().map(str::trim).filter(|m| !m.is_empty()).unwrap_or("6").to_owned();
    let count = match months_asked.parse::<usize>() {
        Ok(n) if (1..=24).contains(&n) => n,
        _ => {
            error = Some("months: a whole number from 1 to 24".to_owned());
            6
        }
    };
    let project = form.project.as_deref().map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned);
    let now = app.now();
    let windows = month_windows(now, count);

    // key -> per month (node-seconds, gpu-seconds)
    let mut table: BTreeMap<String, Vec<(i64, i64)>> = BTreeMap::new();
    let mut status = StatusCode::OK;
    if error.is_none() {
        for (i, &(from, to)) in windows.iter().enumerate() {
            let q = UsageQuery {
                from: chrono::DateTime::from_timestamp(from, 0),
                to: if to > now { None } else { chrono::DateTime::from_timestamp(to, 0) },
                group_by: Some(group_by),
                project: project.clone(),
                format: None,
            };
            match app.usage_report(actor, &q).await {
                Ok((_, dimension, totals)) => {
                    for t in totals {
                        let cells = table.entry(shown_key(dimension, t.key)).or_insert_with(|| vec![(0, 0); windows.len()]);
                        cells[i] = (t.node_seconds, t.gpu_seconds);
                    }
                }
                Err(e @ (AppError::BadRequest { .. } | AppError::Forbidden(_) | AppError::NotFound(_))) => {
                    status = if matches!(e, AppError::Forbidden(_)) { StatusCode::FORBIDDEN } else { StatusCode::BAD_REQUEST };
                    error = Some(e.to_string());
                    table.clear();
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
    } else {
        status = StatusCode::BAD_REQUEST;
    }
    let month_names: Vec<String> = windows.iter().map(|&(from, _)| month_name(from)).collect();

    if form.format.as_deref() == Some("csv") && error.is_none() {
        let mut lines = Vec::new();
        for (key, cells) in &table {
            for (month, &(n, g)) in month_names.iter().zip(cells) {
                let h = |s: i64| (s as f64 / 36.0).round() / 100.0;
                lines.push(CsvLine {
                    key: key.clone(),
                    month: month.clone(),
                    node_hours: h(n),
                    gpu_hours: h(g),
                    node_seconds: n,
                    gpu_seconds: g,
                });
            }
        }
        let header = ["key", "month", "node_hours", "gpu_hours", "node_seconds", "gpu_seconds"];
        return Ok(csv_response(&header, &lines, &format!("usage-by-{group}.csv")).unwrap_or_else(IntoResponse::into_response));
    }

    // Keys by total use, largest first; the first SERIES drawn apart.
    let mut keys: Vec<(String, Vec<(i64, i64)>)> = table.into_iter().collect();
    keys.sort_by_key(|(key, cells)| (std::cmp::Reverse(cells.iter().map(|c| c.0).sum::<i64>()), key.clone()));
    let series_of = |i: usize| i.min(SERIES);
    let lines: Vec<KeyLine> = keys
        .iter()
        .enumerate()
        .map(|(i, (key, cells))| KeyLine {
            key: key.clone(),
            series: series_of(i),
            months: cells.iter().map(|c| hours(c.0)).collect(),
            total: hours(cells.iter().map(|c| c.0).sum()),
            gpu_total: hours(cells.iter().map(|c| c.1).sum()),
        })
        .collect();
    let month_sums: Vec<i64> = (0..windows.len()).map(|m| keys.iter().map(|(_, c)| c[m].0).sum()).collect();
    let peak = month_sums.iter().copied().max().unwrap_or(0).max(3600);
    let slot = (CHART_W - AXIS_W) / i64::try_from(windows.len()).unwrap_or(1).max(1);
    let bar_w = (slot * 3 / 5).max(4);
    let mut segments = Vec::new();
    for (m, month) in month_names.iter().enumerate() {
        let x = AXIS_W + i64::try_from(m).unwrap_or(0) * slot + (slot - bar_w) / 2;
        let mut y = CHART_H;
        // Stacked: the largest key at the bottom; "others" summed on top.
        let mut stack: Vec<(usize, String, i64)> = Vec::new();
        for (i, (key, cells)) in keys.iter().enumerate() {
            let s = series_of(i);
            match stack.last_mut().filter(|(series, _, _)| *series == SERIES && s == SERIES) {
                Some(last) => last.2 += cells[m].0,
                None => stack.push((s, if s == SERIES { "others".to_owned() } else { key.clone() }, cells[m].0)),
            }
        }
        for (series, key, seconds) in stack.into_iter().filter(|(_, _, s)| *s > 0) {
            let h = (i128::from(seconds) * i128::from(CHART_H - 10) / i128::from(peak)) as i64;
            y -= h.max(1);
            segments.push(Segment { x, y, w: bar_w, h: h.max(1), series, title: format!("{key}, {month}: {} node-hours", hours(seconds)) });
        }
    }
    let mut legend: Vec<(usize, String)> = keys.iter().take(SERIES).enumerate().map(|(i, (k, _))| (i, k.clone())).collect();
    if keys.len() > SERIES {
        legend.push((SERIES, format!("others ({} more)", keys.len() - SERIES)));
    }
    let labels = (0..windows.len())
        .map(|m| MonthLabel { x: AXIS_W + i64::try_from(m).unwrap_or(0) * slot + slot / 2, label: month_names[m].clone() })
        .collect();
    let mut csv = url::form_urlencoded::Serializer::new(String::new());
    csv.append_pair("group_by", group).append_pair("months", &count.to_string());
    if let Some(p) = &project {
        csv.append_pair("project", p);
    }
    csv.append_pair("format", "csv");
    let p = UsagePage {
        nav: Some(NavUser::from(&s.0)),
        active: "usage",
        groups: GROUPS,
        group,
        group_label,
        months_asked,
        project: project.unwrap_or_default(),
        csv_href: format!("/usage?{}", csv.finish()),
        grand_total: hours(month_sums.iter().sum()),
        month_totals: month_sums.iter().map(|&s| hours(s)).collect(),
        month_names,
        lines,
        legend,
        segments,
        labels,
        top: hours(peak),
        chart_w: CHART_W,
        chart_h: CHART_H,
        axis_w: AXIS_W,
        error,
    };
    Ok(page(status, &p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn months_end_with_this_one_oldest_first() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-03-15T10:00:00Z").map(|d| d.timestamp()).unwrap_or_default();
        let names: Vec<String> = month_windows(now, 4).into_iter().map(|(from, _)| month_name(from)).collect();
        assert_eq!(names, ["2025-12", "2026-01", "2026-02", "2026-03"]);
        let w = month_windows(now, 1);
        assert_eq!((month_name(w[0].0), month_name(w[0].1)), ("2026-03".to_owned(), "2026-04".to_owned()));
    }
}
