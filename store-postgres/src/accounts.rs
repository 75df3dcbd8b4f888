//! PostgreSQL side of account requests and project membership (its rules:
//! [`ferrum_model::project`]).

use super::*;
use sqlx::{PgConnection, PgPool};

use super::{db, is_unique_violation};
use ferrum_model::project::{self, MembershipWrites};
use ferrum_model::{Seconds, UserId};
use ferrum_store::{AccountRequestRow, Approval, DbError, DbResult, NewAccountRequest, ProjectChange};

pub(super) async fn insert_request(pool: &PgPool, r: &NewAccountRequest) -> DbResult<AccountRequestRow> {
    // A login taken or asked for already is stored all the same: the
    // public answer must not tell (the admin sees the clash).
    let id = sqlx::query_scalar!(
        "INSERT INTO account_requests (name, email, affiliation, project, project_class, motivation, source, state, created_at, \
         status, email_token_sha256) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) RETURNING id",
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
    .fetch_one(pool)
    .await
    .map_err(db)?;
    request(pool, id).await
}

pub(super) async fn requests(pool: &PgPool, state: Option<AccountRequestState>) -> DbResult<Vec<AccountRequestRow>> {
    let rows = select_requests!("WHERE ($1::text IS NULL OR state = $1) ORDER BY id", state.map(AccountRequestState::as_str))
        .fetch_all(pool)
        .await
        .map_err(db)?;
    rows.into_iter().map(AccountRequestRow::try_from).collect()
}

pub(super) async fn request(pool: &PgPool, id: i64) -> DbResult<AccountRequestRow> {
    request_in(&mut *pool.acquire().await.map_err(db)?, id).await
}

async fn request_in(conn: &mut PgConnection, id: i64) -> DbResult<AccountRequestRow> {
    select_requests!("WHERE id = $1", id)
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .ok_or_else(|| DbError::NotFound { what: "account request", name: id.to_string() })?
        .try_into()
}

/// Marks a pending request decided (compare-and-swap on `pending`).
pub(super) async fn decide_in(
    tx: &mut PgConnection,
    id: i64,
    input: AccountRequestInput,
    by: &str,
    reason: Option<&str>,
    at: Seconds,
) -> DbResult<()> {
    let (from, to) = decided_request(input)?;
    let done = sqlx::query!(
        "UPDATE account_requests SET state = $1, decided_by = $2, reason = $3, decided_at = $4 WHERE id = $5 AND state = $6",
        to.as_str(),
        by,
        reason,
        at,
        id,
        from.as_str()
    )
    .execute(&mut *tx)
    .await
    .map_err(db)?;
    if done.rows_affected() == 0 {
        let exists = sqlx::query_scalar!("SELECT id FROM account_requests WHERE id = $1", id).fetch_optional(&mut *tx).await.map_err(db)?;
        return Err(match exists {
            Some(_) => DbError::Raced { what: "account request (already decided)" },
            None => DbError::NotFound { what: "account request", name: id.to_string() },
        });
    }
    Ok(())
}

/// Approves a request: the user, its project if new, its first token.
pub(super) async fn approve_in(tx: &mut PgConnection, id: i64, a: &Approval) -> DbResult<i64> {
    decide_in(tx, id, AccountRequestInput::Approve, &a.decided_by, a.reason.as_deref(), a.at).await?;
    let r = request_in(tx, id).await?;
    let user = sqlx::query_scalar!(
        "INSERT INTO users (name, role, email, created_at) VALUES ($1, 'user', $2, $3) RETURNING id",
        r.name,
        r.email,
        a.at
    )
    .fetch_one(&mut *tx)
    .await
    .map_err(|e| if is_unique_violation(&e) { DbError::AlreadyExists { what: "user", name: r.name.clone() } } else { db(e) })?;
    // A project created concurrently by another approval is joined, not duplicated.
    let project = sqlx::query_scalar!(
        "INSERT INTO projects (name, class, quota_node_hours, manager_id, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (name) DO NOTHING RETURNING id",
        r.project,
        a.project_class,
        a.quota_node_hours,
        user,
        a.at
    )
    .fetch_optional(&mut *tx)
    .await
    .map_err(db)?;
    let project = match project {
        Some(p) => p,
        None => sqlx::query_scalar!("SELECT id FROM projects WHERE name = $1", r.project).fetch_one(&mut *tx).await.map_err(db)?,
    };
    sqlx::query!("INSERT INTO project_members (project_id, user_id) VALUES ($1, $2)", project, user).execute(&mut *tx).await.map_err(db)?;
    sqlx::query!("INSERT INTO api_tokens (user_id, token_sha256, created_at) VALUES ($1, $2, $3)", user, a.token_sha256, a.at)
        .execute(&mut *tx)
        .await
        .map_err(db)?;
    sqlx::query!("UPDATE account_requests SET user_id = $1 WHERE id = $2", user, id).execute(&mut *tx).await.map_err(db)?;
    Ok(user)
}

async fn user_id(conn: &mut PgConnection, name: &str) -> DbResult<i64> {
    sqlx::query_scalar!("SELECT id FROM users WHERE name = $1", name)
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .ok_or_else(|| DbError::NotFound { what: "user", name: name.to_owned() })
}

async fn project_id(conn: &mut PgConnection, name: &str) -> DbResult<i64> {
    sqlx::query_scalar!("SELECT id FROM projects WHERE name = $1 FOR UPDATE", name)
        .fetch_optional(conn)
        .await
        .map_err(db)?
        .ok_or_else(|| DbError::NotFound { what: "project", name: name.to_owned() })
}

pub(super) async fn update_project_in(tx: &mut PgConnection, name: &str, c: &ProjectChange) -> DbResult<()> {
    let id = project_id(tx, name).await?;
    if let Some(class) = &c.class {
        sqlx::query!("UPDATE projects SET class = $1 WHERE id = $2", class.as_deref(), id).execute(&mut *tx).await.map_err(db)?;
    }
    if let Some(quota) = c.quota_node_hours {
        sqlx::query!("UPDATE projects SET quota_node_hours = $1 WHERE id = $2", quota, id).execute(&mut *tx).await.map_err(db)?;
    }
    if let Some(manager) = &c.manager {
        let manager = match manager {
            Some(m) => Some(UserId(user_id(tx, m).await?)),
            None => None,
        };
        write_membership(tx, id, project::set_manager(manager)).await?;
    }
    Ok(())
}

pub(super) async fn set_member_in(tx: &mut PgConnection, project: &str, user: &str, member: bool) -> DbResult<()> {
    // `project_id` locks the project's row: the manager read holds until the writes.
    let p = project_id(tx, project).await?;
    let u = user_id(tx, user).await?;
    let manager = sqlx::query_scalar!("SELECT manager_id FROM projects WHERE id = $1", p).fetch_one(&mut *tx).await.map_err(db)?;
    write_membership(tx, p, project::set_member(manager.map(UserId), UserId(u), member)).await
}

/// Writes what a [`project`] membership rule returned.
async fn write_membership(tx: &mut PgConnection, project: i64, w: MembershipWrites) -> DbResult<()> {
    if let Some(manager) = w.manager {
        sqlx::query!("UPDATE projects SET manager_id = $1 WHERE id = $2", manager.map(|m| m.0), project)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    if let Some(user) = w.join {
        sqlx::query!("INSERT INTO project_members (project_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", project, user.0)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    if let Some(user) = w.leave {
        sqlx::query!("DELETE FROM project_members WHERE project_id = $1 AND user_id = $2", project, user.0)
            .execute(&mut *tx)
            .await
            .map_err(db)?;
    }
    Ok(())
}

#[async_trait]
impl AccountStore for PgStore {
    async fn count_users(&self) -> DbResult<i64> {
        sqlx::query_scalar!(r#"SELECT COUNT(*) AS "n!" FROM users"#).fetch_one(&self.pool).await.map_err(db)
    }

    async fn create_project(&self, name: &str, class: Option<&str>, quota: Option<i64>, now: Seconds) -> DbResult<ProjectRow> {
        let id = sqlx::query_scalar!(
            "INSERT INTO projects (name, class, quota_node_hours, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
            name,
            class,
            quota,
            now
        )
        .fetch_one(&self.pool)
        .await
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
            r#"SELECT p.id, p.name, p.class, p.quota_node_hours, p.created_at, u.name AS "manager?" FROM projects p
               LEFT JOIN users u ON u.id = p.manager_id ORDER BY p.name"#
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
        let mut tx = self.begin().await?;
        let id = sqlx::query_scalar!(
            "INSERT INTO users (name, role, email, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
            name,
            if is_admin { "admin" } else { "user" },
            email,
            now
        )
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| if is_unique_violation(&e) { DbError::AlreadyExists { what: "user", name: name.to_owned() } } else { db(e) })?;
        for project in projects {
            let pid = sqlx::query_scalar!("SELECT id FROM projects WHERE name = $1", project)
                .fetch_optional(&mut *tx)
                .await
                .map_err(db)?
                .ok_or_else(|| DbError::NotFound { what: "project", name: project.clone() })?;
            sqlx::query!("INSERT INTO project_members (project_id, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING", pid, id)
                .execute(&mut *tx)
                .await
                .map_err(db)?;
        }
        sqlx::query!("INSERT INTO api_tokens (user_id, token_sha256, created_at) VALUES ($1, $2, $3)", id, token_sha256, now)
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
            "SELECT id, name, role, email, created_at, disabled_at, disabled_reason FROM users WHERE name = $1",
            name
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?
        .ok_or_else(|| DbError::NotFound { what: "user", name: name.to_owned() })?;
        self.user_from_raw(r).await
    }

    async fn add_token(&self, user: UserId, token: &NewToken, now: Seconds, max_live: i64) -> DbResult<Option<TokenRow>> {
        let mut tx = self.begin().await?;
        // The user's row locked: creations for one user take turns, so the
        // count holds until the insert.
        sqlx::query_scalar!("SELECT id FROM users WHERE id = $1 FOR UPDATE", user.0)
            .fetch_optional(&mut *tx)
            .await
            .map_err(db)?
            .ok_or_else(|| DbError::NotFound { what: "user", name: user.0.to_string() })?;
        let expiries = sqlx::query_scalar!("SELECT expires_at FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL", user.0)
            .fetch_all(&mut *tx)
            .await
            .map_err(db)?;
        if !tokens::may_add_token(expiries, now, max_live) {
            return Ok(None);
        }
        let id = sqlx::query_scalar!(
            "INSERT INTO api_tokens (user_id, token_sha256, created_at, name, expires_at, read_only) VALUES ($1, $2, $3, $4, $5, $6) \
             RETURNING id",
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
            "SELECT id, name, created_at, expires_at, read_only FROM api_tokens WHERE user_id = $1 AND revoked_at IS NULL ORDER BY id",
            user.0
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)
    }

    async fn revoke_token(&self, user: UserId, id: i64, now: Seconds) -> DbResult<bool> {
        let done =
            sqlx::query!("UPDATE api_tokens SET revoked_at = $1 WHERE id = $2 AND user_id = $3 AND revoked_at IS NULL", now, id, user.0)
                .execute(&self.pool)
                .await
                .map_err(db)?;
        Ok(done.rows_affected() == 1)
    }

    async fn actor_by_token(&self, token_sha256: &str) -> DbResult<Option<ActorRow>> {
        // Every request asks this: one round trip for the user and their
        // projects.
        let row = sqlx::query!(
            r#"SELECT u.id, u.name, u.role, t.id AS token_id, t.expires_at, t.read_only,
                 ARRAY(SELECT p.id FROM project_members m JOIN projects p ON p.id = m.project_id
                       WHERE m.user_id = u.id ORDER BY p.name) AS "project_ids!",
                 ARRAY(SELECT p.name FROM project_members m JOIN projects p ON p.id = m.project_id
                       WHERE m.user_id = u.id ORDER BY p.name) AS "project_names!"
               FROM api_tokens t JOIN users u ON u.id = t.user_id
               WHERE t.token_sha256 = $1 AND t.revoked_at IS NULL AND u.disabled_at IS NULL"#,
            token_sha256
        )
        .fetch_optional(&self.pool)
        .await
        .map_err(db)?;
        let Some(r) = row else { return Ok(None) };
        let projects = r.project_ids.into_iter().map(ProjectId).zip(r.project_names).collect();
        Ok(Some(ActorRow {
            user_id: UserId(r.id),
            name: r.name,
            is_admin: r.role == "admin",
            projects,
            token_id: r.token_id,
            expires_at: r.expires_at,
            read_only: r.read_only,
        }))
    }

    async fn set_user_disabled(&self, name: &str, disabled: Option<&Disabled>) -> DbResult<UserRow> {
        let done = sqlx::query!(
            "UPDATE users SET disabled_at = $1, disabled_reason = $2 WHERE name = $3",
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
        sqlx::query_scalar!(r#"SELECT COUNT(*) AS "n!" FROM account_requests WHERE state = $1"#, AccountRequestState::Pending.as_str())
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
        let mut tx = self.begin().await?;
        approve_in(&mut tx, id, approval).await?;
        tx.commit().await.map_err(db)?;
        let request = request(&self.pool, id).await?;
        let user = self.get_user(&request.name).await?;
        Ok((request, user))
    }

    async fn reject_account_request(&self, id: i64, decided_by: &str, reason: &str, at: Seconds) -> DbResult<AccountRequestRow> {
        let mut tx = self.begin().await?;
        decide_in(&mut tx, id, AccountRequestInput::Reject, decided_by, Some(reason), at).await?;
        tx.commit().await.map_err(db)?;
        request(&self.pool, id).await
    }

    async fn verify_account_email(&self, token_sha256: &str, now: Seconds) -> DbResult<Option<AccountRequestRow>> {
        let mut tx = self.begin().await?;
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
        let mut tx = self.begin().await?;
        update_project_in(&mut tx, name, change).await?;
        tx.commit().await.map_err(db)?;
        self.project_by_name(name).await
    }

    async fn set_project_member(&self, project: &str, user: &str, member: bool) -> DbResult<ProjectRow> {
        let mut tx = self.begin().await?;
        set_member_in(&mut tx, project, user, member).await?;
        tx.commit().await.map_err(db)?;
        self.project_by_name(project).await
    }

    async fn user_account_requests(&self, user: UserId) -> DbResult<Vec<AccountRequestRow>> {
        super::privacy::user_requests(&self.pool, user).await
    }

    async fn user_usage_records(&self, name: &str) -> DbResult<Vec<UsageRecordRow>> {
        super::privacy::user_records(&self.pool, name).await
    }

    async fn erase_user(&self, erasure: &Erasure) -> DbResult<()> {
        let mut tx = self.begin().await?;
        super::privacy::erase(&mut tx, erasure).await?;
        tx.commit().await.map_err(db)
    }

    async fn insert_audit(&self, at: Seconds, actor: &str, action: &str, target: &str, detail: &str) -> DbResult<()> {
        sqlx::query!(
            "INSERT INTO audit_log (at, actor, action, target, detail) VALUES ($1, $2, $3, $4, $5)",
            at,
            actor,
            action,
            target,
            detail
        )
        .execute(&self.pool)
        .await
        .map_err(db)?;
        Ok(())
    }

    async fn audit_log(&self, f: &AuditFilter) -> DbResult<Vec<AuditRow>> {
        let rows = sqlx::query!(
            "SELECT id, at, actor, action, target, detail FROM audit_log \
             WHERE ($1::bigint IS NULL OR at >= $1) AND ($2::bigint IS NULL OR at < $2) AND ($3::text IS NULL OR actor = $3) \
               AND ($4::text IS NULL OR action = $4) AND ($5::text IS NULL OR target = $5) AND ($6::bigint IS NULL OR id < $6) \
             ORDER BY id DESC LIMIT $7",
            f.from,
            f.to,
            f.actor,
            f.action,
            f.target,
            f.before_id,
            f.limit
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|r| AuditRow { id: r.id, at: r.at, actor: r.actor, action: r.action, target: r.target, detail: r.detail })
            .collect())
    }
}
