//! The SQLite datastore (the default, embedded backend).
//!
//! Writers that read then write (`insert_lease`, extensions, imports) run in
//! `BEGIN IMMEDIATE` transactions, so SQLite serialises them; the overlap
//! triggers of the schema refuse double booking even if application code
//! were wrong. The schema comes only from `migrations/` (this crate's).
//!
//! # Checked queries
//!
//! Every query is one of sqlx's checked macros (`query!`, `query_as!`,
//! `query_scalar!`), checked at build time against the offline data in
//! `store-sqlite/.sqlx` (no database needed to build;
//! `scripts/sqlx-prepare.sh` describes them against a throw-away file with
//! `migrations/` applied, and CI checks the data is current). The tidy test
//! `store_queries_are_checked_at_build_time` keeps it so; the only
//! `sqlx::raw_sql` left runs literal maintenance statements (`VACUUM`,
//! `PRAGMA wal_checkpoint`, whose answer has no column types to describe).
//! A lease's and an operation's columns are listed once for both stores
//! (`select_leases!`, `select_operations!` in `ferrum_store::raw`). The
//! pattern (the one `ferrum-store-postgres` follows):
//! - Rows decode into structs with named fields: `query!`'s anonymous record,
//!   or `query_as!(RawX, ...)` into a `RawX` of this module with a
//!   `TryFrom<RawX>` (or `From`) to the store's row; the query names each
//!   column (`n.name AS node_name`), nothing is read by position. Model enums
//!   bind as `.as_str()` and read back with `parse_name`, or through their
//!   sqlx type mapping named in the query (`l.state AS "state:
//!   ferrum_model::lease::LeaseState"`, which lets a query fill a store row
//!   directly); an unknown name is `DbError::Corrupt` either way. The macros take a string literal, not a `const`: a
//!   select shared by several functions is written out in each (the `RawX`
//!   keeps them in step: a missing column fails the build).
//! - Nullability comes from SQLite's query plan (`EXPLAIN`), mostly as
//!   declared: a `NOT NULL` column is non-null through an inner join,
//!   nullable through a `LEFT JOIN`; `COUNT(*)`, comparisons of `NOT NULL`
//!   columns and `COALESCE(x, 0)` are non-null; `MAX(..)` and a scalar
//!   subquery are nullable. What the plan does not show is "unknown", which
//!   the macros read as nullable (`Option<_>`): above all the new rowid of an
//!   `INSERT ... RETURNING id` (its other columns, and the columns of an
//!   `UPDATE`'s or `DELETE`'s `RETURNING`, follow the schema). So an insert
//!   returns `RETURNING id AS "id!"` (`"col!"`: non-null). `"col?"` forces
//!   nullable, for a column the plan calls non-null that can be null; none
//!   needed so far.
//! - A column read as non-null is decoded without a NULL check: SQLite's
//!   decoders read a NULL as `""` or `0`, with no error (`try_get` refused
//!   it). So `"col!"` only where NULL cannot be stored; where the schema
//!   allows it, read the `Option` and make `None` a `DbError::Corrupt`.
//!   Beware a `TEXT PRIMARY KEY` without `NOT NULL`: SQLite allows NULL in
//!   any primary key but an `INTEGER` one, and the macros say so
//!   (`node_macs.mac`, `agent_tokens.token_sha256`: `Option<String>`).
//! - Types are SQLite's storage classes: `INTEGER` is `i64`, `TEXT` is
//!   `String`; a field is named after the column or its alias (`l."end"` is
//!   `end`; give an aggregate one: `COUNT(*) AS count`). A boolean expression
//!   (`u.role = 'admin'`, `COUNT(*) > 0`) is an `INTEGER`: name it
//!   `"owner_is_admin: bool"`. A bare parameter selected back
//!   (`SELECT ? AS x`) has type `NULL` and fails to build without
//!   `AS "x: i64"`.
//! - Parameters are not typed by SQLite: the macros check only how many there
//!   are, and that each argument encodes as an SQLite value. Numbered
//!   parameters count by their highest number: `?1` used twice takes one
//!   argument (`list_leases`, `leases_needing_action`). A set binds as one
//!   JSON array text, as before (`IN (SELECT value FROM json_each(?))` with
//!   `names::name_set`); the columns selected beside it are inferred as
//!   usual.
//! - An autocommit `INSERT ... RETURNING` still runs with `fetch_all` and
//!   `only_row` (the WAL hook fires only when a statement steps to its end;
//!   see the tidy test `sqlite_autocommit_writes_run_to_their_end`); inside a
//!   transaction `fetch_one` is fine.
//! - A changed query or migration needs `scripts/sqlx-prepare.sh` and the new
//!   `.sqlx` committed: the build fails on a query it has no data for, and
//!   `--check` in CI on data a migration made stale.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, SqlitePool, Transaction};

