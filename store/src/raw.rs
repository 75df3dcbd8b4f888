//! Rows as both stores' checked queries select them (`sqlx::query_as!`
//! into these structs, in `ferrum-store-sqlite` and
//! `ferrum-store-postgres`), and their conversion into the store's rows:
//! written once, so a column is added in one place for both backends.
//! Stored names of the model's enums are read with `parse_name` (an
//! unknown one is a corrupt row).

use super::*;

// Stored names read back (a wrong one is a corrupt row).

pub fn lease_type(s: &str) -> DbResult<LeaseType> {
    ferrum_model::lease::parse_type(s).ok_or_else(|| DbError::Corrupt(format!("lease type '{s}'")))
}

pub fn lease_state(s: &str) -> DbResult<LeaseState> {
    ferrum_model::lease::parse_state(s).ok_or_else(|| DbError::Corrupt(format!("lease state '{s}'")))
}

pub fn node_state(s: &str) -> DbResult<NodeLifecycle> {
    NodeLifecycle::parse(s).ok_or_else(|| DbError::Corrupt(format!("node state '{s}'")))
}

pub fn node_policy(s: &str) -> DbResult<NodePolicy> {
    NodePolicy::parse(s).ok_or_else(|| DbError::Corrupt(format!("node policy '{s}'")))
}

pub fn boot_target(s: &str) -> DbResult<BootTarget> {
    BootTarget::parse(s).ok_or_else(|| DbError::Corrupt(format!("node boot target '{s}'")))
}

/// An agent command as its queries select it.
#[derive(Debug)]
pub struct RawCommand {
    pub id: i64,
    pub node_id: i64,
    pub action: String,
    pub requested_by: String,
    pub state: String,
    pub generation: Option<i64>,
    pub done_bytes: i64,
    pub total_bytes: Option<i64>,
    pub error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
}

impl TryFrom<RawCommand> for AgentCommandRow {
    type Error = DbError;

    fn try_from(r: RawCommand) -> DbResult<Self> {
        Ok(AgentCommandRow {
            id: r.id,
            node: NodeId(r.node_id),
            action: r.action,
            requested_by: r.requested_by,
            state: parse_name(&r.state)?,
            generation: r.generation,
            done_bytes: r.done_bytes,
            total_bytes: r.total_bytes,
            error: r.error,
            created_at: r.created_at,
            updated_at: r.updated_at,
        })
    }
}

/// A power request as its queries select it (`n.name AS node_name`).
#[derive(Debug)]
pub struct RawPower {
    pub id: i64,
    pub node_id: i64,
    pub node_name: String,
    pub operation: String,
    pub requested_by: String,
    pub requested_at: i64,
    pub state: String,
    pub finished_at: Option<i64>,
    pub error: Option<String>,
}

impl TryFrom<RawPower> for PowerRequestRow {
    type Error = DbError;

    fn try_from(r: RawPower) -> DbResult<Self> {
        Ok(PowerRequestRow {
            id: r.id,
            node: NodeId(r.node_id),
            node_name: r.node_name,
            operation: parse_name(&r.operation)?,
            requested_by: r.requested_by,
            requested_at: r.requested_at,
            state: parse_name(&r.state)?,
            finished_at: r.finished_at,
            error: r.error,
        })
    }
}

/// A checked `sqlx::query_as!` of [`RawOperation`] in the calling store:
/// node operations with their node's name, then `$rest` (the `WHERE`,
/// `ORDER BY` and `LIMIT`, in the caller's dialect) and its arguments. The
/// one place an operation's columns are listed, for both backends.
#[macro_export]
macro_rules! select_operations {
    ($rest:literal $(, $arg:expr)* $(,)?) => {
        ::sqlx::query_as!(
            $crate::RawOperation,
            r#"SELECT o.id, o.node_id, n.name AS node_name, o.kind, o.deployment_id, o.lease_id, o.state, o.phase, o.attempt,
                      o.phase_started_ms, o.deadline_ms, o.data, o.history, o.message, o.outcome, o.controller_ms, o.created_ms,
                      o.finished_ms, o.version
               FROM node_operations o JOIN nodes n ON n.id = o.node_id "#
                + $rest
            $(, $arg)*
        )
    };
}

