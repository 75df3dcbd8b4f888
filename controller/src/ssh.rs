//! The controller's SSH check of a deployed node (SPEC §5 step 5): after
//! the user's image is written, the controller logs in as root with its
//! own key (installed beside the user's keys) and runs one command; only
//! then is the node `deployed`.
//!
//! This module owns the controller's key ([`ControllerKey`]: an ed25519
//! key in OpenSSH format, created at first use with mode 0600 and a `.pub`
//! beside it) and one client operation, [`run_as_root`], which connects,
//! checks the server's host key, authenticates by public key only, runs
//! the command and returns what it saw ([`SshCheck`]) or why it failed
//! ([`SshError`], whose [`SshError::is_retryable`] says whether the node
//! may simply still be booting).
//!
//! It does not decide what a result means for the node, does not store
//! host keys (trust on first use is the caller's: it records
//! [`SshCheck::host_key`] and passes it back as `expected_host_key`), and
//! never logs or returns private key material.
//!
//! Built on russh 0.65 (`default-features = false`, `aws-lc-rs` and
//! `flate2`: no RSA, so only ed25519/ECDSA keys). Its API changes with
//! every minor release; the version is pinned in the workspace.

use std::fmt;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use russh::client;
use russh::keys::ssh_key::private::Ed25519Keypair;
use russh::keys::ssh_key::{self, LineEnding};
use russh::keys::{HashAlg, PrivateKey, PrivateKeyWithHashAlg, PublicKey, PublicKeyOrCertificate};
use russh::{ChannelMsg, Disconnect};

/// At most this much of each of stdout and stderr is kept; the rest is read
/// and dropped so the remote command is never blocked on a full window.
pub const OUTPUT_LIMIT: usize = 64 * 1024;

/// How long closing a session may take after the check (on top of its timeout).
const CLOSE_LIMIT: Duration = Duration::from_secs(2);

/// The user the check logs in as.
const USER: &str = "root";

/// Errors about the controller's key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read SSH key {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: ssh_key::Error,
    },
    #[error("cannot access SSH key {}", path.display())]
    Access {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write SSH key {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("SSH key {} is readable by group or others (mode {mode:o}); it must be 0600", path.display())]
    Permissions { path: PathBuf, mode: u32 },
    #[error("SSH key {} is encrypted; the controller needs an unencrypted key", path.display())]
    Encrypted { path: PathBuf },
    #[error("cannot encode a new SSH key")]
    Encode(#[source] ssh_key::Error),
    #[error("no randomness for a new SSH key")]
    Random(#[source] getrandom::Error),
}

/// The controller's own SSH key (ed25519), created at first use.
///
/// `Debug` shows the fingerprint only.
#[derive(Clone)]
pub struct ControllerKey {
    key: Arc<PrivateKey>,
}

impl fmt::Debug for ControllerKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ControllerKey").field("fingerprint", &self.fingerprint()).finish()
    }
}

impl ControllerKey {
    /// Loads `path` (OpenSSH private key format) or creates it (mode 0600)
    /// with `path.pub` (the [`public_openssh`](Self::public_openssh) line)
    /// beside it. A key readable by group or others is refused, like
    /// OpenSSH does. A missing `.pub` is written again.
    ///
    /// Returns `anyhow` (a startup failure, reported and not matched on);
    /// the error inside is a [`KeyError`].
    pub fn load_or_create(path: &Path) -> anyhow::Result<ControllerKey> {
        Ok(Self::try_load_or_create(path)?)
    }

