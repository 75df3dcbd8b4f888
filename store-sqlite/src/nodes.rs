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
            let stored = sqlx::query!(
                r#"SELECT n.id, n.site, n.cluster, n.ip, n.reference_sha256, n.admin_properties,
                          (SELECT json_group_array(mac) FROM (SELECT mac FROM node_macs WHERE node_id = n.id ORDER BY position))
                            AS "macs!"
                   FROM nodes n WHERE n.name = ?"#,
                node.name
            )
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .map(|r| {
                Ok::<_, DbError>(ImportedNodeRow {
                    id: NodeId(r.id),
                    site: r.site,
                    cluster: r.cluster,
                    ip: r.ip,
                    reference_sha256: r.reference_sha256,
                    macs: serde_json::from_str(&r.macs).map_err(|_| DbError::Corrupt("node MACs".into()))?,
                    admin_properties: json_map(&r.admin_properties, "node admin properties")?,
                })
            })
            .transpose()?;
            match (import_action(stored.as_ref().map(ImportedNodeRow::facts).as_ref(), &node.imported_facts()), stored) {
                (ImportAction::Add, _) | (_, None) => {
                    Self::insert_node_in(&mut tx, &self.key, node, added).await?;
                    outcome.added.push(node.name.clone());
                }
                (ImportAction::Unchanged, Some(_)) => outcome.unchanged.push(node.name.clone()),
                (ImportAction::Update, Some(stored)) => {
                    sqlx::query!(
"UPDATE nodes SET site = ?, cluster = ?, ip = ?, properties = ?, reference = ?, reference_sha256 = ?, updated_at = ? WHERE id = ?",
&node.site,
&node.cluster,
&node.ip,
to_json(&properties::effective(&node.properties, &stored.admin_properties)),
&node.reference,
&node.reference_sha256,
added.at,
stored.id.0
)
                    .execute(&mut *tx)
                    .await
                    .map_err(db)?;
                    sqlx::query!("DELETE FROM node_macs WHERE node_id = ?", stored.id.0).execute(&mut *tx).await.map_err(db)?;
                    Self::insert_macs(&mut tx, stored.id, &node.macs).await?;
                    outcome.changed.push(node.name.clone());
                }
            }
        }
        tx.commit().await.map_err(db)?;
        Ok(outcome)
    }

    async fn list_nodes(&self) -> DbResult<Vec<NodeRow>> {
        let rows = sqlx::query_as!(
            RawNode,
            "SELECT id, name, site, cluster, ip, bmc_url, state, policy, properties, created_at, updated_at, lease_id, \
             power_state, power_observed_at, power_source, boot_target FROM nodes ORDER BY site, cluster, id"
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        self.node_rows(rows).await
    }

    async fn node_statuses(&self) -> DbResult<Vec<NodeStatus>> {
        let rows =
            sqlx::query!("SELECT id, name, state, policy, lease_id FROM nodes ORDER BY id").fetch_all(&self.pool).await.map_err(db)?;
        rows.into_iter()
            .map(|r| {
                Ok(NodeStatus {
                    id: NodeId(r.id),
                    name: r.name,
                    state: node_state(&r.state)?,
                    policy: node_policy(&r.policy)?,
                    lease: r.lease_id.map(LeaseId),
                })
            })
            .collect()
    }

    async fn get_node_by_id(&self, id: NodeId) -> DbResult<NodeRow> {
        let name: Option<String> =
            sqlx::query_scalar!("SELECT name FROM nodes WHERE id = ?", id.0).fetch_optional(&self.pool).await.map_err(db)?;
        self.get_node(&name.ok_or_else(|| DbError::NotFound { what: "node", name: id.to_string() })?).await
    }

    async fn get_node(&self, name: &str) -> DbResult<NodeRow> {
        let row = sqlx::query_as!(
            RawNode,
            "SELECT id, name, site, cluster, ip, bmc_url, state, policy, properties, created_at, updated_at, lease_id, \
             power_state, power_observed_at, power_source, boot_target FROM nodes WHERE name = ?",
            name
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .ok_or_else(|| DbError::NotFound { what: "node", name: name.to_owned() })?;
        let mut node = row.into_row()?;
        open_bmc(&self.key, &mut node)?;
        let macs = sqlx::query_scalar!("SELECT mac FROM node_macs WHERE node_id = ? ORDER BY position", node.id.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        node.macs = macs.into_iter().map(|mac| stored_mac(mac, &node.name)).collect::<DbResult<_>>()?;
        Ok(node)
    }

    async fn node_reference(&self, id: NodeId) -> DbResult<Option<String>> {
        sqlx::query_scalar!("SELECT reference FROM nodes WHERE id = ?", id.0).fetch_one(&self.pool).await.map_err(db)
    }

    async fn cluster_references(&self, site: &str, cluster: &str) -> DbResult<Vec<(NodeId, Option<String>)>> {
        let rows = sqlx::query!("SELECT id, reference FROM nodes WHERE site = ? AND cluster = ? ORDER BY id", site, cluster)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows.into_iter().map(|r| (NodeId(r.id), r.reference)).collect())
    }

    async fn set_node_policy(&self, id: NodeId, policy: NodePolicy, event: &NewEvent) -> DbResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query!("UPDATE nodes SET policy = ?, updated_at = ? WHERE id = ?", policy.as_str(), event.at, id.0)
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
            let r = sqlx::query!(
"UPDATE nodes SET state = ?, lease_id = ?, updated_at = ?, needs_reset = COALESCE(?, needs_reset) WHERE id = ? AND state = ?",
t.to.as_str(),
t.lease.map(|l| l.0),
t.event.at,
needs_reset,
t.node.0,
t.from.as_str()
)
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
        let rows = sqlx::query!("SELECT at, actor, from_state, to_state, reason FROM node_events WHERE node_id = ? ORDER BY id", id.0)
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|r| NodeEventRow { at: r.at, actor: r.actor, from: r.from_state, to: r.to_state, reason: r.reason })
            .collect())
    }

    async fn count_nodes_by_state(&self) -> DbResult<Vec<(String, String, i64)>> {
        let rows = sqlx::query!("SELECT state, policy, COUNT(*) AS count FROM nodes GROUP BY state, policy")
            .fetch_all(&self.pool)
            .await
            .map_err(db)?;
        Ok(rows.into_iter().map(|r| (r.state, r.policy, r.count)).collect())
    }

    async fn needs_reset(&self, node: NodeId) -> DbResult<bool> {
        let dirty: Option<bool> = sqlx::query_scalar!(r#"SELECT needs_reset AS "needs_reset: bool" FROM nodes WHERE id = ?"#, node.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(dirty.unwrap_or(false))
    }
}
