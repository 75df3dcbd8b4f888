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
        sqlx::query_scalar!(
            r#"INSERT INTO environments (name, version, descriptor, visibility, owner_id, created_at) VALUES (?, ?, ?, ?, ?, ?)
               RETURNING id AS "id!""#,
            name,
            version,
            descriptor,
            visibility,
            owner.0,
            now
        )
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
        let rows = sqlx::query!(
            r#"SELECT e.id, e.name, e.version, e.descriptor, e.visibility, e.owner_id, u.name AS owner_name, e.created_at,
                      u.role = 'admin' AS "owner_is_admin: bool"
               FROM environments e JOIN users u ON u.id = e.owner_id ORDER BY e.name, e.version DESC, e.id DESC"#
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        // Every owner's projects in one query (not one per environment).
        let memberships = sqlx::query!(
            "SELECT m.user_id, p.name FROM project_members m JOIN projects p ON p.id = m.project_id \
             WHERE m.user_id IN (SELECT DISTINCT owner_id FROM environments)"
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let mut projects: std::collections::HashMap<i64, Vec<String>> = std::collections::HashMap::new();
        for m in memberships {
            projects.entry(m.user_id).or_default().push(m.name);
        }
        Ok(rows
            .into_iter()
            .map(|r| EnvironmentRow {
                id: r.id,
                owner_is_admin: r.owner_is_admin,
                owner_projects: projects.get(&r.owner_id).cloned().unwrap_or_default(),
                name: r.name,
                version: r.version,
                descriptor: r.descriptor,
                visibility: r.visibility,
                owner: UserId(r.owner_id),
                owner_name: r.owner_name,
                created_at: r.created_at,
            })
            .collect())
    }
}
