//! The text Gantt chart of `ferrum calendar`: one row per node, one
//! character per time bucket, a time axis on top and a legend below.
//!
//! [`render`] is a pure function of the [`Calendar`] answer and a width, so
//! the same answer always draws the same chart (snapshot-tested). It must not
//! look at the clock or the terminal; the caller picks the width (`COLUMNS`
//! or 80).
//!
//! Cells: `.` free, `@` the caller's own lease, `#` leased (default or deploy lease), `b` besteffort
//! lease (pre-emptible), `?` lease awaiting approval, `-` free but the node
//! cannot be leased now (maintenance, suspect, dead, retired, enrolling). A
//! bucket touched by several leases shows the strongest: `#` > `?` > `b`.

use chrono::{DateTime, Duration, TimeZone, Utc};
use ferrum_api::{BusyInterval, Calendar, LeaseState, LeaseType, NodeState};

use crate::times::{format_duration, format_time};

/// The narrowest chart drawn, in columns, whatever the width.
const MIN_COLUMNS: usize = 10;

const MINUTE: i64 = 60;
const HOUR: i64 = 3_600;
const DAY: i64 = 86_400;

/// Bucket sizes tried, smallest first (seconds): the chart uses the
/// smallest that fits the width, so a column is always a round duration.
const STEPS: [i64; 20] = [
    MINUTE,
    2 * MINUTE,
    5 * MINUTE,
    10 * MINUTE,
    15 * MINUTE,
    20 * MINUTE,
    30 * MINUTE,
    HOUR,
    2 * HOUR,
    3 * HOUR,
    4 * HOUR,
    6 * HOUR,
    8 * HOUR,
    12 * HOUR,
    DAY,
    2 * DAY,
    7 * DAY,
    14 * DAY,
    28 * DAY,
    91 * DAY,
];

/// Tick spacings tried for the time axis, smallest first (seconds); a tick
/// spacing is always a multiple of the bucket size.
const TICKS: [i64; 19] = [
    10 * MINUTE,
    15 * MINUTE,
    30 * MINUTE,
    HOUR,
    2 * HOUR,
    3 * HOUR,
    6 * HOUR,
    12 * HOUR,
    DAY,
    2 * DAY,
    7 * DAY,
    14 * DAY,
    28 * DAY,
    56 * DAY,
    91 * DAY,
    182 * DAY,
    364 * DAY,
    728 * DAY,
    1456 * DAY,
];

/// Width of an axis label (`11-22` or `09:00`) plus one space, in columns.
const LABEL_SPACING: i64 = 6;

/// Draws the chart in `width` columns.
pub fn render(calendar: &Calendar, width: usize) -> String {
    let from = calendar.from;
    let to = calendar.to;
    let mut out = format!("calendar {} .. {} (UTC)", format_time(from), format_time(to));
    let span_ms = (to - from).num_milliseconds();
    if span_ms <= 0 {
        out.push_str(": empty time range\n");
        return out;
    }
    if calendar.nodes.is_empty() {
        out.push_str(": no nodes\n");
        return out;
    }

    let label_width = calendar.nodes.iter().map(|n| n.node.chars().count()).max().unwrap_or(0);
    let available = i64::try_from(width.saturating_sub(label_width + 1).max(MIN_COLUMNS)).unwrap_or(i64::MAX);
    let step_ms = bucket_ms(span_ms, available);
    let buckets = div_ceil(span_ms, step_ms);
    out.push_str(&format!(", one column = {}\n", format_duration(Duration::milliseconds(step_ms))));

    let pad = " ".repeat(label_width + 1);
    let (labels, ruler) = axis(from, to, step_ms, buckets);
    out.push_str(&format!("{pad}{}\n{pad}{ruler}\n", labels.trim_end()));

    for node in &calendar.nodes {
        let idle = if leasable(node.state) { '.' } else { '-' };
        let row: String = (0..buckets)
            .map(|i| {
                let start = from + Duration::milliseconds(i * step_ms);
                let end = (start + Duration::milliseconds(step_ms)).min(to);
                cell(&node.busy, start, end).unwrap_or(idle)
            })
            .collect();
        out.push_str(&format!("{:<label_width$} {row}\n", node.node));
    }
    out.push_str("legend: . free  @ your lease  # leased  b besteffort  ? awaiting approval  - node not leasable now\n");
    out
}

/// The smallest round bucket size that draws `span_ms` in at most
/// `columns` columns (or, for huge spans, the exact size that does).
fn bucket_ms(span_ms: i64, columns: i64) -> i64 {
    STEPS.iter().map(|s| s * 1000).find(|&step| div_ceil(span_ms, step) <= columns).unwrap_or_else(|| div_ceil(span_ms, columns.max(1)))
}

/// `a / b` rounded up, for positive `a` and `b`.
fn div_ceil(a: i64, b: i64) -> i64 {
    a / b + i64::from(a % b != 0)
}

/// Whether a node's current state lets new leases use it.
fn leasable(state: NodeState) -> bool {
    matches!(state, NodeState::Available | NodeState::Reserved | NodeState::Deploying | NodeState::Deployed | NodeState::Resetting)
}

/// The character of one bucket, or `None` when no interval touches it.
fn cell(busy: &[BusyInterval], start: DateTime<Utc>, end: DateTime<Utc>) -> Option<char> {
    busy.iter()
        .filter(|b| b.start < end && b.end > start)
        .map(|b| match (b.state, b.lease_type) {
            (LeaseState::AwaitingApproval, _) => (1, '?'),
            (_, LeaseType::Besteffort) => (0, 'b'),
            _ if b.mine => (3, '@'),
            _ => (2, '#'),
        })
        .max()
        .map(|(_, c)| c)
}