/// A node operation as its queries select it (`n.name AS node_name`).
#[derive(Debug)]
pub struct RawOperation {
    pub id: i64,
    pub node_id: i64,
    pub node_name: String,
    pub kind: String,
    pub deployment_id: Option<i64>,
    pub lease_id: Option<i64>,
    pub state: String,
    pub phase: String,
    pub attempt: i64,
    pub phase_started_ms: i64,
    pub deadline_ms: i64,
    pub data: String,
    pub history: String,
    pub message: Option<String>,
    pub outcome: Option<String>,
    pub controller_ms: i64,
    pub created_ms: i64,
    pub finished_ms: Option<i64>,
    pub version: i64,
}

impl TryFrom<RawOperation> for OperationRow {
    type Error = DbError;

    fn try_from(r: RawOperation) -> DbResult<Self> {
        Ok(OperationRow {
            id: r.id,
            node: NodeId(r.node_id),
            node_name: r.node_name,
            kind: parse_name(&r.kind)?,
            deployment: r.deployment_id,
            lease: r.lease_id.map(LeaseId),
            state: parse_name(&r.state)?,
            phase: parse_name(&r.phase)?,
            attempt: r.attempt,
            phase_started_ms: r.phase_started_ms,
            deadline_ms: r.deadline_ms,
            data: r.data,
            history: r.history,
            message: r.message,
            outcome: r.outcome.as_deref().map(parse_name).transpose()?,
            controller_ms: r.controller_ms,
            created_ms: r.created_ms,
            finished_ms: r.finished_ms,
            version: r.version,
        })
    }
}

#[derive(Debug)]
pub struct RawDeployment {
    pub id: i64,
    pub lease_id: i64,
    pub environment: String,
    pub environment_version: i64,
    pub spec: String,
    pub requested_by: String,
    pub created_at: i64,
    pub environment_id: Option<i64>,
    pub environment_owner: Option<String>,
    pub image_sha256: Option<String>,
    pub error: Option<String>,
}

impl From<RawDeployment> for DeploymentRow {
    fn from(r: RawDeployment) -> Self {
        DeploymentRow {
            id: r.id,
            lease: LeaseId(r.lease_id),
            environment: r.environment,
            version: r.environment_version,
            spec: r.spec,
            requested_by: r.requested_by,
            created_at: r.created_at,
            environment_id: r.environment_id,
            environment_owner: r.environment_owner,
            image_sha256: r.image_sha256,
            error: r.error,
        }
    }
}

/// A checked `sqlx::query_as!` of [`LeaseRow`] in the calling store:
/// leases with their owner's and project's names and their nodes, then
/// `$rest` (the `WHERE` and `ORDER BY`, in the caller's dialect) and its
/// arguments. `$nodes` is the caller's dialect's aggregate of one lease's
/// nodes (`l.id`) into a JSON array of `[id, name]` in allocation order,
/// read as [`LeaseNodes`]. The one place a lease's columns are listed, for
/// both backends (the rest of the text is valid SQLite and PostgreSQL; each
/// store checks it against its own schema): a new column is added here and
/// in `LeaseRow`, which the query fills directly.
#[macro_export]
macro_rules! select_leases {
    ($nodes:literal, $rest:literal $(, $arg:expr)* $(,)?) => {
        ::sqlx::query_as!(
            $crate::LeaseRow,
            r#"SELECT l.id AS "id: ferrum_model::LeaseId", l.owner_id AS "owner_id: ferrum_model::UserId", u.name AS owner,
                      p.name AS "project?", l.lease_type AS "lease_type: ferrum_model::lease::LeaseType",
                      l.state AS "state: ferrum_model::lease::LeaseState", l.start, l."end", l.exotic AS "exotic: bool",
                      l.filter, l.groups, l.deploy, l.name, l.reason, l.created_at, "#
                + $nodes
                + r#" AS "nodes!: ferrum_store::raw::LeaseNodes"
               FROM leases l JOIN users u ON u.id = l.owner_id LEFT JOIN projects p ON p.id = l.project_id "#
                + $rest
            $(, $arg)*
        )
    };
}

