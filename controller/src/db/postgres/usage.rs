//! PostgreSQL side of usage accounting: writing usage records with their
//! monthly rollups, and the usage queries. The arithmetic lives in
//! [`crate::model::usage`]; the queries mirror the SQLite store's.

use std::collections::BTreeMap;

use sqlx::{PgConnection, PgPool};

use super::{db, lease_type};
use crate::db::{DbResult, UsageRecordRow, UsageScope};
use crate::model::usage::{self, Dimension, RecordUse, Total};
use crate::model::{LeaseId, NodeId, Seconds};

struct RawRecord {
    id: i64,
    lease_id: i64,
    node_id: i64,
    user_name: String,
    project_name: Option<String>,
    node_name: String,
    site: String,
    cluster: String,
    gpu_model: Option<String>,
    gpu_count: i64,
    lease_type: String,
    reserved_start: i64,
    reserved_end: i64,
    start: i64,
    end: i64,
    recorded_at: i64,
}

impl RawRecord {
    fn into_row(self) -> DbResult<UsageRecordRow> {
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

/// Adds records to the monthly rollups and the longest-record bound.
async fn add_to_rollups(tx: &mut PgConnection, records: &[UsageRecordRow]) -> DbResult<()> {
    let sums = usage::rollup(records.iter().map(|r| RecordUse {
        user: &r.user,
        project: r.project.as_deref(),
        cluster: &r.cluster,
        gpu_model: r.gpu_model.as_deref(),
        gpu_count: r.gpu_count,
        start: r.start,
        end: r.end,
    }));
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
/// allocation is cut). Only nodes the lease really took count.
pub(super) async fn record_lease_usage(tx: &mut PgConnection, lease: LeaseId, now: Seconds) -> DbResult<()> {
    let rows = sqlx::query_as!(
        RawRecord,
        r#"INSERT INTO usage_records (lease_id, node_id, user_name, project_name, node_name, site, cluster, gpu_model, gpu_count,
               lease_type, reserved_start, reserved_end, start, "end", recorded_at)
           SELECT lease_id, node_id, user_name, project_name, node_name, site, cluster, gpu_model, gpu_count, lease_type,
                  reserved_start, reserved_end, start, GREATEST(start, LEAST($1, reserved_end)), $1
           FROM (SELECT l.id AS lease_id, n.id AS node_id, u.name AS user_name, p.name AS project_name, n.name AS node_name,
                        n.site, n.cluster, n.properties::jsonb ->> 'gpu_model' AS gpu_model,
                        CASE WHEN jsonb_typeof(n.properties::jsonb -> 'gpu_count') = 'number'
                             THEN (n.properties::jsonb ->> 'gpu_count')::numeric::bigint ELSE 0 END AS gpu_count,
                        l.lease_type, ln.start AS reserved_start, ln."end" AS reserved_end,
                        GREATEST(ln.start, COALESCE(l.started_at, ln.start)) AS start
                 FROM lease_nodes ln JOIN leases l ON l.id = ln.lease_id JOIN users u ON u.id = l.owner_id
                      LEFT JOIN projects p ON p.id = l.project_id JOIN nodes n ON n.id = ln.node_id AND n.lease_id = l.id
                 WHERE l.id = $2) AS used
           WHERE start < $1
           ORDER BY node_id
           RETURNING id, lease_id, node_id, user_name, project_name, node_name, site, cluster, gpu_model, gpu_count, lease_type,
                     reserved_start, reserved_end, start, "end", recorded_at"#,
        now,
        lease.0
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(db)?;
    let records = rows.into_iter().map(RawRecord::into_row).collect::<DbResult<Vec<_>>>()?;
    add_to_rollups(tx, &records).await
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

pub(super) async fn totals(pool: &PgPool, dimension: Dimension, scope: &UsageScope, now: Seconds) -> DbResult<Vec<Total>> {
    let mut sums: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut add = |rows: Vec<(String, i64, i64)>| {
        for (key, node, gpu) in rows {
            let sum = sums.entry(key).or_default();
            sum.0 += node;
            sum.1 += gpu;
        }
    };
    let projects = scope.projects.as_deref();
    let dim = dimension.as_str();
    let plan = usage::plan_window(scope.from, scope.to);
    if let Some((m0, m1)) = plan.months {
        let rows = sqlx::query!(
            r#"SELECT key, SUM(node_seconds)::bigint AS "node!", SUM(gpu_seconds)::bigint AS "gpu!" FROM usage_rollups
               WHERE dimension = $1 AND period >= $2 AND period < $3 AND ($4::text[] IS NULL OR project = ANY($4))
               GROUP BY key"#,
            dim,
            m0,
            m1,
            projects
        )
        .fetch_all(pool)
        .await
        .map_err(db)?;
        add(rows.into_iter().map(|r| (r.key, r.node, r.gpu)).collect());
    }
    if !plan.raw.is_empty() {
        let longest = longest_record(pool).await?;
        for (a, b) in &plan.raw {
            // Clipped sums over the records of the stretch [a, b).
            let rows = sqlx::query!(
                r#"SELECT CASE $5 WHEN 'user' THEN user_name WHEN 'project' THEN COALESCE(project_name, '')
                                  WHEN 'cluster' THEN cluster ELSE COALESCE(gpu_model, '') END AS "key!",
                          SUM(LEAST("end", $2) - GREATEST(start, $1))::bigint AS "node!",
                          SUM((LEAST("end", $2) - GREATEST(start, $1)) * gpu_count)::bigint AS "gpu!"
                   FROM usage_records
                   WHERE start >= $3 AND start < $2 AND "end" > $1
                     AND ($4::text[] IS NULL OR COALESCE(project_name, '') = ANY($4))
                   GROUP BY 1"#,
                a,
                b,
                a.saturating_sub(longest),
                projects,
                dim
            )
            .fetch_all(pool)
            .await
            .map_err(db)?;
            add(rows.into_iter().map(|r| (r.key, r.node, r.gpu)).collect());
        }
    }
    // Leases running now, up to now.
    let live_to = scope.to.min(now);
    if scope.from < live_to {
        let rows = sqlx::query!(
            r#"WITH live AS (
                 SELECT u.name AS user_name, p.name AS project_name, n.cluster,
                        n.properties::jsonb ->> 'gpu_model' AS gpu_model,
                        CASE WHEN jsonb_typeof(n.properties::jsonb -> 'gpu_count') = 'number'
                             THEN (n.properties::jsonb ->> 'gpu_count')::numeric::bigint ELSE 0 END AS gpu_count,
                        GREATEST(ln.start, COALESCE(l.started_at, ln.start)) AS start,
                        GREATEST(GREATEST(ln.start, COALESCE(l.started_at, ln.start)), LEAST($3, ln."end")) AS "end"
                 FROM lease_nodes ln JOIN leases l ON l.id = ln.lease_id JOIN users u ON u.id = l.owner_id
                      LEFT JOIN projects p ON p.id = l.project_id JOIN nodes n ON n.id = ln.node_id AND n.lease_id = l.id
                 WHERE l.state = ANY($6) AND l.started_at IS NOT NULL)
               SELECT CASE $5 WHEN 'user' THEN user_name WHEN 'project' THEN COALESCE(project_name, '')
                                 WHEN 'cluster' THEN cluster ELSE COALESCE(gpu_model, '') END AS "key!",
                      SUM(LEAST("end", $2) - GREATEST(start, $1))::bigint AS "node!",
                      SUM((LEAST("end", $2) - GREATEST(start, $1)) * gpu_count)::bigint AS "gpu!"
               FROM live
               WHERE start < $2 AND "end" > $1 AND ($4::text[] IS NULL OR COALESCE(project_name, '') = ANY($4))
               GROUP BY 1"#,
            scope.from,
            live_to,
            now,
            projects,
            dim,
            &super::names(crate::model::lease::RUNNING.map(crate::model::LeaseState::as_str))
        )
        .fetch_all(pool)
        .await
        .map_err(db)?;
        add(rows.into_iter().map(|r| (r.key, r.node, r.gpu)).collect());
    }
    Ok(sums.into_iter().map(|(key, (node_seconds, gpu_seconds))| Total { key, node_seconds, gpu_seconds }).collect())
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
