//! The SQLite store: deployments and node operations (the operations engine's rows), and the SSH
//! host keys they record.

use super::*;

#[async_trait]
impl OperationStore for SqliteStore {
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
            .bind(OperationState::Running.as_str())
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
                .bind(kind.as_str())
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
        .bind(r.state.as_str())
        .bind(r.phase.as_str())
        .bind(r.attempt)
        .bind(r.phase_started_ms)
        .bind(r.deadline_ms)
        .bind(&r.data)
        .bind(&r.history)
        .bind(&r.message)
        .bind(r.outcome.map(ResetOutcome::as_str))
        .bind(r.controller_ms)
        .bind(r.finished_ms)
        .bind(r.id)
        .bind(OperationState::Running.as_str())
        .bind(r.version)
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
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
}
