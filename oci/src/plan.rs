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
    /// A core module (WASI preview 1) or a component (WASI 0.2), from its header.
    pub form: WasmForm,
    /// The addresses a serving guest listens on (a component exporting
    /// `wasi:http/incoming-handler`), and what chose them.
    pub listen: Listen,
    /// Where a serving guest's metrics are answered (`triage.io/metrics-listen`); never
    /// one of the listen addresses.
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// How long a serving guest may take to answer one request before the host answers
    /// it `504` (`triage.io/request-timeout`, else [`DEFAULT_REQUEST_TIMEOUT_MS`]).
    pub request_timeout_ms: u64,
    /// What the guest may reach: `triage.io/egress`'s grants, then the node profile's
    /// `[network] egress`. Empty: nothing (no connection, datagram, name lookup or
    /// outgoing `wasi:http` request).
    pub egress: crate::EgressGrants,
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
    /// that later containers start from (`triage.io/snapshot`, `triage.io/snapshot-init`);
    /// settled with the node: off where the node keeps no cache or no snapshots, and for
    /// components.
    pub snapshot: SnapshotPlan,
    /// How long the snapshot's init may run on the node before it is given up (and the
    /// failure remembered): [`DEFAULT_SNAPSHOT_INIT_SECONDS`], or the node profile's
    /// `[wasm] snapshot_init_timeout`.
    pub snapshot_init_seconds: u64,
    /// Models preloaded for wasi-nn's `load_by_name` (`triage.io/nn-preload`).
    pub nn_preload: Vec<crate::NnPreload>,
    /// The engine that runs the module: `triage.io/engine`, else the node profile's
    /// `[wasm] engine`, else the build's default.
    pub engine: crate::engine::EngineChoice,
}

/// What kind of Wasm binary a container runs, as its header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum WasmForm {
    /// A core module (`\0asm` version 1): WASI preview 1.
    Module,
    /// A component (`\0asm` version 0x0d, layer 1): WASI 0.2 (`wasi:cli/command` or
    /// `wasi:http/proxy`).
    Component,
}

impl WasmForm {
    /// The form an 8-byte Wasm header names; `None` for what is no Wasm header.
    pub fn from_header(head: &[u8]) -> Option<Self> {
        match head {
            [0, b'a', b's', b'm', 1, 0, 0, 0, ..] => Some(Self::Module),
            [0, b'a', b's', b'm', _, _, 1, 0, ..] => Some(Self::Component),
            // An unknown version of a core module: the engine's validation says why.
            [0, b'a', b's', b'm', ..] => Some(Self::Module),
            _ => None,
        }
    }

    /// `"module"` or `"component"`, for logs and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Module => "module",
            Self::Component => "component",
        }
    }
}

/// Where a serving guest listens unless an annotation or the environment says otherwise
/// (what runwasi's wasmtime shim and `wasmtime serve` use).
pub const DEFAULT_LISTEN: &str = "0.0.0.0:8080";

/// How long a serving guest may take to answer one request unless `triage.io/request-timeout`
/// says otherwise: as long as a drain waits, so a drain never cuts a request short.
pub const DEFAULT_REQUEST_TIMEOUT_MS: u64 = 30_000;

/// The environment variable runwasi's wasmtime shim reads its listen address from.
pub const LISTEN_ENV: &str = "WASMTIME_HTTP_PROXY_SOCKET_ADDR";

/// The addresses a serving guest listens on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Listen {
    /// In the order given; none repeated.
    pub addrs: Vec<std::net::SocketAddr>,
    /// What chose them.
    pub source: ListenSource,
}

/// What chose a serving guest's listen addresses.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ListenSource {
    /// The `triage.io/listen` annotation.
    Annotation,
    /// The container's `WASMTIME_HTTP_PROXY_SOCKET_ADDR`.
    Env,
    /// Neither: [`DEFAULT_LISTEN`].
    Default,
    /// The container's `WASMTIME_HTTP_PROXY_SOCKET_ADDR` holds this (cut by
    /// [`crate::error::excerpt`]), which is no list of addresses: a service is refused
    /// rather than served on [`DEFAULT_LISTEN`] instead (a guest that does not serve never
    /// reads it).
    EnvNotAddresses(String),
}

impl Default for Listen {
    /// [`DEFAULT_LISTEN`].
    fn default() -> Self {
        Self {
            addrs: vec![DEFAULT_LISTEN
                .parse()
                .expect("the default listen address parses")],
            source: ListenSource::Default,
        }
    }
}

impl fmt::Display for Listen {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let addrs: Vec<String> = self.addrs.iter().map(|a| a.to_string()).collect();
        let source = match &self.source {
            ListenSource::Annotation => format!("annotation {}", crate::annotations::LISTEN),
            ListenSource::Env => format!("environment {LISTEN_ENV}"),
            ListenSource::Default => "the default".to_owned(),
            ListenSource::EnvNotAddresses(value) => {
                format!("the default; environment {LISTEN_ENV}={value} is no addresses")
            }
        };
        write!(f, "{} ({source})", addrs.join(","))
    }
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
