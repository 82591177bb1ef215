//! The runtime crate's error type; every variant names the container and what failed.

use std::path::PathBuf;

/// Errors of the executors, mounts and stdio.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// An I/O operation on a path failed.
    #[error("container {id}: {op} {path}: {source}")]
    Io {
        /// Container id.
        id: String,
        /// What was being done.
        op: &'static str,
        /// The path involved.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A mount or unmount failed.
    #[error("container {id}: {op} {target}: {source}")]
    Mount {
        /// Container id.
        id: String,
        /// mount or unmount.
        op: &'static str,
        /// Mount point.
        target: PathBuf,
        /// The errno.
        source: nix::Error,
    },
    /// The Wasm engine refused the module or failed to run it.
    #[error(transparent)]
    Engine(#[from] crate::engine::EngineError),
    /// libcontainer failed.
    #[error("container {id}: {op} failed: {reason}")]
    Container {
        /// Container id.
        id: String,
        /// create, start or delete.
        op: &'static str,
        /// libcontainer's error, flattened with its causes.
        reason: String,
    },
    /// The plan could not be made.
    #[error(transparent)]
    Plan(#[from] triage_oci::PlanError),
    /// wasi-nn could not be set up (backend, model file, model load).
    #[error(transparent)]
    Nn(Box<crate::nn::NnSetupError>),
    /// Something in the request is not supported by this build.
    #[error("container {id}: {what} is not supported")]
    Unsupported {
        /// Container id.
        id: String,
        /// What was asked for.
        what: String,
    },
}

impl From<crate::nn::NnSetupError> for RuntimeError {
    fn from(e: crate::nn::NnSetupError) -> Self {
        Self::Nn(Box::new(e))
    }
}
