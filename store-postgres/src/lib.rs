//! The PostgreSQL datastore: the backend of a production service, with
//! several `ferrumd` replicas on one database.
//!
//! Every query is checked at build time against the schema of this crate's
//! `migrations/` (`sqlx::query!` and friends; the offline data lives in
//! `store-postgres/.sqlx`, refreshed by `scripts/sqlx-prepare.sh`). The
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

use ferrum_model::import::{ImportAction, import_action};
use ferrum_model::{
    AccountRequestInput, AccountRequestState, AgentCommandState, BootTarget, LeaseId, LeaseState, NodeId, NodePolicy, OperationKind,
    OperationState, PowerOperation, PowerRequestState, ProjectId, ResetOutcome, Seconds, UserId, lease, properties, tokens,
};
use ferrum_store::*;

/// [`select_leases!`] with PostgreSQL's aggregate of each lease's nodes.
macro_rules! leases_where {
    ($rest:literal $(, $arg:expr)* $(,)?) => {
        select_leases!(
            "(SELECT COALESCE(json_agg(json_build_array(ln.node_id, n.name) ORDER BY ln.position), '[]')::text
              FROM lease_nodes ln JOIN nodes n ON n.id = ln.node_id WHERE ln.lease_id = l.id)",
            $rest $(, $arg)*
        )
    };
}

mod accounts;
mod agents;
mod environments;
mod leases;
mod nodes;
mod notifications;
mod operations;
mod power;
mod privacy;
mod replicas;
mod usage;
mod web;

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
    sqlx_error(e)
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
    for row in rows.into_iter().filter(|r| !ferrum_store::secrets::is_sealed(&r.bmc_url)) {
        let value = seal_bmc(key, &row.name, &Secret(row.bmc_url))?;
        sqlx::query!("UPDATE nodes SET bmc_url = $1 WHERE id = $2", value, row.id).execute(&mut *tx).await.map_err(db)?;
        sealed += 1;
    }
    tx.commit().await.map_err(db)?;
    Ok(sealed)
}

/// See `db::recorded_key_fingerprint` (the controller's): no migrations run.
pub async fn recorded_key_fingerprint(url: &str) -> DbResult<Option<String>> {
    let options: PgConnectOptions = url.parse().map_err(DbError::Sqlx)?;
    let mut conn = sqlx::ConnectOptions::connect(&options).await.map_err(DbError::Sqlx)?;
    // A database of an older ferrumd may not have the column yet.
    let has_column = sqlx::query_scalar!(
        r#"SELECT EXISTS (SELECT 1 FROM information_schema.columns
                          WHERE table_schema = current_schema() AND table_name = 'meta' AND column_name = 'key_fingerprint') AS "has!""#
    )
    .fetch_one(&mut conn)
    .await
    .map_err(db)?;
    if !has_column {
        return Ok(None);
    }
    sqlx::query_scalar!("SELECT key_fingerprint FROM meta WHERE id = 1").fetch_optional(&mut conn).await.map_err(db).map(Option::flatten)
}

// --- raw rows, as the checked queries return them --------------------------

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
    pub async fn migrated_pool(options: &PgConnectOptions) -> DbResult<PgPool> {
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(Duration::from_secs(30))
            .connect_with(options.clone())
            .await
            .map_err(DbError::Sqlx)?;
        sqlx::migrate!("./migrations").run(&pool).await.map_err(DbError::Migrate)?;
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

    async fn lease_in(conn: &mut PgConnection, id: LeaseId) -> DbResult<LeaseRow> {
        leases_where!(r#"WHERE l.id = $1"#, id.0)
            .fetch_optional(&mut *conn)
            .await
            .map_err(db)?
            .ok_or_else(|| DbError::NotFound { what: "lease", name: id.to_string() })
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

    /// A user from a [`RawUser`], with their projects.
    async fn user_from_raw(&self, r: RawUser) -> DbResult<UserRow> {
        let projects = self.user_projects(r.id).await?.into_iter().map(|(_, n)| n).collect();
        Ok(r.into_row(projects))
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
        let rows =
            select_operations!(r#"WHERE o.deployment_id = $1 ORDER BY n.name"#, deployment).fetch_all(&self.pool).await.map_err(db)?;
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
