//! Usage accounting's rules: what a lease's use of a node is at a given
//! time (what its end records, what a running lease counts), the GPUs a
//! node counts for, UTC months, the monthly rollups a record adds to, how a
//! query window splits into whole months (read from the rollups) and
//! partial months at its ends (read from the records), and how the parts'
//! sums add up. Pure: the stores only read and write rows.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, TimeZone, Utc};

use super::Seconds;

/// What usage is grouped by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Dimension {
    User,
    Project,
    Cluster,
    GpuModel,
}

impl Dimension {
    pub const ALL: [Dimension; 4] = [Dimension::User, Dimension::Project, Dimension::Cluster, Dimension::GpuModel];

    pub fn as_str(self) -> &'static str {
        match self {
            Dimension::User => "user",
            Dimension::Project => "project",
            Dimension::Cluster => "cluster",
            Dimension::GpuModel => "gpu_model",
        }
    }

    pub fn parse(s: &str) -> Option<Dimension> {
        Dimension::ALL.into_iter().find(|d| d.as_str() == s)
    }
}

/// Usage of one key: node-seconds and GPU-seconds (a node with 4 GPUs used
/// for an hour is 1 node-hour and 4 GPU-hours).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Total {
    /// The user, project, cluster or GPU model; `""` for none (an operator
    /// lease's project, a node without GPU).
    pub key: String,
    pub node_seconds: i64,
    pub gpu_seconds: i64,
}

/// When a lease's use of one node starts and ends, seen at `now`: from the
/// allocation's start (or the lease's actual start, when later) to `now`
/// (or the allocation's end, when earlier). `None` when the use has not
/// begun by `now`: nothing to record.
pub fn used_span(reserved: (Seconds, Seconds), started_at: Option<Seconds>, now: Seconds) -> Option<(Seconds, Seconds)> {
    let (reserved_start, reserved_end) = reserved;
    let start = started_at.map_or(reserved_start, |s| s.max(reserved_start));
    (start < now).then(|| (start, now.min(reserved_end).max(start)))
}

/// The seconds of `[start, end)` inside `[from, to)`.
pub fn clipped(span: (Seconds, Seconds), window: (Seconds, Seconds)) -> i64 {
    (span.1.min(window.1) - span.0.max(window.0)).max(0)
}

/// What a node counts for in GPU usage, from its `gpu_model` and
/// `gpu_count` properties (JSON values, `None` when absent): the model is
/// a string's text (another scalar's JSON text; none for `null`), the count
/// a number's integer part, never negative (0 for anything else).
pub fn node_gpus(model: Option<&serde_json::Value>, count: Option<&serde_json::Value>) -> (Option<String>, i64) {
    use serde_json::Value;
    let model = match model {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(other) => Some(other.to_string()),
    };
    let count = match count {
        Some(Value::Number(n)) => n.as_i64().or_else(|| n.as_f64().map(|f| f.trunc() as i64)).unwrap_or(0),
        _ => 0,
    };
    (model, count.max(0))
}

/// Whether a record of `project` (`None`: an operator lease) is among
/// `projects` (`None`: every record).
pub fn in_projects(projects: Option<&[String]>, project: Option<&str>) -> bool {
    projects.is_none_or(|p| p.iter().any(|name| name == project.unwrap_or_default()))
}

/// Sums per key, added from the parts of a window (rollups, clipped
/// records, running leases).
#[derive(Clone, Debug, Default)]
pub struct Totals(BTreeMap<String, (i64, i64)>);

impl Totals {
    /// Adds node-seconds and GPU-seconds to `key`.
    pub fn add(&mut self, total: Total) {
        let sum = self.0.entry(total.key).or_default();
        sum.0 += total.node_seconds;
        sum.1 += total.gpu_seconds;
    }

    /// Adds what `r` holds within `window`, under its key of `dimension`.
    pub fn add_clipped(&mut self, dimension: Dimension, r: &RecordUse<'_>, window: (Seconds, Seconds)) {
        let seconds = clipped((r.start, r.end), window);
        if seconds > 0 {
            self.add(Total { key: r.key(dimension).to_owned(), node_seconds: seconds, gpu_seconds: seconds * r.gpu_count.max(0) });
        }
    }