    fn try_load_or_create(path: &Path) -> Result<ControllerKey, KeyError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| KeyError::Write { path: dir.to_owned(), source })?;
        }
        // `create_new` decides atomically who creates the key: a concurrent
        // second caller loads it.
        let key = match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(file) => Self::create(path, file)?,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Self::load(path)?,
            Err(source) => return Err(KeyError::Write { path: path.to_owned(), source }),
        };
        let pub_path = public_key_path(path);
        if !pub_path.exists() {
            std::fs::write(&pub_path, format!("{}\n", key.public_openssh()))
                .map_err(|source| KeyError::Write { path: pub_path, source })?;
        }
        Ok(key)
    }

    /// Generates a key into `file`, freshly created at `path` with mode 0600.
    fn create(path: &Path, mut file: std::fs::File) -> Result<ControllerKey, KeyError> {
        let mut seed = [0u8; 32];
        getrandom::fill(&mut seed).map_err(KeyError::Random)?;
        let mut key = PrivateKey::from(Ed25519Keypair::from_seed(&seed));
        seed.fill(0);
        key.set_comment(comment());
        let pem = key.to_openssh(LineEnding::LF).map_err(KeyError::Encode)?;
        let written = file.write_all(pem.as_bytes()).and_then(|()| file.sync_all());
        if let Err(source) = written {
            // Leave no half-written key behind to be loaded next time.
            let _ = std::fs::remove_file(path);
            return Err(KeyError::Write { path: path.to_owned(), source });
        }
        tracing::info!(path = %path.display(), fingerprint = %key.fingerprint(HashAlg::Sha256), "created the controller's SSH key");
        Ok(ControllerKey { key: Arc::new(key) })
    }

    fn load(path: &Path) -> Result<ControllerKey, KeyError> {
        let meta = std::fs::metadata(path).map_err(|source| KeyError::Access { path: path.to_owned(), source })?;
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            return Err(KeyError::Permissions { path: path.to_owned(), mode });
        }
        let key = PrivateKey::read_openssh_file(path).map_err(|source| KeyError::Read { path: path.to_owned(), source })?;
        if key.is_encrypted() {
            return Err(KeyError::Encrypted { path: path.to_owned() });
        }
        Ok(ControllerKey { key: Arc::new(key) })
    }

    /// The `authorized_keys` line: `ssh-ed25519 AAAA... ferrum-controller@HOST`.
    pub fn public_openssh(&self) -> String {
        // Encoding a valid public key into a string cannot fail.
        self.key.public_key().to_string()
    }

    /// `SHA256:...`, as `ssh-keygen -l` prints it.
    pub fn fingerprint(&self) -> String {
        self.key.fingerprint(HashAlg::Sha256).to_string()
    }
}

fn public_key_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".pub");
    PathBuf::from(name)
}

/// `ferrum-controller@<hostname>`, or `ferrum-controller` where the host
/// name cannot be read.
fn comment() -> String {
    match std::fs::read_to_string("/proc/sys/kernel/hostname") {
        Ok(host) if !host.trim().is_empty() => format!("ferrum-controller@{}", host.trim()),
        _ => "ferrum-controller".to_owned(),
    }
}

/// What a successful check saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SshCheck {
    /// The server's host key as an OpenSSH public key line (`ssh-ed25519 AAAA...`, no comment).
    pub host_key: String,
    /// `SHA256:...` of the host key.
    pub fingerprint: String,
    /// The command's exit status.
    pub exit_status: u32,
    /// At most [`OUTPUT_LIMIT`] bytes of stdout (lossy UTF-8).
    pub stdout: String,
    /// At most [`OUTPUT_LIMIT`] bytes of stderr (lossy UTF-8).
    pub stderr: String,
}

