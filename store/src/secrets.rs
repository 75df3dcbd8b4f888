//! Secrets at rest: the key that encrypts BMC credentials in the database,
//! and the file modes of what holds secrets (data directory, database, key).
//!
//! The key is 32 random bytes in a file of its own (`DATA_DIR/secret.key`
//! by default, mode 0600, created on first start), never in the database:
//! a copy of the database alone (a backup, a stolen file) does not reveal
//! the BMC passwords. Each value is sealed with AES-256-GCM under a fresh
//! random nonce, bound to its row by associated data (a sealed value moved
//! to another row does not open). The database records the key's
//! fingerprint ([`SecretKey::fingerprint`]), so a `ferrumd` holding another
//! key refuses to start instead of failing on every BMC.
//!
//! This module knows files and bytes only; the datastore decides which
//! columns are sealed, and `server` decides when a key is created.

use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use sha2::{Digest, Sha256};

/// The prefix of a sealed value: the scheme's version, then hex of
/// nonce ‖ ciphertext ‖ tag. A plaintext BMC URL (`ipmi://`, `redfish://`)
/// never starts with it.
const SEALED_PREFIX: &str = "sealed:v1:";

/// Bytes of the key (AES-256).
const KEY_LEN: usize = 32;

/// Bytes of a GCM nonce.
const NONCE_LEN: usize = 12;

/// Why a key could not be used, or a value not opened. Never contains a
/// secret.
#[derive(Debug, thiserror::Error)]
pub enum SecretsError {
    #[error("cannot read the secrets key file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write the secrets key file {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the secrets key file {path} has mode {mode:04o}: others may read it (chmod 600 {path})")]
    Permissions { path: PathBuf, mode: u32 },
    #[error("the secrets key file {path} does not hold a key (64 hexadecimal digits)")]
    Malformed { path: PathBuf },
    #[error("no randomness for a key or nonce")]
    Random(#[source] getrandom::Error),
    #[error("a sealed value is malformed")]
    MalformedValue,
    /// Wrong key, or a value moved to another row, or tampered with.
    #[error("a sealed value does not open with this key (another key, or the value was moved or altered)")]
    Unseal,
}

/// The key that seals secrets in the database. `Debug` shows only its
/// fingerprint.
#[derive(Clone)]
pub struct SecretKey {
    cipher: Aes256Gcm,
    fingerprint: String,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretKey").field("fingerprint", &self.fingerprint).finish_non_exhaustive()
    }
}

/// Whether a stored value is sealed (rather than a plaintext left by a
/// `ferrumd` older than encryption at rest).
pub fn is_sealed(value: &str) -> bool {
    value.starts_with(SEALED_PREFIX)
}

impl SecretKey {
    fn from_bytes(bytes: &[u8; KEY_LEN]) -> SecretKey {
        let fingerprint = format!("sha256:{}", hex::encode(Sha256::digest(bytes)));
        // A 32-byte slice is always a valid AES-256 key.
        let cipher = Aes256Gcm::new(bytes.into());
        SecretKey { cipher, fingerprint }
    }

