//! The SQLite store: what replicas share: leadership, change notifications, the planners' lock, the
//! read generation.

use super::*;

#[async_trait]
impl ReplicaStore for SqliteStore {
    async fn try_lead(&self) -> DbResult<Option<Box<dyn Leadership>>> {
        Ok(Some(Box::new(SoleProcess)))
    }

    async fn listen_changes(&self) -> DbResult<Option<tokio::sync::mpsc::Receiver<String>>> {
        Ok(None)
    }

    fn read_generation(&self) -> Option<u64> {
        // One process writes an SQLite database: every commit is counted.
        Some(commits::count())
    }

    async fn planning_lock(&self) -> DbResult<Option<PlanningLock>> {
        Ok(None)
    }
}
