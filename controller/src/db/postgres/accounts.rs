//! PostgreSQL side of account requests and project membership (its rules:
//! [`crate::model::project`]).

use sqlx::{PgConnection, PgPool};

use super::{db, is_unique_violation};
use crate::db::{AccountRequestRow, Approval, DbError, DbResult, NewAccountRequest, ProjectChange};
use crate::model::project::{self, MembershipWrites};
use crate::model::{Seconds, UserId};

pub(super) async fn insert_request(pool: &PgPool, r: &NewAccountRequest) -> DbResult<AccountRequestRow> {
    // A login taken or asked for already is stored all the same: the
    // public answer must not tell (the admin sees the clash).
    let id = sqlx::query_scalar!(
        "INSERT INTO account_requests (name, email, affiliation, project, project_class, motivation, source, state, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, 'pending', $8) RETURNING id",
        r.name,
        r.email,
        r.affiliation,
        r.project,
        r.project_class,
        r.motivation,
        r.source,
        r.created_at
    )
    .fetch_one(pool)
    .await
    .map_err(db)?;
    request(pool, id).await
}

pub(super) async fn requests(pool: &PgPool, state: Option<&str>) -> DbResult<Vec<AccountRequestRow>> {
    sqlx::query_as!(
        AccountRequestRow,
        "SELECT id, name, email, affiliation, project, project_class, motivation, source, state, reason, decided_by, decided_at, \
         created_at FROM account_requests WHERE ($1::text IS NULL OR state = $1) ORDER BY id",
        state
    )
    .fetch_all(pool)
    .await
    .map_err(db)
}

pub(super) async fn request(pool: &PgPool, id: i64) -> DbResult<AccountRequestRow> {
    request_in(&mut *pool.acquire().await.map_err(db)?, id).await
}

async fn request_in(conn: &mut PgConnection, id: i64) -> DbResult<AccountRequestRow> {
    sqlx::query_as!(
        AccountRequestRow,
        "SELECT id, name, email, affiliation, project, project_class, motivation, source, state, reason, decided_by, decided_at, \
         created_at FROM account_requests WHERE id = $1",
        id
    )
    .fetch_optional(conn)
    .await
    .map_err(db)?
    .ok_or_else(|| DbError::NotFound { what: "account request", name: id.to_string() })
}

/// Marks a pending request decided (compare-and-swap on `pending`).
pub(super) async fn decide_in(tx: &mut PgConnection, id: i64, state: &str, by: &str, reason: Option<&str>, at: Seconds) -> DbResult<()> {
    let done = sqlx::query!(
        "UPDATE account_requests SET state = $1, decided_by = $2, reason = $3, decided_at = $4 WHERE id = $5 AND state = 'pending'",
        state,
        by,
        reason,
        at,
        id
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
    decide_in(tx, id, "approved", &a.decided_by, a.reason.as_deref(), a.at).await?;
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
