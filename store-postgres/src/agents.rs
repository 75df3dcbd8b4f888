//! The PostgreSQL store: the boot network's view (hosts, boot targets, boot-service tokens) and the
//! agent protocol: one-time tokens, sessions, inventories, commands.

use super::*;

#[async_trait]
impl AgentStore for PgStore {
    async fn boot_hosts(&self) -> DbResult<Vec<BootHostRow>> {
        let rows = sqlx::query_as!(
            RawBootHost,
            "SELECT m.mac, n.id AS node_id, n.name, n.ip, n.boot_target FROM node_macs m JOIN nodes n ON n.id = m.node_id"
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter().map(RawBootHost::into_row).collect()
    }

    async fn boot_host(&self, mac: &str) -> DbResult<Option<BootHostRow>> {
        let row = sqlx::query_as!(
            RawBootHost,
            "SELECT m.mac, n.id AS node_id, n.name, n.ip, n.boot_target FROM node_macs m JOIN nodes n ON n.id = m.node_id \
             WHERE m.mac = $1",
            mac
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(RawBootHost::into_row).transpose()
    }

    async fn set_boot_target(&self, node: NodeId, target: BootTarget) -> DbResult<()> {
        sqlx::query!("UPDATE nodes SET boot_target = $1 WHERE id = $2", target.as_str(), node.0).execute(&self.pool).await.map_err(db)?;
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
        let mut tx = self.begin().await?;
        sqlx::query!(
            "INSERT INTO agent_tokens (token_sha256, node_id, created_at, expires_at, bound_ip) VALUES ($1, $2, $3, $4, $5)",
            token_sha256,
            node.0,
            now,
            expires_at,
            bound_ip
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let rows = sqlx::query!(
            r#"SELECT token_sha256, created_at, expires_at, used_at IS NOT NULL AS "used!" FROM agent_tokens WHERE node_id = $1"#,
            node.0
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let stored: Vec<tokens::AgentToken<'_>> = rows
            .iter()
            .map(|r| tokens::AgentToken { sha256: &r.token_sha256, created_at: r.created_at, expires_at: r.expires_at, used: r.used })
            .collect();
        let displaced: Vec<String> =
            tokens::displaced_agent_tokens(&stored, token_sha256, keep, now).into_iter().map(str::to_owned).collect();
        if !displaced.is_empty() {
            sqlx::query!("DELETE FROM agent_tokens WHERE token_sha256 = ANY($1)", &displaced).execute(&mut *tx).await.map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn add_boot_token(&self, token_sha256: &str, created_by: &str, now: Seconds) -> DbResult<()> {
        sqlx::query!("INSERT INTO boot_tokens (token_sha256, created_by, created_at) VALUES ($1, $2, $3)", token_sha256, created_by, now)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn is_boot_token(&self, token_sha256: &str) -> DbResult<bool> {
        let found = sqlx::query_scalar!("SELECT 1 AS \"one!\" FROM boot_tokens WHERE token_sha256 = $1", token_sha256)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(found.is_some())
    }

    async fn consume_agent_token(&self, token_sha256: &str, node: &str, peer_ip: &str, now: Seconds) -> DbResult<Option<NodeId>> {
        // One statement: two replicas cannot both consume it.
        let id = sqlx::query_scalar!(
            "UPDATE agent_tokens t SET used_at = $3 FROM nodes n \
             WHERE n.id = t.node_id AND t.token_sha256 = $1 AND n.name = $2 AND t.bound_ip = $4 AND t.used_at IS NULL AND t.expires_at > $3 \
             RETURNING t.node_id",
            token_sha256,
            node,
            now,
            peer_ip
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(id.map(NodeId))
    }

    async fn open_agent_session(&self, node: NodeId, session_sha256: &str, now: Seconds, expires_at: Seconds) -> DbResult<i64> {
        let mut tx = self.begin().await?;
        let generation = sqlx::query_scalar!(
            "UPDATE nodes SET agent_generation = agent_generation + 1 WHERE id = $1 RETURNING agent_generation",
            node.0
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        sqlx::query!("DELETE FROM agent_sessions WHERE node_id = $1", node.0).execute(&mut *tx).await.map_err(db)?;
        sqlx::query!(
            "INSERT INTO agent_sessions (token_sha256, node_id, generation, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            session_sha256,
            node.0,
            generation,
            now,
            expires_at
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(generation)
    }

    async fn agent_session(&self, session_sha256: &str, now: Seconds) -> DbResult<Option<AgentSessionRow>> {
        let row = sqlx::query!(
            "SELECT s.node_id, n.name, s.generation, n.agent_generation FROM agent_sessions s JOIN nodes n ON n.id = s.node_id \
             WHERE s.token_sha256 = $1 AND s.expires_at > $2",
            session_sha256,
            now
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        Ok(row.map(|r| AgentSessionRow {
            node: NodeId(r.node_id),
            name: r.name,
            generation: r.generation,
            current_generation: r.agent_generation,
        }))
    }

    async fn store_inventory(&self, node: NodeId, generation: i64, report: &str, now: Seconds) -> DbResult<bool> {
        let done = sqlx::query!(
            "INSERT INTO node_inventories (node_id, generation, reported_at, report) VALUES ($1, $2, $3, $4) \
             ON CONFLICT (node_id) DO UPDATE SET generation = excluded.generation, reported_at = excluded.reported_at, \
             report = excluded.report WHERE excluded.generation >= node_inventories.generation",
            node.0,
            generation,
            now,
            report
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn node_inventory(&self, node: NodeId) -> DbResult<Option<InventoryRow>> {
        let row = sqlx::query!("SELECT generation, reported_at, report FROM node_inventories WHERE node_id = $1", node.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(row.map(|r| InventoryRow { generation: r.generation, reported_at: r.reported_at, report: r.report }))
    }

    async fn enqueue_agent_command(&self, node: NodeId, action: &str, actor: &str, now: Seconds) -> DbResult<AgentCommandRow> {
        // The row as written, from the statement itself: no second read
        // on another connection of the pool.
        let r = sqlx::query_as!(
            RawCommand,
            "INSERT INTO agent_commands (node_id, action, requested_by, state, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $5) \
             RETURNING id, node_id, action, requested_by, state, generation, done_bytes, total_bytes, error, created_at, updated_at",
            node.0,
            action,
            actor,
            AgentCommandState::Queued.as_str(),
            now
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)?;
        r.try_into()
    }

    async fn next_agent_command(&self, node: NodeId, generation: i64, now: Seconds) -> DbResult<Option<AgentCommandRow>> {
        let mut tx = self.begin().await?;
        // Only the node's newest agent takes commands; the node row is
        // locked so that a registration cannot slip in between.
        let current = sqlx::query_scalar!("SELECT agent_generation FROM nodes WHERE id = $1 FOR UPDATE", node.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?;
        if current != Some(generation) {
            return Ok(None);
        }
        let id = sqlx::query_scalar!(
            "SELECT id FROM agent_commands WHERE node_id = $1 AND (state = $2 OR (state = $3 AND generation <= $4)) \
             ORDER BY id LIMIT 1",
            node.0,
            AgentCommandState::Queued.as_str(),
            AgentCommandState::Sent.as_str(),
            generation
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(id) = id else { return Ok(None) };
        sqlx::query!(
            "UPDATE agent_commands SET state = $1, generation = $2, updated_at = $3 WHERE id = $4",
            handed_command()?.as_str(),
            generation,
            now,
            id
        )
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
        let r = sqlx::query!(
            "UPDATE agent_commands SET done_bytes = $1, total_bytes = $2, updated_at = $3 \
             WHERE id = $4 AND node_id = $5 AND generation = $6 AND state = $7",
            done,
            total,
            now,
            id,
            node.0,
            generation,
            AgentCommandState::Sent.as_str()
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(r.rows_affected() == 1)
    }

    async fn finish_agent_command(&self, id: i64, node: NodeId, generation: i64, error: Option<&str>, now: Seconds) -> DbResult<bool> {
        let (from, to) = answered_command(error)?;
        let r = sqlx::query!(
            "UPDATE agent_commands SET state = $1, error = $2, updated_at = $3 \
             WHERE id = $4 AND node_id = $5 AND generation = $6 AND state = $7",
            to.as_str(),
            error,
            now,
            id,
            node.0,
            generation,
            from.as_str()
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(r.rows_affected() == 1)
    }

    async fn agent_commands(&self, node: NodeId) -> DbResult<Vec<AgentCommandRow>> {
        let rows = sqlx::query_as!(
            RawCommand,
            "SELECT id, node_id, action, requested_by, state, generation, done_bytes, total_bytes, error, created_at, updated_at \
             FROM agent_commands WHERE node_id = $1 ORDER BY id",
            node.0
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn cancel_agent_commands(&self, node: NodeId, reason: &str, now: Seconds) -> DbResult<u64> {
        let done = sqlx::query!(
            "UPDATE agent_commands SET state = $1, error = $2, updated_at = $3 WHERE node_id = $4 AND state = ANY($5)",
            cancelled_command()?.as_str(),
            reason,
            now,
            node.0,
            &names(AgentCommandState::UNFINISHED.map(AgentCommandState::as_str))
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn agent_command_row(&self, id: i64) -> DbResult<AgentCommandRow> {
        self.agent_command(id).await
    }

    async fn agent_generation(&self, node: NodeId) -> DbResult<i64> {
        sqlx::query_scalar!("SELECT agent_generation FROM nodes WHERE id = $1", node.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| DbError::NotFound { what: "node", name: node.0.to_string() })
    }
}
