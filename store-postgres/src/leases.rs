//! The PostgreSQL store: leases and the calendar: allocations, generations, transitions.

use super::*;

#[async_trait]
impl LeaseStore for PgStore {
    async fn generations(&self) -> DbResult<(i64, i64)> {
        let r =
            sqlx::query!("SELECT calendar_generation, nodes_generation FROM meta WHERE id = 1").fetch_one(&self.pool).await.map_err(db)?;
        Ok((r.calendar_generation, r.nodes_generation))
    }

    async fn calendar_generation(&self) -> DbResult<i64> {
        sqlx::query_scalar!("SELECT calendar_generation FROM meta WHERE id = 1").fetch_one(&self.pool).await.map_err(db)
    }

    async fn allocations_after(&self, after: Seconds) -> DbResult<(i64, Vec<AllocationRow>)> {
        // One snapshot for the rows and the generation.
        let mut tx = self.begin().await?;
        sqlx::query!("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await.map_err(db)?;
        let generation = Self::generation_in(&mut tx).await?;
        let rows = sqlx::query_as!(
            RawAllocation,
            r#"SELECT ln.lease_id, ln.node_id, ln.start, ln."end", l.lease_type FROM lease_nodes ln JOIN leases l ON l.id = ln.lease_id
               WHERE ln."end" > $1"#,
            after
        )
        .fetch_all(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok((generation, rows.into_iter().map(RawAllocation::into_row).collect::<DbResult<Vec<_>>>()?))
    }

    async fn insert_lease(&self, lease: &NewLease, preempt: &[Preemption], expected_generation: i64) -> DbResult<(LeaseRow, i64)> {
        let mut tx = self.begin().await?;
        Self::lock_calendar(&mut tx, Some(expected_generation)).await?;
        for p in preempt {
            Self::apply_lease_transition(&mut tx, p.lease, p.from, p.to, p.change, Some(&p.reason), lease.created_at).await?;
        }
        let id = insert_lease!(lease).fetch_one(&mut *tx).await.map_err(db)?;
        let nodes: Vec<i64> = lease.nodes.iter().map(|n| n.0).collect();
        // One statement for the whole allocation (positions from the order).
        sqlx::query!(
            r#"INSERT INTO lease_nodes (lease_id, node_id, position, start, "end")
               SELECT $1, node, pos - 1, $3, $4 FROM unnest($2::bigint[]) WITH ORDINALITY AS a(node, pos)"#,
            id,
            &nodes,
            lease.start,
            lease.end
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        let generation = Self::generation_in(&mut tx).await?;
        let row = Self::lease_in(&mut tx, LeaseId(id)).await?;
        tx.commit().await.map_err(db)?;
        Ok((row, generation))
    }

    async fn get_lease(&self, id: LeaseId) -> DbResult<LeaseRow> {
        Self::lease_in(&mut *self.conn().await?, id).await
    }

    async fn list_leases(&self, owner: Option<UserId>, include_over: bool) -> DbResult<Vec<LeaseRow>> {
        leases_where!(
            r#"WHERE ($1::bigint IS NULL OR l.owner_id = $1)
                 AND ($2 OR l.state <> ALL($3)) ORDER BY l.id DESC"#,
            owner.map(|o| o.0),
            include_over,
            &names(lease::TERMINAL.map(LeaseState::as_str))
        )
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(db)
    }

    async fn set_lease_end(
        &self,
        id: LeaseId,
        end: Seconds,
        preempt: &[Preemption],
        expected_generation: i64,
        now: Seconds,
    ) -> DbResult<i64> {
        let mut tx = self.begin().await?;
        Self::lock_calendar(&mut tx, Some(expected_generation)).await?;
        for p in preempt {
            Self::apply_lease_transition(&mut tx, p.lease, p.from, p.to, p.change, Some(&p.reason), now).await?;
        }
        sqlx::query!(r#"UPDATE lease_nodes SET "end" = $1 WHERE lease_id = $2"#, end, id.0).execute(&mut *tx).await.map_err(db)?;
        sqlx::query!(r#"UPDATE leases SET "end" = $1, updated_at = $2 WHERE id = $3"#, end, now, id.0)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        let generation = Self::generation_in(&mut tx).await?;
        tx.commit().await.map_err(db)?;
        Ok(generation)
    }

    async fn transition_lease(
        &self,
        id: LeaseId,
        from: LeaseState,
        to: LeaseState,
        change: AllocationChange,
        reason: Option<&str>,
        expected_generation: i64,
        now: Seconds,
    ) -> DbResult<i64> {
        let mut tx = self.begin().await?;
        // Every transition may write usage records or cut allocations: the
        // calendar lock orders it with the other calendar writers.
        Self::lock_calendar(&mut tx, (change != AllocationChange::Keep).then_some(expected_generation)).await?;
        Self::apply_lease_transition(&mut tx, id, from, to, change, reason, now).await?;
        let generation = Self::generation_in(&mut tx).await?;
        tx.commit().await.map_err(db)?;
        Ok(generation)
    }

    async fn leases_needing_action(&self, now: Seconds) -> DbResult<Vec<LeaseRow>> {
        leases_where!(
            r#"WHERE (l.state = ANY($2) AND l.start <= $1) OR l.state = ANY($3)
                  OR (l.state = $4 AND l."end" <= $1) ORDER BY l.start, l.id"#,
            now,
            &names(lease::WAITING.map(LeaseState::as_str)),
            &names(lease::MOVING.map(LeaseState::as_str)),
            LeaseState::Active.as_str()
        )
        .fetch_all(&mut *self.conn().await?)
        .await
        .map_err(db)
    }

    async fn held_nodes(&self, now: Seconds) -> DbResult<Vec<(NodeId, LeaseId)>> {
        let rows = sqlx::query!(
            r#"SELECT ln.node_id, ln.lease_id FROM lease_nodes ln JOIN leases l ON l.id = ln.lease_id
               WHERE l.state = ANY($2) AND ln.start <= $1 AND ln."end" > $1"#,
            now,
            &names(lease::RUNNING.map(LeaseState::as_str))
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.into_iter().map(|r| (NodeId(r.node_id), LeaseId(r.lease_id))).collect())
    }

    async fn next_lease_event(&self, now: Seconds) -> DbResult<Option<Seconds>> {
        sqlx::query_scalar!(
            r#"SELECT MIN(t) FROM (
                 SELECT MIN(start) AS t FROM leases WHERE state = ANY($2) AND start > $1
                 UNION ALL
                 SELECT MIN("end") AS t FROM leases WHERE state = ANY($3) AND "end" > $1) AS events"#,
            now,
            &names(lease::WAITING.map(LeaseState::as_str)),
            &names(lease::RUNNING.map(LeaseState::as_str))
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }

    async fn besteffort_overlapping(&self, nodes: &[NodeId], start: Seconds, end: Seconds) -> DbResult<Vec<AllocationRow>> {
        let ids: Vec<i64> = nodes.iter().map(|n| n.0).collect();
        let rows = sqlx::query_as!(
            RawAllocation,
            r#"SELECT ln.lease_id, ln.node_id, ln.start, ln."end", l.lease_type FROM lease_nodes ln JOIN leases l ON l.id = ln.lease_id
               WHERE l.lease_type = 'besteffort' AND ln.node_id = ANY($1) AND ln."end" > $2 AND ln.start < $3"#,
            &ids,
            start,
            end
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter().map(RawAllocation::into_row).collect()
    }

    async fn busy_between(&self, from: Seconds, to: Seconds) -> DbResult<Vec<BusyRow>> {
        let rows = sqlx::query!(
            r#"SELECT ln.node_id, ln.lease_id, l.owner_id, u.name AS owner, l.lease_type, l.state, ln.start, ln."end"
               FROM lease_nodes ln JOIN leases l ON l.id = ln.lease_id JOIN users u ON u.id = l.owner_id
               WHERE ln."end" > $1 AND ln.start < $2 ORDER BY ln.node_id, ln.start"#,
            from,
            to
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        rows.into_iter()
            .map(|r| {
                Ok(BusyRow {
                    node: NodeId(r.node_id),
                    lease: LeaseId(r.lease_id),
                    owner_id: UserId(r.owner_id),
                    owner: r.owner,
                    lease_type: lease_type(&r.lease_type)?,
                    state: lease_state(&r.state)?,
                    start: r.start,
                    end: r.end,
                })
            })
            .collect()
    }

    async fn count_leases_by_state(&self) -> DbResult<Vec<(String, i64)>> {
        let rows = sqlx::query!(r#"SELECT state, COUNT(*) AS "n!" FROM leases GROUP BY state"#).fetch_all(&self.pool).await.map_err(db)?;
        Ok(rows.into_iter().map(|r| (r.state, r.n)).collect())
    }

    async fn insert_job(&self, job: &JobRow) -> DbResult<()> {
        sqlx::query!(
            "INSERT INTO lease_jobs (lease_id, site, types, queue, command, properties) VALUES ($1, $2, $3, $4, $5, $6)",
            job.lease.0,
            job.site,
            job.types,
            job.queue,
            job.command,
            job.properties
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn job(&self, lease: LeaseId) -> DbResult<Option<JobRow>> {
        let row = sqlx::query!("SELECT site, types, queue, command, properties FROM lease_jobs WHERE lease_id = $1", lease.0)
            .fetch_optional(&self.pool)
            .await
            .map_err(db)?;
        Ok(row.map(|r| JobRow { lease, site: r.site, types: r.types, queue: r.queue, command: r.command, properties: r.properties }))
    }
}