/// A checked `sqlx::query_scalar!` that inserts a [`NewLease`] (`&NewLease`)
/// without its allocation and answers its id: the one place a lease's
/// columns are written, for both backends (`$N` parameters, which sqlx
/// reads in SQLite as in PostgreSQL). Run it inside the transaction that
/// writes the allocation.
#[macro_export]
macro_rules! insert_lease {
    ($lease:expr) => {{
        let lease: &$crate::NewLease = $lease;
        ::sqlx::query_scalar!(
            r#"INSERT INTO leases (owner_id, project_id, lease_type, state, start, "end", exotic, filter, deploy, reason, created_at,
                                   updated_at, name, groups)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11, $12, $13) RETURNING id AS "id!""#,
            lease.owner_id.0,
            lease.project_id.map(|p| p.0),
            lease.lease_type.as_str(),
            lease.state.as_str(),
            lease.start,
            lease.end,
            lease.exotic,
            lease.filter,
            lease.deploy,
            lease.reason,
            lease.created_at,
            lease.name,
            lease.groups
        )
    }};
}

/// A lease's nodes as [`select_leases!`] reads them: a JSON array of
/// `[node id, node name]` in allocation order, aggregated in SQL.
#[derive(Debug)]
pub struct LeaseNodes(Vec<(NodeId, String)>);

impl<DB: sqlx::Database> sqlx::Type<DB> for LeaseNodes
where
    str: sqlx::Type<DB>,
{
    fn type_info() -> DB::TypeInfo {
        <str as sqlx::Type<DB>>::type_info()
    }

    fn compatible(ty: &DB::TypeInfo) -> bool {
        <str as sqlx::Type<DB>>::compatible(ty)
    }
}

impl<'r, DB: sqlx::Database> sqlx::Decode<'r, DB> for LeaseNodes
where
    &'r str: sqlx::Decode<'r, DB>,
{
    fn decode(value: DB::ValueRef<'r>) -> Result<Self, sqlx::error::BoxDynError> {
        let text = <&str as sqlx::Decode<DB>>::decode(value)?;
        let nodes: Vec<(i64, String)> = serde_json::from_str(text)?;
        Ok(LeaseNodes(nodes.into_iter().map(|(id, name)| (NodeId(id), name)).collect()))
    }
}

impl From<LeaseNodes> for Vec<(NodeId, String)> {
    fn from(nodes: LeaseNodes) -> Self {
        nodes.0
    }
}

impl std::fmt::Debug for RawNode {
    /// The sealed BMC URL stays out of logs, like the opened one does.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RawNode").field("id", &self.id).field("name", &self.name).finish_non_exhaustive()
    }
}

/// A node as its queries select it.
pub struct RawNode {
    pub id: i64,
    pub name: String,
    pub site: String,
    pub cluster: String,
    pub ip: Option<String>,
    pub bmc_url: Option<String>,
    pub state: String,
    pub policy: String,
    pub properties: String,
    pub created_at: i64,
    pub updated_at: i64,
    pub lease_id: Option<i64>,
    pub power_state: Option<String>,
    pub power_observed_at: Option<i64>,
    pub power_source: Option<String>,
    pub boot_target: String,
}

