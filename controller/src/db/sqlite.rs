//! The SQLite datastore (the default, embedded backend).
//!
//! Writers that read then write (`insert_lease`, extensions, imports) run in
//! `BEGIN IMMEDIATE` transactions, so SQLite serialises them; the overlap
//! triggers of the schema refuse double booking even if application code
//! were wrong. Queries are runtime-checked (`sqlx::query`); the schema comes
//! only from `migrations/sqlite`.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous};
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use super::*;
use crate::model::import::{ImportAction, import_action};
use crate::model::{OperationKind, OperationState, PowerOperation, PowerRequestState, lease, properties, tokens};
use names::name_set;

mod accounts;
mod commits;
mod names;
mod usage;

/// The embedded SQLite store.
#[derive(Clone, Debug)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// Seals and opens the BMC credentials.
    key: std::sync::Arc<SecretKey>,
    /// Stops the checkpoint task when the last clone of the store goes.
    _checkpoints: std::sync::Arc<StopOnDrop>,
}

#[derive(Debug)]
struct StopOnDrop(tokio::sync::watch::Sender<bool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

const BEGIN_WRITE: &str = "BEGIN IMMEDIATE";

fn db(e: sqlx::Error) -> DbError {
    if e.as_database_error().is_some_and(|d| d.message().contains("ferrum: double booking")) {
        return DbError::DoubleBooked;
    }
    DbError::Sqlx(e)
}

fn is_unique_violation(e: &sqlx::Error) -> bool {
    e.as_database_error().is_some_and(|d| d.is_unique_violation())
}

/// The database file of `options`, `None` in memory.
fn file_of(options: &SqliteConnectOptions) -> Option<std::path::PathBuf> {
    let path = options.get_filename();
    (!path.as_os_str().is_empty() && path != std::path::Path::new(":memory:")).then(|| path.to_owned())
}

/// The database file a `sqlite://` URL names (`None` in memory, or not an
/// SQLite URL).
pub fn file_of_url(url: &str) -> Option<std::path::PathBuf> {
    // sqlx would take any other URL for a file name.
    if !url.starts_with("sqlite:") {
        return None;
    }
    file_of(&SqliteConnectOptions::from_str(url).ok()?)
}

/// Creates an empty file at `path`, mode 0600, unless one exists.
fn create_private_file(path: &std::path::Path) {
    use std::os::unix::fs::OpenOptionsExt;
    // An existing file is kept as it is; any other failure (a missing
    // directory) is SQLite's to report when it opens the path.
    let _ = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path);
}

/// Records `key`'s fingerprint in a database that has none, refuses one
/// sealed with another key, and seals plaintext BMC URLs (left by a
/// ferrumd older than encryption at rest); returns how many it sealed.
async fn adopt_key(pool: &SqlitePool, key: &SecretKey) -> DbResult<usize> {
    let mut tx = pool.begin_with(BEGIN_WRITE).await.map_err(db)?;
    let stored: Option<String> =
        sqlx::query_scalar("SELECT key_fingerprint FROM meta WHERE id = 1").fetch_one(&mut *tx).await.map_err(db)?;
    check_fingerprint(stored.as_deref(), key)?;
    if stored.is_none() {
        sqlx::query("UPDATE meta SET key_fingerprint = ? WHERE id = 1").bind(key.fingerprint()).execute(&mut *tx).await.map_err(db)?;
    }
    let rows: Vec<(i64, String, String)> =
        sqlx::query_as("SELECT id, name, bmc_url FROM nodes WHERE bmc_url IS NOT NULL").fetch_all(&mut *tx).await.map_err(db)?;
    let mut sealed = 0;
    for (id, name, url) in rows.into_iter().filter(|(_, _, url)| !crate::secrets::is_sealed(url)) {
        let value = seal_bmc(key, &name, &Secret(url))?;
        sqlx::query("UPDATE nodes SET bmc_url = ? WHERE id = ?").bind(value).bind(id).execute(&mut *tx).await.map_err(db)?;
        sealed += 1;
    }
    tx.commit().await.map_err(db)?;
    Ok(sealed)
}

