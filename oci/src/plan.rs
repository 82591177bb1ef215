//! The result of planning: what a container runs, and the reason for that choice.

use std::fmt;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What Triage will run for one container, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkloadPlan {
    /// Container id.
    pub id: String,
    /// Wasm or native, with what each needs.
    pub kind: WorkloadKind,
    /// The signal that decided.
    pub reason: DecisionReason,
}

impl WorkloadPlan {
    /// `"wasm"` or `"native"`, for logs and metrics.
    pub fn kind_name(&self) -> &'static str {
        match self.kind {
            WorkloadKind::Wasm(_) => "wasm",
            WorkloadKind::Native => "native",
        }
    }

    /// The Wasm part of the plan, if this is a Wasm workload.
    pub fn wasm(&self) -> Option<&WasmPlan> {
        match &self.kind {
            WorkloadKind::Wasm(w) => Some(w),
            WorkloadKind::Native => None,
        }
    }
}

/// The two ways a container runs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
// One plan per container, made once and never stored in bulk: boxing buys nothing.
#[allow(clippy::large_enum_variant)]
pub enum WorkloadKind {
    /// In the Wasm engine.
    Wasm(WasmPlan),
    /// As a native Linux process (the spec's process is exec'd as is).
    Native,
}

/// Everything the Wasm engine needs to run a guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WasmPlan {
    /// Where the module comes from.
    pub module: ModuleSource,
    /// The export to call (`_start` unless the entrypoint says `module.wasm#name`).
    pub export: String,
    /// The guest's argv; `argv[0]` is the module path as the container sees it.
    pub args: Vec<String>,
    /// The guest's environment, in spec order.
    pub env: Vec<(String, String)>,
    /// The guest's working directory.
    pub cwd: PathBuf,
    /// Directories the guest may open, as the container sees them.
    pub preopens: Vec<Preopen>,
    /// Whether the module goes through the node's artifact cache (`triage.io/cache`).
    pub artifact_cache: bool,
    /// Whether, and with which export, the module is pre-initialised into a snapshot
    /// that later containers start from (`triage.io/snapshot`, `triage.io/snapshot-init`).
    pub snapshot: SnapshotPlan,
    /// How long the snapshot's init may run on the node before it is given up (and the
    /// failure remembered): [`DEFAULT_SNAPSHOT_INIT_SECONDS`], or the node profile's
    /// `[wasm] snapshot_init_timeout`.
    pub snapshot_init_seconds: u64,
    /// Models preloaded for wasi-nn's `load_by_name` (`triage.io/nn-preload`).
    pub nn_preload: Vec<crate::NnPreload>,
    /// The engine that runs the module: the one `triage.io/engine` names, until the shim
    /// settles it with the node's setting and the build's default; `None` leaves it to them.
    pub engine: Option<crate::engine::EngineChoice>,
}

/// The init export Wizer snapshots are made with unless an annotation names another.
pub const DEFAULT_SNAPSHOT_INIT: &str = "wizer-initialize";

/// How long a snapshot's init may run unless the node profile says otherwise.
pub const DEFAULT_SNAPSHOT_INIT_SECONDS: u64 = 30;

/// Whether a module is pre-initialised, and by which export.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum SnapshotPlan {
    /// Never (`triage.io/snapshot: off`).
    Off,
    /// When the module exports [`DEFAULT_SNAPSHOT_INIT`].
    Default,
    /// With this export, which the module must have (`triage.io/snapshot-init`).
    Named(String),
}

impl SnapshotPlan {
    /// The export to pre-initialise with, if any.
    pub fn init_export(&self) -> Option<&str> {
        match self {
            Self::Off => None,
            Self::Default => Some(DEFAULT_SNAPSHOT_INIT),
            Self::Named(name) => Some(name),
        }
    }
}

/// Where a module's bytes are.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ModuleSource {
    /// A file in the container's filesystem (the decision opened it: see
    /// [`crate::PlanFiles`]).
    File {
        /// Path inside the container.
        container_path: PathBuf,
    },
    /// An OCI image layer whose media type is a Wasm module.
    OciLayer {
        /// The layer's media type.
        media_type: String,
        /// The layer's digest in containerd's content store.
        digest: String,
    },
}

/// A directory handed to the guest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Preopen {
    /// The path the guest opens (inside the container).
    pub guest_path: PathBuf,
    /// Whether the guest may only read.
    pub read_only: bool,
}

/// The signal that decided between Wasm and native.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum DecisionReason {
    /// An annotation decided (`triage.io/runtime` or crun's keys).
    Annotation {
        /// The key.
        key: String,
        /// Its value.
        value: String,
        /// What the entrypoint turned out to be, if that mattered (the `-smart` variants).
        entrypoint: Option<String>,
    },
    /// The image's config or layers decided.
    Image {
        /// What in the image said so.
        signal: String,
    },
    /// The entrypoint's first bytes decided.
    EntrypointMagic {
        /// The entrypoint path in the container.
        path: PathBuf,
        /// What it is.
        kind: String,
    },
}

impl fmt::Display for DecisionReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Annotation {
                key,
                value,
                entrypoint: None,
            } => write!(f, "annotation {key}={value}"),
            Self::Annotation {
                key,
                value,
                entrypoint: Some(what),
            } => write!(f, "annotation {key}={value} and the entrypoint is {what}"),
            Self::Image { signal } => f.write_str(signal),
            Self::EntrypointMagic { path, kind } => {
                write!(f, "no annotation; entrypoint {} is {kind}", path.display())
            }
        }
    }
}
