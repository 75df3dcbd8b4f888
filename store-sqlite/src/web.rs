//! The SQLite store: the web portal's passwords, activation links, browser
//! sessions and SSH keys.

use super::*;

#[async_trait]
impl WebStore for SqliteStore {
    async fn insert_activation(&self, user: UserId, token_sha256: &str, now: Seconds, expires_at: Seconds) -> DbResult<()> {
        let mut tx = self.begin_write().await?;
        sqlx::query!("UPDATE activation_links SET used_at = $1 WHERE user_id = $2 AND used_at IS NULL", now, user.0)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        sqlx::query!(
            "INSERT INTO activation_links (token_sha256, user_id, created_at, expires_at) VALUES ($1, $2, $3, $4)",
            token_sha256,
            user.0,
            now,
            expires_at
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn activation_user(&self, token_sha256: &str, now: Seconds) -> DbResult<Option<UserRow>> {
        let row = sqlx::query_as!(
            RawUser,
            "SELECT u.id, u.name, u.role, u.email, u.created_at, u.disabled_at, u.disabled_reason
             FROM activation_links a JOIN users u ON u.id = a.user_id
             WHERE a.token_sha256 = $1 AND a.used_at IS NULL AND a.expires_at > $2 AND u.disabled_at IS NULL",
            token_sha256,
            now
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        match row {
            Some(r) => Ok(Some(self.user_from_raw(r).await?)),
            None => Ok(None),
        }
    }

    async fn use_activation(&self, token_sha256: &str, password_hash: &str, now: Seconds) -> DbResult<Option<UserId>> {
        let mut tx = self.begin_write().await?;
        let user = sqlx::query_scalar!(
            "UPDATE activation_links SET used_at = $1
             WHERE token_sha256 = $2 AND used_at IS NULL AND expires_at > $1
               AND user_id IN (SELECT id FROM users WHERE disabled_at IS NULL)
             RETURNING user_id AS \"user_id!\"",
            now,
            token_sha256
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        let Some(user) = user else { return Ok(None) };
        sqlx::query!("UPDATE users SET password_hash = $1 WHERE id = $2", password_hash, user).execute(&mut *tx).await.map_err(db)?;
        sqlx::query!("DELETE FROM web_sessions WHERE user_id = $1", user).execute(&mut *tx).await.map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Some(UserId(user)))
    }

    async fn login_user(&self, name: &str) -> DbResult<Option<LoginRow>> {
        let row =
            sqlx::query!(r#"SELECT id, password_hash, disabled_at IS NOT NULL AS "disabled!: bool" FROM users WHERE name = $1"#, name)
                .fetch_optional(&self.pool)
                .await
                .map_err(db)?;
        Ok(row.map(|r| LoginRow { user_id: UserId(r.id), password_hash: r.password_hash, disabled: r.disabled }))
    }

    async fn insert_session(&self, user: UserId, token_sha256: &str, csrf: &str, now: Seconds, expires_at: Seconds) -> DbResult<()> {
        let mut tx = self.begin_write().await?;
        // Expired sessions go as new ones come.
        sqlx::query!("DELETE FROM web_sessions WHERE expires_at <= $1", now).execute(&mut *tx).await.map_err(db)?;
        sqlx::query!(
            "INSERT INTO web_sessions (token_sha256, user_id, csrf, created_at, expires_at) VALUES ($1, $2, $3, $4, $5)",
            token_sha256,
            user.0,
            csrf,
            now,
            expires_at
        )
        .execute(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)
    }

    async fn session(&self, token_sha256: &str, now: Seconds) -> DbResult<Option<SessionRow>> {
        let row = sqlx::query!(
            r#"SELECT s.id, s.csrf, s.expires_at, u.id AS user_id, u.name, u.role = 'admin' AS "is_admin!: bool",
                      (SELECT COUNT(*) FROM notifications n WHERE n.user_id = u.id AND n.read_at IS NULL) AS "unread!: i64"
               FROM web_sessions s JOIN users u ON u.id = s.user_id
               WHERE s.token_sha256 = $1 AND s.expires_at > $2 AND u.disabled_at IS NULL"#,
            token_sha256,
            now
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(SessionRow {
            id: r.id,
            user_id: UserId(r.user_id),
            name: r.name,
            is_admin: r.is_admin,
            projects: user_projects(&self.pool, r.user_id).await?,
            csrf: r.csrf,
            expires_at: r.expires_at,
            unread: r.unread,
        }))
    }

    async fn delete_session(&self, token_sha256: &str) -> DbResult<()> {
        sqlx::query!("DELETE FROM web_sessions WHERE token_sha256 = $1", token_sha256).execute(&self.pool).await.map_err(db)?;
        Ok(())
    }

    async fn add_ssh_key(
        &self,
        user: UserId,
        name: Option<&str>,
        public_key: &str,
        fingerprint: &str,
        now: Seconds,
    ) -> DbResult<SshKeyRow> {
        let id = sqlx::query_scalar!(
            r#"INSERT INTO ssh_keys (user_id, name, public_key, fingerprint, created_at) VALUES ($1, $2, $3, $4, $5)
               RETURNING id AS "id!""#,
            user.0,
            name,
            public_key,
            fingerprint,
            now
        )
        .fetch_all(&self.pool)
        .await
        .and_then(only_row)
        .map_err(|e| {
            if is_unique_violation(&e) { DbError::AlreadyExists { what: "SSH key", name: fingerprint.to_owned() } } else { db(e) }
        })?;
        Ok(SshKeyRow {
            id,
            user_id: user,
            name: name.map(str::to_owned),
            public_key: public_key.to_owned(),
            fingerprint: fingerprint.to_owned(),
            created_at: now,
        })
    }

    async fn ssh_keys(&self, user: UserId) -> DbResult<Vec<SshKeyRow>> {
        let rows = sqlx::query_as!(
            RawSshKey,
            "SELECT id, user_id, name, public_key, fingerprint, created_at FROM ssh_keys WHERE user_id = $1 ORDER BY id",
            user.0
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows.into_iter().map(SshKeyRow::from).collect())
    }

    async fn delete_ssh_key(&self, user: UserId, id: i64) -> DbResult<bool> {
        let done = sqlx::query!("DELETE FROM ssh_keys WHERE id = $1 AND user_id = $2", id, user.0).execute(&self.pool).await.map_err(db)?;
        Ok(done.rows_affected() > 0)
    }
}