use ferrum_model::import::{ImportAction, import_action};
use ferrum_model::{
    AccountRequestInput, AccountRequestState, AgentCommandState, BootTarget, LeaseId, LeaseState, NodeId, NodePolicy, OperationKind,
    OperationState, PowerOperation, PowerRequestState, ProjectId, ResetOutcome, Seconds, UserId, lease, properties, tokens,
};
use ferrum_store::*;
use names::name_set;

/// [`select_leases!`] with SQLite's aggregate of each lease's nodes.
macro_rules! leases_where {
    ($rest:literal $(, $arg:expr)* $(,)?) => {
        select_leases!(
            "(SELECT json_group_array(json_array(ln.node_id, n.name) ORDER BY ln.position)
              FROM lease_nodes ln JOIN nodes n ON n.id = ln.node_id WHERE ln.lease_id = l.id)",
            $rest $(, $arg)*
        )
    };
}

mod accounts;
mod agents;
mod commits;
mod environments;
mod leases;
mod names;
mod nodes;
mod notifications;
mod operations;
mod power;
mod privacy;
mod replicas;
mod usage;
mod web;

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
    sqlx_error(e)
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
    let stored = sqlx::query_scalar!("SELECT key_fingerprint FROM meta WHERE id = 1").fetch_one(&mut *tx).await.map_err(db)?;
    check_fingerprint(stored.as_deref(), key)?;
    if stored.is_none() {
        let fingerprint = key.fingerprint();
        sqlx::query!("UPDATE meta SET key_fingerprint = ? WHERE id = 1", fingerprint).execute(&mut *tx).await.map_err(db)?;
    }
    let rows = sqlx::query!(r#"SELECT id, name, bmc_url AS "bmc_url!" FROM nodes WHERE bmc_url IS NOT NULL"#)
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
    let mut sealed = 0;
    for row in rows.into_iter().filter(|r| !ferrum_store::secrets::is_sealed(&r.bmc_url)) {
        let value = seal_bmc(key, &row.name, &Secret(row.bmc_url))?;
        sqlx::query!("UPDATE nodes SET bmc_url = ? WHERE id = ?", value, row.id).execute(&mut *tx).await.map_err(db)?;
        sealed += 1;
    }
    tx.commit().await.map_err(db)?;
    Ok(sealed)
}

