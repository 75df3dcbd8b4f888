//! SQLite side of account requests and project membership (its rules:
//! [`ferrum_model::project`]).

use super::*;
use sqlx::{Sqlite, SqlitePool, Transaction};

use super::{db, is_unique_violation};
use ferrum_model::project::{self, MembershipWrites};
use ferrum_model::{Seconds, UserId};
use ferrum_store::{AccountRequestRow, Approval, DbError, DbResult, NewAccountRequest, ProjectChange};

pub(super) async fn insert_request(pool: &SqlitePool, r: &NewAccountRequest) -> DbResult<AccountRequestRow> {
    // A login taken or asked for already is stored all the same: the
    // public answer must not tell (the admin sees the clash).
    let id = sqlx::query_scalar!(
        r#"INSERT INTO account_requests (name, email, affiliation, project, project_class, motivation, source, state, created_at,
                                         status, email_token_sha256)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id AS "id!""#,
        r.name,
        r.email,
        r.affiliation,
        r.project,
        r.project_class,
        r.motivation,
        r.source,
        AccountRequestState::Pending.as_str(),
        r.created_at,
        r.status,
        r.email_token_sha256
    )
    .fetch_all(pool)
    .await
    .and_then(super::only_row)
    .map_err(db)?;
    request(pool, id).await
}

pub(super) async fn requests(pool: &SqlitePool, state: Option<AccountRequestState>) -> DbResult<Vec<AccountRequestRow>> {
    let rows = select_requests!("WHERE (?1 IS NULL OR state = ?1) ORDER BY id", state.map(AccountRequestState::as_str))
        .fetch_all(pool)
        .await
        .map_err(db)?;
    rows.into_iter().map(AccountRequestRow::try_from).collect()
}

pub(super) async fn request(pool: &SqlitePool, id: i64) -> DbResult<AccountRequestRow> {
    select_requests!("WHERE id = ?", id)
        .fetch_optional(pool)
        .await
        .map_err(db)?
        .ok_or_else(|| DbError::NotFound { what: "account request", name: id.to_string() })?
        .try_into()
}

/// Marks a pending request decided (compare-and-swap on `pending`).
async fn decide_in(
    tx: &mut Transaction<'static, Sqlite>,
    id: i64,
    input: AccountRequestInput,
    by: &str,
    reason: Option<&str>,
    at: Seconds,
) -> DbResult<()> {
    let (from, to) = decided_request(input)?;
    let done = sqlx::query!(
        "UPDATE account_requests SET state = ?, decided_by = ?, reason = ?, decided_at = ? WHERE id = ? AND state = ?",
        to.as_str(),
        by,
        reason,
        at,
        id,
        from.as_str()
    )
    .execute(&mut **tx)
    .await
    .map_err(db)?;
    if done.rows_affected() == 0 {
        let exists = sqlx::query_scalar!("SELECT id FROM account_requests WHERE id = ?", id).fetch_optional(&mut **tx).await.map_err(db)?;
        return Err(match exists {
            Some(_) => DbError::Raced { what: "account request (already decided)" },
            None => DbError::NotFound { what: "account request", name: id.to_string() },
        });
    }
    Ok(())
}

/// Approves a request: the user, its project if new, its first token.
/// Returns the new user's id.
pub(super) async fn approve_in(tx: &mut Transaction<'static, Sqlite>, id: i64, a: &Approval) -> DbResult<i64> {
    decide_in(tx, id, AccountRequestInput::Approve, &a.decided_by, a.reason.as_deref(), a.at).await?;
    let r: AccountRequestRow = select_requests!("WHERE id = ?", id).fetch_one(&mut **tx).await.map_err(db)?.try_into()?;
    let user = sqlx::query_scalar!(
        r#"INSERT INTO users (name, role, email, created_at) VALUES (?, 'user', ?, ?) RETURNING id AS "id!""#,
        r.name,
        r.email,
        a.at
    )
    .fetch_one(&mut **tx)
    .await
    .map_err(|e| if is_unique_violation(&e) { DbError::AlreadyExists { what: "user", name: r.name.clone() } } else { db(e) })?;
    let existing = sqlx::query_scalar!("SELECT id FROM projects WHERE name = ?", r.project).fetch_optional(&mut **tx).await.map_err(db)?;
    let project = match existing {
        Some(p) => p,
        None => sqlx::query_scalar!(
            r#"INSERT INTO projects (name, class, quota_node_hours, manager_id, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id AS "id!""#,
            r.project,
            a.project_class,
            a.quota_node_hours,
            user,
            a.at
        )
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?,
    };
    sqlx::query!("INSERT INTO project_members (project_id, user_id) VALUES (?, ?)", project, user).execute(&mut **tx).await.map_err(db)?;
    sqlx::query!("INSERT INTO api_tokens (user_id, token_sha256, created_at) VALUES (?, ?, ?)", user, a.token_sha256, a.at)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    sqlx::query!("UPDATE account_requests SET user_id = ? WHERE id = ?", user, id).execute(&mut **tx).await.map_err(db)?;
    Ok(user)
}

