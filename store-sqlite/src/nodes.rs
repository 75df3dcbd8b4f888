//! The SQLite store: the inventory: nodes, their import, policy, transitions and events.

use super::*;

#[async_trait]
impl NodeStore for SqliteStore {
    async fn insert_node(&self, node: &NodeWrite, event: &NewEvent) -> DbResult<NodeRow> {
        let mut tx = self.begin_write().await?;
        Self::insert_node_in(&mut tx, &self.key, node, event).await?;
        tx.commit().await.map_err(db)?;
        self.get_node(&node.name).await
    }

    async fn import_nodes(&self, nodes: &[NodeWrite], added: &NewEvent) -> DbResult<ImportOutcome> {
        let mut tx = self.begin_write().await?;
        let mut outcome = ImportOutcome::default();
        for node in nodes {
            let stored = sqlx::query(
                "SELECT n.id, n.site, n.cluster, n.ip, n.reference_sha256, n.admin_properties, \
                 (SELECT json_group_array(mac) FROM (SELECT mac FROM node_macs WHERE node_id = n.id ORDER BY position)) \
                 FROM nodes n WHERE n.name = ?",
            )
            .bind(&node.name)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .map(|r| imported_node_from_row(&r))
            .transpose()?;
            match (import_action(stored.as_ref().map(ImportedNodeRow::facts).as_ref(), &node.imported_facts()), stored) {
                (ImportAction::Add, _) | (_, None) => {
                    Self::insert_node_in(&mut tx, &self.key, node, added).await?;
                    outcome.added.push(node.name.clone());
                }
                (ImportAction::Unchanged, Some(_)) => outcome.unchanged.push(node.name.clone()),
                (ImportAction::Update, Some(stored)) => {
                    sqlx::query(
                        "UPDATE nodes SET site = ?, cluster = ?, ip = ?, properties = ?, reference = ?, reference_sha256 = ?, updated_at = ? WHERE id = ?",
                    )
                    .bind(&node.site)
                    .bind(&node.cluster)
                    .bind(&node.ip)
                    .bind(to_json(&properties::effective(&node.properties, &stored.admin_properties)))
                    .bind(&node.reference)
                    .bind(&node.reference_sha256)
                    .bind(added.at)
                    .bind(stored.id.0)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                    sqlx::query("DELETE FROM node_macs WHERE node_id = ?").bind(stored.id.0).execute(&mut *tx).await.map_err(db)?;
                    Self::insert_macs(&mut tx, stored.id, &node.macs).await?;
                    outcome.changed.push(node.name.clone());
                }
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(outcome)
    }

    async fn list_nodes(&self) -> DbResult<Vec<NodeRow>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{NODE_SELECT} ORDER BY site, cluster, id")))
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        self.node_rows(rows).await
    }

    async fn node_statuses(&self) -> DbResult<Vec<NodeStatus>> {
        let rows =
            sqlx::query("SELECT id, name, state, policy, lease_id FROM nodes ORDER BY id").fetch_all(&self.pool).await.map_err(db)?;
        rows.iter()
            .map(|r| {
                let state: String = r.try_get(2).map_err(db)?;
                let policy: String = r.try_get(3).map_err(db)?;
                Ok(NodeStatus {
                    id: NodeId(r.try_get(0).map_err(db)?),
                    name: r.try_get(1).map_err(db)?,
                    state: NodeLifecycle::parse(&state).ok_or_else(|| DbError::Corrupt(format!("node state '{state}'")))?,
                    policy: NodePolicy::parse(&policy).ok_or_else(|| DbError::Corrupt(format!("node policy '{policy}'")))?,
                    lease: r.try_get::<Option<i64>, _>(4).map_err(db)?.map(LeaseId),
                })
            })
            .collect()
    }

    async fn get_node_by_id(&self, id: NodeId) -> DbResult<NodeRow> {
        let name: Option<String> =
            sqlx::query_scalar("SELECT name FROM nodes WHERE id = ?").bind(id.0).fetch_optional(&self.pool).await.map_err(db)?;
        self.get_node(&name.ok_or_else(|| DbError::NotFound { what: "node", name: id.to_string() })?).await
    }

    async fn get_node(&self, name: &str) -> DbResult<NodeRow> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!("{NODE_SELECT} WHERE name = ?")))
            .bind(name)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?
            .ok_or_else(|| DbError::NotFound { what: "node", name: name.to_owned() })?;
        let mut node = node_from_row(&row)?;
        open_bmc(&self.key, &mut node)?;
        node.macs = sqlx::query_scalar("SELECT mac FROM node_macs WHERE node_id = ? ORDER BY position")
            .bind(node.id.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(node)
    }

    async fn node_reference(&self, id: NodeId) -> DbResult<Option<String>> {
        sqlx::query_scalar("SELECT reference FROM nodes WHERE id = ?").bind(id.0).fetch_one(&self.pool).await.map_err(db)
    }

    async fn set_node_policy(&self, id: NodeId, policy: NodePolicy, event: &NewEvent) -> DbResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query("UPDATE nodes SET policy = ?, updated_at = ? WHERE id = ?")
            .bind(policy.as_str())
            .bind(event.at)
            .bind(id.0)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        Self::insert_event(&mut tx, id, event).await?;
        tx.commit().await.map_err(db)
    }

    async fn transition_nodes(&self, transitions: &[NodeTransition]) -> DbResult<usize> {
        let mut tx = self.begin_write().await?;
        let mut applied = 0;
        for t in transitions {
            let needs_reset = needs_reset_after(t.from, t.to);
            let r = sqlx::query(
                "UPDATE nodes SET state = ?, lease_id = ?, updated_at = ?, needs_reset = COALESCE(?, needs_reset) WHERE id = ? AND state = ?",
            )
            .bind(t.to.as_str())
            .bind(t.lease.map(|l| l.0))
            .bind(t.event.at)
            .bind(needs_reset)
            .bind(t.node.0)
            .bind(t.from.as_str())
                .execute(&mut *tx)
                .await
                .map_err(db)?;
            if r.rows_affected() == 1 {
                Self::insert_event(&mut tx, t.node, &t.event).await?;
                applied += 1;
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(applied)
    }

    async fn node_events(&self, id: NodeId) -> DbResult<Vec<NodeEventRow>> {
        let rows = sqlx::query("SELECT at, actor, from_state, to_state, reason FROM node_events WHERE node_id = ? ORDER BY id")
            .bind(id.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        rows.iter()
            .map(|r| {
                Ok(NodeEventRow {
                    at: r.try_get(0).map_err(db)?,
                    actor: r.try_get(1).map_err(db)?,
                    from: r.try_get(2).map_err(db)?,
                    to: r.try_get(3).map_err(db)?,
                    reason: r.try_get(4).map_err(db)?,
                })
            })
            .collect()
    }

    async fn count_nodes_by_state(&self) -> DbResult<Vec<(String, String, i64)>> {
        let rows =
            sqlx::query("SELECT state, policy, COUNT(*) FROM nodes GROUP BY state, policy").fetch_all(&self.pool).await.map_err(db)?;
        rows.iter().map(|r| Ok((r.try_get(0).map_err(db)?, r.try_get(1).map_err(db)?, r.try_get(2).map_err(db)?))).collect()
    }

    async fn needs_reset(&self, node: NodeId) -> DbResult<bool> {
        let dirty: Option<bool> =
            sqlx::query_scalar("SELECT needs_reset FROM nodes WHERE id = ?").bind(node.0).fetch_optional(&self.pool).await.map_err(db)?;
        Ok(dirty.unwrap_or(false))
    }
}
