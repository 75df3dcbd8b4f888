//! The PostgreSQL datastore: the backend of a production service, with
//! several `ferrumd` replicas on one database.
//!
//! Every query is checked at build time against the schema of
//! `migrations/postgres` (`sqlx::query!` and friends; the offline data lives
//! in `controller/.sqlx`, refreshed by `scripts/sqlx-prepare.sh`). The
//! database keeps the rules even when several replicas write at once:
//! - no double booking: the exclusion constraint `lease_nodes_no_overlap`
//!   (SQLSTATE 23P01 → [`DbError::DoubleBooked`]);
//! - calendar writers (lease insertion, extension, state changes that move
//!   allocations) lock the `meta` row (`SELECT ... FOR UPDATE`) before they
//!   compare the calendar generation, so they are serialised like SQLite's
//!   `BEGIN IMMEDIATE` writers and a stale plan is always seen;
//! - every other read-then-write is one statement or a compare-and-swap.

use std::time::Duration;

use async_trait::async_trait;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgConnection, PgPool, Postgres, Transaction};

use super::*;
use crate::model::import::{ImportAction, import_action};
use crate::model::{AgentCommandState, OperationKind, OperationState, PowerOperation, PowerRequestState, ResetOutcome, lease, properties, tokens};

mod accounts;
mod usage;

/// The PostgreSQL store.
#[derive(Clone, Debug)]
pub struct PgStore {
    pool: PgPool,
    /// For the connections that are not the pool's: the leader's lock and
    /// the change listener.
    options: PgConnectOptions,
    /// Seals and opens the BMC credentials.
    key: std::sync::Arc<SecretKey>,
}

/// The advisory lock whose holder runs the background loops ("ferrum" in
/// ASCII).
const LEADER_LOCK: i64 = 0x6665_7272_756d;

/// The advisory lock calendar planners take (`planning_lock`).
const PLANNING_LOCK: i64 = LEADER_LOCK + 1;

/// How long the leader waits for its lock connection to answer before it
/// considers leadership lost.
const LEADER_CHECK_TIMEOUT: Duration = Duration::from_secs(3);

/// The channel the change triggers notify (migration 0002).
const CHANGES_CHANNEL: &str = "ferrum_changes";

/// Leadership held through a session advisory lock on a connection of its
/// own: if this process dies, its connection closes and PostgreSQL releases
/// the lock at once; if the network fails, the server's TCP keepalives
/// (set short on this session) release it within about 15 s, while this
/// side stops leading as soon as a check fails (before another replica can
/// take over).
struct AdvisoryLeadership {
    conn: Option<PgConnection>,
}

#[async_trait]
impl Leadership for AdvisoryLeadership {
    async fn holds(&mut self) -> bool {
        let Some(conn) = self.conn.as_mut() else { return false };
        let alive = tokio::time::timeout(LEADER_CHECK_TIMEOUT, sqlx::query_scalar!(r#"SELECT 1 AS "one!""#).fetch_one(&mut *conn)).await;
        if matches!(alive, Ok(Ok(1))) {
            return true;
        }
        // Whatever happened, this connection no longer proves anything.
        self.conn = None;
        false
    }
}

/// SQLSTATE of an exclusion constraint violation.
const EXCLUSION_VIOLATION: &str = "23P01";

fn db(e: sqlx::Error) -> DbError {
    if e.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == EXCLUSION_VIOLATION) {
        return DbError::DoubleBooked;
    }
    DbError::Sqlx(e)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.is_unique_violation())
}

fn position(i: usize) -> i64 {
    i64::try_from(i).unwrap_or(i64::MAX)
}

/// A set of stored names as one `TEXT[]` parameter (`= ANY($n)`), so no
/// state is ever written into a query's text.
fn names<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<String> {
    names.into_iter().map(str::to_owned).collect()
}

fn lease_type(s: &str) -> DbResult<LeaseType> {
    lease::parse_type(s).ok_or_else(|| DbError::Corrupt(format!("lease type '{s}'")))
}

fn lease_state(s: &str) -> DbResult<LeaseState> {
    lease::parse_state(s).ok_or_else(|| DbError::Corrupt(format!("lease state '{s}'")))
}

fn node_state(s: &str) -> DbResult<NodeLifecycle> {
    NodeLifecycle::parse(s).ok_or_else(|| DbError::Corrupt(format!("node state '{s}'")))
}

fn node_policy(s: &str) -> DbResult<NodePolicy> {
    NodePolicy::parse(s).ok_or_else(|| DbError::Corrupt(format!("node policy '{s}'")))
}

fn boot_target(s: &str) -> DbResult<BootTarget> {
    BootTarget::parse(s).ok_or_else(|| DbError::Corrupt(format!("node boot target '{s}'")))
}

/// See `sqlite::adopt_key`; the `meta` row is locked, so replicas
/// starting together agree on one key.
async fn adopt_key(pool: &PgPool, key: &SecretKey) -> DbResult<usize> {
    let mut tx = pool.begin().await.map_err(db)?;
    let stored = sqlx::query_scalar!("SELECT key_fingerprint FROM meta WHERE id = 1 FOR UPDATE").fetch_one(&mut *tx).await.map_err(db)?;
    check_fingerprint(stored.as_deref(), key)?;
    if stored.is_none() {
        sqlx::query!("UPDATE meta SET key_fingerprint = $1 WHERE id = 1", key.fingerprint()).execute(&mut *tx).await.map_err(db)?;
    }
    let rows = sqlx::query!(r#"SELECT id, name, bmc_url AS "bmc_url!" FROM nodes WHERE bmc_url IS NOT NULL"#)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
    let mut sealed = 0;
    for row in rows.into_iter().filter(|r| !crate::secrets::is_sealed(&r.bmc_url)) {
        let value = seal_bmc(key, &row.name, &Secret(row.bmc_url))?;
        sqlx::query!("UPDATE nodes SET bmc_url = $1 WHERE id = $2", value, row.id).execute(&mut *tx).await.map_err(db)?;
        sealed += 1;
    }
    tx.commit().await.map_err(db)?;
    Ok(sealed)
}

/// See [`super::recorded_key_fingerprint`]: no migrations run.
pub(crate) async fn recorded_key_fingerprint(url: &str) -> DbResult<Option<String>> {
    let options: PgConnectOptions = url.parse().map_err(DbError::Sqlx)?;
    let mut conn = sqlx::ConnectOptions::connect(&options).await.map_err(DbError::Sqlx)?;
    // Unchecked: the column may not exist yet (a database of an older ferrumd).
    let has_column: bool = sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = 'meta' AND column_name = 'key_fingerprint')",
    )
    .fetch_one(&mut conn)
    .await
    .map_err(db)?;
    if !has_column {
        return Ok(None);
    }
    sqlx::query_scalar("SELECT key_fingerprint FROM meta WHERE id = 1").fetch_optional(&mut conn).await.map_err(db).map(Option::flatten)
}

// --- raw rows, as the checked queries return them --------------------------

struct RawNode {
    id: i64,
    name: String,
    site: String,
    cluster: String,
    ip: Option<String>,
    bmc_url: Option<String>,
    state: String,
    policy: String,
    properties: String,
    created_at: i64,
    updated_at: i64,
    lease_id: Option<i64>,
    power_state: Option<String>,
    power_observed_at: Option<i64>,
    power_source: Option<String>,
    boot_target: String,
}