pub(super) async fn reject(pool: &SqlitePool, id: i64, by: &str, reason: &str, at: Seconds) -> DbResult<AccountRequestRow> {
    let mut tx = pool.begin().await.map_err(db)?;
    decide_in(&mut tx, id, AccountRequestInput::Reject, by, Some(reason), at).await?;
    tx.commit().await.map_err(db)?;
    request(pool, id).await
}

async fn user_id(executor: impl sqlx::Executor<'_, Database = Sqlite>, name: &str) -> DbResult<i64> {
    sqlx::query_scalar!("SELECT id FROM users WHERE name = ?", name)
        .fetch_optional(executor)
        .await
        .map_err(db)?
        .ok_or_else(|| DbError::NotFound { what: "user", name: name.to_owned() })
}

async fn project_id(executor: impl sqlx::Executor<'_, Database = Sqlite>, name: &str) -> DbResult<i64> {
    sqlx::query_scalar!("SELECT id FROM projects WHERE name = ?", name)
        .fetch_optional(executor)
        .await
        .map_err(db)?
        .ok_or_else(|| DbError::NotFound { what: "project", name: name.to_owned() })
}

pub(super) async fn update_project_in(tx: &mut Transaction<'static, Sqlite>, name: &str, c: &ProjectChange) -> DbResult<()> {
    let id = project_id(&mut **tx, name).await?;
    if let Some(class) = &c.class {
        sqlx::query!("UPDATE projects SET class = ? WHERE id = ?", class, id).execute(&mut **tx).await.map_err(db)?;
    }
    if let Some(quota) = c.quota_node_hours {
        sqlx::query!("UPDATE projects SET quota_node_hours = ? WHERE id = ?", quota, id).execute(&mut **tx).await.map_err(db)?;
    }
    if let Some(manager) = &c.manager {
        let manager = match manager {
            Some(m) => Some(UserId(user_id(&mut **tx, m).await?)),
            None => None,
        };
        write_membership(tx, id, project::set_manager(manager)).await?;
    }
    Ok(())
}

pub(super) async fn set_member_in(tx: &mut Transaction<'static, Sqlite>, project: &str, user: &str, member: bool) -> DbResult<()> {
    let (p, u) = (project_id(&mut **tx, project).await?, user_id(&mut **tx, user).await?);
    let manager = sqlx::query_scalar!("SELECT manager_id FROM projects WHERE id = ?", p).fetch_one(&mut **tx).await.map_err(db)?;
    write_membership(tx, p, project::set_member(manager.map(UserId), UserId(u), member)).await
}

