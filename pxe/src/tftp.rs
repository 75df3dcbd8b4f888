//! Read-only TFTP service over one root directory.
//!
//! Owns: resolving TFTP read requests to regular files under a root
//! directory and serving them with `async-tftp` (RFC 1350, options per RFC
//! 2347/2348/2349, windowsize per RFC 7440).
//!
//! Must not: write, create or truncate any file (every write request is
//! refused), or follow a path out of its root: each requested path is
//! canonicalised (resolving `..` and symlinks) and refused unless the result
//! is a regular file inside the canonical root.

use std::future::Future;
use std::net::{SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use async_tftp::packet;
use async_tftp::server::handlers::{DirHandler, DirHandlerMode};
use async_tftp::server::{Handler, TftpServer, TftpServerBuilder};
use tracing::debug;

/// Why a read request was refused.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    /// The path does not exist (or cannot be resolved).
    #[error("file not found")]
    NotFound,
    /// The resolved path lies outside the root.
    #[error("path resolves outside the root")]
    OutsideRoot,
    /// The path is a directory, device, socket or other non-regular file.
    #[error("not a regular file")]
    NotRegularFile,
    /// Write requests are never served.
    #[error("write requests are refused (read-only server)")]
    WriteRefused,
}

impl Refusal {
    /// The TFTP error sent to the client.
    pub fn to_packet_error(&self) -> packet::Error {
        match self {
            Refusal::NotFound => packet::Error::FileNotFound,
            Refusal::OutsideRoot | Refusal::NotRegularFile | Refusal::WriteRefused => packet::Error::PermissionDenied,
        }
    }
}

/// A read-only `async-tftp` handler confined to one root directory.
///
/// Paths are resolved with [`std::fs::canonicalize`], so `..`, absolute
/// paths and symlinks are all judged by where they really lead. Symlinks
/// that stay inside the root are served.
pub struct RootedHandler {
    root: PathBuf,
    /// Opens the already-checked, symlink-free relative path. `async-tftp`
    /// only lets us name its reader type through this handler.
    inner: DirHandler,
}

impl std::fmt::Debug for RootedHandler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RootedHandler").field("root", &self.root).finish_non_exhaustive()
    }
}

impl RootedHandler {
    /// Creates a handler for `root`, which must be an existing directory.
    pub fn new(root: &Path) -> anyhow::Result<Self> {
        let root = std::fs::canonicalize(root).with_context(|| format!("TFTP root {}", root.display()))?;
        if !root.is_dir() {
            anyhow::bail!("TFTP root {} is not a directory", root.display());
        }
        let inner = DirHandler::new(&root, DirHandlerMode::ReadOnly).with_context(|| format!("TFTP root {}", root.display()))?;
        Ok(Self { root, inner })
    }

    /// The canonical root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Resolves a requested path to a canonical path relative to the root
    /// that names a regular file, or says why it is refused.
    pub fn resolve(&self, requested: &Path) -> Result<PathBuf, Refusal> {
        let mut rel = requested;
        while let Ok(stripped) = rel.strip_prefix("/") {
            if stripped == rel {
                break;
            }
            rel = stripped;
        }
        let joined = self.root.join(rel);
        let canonical = std::fs::canonicalize(&joined).map_err(|_| Refusal::NotFound)?;
        let inside = canonical.strip_prefix(&self.root).map_err(|_| Refusal::OutsideRoot)?;
        let meta = std::fs::metadata(&canonical).map_err(|_| Refusal::NotFound)?;
        if !meta.is_file() || inside.as_os_str().is_empty() {
            return Err(Refusal::NotRegularFile);
        }
        Ok(inside.to_path_buf())
    }
}

impl Handler for RootedHandler {
    type Reader = <DirHandler as Handler>::Reader;
    type Writer = <DirHandler as Handler>::Writer;