    /// The sums, by key.
    pub fn into_vec(self) -> Vec<Total> {
        self.0.into_iter().map(|(key, (node_seconds, gpu_seconds))| Total { key, node_seconds, gpu_seconds }).collect()
    }
}

/// The first second of the UTC month holding `t`.
pub fn month_start(t: Seconds) -> Seconds {
    let d = DateTime::<Utc>::from_timestamp(t, 0).unwrap_or_default();
    Utc.with_ymd_and_hms(d.year(), d.month(), 1, 0, 0, 0).single().map_or(t, |m| m.timestamp())
}

/// The first second of the UTC month after the one holding `t`.
pub fn next_month(t: Seconds) -> Seconds {
    let d = DateTime::<Utc>::from_timestamp(t, 0).unwrap_or_default();
    let (y, m) = if d.month() == 12 { (d.year() + 1, 1) } else { (d.year(), d.month() + 1) };
    Utc.with_ymd_and_hms(y, m, 1, 0, 0, 0).single().map_or(t, |m| m.timestamp())
}

/// `[start, end)` cut at month boundaries: `(month, seconds in it)`.
pub fn month_pieces(start: Seconds, end: Seconds) -> Vec<(Seconds, i64)> {
    let mut out = Vec::new();
    let mut t = start;
    while t < end {
        let next = next_month(t);
        out.push((month_start(t), next.min(end) - t));
        t = next;
    }
    out
}

/// One row of the monthly rollups.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct RollupKey {
    pub dimension: Dimension,
    pub period: Seconds,
    pub project: String,
    pub key: String,
}

/// What one record contributes to the rollups.
#[derive(Clone, Copy, Debug)]
pub struct RecordUse<'a> {
    pub user: &'a str,
    pub project: Option<&'a str>,
    pub cluster: &'a str,
    pub gpu_model: Option<&'a str>,
    pub gpu_count: i64,
    pub start: Seconds,
    pub end: Seconds,
}

impl RecordUse<'_> {
    /// The record's key in `dimension`: `""` for no project or no GPU.
    pub fn key(&self, dimension: Dimension) -> &str {
        match dimension {
            Dimension::User => self.user,
            Dimension::Project => self.project.unwrap_or_default(),
            Dimension::Cluster => self.cluster,
            Dimension::GpuModel => self.gpu_model.unwrap_or_default(),
        }
    }
}

/// Adds records to monthly sums, per dimension: `(node_seconds,
/// gpu_seconds)` per rollup row.
pub fn rollup<'a>(records: impl IntoIterator<Item = RecordUse<'a>>) -> BTreeMap<RollupKey, (i64, i64)> {
    let mut sums: BTreeMap<RollupKey, (i64, i64)> = BTreeMap::new();
    for r in records {
        let project = r.project.unwrap_or_default();
        for (period, seconds) in month_pieces(r.start, r.end) {
            for dimension in Dimension::ALL {
                let key = r.key(dimension).to_owned();
                let sum = sums.entry(RollupKey { dimension, period, project: project.to_owned(), key }).or_default();
                sum.0 += seconds;
                sum.1 += seconds * r.gpu_count.max(0);
            }
        }
    }
    sums
}

/// How a query window `[from, to)` is read: whole months from the rollups,
/// the rest from the records.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WindowPlan {
    /// `[first month, end of last month)`, when the window holds a whole
    /// month.
    pub months: Option<(Seconds, Seconds)>,
    /// Partial stretches (at most two) read from the records, clipped.
    pub raw: Vec<(Seconds, Seconds)>,
}