/// The label line and the ruler line of the time axis: a `+` and a label
/// (`11-23` at midnight, `06:00` otherwise) at each tick.
fn axis(from: DateTime<Utc>, to: DateTime<Utc>, step_ms: i64, buckets: i64) -> (String, String) {
    let len = usize::try_from(buckets).unwrap_or(0);
    let mut labels = vec![' '; len];
    let mut ruler = vec!['-'; len];
    let tick = TICKS.iter().copied().find(|&t| (t * 1000) % step_ms == 0 && t * 1000 / step_ms >= LABEL_SPACING);
    let Some(tick) = tick else {
        return (String::new(), ruler.into_iter().collect());
    };
    let mut t = from.timestamp().div_euclid(tick) * tick;
    let mut next_free = 0usize;
    while let Some(time) = Utc.timestamp_opt(t, 0).single() {
        if time >= to {
            break;
        }
        t += tick;
        if time < from {
            continue;
        }
        let Ok(col) = usize::try_from((time - from).num_milliseconds() / step_ms) else {
            continue;
        };
        if col >= len {
            break;
        }
        ruler[col] = '+';
        let label = if time.timestamp() % DAY == 0 { time.format("%m-%d") } else { time.format("%H:%M") }.to_string();
        if col >= next_free && col + label.len() <= len {
            for (i, ch) in label.chars().enumerate() {
                labels[col + i] = ch;
            }
            next_free = col + label.len() + 1;
        }
    }
    (labels.into_iter().collect(), ruler.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use ferrum_api::NodeCalendar;

    use super::*;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2026, 11, day, hour, 0, 0).single().expect("valid time")
    }

    fn busy(start: DateTime<Utc>, end: DateTime<Utc>, lease_type: LeaseType, state: LeaseState) -> BusyInterval {
        BusyInterval { start, end, lease_type, state, lease: Some(1), owner: None, mine: false }
    }

    fn week() -> Calendar {
        let node = |name: &str, state, busy| NodeCalendar { node: name.to_owned(), state, busy };
        Calendar {
            from: at(22, 0),
            to: at(29, 0),
            nodes: vec![
                node(
                    "chifflot-1",
                    NodeState::Reserved,
                    vec![
                        busy(at(22, 9), at(22, 13), LeaseType::Deploy, LeaseState::Active),
                        busy(at(24, 0), at(26, 0), LeaseType::Default, LeaseState::Pending),
                    ],
                ),
                node(
                    "chifflot-2",
                    NodeState::Available,
                    vec![
                        busy(at(22, 0), at(23, 12), LeaseType::Besteffort, LeaseState::Active),
                        busy(at(23, 6), at(23, 9), LeaseType::Default, LeaseState::Pending),
                    ],
                ),
                node(
                    "chifflot-10",
                    NodeState::Available,
                    vec![busy(at(27, 0), at(30, 0), LeaseType::Deploy, LeaseState::AwaitingApproval)],
                ),
                node("servan-1", NodeState::Maintenance, vec![busy(at(21, 0), at(22, 6), LeaseType::Default, LeaseState::Active)]),
            ],
        }
    }

    #[test]
    fn week_chart_at_80_columns() {
        insta::assert_snapshot!(render(&week(), 80));
    }

    #[test]
    fn one_day_chart_at_100_columns() {
        let mut cal = week();
        cal.from = at(22, 6);
        cal.to = at(23, 6);
        insta::assert_snapshot!(render(&cal, 100));
    }

    #[test]
    fn every_row_fits_the_width() {
        for width in [40, 80, 132, 200] {
            let text = render(&week(), width);
            for line in text.lines().skip(1).take(6) {
                assert!(line.chars().count() <= width, "{width}: {line:?}");
            }
        }
    }

    #[test]
    fn tiny_widths_still_draw_something() {
        let text = render(&week(), 5);
        // 7 days in at most 10 columns: one column per day.
        assert!(text.contains("one column = 1d"), "{text}");
        assert!(text.lines().any(|l| l.starts_with("chifflot-1 ") && l.len() == "chifflot-10 ".len() + 7), "{text}");
    }

    #[test]
    fn columns_are_round_durations() {
        assert_eq!(bucket_ms(7 * DAY * 1000, 68), 3 * HOUR * 1000);
        assert_eq!(bucket_ms(DAY * 1000, 88), 20 * MINUTE * 1000);
        assert_eq!(bucket_ms(30 * MINUTE * 1000, 68), MINUTE * 1000);
        assert_eq!(bucket_ms(100_000 * DAY * 1000, 10), 10_000 * DAY * 1000);
    }

    #[test]
    fn an_unaligned_start_keeps_ticks_on_the_hour() {
        let mut cal = week();
        cal.from = at(22, 0) + Duration::minutes(37);
        cal.to = cal.from + Duration::hours(12);
        let text = render(&cal, 80);
        let axis = text.lines().nth(1).expect("label line");
        assert!(axis.trim_start().starts_with("02:00") && !axis.contains(":37"), "{text}");
    }

    #[test]
    fn degenerate_calendars_say_so() {
        let mut cal = week();
        cal.to = cal.from;
        assert!(render(&cal, 80).ends_with("empty time range\n"));
        let mut cal = week();
        cal.nodes.clear();
        assert!(render(&cal, 80).ends_with("no nodes\n"));
    }
}
