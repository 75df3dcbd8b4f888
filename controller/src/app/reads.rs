//! Read caches for the API's hottest reads: the token behind every request,
//! one node (its rendered answer), one lease.
//!
//! An entry is kept with the store's read generation noted *before* it was
//! read (`Datastore::read_generation`) and served only while the generation
//! has not moved since: any commit empties every cache at once, so an
//! answer is never older than the last commit a database read would see
//! (a revoked token is refused at once). Where the store cannot tell
//! (PostgreSQL, whose other replicas commit too), nothing is cached and
//! every read goes to the database.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::{Arc, Mutex};

use crate::db::{ActorRow, LeaseRow};

/// Entries per cache; a full cache starts over (answers are cheap to read
/// again, and a bound keeps made-up keys from growing it).
const CAPACITY: usize = 4096;

/// One cache: key → (generation it was read at, answer).
#[derive(Debug)]
pub(crate) struct ReadCache<K, V> {
    entries: Mutex<HashMap<K, (u64, Arc<V>)>>,
}

impl<K: Eq + Hash, V> Default for ReadCache<K, V> {
    fn default() -> Self {
        ReadCache { entries: Mutex::new(HashMap::new()) }
    }
}

impl<K: Eq + Hash + Clone, V> ReadCache<K, V> {
    /// The answer for `key`, read through `read` unless one read at
    /// generation `now` is kept. `now` is the store's generation taken
    /// before calling (so before `read` runs).
    pub(crate) async fn get_or_read<E, F>(&self, now: Option<u64>, key: &K, read: F) -> Result<Arc<V>, E>
    where
        F: std::future::Future<Output = Result<V, E>>,
    {
        let Some(now) = now else { return read.await.map(Arc::new) };
        if let Some((at, value)) = self.lock().get(key)
            && *at == now
        {
            return Ok(value.clone());
        }
        let value = Arc::new(read.await?);
        let mut entries = self.lock();
        if entries.len() >= CAPACITY {
            entries.clear();
        }
        entries.insert(key.clone(), (now, value.clone()));
        Ok(value)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, (u64, Arc<V>)>> {
        // A panic while holding the lock cannot leave the map half-written
        // in a way that matters: every entry is checked against the
        // generation anyway.
        self.entries.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The caches an `App` keeps.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    /// Token SHA-256 → its user (unknown or revoked tokens are not kept).
    pub(crate) tokens: ReadCache<String, ActorRow>,
    /// (Node name, whether the caller is an admin) → the JSON answer of
    /// `GET /nodes/{name}` (admins also see the BMC).
    pub(crate) node_views: ReadCache<(String, bool), axum::body::Bytes>,
    /// Lease id → the lease with its nodes.
    pub(crate) leases: ReadCache<i64, LeaseRow>,
    /// The sites, clusters and nodes (one entry), for the Grid'5000 API.
    pub(crate) sites: ReadCache<(), super::sites::SiteTree>,
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn read(n: &std::sync::atomic::AtomicU32) -> Result<u32, ()> {
        Ok(n.fetch_add(1, std::sync::atomic::Ordering::SeqCst))
    }

    #[tokio::test]
    async fn answers_are_kept_only_while_the_generation_stands() {
        let cache: ReadCache<&str, u32> = ReadCache::default();
        let reads = std::sync::atomic::AtomicU32::new(0);
        assert_eq!(*cache.get_or_read(Some(7), &"a", read(&reads)).await.expect("read"), 0);
        assert_eq!(*cache.get_or_read(Some(7), &"a", read(&reads)).await.expect("kept"), 0, "same generation: kept");
        assert_eq!(*cache.get_or_read(Some(8), &"a", read(&reads)).await.expect("read"), 1, "a commit: read again");
        assert_eq!(*cache.get_or_read(None, &"a", read(&reads)).await.expect("read"), 2, "no generation: always read");
        assert_eq!(*cache.get_or_read(None, &"a", read(&reads)).await.expect("read"), 3);
        // An error is not kept.
        let failed: Result<Arc<u32>, ()> = cache.get_or_read(Some(9), &"b", async { Err(()) }).await;
        assert!(failed.is_err());
        assert_eq!(*cache.get_or_read(Some(9), &"b", read(&reads)).await.expect("read"), 4);
    }

    #[tokio::test]
    async fn a_full_cache_starts_over() {
        let cache: ReadCache<usize, usize> = ReadCache::default();
        for i in 0..=CAPACITY {
            cache.get_or_read(Some(1), &i, async move { Ok::<_, ()>(i) }).await.expect("read");
        }
        assert_eq!(cache.lock().len(), 1, "the entry that overflowed it is the only one left");
    }
}