pub fn plan_window(from: Seconds, to: Seconds) -> WindowPlan {
    if from >= to {
        return WindowPlan { months: None, raw: Vec::new() };
    }
    let m0 = if month_start(from) == from { from } else { next_month(from) };
    let m1 = month_start(to);
    if m0 >= m1 {
        return WindowPlan { months: None, raw: vec![(from, to)] };
    }
    let raw = [(from, m0), (m1, to)].into_iter().filter(|(a, b)| a < b).collect();
    WindowPlan { months: Some((m0, m1)), raw }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn t(s: &str) -> Seconds {
        DateTime::parse_from_rfc3339(s).expect("time").timestamp()
    }

    #[test]
    fn months() {
        assert_eq!(month_start(t("2026-02-17T10:00:00Z")), t("2026-02-01T00:00:00Z"));
        assert_eq!(next_month(t("2026-12-31T23:59:59Z")), t("2027-01-01T00:00:00Z"));
        assert_eq!(
            month_pieces(t("2026-01-31T22:00:00Z"), t("2026-02-01T03:00:00Z")),
            vec![(t("2026-01-01T00:00:00Z"), 7200), (t("2026-02-01T00:00:00Z"), 3 * 3600)]
        );
        assert!(month_pieces(5, 5).is_empty());
    }

    #[test]
    fn used_span_runs_from_the_actual_start_to_now_within_the_allocation() {
        // Started late: counted from the actual start.
        assert_eq!(used_span((100, 500), Some(150), 300), Some((150, 300)));
        // Started early (a lease's start moved): counted from the allocation.
        assert_eq!(used_span((100, 500), Some(50), 300), Some((100, 300)));
        // Never started (no `started_at`): counted from the allocation.
        assert_eq!(used_span((100, 500), None, 300), Some((100, 300)));
        // Past the allocation's end: clipped to it.
        assert_eq!(used_span((100, 500), Some(100), 900), Some((100, 500)));
        // Ends exactly at the allocation's end.
        assert_eq!(used_span((100, 500), Some(100), 500), Some((100, 500)));
    }

    #[test]
    fn used_span_is_none_before_the_use_begins() {
        // Zero length at `now`: nothing recorded.
        assert_eq!(used_span((100, 500), Some(300), 300), None);
        assert_eq!(used_span((100, 500), None, 100), None);
        assert_eq!(used_span((100, 500), Some(400), 300), None);
        // One second is a record.
        assert_eq!(used_span((100, 500), Some(299), 300), Some((299, 300)));
    }

    #[test]
    fn used_span_never_ends_before_it_starts() {
        // Started after the allocation ended (an allocation cut earlier).
        assert_eq!(used_span((100, 200), Some(250), 300), Some((250, 250)));
    }

    #[test]
    fn clipping_at_window_edges() {
        assert_eq!(clipped((10, 20), (0, 100)), 10);
        assert_eq!(clipped((10, 20), (15, 100)), 5);
        assert_eq!(clipped((10, 20), (0, 12)), 2);
        assert_eq!(clipped((10, 20), (12, 18)), 6);
        // Touching edges hold nothing: windows are half-open.
        assert_eq!(clipped((10, 20), (20, 30)), 0);
        assert_eq!(clipped((10, 20), (0, 10)), 0);
        assert_eq!(clipped((10, 20), (30, 40)), 0);
        assert_eq!(clipped((10, 10), (0, 100)), 0);
    }

    #[test]
    fn node_gpus_from_properties() {
        use serde_json::json;
        assert_eq!(node_gpus(Some(&json!("A100")), Some(&json!(4))), (Some("A100".to_owned()), 4));
        assert_eq!(node_gpus(None, None), (None, 0));
        assert_eq!(node_gpus(Some(&json!(null)), Some(&json!(null))), (None, 0));
        assert_eq!(node_gpus(Some(&json!("")), Some(&json!(0))), (Some(String::new()), 0));
        // A model that is not a string counts under its JSON text.
        assert_eq!(node_gpus(Some(&json!(100)), None).0, Some("100".to_owned()));
        // A count that is not a whole non-negative number.
        assert_eq!(node_gpus(None, Some(&json!(2.7))).1, 2);
        assert_eq!(node_gpus(None, Some(&json!(-3))).1, 0);
        assert_eq!(node_gpus(None, Some(&json!("4"))).1, 0);
        assert_eq!(node_gpus(None, Some(&json!(true))).1, 0);
    }

    #[test]
    fn projects_in_scope() {
        let mine = ["a".to_owned(), "b".to_owned()];
        assert!(in_projects(None, None));
        assert!(in_projects(None, Some("z")));
        assert!(in_projects(Some(&mine), Some("b")));
        assert!(!in_projects(Some(&mine), Some("z")));
        // An operator lease (no project) is in no project's scope.
        assert!(!in_projects(Some(&mine), None));
        assert!(in_projects(Some(&[String::new()]), None));
    }

    #[test]
    fn totals_add_up_per_key() {
        let use_of =
            |user, start, end, gpu_count| RecordUse { user, project: None, cluster: "c", gpu_model: Some("A100"), gpu_count, start, end };
        let mut totals = Totals::default();
        totals.add(Total { key: "bob".into(), node_seconds: 100, gpu_seconds: 0 });
        totals.add_clipped(Dimension::User, &use_of("alice", 0, 50, 2), (10, 40));
        totals.add_clipped(Dimension::User, &use_of("bob", 30, 60, 1), (10, 40));
        // Outside the window: no key at all.
        totals.add_clipped(Dimension::User, &use_of("carol", 40, 60, 1), (10, 40));
        assert_eq!(
            totals.into_vec(),
            vec![
                Total { key: "alice".into(), node_seconds: 30, gpu_seconds: 60 },
                Total { key: "bob".into(), node_seconds: 110, gpu_seconds: 10 },
            ]
        );
        let mut by_project = Totals::default();
        by_project.add_clipped(Dimension::Project, &use_of("alice", 0, 5, 0), (0, 10));
        by_project.add_clipped(Dimension::GpuModel, &use_of("alice", 0, 5, 0), (0, 10));
        assert_eq!(by_project.into_vec().iter().map(|t| t.key.as_str()).collect::<Vec<_>>(), vec!["", "A100"]);
    }

    #[test]
    fn windows() {
        let p = plan_window(t("2026-01-15T00:00:00Z"), t("2026-04-02T00:00:00Z"));
        assert_eq!(p.months, Some((t("2026-02-01T00:00:00Z"), t("2026-04-01T00:00:00Z"))));
        assert_eq!(
            p.raw,
            vec![(t("2026-01-15T00:00:00Z"), t("2026-02-01T00:00:00Z")), (t("2026-04-01T00:00:00Z"), t("2026-04-02T00:00:00Z"))]
        );
        let aligned = plan_window(t("2026-01-01T00:00:00Z"), t("2026-03-01T00:00:00Z"));
        assert_eq!(aligned.months, Some((t("2026-01-01T00:00:00Z"), t("2026-03-01T00:00:00Z"))));
        assert!(aligned.raw.is_empty());
        let inside = plan_window(t("2026-01-03T00:00:00Z"), t("2026-01-20T00:00:00Z"));
        assert_eq!(inside.months, None);
        assert_eq!(inside.raw.len(), 1);
    }

    proptest! {
        /// Rollups for the whole months plus the clipped records for the
        /// rest equal the records clipped to the window.
        #[test]
        fn window_split_adds_up(
            records in prop::collection::vec((0i64..200 * 86_400, 1i64..40 * 86_400, 0i64..8), 0..40),
            a in 0i64..240 * 86_400, len in 0i64..240 * 86_400,
        ) {
            let base = t("2025-11-10T13:00:00Z");
            let recs: Vec<(Seconds, Seconds, i64)> = records.iter().map(|&(s, l, g)| (base + s, base + s + l, g)).collect();
            let (from, to) = (base + a, base + a + len);
            let clip = |s: Seconds, e: Seconds, a: Seconds, b: Seconds| (e.min(b) - s.max(a)).max(0);
            let expected: i64 = recs.iter().map(|&(s, e, _)| clip(s, e, from, to)).sum();
            let expected_gpu: i64 = recs.iter().map(|&(s, e, g)| clip(s, e, from, to) * g).sum();
            let sums = rollup(recs.iter().map(|&(start, end, g)| RecordUse {
                user: "u", project: Some("p"), cluster: "c", gpu_model: None, gpu_count: g, start, end,
            }));
            let plan = plan_window(from, to);
            let mut got = (0, 0);
            if let Some((m0, m1)) = plan.months {
                for (k, (ns, gs)) in &sums {
                    if k.dimension == Dimension::Project && k.period >= m0 && k.period < m1 {
                        got.0 += ns;
                        got.1 += gs;
                    }
                }
            }
            for (a, b) in plan.raw {
                got.0 += recs.iter().map(|&(s, e, _)| clip(s, e, a, b)).sum::<i64>();
                got.1 += recs.iter().map(|&(s, e, g)| clip(s, e, a, b) * g).sum::<i64>();
            }
            prop_assert_eq!(got, (expected, expected_gpu));
        }
    }
}