    async fn read_req_open(&mut self, client: &SocketAddr, path: &Path) -> Result<(Self::Reader, Option<u64>), packet::Error> {
        let rel = match self.resolve(path) {
            Ok(rel) => rel,
            Err(refusal) => {
                debug!(%client, path = %path.display(), %refusal, "TFTP read refused");
                return Err(refusal.to_packet_error());
            }
        };
        match self.inner.read_req_open(client, &rel).await {
            Ok(opened) => {
                debug!(%client, path = %path.display(), file = %rel.display(), "TFTP read");
                Ok(opened)
            }
            Err(e) => {
                debug!(%client, path = %path.display(), error = ?e, "TFTP open failed");
                Err(e)
            }
        }
    }

    async fn write_req_open(&mut self, client: &SocketAddr, path: &Path, _size: Option<u64>) -> Result<Self::Writer, packet::Error> {
        let refusal = Refusal::WriteRefused;
        debug!(%client, path = %path.display(), %refusal, "TFTP write refused");
        Err(refusal.to_packet_error())
    }
}

/// A bound, not yet running, read-only TFTP service.
pub struct TftpService {
    server: TftpServer<RootedHandler>,
    local_addr: SocketAddr,
    root: PathBuf,
}

/// Binds a read-only TFTP service for `root` on `addr` (port 0 picks a free
/// port; see [`TftpService::local_addr`]).
pub async fn bind(root: PathBuf, addr: SocketAddr) -> anyhow::Result<TftpService> {
    let socket = UdpSocket::bind(addr).with_context(|| format!("binding TFTP on {addr}"))?;
    bind_socket(root, socket).await
}

/// Serves `root` on an already bound socket (bound, for instance, inside
/// another network namespace).
pub async fn bind_socket(root: PathBuf, socket: UdpSocket) -> anyhow::Result<TftpService> {
    let handler = RootedHandler::new(&root)?;
    let root = handler.root().to_path_buf();
    let local_addr = socket.local_addr()?;
    let server = TftpServerBuilder::with_handler(handler).std_socket(socket)?.build().await?;
    Ok(TftpService { server, local_addr, root })
}

impl std::fmt::Debug for TftpService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TftpService").field("local_addr", &self.local_addr).field("root", &self.root).finish_non_exhaustive()
    }
}

impl TftpService {
    /// The address the service is bound to.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The canonical root directory being served.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Serves until `shutdown` completes (transfers in flight are dropped)
    /// or the socket fails.
    pub async fn run(self, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
        tokio::select! {
            r = self.server.serve() => r.context("TFTP server stopped"),
            () = shutdown => Ok(()),
        }
    }
}

/// Binds and serves `root` on `listen` until `shutdown` completes.
pub async fn serve(root: PathBuf, listen: SocketAddr, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    bind(root, listen).await?.run(shutdown).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolve_confines_to_root() {
        let dir = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.txt"), b"a").unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(outside.path().join("secret"), b"s").unwrap();
        std::os::unix::fs::symlink(outside.path().join("secret"), dir.path().join("out")).unwrap();
        std::os::unix::fs::symlink("a.txt", dir.path().join("in")).unwrap();
        let h = RootedHandler::new(dir.path()).unwrap();
        assert_eq!(h.resolve(Path::new("a.txt")).unwrap(), Path::new("a.txt"));
        assert_eq!(h.resolve(Path::new("//a.txt")).unwrap(), Path::new("a.txt"));
        assert_eq!(h.resolve(Path::new("in")).unwrap(), Path::new("a.txt"));
        assert!(matches!(h.resolve(Path::new("out")), Err(Refusal::OutsideRoot)));
        assert!(matches!(h.resolve(Path::new("sub")), Err(Refusal::NotRegularFile)));
        assert!(matches!(h.resolve(Path::new("")), Err(Refusal::NotRegularFile)));
        assert!(matches!(h.resolve(Path::new("/")), Err(Refusal::NotRegularFile)));
        assert!(matches!(h.resolve(Path::new("nope")), Err(Refusal::NotFound)));
        let up = format!("sub/../../{}/secret", outside.path().file_name().unwrap().to_string_lossy());
        assert!(matches!(h.resolve(Path::new(&up)), Err(Refusal::OutsideRoot)));
    }
}
