//! `ferrum usage` (node-hours and GPU-hours per user, project, cluster or
//! GPU model; the records behind them; CSV for spreadsheets and billing)
//! and `ferrum admin audit`.

use anyhow::Result;
use ferrum_api::User;
use ferrum_api::usage::{
    AuditEntry, AuditQuery, ExportFormat, QuotaStatus, UsageGroupBy, UsageQuery, UsageRecord, UsageRecordsQuery, UsageReport,
};

use super::{Ctx, out};
use crate::args::{AuditArgs, UsageArgs, UsageGroup};
use crate::client::NoQuery;
use crate::render;

/// Records fetched per request when listing them all.
const PAGE: usize = 10_000;

pub async fn usage(ctx: &Ctx, args: UsageArgs) -> Result<()> {
    let format = args.csv.then_some(ExportFormat::Csv);
    if args.records {
        return records(ctx, &args, format).await;
    }
    let group_by = args.group_by.map(|g| match g {
        UsageGroup::User => UsageGroupBy::User,
        UsageGroup::Project => UsageGroupBy::Project,
        UsageGroup::Cluster => UsageGroupBy::Cluster,
        UsageGroup::GpuModel => UsageGroupBy::GpuModel,
    });
    let query = UsageQuery { from: args.from, to: args.to, group_by, project: args.project.clone(), format };
    if args.csv {
        return out(&ctx.client.get_text(&["usage"], &query).await?);
    }
    let answer = ctx.client.get::<UsageReport, _>(&["usage"], &query).await?;
    ctx.show(&answer, render::usage_table)
}

/// Every record of the period, page after page (`after` the last id).
async fn records(ctx: &Ctx, args: &UsageArgs, format: Option<ExportFormat>) -> Result<()> {
    let mut query = UsageRecordsQuery {
        from: args.from,
        to: args.to,
        project: args.project.clone(),
        after: None,
        limit: i64::try_from(PAGE).ok(),
        format,
    };
    if args.csv {
        let mut csv = String::new();
        loop {
            let text = ctx.client.get_text(&["usage", "records"], &query).await?;
            let (header, rows) = text.split_once('\n').unwrap_or((&text, ""));
            if csv.is_empty() {
                csv.push_str(header);
                csv.push('\n');
            }
            csv.push_str(rows);
            // The first column is the record's id.
            let last_id = rows.lines().last().and_then(|l| l.split(',').next()).and_then(|id| id.parse().ok());
            if rows.lines().count() < PAGE || last_id.is_none() {
                return out(&csv);
            }
            query.after = last_id;
        }
    }
    let mut all: Vec<UsageRecord> = Vec::new();
    loop {
        let page = ctx.client.get::<Vec<UsageRecord>, _>(&["usage", "records"], &query).await?.value;
        let full = page.len() == PAGE;
        query.after = page.last().map(|r| r.id);
        all.extend(page);
        if !full {
            break;
        }
    }
    if ctx.json {
        return out(&format!("{}\n", serde_json::to_string_pretty(&all)?));
    }
    out(&render::usage_records_table(&all, ctx.table))
}

pub async fn audit(ctx: &Ctx, args: AuditArgs) -> Result<()> {
    let query = AuditQuery {
        from: args.from,
        to: args.to,
        actor: args.actor,
        action: args.action,
        target: args.target,
        before: None,
        limit: Some(args.limit),
    };
    let answer = ctx.client.get::<Vec<AuditEntry>, _>(&["audit"], &query).await?;
    ctx.show(&answer, |entries, opts| render::audit_table(entries, opts))
}

/// `ferrum quota [PROJECT]`: one project, or each of the caller's.
pub async fn quota(ctx: &Ctx, project: Option<String>) -> Result<()> {
    let projects = match project {
        Some(p) => vec![p],
        None => ctx.client.get::<User, _>(&["users", "me"], &NoQuery {}).await?.value.projects,
    };
    let mut all = Vec::with_capacity(projects.len());
    for p in &projects {
        all.push(ctx.client.get::<QuotaStatus, _>(&["projects", p, "quota"], &NoQuery {}).await?.value);
    }
    if ctx.json {
        return out(&format!("{}\n", serde_json::to_string_pretty(&all)?));
    }
    out(&render::quota_table(&all, ctx.table))
}
