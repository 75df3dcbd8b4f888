//! The crate's one error type. Every variant says what was being done and on
//! what (a command line with its stderr, a path, a package, a module); the
//! underlying cause, when there is one, is the `#[source]` and is never
//! repeated in the message.

use std::io;
use std::path::PathBuf;

/// What went wrong while building an artefact.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A command ran and failed. `stderr` is its standard error (the end of
    /// it when long).
    #[error("`{command}` failed ({status}): {stderr}")]
    Command { command: String, status: String, stderr: String },

    /// A command could not be started at all (usually: not installed).
    #[error("cannot run `{command}` (is its Debian package installed?)")]
    Spawn {
        command: String,
        #[source]
        source: io::Error,
    },

    /// A file system operation failed.
    #[error("cannot {action} {}", path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// apt does not know a package, or its answer could not be understood.
    #[error("package {package}: {reason}")]
    Package { package: String, reason: String },

    /// A downloaded file does not have the hash the archive announces.
    #[error("{} has sha256 {actual}, the archive announces {expected}", path.display())]
    Checksum { path: PathBuf, expected: String, actual: String },

    /// A kernel module a recipe needs is neither built in nor shipped.
    #[error("kernel {version} has no module {module} (neither built in nor in modules.dep)")]
    ModuleMissing { version: String, module: String },

    /// A host tool or file is not what a recipe needs.
    #[error("{what}: {reason}")]
    Host { what: String, reason: String },

    /// A path given to the initramfs builder is not a clean relative path.
    #[error("invalid path in an image tree: {path:?}")]
    TreePath { path: String },
}

/// The crate's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An [`Error::Io`] for `action` on `path`.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> Error {
        let path = path.into();
        move |source| Error::Io { action, path, source }
    }
}
