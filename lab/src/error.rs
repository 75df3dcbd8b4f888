//! The lab's one error type: every variant names what it was doing and the
//! file, process or node involved; none carries a password.

use std::path::PathBuf;

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    #[error("{what}: {}", path.display())]
    Io {
        what: String,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start {program}")]
    Spawn {
        program: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Netns(#[from] crate::netns::NetnsError),
    #[error("QMP of node {node}: {message}")]
    Qmp { node: String, message: String },
    #[error("{what} not within {seconds} s")]
    Timeout { what: String, seconds: u64 },
    #[error("{0}")]
    Invalid(String),
    #[error("the lab supervisor answered: {0}")]
    Control(String),
}

impl LabError {
    /// An I/O error on `path` while doing `what`.
    pub fn io(what: impl Into<String>, path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> LabError {
        let (what, path) = (what.into(), path.into());
        move |source| LabError::Io { what, path, source }
    }
}

/// The lab's result type.
pub type Result<T, E = LabError> = std::result::Result<T, E>;