/// Writes what a [`project`] membership rule returned.
async fn write_membership(tx: &mut Transaction<'static, Sqlite>, project: i64, w: MembershipWrites) -> DbResult<()> {
    if let Some(manager) = w.manager {
        sqlx::query!("UPDATE projects SET manager_id = ? WHERE id = ?", manager.map(|m| m.0), project)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    if let Some(user) = w.join {
        sqlx::query!("INSERT OR IGNORE INTO project_members (project_id, user_id) VALUES (?, ?)", project, user.0)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    if let Some(user) = w.leave {
        sqlx::query!("DELETE FROM project_members WHERE project_id = ? AND user_id = ?", project, user.0)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    Ok(())
}

#[async_trait]
impl AccountStore for SqliteStore {
    async fn count_users(&self) -> DbResult<i64> {
        sqlx::query_scalar!("SELECT COUNT(*) AS count FROM users").fetch_one(&self.pool).await.map_err(db)
    }

    async fn create_project(&self, name: &str, class: Option<&str>, quota: Option<i64>, now: Seconds) -> DbResult<ProjectRow> {
        let id = sqlx::query_scalar!(
            r#"INSERT INTO projects (name, class, quota_node_hours, created_at) VALUES (?, ?, ?, ?) RETURNING id AS "id!""#,
            name,
            class,
            quota,
            now
        )
        .fetch_all(&self.pool)
        .await
        .and_then(only_row)
        .map_err(|e| if is_unique_violation(&e) { DbError::AlreadyExists { what: "project", name: name.to_owned() } } else { db(e) })?;
        Ok(ProjectRow {
            id: ProjectId(id),
            name: name.to_owned(),
            class: class.map(str::to_owned),
            quota_node_hours: quota,
            members: Vec::new(),
            manager: None,
            created_at: now,
        })
    }

    async fn list_projects(&self) -> DbResult<Vec<ProjectRow>> {
        let rows = sqlx::query_as!(
            RawProject,
            "SELECT p.id, p.name, p.class, p.quota_node_hours, p.created_at, u.name AS manager FROM projects p \
             LEFT JOIN users u ON u.id = p.manager_id ORDER BY p.name"
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        let members = sqlx::query_as!(
            RawMember,
            "SELECT m.project_id, u.name FROM project_members m JOIN users u ON u.id = m.user_id ORDER BY u.name"
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(projects_with_members(rows, members))
    }

    async fn create_user(
        &self,
        name: &str,
        is_admin: bool,
        email: Option<&str>,
        projects: &[String],
        token_sha256: &str,
        now: Seconds,
    ) -> DbResult<UserRow> {
        let mut tx = self.begin_write().await?;
        let role = if is_admin { "admin" } else { "user" };
        let id = sqlx::query_scalar!(
            r#"INSERT INTO users (name, role, email, created_at) VALUES (?, ?, ?, ?) RETURNING id AS "id!""#,
            name,
            role,
            email,
            now
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| if is_unique_violation(&e) { DbError::AlreadyExists { what: "user", name: name.to_owned() } } else { db(e) })?;
        for project in projects {
            let pid = sqlx::query_scalar!("SELECT id FROM projects WHERE name = ?", project)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?
                .ok_or_else(|| DbError::NotFound { what: "project", name: project.clone() })?;
            sqlx::query!("INSERT OR IGNORE INTO project_members (project_id, user_id) VALUES (?, ?)", pid, id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        sqlx::query!("INSERT INTO api_tokens (user_id, token_sha256, created_at) VALUES (?, ?, ?)", id, token_sha256, now)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(UserRow::created(UserId(id), name, is_admin, email, projects, now))
    }

    async fn list_users(&self) -> DbResult<Vec<UserRow>> {
        let rows =
            sqlx::query_as!(RawUser, "SELECT id, name, role, email, created_at, disabled_at, disabled_reason FROM users ORDER BY name")
                .fetch_all(&self.pool)
                .await
                .map_err(db)?;
        let mut users = Vec::with_capacity(rows.len());
        for r in rows {
            users.push(self.user_from_raw(r).await?);
        }
        Ok(users)
    }

    async fn get_user(&self, name: &str) -> DbResult<UserRow> {
        let r = sqlx::query_as!(
            RawUser,
            "SELECT id, name, role, email, created_at, disabled_at, disabled_reason FROM users WHERE name = ?",
            name
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .ok_or_else(|| DbError::NotFound { what: "user", name: name.to_owned() })?;
        self.user_from_raw(r).await
    }

    async fn add_token(&self, user: UserId, token: &NewToken, now: Seconds, max_live: i64) -> DbResult<Option<TokenRow>> {
        // `BEGIN IMMEDIATE`: writers take turns, so the count holds until the insert.
        let mut tx = self.begin_write().await?;
        let expiries = sqlx::query_scalar!("SELECT expires_at FROM api_tokens WHERE user_id = ? AND revoked_at IS NULL", user.0)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        if !tokens::may_add_token(expiries, now, max_live) {
            return Ok(None);
        }
        let id = sqlx::query_scalar!(
            r#"INSERT INTO api_tokens (user_id, token_sha256, created_at, name, expires_at, read_only) VALUES (?, ?, ?, ?, ?, ?)
               RETURNING id AS "id!""#,
            user.0,
            token.sha256,
            now,
            token.name,
            token.expires_at,
            token.read_only
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        Ok(Some(TokenRow { id, name: token.name.clone(), created_at: now, expires_at: token.expires_at, read_only: token.read_only }))
    }

    async fn list_tokens(&self, user: UserId) -> DbResult<Vec<TokenRow>> {
        sqlx::query_as!(
            TokenRow,
            r#"SELECT id, name, created_at, expires_at, read_only AS "read_only: bool" FROM api_tokens
               WHERE user_id = ? AND revoked_at IS NULL ORDER BY id"#,
            user.0
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)
    }

    async fn revoke_token(&self, user: UserId, id: i64, now: Seconds) -> DbResult<bool> {
        let done =
            sqlx::query!("UPDATE api_tokens SET revoked_at = ? WHERE id = ? AND user_id = ? AND revoked_at IS NULL", now, id, user.0)
                .execute(&self.pool)
                .await
                .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn actor_by_token(&self, token_sha256: &str) -> DbResult<Option<ActorRow>> {
        let row = sqlx::query!(
            r#"SELECT u.id, u.name, u.role = 'admin' AS "is_admin: bool", t.id AS token_id, t.expires_at, t.read_only AS "read_only: bool"
               FROM api_tokens t JOIN users u ON u.id = t.user_id
               WHERE t.token_sha256 = ? AND t.revoked_at IS NULL AND u.disabled_at IS NULL"#,
            token_sha256
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let Some(r) = row else { return Ok(None) };
        Ok(Some(ActorRow {
            user_id: UserId(r.id),
            name: r.name,
            is_admin: r.is_admin,
            projects: user_projects(&self.pool, r.id).await?,
            token_id: r.token_id,
            expires_at: r.expires_at,
            read_only: r.read_only,
        }))
    }

    async fn set_user_disabled(&self, name: &str, disabled: Option<&Disabled>) -> DbResult<UserRow> {
        let done = sqlx::query!(
            "UPDATE users SET disabled_at = ?, disabled_reason = ? WHERE name = ?",
            disabled.map(|d| d.at),
            disabled.map(|d| d.reason.as_str()),
            name
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        if done.rows_affected() == 0 {
            return Err(DbError::NotFound { what: "user", name: name.to_owned() });
        }
        self.get_user(name).await
    }

    async fn insert_account_request(&self, request: &NewAccountRequest) -> DbResult<AccountRequestRow> {
        insert_request(&self.pool, request).await
    }

    async fn count_pending_account_requests(&self) -> DbResult<i64> {
        sqlx::query_scalar!("SELECT COUNT(*) AS count FROM account_requests WHERE state = ?", AccountRequestState::Pending.as_str())
            .fetch_one(&self.pool)
            .await
            .map_err(db)
    }

    async fn account_requests(&self, state: Option<AccountRequestState>) -> DbResult<Vec<AccountRequestRow>> {
        requests(&self.pool, state).await
    }

    async fn account_request(&self, id: i64) -> DbResult<AccountRequestRow> {
        request(&self.pool, id).await
    }

    async fn approve_account_request(&self, id: i64, approval: &Approval) -> DbResult<(AccountRequestRow, UserRow)> {
        let mut tx = self.begin_write().await?;
        let user_id = approve_in(&mut tx, id, approval).await?;
        tx.commit().await.map_err(db)?;
        let request = request(&self.pool, id).await?;
        let user = self.get_user(&request.name).await?;
        debug_assert_eq!(user.id.0, user_id);
        Ok((request, user))
    }

    async fn reject_account_request(&self, id: i64, decided_by: &str, reason: &str, at: Seconds) -> DbResult<AccountRequestRow> {
        reject(&self.pool, id, decided_by, reason, at).await
    }

    async fn verify_account_email(&self, token_sha256: &str, now: Seconds) -> DbResult<Option<AccountRequestRow>> {
        let mut tx = self.begin_write().await?;
        let id = sqlx::query_scalar!(
            r#"UPDATE account_requests SET email_verified_at = $1, email_token_sha256 = NULL WHERE email_token_sha256 = $2
               RETURNING id AS "id!""#,
            now,
            token_sha256
        )
        .fetch_optional(&mut *tx)
        .await
        .map_err(db)?;
        tx.commit().await.map_err(db)?;
        match id {
            Some(id) => Ok(Some(request(&self.pool, id).await?)),
            None => Ok(None),
        }
    }

    async fn update_project(&self, name: &str, change: &ProjectChange) -> DbResult<ProjectRow> {
        let mut tx = self.begin_write().await?;
        update_project_in(&mut tx, name, change).await?;
        tx.commit().await.map_err(db)?;
        self.list_projects()
            .await?
            .into_iter()
            .find(|p| p.name == name)
            .ok_or_else(|| DbError::NotFound { what: "project", name: name.into() })
    }

    async fn set_project_member(&self, project: &str, user: &str, member: bool) -> DbResult<ProjectRow> {
        let mut tx = self.begin_write().await?;
        set_member_in(&mut tx, project, user, member).await?;
        tx.commit().await.map_err(db)?;
        self.list_projects()
            .await?
            .into_iter()
            .find(|p| p.name == project)
            .ok_or_else(|| DbError::NotFound { what: "project", name: project.into() })
    }

    async fn user_account_requests(&self, user: UserId) -> DbResult<Vec<AccountRequestRow>> {
        super::privacy::user_requests(&self.pool, user).await
    }

    async fn user_usage_records(&self, name: &str) -> DbResult<Vec<UsageRecordRow>> {
        super::privacy::user_records(&self.pool, name).await
    }

    async fn erase_user(&self, erasure: &Erasure) -> DbResult<()> {
        let mut tx = self.begin_write().await?;
        super::privacy::erase(&mut tx, erasure).await?;
        tx.commit().await.map_err(db)
    }

    async fn insert_audit(&self, at: Seconds, actor: &str, action: &str, target: &str, detail: &str) -> DbResult<()> {
        usage::insert_audit(&self.pool, at, actor, action, target, detail).await
    }

    async fn audit_log(&self, filter: &AuditFilter) -> DbResult<Vec<AuditRow>> {
        usage::audit_log(&self.pool, filter).await
    }
}
