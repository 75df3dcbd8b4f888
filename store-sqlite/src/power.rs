//! The SQLite store: the power request queue and the power states BMCs reported.

use super::*;

#[async_trait]
impl PowerStore for SqliteStore {
    async fn enqueue_power(&self, node: NodeId, operation: PowerOperation, actor: &str, now: Seconds) -> DbResult<i64> {
        sqlx::query_scalar!(
            r#"INSERT INTO power_requests (node_id, operation, requested_by, requested_at, state) VALUES (?, ?, ?, ?, ?)
               RETURNING id AS "id!""#,
            node.0,
            operation.as_str(),
            actor,
            now,
            PowerRequestState::Queued.as_str()
        )
        // Run to its end: see `only_row`.
        .fetch_all(&self.pool)
        .await
        .and_then(only_row)
        .map_err(db)
    }

    async fn power_request(&self, id: i64) -> DbResult<PowerRequestRow> {
        let row = sqlx::query_as!(
            RawPower,
            r#"SELECT p.id, p.node_id, n.name AS node_name, p.operation, p.requested_by, p.requested_at, p.state, p.finished_at, p.error
               FROM power_requests p JOIN nodes n ON n.id = p.node_id WHERE p.id = ?"#,
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
               FROM power_requests p JOIN nodes n ON n.id = p.node_id WHERE p.state IN (SELECT value FROM json_each(?)) ORDER BY p.id"#,
            name_set(PowerRequestState::PENDING.map(PowerRequestState::as_str))
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn set_power_request_running(&self, id: i64) -> DbResult<()> {
        sqlx::query!("UPDATE power_requests SET state = ? WHERE id = ?", started_power()?.as_str(), id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn cancel_power_request(&self, id: i64, reason: &str, now: Seconds) -> DbResult<bool> {
        let (from, to) = dropped_power()?;
        let done = sqlx::query!(
            "UPDATE power_requests SET state = ?, error = ?, finished_at = ? WHERE id = ? AND state = ?",
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
            "UPDATE power_requests SET state = ?, error = ?, finished_at = ? WHERE node_id = ? AND state = ?",
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

    async fn finish_power_request(&self, id: i64, error: Option<&str>, now: Seconds) -> DbResult<()> {
        sqlx::query!(
            "UPDATE power_requests SET state = ?, error = ?, finished_at = ? WHERE id = ?",
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

    async fn record_power(&self, node: NodeId, state: &str, source: &str, now: Seconds) -> DbResult<()> {
        sqlx::query!("UPDATE nodes SET power_state = ?, power_source = ?, power_observed_at = ? WHERE id = ?", state, source, now, node.0)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }
}
