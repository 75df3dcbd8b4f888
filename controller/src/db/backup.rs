//! `ferrumd backup`: a consistent copy of a running ferrum's SQLite
//! database (`VACUUM INTO`, SQLite's online copy: one read transaction, the
//! server goes on serving), written mode 0600. PostgreSQL has its own
//! tools: for it this module only says which `pg_dump` to run.
//!
//! A backup holds BMC credentials sealed with the secrets key, which is
//! not in it: this module reports the key's fingerprint so `ferrumd` can
//! say which key file the backup needs. It never reads or copies the key.

use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use sqlx::ConnectOptions;
use sqlx::sqlite::SqliteConnectOptions;

use crate::server::redact_url;

/// What `backup` did.
#[derive(Debug)]
pub enum Backup {
    /// The SQLite database copied to `path` (mode 0600).
    Written {
        path: PathBuf,
        /// The fingerprint of the key that sealed its secrets (`None`: no
        /// keyed `ferrumd` opened the database yet).
        key_fingerprint: Option<String>,
    },
    /// PostgreSQL: nothing written; the command to run instead.
    PgDump { command: String, key_fingerprint: Option<String> },
}

/// Backs up the database at `url` into the new file `to` (SQLite), or
/// gives the `pg_dump` command for it (PostgreSQL).
pub async fn backup(url: &str, to: &Path) -> anyhow::Result<Backup> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        let key_fingerprint = super::recorded_key_fingerprint(url).await.ok().flatten();
        let command = format!("pg_dump --format=custom --file='{}' '{}'", to.display(), redact_url(url));
        return Ok(Backup::PgDump { command, key_fingerprint });
    }
    let source = super::sqlite::file_of_url(url).ok_or_else(|| anyhow::anyhow!("{}: not the URL of an SQLite file", redact_url(url)))?;
    anyhow::ensure!(source.is_file(), "no SQLite database at {}", source.display());
    let target = to.to_str().ok_or_else(|| anyhow::anyhow!("--to {}: the path must be UTF-8", to.display()))?;
    // Created here, empty and 0600, so the copy is never readable by others
    // (`VACUUM INTO` fills an empty file and keeps its mode).
    std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(to).map_err(|e| {
        if e.kind() == std::io::ErrorKind::AlreadyExists {
            anyhow::anyhow!("--to {}: the file exists (a backup never overwrites)", to.display())
        } else {
            anyhow::anyhow!("--to {}: {e}", to.display())
        }
    })?;
    let copied = async {
        let options = SqliteConnectOptions::from_str(url)?.busy_timeout(std::time::Duration::from_secs(30));
        let mut conn = options.connect().await?;
        sqlx::query("VACUUM INTO ?").bind(target).execute(&mut conn).await?;
        let key_fingerprint: Option<String> =
            sqlx::query_scalar("SELECT key_fingerprint FROM meta WHERE id = 1").fetch_optional(&mut conn).await.ok().flatten().flatten();
        Ok::<_, sqlx::Error>(key_fingerprint)
    }
    .await;
    match copied {
        Ok(key_fingerprint) => {
            std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o600))?;
            Ok(Backup::Written { path: to.to_owned(), key_fingerprint })
        }
        Err(e) => {
            let _ = std::fs::remove_file(to);
            Err(anyhow::Error::new(e).context(format!("cannot copy {} into {}", source.display(), to.display())))
        }
    }
}