    /// A fresh random key, in memory only (tests, tools).
    pub fn generate() -> Result<SecretKey, SecretsError> {
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes).map_err(SecretsError::Random)?;
        let key = SecretKey::from_bytes(&bytes);
        bytes.fill(0);
        Ok(key)
    }

    /// `sha256:<hex>` of the key: recorded in the database, printed in
    /// messages; it reveals nothing of the key.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Reads the key file at `path`, refusing one that others may read.
    pub fn load(path: &Path) -> Result<SecretKey, SecretsError> {
        let meta = std::fs::metadata(path).map_err(|source| SecretsError::Read { path: path.to_owned(), source })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(SecretsError::Permissions { path: path.to_owned(), mode });
        }
        let text = std::fs::read_to_string(path).map_err(|source| SecretsError::Read { path: path.to_owned(), source })?;
        let mut bytes = [0u8; KEY_LEN];
        hex::decode_to_slice(text.trim(), &mut bytes).map_err(|_| SecretsError::Malformed { path: path.to_owned() })?;
        let key = SecretKey::from_bytes(&bytes);
        bytes.fill(0);
        Ok(key)
    }

    /// Creates a new key file at `path` (mode 0600, its directory 0700 if
    /// created), or loads the one that exists. Returns whether it was
    /// created. Creation is atomic: the file appears whole (written beside
    /// it, then hard-linked), and of two processes creating it at once,
    /// one creates it and the other loads it.
    pub fn load_or_create(path: &Path) -> Result<(SecretKey, bool), SecretsError> {
        if path.exists() {
            return Ok((SecretKey::load(path)?, false));
        }
        let write_err = |source| SecretsError::Write { path: path.to_owned(), source };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).map_err(write_err)?;
        let mut bytes = [0u8; KEY_LEN];
        getrandom::fill(&mut bytes).map_err(SecretsError::Random)?;
        let temp = dir.join(format!(".{}.{}.tmp", path.file_name().and_then(|n| n.to_str()).unwrap_or("secret.key"), std::process::id()));
        let written = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temp)
            .and_then(|mut file| file.write_all(format!("{}\n", hex::encode(bytes)).as_bytes()).and_then(|()| file.sync_all()));
        let linked = written.and_then(|()| std::fs::hard_link(&temp, path));
        let _ = std::fs::remove_file(&temp);
        let key = SecretKey::from_bytes(&bytes);
        bytes.fill(0);
        match linked {
            Ok(()) => Ok((key, true)),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok((SecretKey::load(path)?, false)),
            Err(source) => Err(write_err(source)),
        }
    }

    /// Seals `plaintext`, bound to `context` (which row and column it
    /// belongs to): `sealed:v1:<hex>`.
    pub fn seal(&self, context: &str, plaintext: &str) -> Result<String, SecretsError> {
        let mut nonce = [0u8; NONCE_LEN];
        getrandom::fill(&mut nonce).map_err(SecretsError::Random)?;
        let sealed = self
            .cipher
            .encrypt(&Nonce::from(nonce), Payload { msg: plaintext.as_bytes(), aad: context.as_bytes() })
            // Only a message beyond GCM's 64 GB limit fails.
            .map_err(|_| SecretsError::MalformedValue)?;
        Ok(format!("{SEALED_PREFIX}{}{}", hex::encode(nonce), hex::encode(sealed)))
    }

    /// Opens a value [`SecretKey::seal`] gave for the same `context`.
    pub fn open(&self, context: &str, sealed: &str) -> Result<String, SecretsError> {
        let body = sealed.strip_prefix(SEALED_PREFIX).ok_or(SecretsError::MalformedValue)?;
        let bytes = hex::decode(body).map_err(|_| SecretsError::MalformedValue)?;
        if bytes.len() < NONCE_LEN {
            return Err(SecretsError::MalformedValue);
        }
        let (nonce, ciphertext) = bytes.split_at(NONCE_LEN);
        let nonce: [u8; NONCE_LEN] = nonce.try_into().map_err(|_| SecretsError::MalformedValue)?;
        let plain = self
            .cipher
            .decrypt(&Nonce::from(nonce), Payload { msg: ciphertext, aad: context.as_bytes() })
            .map_err(|_| SecretsError::Unseal)?;
        String::from_utf8(plain).map_err(|_| SecretsError::MalformedValue)
    }
}

/// Creates `dir` (and its missing parents) with mode 0700.
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir)
}

/// Logs a warning when `path` exists with permissions wider than `max`
/// (e.g. 0600 for a file, 0700 for a directory): others may read secrets.
/// Says nothing about a path that does not exist.
pub fn warn_if_wider(path: &Path, max: u32) {
    if let Some(mode) = wider_mode(path, max) {
        tracing::warn!(
            path = %path.display(),
            mode = %format!("{mode:04o}"),
            expected = %format!("{max:04o}"),
            "holds secrets but others may read it: chmod {max:o} {}",
            path.display()
        );
    }
}

/// The mode of `path` when it grants more than `max`.
pub fn wider_mode(path: &Path, max: u32) -> Option<u32> {
    let mode = std::fs::metadata(path).ok()?.permissions().mode() & 0o777;
    (mode & !max != 0).then_some(mode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_values_open_only_with_their_key_and_context() {
        let key = SecretKey::generate().expect("key");
        let sealed = key.seal("nodes.bmc_url:n1", "ipmi://admin:hunter2@10.0.0.1").expect("seal");
        assert!(is_sealed(&sealed) && !sealed.contains("hunter2"), "{sealed}");
        assert_eq!(key.open("nodes.bmc_url:n1", &sealed).expect("open"), "ipmi://admin:hunter2@10.0.0.1");
        // A fresh nonce each time.
        assert_ne!(key.seal("nodes.bmc_url:n1", "x").expect("seal"), key.seal("nodes.bmc_url:n1", "x").expect("seal"));
        // Moved to another row, or under another key: refused.
        assert!(matches!(key.open("nodes.bmc_url:n2", &sealed), Err(SecretsError::Unseal)));
        let other = SecretKey::generate().expect("key");
        assert_ne!(other.fingerprint(), key.fingerprint());
        assert!(matches!(other.open("nodes.bmc_url:n1", &sealed), Err(SecretsError::Unseal)));
        assert!(matches!(key.open("nodes.bmc_url:n1", "sealed:v1:00"), Err(SecretsError::MalformedValue)));
    }

    #[test]
    fn key_file_is_created_once_0600_and_refused_when_others_may_read_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("secret.key");
        let (key, created) = SecretKey::load_or_create(&path).expect("created");
        assert!(created);
        assert_eq!(std::fs::metadata(&path).expect("file").permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(path.parent().expect("dir")).expect("dir").permissions().mode() & 0o777, 0o700);
        let (again, created) = SecretKey::load_or_create(&path).expect("loaded");
        assert!(!created);
        assert_eq!(again.fingerprint(), key.fingerprint());
        assert_eq!(std::fs::read_dir(path.parent().expect("dir")).expect("dir").count(), 1, "no temporary file left");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert!(matches!(SecretKey::load(&path), Err(SecretsError::Permissions { mode: 0o644, .. })));
        assert_eq!(wider_mode(&path, 0o600), Some(0o644));
    }
}