impl RawNode {
    pub fn into_row(self) -> DbResult<NodeRow> {
        Ok(NodeRow {
            id: NodeId(self.id),
            name: self.name,
            site: self.site,
            cluster: self.cluster,
            ip: self.ip,
            bmc_url: self.bmc_url.map(Secret),
            state: node_state(&self.state)?,
            policy: node_policy(&self.policy)?,
            lease: self.lease_id.map(LeaseId),
            properties: json_map(&self.properties, "node properties")?,
            macs: Vec::new(),
            power: match (self.power_state, self.power_observed_at) {
                (Some(state), Some(at)) => Some((state, at, self.power_source.unwrap_or_default())),
                _ => None,
            },
            boot_target: boot_target(&self.boot_target)?,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

/// An allocation as its queries select it.
#[derive(Debug)]
pub struct RawAllocation {
    pub lease_id: i64,
    pub node_id: i64,
    pub start: i64,
    pub end: i64,
    pub lease_type: String,
}

impl RawAllocation {
    pub fn into_row(self) -> DbResult<AllocationRow> {
        Ok(AllocationRow {
            lease: LeaseId(self.lease_id),
            node: NodeId(self.node_id),
            start: self.start,
            end: self.end,
            lease_type: lease_type(&self.lease_type)?,
        })
    }
}

/// A usage record as its queries select it (every column of
/// `usage_records`).
#[derive(Debug)]
pub struct RawRecord {
    pub id: i64,
    pub lease_id: i64,
    pub node_id: i64,
    pub user_name: String,
    pub project_name: Option<String>,
    pub node_name: String,
    pub site: String,
    pub cluster: String,
    pub gpu_model: Option<String>,
    pub gpu_count: i64,
    pub lease_type: String,
    pub reserved_start: i64,
    pub reserved_end: i64,
    pub start: i64,
    pub end: i64,
    pub recorded_at: i64,
}

impl RawRecord {
    pub fn into_row(self) -> DbResult<UsageRecordRow> {
        Ok(UsageRecordRow {
            id: self.id,
            lease_id: LeaseId(self.lease_id),
            node_id: NodeId(self.node_id),
            user: self.user_name,
            project: self.project_name,
            node: self.node_name,
            site: self.site,
            cluster: self.cluster,
            gpu_model: self.gpu_model,
            gpu_count: self.gpu_count,
            lease_type: lease_type(&self.lease_type)?,
            reserved_start: self.reserved_start,
            reserved_end: self.reserved_end,
            start: self.start,
            end: self.end,
            recorded_at: self.recorded_at,
        })
    }
}

/// A node a lease holds, as the holdings query selects it: the GPU model
/// and count are the node properties' JSON texts.
#[derive(Debug)]
pub struct RawHolding {
    pub lease_id: i64,
    pub node_id: i64,
    pub user_name: String,
    pub project_name: Option<String>,
    pub node_name: String,
    pub site: String,
    pub cluster: String,
    pub gpu_model: Option<String>,
    pub gpu_count: Option<String>,
    pub lease_type: String,
    pub reserved_start: i64,
    pub reserved_end: i64,
    pub started_at: Option<i64>,
}

impl RawHolding {
    pub fn into_row(self) -> DbResult<HoldingRow> {
        Ok(HoldingRow {
            lease_id: LeaseId(self.lease_id),
            node_id: NodeId(self.node_id),
            user: self.user_name,
            project: self.project_name,
            node: self.node_name,
            site: self.site,
            cluster: self.cluster,
            gpu_model: json_value(self.gpu_model.as_deref(), "node property gpu_model")?,
            gpu_count: json_value(self.gpu_count.as_deref(), "node property gpu_count")?,
            lease_type: lease_type(&self.lease_type)?,
            reserved_start: self.reserved_start,
            reserved_end: self.reserved_end,
            started_at: self.started_at,
        })
    }
}

/// An account request as its queries select it (its state as stored).
#[derive(Debug)]
pub struct RawRequest {
    pub id: i64,
    pub name: String,
    pub email: String,
    pub affiliation: String,
    pub project: String,
    pub project_class: Option<String>,
    pub motivation: String,
    pub source: String,
    pub state: String,
    pub reason: Option<String>,
    pub decided_by: Option<String>,
    pub decided_at: Option<i64>,
    pub created_at: i64,
    pub status: Option<String>,
    pub email_verified_at: Option<i64>,
}

/// A checked `sqlx::query_as!` of [`RawRequest`] in the calling store, then
/// `$rest` (the `WHERE` and `ORDER BY`, in the caller's dialect) and its
/// arguments: the one place an account request's columns are listed.
#[macro_export]
macro_rules! select_requests {
    ($rest:literal $(, $arg:expr)* $(,)?) => {
        ::sqlx::query_as!(
            $crate::RawRequest,
            "SELECT id, name, email, affiliation, project, project_class, motivation, source, state, reason, decided_by, decided_at, \
             created_at, status, email_verified_at FROM account_requests "
                + $rest
            $(, $arg)*
        )
    };
}

impl TryFrom<RawRequest> for AccountRequestRow {
    type Error = DbError;

    fn try_from(r: RawRequest) -> DbResult<Self> {
        Ok(AccountRequestRow {
            id: r.id,
            name: r.name,
            email: r.email,
            affiliation: r.affiliation,
            project: r.project,
            project_class: r.project_class,
            motivation: r.motivation,
            source: r.source,
            state: parse_name(&r.state)?,
            reason: r.reason,
            decided_by: r.decided_by,
            decided_at: r.decided_at,
            created_at: r.created_at,
            status: r.status,
            email_verified_at: r.email_verified_at,
        })
    }
}

/// A project as its queries select it (`u.name AS manager`), without its
/// members.
#[derive(Debug)]
pub struct RawProject {
    pub id: i64,
    pub name: String,
    pub class: Option<String>,
    pub quota_node_hours: Option<i64>,
    pub created_at: i64,
    pub manager: Option<String>,
}

/// A project's member, by name.
#[derive(Debug)]
pub struct RawMember {
    pub project_id: i64,
    pub name: String,
}

/// The projects with their members (`members` in the order to keep).
pub fn projects_with_members(rows: Vec<RawProject>, members: Vec<RawMember>) -> Vec<ProjectRow> {
    let mut projects: Vec<ProjectRow> = rows
        .into_iter()
        .map(|r| ProjectRow {
            id: ProjectId(r.id),
            name: r.name,
            class: r.class,
            quota_node_hours: r.quota_node_hours,
            members: Vec::new(),
            manager: r.manager,
            created_at: r.created_at,
        })
        .collect();
    let index: std::collections::HashMap<i64, usize> = projects.iter().enumerate().map(|(i, p)| (p.id.0, i)).collect();
    for m in members {
        if let Some(&i) = index.get(&m.project_id) {
            projects[i].members.push(m.name);
        }
    }
    projects
}

/// An SSH key as its queries select it.
#[derive(Debug)]
pub struct RawSshKey {
    pub id: i64,
    pub user_id: i64,
    pub name: Option<String>,
    pub public_key: String,
    pub fingerprint: String,
    pub created_at: i64,
}

impl From<RawSshKey> for SshKeyRow {
    fn from(r: RawSshKey) -> Self {
        SshKeyRow {
            id: r.id,
            user_id: UserId(r.user_id),
            name: r.name,
            public_key: r.public_key,
            fingerprint: r.fingerprint,
            created_at: r.created_at,
        }
    }
}

/// A user as the checked queries select it (`SELECT id, name, role, email,
/// created_at, disabled_at, disabled_reason FROM users`), without their
/// projects.
#[derive(Debug)]
pub struct RawUser {
    pub id: i64,
    pub name: String,
    pub role: String,
    pub email: Option<String>,
    pub created_at: i64,
    pub disabled_at: Option<i64>,
    pub disabled_reason: Option<String>,
}

impl RawUser {
    /// The user with the names of their projects.
    pub fn into_row(self, projects: Vec<String>) -> UserRow {
        UserRow {
            id: UserId(self.id),
            is_admin: self.role == "admin",
            email: self.email,
            projects,
            created_at: self.created_at,
            disabled: self.disabled_at.map(|at| Disabled { at, reason: self.disabled_reason.unwrap_or_default() }),
            name: self.name,
        }
    }
}
