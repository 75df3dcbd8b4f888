//! The PostgreSQL store: notifications of leases and deployments, each event
//! recorded once (its key is unique; see `NotificationStore`).

use ferrum_model::NotificationKind;

use super::*;

#[async_trait]
impl NotificationStore for PgStore {
    async fn insert_notification(&self, n: &NewNotification) -> DbResult<bool> {
        let ids = sqlx::query_scalar!(
            r#"INSERT INTO notifications (user_id, lease_id, kind, about, subject, body, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
               ON CONFLICT (user_id, lease_id, kind, about) DO NOTHING RETURNING id AS "id!""#,
            n.user_id.0,
            n.lease.0,
            n.kind.as_str(),
            n.about,
            n.subject,
            n.body,
            n.created_at
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(!ids.is_empty())
    }

    async fn notifications(&self, user: UserId, limit: i64) -> DbResult<Vec<NotificationRow>> {
        let rows = sqlx::query!(
            r#"SELECT id, user_id, lease_id, kind AS "kind: ferrum_model::NotificationKind", subject, body, created_at, read_at
               FROM notifications WHERE user_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"#,
            user.0,
            limit
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(rows
            .into_iter()
            .map(|r| NotificationRow {
                id: r.id,
                user_id: UserId(r.user_id),
                lease: LeaseId(r.lease_id),
                kind: r.kind,
                subject: r.subject,
                body: r.body,
                created_at: r.created_at,
                read_at: r.read_at,
            })
            .collect())
    }

    async fn mark_notifications_read(&self, user: UserId, now: Seconds) -> DbResult<u64> {
        let done = sqlx::query!("UPDATE notifications SET read_at = $1 WHERE user_id = $2 AND read_at IS NULL", now, user.0)
            .execute(&self.pool)
            .await
            .map_err(db)?;
        Ok(done.rows_affected())
    }

    async fn leases_to_remind(&self, now: Seconds, before: Seconds) -> DbResult<Vec<LeaseId>> {
        let ids = sqlx::query_scalar!(
            r#"SELECT l.id FROM leases l
               WHERE l.state = $1 AND l."end" > $2 AND l."end" <= $2::BIGINT + $3::BIGINT AND l."end" - l.start > $3
                 AND NOT EXISTS (SELECT 1 FROM notifications n
                                 WHERE n.user_id = l.owner_id AND n.lease_id = l.id AND n.kind = $4 AND n.about = l."end")
               ORDER BY l."end", l.id"#,
            LeaseState::Active.as_str(),
            now,
            before,
            NotificationKind::LeaseEndingSoon.as_str()
        )
        .fetch_all(&self.pool)
        .await
        .map_err(db)?;
        Ok(ids.into_iter().map(LeaseId).collect())
    }

    async fn next_reminder_end(&self, now: Seconds, before: Seconds) -> DbResult<Option<Seconds>> {
        sqlx::query_scalar!(
            r#"SELECT MIN("end") AS "end" FROM leases WHERE state = $1 AND "end" > $2::BIGINT + $3::BIGINT AND "end" - start > $3"#,
            LeaseState::Active.as_str(),
            now,
            before
        )
        .fetch_one(&self.pool)
        .await
        .map_err(db)
    }
}
