//! `ferrumd copy-database`: moves a one-machine ferrum (SQLite) to a
//! service (PostgreSQL) with everything it knows: nodes and their history,
//! users and their tokens, leases, deployments, usage records, the audit
//! log.
//!
//! Both databases are first brought to the current schema by their own
//! migrations; the two schemas have the same tables and columns (PostgreSQL
//! types where SQLite has none: booleans, JSON). The tables are taken from
//! PostgreSQL's catalog, so a table added later is copied without a list
//! to keep in step, in foreign-key order; every row keeps its id, and the
//! id sequences continue after the largest. The source is read in one
//! read transaction (one consistent snapshot: stop `ferrumd` first all the
//! same, so nothing written after the copy is left behind); the target is
//! written in one transaction, so a failed copy leaves it empty. The target
//! must hold no data yet (a fresh database, never served from).
//!
//! Secrets travel as they are stored: BMC credentials sealed with the
//! SQLite `ferrumd`'s key, and that key's fingerprint in `meta`; the copy
//! never sees the key nor a password. The PostgreSQL `ferrumd` must be
//! given the same key file (`secrets_key_file`); another key is refused at
//! start.

use std::collections::{BTreeMap, BTreeSet};

use sqlx::Row;
use sqlx::sqlite::SqliteConnectOptions;

use super::postgres::PgStore;
use super::sqlite::SqliteStore;
use crate::server::redact_url;

/// Source rows read at a time, by default.
pub const DEFAULT_BATCH_ROWS: u32 = 5000;

/// Rows copied, per table, in the order they were copied.
#[derive(Debug, Default)]
pub struct CopyReport {
    pub tables: Vec<(String, u64)>,
    /// The fingerprint of the key that sealed the copied secrets (`None`:
    /// the source was never opened by a `ferrumd` with a key).
    pub key_fingerprint: Option<String>,
}

/// One column of the target, and how its values travel.
#[derive(Debug)]
struct Column {
    name: String,
    /// PostgreSQL's type name, the value's cast on insert.
    pg_type: String,
    kind: Kind,
}

#[derive(Debug, Clone, Copy)]
enum Kind {
    Integer,
    Boolean,
    Real,
    Text,
}

fn kind(pg_type: &str) -> Option<Kind> {
    match pg_type {
        "bigint" | "integer" | "smallint" => Some(Kind::Integer),
        "boolean" => Some(Kind::Boolean),
        "double precision" | "real" => Some(Kind::Real),
        "text" | "character varying" | "json" | "jsonb" => Some(Kind::Text),
        _ => None,
    }
}

