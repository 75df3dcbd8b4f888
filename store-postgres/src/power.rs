//! The PostgreSQL store: the power request queue and the power states BMCs reported.

use super::*;

#[async_trait]
impl PowerStore for PgStore {
    async fn enqueue_power(&self, node: NodeId, operation: PowerOperation, actor: &str, now: Seconds) -> DbResult<i64> {
        sqlx::query_scalar!(
            "INSERT INTO power_requests (node_id, operation, requested_by, requested_at, state) VALUES ($1, $2, $3, $4, $5) \
             RETURNING id",
            node.0,
            operation.as_str(),
            actor,
            now,
            PowerRequestState::Queued.as_str()
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }

    async fn power_request(&self, id: i64) -> DbResult<PowerRequestRow> {
        let row = sqlx::query_as!(
            RawPower,
            r#"SELECT p.id, p.node_id, n.name AS node_name, p.operation, p.requested_by, p.requested_at, p.state, p.finished_at, p.error
               FROM power_requests p JOIN nodes n ON n.id = p.node_id WHERE p.id = $1"#,
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
               FROM power_requests p JOIN nodes n ON n.id = p.node_id WHERE p.state = ANY($1) ORDER BY p.id"#,
            &names(PowerRequestState::PENDING.map(PowerRequestState::as_str))
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn set_power_request_running(&self, id: i64) -> DbResult<()> {
        sqlx::query!("UPDATE power_requests SET state = $1 WHERE id = $2", started_power()?.as_str(), id)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn finish_power_request(&self, id: i64, error: Option<&str>, now: Seconds) -> DbResult<()> {
        sqlx::query!(
            "UPDATE power_requests SET state = $1, error = $2, finished_at = $3 WHERE id = $4",
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

    async fn cancel_power_request(&self, id: i64, reason: &str, now: Seconds) -> DbResult<bool> {
        let (from, to) = dropped_power()?;
        let done = sqlx::query!(
            "UPDATE power_requests SET state = $1, error = $2, finished_at = $3 WHERE id = $4 AND state = $5",
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
            "UPDATE power_requests SET state = $1, error = $2, finished_at = $3 WHERE node_id = $4 AND state = $5",
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

    async fn record_power(&self, node: NodeId, state: &str, source: &str, now: Seconds) -> DbResult<()> {
        sqlx::query!(
            "UPDATE nodes SET power_state = $1, power_source = $2, power_observed_at = $3 WHERE id = $4",
            state,
            source,
            now,
            node.0
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }
}
