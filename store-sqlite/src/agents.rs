//! The SQLite store: the boot network's view (hosts, boot targets, boot-service tokens) and the
//! agent protocol: one-time tokens, sessions, inventories, commands.

use super::*;

#[async_trait]
impl AgentStore for SqliteStore {
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
            r#"SELECT m.mac, n.id AS node_id, n.name, n.ip, n.boot_target FROM node_macs m JOIN nodes n ON n.id = m.node_id
               WHERE m.mac = ?"#,
            mac
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        row.map(RawBootHost::into_row).transpose()
    }

    async fn set_boot_target(&self, node: NodeId, target: BootTarget) -> DbResult<()> {
        sqlx::query!("UPDATE nodes SET boot_target = ? WHERE id = ?", target.as_str(), node.0).execute(&self.pool).await.map_err(db)?;
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
        let mut tx = self.begin_write().await?;
        sqlx::query!(
            "INSERT INTO agent_tokens (token_sha256, node_id, created_at, expires_at, bound_ip) VALUES (?, ?, ?, ?, ?)",
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
            r#"SELECT token_sha256, created_at, expires_at, used_at IS NOT NULL AS "used: bool" FROM agent_tokens WHERE node_id = ?"#,
            node.0
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        let stored = rows
            .iter()
            .map(|r| {
                Ok(tokens::AgentToken {
                    // A `TEXT PRIMARY KEY`, nullable to SQLite.
                    sha256: r.token_sha256.as_deref().ok_or_else(|| DbError::Corrupt("agent token without a hash".into()))?,
                    created_at: r.created_at,
                    expires_at: r.expires_at,
                    used: r.used,
                })
            })
            .collect::<DbResult<Vec<_>>>()?;
        let displaced = tokens::displaced_agent_tokens(&stored, token_sha256, keep, now);
        if !displaced.is_empty() {
            sqlx::query!(
                "DELETE FROM agent_tokens WHERE token_sha256 IN (SELECT value FROM json_each(?))",
                serde_json::Value::from(displaced).to_string()
            )
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        }
        tx.commit().await.map_err(db)
    }

    async fn add_boot_token(&self, token_sha256: &str, created_by: &str, now: Seconds) -> DbResult<()> {
        sqlx::query!("INSERT INTO boot_tokens (token_sha256, created_by, created_at) VALUES (?, ?, ?)", token_sha256, created_by, now)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(())
    }

    async fn is_boot_token(&self, token_sha256: &str) -> DbResult<bool> {
        let found: Option<i64> = sqlx::query_scalar!("SELECT 1 FROM boot_tokens WHERE token_sha256 = ?", token_sha256)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(found.is_some())
    }

    async fn consume_agent_token(&self, token_sha256: &str, node: &str, peer_ip: &str, now: Seconds) -> DbResult<Option<NodeId>> {
        let mut tx = self.begin_write().await?;
        let row = sqlx::query_scalar!(
            "SELECT t.node_id FROM agent_tokens t JOIN nodes n ON n.id = t.node_id \
             WHERE t.token_sha256 = ? AND n.name = ? AND t.bound_ip = ? AND t.used_at IS NULL AND t.expires_at > ?",
            token_sha256,
            node,
            peer_ip,
            now
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(id) = row else { return Ok(None) };
        sqlx::query!("UPDATE agent_tokens SET used_at = ? WHERE token_sha256 = ?", now, token_sha256)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Some(NodeId(id)))
    }

    async fn open_agent_session(&self, node: NodeId, session_sha256: &str, now: Seconds, expires_at: Seconds) -> DbResult<i64> {
        let mut tx = self.begin_write().await?;
        let generation: i64 =
            sqlx::query_scalar!("UPDATE nodes SET agent_generation = agent_generation + 1 WHERE id = ? RETURNING agent_generation", node.0)
                .fetch_one(&mut *tx)
                .await
                .map_err(db)?;
        sqlx::query!("DELETE FROM agent_sessions WHERE node_id = ?", node.0).execute(&mut *tx).await.map_err(db)?;
        sqlx::query!(
            "INSERT INTO agent_sessions (token_sha256, node_id, generation, created_at, expires_at) VALUES (?, ?, ?, ?, ?)",
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
             WHERE s.token_sha256 = ? AND s.expires_at > ?",
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
            "INSERT INTO node_inventories (node_id, generation, reported_at, report) VALUES (?, ?, ?, ?) \
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
        let row = sqlx::query!("SELECT generation, reported_at, report FROM node_inventories WHERE node_id = ?", node.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(row.map(|r| InventoryRow { generation: r.generation, reported_at: r.reported_at, report: r.report }))
    }

    async fn enqueue_agent_command(&self, node: NodeId, action: &str, actor: &str, now: Seconds) -> DbResult<AgentCommandRow> {
        let id: i64 = sqlx::query_scalar!(
            r#"INSERT INTO agent_commands (node_id, action, requested_by, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?)
               RETURNING id AS "id!""#,
            node.0,
            action,
            actor,
            AgentCommandState::Queued.as_str(),
            now,
            now
        )
        // Run to its end: see `only_row`.
        .fetch_all(&self.pool)
        .await
        .and_then(only_row)
        .map_err(db)?;
        self.agent_command(id).await
    }

    async fn next_agent_command(&self, node: NodeId, generation: i64, now: Seconds) -> DbResult<Option<AgentCommandRow>> {
        let mut tx = self.begin_write().await?;
        // Only the node's newest agent takes commands: a long poll of a
        // superseded agent (its ramdisk rebooted) must not take the command
        // meant for its successor.
        let current: Option<i64> =
            sqlx::query_scalar!("SELECT agent_generation FROM nodes WHERE id = ?", node.0).fetch_optional(&mut *tx).await.map_err(db)?;
        if current != Some(generation) {
            return Ok(None);
        }
        // A command sent to this generation is sent again (its answer may
        // have been lost); one sent to an older generation is taken over.
        let id: Option<i64> = sqlx::query_scalar!(
            "SELECT id FROM agent_commands WHERE node_id = ? AND (state = ? OR (state = ? AND generation <= ?)) \
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
            "UPDATE agent_commands SET state = ?, generation = ?, updated_at = ? WHERE id = ?",
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
            "UPDATE agent_commands SET done_bytes = ?, total_bytes = ?, updated_at = ? \
             WHERE id = ? AND node_id = ? AND generation = ? AND state = ?",
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
            "UPDATE agent_commands SET state = ?, error = ?, updated_at = ? \
             WHERE id = ? AND node_id = ? AND generation = ? AND state = ?",
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
             FROM agent_commands WHERE node_id = ? ORDER BY id",
            node.0
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter().map(TryInto::try_into).collect()
    }

    async fn cancel_agent_commands(&self, node: NodeId, reason: &str, now: Seconds) -> DbResult<u64> {
        let done = sqlx::query!(
            "UPDATE agent_commands SET state = ?, error = ?, updated_at = ? \
             WHERE node_id = ? AND state IN (SELECT value FROM json_each(?))",
            cancelled_command()?.as_str(),
            reason,
            now,
            node.0,
            name_set(AgentCommandState::UNFINISHED.map(AgentCommandState::as_str))
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
        sqlx::query_scalar!("SELECT agent_generation FROM nodes WHERE id = ?", node.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| DbError::NotFound { what: "node", name: node.0.to_string() })
    }
}