/// Why a check failed. Display never includes key material.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The TCP connection failed (refused, no route, unreachable).
    #[error("cannot connect to {addr}")]
    Connect {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    /// The whole exchange did not finish within the limit.
    #[error("SSH check of {addr} did not finish within {limit:?}")]
    Timeout { addr: SocketAddr, limit: Duration },
    /// The SSH protocol failed (banner, key exchange, transport).
    #[error("SSH session with {addr} failed")]
    Protocol {
        addr: SocketAddr,
        #[source]
        source: russh::Error,
    },
    /// The server presented another host key than the recorded one.
    #[error("host key of {addr} is {seen}, expected {expected}")]
    HostKeyMismatch {
        addr: SocketAddr,
        /// Fingerprint of the expected key.
        expected: String,
        /// Fingerprint of the key the server presented.
        seen: String,
    },
    /// The `expected_host_key` given by the caller is not an OpenSSH public key.
    #[error("the recorded host key is not an OpenSSH public key")]
    InvalidExpectedKey(#[source] ssh_key::Error),
    /// The server refused the controller's key for root.
    #[error("{addr} refused the controller's key {fingerprint} for root")]
    AuthRejected { addr: SocketAddr, fingerprint: String },
    /// The server refused to run the command.
    #[error("{addr} refused to run the command")]
    ExecRefused { addr: SocketAddr },
    /// The channel closed without an exit status (the command was killed by a
    /// signal, or the server does not send one).
    #[error("the command on {addr} ended without an exit status (signal: {})", signal.as_deref().unwrap_or("none"))]
    NoExitStatus { addr: SocketAddr, signal: Option<String> },
}

impl SshError {
    /// True while the node may still be booting: the connection was refused
    /// or cut, nothing answered in time, the SSH banner or key exchange did
    /// not complete. False for a refused key, a host key mismatch, a bad
    /// recorded key, or a command that ran and failed.
    pub fn is_retryable(&self) -> bool {
        match self {
            SshError::Connect { .. } | SshError::Timeout { .. } => true,
            SshError::Protocol { source, .. } => matches!(
                source,
                russh::Error::IO(_)
                    | russh::Error::HUP
                    | russh::Error::Disconnect
                    | russh::Error::Version
                    | russh::Error::ConnectionTimeout
                    | russh::Error::InactivityTimeout
                    | russh::Error::KeepaliveTimeout
                    | russh::Error::SendError
                    | russh::Error::Elapsed(_)
            ),
            SshError::HostKeyMismatch { .. }
            | SshError::InvalidExpectedKey(_)
            | SshError::AuthRejected { .. }
            | SshError::ExecRefused { .. }
            | SshError::NoExitStatus { .. } => false,
        }
    }
}

/// Logs in to `addr` as root with `key`, runs `command`, returns its exit
/// status and output (at most [`OUTPUT_LIMIT`] bytes kept of each stream).
/// The whole exchange, from TCP connect to channel close, is bounded by
/// `timeout`.
///
/// When `expected_host_key` is `Some` (an OpenSSH public key line; the
/// comment is ignored), a different server key is refused
/// ([`SshError::HostKeyMismatch`]); when `None`, any key is accepted and
/// returned in [`SshCheck::host_key`] (trust on first use, recorded by the
/// caller).
pub async fn run_as_root(
    addr: SocketAddr,
    key: &ControllerKey,
    command: &str,
    timeout: Duration,
    expected_host_key: Option<&str>,
) -> Result<SshCheck, SshError> {
    let expected = expected_host_key.map(PublicKey::from_openssh).transpose().map_err(SshError::InvalidExpectedKey)?;
    let started = Instant::now();
    let mut session = None;
    let result = match tokio::time::timeout(timeout, exchange(addr, key, command, timeout, expected, &mut session)).await {
        Ok(result) => result,
        Err(_) => Err(SshError::Timeout { addr, limit: timeout }),
    };
    if let Some(session) = session {
        close(session).await;
    }
    match &result {
        Ok(check) => {
            tracing::debug!(%addr, host_key = %check.fingerprint, exit_status = check.exit_status, elapsed = ?started.elapsed(), "SSH check ran");
        }
        Err(e) => {
            tracing::debug!(%addr, error = %cause_chain(e), retryable = e.is_retryable(), elapsed = ?started.elapsed(), "SSH check failed");
        }
    }
    result
}

/// `error: cause: cause`, for logs.
fn cause_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

async fn exchange(
    addr: SocketAddr,
    key: &ControllerKey,
    command: &str,
    timeout: Duration,
    expected: Option<PublicKey>,
    slot: &mut Option<client::Handle<HostKeyCheck>>,
) -> Result<SshCheck, SshError> {
    let protocol = |source| SshError::Protocol { addr, source };

    let stream = tokio::net::TcpStream::connect(addr).await.map_err(|source| SshError::Connect { addr, source })?;
    stream.set_nodelay(true).map_err(|source| SshError::Connect { addr, source })?;

    let config = client::Config {
        // The spawned session task ends by itself should the peer stall
        // after we gave up (the outer timeout drops only our side).
        inactivity_timeout: Some(timeout),
        ..client::Config::default()
    };
    let seen = Arc::new(OnceLock::new());
    let handler = HostKeyCheck { expected: expected.clone(), seen: Arc::clone(&seen) };
    let session = match client::connect_stream(Arc::new(config), stream, handler).await {
        Ok(session) => session,
        Err(source) => {
            // A refused host key surfaces as `UnknownKey`; say which.
            if let (Some(expected), Some(seen)) = (&expected, seen.get())
                && !same_key(expected, seen)
            {
                return Err(SshError::HostKeyMismatch {
                    addr,
                    expected: expected.fingerprint(HashAlg::Sha256).to_string(),
                    seen: seen.fingerprint(HashAlg::Sha256).to_string(),
                });
            }
            return Err(protocol(source));
        }
    };
    // Whatever happens next, the caller closes the session.
    let session = slot.insert(session);
    let Some(host_key) = seen.get().cloned() else {
        // russh calls `check_server_key` before completing the key exchange.
        return Err(protocol(russh::Error::UnknownKey));
    };

    // Public key only: no password, no keyboard-interactive, ever.
    let auth = session.authenticate_publickey(USER, PrivateKeyWithHashAlg::new(Arc::clone(&key.key), None)).await.map_err(protocol)?;
    if !auth.success() {
        return Err(SshError::AuthRejected { addr, fingerprint: key.fingerprint() });
    }

    let mut channel = session.channel_open_session().await.map_err(protocol)?;
    channel.exec(true, command).await.map_err(protocol)?;
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let mut exit_status = None;
    let mut signal = None;
    while let Some(msg) = channel.wait().await {
        match msg {
            ChannelMsg::Data { data } => keep_bounded(&mut stdout, &data),
            ChannelMsg::ExtendedData { data, ext: 1 } => keep_bounded(&mut stderr, &data),
            ChannelMsg::ExitStatus { exit_status: status } => exit_status = Some(status),
            ChannelMsg::ExitSignal { signal_name, .. } => signal = Some(format!("{signal_name:?}")),
            ChannelMsg::Failure => return Err(SshError::ExecRefused { addr }),
            ChannelMsg::Close => break,
            _ => {}
        }
    }
    let exit_status = exit_status.ok_or(SshError::NoExitStatus { addr, signal })?;
    Ok(SshCheck {
        // Encoding a valid public key into a string cannot fail.
        host_key: host_key.to_string(),
        fingerprint: host_key.fingerprint(HashAlg::Sha256).to_string(),
        exit_status,
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

/// Says goodbye and waits (bounded) for russh's session task to end, so no
/// connection outlives the check. Best effort: the server may be gone.
async fn close(session: client::Handle<HostKeyCheck>) {
    let _ = session.disconnect(Disconnect::ByApplication, "", "en").await;
    let _ = tokio::time::timeout(CLOSE_LIMIT, session).await;
}

fn keep_bounded(buf: &mut Vec<u8>, data: &[u8]) {
    let room = OUTPUT_LIMIT.saturating_sub(buf.len());
    buf.extend_from_slice(&data[..data.len().min(room)]);
}

/// Two public keys are the same key whatever their comments.
fn same_key(a: &PublicKey, b: &PublicKey) -> bool {
    a.key_data() == b.key_data()
}

/// The russh handler: records the server's host key and accepts it when no
/// key is expected or it is the expected one.
struct HostKeyCheck {
    expected: Option<PublicKey>,
    seen: Arc<OnceLock<PublicKey>>,
}

impl client::Handler for HostKeyCheck {
    type Error = russh::Error;

    async fn check_server_key(&mut self, server_key: &PublicKeyOrCertificate) -> Result<bool, Self::Error> {
        // A certificate is judged by the key it certifies.
        let mut key = server_key.public_key();
        key.set_comment("");
        let accepted = self.expected.as_ref().is_none_or(|expected| same_key(expected, &key));
        let _ = self.seen.set(key);
        Ok(accepted)
    }
}