/// See `db::recorded_key_fingerprint` (the controller's): read-only, no migrations.
pub async fn recorded_key_fingerprint(url: &str) -> DbResult<Option<String>> {
    let options = SqliteConnectOptions::from_str(url).map_err(DbError::Sqlx)?.read_only(true);
    let mut conn = sqlx::ConnectOptions::connect(&options).await.map_err(DbError::Sqlx)?;
    // A database of an older ferrumd may not have the column yet.
    let has_column =
        sqlx::query_scalar!(r#"SELECT COUNT(*) > 0 AS "has: bool" FROM pragma_table_info('meta') WHERE name = 'key_fingerprint'"#)
            .fetch_one(&mut conn)
            .await
            .map_err(db)?;
    if !has_column {
        return Ok(None);
    }
    sqlx::query_scalar!("SELECT key_fingerprint FROM meta WHERE id = 1").fetch_optional(&mut conn).await.map_err(db).map(Option::flatten)
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `url` (`sqlite://PATH` or
    /// `sqlite::memory:`), runs the migrations and adopts `key` (see
    /// `db::open`).
    pub async fn open(url: &str, key: SecretKey) -> DbResult<Self> {
        let pool = Self::migrated_pool(url).await?;
        let sealed = adopt_key(&pool, &key).await?;
        if sealed > 0 {
            // The plaintext is gone from the rows; rewrite the file and
            // empty the WAL so no old page keeps it either.
            sqlx::raw_sql("VACUUM").execute(&pool).await.map_err(db)?;
            sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await.map_err(db)?;
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
    pub async fn migrated_pool(url: &str) -> DbResult<SqlitePool> {
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
        sqlx::migrate!("./migrations").run(&pool).await.map_err(DbError::Migrate)?;
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
        let generation = Self::generation_in(tx).await?;
        if generation == expected { Ok(()) } else { Err(DbError::StaleCalendar) }
    }

    async fn generation_in(tx: &mut Transaction<'static, Sqlite>) -> DbResult<i64> {
        sqlx::query_scalar!("SELECT calendar_generation FROM meta WHERE id = 1").fetch_one(&mut **tx).await.map_err(db)
    }

    async fn insert_event(tx: &mut Transaction<'static, Sqlite>, node: NodeId, e: &NewEvent) -> DbResult<()> {
        sqlx::query!(
            "INSERT INTO node_events (node_id, at, actor, from_state, to_state, reason) VALUES (?, ?, ?, ?, ?, ?)",
            node.0,
            e.at,
            e.actor,
            e.from_shown,
            e.to_shown,
            e.reason
        )
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
        let properties = to_json(&properties::effective(&node.properties, &node.admin_properties));
        let admin_properties = to_json(&node.admin_properties);
        let id = sqlx::query_scalar!(
            r#"INSERT INTO nodes (name, site, cluster, ip, bmc_url, state, policy, properties, admin_properties, reference,
                                  reference_sha256, created_at, updated_at)
               VALUES (?1, ?2, ?3, ?4, ?5, 'enrolling', 'in_service', ?6, ?7, ?8, ?9, ?10, ?10) RETURNING id AS "id!""#,
            node.name,
            node.site,
            node.cluster,
            node.ip,
            bmc_url,
            properties,
            admin_properties,
            node.reference,
            node.reference_sha256,
            event.at
        )
        .fetch_one(&mut **tx)
        .await
        .map_err(|e| if is_unique_violation(&e) { DbError::AlreadyExists { what: "node", name: node.name.clone() } } else { db(e) })?;
        Self::insert_macs(tx, NodeId(id), &node.macs).await?;
        Self::insert_event(tx, NodeId(id), event).await?;
        Ok(NodeId(id))
    }

    async fn insert_macs(tx: &mut Transaction<'static, Sqlite>, node: NodeId, macs: &[String]) -> DbResult<()> {
        for (position, mac) in macs.iter().enumerate() {
            let position = i64::try_from(position).unwrap_or(i64::MAX);
            sqlx::query!("INSERT INTO node_macs (mac, node_id, position) VALUES (?, ?, ?)", mac, node.0, position)
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
        let updated = sqlx::query!(
            "UPDATE leases SET state = ?, reason = COALESCE(?, reason), updated_at = ? WHERE id = ? AND state = ?",
            to.as_str(),
            reason,
            now,
            id.0,
            from.as_str()
        )
        .execute(&mut **tx)
        .await
        .map_err(db)?;
        if updated.rows_affected() == 0 {
            return Err(DbError::Raced { what: "lease" });
        }
        match lease::use_change(from, to) {
            lease::UseChange::None => {}
            lease::UseChange::Begins => {
                sqlx::query!("UPDATE leases SET started_at = ? WHERE id = ?", now, id.0).execute(&mut **tx).await.map_err(db)?;
            }
            lease::UseChange::Ends => {
                // Account for its use before the cut.
                usage::record_lease_usage(tx, id, now).await?;
                sqlx::query!("UPDATE leases SET ended_at = ? WHERE id = ?", now, id.0).execute(&mut **tx).await.map_err(db)?;
            }
        }
        match change {
            AllocationChange::Keep => {}
            AllocationChange::Drop => {
                sqlx::query!("DELETE FROM lease_nodes WHERE lease_id = ?", id.0).execute(&mut **tx).await.map_err(db)?;
            }
            AllocationChange::CutAt(t) => Self::cut_allocation(tx, id, t).await?,
        }
        Ok(())
    }

    /// Writes what [`lease::cut_at`] decides for the lease's rows at `t`.
    async fn cut_allocation(tx: &mut Transaction<'static, Sqlite>, id: LeaseId, t: Seconds) -> DbResult<()> {
        let span = sqlx::query!(r#"SELECT start, "end" FROM leases WHERE id = ?"#, id.0).fetch_one(&mut **tx).await.map_err(db)?;
        let rows = sqlx::query!(r#"SELECT node_id, start, "end" FROM lease_nodes WHERE lease_id = ?"#, id.0)
            .fetch_all(&mut **tx)
            .await
            .map_err(db)?;
        let rows: Vec<lease::Allocation> =
            rows.into_iter().map(|r| lease::Allocation { node: NodeId(r.node_id), start: r.start, end: r.end }).collect();
        let cut = lease::cut_at((span.start, span.end), &rows, t);
        let ids = |nodes: &[NodeId]| serde_json::Value::from(nodes.iter().map(|n| n.0).collect::<Vec<_>>()).to_string();
        if !cut.removed.is_empty() {
            let removed = ids(&cut.removed);
            sqlx::query!("DELETE FROM lease_nodes WHERE lease_id = ? AND node_id IN (SELECT value FROM json_each(?))", id.0, removed)
                .execute(&mut **tx)
                .await
                .map_err(db)?;
        }
        if !cut.shortened.is_empty() {
            let shortened = ids(&cut.shortened);
            sqlx::query!(
                r#"UPDATE lease_nodes SET "end" = ? WHERE lease_id = ? AND node_id IN (SELECT value FROM json_each(?))"#,
                t,
                id.0,
                shortened
            )
            .execute(&mut **tx)
            .await
            .map_err(db)?;
        }
        if let Some(end) = cut.lease_end {
            sqlx::query!(r#"UPDATE leases SET "end" = ? WHERE id = ?"#, end, id.0).execute(&mut **tx).await.map_err(db)?;
        }
        Ok(())
    }

    async fn agent_command(&self, id: i64) -> DbResult<AgentCommandRow> {
        let row = sqlx::query_as!(
            RawCommand,
            "SELECT id, node_id, action, requested_by, state, generation, done_bytes, total_bytes, error, created_at, updated_at \
             FROM agent_commands WHERE id = ?",
            id
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        row.try_into()
    }

    async fn node_rows(&self, rows: Vec<RawNode>) -> DbResult<Vec<NodeRow>> {
        let mut nodes = rows.into_iter().map(RawNode::into_row).collect::<DbResult<Vec<_>>>()?;
        for node in &mut nodes {
            open_bmc(&self.key, node)?;
        }
        let macs = sqlx::query!("SELECT node_id, mac FROM node_macs ORDER BY node_id, position").fetch_all(&self.pool).await.map_err(db)?;
        let index: std::collections::HashMap<i64, usize> = nodes.iter().enumerate().map(|(i, n)| (n.id.0, i)).collect();
        for r in macs {
            if let Some(&i) = index.get(&r.node_id) {
                let mac = stored_mac(r.mac, &nodes[i].name)?;
                nodes[i].macs.push(mac);
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
        if let Err(e) = sqlx::raw_sql("PRAGMA wal_checkpoint(PASSIVE)").execute(&pool).await {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
    let _ = sqlx::raw_sql("PRAGMA wal_checkpoint(TRUNCATE)").execute(&pool).await;
    pool.close().await;
}

/// A MAC as `node_macs` stores it: its `TEXT PRIMARY KEY` is nullable to
/// SQLite, a NULL there is corrupt.
fn stored_mac(mac: Option<String>, node: &str) -> DbResult<String> {
    mac.ok_or_else(|| DbError::Corrupt(format!("a MAC of node '{node}' is NULL")))
}

/// Inserts a running operation inside `tx`; a second running operation on
/// the node violates the partial unique index and reads as `Raced`.
async fn insert_operation_in(tx: &mut Transaction<'static, Sqlite>, op: &NewOperation, deployment: Option<i64>) -> DbResult<i64> {
    let history = serde_json::json!([[op.phase.as_str(), op.now_ms]]).to_string();
    sqlx::query_scalar!(
        r#"INSERT INTO node_operations (node_id, kind, deployment_id, lease_id, state, phase, attempt, phase_started_ms, deadline_ms,
                                        history, created_ms)
           VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?) RETURNING id AS "id!""#,
        op.node.0,
        op.kind.as_str(),
        deployment,
        op.lease.map(|l| l.0),
        OperationState::Running.as_str(),
        op.phase.as_str(),
        op.now_ms,
        op.deadline_ms,
        history,
        op.now_ms
    )
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| if is_unique_violation(&e) { DbError::Raced { what: "node's running operation" } } else { db(e) })
}

/// A boot host as its queries select it (`n.id AS node_id`).
struct RawBootHost {
    /// A `TEXT PRIMARY KEY`, nullable to SQLite.
    mac: Option<String>,
    node_id: i64,
    name: String,
    ip: Option<String>,
    boot_target: String,
}

impl RawBootHost {
    fn into_row(self) -> DbResult<BootHostRow> {
        Ok(BootHostRow {
            mac: stored_mac(self.mac, &self.name)?,
            node: NodeId(self.node_id),
            name: self.name,
            ip: self.ip,
            boot_target: boot_target(&self.boot_target)?,
        })
    }
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
    let rows = sqlx::query!(
        "SELECT p.id, p.name FROM project_members m JOIN projects p ON p.id = m.project_id WHERE m.user_id = ? ORDER BY p.name",
        user
    )
    .fetch_all(pool)
    .await
    .map_err(db)?;
    Ok(rows.into_iter().map(|r| (ProjectId(r.id), r.name)).collect())
}

impl SqliteStore {
    /// A user from a [`RawUser`], with their projects.
    async fn user_from_raw(&self, r: RawUser) -> DbResult<UserRow> {
        let projects = user_projects(&self.pool, r.id).await?.into_iter().map(|(_, n)| n).collect();
        Ok(r.into_row(projects))
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
