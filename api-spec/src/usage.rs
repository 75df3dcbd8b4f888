//! Usage accounting, lease approval decisions and the audit log.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What `GET /api/v1/usage` groups by.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum UsageGroupBy {
    User,
    Project,
    Cluster,
    GpuModel,
}

impl UsageGroupBy {
    pub fn as_str(self) -> &'static str {
        match self {
            UsageGroupBy::User => "user",
            UsageGroupBy::Project => "project",
            UsageGroupBy::Cluster => "cluster",
            UsageGroupBy::GpuModel => "gpu_model",
        }
    }
}

/// `json` (default) or `csv`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ExportFormat {
    #[default]
    Json,
    Csv,
}

/// Query of `GET /api/v1/usage`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageQuery {
    /// Start of the period; default: the first second of this month (UTC).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    /// End of the period (excluded); default now.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
    /// Default `project`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_by: Option<UsageGroupBy>,
    /// Only this project (users may name only their own projects).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ExportFormat>,
}

/// Usage of one user, project, cluster or GPU model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageRow {
    /// The user, project, cluster or GPU model; `(operator)` for admins'
    /// leases without a project, `(none)` for nodes without GPU.
    pub key: String,
    pub node_hours: f64,
    pub gpu_hours: f64,
    /// Exact figures, for billing.
    pub node_seconds: i64,
    pub gpu_seconds: i64,
}

/// Answer of `GET /api/v1/usage`: finished use from the usage records,
/// plus running leases up to now.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct UsageReport {
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    pub group_by: UsageGroupBy,
    pub rows: Vec<UsageRow>,
    /// The sum of the rows (key `total`).
    pub total: UsageRow,
}

/// Query of `GET /api/v1/usage/records`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsageRecordsQuery {
    /// Records overlapping `[from, to)`; defaults as for `/usage`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    /// Records with a larger id (paging).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub after: Option<i64>,
    /// 1 to 100000, default 1000.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 100_000)]
    pub limit: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<ExportFormat>,
}

/// What one lease had of one node: the reserved interval, and what its
/// user had (from the lease's start to its end, release or pre-emption).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct UsageRecord {
    pub id: i64,
    pub lease: i64,
    pub user: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    pub node: String,
    pub site: String,
    pub cluster: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gpu_model: Option<String>,
    pub gpu_count: i64,
    pub lease_type: crate::LeaseType,
    pub reserved_start: DateTime<Utc>,
    pub reserved_end: DateTime<Utc>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub node_hours: f64,
}

/// Body of `POST /api/v1/leases/{id}/approve` and `/reject`.
#[derive(Clone, Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LeaseDecision {
    /// Shown to the requester in the lease's reason.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1000, pattern = r"^[^\u0000-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]*$")]
    pub reason: Option<String>,
}

/// Query of `GET /api/v1/audit` (admin).
#[derive(Clone, Debug, Default, Serialize, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<DateTime<Utc>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub actor: Option<String>,
    /// e.g. `lease.approve`, `node.power`, `project.update`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// e.g. `lease/12`, `node/chifflot-3`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
    /// Entries older than this id (paging back).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub before: Option<i64>,
    /// 1 to 10000, default 100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[param(minimum = 1, maximum = 10_000)]
    pub limit: Option<i64>,
}

/// One admin action.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditEntry {
    pub id: i64,
    pub at: DateTime<Utc>,
    pub actor: String,
    pub action: String,
    pub target: String,
    #[schema(value_type = Object)]
    pub detail: serde_json::Value,
}

/// Answer of `GET /api/v1/projects/{name}/quota`: the project's quota in
/// the current period and what its leases hold of it.
#[derive(Clone, Debug, Serialize, Deserialize, ToSchema)]
pub struct QuotaStatus {
    pub project: String,
    /// `month` or `year` (UTC calendar periods).
    pub period: String,
    pub from: DateTime<Utc>,
    pub to: DateTime<Utc>,
    /// None: the project has no quota.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota_node_hours: Option<i64>,
    /// Node-hours its leases hold on the calendar in the period (past,
    /// running, booked and awaiting approval; besteffort excluded).
    pub booked_node_hours: f64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub left_node_hours: Option<f64>,
}
