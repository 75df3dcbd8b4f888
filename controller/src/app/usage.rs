//! Usage accounting as callers see it: who may read which projects' usage,
//! the default period, and the grouping. Records are written by the store
//! when a lease stops holding its nodes for its user; see
//! `db::sqlite::usage` and `model::usage`.

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
        let totals = self.store.usage_totals(dimension, &scope, self.now()).await?;
        Ok((scope, dimension, totals))
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
