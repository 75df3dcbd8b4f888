//! Usage accounting as callers see it: who may read which projects' usage,
//! the default period, the grouping, and how a window's totals are put
//! together from the store's sums (whole months from the rollups, partial
//! months from the records, running leases up to now). Records are written
//! by the store when a lease stops holding its nodes for its user; the
//! rules are `model::usage`.

use ferrum_api as api;

use super::{Actor, App, AppError, AppResult};
use crate::db::{UsageRecordRow, UsageScope};
use crate::model::Seconds;
use crate::model::time::to_seconds;
use crate::model::usage::{self, Dimension, Total};

/// Longest window a usage query may cover.
const MAX_WINDOW: Seconds = 20 * 366 * 86_400;

impl App {
    /// The records a caller may read: admins every project (or the one
    /// named), users only projects they belong to.
    fn usage_scope(
        &self,
        actor: &Actor,
        from: Option<chrono::DateTime<chrono::Utc>>,
        to: Option<chrono::DateTime<chrono::Utc>>,
        project: Option<&str>,
    ) -> AppResult<UsageScope> {
        let now = self.now();
        let to = to.map(to_seconds).unwrap_or(now);
        let from = from.map(to_seconds).unwrap_or_else(|| usage::month_start(now.min(to - 1)));
        if to <= from {
            return Err(AppError::bad_request("to: must be after from"));
        }
        if to - from > MAX_WINDOW {
            return Err(AppError::bad_request("from: the window is limited to 20 years"));
        }
        let projects = match (project, actor.is_admin) {
            (Some(p), true) => Some(vec![p.to_owned()]),
            (None, true) => None,
            (Some(p), false) => {
                if !actor.projects.iter().any(|(_, n)| n == p) {
                    return Err(AppError::Forbidden(format!(
                        "you are not a member of project '{p}'; you may read your own projects' usage only"
                    )));
                }
                Some(vec![p.to_owned()])
            }
            (None, false) => Some(actor.projects.iter().map(|(_, n)| n.clone()).collect()),
        };
        Ok(UsageScope { from, to, projects })
    }

    /// Node-hours and GPU-hours grouped by `group_by` over a period.
    pub async fn usage_report(&self, actor: &Actor, q: &api::usage::UsageQuery) -> AppResult<(UsageScope, Dimension, Vec<Total>)> {
        let scope = self.usage_scope(actor, q.from, q.to, q.project.as_deref())?;
        let dimension = match q.group_by.unwrap_or(api::usage::UsageGroupBy::Project) {
            api::usage::UsageGroupBy::User => Dimension::User,
            api::usage::UsageGroupBy::Project => Dimension::Project,
            api::usage::UsageGroupBy::Cluster => Dimension::Cluster,
            api::usage::UsageGroupBy::GpuModel => Dimension::GpuModel,
        };
        if scope.projects.as_ref().is_some_and(Vec::is_empty) {
            return Ok((scope, dimension, Vec::new()));
        }
        let totals = self.usage_totals(dimension, &scope).await?;
        Ok((scope, dimension, totals))
    }

    /// Node-seconds and GPU-seconds per key of `dimension` within the
    /// scope's window: the records (whole months from the rollups, the rest
    /// clipped) plus the leases running now, counted up to now.
    async fn usage_totals(&self, dimension: Dimension, scope: &UsageScope) -> AppResult<Vec<Total>> {
        let now = self.now();
        let projects = scope.projects.as_deref();
        let mut totals = usage::Totals::default();
        let plan = usage::plan_window(scope.from, scope.to);
        if let Some(months) = plan.months {
            self.store.usage_rollup_sums(dimension, months, projects).await?.into_iter().for_each(|t| totals.add(t));
        }
        for stretch in plan.raw {
            self.store.usage_record_sums(dimension, stretch, projects).await?.into_iter().for_each(|t| totals.add(t));
        }
        let live = (scope.from, scope.to.min(now));
        if live.0 < live.1 {
            for holding in self.store.running_holdings().await? {
                if let Some(r) = holding.record_at(now).filter(|r| usage::in_projects(projects, r.project.as_deref())) {
                    totals.add_clipped(dimension, &r.as_use(), live);
                }
            }
        }
        Ok(totals.into_vec())
    }

    /// The usage records of a period, by id.
    pub async fn usage_records(&self, actor: &Actor, q: &api::usage::UsageRecordsQuery) -> AppResult<(UsageScope, Vec<UsageRecordRow>)> {
        let scope = self.usage_scope(actor, q.from, q.to, q.project.as_deref())?;
        let limit = q.limit.unwrap_or(1000);
        if !(1..=100_000).contains(&limit) {
            return Err(AppError::bad_request("limit: must be between 1 and 100000"));
        }
        if scope.projects.as_ref().is_some_and(Vec::is_empty) {
            return Ok((scope, Vec::new()));
        }
        let rows = self.store.usage_records(&scope, q.after.unwrap_or(0), limit).await?;
        Ok((scope, rows))
    }
}
