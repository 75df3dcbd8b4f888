//! Counts the commits of this process's SQLite connections, *after* each
//! has taken place, for the read caches (`Datastore::read_generation`).
//!
//! SQLite calls a connection's WAL hook after a write transaction has
//! committed and released the write lock: from then on every new read sees
//! it. A reader that notes the count before it reads and keeps its answer
//! only while the count is unchanged can therefore never keep an answer
//! older than a commit it could have seen. sqlx wraps the commit hook
//! (called *before* the commit becomes visible, too early for this) but not
//! the WAL hook, hence the one `unsafe` call here.
//!
//! The store turns automatic checkpoints off (`wal_autocheckpoint = 0`, a
//! background task checkpoints), so this hook replaces nothing.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void};
use std::sync::atomic::{AtomicU64, Ordering};

use sqlx::SqliteConnection;

/// Commits by any SQLite connection of this process. One counter for every
/// store a process opens: a commit to one database also invalidates the
/// caches of another (tests open many), which costs a re-read, never a
/// stale answer.
static COMMITS: AtomicU64 = AtomicU64::new(0);

/// The number of commits so far.
pub(super) fn count() -> u64 {
    COMMITS.load(Ordering::Acquire)
}

extern "C" fn after_commit(_arg: *mut c_void, _db: *mut libsqlite3_sys::sqlite3, _schema: *const c_char, _pages: c_int) -> c_int {
    COMMITS.fetch_add(1, Ordering::AcqRel);
    libsqlite3_sys::SQLITE_OK
}

/// Registers the counter on a new connection (the pool's `after_connect`).
pub(super) async fn register(conn: &mut SqliteConnection) -> sqlx::Result<()> {
    let mut handle = conn.lock_handle().await?;
    let db = handle.as_raw_handle();
    // SAFETY: `db` is this connection's open handle, held exclusively
    // through `handle` for the call. The callback touches only a static
    // atomic and its argument pointer is null and unused, so it stays valid
    // for as long as the connection lives.
    unsafe {
        libsqlite3_sys::sqlite3_wal_hook(db.as_ptr(), Some(after_commit), std::ptr::null_mut());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::SqliteStore;
    use ferrum_store::{AccountStore, ReplicaStore, SecretKey};

    /// Every commit, whether of a transaction or of a lone statement, moves
    /// the count; a read does not.
    #[tokio::test]
    async fn commits_move_the_count_and_reads_do_not() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&format!("sqlite://{}", dir.path().join("t.db").display()), SecretKey::generate().expect("key"))
            .await
            .expect("open");
        let before = store.read_generation().expect("SQLite tells");
        // A lone `INSERT ... RETURNING`, run to its end (`only_row`): the
        // count has moved when the call returns.
        store.create_project("p-one", None, None, 0).await.expect("project");
        let after_write = store.read_generation().expect("SQLite tells");
        assert!(after_write > before, "a commit moves the count ({before} -> {after_write})");
        // Other tests of this process may commit meanwhile: only a count
        // that stayed put across a read-only call can be asserted on in
        // isolation, so check that a read alone never requires a move.
        let mut unmoved = false;
        for _ in 0..100 {
            let g = store.read_generation().expect("SQLite tells");
            store.list_projects().await.expect("read");
            if store.read_generation() == Some(g) {
                unmoved = true;
                break;
            }
        }
        assert!(unmoved, "reads alone moved the commit count");
    }
}
