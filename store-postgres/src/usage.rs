//! PostgreSQL side of usage accounting: reading what leases hold, writing
//! usage records with their monthly rollups, and the usage queries. The
//! rules (what a lease's use is, the months, the sums) live in
//! [`ferrum_model::usage`]; the queries mirror the SQLite store's.

use super::*;
use sqlx::{PgConnection, PgPool};

use super::db;
use ferrum_model::usage::{self, Dimension, Total};
use ferrum_model::{LeaseId, Seconds};
use ferrum_store::{DbResult, HoldingRow, RawHolding, RawRecord, UsageRecordRow, UsageScope};

/// The nodes leases took (`nodes.lease_id`), with what a usage record
/// keeps of them: one lease, or every running lease (`lease::RUNNING`)
/// when `None`.
async fn holdings(conn: &mut PgConnection, lease: Option<LeaseId>) -> DbResult<Vec<HoldingRow>> {
    let rows = sqlx::query_as!(
        RawHolding,
        r#"SELECT l.id AS lease_id, n.id AS node_id, u.name AS user_name, p.name AS "project_name?", n.name AS node_name,
                  n.site, n.cluster, (n.properties::jsonb -> 'gpu_model')::text AS "gpu_model?",
                  (n.properties::jsonb -> 'gpu_count')::text AS "gpu_count?", l.lease_type,
                  ln.start AS reserved_start, ln."end" AS reserved_end, l.started_at
           FROM lease_nodes ln JOIN leases l ON l.id = ln.lease_id JOIN users u ON u.id = l.owner_id
                LEFT JOIN projects p ON p.id = l.project_id JOIN nodes n ON n.id = ln.node_id AND n.lease_id = l.id
           WHERE ($1::bigint IS NOT NULL AND l.id = $1)
              OR ($1::bigint IS NULL AND l.state = ANY($2) AND l.started_at IS NOT NULL)
           ORDER BY l.id, n.id"#,
        lease.map(|l| l.0),
        &super::names(ferrum_model::lease::RUNNING.map(ferrum_model::LeaseState::as_str))
    )
    .fetch_all(&mut *conn)
    .await
    .map_err(db)?;
    rows.into_iter().map(RawHolding::into_row).collect()
}

pub(super) async fn running_holdings(pool: &PgPool) -> DbResult<Vec<HoldingRow>> {
    let mut conn = pool.acquire().await.map_err(db)?;
    holdings(&mut conn, None).await
}

