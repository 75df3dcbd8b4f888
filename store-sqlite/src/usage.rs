//! SQLite side of usage accounting and the audit log: reading what leases
//! hold, writing usage records with their monthly rollups, the usage
//! queries, and the quota's count of booked node-seconds. The rules (what
//! a lease's use is, the months, the sums) live in [`ferrum_model::usage`].

use super::*;
use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use super::db;
use ferrum_model::lease;
use ferrum_model::usage::{self, Dimension, Total};
use ferrum_model::{LeaseId, NodeId, ProjectId, Seconds};
use ferrum_store::{AuditFilter, AuditRow, DbError, DbResult, HoldingRow, UsageRecordRow, UsageScope, json_value};

/// The columns of a usage record, in `usage_records`' order after `id`.
const RECORD_COLUMNS: &str = r#"lease_id, node_id, user_name, project_name, node_name, site, cluster, gpu_model, gpu_count, lease_type,
    reserved_start, reserved_end, start, "end", recorded_at"#;

/// The nodes leases took (`nodes.lease_id`), with what a usage record
/// keeps of them: `?1` selects one lease, or every running lease when NULL
/// (`?2`: the running lease states, bound with [`running_states`]).
const HOLDINGS: &str = r#"SELECT l.id AS lease_id, n.id AS node_id, u.name AS user_name, p.name AS project_name, n.name AS node_name,
    n.site AS site, n.cluster AS cluster, n.properties -> '$.gpu_model' AS gpu_model, n.properties -> '$.gpu_count' AS gpu_count,
    l.lease_type AS lease_type, ln.start AS reserved_start, ln."end" AS reserved_end, l.started_at AS started_at
FROM lease_nodes ln JOIN leases l ON l.id = ln.lease_id JOIN users u ON u.id = l.owner_id
    LEFT JOIN projects p ON p.id = l.project_id JOIN nodes n ON n.id = ln.node_id AND n.lease_id = l.id
WHERE (?1 IS NOT NULL AND l.id = ?1) OR (?1 IS NULL AND l.state IN (SELECT value FROM json_each(?2)) AND l.started_at IS NOT NULL)
ORDER BY l.id, n.id"#;

async fn holdings<'e, E>(executor: E, lease: Option<LeaseId>) -> DbResult<Vec<HoldingRow>>
where
    E: sqlx::Executor<'e, Database = Sqlite>,
{
    let rows = sqlx::query(HOLDINGS).bind(lease.map(|l| l.0)).bind(running_states()).fetch_all(executor).await.map_err(db)?;
    rows.iter()
        .map(|r| {
            let lease_type: String = r.try_get("lease_type").map_err(db)?;
            Ok(HoldingRow {
                lease_id: LeaseId(r.try_get("lease_id").map_err(db)?),
                node_id: NodeId(r.try_get("node_id").map_err(db)?),
                user: r.try_get("user_name").map_err(db)?,
                project: r.try_get("project_name").map_err(db)?,
                node: r.try_get("node_name").map_err(db)?,
                site: r.try_get("site").map_err(db)?,
                cluster: r.try_get("cluster").map_err(db)?,
                gpu_model: json_value(r.try_get("gpu_model").map_err(db)?, "node property gpu_model")?,
                gpu_count: json_value(r.try_get("gpu_count").map_err(db)?, "node property gpu_count")?,
                lease_type: lease::parse_type(&lease_type).ok_or_else(|| DbError::Corrupt(format!("lease type '{lease_type}'")))?,
                reserved_start: r.try_get("reserved_start").map_err(db)?,
                reserved_end: r.try_get("reserved_end").map_err(db)?,
                started_at: r.try_get("started_at").map_err(db)?,
            })
        })
        .collect()
}

pub(super) async fn running_holdings(pool: &SqlitePool) -> DbResult<Vec<HoldingRow>> {
    holdings(pool, None).await
}

/// The `running` parameter of [`lease_use`].
fn running_states() -> String {
    super::name_set(lease::RUNNING.map(ferrum_model::LeaseState::as_str))
}

fn record_from_row(r: &SqliteRow) -> DbResult<UsageRecordRow> {
    let lease_type: String = r.try_get("lease_type").map_err(db)?;
    Ok(UsageRecordRow {
        id: r.try_get("id").map_err(db)?,
        lease_id: LeaseId(r.try_get("lease_id").map_err(db)?),
        node_id: NodeId(r.try_get("node_id").map_err(db)?),
        user: r.try_get("user_name").map_err(db)?,
        project: r.try_get("project_name").map_err(db)?,
        node: r.try_get("node_name").map_err(db)?,
        site: r.try_get("site").map_err(db)?,
        cluster: r.try_get("cluster").map_err(db)?,
        gpu_model: r.try_get("gpu_model").map_err(db)?,
        gpu_count: r.try_get("gpu_count").map_err(db)?,
        lease_type: lease::parse_type(&lease_type).ok_or_else(|| DbError::Corrupt(format!("lease type '{lease_type}'")))?,
        reserved_start: r.try_get("reserved_start").map_err(db)?,
        reserved_end: r.try_get("reserved_end").map_err(db)?,
        start: r.try_get("start").map_err(db)?,
        end: r.try_get("end").map_err(db)?,
        recorded_at: r.try_get("recorded_at").map_err(db)?,
    })
}

