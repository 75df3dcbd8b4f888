//! SQLite side of account requests and project membership (its rules:
//! [`crate::model::project`]).

use sqlx::sqlite::SqliteRow;
use sqlx::{Row, Sqlite, SqlitePool, Transaction};

use super::{db, is_unique_violation};
use crate::db::{AccountRequestRow, Approval, DbError, DbResult, NewAccountRequest, ProjectChange};
use crate::model::project::{self, MembershipWrites};
use crate::model::{Seconds, UserId};

const REQUEST_SELECT: &str = "SELECT id, name, email, affiliation, project, project_class, motivation, source, state, reason, \
     decided_by, decided_at, created_at FROM account_requests";

fn request_from_row(r: &SqliteRow) -> DbResult<AccountRequestRow> {
    Ok(AccountRequestRow {
        id: r.try_get(0).map_err(db)?,
        name: r.try_get(1).map_err(db)?,
        email: r.try_get(2).map_err(db)?,
        affiliation: r.try_get(3).map_err(db)?,
        project: r.try_get(4).map_err(db)?,
        project_class: r.try_get(5).map_err(db)?,
        motivation: r.try_get(6).map_err(db)?,
        source: r.try_get(7).map_err(db)?,
        state: r.try_get(8).map_err(db)?,
        reason: r.try_get(9).map_err(db)?,
        decided_by: r.try_get(10).map_err(db)?,
        decided_at: r.try_get(11).map_err(db)?,
        created_at: r.try_get(12).map_err(db)?,
    })
}

pub(super) async fn insert_request(pool: &SqlitePool, r: &NewAccountRequest) -> DbResult<AccountRequestRow> {
    // A login taken or asked for already is stored all the same: the
    // public answer must not tell (the admin sees the clash).
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO account_requests (name, email, affiliation, project, project_class, motivation, source, state, created_at) \
         VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?) RETURNING id",
    )
    .bind(&r.name)
    .bind(&r.email)
    .bind(&r.affiliation)
    .bind(&r.project)
    .bind(&r.project_class)
    .bind(&r.motivation)
    .bind(&r.source)
    .bind(r.created_at)
    .fetch_all(pool)
    .await
    .and_then(super::only_row)
    .map_err(db)?;
    request(pool, id).await
}

pub(super) async fn requests(pool: &SqlitePool, state: Option<&str>) -> DbResult<Vec<AccountRequestRow>> {
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!("{REQUEST_SELECT} WHERE (?1 IS NULL OR state = ?1) ORDER BY id")))
        .bind(state)
        .fetch_all(pool)
        .await
        .map_err(db)?;
    rows.iter().map(request_from_row).collect()
}

pub(super) async fn request(pool: &SqlitePool, id: i64) -> DbResult<AccountRequestRow> {
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{REQUEST_SELECT} WHERE id = ?")))
        .bind(id)
        .fetch_optional(pool)
        .await
        .map_err(db)?
        .ok_or_else(|| DbError::NotFound { what: "account request", name: id.to_string() })?;
    request_from_row(&row)
}

