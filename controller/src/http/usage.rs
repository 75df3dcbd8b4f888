//! Handlers of `/api/v1/usage`, `/api/v1/usage/records` and
//! `/api/v1/audit`.

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::header;
use axum::response::{IntoResponse, Response};
use ferrum_api::ErrorBody;
use ferrum_api::usage as api;

use super::error::{ApiError, ApiResult};
use super::extract::{Caller, Params, PathParam};
use crate::app::{App, AppError};
use crate::db::AuditFilter;
use crate::model::time::{from_seconds, to_seconds};
use crate::model::usage::{Dimension, Total};

pub(crate) fn hours(seconds: i64) -> f64 {
    (seconds as f64 / 3600.0 * 1000.0).round() / 1000.0
}

fn row(key: String, node_seconds: i64, gpu_seconds: i64) -> api::UsageRow {
    api::UsageRow { key, node_hours: hours(node_seconds), gpu_hours: hours(gpu_seconds), node_seconds, gpu_seconds }
}

/// The key as shown: the empty key means "no project" or "no GPU".
pub(crate) fn shown_key(dimension: Dimension, key: String) -> String {
    match (dimension, key.is_empty()) {
        (Dimension::Project, true) => "(operator)".into(),
        (Dimension::GpuModel, true) => "(none)".into(),
        (_, _) => key,
    }
}

/// Serialises rows as CSV under `header` (the rows' field names, written
/// even when there is no row).
pub(crate) fn csv_response<T: serde::Serialize>(header: &[&str], rows: &[T], file: &str) -> ApiResult<Response> {
    let mut writer = csv::WriterBuilder::new().has_headers(false).from_writer(Vec::new());
    writer.write_record(header).map_err(|e| ApiError::from(AppError::Internal(anyhow::anyhow!("csv: {e}"))))?;
    for r in rows {
        writer.serialize(r).map_err(|e| ApiError::from(AppError::Internal(anyhow::anyhow!("csv: {e}"))))?;
    }
    let body = writer.into_inner().map_err(|e| ApiError::from(AppError::Internal(anyhow::anyhow!("csv: {e}"))))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8".to_owned()),
            (header::CONTENT_DISPOSITION, format!("attachment; filename=\"{file}\"")),
        ],
        body,
    )
        .into_response())
}

/// Node-hours and GPU-hours per user, project, cluster or GPU model over a
/// period (users: their own projects only). `format=csv` exports the rows.
#[utoipa::path(get, path = "/api/v1/usage", operation_id = "usage_report", tag = "usage", params(api::UsageQuery),
    responses((status = 200, description = "the report (`format=csv`: as CSV)", content((api::UsageReport = "application/json"), (String = "text/csv"))), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn report(State(app): State<Arc<App>>, Caller(actor): Caller, Params(q): Params<api::UsageQuery>) -> ApiResult<Response> {
    let (scope, dimension, totals) = app.usage_report(&actor, &q).await?;
    let (mut node_seconds, mut gpu_seconds) = (0, 0);
    let rows: Vec<api::UsageRow> = totals
        .into_iter()
        .map(|Total { key, node_seconds: n, gpu_seconds: g }| {
            node_seconds += n;
            gpu_seconds += g;
            row(shown_key(dimension, key), n, g)
        })
        .collect();
    if q.format == Some(api::ExportFormat::Csv) {
        return csv_response(&["key", "node_hours", "gpu_hours", "node_seconds", "gpu_seconds"], &rows, "usage.csv");
    }
    let group_by = q.group_by.unwrap_or(api::UsageGroupBy::Project);
    Ok(Json(api::UsageReport {
        from: from_seconds(scope.from),
        to: from_seconds(scope.to),
        group_by,
        rows,
        total: row("total".into(), node_seconds, gpu_seconds),
    })
    .into_response())
}

/// The usage records overlapping a period, oldest id first (`after` pages
/// on); `format=csv` exports them.
#[utoipa::path(get, path = "/api/v1/usage/records", operation_id = "usage_records", tag = "usage", params(api::UsageRecordsQuery),
    responses((status = 200, description = "the records (`format=csv`: as CSV)", content((Vec<api::UsageRecord> = "application/json"), (String = "text/csv"))), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn records(State(app): State<Arc<App>>, Caller(actor): Caller, Params(q): Params<api::UsageRecordsQuery>) -> ApiResult<Response> {
    let (_, rows) = app.usage_records(&actor, &q).await?;
    let records: Vec<api::UsageRecord> = rows.into_iter().map(super::views::usage_record).collect();
    if q.format == Some(api::ExportFormat::Csv) {
        let header = [
            "id",
            "lease",
            "user",
            "project",
            "node",
            "site",
            "cluster",
            "gpu_model",
            "gpu_count",
            "lease_type",
            "reserved_start",
            "reserved_end",
            "start",
            "end",
            "node_hours",
        ];
        return csv_response(&header, &records, "usage-records.csv");
    }
    Ok(Json(records).into_response())
}

/// Admin actions, newest first (admin).
#[utoipa::path(get, path = "/api/v1/audit", operation_id = "audit_list", tag = "usage", params(api::AuditQuery),
    responses((status = 200, body = Vec<api::AuditEntry>), (status = 403, body = ErrorBody)), security(("bearer" = [])))]
pub async fn audit(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    Params(q): Params<api::AuditQuery>,
) -> ApiResult<Json<Vec<api::AuditEntry>>> {
    let filter = AuditFilter {
        from: q.from.map(to_seconds),
        to: q.to.map(to_seconds),
        actor: q.actor,
        action: q.action,
        target: q.target,
        before_id: q.before,
        limit: q.limit.unwrap_or(100),
    };
    let rows = app.audit_log(&actor, filter).await?;
    Ok(Json(
        rows.into_iter()
            .map(|r| api::AuditEntry {
                id: r.id,
                at: from_seconds(r.at),
                actor: r.actor,
                action: r.action,
                target: r.target,
                detail: serde_json::from_str(&r.detail).unwrap_or(serde_json::Value::String(r.detail)),
            })
            .collect(),
    ))
}

/// A project's quota this period and what its leases hold of it (admins
/// and members).
#[utoipa::path(get, path = "/api/v1/projects/{name}/quota", operation_id = "projects_quota", tag = "usage", params(("name" = String, Path)),
    responses((status = 200, body = api::QuotaStatus), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)),
    security(("bearer" = [])))]
pub async fn quota(
    State(app): State<Arc<App>>,
    Caller(actor): Caller,
    PathParam(name): PathParam<String>,
) -> ApiResult<Json<api::QuotaStatus>> {
    let q = app.project_quota(&actor, &name).await?;
    let booked = hours(q.booked_seconds);
    Ok(Json(api::QuotaStatus {
        project: q.project,
        period: q.period.as_str().to_owned(),
        from: from_seconds(q.from),
        to: from_seconds(q.to),
        quota_node_hours: q.quota_node_hours,
        booked_node_hours: booked,
        left_node_hours: q.quota_node_hours.map(|quota| (quota as f64 - booked).max(0.0)),
    }))
}
