//! The datastore, as the rest of the controller sees it: the interface
//! (rows, the store traits, [`Datastore`]: crate `ferrum-store`, re-exported
//! here), the two backends (`ferrum-store-sqlite` as [`sqlite`],
//! `ferrum-store-postgres` as [`postgres`]), the one function that opens
//! the store a URL names, and the tools that work on whole databases
//! ([`copy`], [`backup`]). Every SQL statement of the controller lives in
//! the backends, behind the [`Datastore`] trait.

pub use ferrum_store::*;
pub use ferrum_store_postgres as postgres;
pub use ferrum_store_sqlite as sqlite;

pub mod backup;
pub mod copy;

/// Opens the store a database URL names (`sqlite://PATH`, `sqlite::memory:`
/// or `postgres://...`), runs its migrations and adopts `key` for the
/// secrets it holds (see [`SecretKey`]): a database that has no key yet
/// records its fingerprint; one sealed with another key is refused
/// ([`DbError::KeyMismatch`]); plaintext BMC credentials (left by a
/// `ferrumd` older than encryption at rest) are sealed now.
pub async fn open(url: &str, key: SecretKey) -> DbResult<std::sync::Arc<dyn Datastore>> {
    if url.starts_with("sqlite:") {
        Ok(std::sync::Arc::new(sqlite::SqliteStore::open(url, key).await?))
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(std::sync::Arc::new(postgres::PgStore::open(url, key).await?))
    } else {
        Err(DbError::UnknownBackend)
    }
}

/// The key fingerprint a database records, without opening it as a store
/// (no migrations run): `None` for a database no keyed `ferrumd` opened
/// yet, or one older than encryption at rest.
pub async fn recorded_key_fingerprint(url: &str) -> DbResult<Option<String>> {
    if url.starts_with("sqlite:") {
        sqlite::recorded_key_fingerprint(url).await
    } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        postgres::recorded_key_fingerprint(url).await
    } else {
        Err(DbError::UnknownBackend)
    }
}
