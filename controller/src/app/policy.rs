//! The access policy, in one place: every lease creation and extension is
//! checked here against `[policy]` (class limits, peak hours, exotic
//! hardware, project quotas) and the approval threshold. A refusal is a 403
//! whose message names the rule and the numbers.
//!
//! Admins are not limited (they grant the exceptions), and neither are
//! operator leases (an admin's lease without a project); both are still
//! accounted. Besteffort leases count against no quota and need no
//! approval: they yield to every other lease.

use chrono::{Datelike, Duration as ChronoDuration, NaiveDate, NaiveDateTime, TimeZone};

use super::{Actor, App, AppError, AppResult};
use crate::config::{PeakHours, PolicyConfig, QuotaPeriod};
use crate::db::ProjectRow;
use crate::model::time::from_seconds;
use crate::model::usage::{month_start, next_month};
use crate::model::{LeaseType, Seconds};

/// A lease as the policy sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Ask<'a> {
    pub project: Option<&'a ProjectRow>,
    pub lease_type: LeaseType,
    pub nodes: u32,
    pub start: Seconds,
    pub end: Seconds,
    pub exotic: bool,
    /// For an extension: the current end (only `[extends_from, end)` is
    /// new).
    pub extends_from: Option<Seconds>,
}

/// `12`, `12.5`: hours for messages.
pub(crate) fn fmt_hours(seconds: i64) -> String {
    let h = seconds as f64 / 3600.0;
    if (h - h.round()).abs() < 0.05 { format!("{:.0}", h.round()) } else { format!("{h:.1}") }
}

fn refuse(rule: &str, message: String) -> AppError {
    AppError::Forbidden(format!("policy '{rule}': {message}"))
}

/// Whether the policy applies to this caller and project at all.
fn governed(actor: &Actor, project: Option<&ProjectRow>) -> bool {
    !actor.is_admin && project.is_some()
}

/// The quota period holding `t`: `[start, end)` and a label.
fn quota_period(period: QuotaPeriod, t: Seconds) -> (Seconds, Seconds, String) {
    match period {
        QuotaPeriod::Month => {
            let start = month_start(t);
            (start, next_month(t), format!("this month ({})", from_seconds(start).format("%Y-%m")))
        }
        QuotaPeriod::Year => {
            let year = from_seconds(t).year();
            let at = |y: i32| chrono::Utc.with_ymd_and_hms(y, 1, 1, 0, 0, 0).single().map_or(t, |d| d.timestamp());
            (at(year), at(year + 1), format!("this year ({year})"))
        }
    }
}

/// The UTC instant of a local time (the first one on a DST fold; the
/// instant after a DST gap).
fn local_to_utc(tz: chrono_tz::Tz, local: NaiveDateTime) -> Seconds {
    tz.from_local_datetime(&local)
        .earliest()
        .or_else(|| tz.from_local_datetime(&(local + ChronoDuration::hours(1))).earliest())
        .map_or_else(|| local.and_utc().timestamp(), |t| t.timestamp())
}

/// The first peak-hours window overlapping `[start, end)`, in UTC.
pub(crate) fn first_peak_overlap(policy: &PolicyConfig, peak: &PeakHours, start: Seconds, end: Seconds) -> Option<(Seconds, Seconds)> {
    let tz = policy.timezone;
    let first: NaiveDate = from_seconds(start).with_timezone(&tz).date_naive().pred_opt()?;
    let last: NaiveDate = from_seconds(end).with_timezone(&tz).date_naive();
    let mut day = first;
    while day <= last {
        if peak.days.contains(&day.weekday()) {
            let (a, b) = (local_to_utc(tz, day.and_time(peak.from)), local_to_utc(tz, day.and_time(peak.to)));
            if a < end && b > start {
                return Some((a, b));
            }
        }
        day = day.succ_opt()?;
    }
    None
}

/// A project's quota in the period holding `now`.
#[derive(Clone, Debug)]
pub struct QuotaState {
    pub project: String,
    pub period: QuotaPeriod,
    pub from: Seconds,
    pub to: Seconds,
    pub quota_node_hours: Option<i64>,
    pub booked_seconds: i64,
}

/// What the policy will say of a lease, before it is asked (the portal's
/// booking preview): the rules `create_lease` applies, run on the same
/// functions, without placing or writing anything.
#[derive(Clone, Debug)]
pub struct Preview {
    /// The project the lease would be for (`None`: an admin's operator lease).
    pub project: Option<String>,
    pub node_seconds: i64,
    /// The project's quota this period, when it has one.
    pub quota: Option<QuotaState>,
    /// Why it would wait for an admin's approval.
    pub approval: Option<String>,
    /// Why the policy would refuse it (the message `create_lease` gives).
    pub refusal: Option<String>,
}

