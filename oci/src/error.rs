//! Errors of the planning step; each names the container and the thing that was wrong.

use std::path::PathBuf;

/// The most characters of a tenant's value an error quotes.
pub const EXCERPT_CHARS: usize = 120;

/// `value` quoted for an error message, cut to its first [`EXCERPT_CHARS`] characters
/// with its whole length said: annotations are the tenant's, and an error (through
/// containerd, into logs) must not carry megabytes of them.
pub fn excerpt(value: &str) -> String {
    match value.char_indices().nth(EXCERPT_CHARS) {
        None => format!("{value:?}"),
        Some((cut, _)) => format!("{:?}… ({} bytes)", &value[..cut], value.len()),
    }
}

/// A tenant's name (an annotation's key) for an error message, unquoted, cut as
/// [`excerpt`] cuts a value.
pub fn excerpt_name(name: &str) -> String {
    match name.char_indices().nth(EXCERPT_CHARS) {
        None => name.to_owned(),
        Some((cut, _)) => format!("{}… ({} bytes)", &name[..cut], name.len()),
    }
}

/// Why no plan could be made for a container.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// `config.json` could not be read or parsed.
    #[error("container {id}: cannot load OCI spec {path}: {reason}")]
    Spec {
        /// Container id.
        id: String,
        /// The config.json path.
        path: PathBuf,
        /// What the parser said.
        reason: String,
    },
    /// The spec has no process or an empty `process.args`.
    #[error("container {id}: process.args is empty: nothing to run")]
    EmptyArgs {
        /// Container id.
        id: String,
    },
    /// `triage.io/runtime` holds something other than `wasm` or `native`.
    #[error("container {id}: unknown value {} for annotation triage.io/runtime (expected \"wasm\" or \"native\")", excerpt(.value))]
    UnknownRuntime {
        /// Container id.
        id: String,
        /// The value found.
        value: String,
    },
    /// The entrypoint does not exist in the container's filesystem.
    #[error("container {id}: entrypoint {path:?} not found in the container's rootfs or mounts")]
    EntrypointNotFound {
        /// Container id.
        id: String,
        /// The path as the spec names it.
        path: String,
    },
    /// The entrypoint exists but could not be read.
    #[error("container {id}: cannot read entrypoint {path}: {source}")]
    EntrypointUnreadable {
        /// Container id.
        id: String,
        /// The path that failed (in the container; the rootfs on the node where that
        /// could not be opened).
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A Wasm container's spec asks for an LSM label the kernel would enforce.
    #[error("container {id}: the spec asks for {label}, which this kernel enforces, but a Wasm container's init never execs (where a label is applied) and cannot take it itself; refused rather than run unconfined (run it as a native container, or drop the label)")]
    LsmLabel {
        /// Container id.
        id: String,
        /// What it asks for.
        label: String,
    },
    /// The Wasm module is larger than the node reads.
    #[error("container {id}: wasm module {path} is {size} bytes, larger than the {limit} bytes the node profile allows (files.max_module_size)")]
    ModuleTooLarge {
        /// Container id.
        id: String,
        /// Its path in the container.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// The node's bound.
        limit: u64,
    },
    /// `program#export` names a core module's export, but the program is a component.
    #[error("container {id}: {path} is a wasm component, which runs its wasi:cli/run or serves wasi:http/incoming-handler; `#{export}` names the export of a core module")]
    ExportOfComponent {
        /// Container id.
        id: String,
        /// The component's path in the container.
        path: PathBuf,
        /// The export named.
        export: String,
    },
    /// An explicit request contradicts what the entrypoint is.
    #[error("container {id}: {signal} asks for {wanted} but entrypoint {path} is {found}")]
    Contradiction {
        /// Container id.
        id: String,
        /// The signal that asked (e.g. `annotation triage.io/runtime=wasm`).
        signal: String,
        /// What it asked for.
        wanted: &'static str,
        /// Entrypoint path in the container.
        path: String,
        /// What the entrypoint really is.
        found: &'static str,
    },
    /// `/module.wasm#` with an empty export name.
    #[error("container {id}: entrypoint {arg0:?} names an empty export after '#'")]
    EmptyExport {
        /// Container id.
        id: String,
        /// The first argument.
        arg0: String,
    },
    /// The runtime handler's `options` ask for something Triage does not do.
    #[error("container {id}: runtime options from {source_name}: {reason}")]
    RuntimeOptions {
        /// Container id.
        id: String,
        /// Where the options came from (`config_body`, or the `ConfigPath` file).
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// The container asks for more than the node profile allows one container.
    #[error("container {id}: asks for {what} of {asked}, more than this node can give a container: {allocatable} allocatable (node profile: {profile})")]
    OverCapacity {
        /// Container id.
        id: String,
        /// Which resource (`a memory limit`, `a CPU request`, ...).
        what: &'static str,
        /// The amount asked for, as text.
        asked: String,
        /// What one container may have.
        allocatable: String,
        /// The node's capacity and reserve, as text.
        profile: String,
    },
    /// An annotation Triage reads holds a value it does not know.
    #[error("container {id}: annotation {key}={} is not valid (expected {expected})", excerpt(.value))]
    InvalidAnnotation {
        /// Container id.
        id: String,
        /// The annotation key.
        key: &'static str,
        /// The value found.
        value: String,
        /// What it may be.
        expected: &'static str,
    },
    /// A `triage.io/` annotation that Triage does not read (a typo would otherwise be
    /// ignored without a word).
    #[error("container {id}: annotation {} is not one Triage knows (known: {known})", excerpt_name(.key))]
    UnknownAnnotation {
        /// Container id.
        id: String,
        /// The key found.
        key: String,
        /// The keys Triage reads.
        known: String,
    },
    /// `triage.io/metrics-listen` names one of the service's own listen addresses.
    #[error("container {id}: annotation triage.io/metrics-listen={addr} is also a listen address of the service ({listen}); metrics need an address of their own")]
    MetricsOnListenAddress {
        /// Container id.
        id: String,
        /// The address.
        addr: std::net::SocketAddr,
        /// The listen addresses, and what chose them.
        listen: String,
    },
    /// `triage.io/egress` does not parse.
    #[error("container {id}: annotation triage.io/egress: {reason}")]
    InvalidEgress {
        /// Container id.
        id: String,
        /// Which entry is wrong, and the forms a grant takes.
        reason: String,
    },
    /// `triage.io/nn-preload` does not parse.
    #[error("container {id}: annotation triage.io/nn-preload: {reason}")]
    NnPreload {
        /// Container id.
        id: String,
        /// What is wrong with which entry.
        reason: String,
    },
    /// A preloaded model's file is not in the container.
    #[error("container {id}: wasi-nn model {name:?} at {path}: {reason}")]
    NnModel {
        /// Container id.
        id: String,
        /// The name it was to be loaded by.
        name: String,
        /// Its path inside the container.
        path: PathBuf,
        /// Why it cannot be used.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tenants_huge_value_or_key_is_cut_in_the_message() {
        let huge = "x".repeat(1 << 20);
        let error = PlanError::InvalidAnnotation {
            id: "c1".into(),
            key: "triage.io/listen",
            value: huge.clone(),
            expected: "IP:PORT",
        };
        let message = error.to_string();
        assert!(message.len() < 400, "{} bytes", message.len());
        assert!(
            message.starts_with(&format!(
                "container c1: annotation triage.io/listen=\"{}\"… (1048576 bytes) is not valid",
                "x".repeat(EXCERPT_CHARS)
            )),
            "{message}"
        );
        let key = format!("triage.io/{huge}");
        let message = PlanError::UnknownAnnotation {
            id: "c1".into(),
            key,
            known: "triage.io/runtime".into(),
        }
        .to_string();
        assert!(message.len() < 400, "{} bytes", message.len());
        assert!(
            message.contains("… (1048586 bytes) is not one Triage knows"),
            "{message}"
        );
        // Short ones are quoted whole, multi-byte characters are never split.
        assert_eq!(excerpt("0.0.0.0:80x"), "\"0.0.0.0:80x\"");
        let accents = "é".repeat(EXCERPT_CHARS + 1);
        assert!(excerpt(&accents).ends_with(&format!("… ({} bytes)", accents.len())));
    }
}
