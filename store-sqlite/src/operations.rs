//! The SQLite store: deployments and node operations (the operations engine's rows), and the SSH
//! host keys they record.

use super::*;

#[async_trait]
impl OperationStore for SqliteStore {
    async fn insert_deployment(&self, d: &NewDeployment, operations: &[NewOperation]) -> DbResult<i64> {
        let mut tx = self.begin_write().await?;
        let id = sqlx::query_scalar!(
            r#"INSERT INTO deployments (lease_id, environment, environment_version, spec, requested_by, created_at,
                                        environment_id, environment_owner, image_sha256, error)
               VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id AS "id!""#,
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
             environment_id, environment_owner, image_sha256, error FROM deployments WHERE id = ?",
            id
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .ok_or_else(|| DbError::NotFound { what: "deployment", name: id.to_string() })?;
        let ops = select_operations!(r#"WHERE o.deployment_id = ? ORDER BY n.name"#, id).fetch_all(&self.pool).await.map_err(db)?;
        Ok((row.into(), ops.into_iter().map(TryInto::try_into).collect::<DbResult<_>>()?))
    }

    async fn lease_deployments(&self, lease: LeaseId) -> DbResult<Vec<DeploymentRow>> {
        let rows = sqlx::query_as!(
            RawDeployment,
            "SELECT id, lease_id, environment, environment_version, spec, requested_by, created_at, \
             environment_id, environment_owner, image_sha256, error FROM deployments \
             WHERE lease_id = ? ORDER BY id",
            lease.0
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.into_iter().map(Into::into).collect())
    }

    async fn deployment_spec(&self, id: i64) -> DbResult<String> {
        sqlx::query_scalar!("SELECT spec FROM deployments WHERE id = ?", id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| DbError::NotFound { what: "deployment", name: id.to_string() })
    }

    async fn deploy_leases_without_deployment(&self) -> DbResult<Vec<LeaseId>> {
        let ids = sqlx::query_scalar!(
            "SELECT l.id FROM leases l WHERE l.state = ? AND l.deploy IS NOT NULL \
             AND NOT EXISTS (SELECT 1 FROM deployments d WHERE d.lease_id = l.id) ORDER BY l.id",
            LeaseState::Active.as_str()
        )
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
        let rows = select_operations!(r#"WHERE o.state = ? ORDER BY o.id"#, OperationState::Running.as_str())
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn operation(&self, id: i64) -> DbResult<OperationRow> {
        let row = select_operations!(r#"WHERE o.id = ?"#, id)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| DbError::NotFound { what: "node operation", name: id.to_string() })?;
        row.try_into()
    }

    async fn latest_operation(&self, node: NodeId, kind: OperationKind) -> DbResult<Option<OperationRow>> {
        let row = select_operations!(r#"WHERE o.node_id = ? AND o.kind = ? ORDER BY o.id DESC LIMIT 1"#, node.0, kind.as_str())
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        row.map(TryInto::try_into).transpose()
    }

    async fn update_operation(&self, r: &OperationRow) -> DbResult<bool> {
        let done = sqlx::query!(
            "UPDATE node_operations SET state = ?, phase = ?, attempt = ?, phase_started_ms = ?, deadline_ms = ?, data = ?, \
             history = ?, message = ?, outcome = ?, controller_ms = ?, finished_ms = ?, version = version + 1 \
             WHERE id = ? AND state = ? AND version = ?",
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

    async fn set_ssh_host_key(&self, node: NodeId, key: Option<&str>) -> DbResult<()> {
        sqlx::query!("UPDATE nodes SET ssh_host_key = ? WHERE id = ?", key, node.0).execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    async fn ssh_host_key(&self, node: NodeId) -> DbResult<Option<String>> {
        let key =
            sqlx::query_scalar!("SELECT ssh_host_key FROM nodes WHERE id = ?", node.0).fetch_optional(&self.pool).await.map_err(db)?;
        Ok(key.flatten())
    }
}