/// What the portal's booking page shows before booking: where the lease
/// would be placed now (the availability's earliest slot from its start)
/// and what the policy will say of it.
#[derive(Clone, Debug)]
pub struct BookingPreview {
    pub start: Seconds,
    pub end: Seconds,
    pub nodes: Vec<String>,
    /// The start asked for, when the nodes are not free then (booking
    /// would be refused; `start` is the earliest they are).
    pub not_at: Option<Seconds>,
    pub policy: Preview,
}

impl App {
    /// The policy's answer to a default lease of `nodes` nodes over `[start,
    /// end)` for `project` (as `create_lease` resolves it). A caller who may
    /// not book at all, or must name a project, gets that error.
    pub async fn policy_preview(
        &self,
        actor: &Actor,
        project: Option<&str>,
        nodes: u32,
        start: Seconds,
        end: Seconds,
        exotic: bool,
    ) -> AppResult<Preview> {
        let id = self.resolve_project(actor, project)?;
        let name = id.and_then(|id| actor.projects.iter().find(|(p, _)| *p == id)).map(|(_, n)| n.clone());
        let row = match &name {
            Some(n) => Some(self.project_row(n).await?),
            None => None,
        };
        let approval = self.approval_reason(actor, row.as_ref(), LeaseType::Default, nodes, end - start);
        let ask = Ask { project: row.as_ref(), lease_type: LeaseType::Default, nodes, start, end, exotic, extends_from: None };
        let refusal = match self.check_policy(actor, &ask).await {
            Ok(()) => None,
            Err(AppError::Forbidden(why)) => Some(why),
            Err(e) => return Err(e),
        };
        let quota = match row.as_ref().filter(|r| r.quota_node_hours.is_some()) {
            // The period the slot starts in, not the present one.
            Some(r) => Some(self.project_quota_at(actor, &r.name, start).await?),
            None => None,
        };
        Ok(Preview { project: name, node_seconds: i64::from(nodes).saturating_mul(end - start), quota, approval, refusal })
    }

    /// What booking `req` would do, without booking: the nodes and times
    /// `GET /api/v1/availability` offers for it (named nodes are asked as
    /// the filter `host IN (...)`), then [`App::policy_preview`] of that
    /// slot. Refusals name the request's field, as `create_lease`'s do.
    pub async fn booking_preview(&self, actor: &Actor, req: &ferrum_api::LeaseCreate) -> AppResult<BookingPreview> {
        let names = req.nodes.names.as_deref().filter(|n| !n.is_empty());
        let filter = req.nodes.filter.as_deref().filter(|f| !f.trim().is_empty());
        let (count, filter) = match (names, req.nodes.count, filter) {
            (Some(_), _, Some(_)) => return Err(AppError::bad_request("nodes: give names or a filter, not both")),
            (Some(names), count, None) => {
                if count.is_some_and(|c| c as usize != names.len()) {
                    return Err(AppError::bad_request("nodes.count: does not match the number of nodes.names"));
                }
                let quoted: Vec<String> = names.iter().map(|n| format!("'{}'", n.replace('\'', "''"))).collect();
                (u32::try_from(names.len()).unwrap_or(u32::MAX), Some(format!("host IN ({})", quoted.join(", "))))
            }
            (None, Some(c), filter) => (c, filter.map(str::to_owned)),
            (None, None, _) => return Err(AppError::bad_request("nodes: give count (with an optional filter) or names")),
        };
        let Some(duration) = req.duration.clone() else {
            return Err(AppError::bad_request("duration: say how long (e.g. 4h)"));
        };
        let ask = ferrum_api::AvailabilityQuery { count, filter, duration, from: req.start, exotic: Some(req.exotic), limit: Some(1) };
        let Some((start, end, nodes)) = self.availability(actor, &ask).await?.into_iter().next() else {
            return Err(AppError::bad_request("nodes: not enough matching nodes are free before the booking horizon"));
        };
        let asked = req.start.map(crate::model::time::to_seconds).map(|s| s.max(self.now()));
        let not_at = asked.filter(|&s| s != start);
        let policy = self.policy_preview(actor, req.project.as_deref(), count, start, end, req.exotic).await?;
        Ok(BookingPreview { start, end, nodes, not_at, policy })
    }