/// Adds records to the monthly rollups and the longest-record bound.
async fn add_to_rollups(tx: &mut Transaction<'static, Sqlite>, records: &[UsageRecordRow]) -> DbResult<()> {
    let sums = usage::rollup(records.iter().map(UsageRecordRow::as_use));
    for (k, (node_seconds, gpu_seconds)) in sums {
        sqlx::query(
            "INSERT INTO usage_rollups (dimension, period, project, key, node_seconds, gpu_seconds) VALUES (?, ?, ?, ?, ?, ?) \
             ON CONFLICT (dimension, period, project, key) DO UPDATE SET \
             node_seconds = node_seconds + excluded.node_seconds, gpu_seconds = gpu_seconds + excluded.gpu_seconds",
        )
        .bind(k.dimension.as_str())
        .bind(k.period)
        .bind(&k.project)
        .bind(&k.key)
        .bind(node_seconds)
        .bind(gpu_seconds)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    if let Some(longest) = records.iter().map(|r| r.end - r.start).max() {
        sqlx::query("UPDATE meta SET usage_max_seconds = MAX(usage_max_seconds, ?) WHERE id = 1")
            .bind(longest)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// Writes the usage records of a lease that stops holding its nodes for
/// its user now (inside the transition's transaction, before its
/// allocation is cut): what [`HoldingRow::record_at`] says of each node it
/// took.
pub(super) async fn record_lease_usage(tx: &mut Transaction<'static, Sqlite>, lease: LeaseId, now: Seconds) -> DbResult<()> {
    let records: Vec<UsageRecordRow> = holdings(&mut **tx, Some(lease)).await?.iter().filter_map(|h| h.record_at(now)).collect();
    insert_records(tx, &records).await
}

pub(super) async fn insert_records(tx: &mut Transaction<'static, Sqlite>, records: &[UsageRecordRow]) -> DbResult<()> {
    for r in records {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO usage_records ({RECORD_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )))
        .bind(r.lease_id.0)
        .bind(r.node_id.0)
        .bind(&r.user)
        .bind(&r.project)
        .bind(&r.node)
        .bind(&r.site)
        .bind(&r.cluster)
        .bind(&r.gpu_model)
        .bind(r.gpu_count)
        .bind(r.lease_type.as_str())
        .bind(r.reserved_start)
        .bind(r.reserved_end)
        .bind(r.start)
        .bind(r.end)
        .bind(r.recorded_at)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    }
    add_to_rollups(tx, records).await
}

/// The SQL expression of a dimension's key over record-shaped rows.
fn key_column(dimension: Dimension) -> &'static str {
    match dimension {
        Dimension::User => "user_name",
        Dimension::Project => "COALESCE(project_name, '')",
        Dimension::Cluster => "cluster",
        Dimension::GpuModel => "COALESCE(gpu_model, '')",
    }
}

/// The projects as a JSON array for `json_each`, or NULL.
fn projects_param(projects: Option<&[String]>) -> Option<String> {
    projects.map(|p| serde_json::Value::from(p.to_vec()).to_string())
}

async fn longest_record(pool: &SqlitePool) -> DbResult<Seconds> {
    sqlx::query_scalar("SELECT usage_max_seconds FROM meta WHERE id = 1").fetch_one(pool).await.map_err(db)
}

pub(super) async fn rollup_sums(
    pool: &SqlitePool,
    dimension: Dimension,
    months: (Seconds, Seconds),
    projects: Option<&[String]>,
) -> DbResult<Vec<Total>> {
    let rows = sqlx::query(
        "SELECT key, SUM(node_seconds), SUM(gpu_seconds) FROM usage_rollups \
         WHERE dimension = ?1 AND period >= ?2 AND period < ?3 AND (?4 IS NULL OR project IN (SELECT value FROM json_each(?4))) \
         GROUP BY key",
    )
    .bind(dimension.as_str())
    .bind(months.0)
    .bind(months.1)
    .bind(projects_param(projects))
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.iter().map(total_from_row).collect()
}

pub(super) async fn record_sums(
    pool: &SqlitePool,
    dimension: Dimension,
    stretch: (Seconds, Seconds),
    projects: Option<&[String]>,
) -> DbResult<Vec<Total>> {
    let longest = longest_record(pool).await?;
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        r#"SELECT {}, SUM(MIN("end", ?2) - MAX(start, ?1)), SUM((MIN("end", ?2) - MAX(start, ?1)) * gpu_count) FROM usage_records
           WHERE start >= ?3 AND start < ?2 AND "end" > ?1
             AND (?4 IS NULL OR COALESCE(project_name, '') IN (SELECT value FROM json_each(?4)))
           GROUP BY 1"#,
        key_column(dimension)
    )))
    .bind(stretch.0)
    .bind(stretch.1)
    .bind(stretch.0.saturating_sub(longest))
    .bind(projects_param(projects))
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.iter().map(total_from_row).collect()
}