/// See [`super::recorded_key_fingerprint`]: read-only, no migrations.
pub(crate) async fn recorded_key_fingerprint(url: &str) -> DbResult<Option<String>> {
    let options = SqliteConnectOptions::from_str(url).map_err(DbError::Sqlx)?.read_only(true);
    let mut conn = sqlx::ConnectOptions::connect(&options).await.map_err(DbError::Sqlx)?;
    let has_column: bool = sqlx::query_scalar("SELECT COUNT(*) > 0 FROM pragma_table_info('meta') WHERE name = 'key_fingerprint'")
        .fetch_one(&mut conn)
        .await
        .map_err(db)?;
    if !has_column {
        return Ok(None);
    }
    sqlx::query_scalar("SELECT key_fingerprint FROM meta WHERE id = 1").fetch_optional(&mut conn).await.map_err(db).map(Option::flatten)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://PATH` or
    /// `sqlite::memory:`), runs the migrations and adopts `key` (see
    /// [`super::open`]).
    pub async fn open(url: &str, key: SecretKey) -> DbResult<Self> {
        let pool = Self::migrated_pool(url).await?;
        let sealed = adopt_key(&pool, &key).await?;
        if sealed > 0 {
            // The plaintext is gone from the rows; rewrite the file and
            // empty the WAL so no old page keeps it either.
            sqlx::query("VACUUM").execute(&pool).await.map_err(db)?;
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await.map_err(db)?;
            tracing::info!(nodes = sealed, "encrypted the BMC credentials an older ferrumd stored in clear");
        }
        let (stop, stopped) = tokio::sync::watch::channel(false);
        tokio::spawn(checkpoint_loop(pool.clone(), stopped));
        Ok(SqliteStore { pool, key: std::sync::Arc::new(key), _checkpoints: std::sync::Arc::new(StopOnDrop(stop)) })
    }

    /// A pool on the database at `url`, created if missing (mode 0600: it
    /// holds token hashes and sealed credentials; SQLite gives its `-wal`
    /// and `-shm` files the same mode), with the migrations run; no key
    /// adopted (`copy` moves sealed values as they are).
    pub(crate) async fn migrated_pool(url: &str) -> DbResult<SqlitePool> {
        let options = SqliteConnectOptions::from_str(url).map_err(DbError::Sqlx)?;
        if let Some(path) = file_of(&options) {
            create_private_file(&path);
        }
        let options = options
            .create_if_missing(true)
            // Deleted and overwritten content is zeroed, not left in free
            // pages (old token hashes, replaced credentials).
            .pragma("secure_delete", "on")
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30))
            // Checkpoints run in a background task (see `checkpoint_loop`),
            // not inside whichever request's commit crosses the threshold:
            // an inline checkpoint of a large database cost commits 50-130 ms.
            .pragma("wal_autocheckpoint", "0");
        let pool = SqlitePoolOptions::new()
            .max_connections(8)
            .after_connect(|conn, _| Box::pin(commits::register(conn)))
            .connect_with(options)
            .await
            .map_err(DbError::Sqlx)?;
        sqlx::migrate!("./migrations/sqlite").run(&pool).await.map_err(DbError::Migrate)?;
        Ok(pool)
    }

    /// The connection pool (for `copy`, which reads every table).
    pub fn pool(&self) -> &SqlitePool {
        &self.pool
    }

    async fn begin_write(&self) -> DbResult<Transaction<'static, Sqlite>> {
        self.pool.begin_with(BEGIN_WRITE).await.map_err(db)
    }

    async fn check_generation(tx: &mut Transaction<'static, Sqlite>, expected: i64) -> DbResult<()> {
        let generation: i64 =
            sqlx::query_scalar("SELECT calendar_generation FROM meta WHERE id = 1").fetch_one(&mut **tx).await.map_err(db)?;
        if generation == expected { Ok(()) } else { Err(DbError::StaleCalendar) }
    }

    async fn generation_in(tx: &mut Transaction<'static, Sqlite>) -> DbResult<i64> {
        sqlx::query_scalar("SELECT calendar_generation FROM meta WHERE id = 1").fetch_one(&mut **tx).await.map_err(db)
    }

    async fn insert_event(tx: &mut Transaction<'static, Sqlite>, node: NodeId, e: &NewEvent) -> DbResult<()> {
        sqlx::query("INSERT INTO node_events (node_id, at, actor, from_state, to_state, reason) VALUES (?, ?, ?, ?, ?, ?)")
            .bind(node.0)
            .bind(e.at)
            .bind(&e.actor)
            .bind(&e.from_shown)
            .bind(&e.to_shown)
            .bind(&e.reason)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        Ok(())
    }

    /// Inserts a new node (state `enrolling`, in service), its MACs and its
    /// first event.
    async fn insert_node_in(
        tx: &mut Transaction<'static, Sqlite>,
        key: &SecretKey,
        node: &NodeWrite,
        event: &NewEvent,
    ) -> DbResult<NodeId> {
        let bmc_url = node.bmc_url.as_ref().map(|url| seal_bmc(key, &node.name, url)).transpose()?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO nodes (name, site, cluster, ip, bmc_url, state, policy, properties, admin_properties, reference, reference_sha256, created_at, updated_at) \
             VALUES (?, ?, ?, ?, ?, 'enrolling', 'in_service', ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&node.name)
        .bind(&node.site)
        .bind(&node.cluster)
        .bind(&node.ip)
        .bind(bmc_url)
        .bind(to_json(&properties::effective(&node.properties, &node.admin_properties)))
        .bind(to_json(&node.admin_properties))
        .bind(&node.reference)
        .bind(&node.reference_sha256)
        .bind(event.at)
        .bind(event.at)
        .fetch_one(&mut **tx)
        .await
        .map_err(|e| if is_unique_violation(&e) { DbError::AlreadyExists { what: "node", name: node.name.clone() } } else { db(e) })?;
        Self::insert_macs(tx, NodeId(id), &node.macs).await?;
        Self::insert_event(tx, NodeId(id), event).await?;
        Ok(NodeId(id))
    }

    async fn insert_macs(tx: &mut Transaction<'static, Sqlite>, node: NodeId, macs: &[String]) -> DbResult<()> {
        for (position, mac) in macs.iter().enumerate() {
            sqlx::query("INSERT INTO node_macs (mac, node_id, position) VALUES (?, ?, ?)")
                .bind(mac)
                .bind(node.0)
                .bind(i64::try_from(position).unwrap_or(i64::MAX))
                .execute(&mut **tx)
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
        tx: &mut Transaction<'static, Sqlite>,
        id: LeaseId,
        from: LeaseState,
        to: LeaseState,
        change: AllocationChange,
        reason: Option<&str>,
        now: Seconds,
    ) -> DbResult<()> {
        let updated = sqlx::query("UPDATE leases SET state = ?, reason = COALESCE(?, reason), updated_at = ? WHERE id = ? AND state = ?")
            .bind(to.as_str())
            .bind(reason)
            .bind(now)
            .bind(id.0)
            .bind(from.as_str())
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        if updated.rows_affected() == 0 {
            return Err(DbError::Raced { what: "lease" });
        }
        match lease::use_change(from, to) {
            lease::UseChange::None => {}
            lease::UseChange::Begins => {
                sqlx::query("UPDATE leases SET started_at = ? WHERE id = ?").bind(now).bind(id.0).execute(&mut **tx).await.map_err(db)?;
            }
            lease::UseChange::Ends => {
                // Account for its use before the cut.
                usage::record_lease_usage(tx, id, now).await?;
                sqlx::query("UPDATE leases SET ended_at = ? WHERE id = ?").bind(now).bind(id.0).execute(&mut **tx).await.map_err(db)?;
            }
        }
        match change {
            AllocationChange::Keep => {}
            AllocationChange::Drop => {
                sqlx::query("DELETE FROM lease_nodes WHERE lease_id = ?").bind(id.0).execute(&mut **tx).await.map_err(db)?;
            }
            AllocationChange::CutAt(t) => Self::cut_allocation(tx, id, t).await?,
        }
        Ok(())
    }

    /// Writes what [`lease::cut_at`] decides for the lease's rows at `t`.
    async fn cut_allocation(tx: &mut Transaction<'static, Sqlite>, id: LeaseId, t: Seconds) -> DbResult<()> {
        let span: (Seconds, Seconds) =
            sqlx::query_as(r#"SELECT start, "end" FROM leases WHERE id = ?"#).bind(id.0).fetch_one(&mut **tx).await.map_err(db)?;
        let rows = sqlx::query(r#"SELECT node_id, start, "end" FROM lease_nodes WHERE lease_id = ?"#)
            .bind(id.0)
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
        let rows = rows
            .iter()
            .map(|r| {
                Ok(lease::Allocation {
                    node: NodeId(r.try_get(0).map_err(db)?),
                    start: r.try_get(1).map_err(db)?,
                    end: r.try_get(2).map_err(db)?,
                })
            })
            .collect::<DbResult<Vec<_>>>()?;
        let cut = lease::cut_at(span, &rows, t);
        let ids = |nodes: &[NodeId]| serde_json::Value::from(nodes.iter().map(|n| n.0).collect::<Vec<_>>()).to_string();
        if !cut.removed.is_empty() {
            sqlx::query("DELETE FROM lease_nodes WHERE lease_id = ? AND node_id IN (SELECT value FROM json_each(?))")
                .bind(id.0)
                .bind(ids(&cut.removed))
                .execute(&mut **tx)
                .await
                .map_err(db)?;
        }
        if !cut.shortened.is_empty() {
            sqlx::query(r#"UPDATE lease_nodes SET "end" = ? WHERE lease_id = ? AND node_id IN (SELECT value FROM json_each(?))"#)
                .bind(t)
                .bind(id.0)
                .bind(ids(&cut.shortened))
                .execute(&mut **tx)
                .await
                .map_err(db)?;
        }
        if let Some(end) = cut.lease_end {
            sqlx::query(r#"UPDATE leases SET "end" = ? WHERE id = ?"#).bind(end).bind(id.0).execute(&mut **tx).await.map_err(db)?;
        }
        Ok(())
    }

    async fn lease_rows<'e, E>(executor: E, rows: Vec<SqliteRow>) -> DbResult<Vec<LeaseRow>>
    where
        E: sqlx::Executor<'e, Database = Sqlite>,
    {
        let mut leases = rows.iter().map(lease_from_row).collect::<DbResult<Vec<_>>>()?;
        if leases.is_empty() {
            return Ok(leases);
        }
        let ids = serde_json::Value::from(leases.iter().map(|l| l.id.0).collect::<Vec<_>>()).to_string();
        let node_rows = sqlx::query(
            "SELECT ln.lease_id, ln.node_id, n.name FROM lease_nodes ln JOIN nodes n ON n.id = ln.node_id \
             WHERE ln.lease_id IN (SELECT value FROM json_each(?)) ORDER BY ln.lease_id, ln.position",
        )
        .bind(ids)
        .fetch_all(executor)
        .await
        .map_err(db)?;
        let index: std::collections::HashMap<i64, usize> = leases.iter().enumerate().map(|(i, l)| (l.id.0, i)).collect();
        for r in node_rows {
            let lease_id: i64 = r.try_get(0).map_err(db)?;
            if let Some(&i) = index.get(&lease_id) {
                leases[i].nodes.push((NodeId(r.try_get(1).map_err(db)?), r.try_get(2).map_err(db)?));
            }
        }
        Ok(leases)
    }

    async fn agent_command(&self, id: i64) -> DbResult<AgentCommandRow> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{AGENT_COMMAND_SELECT} WHERE id = ?")))
            .bind(id)
            .fetch_one(&self.pool)
            .await
            .map_err(db)?;
        agent_command_from_row(&row)
    }

    async fn node_rows(&self, rows: Vec<SqliteRow>) -> DbResult<Vec<NodeRow>> {
        let mut nodes = rows.iter().map(node_from_row).collect::<DbResult<Vec<_>>>()?;
        for node in &mut nodes {
            open_bmc(&self.key, node)?;
        }
        let macs = sqlx::query("SELECT node_id, mac FROM node_macs ORDER BY node_id, position").fetch_all(&self.pool).await.map_err(db)?;
        let index: std::collections::HashMap<i64, usize> = nodes.iter().enumerate().map(|(i, n)| (n.id.0, i)).collect();
        for r in macs {
            let node_id: i64 = r.try_get(0).map_err(db)?;
            if let Some(&i) = index.get(&node_id) {
                nodes[i].macs.push(r.try_get(1).map_err(db)?);
            }
        }
        Ok(nodes)
    }
}

/// Copies the write-ahead log into the database file every second, without
/// waiting for readers or writers (`PASSIVE`), until the store is dropped;
/// then closes the pool.
async fn checkpoint_loop(pool: SqlitePool, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = stop.changed() => break,
        }
        if *stop.borrow() {
            break;
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
    let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await;
    pool.close().await;
}

const POWER_SELECT: &str = "SELECT p.id, p.node_id, n.name, p.operation, p.requested_by, p.requested_at, p.state, p.finished_at, p.error \
     FROM power_requests p JOIN nodes n ON n.id = p.node_id";

fn power_from_row(r: &SqliteRow) -> DbResult<PowerRequestRow> {
    Ok(PowerRequestRow {
        id: r.try_get(0).map_err(db)?,
        node: NodeId(r.try_get(1).map_err(db)?),
        node_name: r.try_get(2).map_err(db)?,
        operation: parse_name(&r.try_get::<String, _>(3).map_err(db)?)?,
        requested_by: r.try_get(4).map_err(db)?,
        requested_at: r.try_get(5).map_err(db)?,
        state: parse_name(&r.try_get::<String, _>(6).map_err(db)?)?,
        finished_at: r.try_get(7).map_err(db)?,
        error: r.try_get(8).map_err(db)?,
    })
}

const LEASE_SELECT: &str = r#"SELECT l.id, l.owner_id, u.name, p.name, l.lease_type, l.state, l.start, l."end", l.exotic, l.filter, l.deploy, l.reason, l.created_at
FROM leases l JOIN users u ON u.id = l.owner_id LEFT JOIN projects p ON p.id = l.project_id"#;

fn lease_from_row(r: &SqliteRow) -> DbResult<LeaseRow> {
    let lease_type: String = r.try_get(4).map_err(db)?;
    let state: String = r.try_get(5).map_err(db)?;
    Ok(LeaseRow {
        id: LeaseId(r.try_get(0).map_err(db)?),
        owner_id: UserId(r.try_get(1).map_err(db)?),
        owner: r.try_get(2).map_err(db)?,
        project: r.try_get(3).map_err(db)?,
        lease_type: lease::parse_type(&lease_type).ok_or_else(|| DbError::Corrupt(format!("lease type '{lease_type}'")))?,
        state: lease::parse_state(&state).ok_or_else(|| DbError::Corrupt(format!("lease state '{state}'")))?,
        start: r.try_get(6).map_err(db)?,
        end: r.try_get(7).map_err(db)?,
        exotic: r.try_get(8).map_err(db)?,
        filter: r.try_get(9).map_err(db)?,
        deploy: r.try_get(10).map_err(db)?,
        reason: r.try_get(11).map_err(db)?,
        created_at: r.try_get(12).map_err(db)?,
        nodes: Vec::new(),
    })
}

const NODE_SELECT: &str = "SELECT id, name, site, cluster, ip, bmc_url, state, policy, properties, created_at, updated_at, lease_id, \
     power_state, power_observed_at, power_source, boot_target FROM nodes";

fn node_from_row(r: &SqliteRow) -> DbResult<NodeRow> {
    let state: String = r.try_get(6).map_err(db)?;
    let policy: String = r.try_get(7).map_err(db)?;
    let properties: String = r.try_get(8).map_err(db)?;
    Ok(NodeRow {
        id: NodeId(r.try_get(0).map_err(db)?),
        name: r.try_get(1).map_err(db)?,
        site: r.try_get(2).map_err(db)?,
        cluster: r.try_get(3).map_err(db)?,
        ip: r.try_get(4).map_err(db)?,
        bmc_url: r.try_get::<Option<String>, _>(5).map_err(db)?.map(Secret),
        state: NodeLifecycle::parse(&state).ok_or_else(|| DbError::Corrupt(format!("node state '{state}'")))?,
        policy: NodePolicy::parse(&policy).ok_or_else(|| DbError::Corrupt(format!("node policy '{policy}'")))?,
        lease: r.try_get::<Option<i64>, _>(11).map_err(db)?.map(LeaseId),
        properties: json_map(&properties, "node properties")?,
        macs: Vec::new(),
        power: match (
            r.try_get::<Option<String>, _>(12).map_err(db)?,
            r.try_get::<Option<i64>, _>(13).map_err(db)?,
            r.try_get::<Option<String>, _>(14).map_err(db)?,
        ) {
            (Some(state), Some(at), source) => Some((state, at, source.unwrap_or_default())),
            _ => None,
        },
        boot_target: boot_target(&r.try_get::<String, _>(15).map_err(db)?)?,
        created_at: r.try_get(9).map_err(db)?,
        updated_at: r.try_get(10).map_err(db)?,
    })
}

fn imported_node_from_row(r: &SqliteRow) -> DbResult<ImportedNodeRow> {
    let admin: String = r.try_get(5).map_err(db)?;
    let macs: String = r.try_get(6).map_err(db)?;
    Ok(ImportedNodeRow {
        id: NodeId(r.try_get(0).map_err(db)?),
        site: r.try_get(1).map_err(db)?,
        cluster: r.try_get(2).map_err(db)?,
        ip: r.try_get(3).map_err(db)?,
        reference_sha256: r.try_get(4).map_err(db)?,
        macs: serde_json::from_str(&macs).map_err(|_| DbError::Corrupt("node MACs".into()))?,
        admin_properties: json_map(&admin, "node admin properties")?,
    })
}

fn boot_target(s: &str) -> DbResult<BootTarget> {
    BootTarget::parse(s).ok_or_else(|| DbError::Corrupt(format!("node boot target '{s}'")))
}

const AGENT_COMMAND_SELECT: &str = "SELECT id, node_id, action, requested_by, state, generation, done_bytes, total_bytes, error, created_at, \
     updated_at FROM agent_commands";

fn agent_command_from_row(r: &SqliteRow) -> DbResult<AgentCommandRow> {
    Ok(AgentCommandRow {
        id: r.try_get(0).map_err(db)?,
        node: NodeId(r.try_get(1).map_err(db)?),
        action: r.try_get(2).map_err(db)?,
        requested_by: r.try_get(3).map_err(db)?,
        state: parse_name(&r.try_get::<String, _>(4).map_err(db)?)?,
        generation: r.try_get(5).map_err(db)?,
        done_bytes: r.try_get(6).map_err(db)?,
        total_bytes: r.try_get(7).map_err(db)?,
        error: r.try_get(8).map_err(db)?,
        created_at: r.try_get(9).map_err(db)?,
        updated_at: r.try_get(10).map_err(db)?,
    })
}

const OPERATION_SELECT: &str = "SELECT o.id, o.node_id, n.name, o.kind, o.deployment_id, o.lease_id, o.state, o.phase, o.attempt, \
     o.phase_started_ms, o.deadline_ms, o.data, o.history, o.message, o.outcome, o.controller_ms, o.created_ms, o.finished_ms, \
     o.version FROM node_operations o JOIN nodes n ON n.id = o.node_id";

fn operation_from_row(r: &SqliteRow) -> DbResult<OperationRow> {
    Ok(OperationRow {
        id: r.try_get(0).map_err(db)?,
        node: NodeId(r.try_get(1).map_err(db)?),
        node_name: r.try_get(2).map_err(db)?,
        kind: parse_name(&r.try_get::<String, _>(3).map_err(db)?)?,
        deployment: r.try_get(4).map_err(db)?,
        lease: r.try_get::<Option<i64>, _>(5).map_err(db)?.map(LeaseId),
        state: parse_name(&r.try_get::<String, _>(6).map_err(db)?)?,
        phase: parse_name(&r.try_get::<String, _>(7).map_err(db)?)?,
        attempt: r.try_get(8).map_err(db)?,
        phase_started_ms: r.try_get(9).map_err(db)?,
        deadline_ms: r.try_get(10).map_err(db)?,
        data: r.try_get(11).map_err(db)?,
        history: r.try_get(12).map_err(db)?,
        message: r.try_get(13).map_err(db)?,
        outcome: r.try_get::<Option<String>, _>(14).map_err(db)?.as_deref().map(parse_name).transpose()?,
        controller_ms: r.try_get(15).map_err(db)?,
        created_ms: r.try_get(16).map_err(db)?,
        finished_ms: r.try_get(17).map_err(db)?,
        version: r.try_get(18).map_err(db)?,
    })
}

const DEPLOYMENT_SELECT: &str = "SELECT id, lease_id, environment, environment_version, spec, requested_by, created_at, \
     environment_id, environment_owner, image_sha256, error FROM deployments";

fn deployment_from_row(r: &SqliteRow) -> DbResult<DeploymentRow> {
    Ok(DeploymentRow {
        id: r.try_get(0).map_err(db)?,
        lease: LeaseId(r.try_get(1).map_err(db)?),
        environment: r.try_get(2).map_err(db)?,
        version: r.try_get(3).map_err(db)?,
        spec: r.try_get(4).map_err(db)?,
        requested_by: r.try_get(5).map_err(db)?,
        created_at: r.try_get(6).map_err(db)?,
        environment_id: r.try_get(7).map_err(db)?,
        environment_owner: r.try_get(8).map_err(db)?,
        image_sha256: r.try_get(9).map_err(db)?,
        error: r.try_get(10).map_err(db)?,
    })
}

/// Inserts a running operation inside `tx`; a second running operation on
/// the node violates the partial unique index and reads as `Raced`.
async fn insert_operation_in(tx: &mut Transaction<'static, Sqlite>, op: &NewOperation, deployment: Option<i64>) -> DbResult<i64> {
    let history = serde_json::json!([[op.phase.as_str(), op.now_ms]]).to_string();
    sqlx::query_scalar(
        "INSERT INTO node_operations (node_id, kind, deployment_id, lease_id, state, phase, attempt, phase_started_ms, deadline_ms, \
         history, created_ms) VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?) RETURNING id",
    )
    .bind(op.node.0)
    .bind(op.kind)
    .bind(deployment)
    .bind(op.lease.map(|l| l.0))
    .bind(OperationState::Running)
    .bind(op.phase)
    .bind(op.now_ms)
    .bind(op.deadline_ms)
    .bind(history)
    .bind(op.now_ms)
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| if is_unique_violation(&e) { DbError::Raced { what: "node's running operation" } } else { db(e) })
}

const BOOT_HOST_SELECT: &str = "SELECT m.mac, n.id, n.name, n.ip, n.boot_target FROM node_macs m JOIN nodes n ON n.id = m.node_id";

fn boot_host_from_row(r: &SqliteRow) -> DbResult<BootHostRow> {
    Ok(BootHostRow {
        mac: r.try_get(0).map_err(db)?,
        node: NodeId(r.try_get(1).map_err(db)?),
        name: r.try_get(2).map_err(db)?,
        ip: r.try_get(3).map_err(db)?,
        boot_target: boot_target(&r.try_get::<String, _>(4).map_err(db)?)?,
    })
}

fn allocation_from_row(r: &SqliteRow) -> DbResult<AllocationRow> {
    let lease_type: String = r.try_get(4).map_err(db)?;
    Ok(AllocationRow {
        lease: LeaseId(r.try_get(0).map_err(db)?),
        node: NodeId(r.try_get(1).map_err(db)?),
        start: r.try_get(2).map_err(db)?,
        end: r.try_get(3).map_err(db)?,
        lease_type: lease::parse_type(&lease_type).ok_or_else(|| DbError::Corrupt(format!("lease type '{lease_type}'")))?,
    })
}

/// The one row of an `INSERT ... RETURNING` run outside a transaction with
/// `fetch_all`. Not `fetch_one`: sqlx stops at the first row and resets the
/// statement, which commits, but SQLite calls the post-commit hook that
/// moves the read generation (`commits`) only at that connection's next
/// statement; run to its end, the statement commits and counts at once.
/// (Inside a transaction the `COMMIT` counts: `fetch_one` is fine there.)
fn only_row<T>(mut rows: Vec<T>) -> Result<T, sqlx::Error> {
    match (rows.pop(), rows.is_empty()) {
        (Some(row), true) => Ok(row),
        _ => Err(sqlx::Error::RowNotFound),
    }
}

async fn user_projects(pool: &SqlitePool, user: i64) -> DbResult<Vec<(ProjectId, String)>> {
    let rows = sqlx::query(
        "SELECT p.id, p.name FROM project_members m JOIN projects p ON p.id = m.project_id WHERE m.user_id = ? ORDER BY p.name",
    )
    .bind(user)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.iter().map(|r| Ok((ProjectId(r.try_get(0).map_err(db)?), r.try_get(1).map_err(db)?))).collect()
}

const USER_SELECT: &str = "SELECT id, name, role, email, created_at, disabled_at, disabled_reason FROM users";

impl SqliteStore {
    /// A user from a row of `USER_SELECT`, with their projects.
    async fn user_from_row(&self, r: &SqliteRow) -> DbResult<UserRow> {
        let id: i64 = r.try_get(0).map_err(db)?;
        let role: String = r.try_get(2).map_err(db)?;
        let disabled_at: Option<Seconds> = r.try_get(5).map_err(db)?;
        let reason: Option<String> = r.try_get(6).map_err(db)?;
        Ok(UserRow {
            id: UserId(id),
            name: r.try_get(1).map_err(db)?,
            is_admin: role == "admin",
            email: r.try_get(3).map_err(db)?,
            projects: user_projects(&self.pool, id).await?.into_iter().map(|(_, n)| n).collect(),
            created_at: r.try_get(4).map_err(db)?,
            disabled: disabled_at.map(|at| Disabled { at, reason: reason.unwrap_or_default() }),
        })
    }
}

/// SQLite is one process's database: that process always leads.
struct SoleProcess;

#[async_trait]
impl Leadership for SoleProcess {
    async fn holds(&mut self) -> bool {
        true
    }
}

#[async_trait]
impl Datastore for SqliteStore {
    async fn try_lead(&self) -> DbResult<Option<Box<dyn Leadership>>> {
        Ok(Some(Box::new(SoleProcess)))
    }

    async fn listen_changes(&self) -> DbResult<Option<tokio::sync::mpsc::Receiver<String>>> {
        Ok(None)
    }

    fn read_generation(&self) -> Option<u64> {
        // One process writes an SQLite database: every commit is counted.
        Some(commits::count())
    }

    async fn planning_lock(&self) -> DbResult<Option<PlanningLock>> {
        Ok(None)
    }

    async fn count_users(&self) -> DbResult<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM users").fetch_one(&self.pool).await.map_err(db)
    }

    async fn create_project(&self, name: &str, class: Option<&str>, quota: Option<i64>, now: Seconds) -> DbResult<ProjectRow> {
        let id: i64 =
            sqlx::query_scalar("INSERT INTO projects (name, class, quota_node_hours, created_at) VALUES (?, ?, ?, ?) RETURNING id")
                .bind(name)
                .bind(class)
                .bind(quota)
                .bind(now)
                .fetch_all(&self.pool)
                .await
                .and_then(only_row)
                .map_err(
                    |e| if is_unique_violation(&e) { DbError::AlreadyExists { what: "project", name: name.to_owned() } } else { db(e) },
                )?;
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
        let rows = sqlx::query(
            "SELECT p.id, p.name, p.class, p.quota_node_hours, p.created_at, u.name FROM projects p \
             LEFT JOIN users u ON u.id = p.manager_id ORDER BY p.name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let members = sqlx::query("SELECT m.project_id, u.name FROM project_members m JOIN users u ON u.id = m.user_id ORDER BY u.name")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        let mut projects = rows
            .iter()
            .map(|r| {
                Ok(ProjectRow {
                    id: ProjectId(r.try_get(0).map_err(db)?),
                    name: r.try_get(1).map_err(db)?,
                    class: r.try_get(2).map_err(db)?,
                    quota_node_hours: r.try_get(3).map_err(db)?,
                    members: Vec::new(),
                    manager: r.try_get(5).map_err(db)?,
                    created_at: r.try_get(4).map_err(db)?,
                })
            })
            .collect::<DbResult<Vec<_>>>()?;
        for r in members {
            let pid: i64 = r.try_get(0).map_err(db)?;
            if let Some(p) = projects.iter_mut().find(|p| p.id.0 == pid) {
                p.members.push(r.try_get(1).map_err(db)?);
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
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar("INSERT INTO users (name, role, email, created_at) VALUES (?, ?, ?, ?) RETURNING id")
            .bind(name)
            .bind(if is_admin { "admin" } else { "user" })
            .bind(email)
            .bind(now)
            .fetch_one(&mut *tx)
            .await
            .map_err(|e| if is_unique_violation(&e) { DbError::AlreadyExists { what: "user", name: name.to_owned() } } else { db(e) })?;
        for project in projects {
            let pid: Option<i64> =
                sqlx::query_scalar("SELECT id FROM projects WHERE name = ?").bind(project).fetch_optional(&mut *tx).await.map_err(db)?;
            let pid = pid.ok_or_else(|| DbError::NotFound { what: "project", name: project.clone() })?;
            sqlx::query("INSERT OR IGNORE INTO project_members (project_id, user_id) VALUES (?, ?)")
                .bind(pid)
                .bind(id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        sqlx::query("INSERT INTO api_tokens (user_id, token_sha256, created_at) VALUES (?, ?, ?)")
            .bind(id)
            .bind(token_sha256)
            .bind(now)
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
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{USER_SELECT} ORDER BY name"))).fetch_all(&self.pool).await.map_err(db)?;
        let mut users = Vec::with_capacity(rows.len());
        for r in rows {
            users.push(self.user_from_row(&r).await?);
        }
        Ok(users)
    }

    async fn get_user(&self, name: &str) -> DbResult<UserRow> {
        let r = sqlx::query(sqlx::AssertSqlSafe(format!("{USER_SELECT} WHERE name = ?")))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| DbError::NotFound { what: "user", name: name.to_owned() })?;
        self.user_from_row(&r).await
    }

    async fn add_token(&self, user: UserId, token: &NewToken, now: Seconds, max_live: i64) -> DbResult<Option<TokenRow>> {
        // `BEGIN IMMEDIATE`: writers take turns, so the count holds until the insert.
        let mut tx = self.begin_write().await?;
        let expiries: Vec<Option<Seconds>> =
            sqlx::query_scalar("SELECT expires_at FROM api_tokens WHERE user_id = ? AND revoked_at IS NULL")
                .bind(user.0)
                .fetch_all(&mut *tx)
                .await
                .map_err(db)?;
        if !tokens::may_add_token(expiries, now, max_live) {
            return Ok(None);
        }
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_tokens (user_id, token_sha256, created_at, name, expires_at, read_only) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(user.0)
        .bind(&token.sha256)
        .bind(now)
        .bind(&token.name)
        .bind(token.expires_at)
        .bind(token.read_only)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Some(TokenRow { id, name: token.name.clone(), created_at: now, expires_at: token.expires_at, read_only: token.read_only }))
    }

    async fn list_tokens(&self, user: UserId) -> DbResult<Vec<TokenRow>> {
        let rows = sqlx::query(
            "SELECT id, name, created_at, expires_at, read_only FROM api_tokens WHERE user_id = ? AND revoked_at IS NULL ORDER BY id",
        )
        .bind(user.0)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(TokenRow {
                    id: r.try_get(0).map_err(db)?,
                    name: r.try_get(1).map_err(db)?,
                    created_at: r.try_get(2).map_err(db)?,
                    expires_at: r.try_get(3).map_err(db)?,
                    read_only: r.try_get(4).map_err(db)?,
                })
            })
            .collect()
    }

    async fn revoke_token(&self, user: UserId, id: i64, now: Seconds) -> DbResult<bool> {
        let done = sqlx::query("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL")
            .bind(now)
            .bind(id)
            .bind(user.0)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn actor_by_token(&self, token_sha256: &str) -> DbResult<Option<ActorRow>> {
        let row = sqlx::query(
            "SELECT u.id, u.name, u.role, t.id, t.expires_at, t.read_only FROM api_tokens t JOIN users u ON u.id = t.user_id \
             WHERE t.token_sha256 = ? AND t.revoked_at IS NULL AND u.disabled_at IS NULL",
        )
        .bind(token_sha256)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let Some(r) = row else { return Ok(None) };
        let id: i64 = r.try_get(0).map_err(db)?;
        let role: String = r.try_get(2).map_err(db)?;
        Ok(Some(ActorRow {
            user_id: UserId(id),
            name: r.try_get(1).map_err(db)?,
            is_admin: role == "admin",
            projects: user_projects(&self.pool, id).await?,
            token_id: r.try_get(3).map_err(db)?,
            expires_at: r.try_get(4).map_err(db)?,
            read_only: r.try_get(5).map_err(db)?,
        }))
    }

    async fn set_user_disabled(&self, name: &str, disabled: Option<&Disabled>) -> DbResult<UserRow> {
        let done = sqlx::query("UPDATE users SET disabled_at = ?, disabled_reason = ? WHERE name = ?")
            .bind(disabled.map(|d| d.at))
            .bind(disabled.map(|d| d.reason.as_str()))
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(DbError::NotFound { what: "user", name: name.to_owned() });
        }
        self.get_user(name).await
    }

    async fn insert_node(&self, node: &NodeWrite, event: &NewEvent) -> DbResult<NodeRow> {
        let mut tx = self.begin_write().await?;
        Self::insert_node_in(&mut tx, &self.key, node, event).await?;
        tx.commit().await.map_err(db)?;
        self.get_node(&node.name).await
    }

    async fn import_nodes(&self, nodes: &[NodeWrite], added: &NewEvent) -> DbResult<ImportOutcome> {
        let mut tx = self.begin_write().await?;
        let mut outcome = ImportOutcome::default();
        for node in nodes {
            let stored = sqlx::query(
                "SELECT n.id, n.site, n.cluster, n.ip, n.reference_sha256, n.admin_properties, \
                 (SELECT json_group_array(mac) FROM (SELECT mac FROM node_macs WHERE node_id = n.id ORDER BY position)) \
                 FROM nodes n WHERE n.name = ?",
            )
            .bind(&node.name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .map(|r| imported_node_from_row(&r))
            .transpose()?;
            match (import_action(stored.as_ref().map(ImportedNodeRow::facts).as_ref(), &node.imported_facts()), stored) {
                (ImportAction::Add, _) | (_, None) => {
                    Self::insert_node_in(&mut tx, &self.key, node, added).await?;
                    outcome.added.push(node.name.clone());
                }
                (ImportAction::Unchanged, Some(_)) => outcome.unchanged.push(node.name.clone()),
                (ImportAction::Update, Some(stored)) => {
                    sqlx::query(
                        "UPDATE nodes SET site = ?, cluster = ?, ip = ?, properties = ?, reference = ?, reference_sha256 = ?, updated_at = ? WHERE id = ?",
                    )
                    .bind(&node.site)
                    .bind(&node.cluster)
                    .bind(&node.ip)
                    .bind(to_json(&properties::effective(&node.properties, &stored.admin_properties)))
                    .bind(&node.reference)
                    .bind(&node.reference_sha256)
                    .bind(added.at)
                    .bind(stored.id.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                    sqlx::query("DELETE FROM node_macs WHERE node_id = ?").bind(stored.id.0).execute(&mut *tx).await.map_err(db)?;
                    Self::insert_macs(&mut tx, stored.id, &node.macs).await?;
                    outcome.changed.push(node.name.clone());
                }
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(outcome)
    }

    async fn list_nodes(&self) -> DbResult<Vec<NodeRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{NODE_SELECT} ORDER BY site, cluster, id")))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        self.node_rows(rows).await
    }

    async fn node_statuses(&self) -> DbResult<Vec<NodeStatus>> {
        let rows =
            sqlx::query("SELECT id, name, state, policy, lease_id FROM nodes ORDER BY id").fetch_all(&self.pool).await.map_err(db)?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get(2).map_err(db)?;
                let policy: String = r.try_get(3).map_err(db)?;
                Ok(NodeStatus {
                    id: NodeId(r.try_get(0).map_err(db)?),
                    name: r.try_get(1).map_err(db)?,
                    state: NodeLifecycle::parse(&state).ok_or_else(|| DbError::Corrupt(format!("node state '{state}'")))?,
                    policy: NodePolicy::parse(&policy).ok_or_else(|| DbError::Corrupt(format!("node policy '{policy}'")))?,
                    lease: r.try_get::<Option<i64>, _>(4).map_err(db)?.map(LeaseId),
                })
            })
            .collect()
    }

    async fn get_node_by_id(&self, id: NodeId) -> DbResult<NodeRow> {
        let name: Option<String> =
            sqlx::query_scalar("SELECT name FROM nodes WHERE id = ?").bind(id.0).fetch_optional(&self.pool).await.map_err(db)?;
        self.get_node(&name.ok_or_else(|| DbError::NotFound { what: "node", name: id.to_string() })?).await
    }

    async fn get_node(&self, name: &str) -> DbResult<NodeRow> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{NODE_SELECT} WHERE name = ?")))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| DbError::NotFound { what: "node", name: name.to_owned() })?;
        let mut node = node_from_row(&row)?;
        open_bmc(&self.key, &mut node)?;
        node.macs = sqlx::query_scalar("SELECT mac FROM node_macs WHERE node_id = ? ORDER BY position")
            .bind(node.id.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(node)
    }

    async fn node_reference(&self, id: NodeId) -> DbResult<Option<String>> {
        sqlx::query_scalar("SELECT reference FROM nodes WHERE id = ?").bind(id.0).fetch_one(&self.pool).await.map_err(db)
    }

    async fn set_node_policy(&self, id: NodeId, policy: NodePolicy, event: &NewEvent) -> DbResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE nodes SET policy = ?, updated_at = ? WHERE id = ?")
            .bind(policy.as_str())
            .bind(event.at)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        Self::insert_event(&mut tx, id, event).await?;
        tx.commit().await.map_err(db)
    }

    async fn transition_nodes(&self, transitions: &[NodeTransition]) -> DbResult<usize> {
        let mut tx = self.begin_write().await?;
        let mut applied = 0;
        for t in transitions {
            let needs_reset = needs_reset_after(t.from, t.to);
            let r = sqlx::query(
                "UPDATE nodes SET state = ?, lease_id = ?, updated_at = ?, needs_reset = COALESCE(?, needs_reset) WHERE id = ? AND state = ?",
            )
            .bind(t.to.as_str())
            .bind(t.lease.map(|l| l.0))
            .bind(t.event.at)
            .bind(needs_reset)
            .bind(t.node.0)
            .bind(t.from.as_str())
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

    async fn boot_hosts(&self) -> DbResult<Vec<BootHostRow>> {
        let rows = sqlx::query(BOOT_HOST_SELECT).fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(boot_host_from_row).collect()
    }

    async fn boot_host(&self, mac: &str) -> DbResult<Option<BootHostRow>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{BOOT_HOST_SELECT} WHERE m.mac = ?")))
            .bind(mac)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.as_ref().map(boot_host_from_row).transpose()
    }

    async fn set_boot_target(&self, node: NodeId, target: BootTarget) -> DbResult<()> {
        sqlx::query("UPDATE nodes SET boot_target = ? WHERE id = ?")
            .bind(target.as_str())
            .bind(node.0)
            .execute(&self.pool)
            .await
            .map_err(db)?;
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
        let mut tx = self.begin_write().await?;
        sqlx::query("INSERT INTO agent_tokens (token_sha256, node_id, created_at, expires_at, bound_ip) VALUES (?, ?, ?, ?, ?)")
            .bind(token_sha256)
            .bind(node.0)
            .bind(now)
            .bind(expires_at)
            .bind(bound_ip)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let rows = sqlx::query("SELECT token_sha256, created_at, expires_at, used_at IS NOT NULL FROM agent_tokens WHERE node_id = ?")
            .bind(node.0)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        let stored = rows
            .iter()
            .map(|r| {
                Ok(tokens::AgentToken {
                    sha256: r.try_get(0).map_err(db)?,
                    created_at: r.try_get(1).map_err(db)?,
                    expires_at: r.try_get(2).map_err(db)?,
                    used: r.try_get(3).map_err(db)?,
                })
            })
            .collect::<DbResult<Vec<_>>>()?;
        let displaced = tokens::displaced_agent_tokens(&stored, token_sha256, keep, now);
        if !displaced.is_empty() {
            sqlx::query("DELETE FROM agent_tokens WHERE token_sha256 IN (SELECT value FROM json_each(?))")
                .bind(serde_json::Value::from(displaced).to_string())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn add_boot_token(&self, token_sha256: &str, created_by: &str, now: Seconds) -> DbResult<()> {
        sqlx::query("INSERT INTO boot_tokens (token_sha256, created_by, created_at) VALUES (?, ?, ?)")
            .bind(token_sha256)
            .bind(created_by)
            .bind(now)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn is_boot_token(&self, token_sha256: &str) -> DbResult<bool> {
        let found: Option<i64> = sqlx::query_scalar("SELECT 1 FROM boot_tokens WHERE token_sha256 = ?")
            .bind(token_sha256)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(found.is_some())
    }

    async fn consume_agent_token(&self, token_sha256: &str, node: &str, peer_ip: &str, now: Seconds) -> DbResult<Option<NodeId>> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query(
            "SELECT t.node_id FROM agent_tokens t JOIN nodes n ON n.id = t.node_id \
             WHERE t.token_sha256 = ? AND n.name = ? AND t.bound_ip = ? AND t.used_at IS NULL AND t.expires_at > ?",
        )
        .bind(token_sha256)
        .bind(node)
        .bind(peer_ip)
        .bind(now)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(row) = row else { return Ok(None) };
        let id: i64 = row.try_get(0).map_err(db)?;
        sqlx::query("UPDATE agent_tokens SET used_at = ? WHERE token_sha256 = ?")
            .bind(now)
            .bind(token_sha256)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Some(NodeId(id)))
    }

    async fn open_agent_session(&self, node: NodeId, session_sha256: &str, now: Seconds, expires_at: Seconds) -> DbResult<i64> {
        let mut tx = self.begin_write().await?;
        let generation: i64 =
            sqlx::query_scalar("UPDATE nodes SET agent_generation = agent_generation + 1 WHERE id = ? RETURNING agent_generation")
                .bind(node.0)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
        sqlx::query("DELETE FROM agent_sessions WHERE node_id = ?").bind(node.0).execute(&mut *tx).await.map_err(db)?;
        sqlx::query("INSERT INTO agent_sessions (token_sha256, node_id, generation, created_at, expires_at) VALUES (?, ?, ?, ?, ?)")
            .bind(session_sha256)
            .bind(node.0)
            .bind(generation)
            .bind(now)
            .bind(expires_at)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(generation)
    }

    async fn agent_session(&self, session_sha256: &str, now: Seconds) -> DbResult<Option<AgentSessionRow>> {
        let row = sqlx::query(
            "SELECT s.node_id, n.name, s.generation, n.agent_generation FROM agent_sessions s JOIN nodes n ON n.id = s.node_id \
             WHERE s.token_sha256 = ? AND s.expires_at > ?",
        )
        .bind(session_sha256)
        .bind(now)
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(|r| {
            Ok(AgentSessionRow {
                node: NodeId(r.try_get(0).map_err(db)?),
                name: r.try_get(1).map_err(db)?,
                generation: r.try_get(2).map_err(db)?,
                current_generation: r.try_get(3).map_err(db)?,
            })
        })
        .transpose()
    }

    async fn store_inventory(&self, node: NodeId, generation: i64, report: &str, now: Seconds) -> DbResult<bool> {
        let done = sqlx::query(
            "INSERT INTO node_inventories (node_id, generation, reported_at, report) VALUES (?, ?, ?, ?) \
             ON CONFLICT (node_id) DO UPDATE SET generation = excluded.generation, reported_at = excluded.reported_at, report = excluded.report \
             WHERE excluded.generation >= node_inventories.generation",
        )
        .bind(node.0)
        .bind(generation)
        .bind(now)
        .bind(report)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn node_inventory(&self, node: NodeId) -> DbResult<Option<InventoryRow>> {
        let row = sqlx::query("SELECT generation, reported_at, report FROM node_inventories WHERE node_id = ?")
            .bind(node.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(|r| {
            Ok(InventoryRow {
                generation: r.try_get(0).map_err(db)?,
                reported_at: r.try_get(1).map_err(db)?,
                report: r.try_get(2).map_err(db)?,
            })
        })
        .transpose()
    }

    async fn enqueue_agent_command(&self, node: NodeId, action: &str, actor: &str, now: Seconds) -> DbResult<AgentCommandRow> {
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO agent_commands (node_id, action, requested_by, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(node.0)
        .bind(action)
        .bind(actor)
        .bind(AgentCommandState::Queued)
        .bind(now)
        .bind(now)
        .fetch_all(&self.pool)
        .await
        .and_then(only_row)
        .map_err(db)?;
        self.agent_command(id).await
    }

    async fn next_agent_command(&self, node: NodeId, generation: i64, now: Seconds) -> DbResult<Option<AgentCommandRow>> {
        let mut tx = self.begin_write().await?;
        // Only the node's newest agent takes commands: a long poll of a
        // superseded agent (its ramdisk rebooted) must not take the command
        // meant for its successor.
        let current: Option<i64> = sqlx::query_scalar("SELECT agent_generation FROM nodes WHERE id = ?")
            .bind(node.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if current != Some(generation) {
            return Ok(None);
        }
        // A command sent to this generation is sent again (its answer may
        // have been lost); one sent to an older generation is taken over.
        let id: Option<i64> = sqlx::query_scalar(
            "SELECT id FROM agent_commands WHERE node_id = ? AND (state = ? OR (state = ? AND generation <= ?)) \
             ORDER BY id LIMIT 1",
        )
        .bind(node.0)
        .bind(AgentCommandState::Queued)
        .bind(AgentCommandState::Sent)
        .bind(generation)
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(id) = id else { return Ok(None) };
        sqlx::query("UPDATE agent_commands SET state = ?, generation = ?, updated_at = ? WHERE id = ?")
            .bind(handed_command()?)
            .bind(generation)
            .bind(now)
            .bind(id)
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
        let r = sqlx::query(
            "UPDATE agent_commands SET done_bytes = ?, total_bytes = ?, updated_at = ? \
             WHERE id = ? AND node_id = ? AND generation = ? AND state = ?",
        )
        .bind(done)
        .bind(total)
        .bind(now)
        .bind(id)
        .bind(node.0)
        .bind(generation)
        .bind(AgentCommandState::Sent)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(r.rows_affected() == 1)
    }

    async fn finish_agent_command(&self, id: i64, node: NodeId, generation: i64, error: Option<&str>, now: Seconds) -> DbResult<bool> {
        let (from, to) = answered_command(error)?;
        let r = sqlx::query(
            "UPDATE agent_commands SET state = ?, error = ?, updated_at = ? \
             WHERE id = ? AND node_id = ? AND generation = ? AND state = ?",
        )
        .bind(to)
        .bind(error)
        .bind(now)
        .bind(id)
        .bind(node.0)
        .bind(generation)
        .bind(from)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(r.rows_affected() == 1)
    }

    async fn agent_commands(&self, node: NodeId) -> DbResult<Vec<AgentCommandRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{AGENT_COMMAND_SELECT} WHERE node_id = ? ORDER BY id")))
            .bind(node.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(agent_command_from_row).collect()
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
        sqlx::query_scalar(
            "INSERT INTO environments (name, version, descriptor, visibility, owner_id, created_at) VALUES (?, ?, ?, ?, ?, ?) \
             RETURNING id",
        )
        .bind(name)
        .bind(version)
        .bind(descriptor)
        .bind(visibility)
        .bind(owner.0)
        .bind(now)
        // Run to its end: see `only_row`.
        .fetch_all(&self.pool)
        .await
        .and_then(only_row)
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
        let rows = sqlx::query(
            "SELECT e.name, e.version, e.descriptor, e.visibility, e.owner_id, u.name, e.created_at, e.id, u.role = 'admin' \
             FROM environments e JOIN users u ON u.id = e.owner_id ORDER BY e.name, e.version DESC, e.id DESC",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        // Every owner's projects in one query (not one per environment).
        let memberships = sqlx::query(
            "SELECT m.user_id, p.name FROM project_members m JOIN projects p ON p.id = m.project_id \
             WHERE m.user_id IN (SELECT DISTINCT owner_id FROM environments)",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut projects: std::collections::HashMap<i64, Vec<String>> = std::collections::HashMap::new();
        for m in memberships {
            projects.entry(m.try_get(0).map_err(db)?).or_default().push(m.try_get(1).map_err(db)?);
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let owner: i64 = r.try_get(4).map_err(db)?;
            out.push(EnvironmentRow {
                id: r.try_get(7).map_err(db)?,
                owner_is_admin: r.try_get(8).map_err(db)?,
                name: r.try_get(0).map_err(db)?,
                version: r.try_get(1).map_err(db)?,
                descriptor: r.try_get(2).map_err(db)?,
                visibility: r.try_get(3).map_err(db)?,
                owner: UserId(owner),
                owner_name: r.try_get(5).map_err(db)?,
                owner_projects: projects.get(&owner).cloned().unwrap_or_default(),
                created_at: r.try_get(6).map_err(db)?,
            });
        }
        Ok(out)
    }

    async fn node_events(&self, id: NodeId) -> DbResult<Vec<NodeEventRow>> {
        let rows = sqlx::query("SELECT at, actor, from_state, to_state, reason FROM node_events WHERE node_id = ? ORDER BY id")
            .bind(id.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(NodeEventRow {
                    at: r.try_get(0).map_err(db)?,
                    actor: r.try_get(1).map_err(db)?,
                    from: r.try_get(2).map_err(db)?,
                    to: r.try_get(3).map_err(db)?,
                    reason: r.try_get(4).map_err(db)?,
                })
            })
            .collect()
    }

    async fn count_nodes_by_state(&self) -> DbResult<Vec<(String, String, i64)>> {
        let rows =
            sqlx::query("SELECT state, policy, COUNT(*) FROM nodes GROUP BY state, policy").fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(|r| Ok((r.try_get(0).map_err(db)?, r.try_get(1).map_err(db)?, r.try_get(2).map_err(db)?))).collect()
    }

    async fn generations(&self) -> DbResult<(i64, i64)> {
        let r =
            sqlx::query("SELECT calendar_generation, nodes_generation FROM meta WHERE id = 1").fetch_one(&self.pool).await.map_err(db)?;
        Ok((r.try_get(0).map_err(db)?, r.try_get(1).map_err(db)?))
    }

    async fn calendar_generation(&self) -> DbResult<i64> {
        sqlx::query_scalar("SELECT calendar_generation FROM meta WHERE id = 1").fetch_one(&self.pool).await.map_err(db)
    }

    async fn allocations_after(&self, after: Seconds) -> DbResult<(i64, Vec<AllocationRow>)> {
        // A read transaction gives one snapshot for the rows and the generation.
        let mut tx = self.pool.begin().await.map_err(db)?;
        let generation = Self::generation_in(&mut tx).await?;
        let rows = sqlx::query(r#"SELECT ln.lease_id, ln.node_id, ln.start, ln."end", l.lease_type FROM lease_nodes ln JOIN leases l ON l.id = ln.lease_id WHERE ln."end" > ?"#)
            .bind(after)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok((generation, rows.iter().map(allocation_from_row).collect::<DbResult<Vec<_>>>()?))
    }

    async fn insert_lease(&self, lease: &NewLease, preempt: &[Preemption], expected_generation: i64) -> DbResult<(LeaseRow, i64)> {
        let mut tx = self.begin_write().await?;
        Self::check_generation(&mut tx, expected_generation).await?;
        for p in preempt {
            Self::apply_lease_transition(&mut tx, p.lease, p.from, p.to, p.change, Some(&p.reason), lease.created_at).await?;
        }
        let id: i64 = sqlx::query_scalar(
            r#"INSERT INTO leases (owner_id, project_id, lease_type, state, start, "end", exotic, filter, deploy, reason, created_at, updated_at)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id"#,
        )
        .bind(lease.owner_id.0)
        .bind(lease.project_id.map(|p| p.0))
        .bind(lease.lease_type.as_str())
        .bind(lease.state.as_str())
        .bind(lease.start)
        .bind(lease.end)
        .bind(lease.exotic)
        .bind(&lease.filter)
        .bind(&lease.deploy)
        .bind(&lease.reason)
        .bind(lease.created_at)
        .bind(lease.created_at)
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        for (position, node) in lease.nodes.iter().enumerate() {
            sqlx::query(r#"INSERT INTO lease_nodes (lease_id, node_id, position, start, "end") VALUES (?, ?, ?, ?, ?)"#)
                .bind(id)
                .bind(node.0)
                .bind(i64::try_from(position).unwrap_or(i64::MAX))
                .bind(lease.start)
                .bind(lease.end)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        let generation = Self::generation_in(&mut tx).await?;
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(format!("{LEASE_SELECT} WHERE l.id = ?"))).bind(id).fetch_all(&mut *tx).await.map_err(db)?;
        let mut leases = Self::lease_rows(&mut *tx, rows).await?;
        tx.commit().await.map_err(db)?;
        let row = leases.pop().ok_or_else(|| DbError::Corrupt("inserted lease vanished".into()))?;
        Ok((row, generation))
    }

    async fn get_lease(&self, id: LeaseId) -> DbResult<LeaseRow> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{LEASE_SELECT} WHERE l.id = ?")))
            .bind(id.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Self::lease_rows(&self.pool, rows).await?.pop().ok_or_else(|| DbError::NotFound { what: "lease", name: id.to_string() })
    }

    async fn list_leases(&self, owner: Option<UserId>, include_over: bool) -> DbResult<Vec<LeaseRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "{LEASE_SELECT} WHERE (?1 IS NULL OR l.owner_id = ?1) \
             AND (?2 OR l.state NOT IN (SELECT value FROM json_each(?3))) ORDER BY l.id DESC"
        )))
        .bind(owner.map(|o| o.0))
        .bind(include_over)
        .bind(name_set(lease::TERMINAL.map(LeaseState::as_str)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Self::lease_rows(&self.pool, rows).await
    }

    async fn set_lease_end(
        &self,
        id: LeaseId,
        end: Seconds,
        preempt: &[Preemption],
        expected_generation: i64,
        now: Seconds,
    ) -> DbResult<i64> {
        let mut tx = self.begin_write().await?;
        Self::check_generation(&mut tx, expected_generation).await?;
        for p in preempt {
            Self::apply_lease_transition(&mut tx, p.lease, p.from, p.to, p.change, Some(&p.reason), now).await?;
        }
        sqlx::query(r#"UPDATE lease_nodes SET "end" = ? WHERE lease_id = ?"#).bind(end).bind(id.0).execute(&mut *tx).await.map_err(db)?;
        sqlx::query(r#"UPDATE leases SET "end" = ?, updated_at = ? WHERE id = ?"#)
            .bind(end)
            .bind(now)
            .bind(id.0)
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
        let mut tx = self.begin_write().await?;
        if change != AllocationChange::Keep {
            Self::check_generation(&mut tx, expected_generation).await?;
        }
        Self::apply_lease_transition(&mut tx, id, from, to, change, reason, now).await?;
        let generation = Self::generation_in(&mut tx).await?;
        tx.commit().await.map_err(db)?;
        Ok(generation)
    }

    async fn leases_needing_action(&self, now: Seconds) -> DbResult<Vec<LeaseRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            r#"{LEASE_SELECT} WHERE (l.state IN (SELECT value FROM json_each(?2)) AND l.start <= ?1)
               OR l.state IN (SELECT value FROM json_each(?3)) OR (l.state = ?4 AND l."end" <= ?1) ORDER BY l.start, l.id"#
        )))
        .bind(now)
        .bind(name_set(lease::WAITING.map(LeaseState::as_str)))
        .bind(name_set(lease::MOVING.map(LeaseState::as_str)))
        .bind(LeaseState::Active.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Self::lease_rows(&self.pool, rows).await
    }

    async fn held_nodes(&self, now: Seconds) -> DbResult<Vec<(NodeId, LeaseId)>> {
        let rows = sqlx::query(
            r#"SELECT ln.node_id, ln.lease_id FROM lease_nodes ln JOIN leases l ON l.id = ln.lease_id
               WHERE l.state IN (SELECT value FROM json_each(?2)) AND ln.start <= ?1 AND ln."end" > ?1"#,
        )
        .bind(now)
        .bind(name_set(lease::RUNNING.map(LeaseState::as_str)))
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(|r| Ok((NodeId(r.try_get(0).map_err(db)?), LeaseId(r.try_get(1).map_err(db)?)))).collect()
    }

    async fn next_lease_event(&self, now: Seconds) -> DbResult<Option<Seconds>> {
        sqlx::query_scalar(
            r#"SELECT MIN(t) FROM (
                 SELECT MIN(start) AS t FROM leases WHERE state IN (SELECT value FROM json_each(?2)) AND start > ?1
                 UNION ALL
                 SELECT MIN("end") AS t FROM leases WHERE state IN (SELECT value FROM json_each(?3)) AND "end" > ?1)"#,
        )
        .bind(now)
        .bind(name_set(lease::WAITING.map(LeaseState::as_str)))
        .bind(name_set(lease::RUNNING.map(LeaseState::as_str)))
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }

    async fn besteffort_overlapping(&self, nodes: &[NodeId], start: Seconds, end: Seconds) -> DbResult<Vec<AllocationRow>> {
        let ids = serde_json::Value::from(nodes.iter().map(|n| n.0).collect::<Vec<_>>()).to_string();
        let rows = sqlx::query(
            r#"SELECT ln.lease_id, ln.node_id, ln.start, ln."end", l.lease_type FROM lease_nodes ln JOIN leases l ON l.id = ln.lease_id
               WHERE l.lease_type = 'besteffort' AND ln.node_id IN (SELECT value FROM json_each(?)) AND ln."end" > ? AND ln.start < ?"#,
        )
        .bind(ids)
        .bind(start)
        .bind(end)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter().map(allocation_from_row).collect()
    }

    async fn busy_between(&self, from: Seconds, to: Seconds) -> DbResult<Vec<BusyRow>> {
        let rows = sqlx::query(
            r#"SELECT ln.node_id, ln.lease_id, l.owner_id, u.name, l.lease_type, l.state, ln.start, ln."end"
               FROM lease_nodes ln JOIN leases l ON l.id = ln.lease_id JOIN users u ON u.id = l.owner_id
               WHERE ln."end" > ? AND ln.start < ? ORDER BY ln.node_id, ln.start"#,
        )
        .bind(from)
        .bind(to)
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.iter()
            .map(|r| {
                let lease_type: String = r.try_get(4).map_err(db)?;
                let state: String = r.try_get(5).map_err(db)?;
                Ok(BusyRow {
                    node: NodeId(r.try_get(0).map_err(db)?),
                    lease: LeaseId(r.try_get(1).map_err(db)?),
                    owner_id: UserId(r.try_get(2).map_err(db)?),
                    owner: r.try_get(3).map_err(db)?,
                    lease_type: lease::parse_type(&lease_type).ok_or_else(|| DbError::Corrupt(format!("lease type '{lease_type}'")))?,
                    state: lease::parse_state(&state).ok_or_else(|| DbError::Corrupt(format!("lease state '{state}'")))?,
                    start: r.try_get(6).map_err(db)?,
                    end: r.try_get(7).map_err(db)?,
                })
            })
            .collect()
    }

    async fn count_leases_by_state(&self) -> DbResult<Vec<(String, i64)>> {
        let rows = sqlx::query("SELECT state, COUNT(*) FROM leases GROUP BY state").fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(|r| Ok((r.try_get(0).map_err(db)?, r.try_get(1).map_err(db)?))).collect()
    }

    // --- deployments and node operations ----------------------------------
    async fn insert_deployment(&self, d: &NewDeployment, operations: &[NewOperation]) -> DbResult<i64> {
        let mut tx = self.begin_write().await?;
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO deployments (lease_id, environment, environment_version, spec, requested_by, created_at, \
             environment_id, environment_owner, image_sha256, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(d.lease.0)
        .bind(&d.environment)
        .bind(d.version)
        .bind(&d.spec)
        .bind(&d.requested_by)
        .bind(d.created_at)
        .bind(d.environment_id)
        .bind(&d.environment_owner)
        .bind(&d.image_sha256)
        .bind(&d.error)
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
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{DEPLOYMENT_SELECT} WHERE id = ?")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| DbError::NotFound { what: "deployment", name: id.to_string() })?;
        let deployment = deployment_from_row(&row)?;
        let ops = sqlx::query(sqlx::AssertSqlSafe(format!("{OPERATION_SELECT} WHERE o.deployment_id = ? ORDER BY n.name")))
            .bind(id)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok((deployment, ops.iter().map(operation_from_row).collect::<DbResult<_>>()?))
    }

    async fn lease_deployments(&self, lease: LeaseId) -> DbResult<Vec<DeploymentRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{DEPLOYMENT_SELECT} WHERE lease_id = ? ORDER BY id")))
            .bind(lease.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(deployment_from_row).collect()
    }

    async fn deployment_spec(&self, id: i64) -> DbResult<String> {
        sqlx::query_scalar("SELECT spec FROM deployments WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| DbError::NotFound { what: "deployment", name: id.to_string() })
    }

    async fn deploy_leases_without_deployment(&self) -> DbResult<Vec<LeaseId>> {
        let ids: Vec<i64> = sqlx::query_scalar(
            "SELECT l.id FROM leases l WHERE l.state = ? AND l.deploy IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM deployments d WHERE d.lease_id = l.id) ORDER BY l.id",
        )
        .bind(LeaseState::Active.as_str())
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(ids.into_iter().map(LeaseId).collect())
    }

    async fn insert_operation(&self, operation: &NewOperation) -> DbResult<i64> {
        let mut tx = self.begin_write().await?;
        let id = insert_operation_in(&mut tx, operation, None).await?;
        tx.commit().await.map_err(db)?;
        Ok(id)
    }

    async fn running_operations(&self) -> DbResult<Vec<OperationRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{OPERATION_SELECT} WHERE o.state = ? ORDER BY o.id")))
            .bind(OperationState::Running)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter().map(operation_from_row).collect()
    }

    async fn operation(&self, id: i64) -> DbResult<OperationRow> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{OPERATION_SELECT} WHERE o.id = ?")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| DbError::NotFound { what: "node operation", name: id.to_string() })?;
        operation_from_row(&row)
    }

    async fn latest_operation(&self, node: NodeId, kind: OperationKind) -> DbResult<Option<OperationRow>> {
        let row =
            sqlx::query(sqlx::AssertSqlSafe(format!("{OPERATION_SELECT} WHERE o.node_id = ? AND o.kind = ? ORDER BY o.id DESC LIMIT 1")))
                .bind(node.0)
                .bind(kind)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        row.as_ref().map(operation_from_row).transpose()
    }

    async fn update_operation(&self, r: &OperationRow) -> DbResult<bool> {
        let done = sqlx::query(
            "UPDATE node_operations SET state = ?, phase = ?, attempt = ?, phase_started_ms = ?, deadline_ms = ?, data = ?, \
             history = ?, message = ?, outcome = ?, controller_ms = ?, finished_ms = ?, version = version + 1 \
             WHERE id = ? AND state = ? AND version = ?",
        )
        .bind(r.state)
        .bind(r.phase)
        .bind(r.attempt)
        .bind(r.phase_started_ms)
        .bind(r.deadline_ms)
        .bind(&r.data)
        .bind(&r.history)
        .bind(&r.message)
        .bind(r.outcome)
        .bind(r.controller_ms)
        .bind(r.finished_ms)
        .bind(r.id)
        .bind(OperationState::Running)
        .bind(r.version)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn cancel_agent_commands(&self, node: NodeId, reason: &str, now: Seconds) -> DbResult<u64> {
        let done = sqlx::query(
            "UPDATE agent_commands SET state = ?, error = ?, updated_at = ? \
             WHERE node_id = ? AND state IN (SELECT value FROM json_each(?))",
        )
        .bind(cancelled_command()?)
        .bind(reason)
        .bind(now)
        .bind(node.0)
        .bind(name_set(AgentCommandState::UNFINISHED.map(AgentCommandState::as_str)))
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn agent_command_row(&self, id: i64) -> DbResult<AgentCommandRow> {
        self.agent_command(id).await
    }

    async fn agent_generation(&self, node: NodeId) -> DbResult<i64> {
        sqlx::query_scalar("SELECT agent_generation FROM nodes WHERE id = ?")
            .bind(node.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| DbError::NotFound { what: "node", name: node.0.to_string() })
    }

    async fn needs_reset(&self, node: NodeId) -> DbResult<bool> {
        let dirty: Option<bool> =
            sqlx::query_scalar("SELECT needs_reset FROM nodes WHERE id = ?").bind(node.0).fetch_optional(&self.pool).await.map_err(db)?;
        Ok(dirty.unwrap_or(false))
    }

    async fn set_ssh_host_key(&self, node: NodeId, key: Option<&str>) -> DbResult<()> {
        sqlx::query("UPDATE nodes SET ssh_host_key = ? WHERE id = ?").bind(key).bind(node.0).execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    async fn ssh_host_key(&self, node: NodeId) -> DbResult<Option<String>> {
        let key: Option<Option<String>> =
            sqlx::query_scalar("SELECT ssh_host_key FROM nodes WHERE id = ?").bind(node.0).fetch_optional(&self.pool).await.map_err(db)?;
        Ok(key.flatten())
    }

    async fn enqueue_power(&self, node: NodeId, operation: PowerOperation, actor: &str, now: Seconds) -> DbResult<i64> {
        sqlx::query_scalar(
            "INSERT INTO power_requests (node_id, operation, requested_by, requested_at, state) VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(node.0)
        .bind(operation)
        .bind(actor)
        .bind(now)
        .bind(PowerRequestState::Queued)
        .fetch_all(&self.pool)
        .await
        .and_then(only_row)
        .map_err(db)
    }

    async fn power_request(&self, id: i64) -> DbResult<PowerRequestRow> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{POWER_SELECT} WHERE p.id = ?")))
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| DbError::NotFound { what: "power request", name: id.to_string() })?;
        power_from_row(&row)
    }

    async fn pending_power_requests(&self) -> DbResult<Vec<PowerRequestRow>> {
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(format!("{POWER_SELECT} WHERE p.state IN (SELECT value FROM json_each(?)) ORDER BY p.id")))
                .bind(name_set(PowerRequestState::PENDING.map(PowerRequestState::as_str)))
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        rows.iter().map(power_from_row).collect()
    }

    async fn set_power_request_running(&self, id: i64) -> DbResult<()> {
        sqlx::query("UPDATE power_requests SET state = ? WHERE id = ?")
            .bind(started_power()?)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn cancel_power_request(&self, id: i64, reason: &str, now: Seconds) -> DbResult<bool> {
        let (from, to) = dropped_power()?;
        let done = sqlx::query("UPDATE power_requests SET state = ?, error = ?, finished_at = ? WHERE id = ? AND state = ?")
            .bind(to)
            .bind(reason)
            .bind(now)
            .bind(id)
            .bind(from)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn cancel_queued_power(&self, node: NodeId, reason: &str, now: Seconds) -> DbResult<u64> {
        let (from, to) = dropped_power()?;
        let done = sqlx::query("UPDATE power_requests SET state = ?, error = ?, finished_at = ? WHERE node_id = ? AND state = ?")
            .bind(to)
            .bind(reason)
            .bind(now)
            .bind(node.0)
            .bind(from)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn finish_power_request(&self, id: i64, error: Option<&str>, now: Seconds) -> DbResult<()> {
        sqlx::query("UPDATE power_requests SET state = ?, error = ?, finished_at = ? WHERE id = ?")
            .bind(finished_power(error)?)
            .bind(error)
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn insert_account_request(&self, request: &NewAccountRequest) -> DbResult<AccountRequestRow> {
        accounts::insert_request(&self.pool, request).await
    }

    async fn count_pending_account_requests(&self) -> DbResult<i64> {
        sqlx::query_scalar("SELECT COUNT(*) FROM account_requests WHERE state = 'pending'").fetch_one(&self.pool).await.map_err(db)
    }

    async fn account_requests(&self, state: Option<&str>) -> DbResult<Vec<AccountRequestRow>> {
        accounts::requests(&self.pool, state).await
    }

    async fn account_request(&self, id: i64) -> DbResult<AccountRequestRow> {
        accounts::request(&self.pool, id).await
    }

    async fn approve_account_request(&self, id: i64, approval: &Approval) -> DbResult<(AccountRequestRow, UserRow)> {
        let mut tx = self.begin_write().await?;
        let user_id = accounts::approve_in(&mut tx, id, approval).await?;
        tx.commit().await.map_err(db)?;
        let request = accounts::request(&self.pool, id).await?;
        let user = self.get_user(&request.name).await?;
        debug_assert_eq!(user.id.0, user_id);
        Ok((request, user))
    }

    async fn reject_account_request(&self, id: i64, decided_by: &str, reason: &str, at: Seconds) -> DbResult<AccountRequestRow> {
        accounts::reject(&self.pool, id, decided_by, reason, at).await
    }

    async fn update_project(&self, name: &str, change: &ProjectChange) -> DbResult<ProjectRow> {
        let mut tx = self.begin_write().await?;
        accounts::update_project_in(&mut tx, name, change).await?;
        tx.commit().await.map_err(db)?;
        self.list_projects()
            .await?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| DbError::NotFound { what: "project", name: name.into() })
    }

    async fn set_project_member(&self, project: &str, user: &str, member: bool) -> DbResult<ProjectRow> {
        let mut tx = self.begin_write().await?;
        accounts::set_member_in(&mut tx, project, user, member).await?;
        tx.commit().await.map_err(db)?;
        self.list_projects()
            .await?
            .into_iter()
            .find(|p| p.name == project)
            .ok_or_else(|| DbError::NotFound { what: "project", name: project.into() })
    }

    async fn insert_audit(&self, at: Seconds, actor: &str, action: &str, target: &str, detail: &str) -> DbResult<()> {
        usage::insert_audit(&self.pool, at, actor, action, target, detail).await
    }

    async fn audit_log(&self, filter: &AuditFilter) -> DbResult<Vec<AuditRow>> {
        usage::audit_log(&self.pool, filter).await
    }

    async fn insert_usage_records(&self, records: &[UsageRecordRow]) -> DbResult<()> {
        let mut tx = self.begin_write().await?;
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
        usage::booked_seconds(&self.pool, project, from, to, except).await
    }

    async fn record_power(&self, node: NodeId, state: &str, source: &str, now: Seconds) -> DbResult<()> {
        sqlx::query("UPDATE nodes SET power_state = ?, power_source = ?, power_observed_at = ? WHERE id = ?")
            .bind(state)
            .bind(source)
            .bind(now)
            .bind(node.0)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }
}