/// Marks a pending request decided (compare-and-swap on `pending`).
async fn decide_in(
    tx: &mut Transaction<'static, Sqlite>,
    id: i64,
    state: &str,
    by: &str,
    reason: Option<&str>,
    at: Seconds,
) -> DbResult<()> {
    let done =
        sqlx::query("UPDATE account_requests SET state = ?, decided_by = ?, reason = ?, decided_at = ? WHERE id = ? AND state = 'pending'")
            .bind(state)
            .bind(by)
            .bind(reason)
            .bind(at)
            .bind(id)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    if done.rows_affected() == 0 {
        let exists: Option<i64> =
            sqlx::query_scalar("SELECT id FROM account_requests WHERE id = ?").bind(id).fetch_optional(&mut **tx).await.map_err(db)?;
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
    decide_in(tx, id, "approved", &a.decided_by, a.reason.as_deref(), a.at).await?;
    let row = sqlx::query(sqlx::AssertSqlSafe(format!("{REQUEST_SELECT} WHERE id = ?"))).bind(id).fetch_one(&mut **tx).await.map_err(db)?;
    let r = request_from_row(&row)?;
    let user: i64 = sqlx::query_scalar("INSERT INTO users (name, role, email, created_at) VALUES (?, 'user', ?, ?) RETURNING id")
        .bind(&r.name)
        .bind(&r.email)
        .bind(a.at)
        .fetch_one(&mut **tx)
        .await
        .map_err(|e| if is_unique_violation(&e) { DbError::AlreadyExists { what: "user", name: r.name.clone() } } else { db(e) })?;
    let existing: Option<i64> =
        sqlx::query_scalar("SELECT id FROM projects WHERE name = ?").bind(&r.project).fetch_optional(&mut **tx).await.map_err(db)?;
    let project = match existing {
        Some(p) => p,
        None => sqlx::query_scalar(
            "INSERT INTO projects (name, class, quota_node_hours, manager_id, created_at) VALUES (?, ?, ?, ?, ?) RETURNING id",
        )
        .bind(&r.project)
        .bind(&a.project_class)
        .bind(a.quota_node_hours)
        .bind(user)
        .bind(a.at)
        .fetch_one(&mut **tx)
        .await
        .map_err(db)?,
    };
    sqlx::query("INSERT INTO project_members (project_id, user_id) VALUES (?, ?)")
        .bind(project)
        .bind(user)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    sqlx::query("INSERT INTO api_tokens (user_id, token_sha256, created_at) VALUES (?, ?, ?)")
        .bind(user)
        .bind(&a.token_sha256)
        .bind(a.at)
        .execute(&mut **tx)
        .await
        .map_err(db)?;
    sqlx::query("UPDATE account_requests SET user_id = ? WHERE id = ?").bind(user).bind(id).execute(&mut **tx).await.map_err(db)?;
    Ok(user)
}

pub(super) async fn reject(pool: &SqlitePool, id: i64, by: &str, reason: &str, at: Seconds) -> DbResult<AccountRequestRow> {
    let mut tx = pool.begin().await.map_err(db)?;
    decide_in(&mut tx, id, "rejected", by, Some(reason), at).await?;
    tx.commit().await.map_err(db)?;
    request(pool, id).await
}

async fn user_id(executor: impl sqlx::Executor<'_, Database = Sqlite>, name: &str) -> DbResult<i64> {
    sqlx::query_scalar("SELECT id FROM users WHERE name = ?")
        .bind(name)
        .fetch_optional(executor)
        .await
        .map_err(db)?
        .ok_or_else(|| DbError::NotFound { what: "user", name: name.to_owned() })
}

async fn project_id(executor: impl sqlx::Executor<'_, Database = Sqlite>, name: &str) -> DbResult<i64> {
    sqlx::query_scalar("SELECT id FROM projects WHERE name = ?")
        .bind(name)
        .fetch_optional(executor)
        .await
        .map_err(db)?
        .ok_or_else(|| DbError::NotFound { what: "project", name: name.to_owned() })
}

pub(super) async fn update_project_in(tx: &mut Transaction<'static, Sqlite>, name: &str, c: &ProjectChange) -> DbResult<()> {
    let id = project_id(&mut **tx, name).await?;
    if let Some(class) = &c.class {
        sqlx::query("UPDATE projects SET class = ? WHERE id = ?").bind(class).bind(id).execute(&mut **tx).await.map_err(db)?;
    }
    if let Some(quota) = c.quota_node_hours {
        sqlx::query("UPDATE projects SET quota_node_hours = ? WHERE id = ?").bind(quota).bind(id).execute(&mut **tx).await.map_err(db)?;
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
    let manager: Option<i64> =
        sqlx::query_scalar("SELECT manager_id FROM projects WHERE id = ?").bind(p).fetch_one(&mut **tx).await.map_err(db)?;
    write_membership(tx, p, project::set_member(manager.map(UserId), UserId(u), member)).await
}

/// Writes what a [`project`] membership rule returned.
async fn write_membership(tx: &mut Transaction<'static, Sqlite>, project: i64, w: MembershipWrites) -> DbResult<()> {
    if let Some(manager) = w.manager {
        sqlx::query("UPDATE projects SET manager_id = ? WHERE id = ?")
            .bind(manager.map(|m| m.0))
            .bind(project)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    if let Some(user) = w.join {
        sqlx::query("INSERT OR IGNORE INTO project_members (project_id, user_id) VALUES (?, ?)")
            .bind(project)
            .bind(user.0)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    if let Some(user) = w.leave {
        sqlx::query("DELETE FROM project_members WHERE project_id = ? AND user_id = ?")
            .bind(project)
            .bind(user.0)
            .execute(&mut **tx)
            .await
            .map_err(db)?;
    }
    Ok(())
}