fn total_from_row(r: &SqliteRow) -> DbResult<Total> {
    Ok(Total { key: r.try_get(0).map_err(db)?, node_seconds: r.try_get(1).map_err(db)?, gpu_seconds: r.try_get(2).map_err(db)? })
}

pub(super) async fn records(pool: &SqlitePool, scope: &UsageScope, after_id: i64, limit: i64) -> DbResult<Vec<UsageRecordRow>> {
    let longest = longest_record(pool).await?;
    let rows = sqlx::query(
        r#"SELECT * FROM usage_records WHERE start >= ?1 AND start < ?2 AND "end" > ?3 AND id > ?4
             AND (?5 IS NULL OR COALESCE(project_name, '') IN (SELECT value FROM json_each(?5)))
           ORDER BY id LIMIT ?6"#,
    )
    .bind(scope.from.saturating_sub(longest))
    .bind(scope.to)
    .bind(scope.from)
    .bind(after_id)
    .bind(projects_param(scope.projects.as_deref()))
    .bind(limit)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.iter().map(record_from_row).collect()
}

pub(super) async fn booked_seconds(
    pool: &SqlitePool,
    project: ProjectId,
    from: Seconds,
    to: Seconds,
    except: Option<LeaseId>,
) -> DbResult<i64> {
    sqlx::query_scalar(
        r#"SELECT COALESCE(SUM(MIN(ln."end", ?3) - MAX(ln.start, ?2)), 0) FROM lease_nodes ln JOIN leases l ON l.id = ln.lease_id
           WHERE l.project_id = ?1 AND l.lease_type != 'besteffort' AND ln."end" > ?2 AND ln.start < ?3 AND l.id != COALESCE(?4, -1)"#,
    )
    .bind(project.0)
    .bind(from)
    .bind(to)
    .bind(except.map(|l| l.0))
    .fetch_one(pool)
    .await
    .map_err(db)
}

pub(super) async fn insert_audit(pool: &SqlitePool, at: Seconds, actor: &str, action: &str, target: &str, detail: &str) -> DbResult<()> {
    sqlx::query("INSERT INTO audit_log (at, actor, action, target, detail) VALUES (?, ?, ?, ?, ?)")
        .bind(at)
        .bind(actor)
        .bind(action)
        .bind(target)
        .bind(detail)
        .execute(pool)
        .await
        .map_err(db)?;
    Ok(())
}

pub(super) async fn audit_log(pool: &SqlitePool, f: &AuditFilter) -> DbResult<Vec<AuditRow>> {
    let rows = sqlx::query(
        "SELECT id, at, actor, action, target, detail FROM audit_log \
         WHERE (?1 IS NULL OR at >= ?1) AND (?2 IS NULL OR at < ?2) AND (?3 IS NULL OR actor = ?3) \
           AND (?4 IS NULL OR action = ?4) AND (?5 IS NULL OR target = ?5) AND (?6 IS NULL OR id < ?6) \
         ORDER BY id DESC LIMIT ?7",
    )
    .bind(f.from)
    .bind(f.to)
    .bind(&f.actor)
    .bind(&f.action)
    .bind(&f.target)
    .bind(f.before_id)
    .bind(f.limit)
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.iter()
        .map(|r| {
            Ok(AuditRow {
                id: r.try_get(0).map_err(db)?,
                at: r.try_get(1).map_err(db)?,
                actor: r.try_get(2).map_err(db)?,
                action: r.try_get(3).map_err(db)?,
                target: r.try_get(4).map_err(db)?,
                detail: r.try_get(5).map_err(db)?,
            })
        })
        .collect()
}

#[async_trait]
impl UsageStore for SqliteStore {
    async fn insert_usage_records(&self, records: &[UsageRecordRow]) -> DbResult<()> {
        let mut tx = self.begin_write().await?;
        insert_records(&mut tx, records).await?;
        tx.commit().await.map_err(db)
    }

    async fn usage_rollup_sums(
        &self,
        dimension: ferrum_model::usage::Dimension,
        months: (Seconds, Seconds),
        projects: Option<&[String]>,
    ) -> DbResult<Vec<ferrum_model::usage::Total>> {
        rollup_sums(&self.pool, dimension, months, projects).await
    }

    async fn usage_record_sums(
        &self,
        dimension: ferrum_model::usage::Dimension,
        stretch: (Seconds, Seconds),
        projects: Option<&[String]>,
    ) -> DbResult<Vec<ferrum_model::usage::Total>> {
        record_sums(&self.pool, dimension, stretch, projects).await
    }

    async fn running_holdings(&self) -> DbResult<Vec<HoldingRow>> {
        running_holdings(&self.pool).await
    }

    async fn usage_records(&self, scope: &UsageScope, after_id: i64, limit: i64) -> DbResult<Vec<UsageRecordRow>> {
        records(&self.pool, scope, after_id, limit).await
    }

    async fn project_booked_seconds(&self, project: ProjectId, from: Seconds, to: Seconds, except: Option<LeaseId>) -> DbResult<i64> {
        booked_seconds(&self.pool, project, from, to, except).await
    }
}
