//! The PostgreSQL store: what replicas share: leadership, change notifications, the planners' lock,
//! the read generation.

use super::*;

#[async_trait]
impl ReplicaStore for PgStore {
    async fn try_lead(&self) -> DbResult<Option<Box<dyn Leadership>>> {
        use sqlx::Connection;
        let mut conn = PgConnection::connect_with(&self.options).await.map_err(db)?;
        // The server notices a vanished leader host within about 15 s.
        sqlx::query!("SET tcp_keepalives_idle = 5").execute(&mut conn).await.map_err(db)?;
        sqlx::query!("SET tcp_keepalives_interval = 2").execute(&mut conn).await.map_err(db)?;
        sqlx::query!("SET tcp_keepalives_count = 5").execute(&mut conn).await.map_err(db)?;
        let got =
            sqlx::query_scalar!(r#"SELECT pg_try_advisory_lock($1) AS "got!""#, LEADER_LOCK).fetch_one(&mut conn).await.map_err(db)?;
        if got {
            Ok(Some(Box::new(AdvisoryLeadership { conn: Some(conn) })))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }

    async fn planning_lock(&self) -> DbResult<Option<PlanningLock>> {
        let mut tx = self.begin().await?;
        sqlx::query!("SELECT pg_advisory_xact_lock($1)", PLANNING_LOCK).execute(&mut *tx).await.map_err(db)?;
        Ok(Some(PlanningLock(Box::new(tx))))
    }

    async fn listen_changes(&self) -> DbResult<Option<tokio::sync::mpsc::Receiver<String>>> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await.map_err(db)?;
        listener.listen(CHANGES_CHANNEL).await.map_err(db)?;
        let (tx, rx) = tokio::sync::mpsc::channel(256);
        tokio::spawn(async move {
            loop {
                // `recv` reconnects by itself after a lost connection
                // (notifications sent meanwhile are lost: the loops' own
                // ticks cover them).
                match listener.recv().await {
                    Ok(n) => {
                        // A full channel already holds a wake-up.
                        if let Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) = tx.try_send(n.payload().to_owned()) {
                            return;
                        }
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "change listener: connection lost");
                        if tx.is_closed() {
                            return;
                        }
                        tokio::time::sleep(Duration::from_secs(1)).await;
                    }
                }
            }
        });
        Ok(Some(rx))
    }
}