    /// A project's quota and what its leases hold of it this period
    /// (admins and the project's members).
    pub async fn project_quota(&self, actor: &Actor, name: &str) -> AppResult<QuotaState> {
        self.project_quota_at(actor, name, self.now()).await
    }

    /// A project's quota and what its leases hold of it in the period
    /// holding `at`.
    pub async fn project_quota_at(&self, actor: &Actor, name: &str, at: Seconds) -> AppResult<QuotaState> {
        if !actor.is_admin && !actor.projects.iter().any(|(_, n)| n == name) {
            return Err(AppError::Forbidden(format!("you are not a member of project '{name}'")));
        }
        let project = self.project_row(name).await?;
        let period = self.config.policy.quota_period;
        let (from, to, _) = quota_period(period, at);
        let booked_seconds = self.store.project_booked_seconds(project.id, from, to, None).await?;
        Ok(QuotaState { project: project.name, period, from, to, quota_node_hours: project.quota_node_hours, booked_seconds })
    }

    /// The project's row.
    pub(crate) async fn project_row(&self, name: &str) -> AppResult<ProjectRow> {
        self.store
            .list_projects()
            .await?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| AppError::NotFound(format!("project '{name}' does not exist")))
    }

    /// Why a new lease of `nodes` nodes for `duration` waits for an admin's
    /// approval, if it does.
    pub(crate) fn approval_reason(
        &self,
        actor: &Actor,
        project: Option<&ProjectRow>,
        lease_type: LeaseType,
        nodes: u32,
        duration: Seconds,
    ) -> Option<String> {
        let threshold = self.config.policy.approval_threshold_node_hours;
        let node_seconds = i64::from(nodes).saturating_mul(duration);
        (governed(actor, project) && lease_type != LeaseType::Besteffort && node_seconds as f64 / 3600.0 > threshold).then(|| {
            format!(
                "waits for an admin's approval: {} node-hours is above the approval threshold of {} node-hours",
                fmt_hours(node_seconds),
                fmt_hours((threshold * 3600.0) as i64)
            )
        })
    }

    /// Checks a lease (or an extension) against the policy.
    pub(crate) async fn check_policy(&self, actor: &Actor, ask: &Ask<'_>) -> AppResult<()> {
        let Some(project) = ask.project.filter(|_| !actor.is_admin) else { return Ok(()) };
        let policy = &self.config.policy;
        let duration = ask.end - ask.start;
        let new_from = ask.extends_from.unwrap_or(ask.start);

        if let Some((class, rules)) = policy.rules_for(project.class.as_deref()) {
            if let Some(max) = rules.max_duration.and_then(|d| i64::try_from(d.as_secs()).ok())
                && duration > max
            {
                return Err(refuse(
                    "max_duration",
                    format!(
                        "leases of class '{class}' last at most {}; this one would last {}",
                        humantime::format_duration(std::time::Duration::from_secs(max.unsigned_abs())),
                        humantime::format_duration(std::time::Duration::from_secs(duration.unsigned_abs()))
                    ),
                ));
            }
            if let Some(max) = rules.max_nodes
                && ask.nodes > max
            {
                return Err(refuse(
                    "max_nodes",
                    format!("leases of class '{class}' hold at most {max} node(s); this one asks for {}", ask.nodes),
                ));
            }
            if ask.exotic && rules.exotic == Some(false) {
                return Err(refuse(
                    "exotic",
                    format!("project '{}' (class '{class}') may not use exotic (prototype) hardware", project.name),
                ));
            }
            if let (Some(max), Some(peak)) = (rules.peak_max_nodes, &policy.peak)
                && ask.nodes > max
                && let Some((peak_start, _)) = first_peak_overlap(policy, peak, new_from, ask.end)
            {
                return Err(refuse(
                    "peak_max_nodes",
                    format!(
                        "during peak hours ({} to {} {}, {}) leases of class '{class}' hold at most {max} node(s); \
                         this one holds {} from {} to {}, which overlaps the peak hours of {}; run it at night or on a weekend",
                        peak.from.format("%H:%M"),
                        peak.to.format("%H:%M"),
                        policy.timezone,
                        peak.days.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(", "),
                        ask.nodes,
                        from_seconds(new_from).to_rfc3339(),
                        from_seconds(ask.end).to_rfc3339(),
                        from_seconds(peak_start).with_timezone(&policy.timezone).format("%a %Y-%m-%d"),
                    ),
                ));
            }
        }

        if ask.extends_from.is_some() {
            let total = i64::from(ask.nodes).saturating_mul(duration);
            if ask.lease_type != LeaseType::Besteffort && total as f64 / 3600.0 > policy.approval_threshold_node_hours {
                return Err(refuse(
                    "approval",
                    format!(
                        "extending to {} would bring the lease to {} node-hours, above the approval threshold of {}; ask an admin to extend it",
                        from_seconds(ask.end).to_rfc3339(),
                        fmt_hours(total),
                        fmt_hours((policy.approval_threshold_node_hours * 3600.0) as i64)
                    ),
                ));
            }
        }

        if let Some(quota) = project.quota_node_hours.filter(|_| ask.lease_type != LeaseType::Besteffort) {
            let mut t = new_from;
            while t < ask.end {
                let (p0, p1, label) = quota_period(policy.quota_period, t);
                let need = i64::from(ask.nodes).saturating_mul(ask.end.min(p1) - t);
                let booked = self.store.project_booked_seconds(project.id, p0, p1, None).await?;
                let left = quota.saturating_mul(3600).saturating_sub(booked).max(0);
                if need > left {
                    return Err(refuse(
                        "quota",
                        format!(
                            "project '{}' has {} of {} node-hours left {label}; this {} needs {}",
                            project.name,
                            fmt_hours(left),
                            quota,
                            if ask.extends_from.is_some() { "extension" } else { "lease" },
                            fmt_hours(need)
                        ),
                    ));
                }
                t = p1;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use chrono::{NaiveTime, Weekday};

    use super::*;

    fn t(s: &str) -> Seconds {
        chrono::DateTime::parse_from_rfc3339(s).expect("time").timestamp()
    }

    #[test]
    fn peak_hours_in_local_time() {
        let policy = PolicyConfig { timezone: chrono_tz::Europe::Paris, ..PolicyConfig::default() };
        let peak = PeakHours {
            days: vec![Weekday::Mon, Weekday::Tue, Weekday::Wed, Weekday::Thu, Weekday::Fri],
            from: NaiveTime::from_hms_opt(9, 0, 0).expect("time"),
            to: NaiveTime::from_hms_opt(19, 0, 0).expect("time"),
        };
        // 2026-11-23 is a Monday; Paris is UTC+1 in November.
        let monday_night = (t("2026-11-23T18:00:00Z"), t("2026-11-24T08:00:00Z"));
        assert_eq!(first_peak_overlap(&policy, &peak, monday_night.0, monday_night.1), None);
        let monday_evening = (t("2026-11-23T17:30:00Z"), t("2026-11-23T20:00:00Z"));
        assert_eq!(
            first_peak_overlap(&policy, &peak, monday_evening.0, monday_evening.1),
            Some((t("2026-11-23T08:00:00Z"), t("2026-11-23T18:00:00Z")))
        );
        let weekend = (t("2026-11-21T00:00:00Z"), t("2026-11-22T23:00:00Z"));
        assert_eq!(first_peak_overlap(&policy, &peak, weekend.0, weekend.1), None);
        // In July Paris is UTC+2.
        let july = (t("2026-07-06T07:30:00Z"), t("2026-07-06T08:00:00Z"));
        assert_eq!(first_peak_overlap(&policy, &peak, july.0, july.1), Some((t("2026-07-06T07:00:00Z"), t("2026-07-06T17:00:00Z"))));
        // A week-long lease from a Friday night meets Monday's peak.
        let week = (t("2026-11-27T19:00:00Z"), t("2026-12-04T19:00:00Z"));
        assert_eq!(first_peak_overlap(&policy, &peak, week.0, week.1), Some((t("2026-11-30T08:00:00Z"), t("2026-11-30T18:00:00Z"))));
    }

    #[test]
    fn quota_periods() {
        let (a, b, label) = quota_period(QuotaPeriod::Month, t("2026-11-22T10:00:00Z"));
        assert_eq!((a, b), (t("2026-11-01T00:00:00Z"), t("2026-12-01T00:00:00Z")));
        assert_eq!(label, "this month (2026-11)");
        let (a, b, _) = quota_period(QuotaPeriod::Year, t("2026-11-22T10:00:00Z"));
        assert_eq!((a, b), (t("2026-01-01T00:00:00Z"), t("2027-01-01T00:00:00Z")));
    }

    #[test]
    fn hours_read_well() {
        assert_eq!(fmt_hours(160 * 3600), "160");
        assert_eq!(fmt_hours(5400), "1.5");
    }
}