/// Copies every table of the SQLite database at `from` into the empty
/// PostgreSQL database at `to`, reading `batch_rows` rows at a time.
pub async fn sqlite_to_postgres(from: &str, to: &str, batch_rows: u32) -> anyhow::Result<CopyReport> {
    anyhow::ensure!(batch_rows > 0, "--batch-rows must be at least 1");
    anyhow::ensure!(from.starts_with("sqlite:"), "--from must be an SQLite URL (sqlite://PATH), not '{}'", redact_url(from));
    anyhow::ensure!(
        to.starts_with("postgres://") || to.starts_with("postgresql://"),
        "--to must be a PostgreSQL URL (postgres://...), not '{}'",
        redact_url(to)
    );
    // Opening would create a missing file: a mistyped path must not copy
    // an empty database.
    let options: SqliteConnectOptions = from.parse().map_err(|e| anyhow::anyhow!("--from {from}: {e}"))?;
    let path = options.get_filename();
    anyhow::ensure!(path.is_file(), "--from: no SQLite database at {}", path.display());
    let source = SqliteStore::migrated_pool(from).await.map_err(|e| anyhow::anyhow!("source {}: {e}", redact_url(from)))?;
    let target_options = to.parse().map_err(|e| anyhow::anyhow!("--to {}: {e}", redact_url(to)))?;
    let target = PgStore::migrated_pool(&target_options).await.map_err(|e| anyhow::anyhow!("target {}: {e}", redact_url(to)))?;
    let pg = &target;

    let tables = tables_in_order(pg).await?;
    let mut held = Vec::new();
    for table in &tables {
        // `meta` is the one row the migrations write.
        if table != "meta" {
            let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT COUNT(*) FROM \"{table}\""))).fetch_one(pg).await?;
            if n > 0 {
                held.push(format!("{table}: {n}"));
            }
        }
    }
    anyhow::ensure!(
        held.is_empty(),
        "the target database already holds data ({}): copy into a fresh database, before any ferrumd has served from it",
        held.join(", ")
    );

    // SQLite-only tables would be left behind: there must be none.
    let source_tables: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> '_sqlx_migrations'",
    )
    .fetch_all(&source)
    .await?;
    let unknown: Vec<&String> = source_tables.iter().filter(|t| !tables.contains(t)).collect();
    anyhow::ensure!(unknown.is_empty(), "the source has tables the target lacks: {unknown:?}");

    let mut snapshot = source.begin().await?;
    let mut tx = pg.begin().await?;
    let mut report = CopyReport::default();
    for table in &tables {
        let columns = columns(&mut tx, table).await?;
        let names = columns.iter().map(|c| format!("\"{}\"", c.name)).collect::<Vec<_>>().join(", ");
        if table == "meta" {
            sqlx::query("DELETE FROM meta").execute(&mut *tx).await?;
        }
        let casts = columns.iter().enumerate().map(|(i, c)| format!("CAST(${} AS {})", i + 1, c.pg_type)).collect::<Vec<_>>().join(", ");
        let insert = format!("INSERT INTO \"{table}\" ({names}) VALUES ({casts})");
        // Pages of rows in rowid order (keyset), so that a large table
        // (a million usage records) never sits whole in memory. A table
        // without rowids (the monthly rollups, small) is read whole.
        let without_rowid: bool = sqlx::query_scalar("SELECT wr FROM pragma_table_list WHERE schema = 'main' AND name = ?")
            .bind(table)
            .fetch_one(&mut *snapshot)
            .await
            .map_err(|e| anyhow::anyhow!("source table {table}: {e}"))?;
        let page = if without_rowid {
            format!("SELECT NULL, {names} FROM \"{table}\"")
        } else {
            format!("SELECT rowid, {names} FROM \"{table}\" WHERE rowid > ? ORDER BY rowid LIMIT {batch_rows}")
        };
        let (mut after, mut copied) = (i64::MIN, 0u64);
        loop {
            let mut query = sqlx::query(sqlx::AssertSqlSafe(page.clone()));
            if !without_rowid {
                query = query.bind(after);
            }
            let rows = query.fetch_all(&mut *snapshot).await.map_err(|e| anyhow::anyhow!("source table {table}: {e}"))?;
            let Some(last) = rows.last() else { break };
            if !without_rowid {
                after = last.try_get(0)?;
            }
            for row in &rows {
                let mut query = sqlx::query(sqlx::AssertSqlSafe(insert.clone()));
                for (i, c) in columns.iter().enumerate() {
                    let bad = |e: sqlx::Error| anyhow::anyhow!("source {table}.{}: {e}", c.name);
                    query = match c.kind {
                        Kind::Integer => query.bind(row.try_get::<Option<i64>, _>(i + 1).map_err(bad)?),
                        Kind::Boolean => query.bind(row.try_get::<Option<bool>, _>(i + 1).map_err(bad)?),
                        Kind::Real => query.bind(row.try_get::<Option<f64>, _>(i + 1).map_err(bad)?),
                        Kind::Text => query.bind(row.try_get::<Option<String>, _>(i + 1).map_err(bad)?),
                    };
                }
                query.execute(&mut *tx).await.map_err(|e| anyhow::anyhow!("target table {table}: {e}"))?;
            }
            copied += rows.len() as u64;
            if without_rowid {
                break;
            }
        }
        report.tables.push((table.clone(), copied));
    }
    // Ids handed out from now on follow the copied ones.
    let identities: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND is_identity = 'YES'",
    )
    .fetch_all(&mut *tx)
    .await?;
    for (table, column) in identities {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT setval(pg_get_serial_sequence('\"{table}\"', '{column}'), COALESCE(MAX(\"{column}\"), 0) + 1, false) FROM \"{table}\""
        )))
        .execute(&mut *tx)
        .await?;
    }
    report.key_fingerprint =
        sqlx::query_scalar::<_, Option<String>>("SELECT key_fingerprint FROM meta WHERE id = 1").fetch_one(&mut *snapshot).await?;
    tx.commit().await?;
    snapshot.rollback().await?;
    Ok(report)
}

/// The target's tables (but sqlx's own), parents before children.
async fn tables_in_order(pg: &sqlx::PgPool) -> anyhow::Result<Vec<String>> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT tablename::text FROM pg_tables WHERE schemaname = current_schema() AND tablename <> '_sqlx_migrations' ORDER BY tablename",
    )
    .fetch_all(pg)
    .await?;
    let edges: Vec<(String, String)> = sqlx::query_as(
        "SELECT child.relname::text, parent.relname::text FROM pg_constraint c \
         JOIN pg_class child ON child.oid = c.conrelid JOIN pg_class parent ON parent.oid = c.confrelid \
         WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace",
    )
    .fetch_all(pg)
    .await?;
    let mut parents: BTreeMap<&str, BTreeSet<&str>> = names.iter().map(|n| (n.as_str(), BTreeSet::new())).collect();
    for (child, parent) in &edges {
        if child != parent {
            parents.entry(child).or_default().insert(parent);
        }
    }
    let mut order: Vec<String> = Vec::new();
    while order.len() < names.len() {
        let ready: Vec<&str> = parents
            .iter()
            .filter(|(t, ps)| !order.iter().any(|o| o == *t) && ps.iter().all(|p| order.iter().any(|o| o == p)))
            .map(|(t, _)| *t)
            .collect();
        anyhow::ensure!(!ready.is_empty(), "the target schema's foreign keys form a cycle; cannot order the copy");
        order.extend(ready.into_iter().map(str::to_owned));
    }
    Ok(order)
}

async fn columns(tx: &mut sqlx::PgConnection, table: &str) -> anyhow::Result<Vec<Column>> {
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT column_name::text, data_type::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = $1 AND is_generated = 'NEVER' ORDER BY ordinal_position",
    )
    .bind(table)
    .fetch_all(&mut *tx)
    .await?;
    rows.into_iter()
        .map(|(name, pg_type)| match kind(&pg_type) {
            Some(kind) => Ok(Column { name, pg_type, kind }),
            None => Err(anyhow::anyhow!("target column {table}.{name} has type {pg_type}, which the copy does not know")),
        })
        .collect()
}
