//! The SQLite store: the environment catalog.

use super::*;

#[async_trait]
impl EnvironmentStore for SqliteStore {
    async fn insert_environment(
        &self,
        name: &str,
        version: i64,
        descriptor: &str,
        visibility: &str,
        owner: UserId,
        now: Seconds,
    ) -> DbResult<i64> {
        sqlx::query_scalar(
            "INSERT INTO environments (name, version, descriptor, visibility, owner_id, created_at) VALUES (?, ?, ?, ?, ?, ?) \
             RETURNING id",
        )
        .bind(name)
        .bind(version)
        .bind(descriptor)
        .bind(visibility)
        .bind(owner.0)
        .bind(now)
        // Run to its end: see `only_row`.
        .fetch_all(&self.pool)
        .await
        .and_then(only_row)
        .map_err(|e| {
            // Names are per owner: the clash is with one of the owner's own.
            if is_unique_violation(&e) {
                DbError::AlreadyExists { what: "environment", name: format!("{name} version {version}") }
            } else {
                db(e)
            }
        })
    }

    async fn list_environments(&self) -> DbResult<Vec<EnvironmentRow>> {
        let rows = sqlx::query(
            "SELECT e.name, e.version, e.descriptor, e.visibility, e.owner_id, u.name, e.created_at, e.id, u.role = 'admin' \
             FROM environments e JOIN users u ON u.id = e.owner_id ORDER BY e.name, e.version DESC, e.id DESC",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        // Every owner's projects in one query (not one per environment).
        let memberships = sqlx::query(
            "SELECT m.user_id, p.name FROM project_members m JOIN projects p ON p.id = m.project_id \
             WHERE m.user_id IN (SELECT DISTINCT owner_id FROM environments)",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut projects: std::collections::HashMap<i64, Vec<String>> = std::collections::HashMap::new();
        for m in memberships {
            projects.entry(m.try_get(0).map_err(db)?).or_default().push(m.try_get(1).map_err(db)?);
        }
        let mut out = Vec::with_capacity(rows.len());
        for r in rows {
            let owner: i64 = r.try_get(4).map_err(db)?;
            out.push(EnvironmentRow {
                id: r.try_get(7).map_err(db)?,
                owner_is_admin: r.try_get(8).map_err(db)?,
                name: r.try_get(0).map_err(db)?,
                version: r.try_get(1).map_err(db)?,
                descriptor: r.try_get(2).map_err(db)?,
                visibility: r.try_get(3).map_err(db)?,
                owner: UserId(owner),
                owner_name: r.try_get(5).map_err(db)?,
                owner_projects: projects.get(&owner).cloned().unwrap_or_default(),
                created_at: r.try_get(6).map_err(db)?,
            });
        }
        Ok(out)
    }
}