/// Adds records to the monthly rollups and the longest-record bound.
async fn add_to_rollups(tx: &mut PgConnection, records: &[UsageRecordRow]) -> DbResult<()> {
    let sums = usage::rollup(records.iter().map(UsageRecordRow::as_use));
    for (k, (node_seconds, gpu_seconds)) in sums {
        sqlx::query!(
            "INSERT INTO usage_rollups (dimension, period, project, key, node_seconds, gpu_seconds) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (dimension, period, project, key) DO UPDATE SET \
             node_seconds = usage_rollups.node_seconds + excluded.node_seconds, \
             gpu_seconds = usage_rollups.gpu_seconds + excluded.gpu_seconds",
            k.dimension.as_str(),
            k.period,
            k.project,
            k.key,
            node_seconds,
            gpu_seconds
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    if let Some(longest) = records.iter().map(|r| r.end - r.start).max() {
        sqlx::query!("UPDATE meta SET usage_max_seconds = GREATEST(usage_max_seconds, $1) WHERE id = 1", longest)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    Ok(())
}

/// Writes the usage records of a lease that stops holding its nodes for
/// its user now (inside the transition's transaction, before its
/// allocation is cut): what [`HoldingRow::record_at`] says of each node it
/// took.
pub(super) async fn record_lease_usage(tx: &mut PgConnection, lease: LeaseId, now: Seconds) -> DbResult<()> {
    let records: Vec<UsageRecordRow> = holdings(tx, Some(lease)).await?.iter().filter_map(|h| h.record_at(now)).collect();
    insert_records(tx, &records).await
}

pub(super) async fn insert_records(tx: &mut PgConnection, records: &[UsageRecordRow]) -> DbResult<()> {
    for r in records {
        sqlx::query!(
            r#"INSERT INTO usage_records (lease_id, node_id, user_name, project_name, node_name, site, cluster, gpu_model, gpu_count,
                   lease_type, reserved_start, reserved_end, start, "end", recorded_at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)"#,
            r.lease_id.0,
            r.node_id.0,
            r.user,
            r.project,
            r.node,
            r.site,
            r.cluster,
            r.gpu_model,
            r.gpu_count,
            r.lease_type.as_str(),
            r.reserved_start,
            r.reserved_end,
            r.start,
            r.end,
            r.recorded_at
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    }
    add_to_rollups(tx, records).await
}

async fn longest_record(pool: &PgPool) -> DbResult<Seconds> {
    sqlx::query_scalar!("SELECT usage_max_seconds FROM meta WHERE id = 1").fetch_one(pool).await.map_err(db)
}

pub(super) async fn rollup_sums(
    pool: &PgPool,
    dimension: Dimension,
    months: (Seconds, Seconds),
    projects: Option<&[String]>,
) -> DbResult<Vec<Total>> {
    let rows = sqlx::query!(
        r#"SELECT key, SUM(node_seconds)::bigint AS "node!", SUM(gpu_seconds)::bigint AS "gpu!" FROM usage_rollups
           WHERE dimension = $1 AND period >= $2 AND period < $3 AND ($4::text[] IS NULL OR project = ANY($4))
           GROUP BY key"#,
        dimension.as_str(),
        months.0,
        months.1,
        projects
    )
    .fetch_all(pool)
    .await
    .map_err(db)?;
    Ok(rows.into_iter().map(|r| Total { key: r.key, node_seconds: r.node, gpu_seconds: r.gpu }).collect())
}

pub(super) async fn record_sums(
    pool: &PgPool,
    dimension: Dimension,
    stretch: (Seconds, Seconds),
    projects: Option<&[String]>,
) -> DbResult<Vec<Total>> {
    let longest = longest_record(pool).await?;
    let rows = sqlx::query!(
        r#"SELECT CASE $5 WHEN 'user' THEN user_name WHEN 'project' THEN COALESCE(project_name, '')
                          WHEN 'cluster' THEN cluster ELSE COALESCE(gpu_model, '') END AS "key!",
                  SUM(LEAST("end", $2) - GREATEST(start, $1))::bigint AS "node!",
                  SUM((LEAST("end", $2) - GREATEST(start, $1)) * gpu_count)::bigint AS "gpu!"
           FROM usage_records
           WHERE start >= $3 AND start < $2 AND "end" > $1
             AND ($4::text[] IS NULL OR COALESCE(project_name, '') = ANY($4))
           GROUP BY 1"#,
        stretch.0,
        stretch.1,
        stretch.0.saturating_sub(longest),
        projects,
        dimension.as_str()
    )
    .fetch_all(pool)
    .await
    .map_err(db)?;
    Ok(rows.into_iter().map(|r| Total { key: r.key, node_seconds: r.node, gpu_seconds: r.gpu }).collect())
}

pub(super) async fn records(pool: &PgPool, scope: &UsageScope, after_id: i64, limit: i64) -> DbResult<Vec<UsageRecordRow>> {
    let longest = longest_record(pool).await?;
    let rows = sqlx::query_as!(
        RawRecord,
        r#"SELECT id, lease_id, node_id, user_name, project_name, node_name, site, cluster, gpu_model, gpu_count, lease_type,
                  reserved_start, reserved_end, start, "end", recorded_at
           FROM usage_records WHERE start >= $1 AND start < $2 AND "end" > $3 AND id > $4
             AND ($5::text[] IS NULL OR COALESCE(project_name, '') = ANY($5))
           ORDER BY id LIMIT $6"#,
        scope.from.saturating_sub(longest),
        scope.to,
        scope.from,
        after_id,
        scope.projects.as_deref(),
        limit
    )
    .fetch_all(pool)
    .await
    .map_err(db)?;
    rows.into_iter().map(RawRecord::into_row).collect()
}

#[async_trait]
impl UsageStore for PgStore {
    async fn insert_usage_records(&self, records: &[UsageRecordRow]) -> DbResult<()> {
        let mut tx = self.begin().await?;
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
}