impl RawNode {
    fn into_row(self) -> DbResult<NodeRow> {
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

struct RawLease {
    id: i64,
    owner_id: i64,
    owner: String,
    project: Option<String>,
    lease_type: String,
    state: String,
    start: i64,
    end: i64,
    exotic: bool,
    filter: Option<String>,
    deploy: Option<String>,
    reason: Option<String>,
    created_at: i64,
}

impl RawLease {
    fn into_row(self) -> DbResult<LeaseRow> {
        Ok(LeaseRow {
            id: LeaseId(self.id),
            owner_id: UserId(self.owner_id),
            owner: self.owner,
            project: self.project,
            lease_type: lease_type(&self.lease_type)?,
            state: lease_state(&self.state)?,
            start: self.start,
            end: self.end,
            exotic: self.exotic,
            filter: self.filter,
            deploy: self.deploy,
            reason: self.reason,
            created_at: self.created_at,
            nodes: Vec::new(),
        })
    }
}

struct RawCommand {
    id: i64,
    node_id: i64,
    action: String,
    requested_by: String,
    state: String,
    generation: Option<i64>,
    done_bytes: i64,
    total_bytes: Option<i64>,
    error: Option<String>,
    created_at: i64,
    updated_at: i64,
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

struct RawOperation {
    id: i64,
    node_id: i64,
    node_name: String,
    kind: String,
    deployment_id: Option<i64>,
    lease_id: Option<i64>,
    state: String,
    phase: String,
    attempt: i64,
    phase_started_ms: i64,
    deadline_ms: i64,
    data: String,
    history: String,
    message: Option<String>,
    outcome: Option<String>,
    controller_ms: i64,
    created_ms: i64,
    finished_ms: Option<i64>,
    version: i64,
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

struct RawDeployment {
    id: i64,
    lease_id: i64,
    environment: String,
    environment_version: i64,
    spec: String,
    requested_by: String,
    created_at: i64,
    environment_id: Option<i64>,
    environment_owner: Option<String>,
    image_sha256: Option<String>,
    error: Option<String>,
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

struct RawPower {
    id: i64,
    node_id: i64,
    node_name: String,
    operation: String,
    requested_by: String,
    requested_at: i64,
    state: String,
    finished_at: Option<i64>,
    error: Option<String>,
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

struct RawBootHost {
    mac: String,
    node_id: i64,
    name: String,
    ip: Option<String>,
    boot_target: String,
}

impl RawBootHost {
    fn into_row(self) -> DbResult<BootHostRow> {
        Ok(BootHostRow {
            mac: self.mac,
            node: NodeId(self.node_id),
            name: self.name,
            ip: self.ip,
            boot_target: boot_target(&self.boot_target)?,
        })
    }
}

struct RawAllocation {
    lease_id: i64,
    node_id: i64,
    start: i64,
    end: i64,
    lease_type: String,
}

impl RawAllocation {
    fn into_row(self) -> DbResult<AllocationRow> {
        Ok(AllocationRow {
            lease: LeaseId(self.lease_id),
            node: NodeId(self.node_id),
            start: self.start,
            end: self.end,
            lease_type: lease_type(&self.lease_type)?,
        })
    }
}

impl PgStore {
    /// Connects to the database at `url` (`postgres://...`) and runs the
    /// migrations (serialised across replicas by sqlx's advisory lock).
    pub async fn open(url: &str, key: SecretKey) -> DbResult<Self> {
        let options: PgConnectOptions = url.parse().map_err(DbError::Sqlx)?;
        let pool = Self::migrated_pool(&options).await?;
        let sealed = adopt_key(&pool, &key).await?;
        if sealed > 0 {
            tracing::info!(
                nodes = sealed,
                "encrypted the BMC credentials an older ferrumd stored in clear (old row versions stay in the table files until \
                 `VACUUM FULL nodes`)"
            );
        }
        Ok(PgStore { pool, options, key: std::sync::Arc::new(key) })
    }

    /// A pool on the database, with the migrations run; no key adopted
    /// (`copy` moves sealed values as they are).
    pub(crate) async fn migrated_pool(options: &PgConnectOptions) -> DbResult<PgPool> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(DbError::Sqlx)?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await.map_err(DbError::Migrate)?;
        Ok(pool)
    }

    /// The connection pool (for the leader election, which holds one
    /// connection of its own).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    async fn begin(&self) -> DbResult<Transaction<'static, Postgres>> {
        self.pool.begin().await.map_err(db)
    }

    /// Locks the calendar (the `meta` row) for this transaction and checks
    /// that it is still at `expected`.
    async fn lock_calendar(tx: &mut PgConnection, expected: Option<i64>) -> DbResult<()> {
        let generation =
            sqlx::query_scalar!("SELECT calendar_generation FROM meta WHERE id = 1 FOR UPDATE").fetch_one(&mut *tx).await.map_err(db)?;
        match expected {
            Some(e) if e != generation => Err(DbError::StaleCalendar),
            _ => Ok(()),
        }
    }

    async fn generation_in(tx: &mut PgConnection) -> DbResult<i64> {
        sqlx::query_scalar!("SELECT calendar_generation FROM meta WHERE id = 1").fetch_one(&mut *tx).await.map_err(db)
    }

    async fn insert_event(tx: &mut PgConnection, node: NodeId, e: &NewEvent) -> DbResult<()> {
        sqlx::query!(
            "INSERT INTO node_events (node_id, at, actor, from_state, to_state, reason) VALUES ($1, $2, $3, $4, $5, $6)",
            node.0,
            e.at,
            e.actor,
            e.from_shown,
            e.to_shown,
            e.reason
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn insert_node_in(tx: &mut PgConnection, key: &SecretKey, node: &NodeWrite, event: &NewEvent) -> DbResult<NodeId> {
        let bmc_url = node.bmc_url.as_ref().map(|url| seal_bmc(key, &node.name, url)).transpose()?;
        let id = sqlx::query_scalar!(
            "INSERT INTO nodes (name, site, cluster, ip, bmc_url, state, policy, properties, admin_properties, reference, \
             reference_sha256, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, 'enrolling', 'in_service', $6, $7, $8, $9, $10, $10) RETURNING id",
            node.name,
            node.site,
            node.cluster,
            node.ip,
            bmc_url,
            to_json(&properties::effective(&node.properties, &node.admin_properties)),
            to_json(&node.admin_properties),
            node.reference,
            node.reference_sha256,
            event.at
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| if is_unique_violation(&e) { DbError::AlreadyExists { what: "node", name: node.name.clone() } } else { db(e) })?;
        Self::insert_macs(tx, NodeId(id), &node.macs).await?;
        Self::insert_event(tx, NodeId(id), event).await?;
        Ok(NodeId(id))
    }

    async fn insert_macs(tx: &mut PgConnection, node: NodeId, macs: &[String]) -> DbResult<()> {
        for (i, mac) in macs.iter().enumerate() {
            sqlx::query!("INSERT INTO node_macs (mac, node_id, position) VALUES ($1, $2, $3)", mac, node.0, position(i))
                .execute(&mut *tx)
                .await
                .map_err(
                    |e| {
                        if is_unique_violation(&e) { DbError::AlreadyExists { what: "MAC address", name: mac.clone() } } else { db(e) }
                    },
                )?;
        }
        Ok(())
    }

    async fn apply_lease_transition(
        tx: &mut PgConnection,
        id: LeaseId,
        from: LeaseState,
        to: LeaseState,
        change: AllocationChange,
        reason: Option<&str>,
        now: Seconds,
    ) -> DbResult<()> {
        let updated = sqlx::query!(
            "UPDATE leases SET state = $1, reason = COALESCE($2, reason), updated_at = $3 WHERE id = $4 AND state = $5",
            to.as_str(),
            reason,
            now,
            id.0,
            from.as_str()
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        if updated.rows_affected() == 0 {
            return Err(DbError::Raced { what: "lease" });
        }
        match lease::use_change(from, to) {
            lease::UseChange::None => {}
            lease::UseChange::Begins => {
                sqlx::query!("UPDATE leases SET started_at = $1 WHERE id = $2", now, id.0).execute(&mut *tx).await.map_err(db)?;
            }
            lease::UseChange::Ends => {
                // Account for its use before the cut.
                usage::record_lease_usage(tx, id, now).await?;
                sqlx::query!("UPDATE leases SET ended_at = $1 WHERE id = $2", now, id.0).execute(&mut *tx).await.map_err(db)?;
            }
        }
        match change {
            AllocationChange::Keep => {}
            AllocationChange::Drop => {
                sqlx::query!("DELETE FROM lease_nodes WHERE lease_id = $1", id.0).execute(&mut *tx).await.map_err(db)?;
            }
            AllocationChange::CutAt(t) => Self::cut_allocation(tx, id, t).await?,
        }
        Ok(())
    }

    /// Writes what [`lease::cut_at`] decides for the lease's rows at `t`.
    async fn cut_allocation(tx: &mut PgConnection, id: LeaseId, t: Seconds) -> DbResult<()> {
        let span = sqlx::query!(r#"SELECT start, "end" FROM leases WHERE id = $1"#, id.0).fetch_one(&mut *tx).await.map_err(db)?;
        let rows = sqlx::query!(r#"SELECT node_id, start, "end" FROM lease_nodes WHERE lease_id = $1"#, id.0)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let rows: Vec<lease::Allocation> =
            rows.into_iter().map(|r| lease::Allocation { node: NodeId(r.node_id), start: r.start, end: r.end }).collect();
        let cut = lease::cut_at((span.start, span.end), &rows, t);
        let ids = |nodes: &[NodeId]| nodes.iter().map(|n| n.0).collect::<Vec<_>>();
        if !cut.removed.is_empty() {
            sqlx::query!("DELETE FROM lease_nodes WHERE lease_id = $1 AND node_id = ANY($2)", id.0, &ids(&cut.removed))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        if !cut.shortened.is_empty() {
            sqlx::query!(r#"UPDATE lease_nodes SET "end" = $1 WHERE lease_id = $2 AND node_id = ANY($3)"#, t, id.0, &ids(&cut.shortened))
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        if let Some(end) = cut.lease_end {
            sqlx::query!(r#"UPDATE leases SET "end" = $1 WHERE id = $2"#, end, id.0).execute(&mut *tx).await.map_err(db)?;
        }
        Ok(())
    }

    /// Fills in the allocated nodes of `leases`.
    async fn with_nodes(conn: &mut PgConnection, raw: Vec<RawLease>) -> DbResult<Vec<LeaseRow>> {
        let mut leases = raw.into_iter().map(RawLease::into_row).collect::<DbResult<Vec<_>>>()?;
        if leases.is_empty() {
            return Ok(leases);
        }
        let ids: Vec<i64> = leases.iter().map(|l| l.id.0).collect();
        let rows = sqlx::query!(
            "SELECT ln.lease_id, ln.node_id, n.name FROM lease_nodes ln JOIN nodes n ON n.id = ln.node_id \
             WHERE ln.lease_id = ANY($1) ORDER BY ln.lease_id, ln.position",
            &ids
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        let index: std::collections::HashMap<i64, usize> = leases.iter().enumerate().map(|(i, l)| (l.id.0, i)).collect();
        for r in rows {
            if let Some(&i) = index.get(&r.lease_id) {
                leases[i].nodes.push((NodeId(r.node_id), r.name));
            }
        }
        Ok(leases)
    }

    async fn lease_in(conn: &mut PgConnection, id: LeaseId) -> DbResult<LeaseRow> {
        let raw = sqlx::query_as!(
            RawLease,
            r#"SELECT l.id, l.owner_id, u.name AS owner, p.name AS "project?", l.lease_type, l.state, l.start, l."end", l.exotic,
                      l.filter, l.deploy, l.reason, l.created_at
               FROM leases l JOIN users u ON u.id = l.owner_id LEFT JOIN projects p ON p.id = l.project_id WHERE l.id = $1"#,
            id.0
        )
        .fetch_optional(&mut *conn)
        .await
        .map_err(db)?
        .ok_or_else(|| DbError::NotFound { what: "lease", name: id.to_string() })?;
        Self::with_nodes(conn, vec![raw]).await?.pop().ok_or_else(|| DbError::NotFound { what: "lease", name: id.to_string() })
    }

    async fn conn(&self) -> DbResult<sqlx::pool::PoolConnection<Postgres>> {
        self.pool.acquire().await.map_err(db)
    }

    async fn agent_command(&self, id: i64) -> DbResult<AgentCommandRow> {
        let r = sqlx::query_as!(
            RawCommand,
            "SELECT id, node_id, action, requested_by, state, generation, done_bytes, total_bytes, error, created_at, updated_at \
             FROM agent_commands WHERE id = $1",
            id
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .ok_or_else(|| DbError::NotFound { what: "agent command", name: id.to_string() })?;
        r.try_into()
    }

    async fn nodes_with_macs(&self, raw: Vec<RawNode>) -> DbResult<Vec<NodeRow>> {
        let mut nodes = raw.into_iter().map(RawNode::into_row).collect::<DbResult<Vec<_>>>()?;
        for node in &mut nodes {
            open_bmc(&self.key, node)?;
        }
        let macs = sqlx::query!("SELECT node_id, mac FROM node_macs ORDER BY node_id, position").fetch_all(&self.pool).await.map_err(db)?;
        let index: std::collections::HashMap<i64, usize> = nodes.iter().enumerate().map(|(i, n)| (n.id.0, i)).collect();
        for r in macs {
            if let Some(&i) = index.get(&r.node_id) {
                nodes[i].macs.push(r.mac);
            }
        }
        Ok(nodes)
    }

    async fn user_projects(&self, user: i64) -> DbResult<Vec<(ProjectId, String)>> {
        let rows = sqlx::query!(
            "SELECT p.id, p.name FROM project_members m JOIN projects p ON p.id = m.project_id WHERE m.user_id = $1 ORDER BY p.name",
            user
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.into_iter().map(|r| (ProjectId(r.id), r.name)).collect())
    }

    async fn operations_of_deployment(&self, deployment: i64) -> DbResult<Vec<OperationRow>> {
        let rows = sqlx::query_as!(
            RawOperation,
            r#"SELECT o.id, o.node_id, n.name AS node_name, o.kind, o.deployment_id, o.lease_id, o.state, o.phase, o.attempt,
                      o.phase_started_ms, o.deadline_ms, o.data, o.history, o.message, o.outcome, o.controller_ms, o.created_ms,
                      o.finished_ms, o.version
               FROM node_operations o JOIN nodes n ON n.id = o.node_id WHERE o.deployment_id = $1 ORDER BY n.name"#,
            deployment
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn project_by_name(&self, name: &str) -> DbResult<ProjectRow> {
        self.list_projects()
            .await?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| DbError::NotFound { what: "project", name: name.into() })
    }
}

/// Inserts a running operation inside `tx`; a second running operation on
/// the node violates the partial unique index and reads as `Raced`.
async fn insert_operation_in(tx: &mut PgConnection, op: &NewOperation, deployment: Option<i64>) -> DbResult<i64> {
    let history = serde_json::json!([[op.phase.as_str(), op.now_ms]]).to_string();
    sqlx::query_scalar!(
        "INSERT INTO node_operations (node_id, kind, deployment_id, lease_id, state, phase, attempt, phase_started_ms, deadline_ms, \
         history, created_ms) VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8, $9, $7) RETURNING id",
        op.node.0,
        op.kind.as_str(),
        deployment,
        op.lease.map(|l| l.0),
        OperationState::Running.as_str(),
        op.phase.as_str(),
        op.now_ms,
        op.deadline_ms,
        history
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| if is_unique_violation(&e) { DbError::Raced { what: "node's running operation" } } else { db(e) })
}

#[async_trait]
impl Datastore for PgStore {
    async fn try_lead(&self) -> DbResult<Option<Box<dyn Leadership>>> {
        use sqlx::Connection;
        let mut conn = PgConnection::connect_with(&self.options).await.map_err(db)?;
        // The server notices a vanished leader host within about 15 s.
        sqlx::query!("SET tcp_keepalives_idle = 5").execute(&mut conn).await.map_err(db)?;
        sqlx::query!("SET tcp_keepalives_interval = 2").execute(&mut conn).await.map_err(db)?;
        sqlx::query!("SET tcp_keepalives_count = 5").execute(&mut conn).await.map_err(db)?;
        let got =
            sqlx::query_scalar!(r#"SELECT pg_try_advisory_lock($1) AS "got!""#, LEADER_LOCK).fetch_one(&mut conn).await.map_err(db)?;
        if got {
            Ok(Some(Box::new(AdvisoryLeadership { conn: Some(conn) })))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }

    async fn planning_lock(&self) -> DbResult<Option<PlanningLock>> {
        let mut tx = self.begin().await?;
        sqlx::query!("SELECT pg_advisory_xact_lock($1)", PLANNING_LOCK).execute(&mut *tx).await.map_err(db)?;
        Ok(Some(PlanningLock(Box::new(tx))))
    }

    async fn listen_changes(&self) -> DbResult<Option<tokio::sync::mpsc::Receiver<String>>> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await.map_err(db)?;
        listener.listen(CHANGES_CHANNEL).await.map_err(db)?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                // `recv` reconnects by itself after a lost connection
                // (notifications sent meanwhile are lost: the loops' own
                // ticks cover them).
                match listener.recv().await {
                    Ok(n) => {
                        // A full channel already holds a wake-up.
                        if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) = tx.try_send(n.payload().to_owned()) {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "change listener: connection lost");
                        if tx.is_closed() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(Some(rx))
    }

    async fn count_users(&self) -> DbResult<i64> {
        sqlx::query_scalar!(r#"SELECT COUNT(*) AS "n!" FROM users"#).fetch_one(&self.pool).await.map_err(db)
    }

    async fn create_project(&self, name: &str, class: Option<&str>, quota: Option<i64>, now: Seconds) -> DbResult<ProjectRow> {
        let id = sqlx::query_scalar!(
            "INSERT INTO projects (name, class, quota_node_hours, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
            name,
            class,
            quota,
            now
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| if is_unique_violation(&e) { DbError::AlreadyExists { what: "project", name: name.to_owned() } } else { db(e) })?;
        Ok(ProjectRow {
            id: ProjectId(id),
            name: name.to_owned(),
            class: class.map(str::to_owned),
            quota_node_hours: quota,
            members: Vec::new(),
            manager: None,
            created_at: now,
        })
    }

    async fn list_projects(&self) -> DbResult<Vec<ProjectRow>> {
        let rows = sqlx::query!(
            r#"SELECT p.id, p.name, p.class, p.quota_node_hours, p.created_at, u.name AS "manager?" FROM projects p
               LEFT JOIN users u ON u.id = p.manager_id ORDER BY p.name"#
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let members = sqlx::query!("SELECT m.project_id, u.name FROM project_members m JOIN users u ON u.id = m.user_id ORDER BY u.name")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
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
        for m in members {
            if let Some(p) = projects.iter_mut().find(|p| p.id.0 == m.project_id) {
                p.members.push(m.name);
            }
        }
        Ok(projects)
    }

    async fn create_user(
        &self,
        name: &str,
        is_admin: bool,
        email: Option<&str>,
        projects: &[String],
        token_sha256: &str,
        now: Seconds,
    ) -> DbResult<UserRow> {
        let mut tx = self.begin().await?;
        let id = sqlx::query_scalar!(
            "INSERT INTO users (name, role, email, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
            name,
            if is_admin { "admin" } else { "user" },
            email,
            now
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| if is_unique_violation(&e) { DbError::AlreadyExists { what: "user", name: name.to_owned() } } else { db(e) })?;
        for project in projects {
            let pid = sqlx::query_scalar!("SELECT id FROM projects WHERE name = $1", project)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?
                .ok_or_else(|| DbError::NotFound { what: "project", name: project.clone() })?;
            sqlx::query!("INSERT INTO project_members (project_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", pid, id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        sqlx::query!("INSERT INTO api_tokens (user_id, token_sha256, created_at) VALUES ($1, $2, $3)", id, token_sha256, now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        let mut projects = projects.to_vec();
        projects.sort();
        projects.dedup();
        Ok(UserRow {
            id: UserId(id),
            name: name.to_owned(),
            is_admin,
            email: email.map(str::to_owned),
            projects,
            created_at: now,
            disabled: None,
        })
    }

    async fn list_users(&self) -> DbResult<Vec<UserRow>> {
        let rows = sqlx::query!("SELECT id, name, role, email, created_at, disabled_at, disabled_reason FROM users ORDER BY name")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let mut users = Vec::with_capacity(rows.len());
        for r in rows {
            users.push(UserRow {
                id: UserId(r.id),
                name: r.name,
                is_admin: r.role == "admin",
                email: r.email,
                projects: self.user_projects(r.id).await?.into_iter().map(|(_, n)| n).collect(),
                created_at: r.created_at,
                disabled: r.disabled_at.map(|at| Disabled { at, reason: r.disabled_reason.unwrap_or_default() }),
            });
        }
        Ok(users)
    }

    async fn get_user(&self, name: &str) -> DbResult<UserRow> {
        let r = sqlx::query!("SELECT id, name, role, email, created_at, disabled_at, disabled_reason FROM users WHERE name = $1", name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| DbError::NotFound { what: "user", name: name.to_owned() })?;
        Ok(UserRow {
            id: UserId(r.id),
            name: r.name,
            is_admin: r.role == "admin",
            email: r.email,
            projects: self.user_projects(r.id).await?.into_iter().map(|(_, n)| n).collect(),
            created_at: r.created_at,
            disabled: r.disabled_at.map(|at| Disabled { at, reason: r.disabled_reason.unwrap_or_default() }),
        })
    }

    async fn add_token(&self, user: UserId, token: &NewToken, now: Seconds, max_live: i64) -> DbResult<Option<TokenRow>> {
        let mut tx = self.begin().await?;
        // The user's row locked: creations for one user take turns, so the
        // count holds until the insert.
        sqlx::query_scalar!("SELECT id FROM users WHERE id = $1 FOR UPDATE", user.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .ok_or_else(|| DbError::NotFound { what: "user", name: user.0.to_string() })?;
        let expiries = sqlx::query_scalar!("SELECT expires_at FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL", user.0)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        if !tokens::may_add_token(expiries, now, max_live) {
            return Ok(None);
        }
        let id = sqlx::query_scalar!(
            "INSERT INTO api_tokens (user_id, token_sha256, created_at, name, expires_at, read_only) VALUES ($1, $2, $3, $4, $5, $6) \
             RETURNING id",
            user.0,
            token.sha256,
            now,
            token.name,
            token.expires_at,
            token.read_only
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Some(TokenRow { id, name: token.name.clone(), created_at: now, expires_at: token.expires_at, read_only: token.read_only }))
    }

    async fn list_tokens(&self, user: UserId) -> DbResult<Vec<TokenRow>> {
        sqlx::query_as!(
            TokenRow,
            "SELECT id, name, created_at, expires_at, read_only FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL ORDER BY id",
            user.0
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)
    }

    async fn revoke_token(&self, user: UserId, id: i64, now: Seconds) -> DbResult<bool> {
        let done =
            sqlx::query!("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL", now, id, user.0)
                .execute(&self.pool)
                .await
                .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn actor_by_token(&self, token_sha256: &str) -> DbResult<Option<ActorRow>> {
        // Every request asks this: one round trip for the user and their
        // projects.
        let row = sqlx::query!(
            r#"SELECT u.id, u.name, u.role, t.id AS token_id, t.expires_at, t.read_only,
                 ARRAY(SELECT p.id FROM project_members m JOIN projects p ON p.id = m.project_id
                       WHERE m.user_id = u.id ORDER BY p.name) AS "project_ids!",
                 ARRAY(SELECT p.name FROM project_members m JOIN projects p ON p.id = m.project_id
                       WHERE m.user_id = u.id ORDER BY p.name) AS "project_names!"
               FROM api_tokens t JOIN users u ON u.id = t.user_id
               WHERE t.token_sha256 = $1 AND t.revoked_at IS NULL AND u.disabled_at IS NULL"#,
            token_sha256
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let Some(r) = row else { return Ok(None) };
        let projects = r.project_ids.into_iter().map(ProjectId).zip(r.project_names).collect();
        Ok(Some(ActorRow {
            user_id: UserId(r.id),
            name: r.name,
            is_admin: r.role == "admin",
            projects,
            token_id: r.token_id,
            expires_at: r.expires_at,
            read_only: r.read_only,
        }))
    }

    async fn set_user_disabled(&self, name: &str, disabled: Option<&Disabled>) -> DbResult<UserRow> {
        let done = sqlx::query!(
            "UPDATE users SET disabled_at = $1, disabled_reason = $2 WHERE name = $3",
            disabled.map(|d| d.at),
            disabled.map(|d| d.reason.as_str()),
            name
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(DbError::NotFound { what: "user", name: name.to_owned() });
        }
        self.get_user(name).await
    }

    async fn boot_hosts(&self) -> DbResult<Vec<BootHostRow>> {
        let rows = sqlx::query_as!(
            RawBootHost,
            "SELECT m.mac, n.id AS node_id, n.name, n.ip, n.boot_target FROM node_macs m JOIN nodes n ON n.id = m.node_id"
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter().map(RawBootHost::into_row).collect()
    }

    async fn boot_host(&self, mac: &str) -> DbResult<Option<BootHostRow>> {
        let row = sqlx::query_as!(
            RawBootHost,
            "SELECT m.mac, n.id AS node_id, n.name, n.ip, n.boot_target FROM node_macs m JOIN nodes n ON n.id = m.node_id \
             WHERE m.mac = $1",
            mac
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(RawBootHost::into_row).transpose()
    }

    async fn set_boot_target(&self, node: NodeId, target: BootTarget) -> DbResult<()> {
        sqlx::query!("UPDATE nodes SET boot_target = $1 WHERE id = $2", target.as_str(), node.0).execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    async fn mint_agent_token(
        &self,
        node: NodeId,
        token_sha256: &str,
        bound_ip: &str,
        keep: u32,
        now: Seconds,
        expires_at: Seconds,
    ) -> DbResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query!(
            "INSERT INTO agent_tokens (token_sha256, node_id, created_at, expires_at, bound_ip) VALUES ($1, $2, $3, $4, $5)",
            token_sha256,
            node.0,
            now,
            expires_at,
            bound_ip
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let rows = sqlx::query!(
            r#"SELECT token_sha256, created_at, expires_at, used_at IS NOT NULL AS "used!" FROM agent_tokens WHERE node_id = $1"#,
            node.0
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let stored: Vec<tokens::AgentToken<'_>> = rows
            .iter()
            .map(|r| tokens::AgentToken { sha256: &r.token_sha256, created_at: r.created_at, expires_at: r.expires_at, used: r.used })
            .collect();
        let displaced: Vec<String> =
            tokens::displaced_agent_tokens(&stored, token_sha256, keep, now).into_iter().map(str::to_owned).collect();
        if !displaced.is_empty() {
            sqlx::query!("DELETE FROM agent_tokens WHERE token_sha256 = ANY($1)", &displaced).execute(&mut *tx).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn add_boot_token(&self, token_sha256: &str, created_by: &str, now: Seconds) -> DbResult<()> {
        sqlx::query!("INSERT INTO boot_tokens (token_sha256, created_by, created_at) VALUES ($1, $2, $3)", token_sha256, created_by, now)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn is_boot_token(&self, token_sha256: &str) -> DbResult<bool> {
        let found = sqlx::query_scalar!("SELECT 1 AS \"one!\" FROM boot_tokens WHERE token_sha256 = $1", token_sha256)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(found.is_some())
    }

    async fn consume_agent_token(&self, token_sha256: &str, node: &str, peer_ip: &str, now: Seconds) -> DbResult<Option<NodeId>> {
        // One statement: two replicas cannot both consume it.
        let id = sqlx::query_scalar!(
            "UPDATE agent_tokens t SET used_at = $3 FROM nodes n \
             WHERE n.id = t.node_id AND t.token_sha256 = $1 AND n.name = $2 AND t.bound_ip = $4 AND t.used_at IS NULL AND t.expires_at > $3 \
             RETURNING t.node_id",
            token_sha256,
            node,
            now,
            peer_ip
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(id.map(NodeId))
    }

    async fn open_agent_session(&self, node: NodeId, session_sha256: &str, now: Seconds, expires_at: Seconds) -> DbResult<i64> {
        let mut tx = self.begin().await?;
        let generation = sqlx::query_scalar!(
            "UPDATE nodes SET agent_generation = agent_generation + 1 WHERE id = $1 RETURNING agent_generation",
            node.0
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query!("DELETE FROM agent_sessions WHERE node_id = $1", node.0).execute(&mut *tx).await.map_err(db)?;
        sqlx::query!(
            "INSERT INTO agent_sessions (token_sha256, node_id, generation, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            session_sha256,
            node.0,
            generation,
            now,
            expires_at
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(generation)
    }

    async fn agent_session(&self, session_sha256: &str, now: Seconds) -> DbResult<Option<AgentSessionRow>> {
        let row = sqlx::query!(
            "SELECT s.node_id, n.name, s.generation, n.agent_generation FROM agent_sessions s JOIN nodes n ON n.id = s.node_id \
             WHERE s.token_sha256 = $1 AND s.expires_at > $2",
            session_sha256,
            now
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(row.map(|r| AgentSessionRow {
            node: NodeId(r.node_id),
            name: r.name,
            generation: r.generation,
            current_generation: r.agent_generation,
        }))
    }

    async fn store_inventory(&self, node: NodeId, generation: i64, report: &str, now: Seconds) -> DbResult<bool> {
        let done = sqlx::query!(
            "INSERT INTO node_inventories (node_id, generation, reported_at, report) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (node_id) DO UPDATE SET generation = excluded.generation, reported_at = excluded.reported_at, \
             report = excluded.report WHERE excluded.generation >= node_inventories.generation",
            node.0,
            generation,
            now,
            report
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn node_inventory(&self, node: NodeId) -> DbResult<Option<InventoryRow>> {
        let row = sqlx::query!("SELECT generation, reported_at, report FROM node_inventories WHERE node_id = $1", node.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(row.map(|r| InventoryRow { generation: r.generation, reported_at: r.reported_at, report: r.report }))
    }

    async fn enqueue_agent_command(&self, node: NodeId, action: &str, actor: &str, now: Seconds) -> DbResult<AgentCommandRow> {
        let id = sqlx::query_scalar!(
            "INSERT INTO agent_commands (node_id, action, requested_by, state, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) RETURNING id",
            node.0,
            action,
            actor,
            AgentCommandState::Queued.as_str(),
            now
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        self.agent_command(id).await
    }

    async fn next_agent_command(&self, node: NodeId, generation: i64, now: Seconds) -> DbResult<Option<AgentCommandRow>> {
        let mut tx = self.begin().await?;
        // Only the node's newest agent takes commands; the node row is
        // locked so that a registration cannot slip in between.
        let current = sqlx::query_scalar!("SELECT agent_generation FROM nodes WHERE id = $1 FOR UPDATE", node.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if current != Some(generation) {
            return Ok(None);
        }
        let id = sqlx::query_scalar!(
            "SELECT id FROM agent_commands WHERE node_id = $1 AND (state = $2 OR (state = $3 AND generation <= $4)) \
             ORDER BY id LIMIT 1",
            node.0,
            AgentCommandState::Queued.as_str(),
            AgentCommandState::Sent.as_str(),
            generation
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(id) = id else { return Ok(None) };
        sqlx::query!(
            "UPDATE agent_commands SET state = $1, generation = $2, updated_at = $3 WHERE id = $4",
            handed_command()?.as_str(),
            generation,
            now,
            id
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        self.agent_command(id).await.map(Some)
    }

    async fn agent_command_progress(
        &self,
        id: i64,
        node: NodeId,
        generation: i64,
        done: i64,
        total: Option<i64>,
        now: Seconds,
    ) -> DbResult<bool> {
        let r = sqlx::query!(
            "UPDATE agent_commands SET done_bytes = $1, total_bytes = $2, updated_at = $3 \
             WHERE id = $4 AND node_id = $5 AND generation = $6 AND state = $7",
            done,
            total,
            now,
            id,
            node.0,
            generation,
            AgentCommandState::Sent.as_str()
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(r.rows_affected() == 1)
    }

    async fn finish_agent_command(&self, id: i64, node: NodeId, generation: i64, error: Option<&str>, now: Seconds) -> DbResult<bool> {
        let (from, to) = answered_command(error)?;
        let r = sqlx::query!(
            "UPDATE agent_commands SET state = $1, error = $2, updated_at = $3 \
             WHERE id = $4 AND node_id = $5 AND generation = $6 AND state = $7",
            to.as_str(),
            error,
            now,
            id,
            node.0,
            generation,
            from.as_str()
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(r.rows_affected() == 1)
    }

    async fn agent_commands(&self, node: NodeId) -> DbResult<Vec<AgentCommandRow>> {
        let rows = sqlx::query_as!(
            RawCommand,
            "SELECT id, node_id, action, requested_by, state, generation, done_bytes, total_bytes, error, created_at, updated_at \
             FROM agent_commands WHERE node_id = $1 ORDER BY id",
            node.0
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn insert_environment(
        &self,
        name: &str,
        version: i64,
        descriptor: &str,
        visibility: &str,
        owner: UserId,
        now: Seconds,
    ) -> DbResult<i64> {
        sqlx::query_scalar!(
            "INSERT INTO environments (name, version, descriptor, visibility, owner_id, created_at) VALUES ($1, $2, $3, $4, $5, $6) \
             RETURNING id",
            name,
            version,
            descriptor,
            visibility,
            owner.0,
            now
        )
        .fetch_one(&self.pool)
        .await
        .map_err(|e| {
            // Names are per owner: the clash is with one of the owner's own.
            if is_unique_violation(&e) {
                DbError::AlreadyExists { what: "environment", name: format!("{name} version {version}") }
            } else {
                db(e)
            }
        })
    }

    async fn list_environments(&self) -> DbResult<Vec<EnvironmentRow>> {
        let rows = sqlx::query!(
            r#"SELECT e.id, e.name, e.version, e.descriptor, e.visibility, e.owner_id, u.name AS owner_name, e.created_at,
                      u.role = 'admin' AS "owner_is_admin!"
               FROM environments e JOIN users u ON u.id = e.owner_id ORDER BY e.name, e.version DESC, e.id DESC"#
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let memberships = sqlx::query!(
            "SELECT m.user_id, p.name FROM project_members m JOIN projects p ON p.id = m.project_id \
             WHERE m.user_id IN (SELECT DISTINCT owner_id FROM environments)"
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut projects: std::collections::HashMap<i64, Vec<String>> = std::collections::HashMap::new();
        for m in memberships {
            projects.entry(m.user_id).or_default().push(m.name);
        }
        Ok(rows
            .into_iter()
            .map(|r| EnvironmentRow {
                id: r.id,
                owner_is_admin: r.owner_is_admin,
                owner_projects: projects.get(&r.owner_id).cloned().unwrap_or_default(),
                name: r.name,
                version: r.version,
                descriptor: r.descriptor,
                visibility: r.visibility,
                owner: UserId(r.owner_id),
                owner_name: r.owner_name,
                created_at: r.created_at,
            })
            .collect())
    }

    async fn insert_node(&self, node: &NodeWrite, event: &NewEvent) -> DbResult<NodeRow> {
        let mut tx = self.begin().await?;
        Self::insert_node_in(&mut tx, &self.key, node, event).await?;
        tx.commit().await.map_err(db)?;
        self.get_node(&node.name).await
    }

    async fn import_nodes(&self, nodes: &[NodeWrite], added: &NewEvent) -> DbResult<ImportOutcome> {
        let mut tx = self.begin().await?;
        let mut outcome = ImportOutcome::default();
        for node in nodes {
            let stored = sqlx::query!(
                r#"SELECT n.id, n.site, n.cluster, n.ip, n.reference_sha256, n.admin_properties,
                          ARRAY(SELECT mac FROM node_macs WHERE node_id = n.id ORDER BY position) AS "macs!"
                   FROM nodes n WHERE n.name = $1 FOR UPDATE"#,
                node.name
            )
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .map(|r| {
                Ok::<_, DbError>(ImportedNodeRow {
                    id: NodeId(r.id),
                    site: r.site,
                    cluster: r.cluster,
                    ip: r.ip,
                    reference_sha256: r.reference_sha256,
                    macs: r.macs,
                    admin_properties: json_map(&r.admin_properties, "node admin properties")?,
                })
            })
            .transpose()?;
            match (import_action(stored.as_ref().map(ImportedNodeRow::facts).as_ref(), &node.imported_facts()), stored) {
                (ImportAction::Add, _) | (_, None) => {
                    Self::insert_node_in(&mut tx, &self.key, node, added).await?;
                    outcome.added.push(node.name.clone());
                }
                (ImportAction::Unchanged, Some(_)) => outcome.unchanged.push(node.name.clone()),
                (ImportAction::Update, Some(stored)) => {
                    sqlx::query!(
                        "UPDATE nodes SET site = $1, cluster = $2, ip = $3, properties = $4, reference = $5, reference_sha256 = $6, \
                         updated_at = $7 WHERE id = $8",
                        node.site,
                        node.cluster,
                        node.ip,
                        to_json(&properties::effective(&node.properties, &stored.admin_properties)),
                        node.reference,
                        node.reference_sha256,
                        added.at,
                        stored.id.0
                    )
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                    sqlx::query!("DELETE FROM node_macs WHERE node_id = $1", stored.id.0).execute(&mut *tx).await.map_err(db)?;
                    Self::insert_macs(&mut tx, stored.id, &node.macs).await?;
                    outcome.changed.push(node.name.clone());
                }
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(outcome)
    }

    async fn list_nodes(&self) -> DbResult<Vec<NodeRow>> {
        let rows = sqlx::query_as!(
            RawNode,
            "SELECT id, name, site, cluster, ip, bmc_url, state, policy, properties, created_at, updated_at, lease_id, \
             power_state, power_observed_at, power_source, boot_target FROM nodes ORDER BY site, cluster, id"
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        self.nodes_with_macs(rows).await
    }

    async fn node_statuses(&self) -> DbResult<Vec<NodeStatus>> {
        let rows =
            sqlx::query!("SELECT id, name, state, policy, lease_id FROM nodes ORDER BY id").fetch_all(&self.pool).await.map_err(db)?;
        rows.into_iter()
            .map(|r| {
                Ok(NodeStatus {
                    id: NodeId(r.id),
                    name: r.name,
                    state: node_state(&r.state)?,
                    policy: node_policy(&r.policy)?,
                    lease: r.lease_id.map(LeaseId),
                })
            })
            .collect()
    }

    async fn get_node_by_id(&self, id: NodeId) -> DbResult<NodeRow> {
        let name = sqlx::query_scalar!("SELECT name FROM nodes WHERE id = $1", id.0).fetch_optional(&self.pool).await.map_err(db)?;
        self.get_node(&name.ok_or_else(|| DbError::NotFound { what: "node", name: id.to_string() })?).await
    }

    async fn get_node(&self, name: &str) -> DbResult<NodeRow> {
        let raw = sqlx::query_as!(
            RawNode,
            "SELECT id, name, site, cluster, ip, bmc_url, state, policy, properties, created_at, updated_at, lease_id, \
             power_state, power_observed_at, power_source, boot_target FROM nodes WHERE name = $1",
            name
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .ok_or_else(|| DbError::NotFound { what: "node", name: name.to_owned() })?;
        let mut node = raw.into_row()?;
        open_bmc(&self.key, &mut node)?;
        node.macs = sqlx::query_scalar!("SELECT mac FROM node_macs WHERE node_id = $1 ORDER BY position", node.id.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(node)
    }

    async fn node_reference(&self, id: NodeId) -> DbResult<Option<String>> {
        sqlx::query_scalar!("SELECT reference FROM nodes WHERE id = $1", id.0).fetch_one(&self.pool).await.map_err(db)
    }

    async fn set_node_policy(&self, id: NodeId, policy: NodePolicy, event: &NewEvent) -> DbResult<()> {
        let mut tx = self.begin().await?;
        sqlx::query!("UPDATE nodes SET policy = $1, updated_at = $2 WHERE id = $3", policy.as_str(), event.at, id.0)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        Self::insert_event(&mut tx, id, event).await?;
        tx.commit().await.map_err(db)
    }

    async fn transition_nodes(&self, transitions: &[NodeTransition]) -> DbResult<usize> {
        let mut tx = self.begin().await?;
        let mut applied = 0;
        for t in transitions {
            let needs_reset = needs_reset_after(t.from, t.to);
            let r = sqlx::query!(
                "UPDATE nodes SET state = $1, lease_id = $2, updated_at = $3, needs_reset = COALESCE($4, needs_reset) \
                 WHERE id = $5 AND state = $6",
                t.to.as_str(),
                t.lease.map(|l| l.0),
                t.event.at,
                needs_reset,
                t.node.0,
                t.from.as_str()
            )
            .execute(&mut *tx)
            .await
            .map_err(db)?;
            if r.rows_affected() == 1 {
                Self::insert_event(&mut tx, t.node, &t.event).await?;
                applied += 1;
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(applied)
    }

    async fn node_events(&self, id: NodeId) -> DbResult<Vec<NodeEventRow>> {
        let rows = sqlx::query!("SELECT at, actor, from_state, to_state, reason FROM node_events WHERE node_id = $1 ORDER BY id", id.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|r| NodeEventRow { at: r.at, actor: r.actor, from: r.from_state, to: r.to_state, reason: r.reason })
            .collect())
    }

    async fn count_nodes_by_state(&self) -> DbResult<Vec<(String, String, i64)>> {
        let rows = sqlx::query!(r#"SELECT state, policy, COUNT(*) AS "n!" FROM nodes GROUP BY state, policy"#)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows.into_iter().map(|r| (r.state, r.policy, r.n)).collect())
    }

    async fn generations(&self) -> DbResult<(i64, i64)> {
        let r =
            sqlx::query!("SELECT calendar_generation, nodes_generation FROM meta WHERE id = 1").fetch_one(&self.pool).await.map_err(db)?;
        Ok((r.calendar_generation, r.nodes_generation))
    }

    async fn calendar_generation(&self) -> DbResult<i64> {
        sqlx::query_scalar!("SELECT calendar_generation FROM meta WHERE id = 1").fetch_one(&self.pool).await.map_err(db)
    }

    async fn allocations_after(&self, after: Seconds) -> DbResult<(i64, Vec<AllocationRow>)> {
        // One snapshot for the rows and the generation.
        let mut tx = self.begin().await?;
        sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await.map_err(db)?;
        let generation = Self::generation_in(&mut tx).await?;
        let rows = sqlx::query_as!(
            RawAllocation,
            r#"SELECT ln.lease_id, ln.node_id, ln.start, ln."end", l.lease_type FROM lease_nodes ln JOIN leases l ON l.id = ln.lease_id
               WHERE ln."end" > $1"#,
            after
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok((generation, rows.into_iter().map(RawAllocation::into_row).collect::<DbResult<Vec<_>>>()?))
    }

    async fn insert_lease(&self, lease: &NewLease, preempt: &[Preemption], expected_generation: i64) -> DbResult<(LeaseRow, i64)> {
        let mut tx = self.begin().await?;
        Self::lock_calendar(&mut tx, Some(expected_generation)).await?;
        for p in preempt {
            Self::apply_lease_transition(&mut tx, p.lease, p.from, p.to, p.change, Some(&p.reason), lease.created_at).await?;
        }
        let id = sqlx::query_scalar!(
            r#"INSERT INTO leases (owner_id, project_id, lease_type, state, start, "end", exotic, filter, deploy, reason, created_at,
               updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $11) RETURNING id"#,
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
            lease.created_at
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        let nodes: Vec<i64> = lease.nodes.iter().map(|n| n.0).collect();
        // One statement for the whole allocation (positions from the order).
        sqlx::query!(
            r#"INSERT INTO lease_nodes (lease_id, node_id, position, start, "end")
               SELECT $1, node, pos - 1, $3, $4 FROM unnest($2::bigint[]) WITH ORDINALITY AS a(node, pos)"#,
            id,
            &nodes,
            lease.start,
            lease.end
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let generation = Self::generation_in(&mut tx).await?;
        let row = Self::lease_in(&mut tx, LeaseId(id)).await?;
        tx.commit().await.map_err(db)?;
        Ok((row, generation))
    }

    async fn get_lease(&self, id: LeaseId) -> DbResult<LeaseRow> {
        Self::lease_in(&mut *self.conn().await?, id).await
    }

    async fn list_leases(&self, owner: Option<UserId>, include_over: bool) -> DbResult<Vec<LeaseRow>> {
        let mut conn = self.conn().await?;
        let raw = sqlx::query_as!(
            RawLease,
            r#"SELECT l.id, l.owner_id, u.name AS owner, p.name AS "project?", l.lease_type, l.state, l.start, l."end", l.exotic,
                      l.filter, l.deploy, l.reason, l.created_at
               FROM leases l JOIN users u ON u.id = l.owner_id LEFT JOIN projects p ON p.id = l.project_id
               WHERE ($1::bigint IS NULL OR l.owner_id = $1)
                 AND ($2 OR l.state <> ALL($3)) ORDER BY l.id DESC"#,
            owner.map(|o| o.0),
            include_over,
            &names(lease::TERMINAL.map(LeaseState::as_str))
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        Self::with_nodes(&mut conn, raw).await
    }

    async fn set_lease_end(
        &self,
        id: LeaseId,
        end: Seconds,
        preempt: &[Preemption],
        expected_generation: i64,
        now: Seconds,
    ) -> DbResult<i64> {
        let mut tx = self.begin().await?;
        Self::lock_calendar(&mut tx, Some(expected_generation)).await?;
        for p in preempt {
            Self::apply_lease_transition(&mut tx, p.lease, p.from, p.to, p.change, Some(&p.reason), now).await?;
        }
        sqlx::query!(r#"UPDATE lease_nodes SET "end" = $1 WHERE lease_id = $2"#, end, id.0).execute(&mut *tx).await.map_err(db)?;
        sqlx::query!(r#"UPDATE leases SET "end" = $1, updated_at = $2 WHERE id = $3"#, end, now, id.0)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let generation = Self::generation_in(&mut tx).await?;
        tx.commit().await.map_err(db)?;
        Ok(generation)
    }

    async fn transition_lease(
        &self,
        id: LeaseId,
        from: LeaseState,
        to: LeaseState,
        change: AllocationChange,
        reason: Option<&str>,
        expected_generation: i64,
        now: Seconds,
    ) -> DbResult<i64> {
        let mut tx = self.begin().await?;
        // Every transition may write usage records or cut allocations: the
        // calendar lock orders it with the other calendar writers.
        Self::lock_calendar(&mut tx, (change != AllocationChange::Keep).then_some(expected_generation)).await?;
        Self::apply_lease_transition(&mut tx, id, from, to, change, reason, now).await?;
        let generation = Self::generation_in(&mut tx).await?;
        tx.commit().await.map_err(db)?;
        Ok(generation)
    }

    async fn leases_needing_action(&self, now: Seconds) -> DbResult<Vec<LeaseRow>> {
        let mut conn = self.conn().await?;
        let raw = sqlx::query_as!(
            RawLease,
            r#"SELECT l.id, l.owner_id, u.name AS owner, p.name AS "project?", l.lease_type, l.state, l.start, l."end", l.exotic,
                      l.filter, l.deploy, l.reason, l.created_at
               FROM leases l JOIN users u ON u.id = l.owner_id LEFT JOIN projects p ON p.id = l.project_id
               WHERE (l.state = ANY($2) AND l.start <= $1) OR l.state = ANY($3)
                  OR (l.state = $4 AND l."end" <= $1) ORDER BY l.start, l.id"#,
            now,
            &names(lease::WAITING.map(LeaseState::as_str)),
            &names(lease::MOVING.map(LeaseState::as_str)),
            LeaseState::Active.as_str()
        )
        .fetch_all(&mut *conn)
        .await
        .map_err(db)?;
        Self::with_nodes(&mut conn, raw).await
    }

    async fn held_nodes(&self, now: Seconds) -> DbResult<Vec<(NodeId, LeaseId)>> {
        let rows = sqlx::query!(
            r#"SELECT ln.node_id, ln.lease_id FROM lease_nodes ln JOIN leases l ON l.id = ln.lease_id
               WHERE l.state = ANY($2) AND ln.start <= $1 AND ln."end" > $1"#,
            now,
            &names(lease::RUNNING.map(LeaseState::as_str))
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.into_iter().map(|r| (NodeId(r.node_id), LeaseId(r.lease_id))).collect())
    }

    async fn next_lease_event(&self, now: Seconds) -> DbResult<Option<Seconds>> {
        sqlx::query_scalar!(
            r#"SELECT MIN(t) FROM (
                 SELECT MIN(start) AS t FROM leases WHERE state = ANY($2) AND start > $1
                 UNION ALL
                 SELECT MIN("end") AS t FROM leases WHERE state = ANY($3) AND "end" > $1) AS events"#,
            now,
            &names(lease::WAITING.map(LeaseState::as_str)),
            &names(lease::RUNNING.map(LeaseState::as_str))
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }

    async fn besteffort_overlapping(&self, nodes: &[NodeId], start: Seconds, end: Seconds) -> DbResult<Vec<AllocationRow>> {
        let ids: Vec<i64> = nodes.iter().map(|n| n.0).collect();
        let rows = sqlx::query_as!(
            RawAllocation,
            r#"SELECT ln.lease_id, ln.node_id, ln.start, ln."end", l.lease_type FROM lease_nodes ln JOIN leases l ON l.id = ln.lease_id
               WHERE l.lease_type = 'besteffort' AND ln.node_id = ANY($1) AND ln."end" > $2 AND ln.start < $3"#,
            &ids,
            start,
            end
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter().map(RawAllocation::into_row).collect()
    }

    async fn busy_between(&self, from: Seconds, to: Seconds) -> DbResult<Vec<BusyRow>> {
        let rows = sqlx::query!(
            r#"SELECT ln.node_id, ln.lease_id, l.owner_id, u.name AS owner, l.lease_type, l.state, ln.start, ln."end"
               FROM lease_nodes ln JOIN leases l ON l.id = ln.lease_id JOIN users u ON u.id = l.owner_id
               WHERE ln."end" > $1 AND ln.start < $2 ORDER BY ln.node_id, ln.start"#,
            from,
            to
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|r| {
                Ok(BusyRow {
                    node: NodeId(r.node_id),
                    lease: LeaseId(r.lease_id),
                    owner_id: UserId(r.owner_id),
                    owner: r.owner,
                    lease_type: lease_type(&r.lease_type)?,
                    state: lease_state(&r.state)?,
                    start: r.start,
                    end: r.end,
                })
            })
            .collect()
    }

    async fn count_leases_by_state(&self) -> DbResult<Vec<(String, i64)>> {
        let rows = sqlx::query!(r#"SELECT state, COUNT(*) AS "n!" FROM leases GROUP BY state"#).fetch_all(&self.pool).await.map_err(db)?;
        Ok(rows.into_iter().map(|r| (r.state, r.n)).collect())
    }

    async fn insert_deployment(&self, d: &NewDeployment, operations: &[NewOperation]) -> DbResult<i64> {
        let mut tx = self.begin().await?;
        let id = sqlx::query_scalar!(
            "INSERT INTO deployments (lease_id, environment, environment_version, spec, requested_by, created_at, \
             environment_id, environment_owner, image_sha256, error) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING id",
            d.lease.0,
            d.environment,
            d.version,
            d.spec,
            d.requested_by,
            d.created_at,
            d.environment_id,
            d.environment_owner,
            d.image_sha256,
            d.error
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        for op in operations {
            insert_operation_in(&mut tx, op, Some(id)).await?;
        }
        tx.commit().await.map_err(db)?;
        Ok(id)
    }

    async fn deployment(&self, id: i64) -> DbResult<(DeploymentRow, Vec<OperationRow>)> {
        let row = sqlx::query_as!(
            RawDeployment,
            "SELECT id, lease_id, environment, environment_version, spec, requested_by, created_at, \
             environment_id, environment_owner, image_sha256, error FROM deployments WHERE id = $1",
            id
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .ok_or_else(|| DbError::NotFound { what: "deployment", name: id.to_string() })?;
        Ok((row.into(), self.operations_of_deployment(id).await?))
    }

    async fn lease_deployments(&self, lease: LeaseId) -> DbResult<Vec<DeploymentRow>> {
        let rows = sqlx::query_as!(
            RawDeployment,
            "SELECT id, lease_id, environment, environment_version, spec, requested_by, created_at, \
             environment_id, environment_owner, image_sha256, error FROM deployments \
             WHERE lease_id = $1 ORDER BY id",
            lease.0
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn deployment_spec(&self, id: i64) -> DbResult<String> {
        sqlx::query_scalar!("SELECT spec FROM deployments WHERE id = $1", id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| DbError::NotFound { what: "deployment", name: id.to_string() })
    }

    async fn deploy_leases_without_deployment(&self) -> DbResult<Vec<LeaseId>> {
        let ids = sqlx::query_scalar!(
            "SELECT l.id FROM leases l WHERE l.state = $1 AND l.deploy IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM deployments d WHERE d.lease_id = l.id) ORDER BY l.id",
            LeaseState::Active.as_str()
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(ids.into_iter().map(LeaseId).collect())
    }

    async fn insert_operation(&self, operation: &NewOperation) -> DbResult<i64> {
        let mut conn = self.conn().await?;
        insert_operation_in(&mut conn, operation, None).await
    }

    async fn running_operations(&self) -> DbResult<Vec<OperationRow>> {
        let rows = sqlx::query_as!(
            RawOperation,
            r#"SELECT o.id, o.node_id, n.name AS node_name, o.kind, o.deployment_id, o.lease_id, o.state, o.phase, o.attempt,
                      o.phase_started_ms, o.deadline_ms, o.data, o.history, o.message, o.outcome, o.controller_ms, o.created_ms,
                      o.finished_ms, o.version
               FROM node_operations o JOIN nodes n ON n.id = o.node_id WHERE o.state = $1 ORDER BY o.id"#,
            OperationState::Running.as_str()
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn operation(&self, id: i64) -> DbResult<OperationRow> {
        let row = sqlx::query_as!(
            RawOperation,
            r#"SELECT o.id, o.node_id, n.name AS node_name, o.kind, o.deployment_id, o.lease_id, o.state, o.phase, o.attempt,
                      o.phase_started_ms, o.deadline_ms, o.data, o.history, o.message, o.outcome, o.controller_ms, o.created_ms,
                      o.finished_ms, o.version
               FROM node_operations o JOIN nodes n ON n.id = o.node_id WHERE o.id = $1"#,
            id
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .ok_or_else(|| DbError::NotFound { what: "node operation", name: id.to_string() })?;
        row.try_into()
    }

    async fn latest_operation(&self, node: NodeId, kind: OperationKind) -> DbResult<Option<OperationRow>> {
        let row = sqlx::query_as!(
            RawOperation,
            r#"SELECT o.id, o.node_id, n.name AS node_name, o.kind, o.deployment_id, o.lease_id, o.state, o.phase, o.attempt,
                      o.phase_started_ms, o.deadline_ms, o.data, o.history, o.message, o.outcome, o.controller_ms, o.created_ms,
                      o.finished_ms, o.version
               FROM node_operations o JOIN nodes n ON n.id = o.node_id WHERE o.node_id = $1 AND o.kind = $2
               ORDER BY o.id DESC LIMIT 1"#,
            node.0,
            kind.as_str()
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn update_operation(&self, r: &OperationRow) -> DbResult<bool> {
        let done = sqlx::query!(
            "UPDATE node_operations SET state = $1, phase = $2, attempt = $3, phase_started_ms = $4, deadline_ms = $5, data = $6, \
             history = $7, message = $8, outcome = $9, controller_ms = $10, finished_ms = $11, version = version + 1 \
             WHERE id = $12 AND state = $13 AND version = $14",
            r.state.as_str(),
            r.phase.as_str(),
            r.attempt,
            r.phase_started_ms,
            r.deadline_ms,
            r.data,
            r.history,
            r.message,
            r.outcome.map(ResetOutcome::as_str),
            r.controller_ms,
            r.finished_ms,
            r.id,
            OperationState::Running.as_str(),
            r.version
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn cancel_agent_commands(&self, node: NodeId, reason: &str, now: Seconds) -> DbResult<u64> {
        let done = sqlx::query!(
            "UPDATE agent_commands SET state = $1, error = $2, updated_at = $3 WHERE node_id = $4 AND state = ANY($5)",
            cancelled_command()?.as_str(),
            reason,
            now,
            node.0,
            &names(AgentCommandState::UNFINISHED.map(AgentCommandState::as_str))
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn agent_command_row(&self, id: i64) -> DbResult<AgentCommandRow> {
        self.agent_command(id).await
    }

    async fn agent_generation(&self, node: NodeId) -> DbResult<i64> {
        sqlx::query_scalar!("SELECT agent_generation FROM nodes WHERE id = $1", node.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| DbError::NotFound { what: "node", name: node.0.to_string() })
    }

    async fn needs_reset(&self, node: NodeId) -> DbResult<bool> {
        let dirty =
            sqlx::query_scalar!("SELECT needs_reset FROM nodes WHERE id = $1", node.0).fetch_optional(&self.pool).await.map_err(db)?;
        Ok(dirty.unwrap_or(false))
    }

    async fn set_ssh_host_key(&self, node: NodeId, key: Option<&str>) -> DbResult<()> {
        sqlx::query!("UPDATE nodes SET ssh_host_key = $1 WHERE id = $2", key, node.0).execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    async fn ssh_host_key(&self, node: NodeId) -> DbResult<Option<String>> {
        let key =
            sqlx::query_scalar!("SELECT ssh_host_key FROM nodes WHERE id = $1", node.0).fetch_optional(&self.pool).await.map_err(db)?;
        Ok(key.flatten())
    }

    async fn insert_account_request(&self, request: &NewAccountRequest) -> DbResult<AccountRequestRow> {
        accounts::insert_request(&self.pool, request).await
    }

    async fn count_pending_account_requests(&self) -> DbResult<i64> {
        sqlx::query_scalar!(r#"SELECT COUNT(*) AS "n!" FROM account_requests WHERE state = 'pending'"#)
            .fetch_one(&self.pool)
            .await
            .map_err(db)
    }

    async fn account_requests(&self, state: Option<&str>) -> DbResult<Vec<AccountRequestRow>> {
        accounts::requests(&self.pool, state).await
    }

    async fn account_request(&self, id: i64) -> DbResult<AccountRequestRow> {
        accounts::request(&self.pool, id).await
    }

    async fn approve_account_request(&self, id: i64, approval: &Approval) -> DbResult<(AccountRequestRow, UserRow)> {
        let mut tx = self.begin().await?;
        accounts::approve_in(&mut tx, id, approval).await?;
        tx.commit().await.map_err(db)?;
        let request = accounts::request(&self.pool, id).await?;
        let user = self.get_user(&request.name).await?;
        Ok((request, user))
    }

    async fn reject_account_request(&self, id: i64, decided_by: &str, reason: &str, at: Seconds) -> DbResult<AccountRequestRow> {
        let mut tx = self.begin().await?;
        accounts::decide_in(&mut tx, id, "rejected", decided_by, Some(reason), at).await?;
        tx.commit().await.map_err(db)?;
        accounts::request(&self.pool, id).await
    }

    async fn update_project(&self, name: &str, change: &ProjectChange) -> DbResult<ProjectRow> {
        let mut tx = self.begin().await?;
        accounts::update_project_in(&mut tx, name, change).await?;
        tx.commit().await.map_err(db)?;
        self.project_by_name(name).await
    }

    async fn set_project_member(&self, project: &str, user: &str, member: bool) -> DbResult<ProjectRow> {
        let mut tx = self.begin().await?;
        accounts::set_member_in(&mut tx, project, user, member).await?;
        tx.commit().await.map_err(db)?;
        self.project_by_name(project).await
    }

    async fn insert_audit(&self, at: Seconds, actor: &str, action: &str, target: &str, detail: &str) -> DbResult<()> {
        sqlx::query!(
            "INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
            at,
            actor,
            action,
            target,
            detail
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn audit_log(&self, f: &AuditFilter) -> DbResult<Vec<AuditRow>> {
        let rows = sqlx::query!(
            "SELECT id, at, actor, action, target, detail FROM audit_log \
             WHERE ($1::bigint IS NULL OR at >= $1) AND ($2::bigint IS NULL OR at < $2) AND ($3::text IS NULL OR actor = $3) \
               AND ($4::text IS NULL OR action = $4) AND ($5::text IS NULL OR target = $5) AND ($6::bigint IS NULL OR id < $6) \
             ORDER BY id DESC LIMIT $7",
            f.from,
            f.to,
            f.actor,
            f.action,
            f.target,
            f.before_id,
            f.limit
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|r| AuditRow { id: r.id, at: r.at, actor: r.actor, action: r.action, target: r.target, detail: r.detail })
            .collect())
    }

    async fn insert_usage_records(&self, records: &[UsageRecordRow]) -> DbResult<()> {
        let mut tx = self.begin().await?;
        usage::insert_records(&mut tx, records).await?;
        tx.commit().await.map_err(db)
    }

    async fn usage_rollup_sums(
        &self,
        dimension: crate::model::usage::Dimension,
        months: (Seconds, Seconds),
        projects: Option<&[String]>,
    ) -> DbResult<Vec<crate::model::usage::Total>> {
        usage::rollup_sums(&self.pool, dimension, months, projects).await
    }

    async fn usage_record_sums(
        &self,
        dimension: crate::model::usage::Dimension,
        stretch: (Seconds, Seconds),
        projects: Option<&[String]>,
    ) -> DbResult<Vec<crate::model::usage::Total>> {
        usage::record_sums(&self.pool, dimension, stretch, projects).await
    }

    async fn running_holdings(&self) -> DbResult<Vec<HoldingRow>> {
        usage::running_holdings(&self.pool).await
    }

    async fn usage_records(&self, scope: &UsageScope, after_id: i64, limit: i64) -> DbResult<Vec<UsageRecordRow>> {
        usage::records(&self.pool, scope, after_id, limit).await
    }

    async fn project_booked_seconds(&self, project: ProjectId, from: Seconds, to: Seconds, except: Option<LeaseId>) -> DbResult<i64> {
        sqlx::query_scalar!(
            r#"SELECT COALESCE(SUM(LEAST(ln."end", $3) - GREATEST(ln.start, $2)), 0)::bigint AS "seconds!"
               FROM lease_nodes ln JOIN leases l ON l.id = ln.lease_id
               WHERE l.project_id = $1 AND l.lease_type <> 'besteffort' AND ln."end" > $2 AND ln.start < $3
                 AND l.id <> COALESCE($4::bigint, -1)"#,
            project.0,
            from,
            to,
            except.map(|l| l.0)
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }

    async fn enqueue_power(&self, node: NodeId, operation: PowerOperation, actor: &str, now: Seconds) -> DbResult<i64> {
        sqlx::query_scalar!(
            "INSERT INTO power_requests (node_id, operation, requested_by, requested_at, state) VALUES ($1, $2, $3, $4, $5) \
             RETURNING id",
            node.0,
            operation.as_str(),
            actor,
            now,
            PowerRequestState::Queued.as_str()
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }

    async fn power_request(&self, id: i64) -> DbResult<PowerRequestRow> {
        let row = sqlx::query_as!(
            RawPower,
            r#"SELECT p.id, p.node_id, n.name AS node_name, p.operation, p.requested_by, p.requested_at, p.state, p.finished_at, p.error
               FROM power_requests p JOIN nodes n ON n.id = p.node_id WHERE p.id = $1"#,
            id
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .ok_or_else(|| DbError::NotFound { what: "power request", name: id.to_string() })?;
        row.try_into()
    }

    async fn pending_power_requests(&self) -> DbResult<Vec<PowerRequestRow>> {
        let rows = sqlx::query_as!(
            RawPower,
            r#"SELECT p.id, p.node_id, n.name AS node_name, p.operation, p.requested_by, p.requested_at, p.state, p.finished_at, p.error
               FROM power_requests p JOIN nodes n ON n.id = p.node_id WHERE p.state = ANY($1) ORDER BY p.id"#,
            &names(PowerRequestState::PENDING.map(PowerRequestState::as_str))
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn set_power_request_running(&self, id: i64) -> DbResult<()> {
        sqlx::query!("UPDATE power_requests SET state = $1 WHERE id = $2", started_power()?.as_str(), id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn finish_power_request(&self, id: i64, error: Option<&str>, now: Seconds) -> DbResult<()> {
        sqlx::query!(
            "UPDATE power_requests SET state = $1, error = $2, finished_at = $3 WHERE id = $4",
            finished_power(error)?.as_str(),
            error,
            now,
            id
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn cancel_power_request(&self, id: i64, reason: &str, now: Seconds) -> DbResult<bool> {
        let (from, to) = dropped_power()?;
        let done = sqlx::query!(
            "UPDATE power_requests SET state = $1, error = $2, finished_at = $3 WHERE id = $4 AND state = $5",
            to.as_str(),
            reason,
            now,
            id,
            from.as_str()
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn cancel_queued_power(&self, node: NodeId, reason: &str, now: Seconds) -> DbResult<u64> {
        let (from, to) = dropped_power()?;
        let done = sqlx::query!(
            "UPDATE power_requests SET state = $1, error = $2, finished_at = $3 WHERE node_id = $4 AND state = $5",
            to.as_str(),
            reason,
            now,
            node.0,
            from.as_str()
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn record_power(&self, node: NodeId, state: &str, source: &str, now: Seconds) -> DbResult<()> {
        sqlx::query!(
            "UPDATE nodes SET power_state = $1, power_source = $2, power_observed_at = $3 WHERE id = $4",
            state,
            source,
            now,
            node.0
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }
}
