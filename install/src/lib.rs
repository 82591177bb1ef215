//! Installs Triage on a node: the shim binary (also as `containerd-shim-wasmedge-v1`),
//! the `triage` and `wasmedge` runtime handlers in containerd's config (edited in place,
//! backup kept) and in K3s's containerd template, and removes them again.
#![deny(missing_docs)]

pub mod binaries;
pub mod containerd_config;
pub mod k3s;
pub mod plan;

pub use plan::{install, uninstall, InstallOptions, Report};

/// The runtime handlers Triage provides: (CRI handler name, containerd runtime type).
pub const HANDLERS: &[(&str, &str)] = &[
    ("triage", "io.containerd.triage.v1"),
    ("wasmedge", "io.containerd.wasmedge.v1"),
];

/// Annotations containerd's CRI plugin forwards from a pod (and a container config) to
/// each container's OCI spec for Triage's handlers: the keys its decision reads.
pub const FORWARDED_ANNOTATIONS: &[&str] =
    &["triage.io/*", "module.wasm.image/*", "run.oci.handler"];

/// Shim binary names containerd derives from those runtime types.
pub const SHIM_NAMES: &[&str] = &["containerd-shim-triage-v1", "containerd-shim-wasmedge-v1"];

/// Errors of the installer; each names the file it was working on.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// Reading or writing a file failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// containerd's config is not valid TOML.
    #[error("{path} is not valid TOML: {reason}")]
    Parse {
        /// The file.
        path: std::path::PathBuf,
        /// The parser's message.
        reason: String,
    },
    /// The config uses a schema this installer does not edit.
    #[error("{path}: {reason}")]
    Unsupported {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        reason: String,
    },
}
