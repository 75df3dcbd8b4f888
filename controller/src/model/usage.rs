//! Usage accounting's arithmetic: UTC months, the monthly rollups a record
//! adds to, and how a query window splits into whole months (read from the
//! rollups) and partial months at its ends (read from the records). Pure;
//! the store runs the SQL.

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

/// Adds records to monthly sums, per dimension: `(node_seconds,
/// gpu_seconds)` per rollup row.
pub fn rollup<'a>(records: impl IntoIterator<Item = RecordUse<'a>>) -> BTreeMap<RollupKey, (i64, i64)> {
    let mut sums: BTreeMap<RollupKey, (i64, i64)> = BTreeMap::new();
    for r in records {
        let project = r.project.unwrap_or_default();
        for (period, seconds) in month_pieces(r.start, r.end) {
            for dimension in Dimension::ALL {
                let key = match dimension {
                    Dimension::User => r.user,
                    Dimension::Project => project,
                    Dimension::Cluster => r.cluster,
                    Dimension::GpuModel => r.gpu_model.unwrap_or_default(),
                };
                let sum = sums.entry(RollupKey { dimension, period, project: project.to_owned(), key: key.to_owned() }).or_default();
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
