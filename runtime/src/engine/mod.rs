//! The Wasm engine interface, and the engines compiled into this build.

use std::path::PathBuf;

use triage_oci::{EngineChoice, EngineName, WasmForm, WasmPlan};

pub mod cache;
pub mod egress;
pub mod facts;
pub mod memory;
pub mod metrics;

#[cfg(feature = "wasmtime")]
mod component;
#[cfg(feature = "wasmtime")]
mod name_lookup;
#[cfg(feature = "wasmtime")]
mod outgoing_http;
#[cfg(feature = "wasmtime")]
mod p1_sockets;
#[cfg(feature = "wasmtime")]
mod serve;
#[cfg(feature = "wasmtime")]
mod snapshot;
#[cfg(feature = "wasmtime")]
mod wasi_nn;
#[cfg(feature = "wasmtime")]
mod wasmtime;
#[cfg(feature = "wasmtime")]
pub use self::serve::ProxyRequests;
#[cfg(feature = "wasmtime")]
pub use self::wasmtime::WasmtimeEngine;
#[cfg(feature = "wasmedge")]
mod wasmedge;
#[cfg(feature = "wasmedge")]
pub use self::wasmedge::WasmedgeEngine;

/// Exit status reported for a guest that trapped (128 + SIGABRT, as wasmtime's CLI does).
pub const TRAP_EXIT_STATUS: i32 = 134;

/// One run of a guest: what to load and how to call it.
#[derive(Debug, Clone)]
pub struct GuestInvocation {
    /// Container id (for errors and logs).
    pub id: String,
    /// The module's path as this process sees it (read when `module_bytes` is `None`).
    pub module_path: PathBuf,
    /// The module's bytes where the caller has read them already (the create helper, from
    /// the descriptor the shim opened at its decision): then the path is not read again.
    pub module_bytes: Option<std::sync::Arc<[u8]>>,
    /// The export to call.
    pub export: String,
    /// argv, `argv[0]` first.
    pub args: Vec<String>,
    /// Environment in order.
    pub env: Vec<(String, String)>,
    /// (directory in this process's view, path the guest sees, read-only).
    pub preopens: Vec<(PathBuf, String, bool)>,
    /// The container's memory limit in bytes (`linux.resources.memory.limit`), which the
    /// guest's linear memories must fit in beside the engine itself.
    pub memory_limit: Option<u64>,
    /// Where the guest's stdio goes.
    pub stdio: GuestStdio,
    /// wasi-nn's backends and preloaded graphs; `None` gives the guest no backend.
    pub nn: Option<crate::nn::NnHost>,
    /// Where a serving component listens (bound while it is prepared, at Create).
    pub listen: triage_oci::Listen,
    /// Where a serving component's metrics are answered (bound with its listeners).
    pub metrics_listen: Option<std::net::SocketAddr>,
    /// How long a serving component may take to answer one request.
    pub request_timeout: std::time::Duration,
    /// The container's CPU limit in CPUs (`quota / period`), which bounds how many
    /// requests a serving component handles at once; `None` when unlimited.
    pub cpus: Option<f64>,
    /// What the guest may reach (the plan's grants, names resolved at Create).
    pub egress: std::sync::Arc<egress::Egress>,
}

/// Where a guest's stdin, stdout and stderr are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestStdio {
    /// This process's fds 0, 1 and 2 (the container's stdio).
    Inherit,
    /// Nothing: reads see end of file, writes are discarded (benchmarks).
    Discard,
}

/// What [`WasmEngine::preload`] should do beside loading the module.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PreloadOptions {
    /// Pre-initialise the module with this export when the module has it: the export
    /// runs once per node and later containers start from the memory and globals it left
    /// (a Wizer snapshot). `None` loads the module as it is.
    pub snapshot_init: Option<String>,
    /// The memory the init function may use in all (the container's limit).
    pub init_memory_limit: Option<u64>,
    /// How long the init may run before it is given up.
    pub init_deadline: std::time::Duration,
    /// The container's CPU limit in thousandths of a CPU (`None`: unlimited): a service's
    /// instance pool holds as many instances as it admits requests at once.
    pub cpu_millis: Option<u64>,
    /// The container's memory limit: no instance of a service's pool grows past it.
    pub memory_limit: Option<u64>,
}

/// What [`WasmEngine::preload`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Preloaded {
    /// Whether the artifact came from the cache.
    pub outcome: cache::CacheOutcome,
    /// The init export the loaded module was pre-initialised with, if it is a snapshot.
    pub snapshot_of: Option<String>,
    /// Whether the guest imports wasi-nn (a module `wasi_ephemeral_nn`, a component
    /// `wasi:nn`).
    pub uses_wasi_nn: bool,
}

/// The import module of wasi-nn's preview1 ABI (the `wasi-nn` guest crate, WasmEdge).
pub const WASI_NN_MODULE: &str = "wasi_ephemeral_nn";

pub use facts::WASI_NN_PACKAGE;

/// How a guest ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestExit {
    /// It returned (status 0) or called `proc_exit(status)`.
    Exited(i32),
    /// It trapped; the message says where and why.
    Trapped(String),
    /// It was interrupted through [`GuestInterrupt`] (a Kill) while running wasm code.
    Interrupted,
}

impl GuestExit {
    /// The process exit status that represents this outcome.
    pub fn status(&self) -> i32 {
        match self {
            Self::Exited(code) => *code,
            Self::Trapped(_) | Self::Interrupted => TRAP_EXIT_STATUS,
        }
    }
}

impl GuestInvocation {
    /// The module's bytes: those the caller read, else read from its path now.
    pub fn module_bytes(&self) -> Result<std::sync::Arc<[u8]>, EngineError> {
        match &self.module_bytes {
            Some(bytes) => Ok(std::sync::Arc::clone(bytes)),
            None => read_module(&self.id, &self.module_path).map(Into::into),
        }
    }
}

/// Errors of an engine, each naming the container.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// The module could not be read.
    #[error("container {id}: cannot read wasm module {path}: {source}")]
    Read {
        /// Container id.
        id: String,
        /// Module path.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The bytes are not a valid module.
    #[error("container {id}: invalid wasm module {path}: {reason}")]
    Invalid {
        /// Container id.
        id: String,
        /// Module path.
        path: PathBuf,
        /// The validator's message.
        reason: String,
    },
    /// The export to call does not exist or is not a `() -> ()` function.
    #[error("container {id}: wasm module {path} has no function export {export:?} (exports: {available})")]
    MissingExport {
        /// Container id.
        id: String,
        /// Module path.
        path: PathBuf,
        /// The export asked for.
        export: String,
        /// The function exports that exist.
        available: String,
    },
    /// The artifact cache could not serve the module.
    #[error("container {id}: artifact cache: {source}")]
    Cache {
        /// Container id.
        id: String,
        /// The cause.
        source: cache::CacheError,
    },
    /// Setting up the guest (linking, WASI context, instantiation) failed.
    #[error("container {id}: cannot set up wasm guest: {reason}")]
    Setup {
        /// Container id.
        id: String,
        /// What went wrong.
        reason: String,
    },
    /// A module that can reach out of the pod on an engine that cannot check where, in a
    /// container granted nothing.
    #[error("container {id}: wasm module {path} imports {imports}, which reach the network, and the {engine} engine cannot hold them to egress grants; the container has none (grant destinations with annotation triage.io/egress, or run it on wasmtime with triage.io/engine: wasmtime)")]
    EgressUnchecked {
        /// Container id.
        id: String,
        /// Module path.
        path: PathBuf,
        /// The engine.
        engine: String,
        /// The imports that reach out.
        imports: String,
    },
    /// No engine of that name is compiled into this build.
    #[error("container {id}: wasm engine {name} ({reason}) is not in this build of the shim (it has: {available}); the {name} engine is built with `cargo build --features {name}`")]
    NotEnabled {
        /// Container id.
        id: String,
        /// The engine asked for.
        name: EngineName,
        /// What asked for it.
        reason: String,
        /// The engines this build has.
        available: String,
    },
}

impl EngineError {
    /// The bytes at `path` are not a valid module, for `reason`.
    pub fn invalid(id: &str, path: &std::path::Path, reason: impl Into<String>) -> Self {
        Self::Invalid {
            id: id.to_owned(),
            path: path.to_path_buf(),
            reason: reason.into(),
        }
    }

    /// A cache lookup of the module at `path` failed: compiling it (the module is invalid)
    /// or the cache itself.
    pub fn compiling(id: &str, path: &std::path::Path, error: cache::CacheError) -> Self {
        match error {
            cache::CacheError::Build(reason) => Self::invalid(id, path, reason),
            source => Self::Cache {
                id: id.to_owned(),
                source,
            },
        }
    }
}

/// Reads a module file, the error naming the container and the path.
///
/// The file is opened once and read through that descriptor: it must be a regular file
/// (a FIFO, device or socket swapped in is refused without blocking) of at most
/// [`MAX_MODULE_BYTES`], and no more than that is read whatever it grows to meanwhile.
pub fn read_module(id: &str, path: &std::path::Path) -> Result<Vec<u8>, EngineError> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let failed = |source| EngineError::Read {
        id: id.to_owned(),
        path: path.to_path_buf(),
        source,
    };
    let refused = |reason: String| {
        failed(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            reason,
        ))
    };
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOCTTY)
        .open(path)
        .map_err(failed)?;
    let meta = file.metadata().map_err(failed)?;
    if !meta.is_file() {
        return Err(refused("not a regular file".to_owned()));
    }
    let too_large = || {
        refused(format!(
            "larger than {} MiB, the most a module may be",
            MAX_MODULE_BYTES >> 20
        ))
    };
    if meta.len() > MAX_MODULE_BYTES {
        return Err(too_large());
    }
    let mut bytes = Vec::with_capacity(meta.len() as usize);
    file.take(MAX_MODULE_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(failed)?;
    if bytes.len() as u64 > MAX_MODULE_BYTES {
        return Err(too_large());
    }
    Ok(bytes)
}

/// The largest module a container may ship: the shim and its helpers read it whole (a
/// large service with its data segments is tens of MiB).
pub const MAX_MODULE_BYTES: u64 = 256 << 20;

/// Stops a running guest at its next loop head or call, from any thread or a signal
/// handler: [`PreparedGuest::run`] then returns [`GuestExit::Interrupted`].
pub trait GuestInterrupt: Send + Sync {
    /// Asks the guest to stop. Async-signal-safe: no allocation, lock or syscall other
    /// than a `write(2)` to a pipe.
    fn interrupt(&self);

    /// How long the guest may take to end after [`GuestInterrupt::interrupt`] before its
    /// process ends anyway: a job unwinds at its next epoch check; a server drains the
    /// requests in flight.
    fn grace(&self) -> std::time::Duration {
        INTERRUPT_GRACE
    }
}

/// How long an interrupted job has to unwind before its process ends anyway (a guest
/// blocked in a host call, e.g. a read, never reaches an epoch check).
pub const INTERRUPT_GRACE: std::time::Duration = std::time::Duration::from_millis(50);

/// A guest that is compiled, linked and ready: running it does no further preparation.
pub trait PreparedGuest {
    /// The handle that interrupts this guest once it runs.
    fn interrupter(&self) -> Box<dyn GuestInterrupt>;

    /// Instantiates and runs the guest to completion in the calling thread.
    fn run(self: Box<Self>) -> Result<GuestExit, EngineError>;
}

/// A WebAssembly engine that can check and run WASI guests.
pub trait WasmEngine: Send + Sync {
    /// The engine's name, as in `triage.io/engine`.
    fn name(&self) -> &'static str;

    /// Whether it runs components (WASI 0.2) besides core modules.
    fn runs_components(&self) -> bool {
        false
    }

    /// Whether it holds every way out of its guests to the container's egress grants
    /// (wasmtime: its socket checks, Triage's lookups and outgoing `wasi:http`). WasmEdge's
    /// socket functions reach whatever the pod's network reaches.
    fn checks_egress(&self) -> bool {
        false
    }

    /// Checks that `bytes` is a valid module exporting `export`, without running it.
    fn validate(
        &self,
        id: &str,
        path: &std::path::Path,
        bytes: &[u8],
        export: &str,
    ) -> Result<(), EngineError>;

    /// Loads and links the module `bytes` (read from `path`) ahead of the container's
    /// creation: from the artifact cache when it holds a verified entry for it, else compiled (and, with
    /// [`PreloadOptions::snapshot_init`], pre-initialised) once and stored there. A later
    /// [`WasmEngine::prepare`] by this engine uses it instead of compiling and linking.
    /// Runs in the single-threaded helper before libcontainer forks the container's init,
    /// which inherits the loaded module: it starts no thread.
    fn preload(
        &self,
        id: &str,
        path: &std::path::Path,
        bytes: &[u8],
        cache: &cache::ArtifactCache,
        options: &PreloadOptions,
    ) -> Result<Preloaded, EngineError>;

    /// Whether the module or component in `bytes` imports wasi-nn (either interface).
    fn uses_wasi_nn(
        &self,
        id: &str,
        path: &std::path::Path,
        bytes: &[u8],
    ) -> Result<bool, EngineError> {
        if wasmparser::Parser::is_component(bytes) {
            return facts::ComponentWorld::imports_wasi_nn(id, path, bytes);
        }
        facts::ModuleFacts::of(id, path, bytes).map(|facts| facts.uses_wasi_nn)
    }

    /// Compiles and links the guest (unless preloaded) and instantiates it where that
    /// runs no guest code, so that [`PreparedGuest::run`] only calls its export. Every
    /// error a guest can have before it runs (invalid module, missing import or export,
    /// unopenable preopen) is reported here.
    fn prepare(
        &self,
        invocation: &GuestInvocation,
    ) -> Result<Box<dyn PreparedGuest + Send>, EngineError>;
}

pub use memory::{guest_memory_budget, resident_bytes, MemoryBudget};

/// Writes a line to the container's stderr; a stderr nobody reads is not an error (unlike
/// `eprintln!`, which would panic).
pub fn to_stderr(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// Bytes as MiB with one decimal, for messages.
pub fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// The engines compiled into this build, in the order messages list them.
pub fn available() -> &'static [EngineName] {
    &[
        #[cfg(feature = "wasmtime")]
        EngineName::Wasmtime,
        #[cfg(feature = "wasmedge")]
        EngineName::Wasmedge,
    ]
}

/// The engine of a container that names none on a node that names none: wasmtime where
/// the build has it.
pub fn build_default() -> EngineName {
    available().first().copied().unwrap_or(EngineName::Wasmtime)
}

/// The engine `choice` names, if this build has it.
pub fn named(id: &str, choice: EngineChoice) -> Result<Box<dyn WasmEngine>, EngineError> {
    match choice.engine {
        #[cfg(feature = "wasmtime")]
        EngineName::Wasmtime => Ok(Box::new(WasmtimeEngine::new())),
        #[cfg(feature = "wasmedge")]
        EngineName::Wasmedge => Ok(Box::new(WasmedgeEngine::new())),
        #[allow(unreachable_patterns)]
        _ => Err(EngineError::NotEnabled {
            id: id.to_owned(),
            name: choice.engine,
            reason: choice.reason(),
            available: available()
                .iter()
                .map(|e| e.as_str())
                .collect::<Vec<_>>()
                .join(", "),
        }),
    }
}

/// The engine of a Wasm plan.
pub fn for_plan(id: &str, plan: &WasmPlan) -> Result<Box<dyn WasmEngine>, EngineError> {
    named(id, plan.engine)
}

/// Validates a module's bytes (read from `path`) with the plan's engine: its export must
/// exist, and so must `snapshot_init` where an annotation named it. A component needs an
/// engine that runs components.
pub fn validate_module(
    id: &str,
    plan: &WasmPlan,
    path: &std::path::Path,
    bytes: &[u8],
    snapshot_init: Option<&str>,
) -> Result<(), EngineError> {
    let engine = for_plan(id, plan)?;
    if plan.form == WasmForm::Component && !engine.runs_components() {
        return Err(EngineError::invalid(
            id,
            path,
            format!(
                "it is a component (WASI 0.2), and the {} engine ({}) runs core modules only; components run on wasmtime (annotation {}: wasmtime)",
                engine.name(),
                plan.engine.reason(),
                triage_oci::annotations::ENGINE
            ),
        ));
    }
    engine.validate(id, path, bytes, &plan.export)?;
    if !engine.checks_egress() {
        refuse_unchecked_egress(id, engine.name(), &plan.egress, path, bytes)?;
    }
    if let Some(init) = snapshot_init {
        engine.validate(id, path, bytes, init)?;
    }
    Ok(())
}

/// Refuses a module that imports socket functions reaching out of the pod on an `engine`
/// that cannot hold them to the container's grants, unless the container has some: then
/// it reaches anything (said in the log).
fn refuse_unchecked_egress(
    id: &str,
    engine: &str,
    egress: &[triage_oci::EgressGrant],
    path: &std::path::Path,
    bytes: &[u8],
) -> Result<(), EngineError> {
    let facts = facts::ModuleFacts::of(id, path, bytes)?;
    if facts.outbound_socket_imports.is_empty() {
        return Ok(());
    }
    let imports = facts.outbound_socket_imports.join(", ");
    if egress.is_empty() {
        return Err(EngineError::EgressUnchecked {
            id: id.to_owned(),
            path: path.to_path_buf(),
            engine: engine.to_owned(),
            imports,
        });
    }
    let grants: Vec<String> = egress.iter().map(ToString::to_string).collect();
    tracing::warn!(
        container = %id,
        "the {engine} engine cannot check destinations: {} imports {imports} and, granted {}, reaches whatever the pod's network reaches",
        path.display(),
        grants.join(", ")
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A module importing `names` from `wasi_snapshot_preview1`, each a `() -> ()`.
    fn importing(names: &[&str]) -> Vec<u8> {
        fn leb(mut n: usize, out: &mut Vec<u8>) {
            loop {
                let byte = (n & 0x7f) as u8;
                n >>= 7;
                if n == 0 {
                    out.push(byte);
                    return;
                }
                out.push(byte | 0x80);
            }
        }
        let mut imports = Vec::new();
        leb(names.len(), &mut imports);
        for name in names {
            for text in ["wasi_snapshot_preview1", name] {
                leb(text.len(), &mut imports);
                imports.extend_from_slice(text.as_bytes());
            }
            imports.extend_from_slice(&[0x00, 0x00]);
        }
        let mut module = b"\0asm\x01\0\0\0\x01\x04\x01\x60\x00\x00\x02".to_vec();
        leb(imports.len(), &mut module);
        module.extend(imports);
        module
    }

    #[test]
    fn a_module_that_reaches_out_on_an_unchecking_engine_needs_a_grant() {
        let path = std::path::Path::new("/client.wasm");
        let client = importing(&["sock_open", "sock_connect", "sock_getaddrinfo"]);
        let err = refuse_unchecked_egress("c1", "wasmedge", &[], path, &client)
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "container c1: wasm module /client.wasm imports sock_connect, sock_getaddrinfo, which reach the network, and the wasmedge engine cannot hold them to egress grants; the container has none (grant destinations with annotation triage.io/egress, or run it on wasmtime with triage.io/engine: wasmtime)"
        );
        let granted = triage_oci::egress::parse_grants("10.0.0.0/8").unwrap();
        refuse_unchecked_egress("c1", "wasmedge", &granted, path, &client).unwrap();
        // A server that only binds, listens and accepts answers the pod's clients.
        let server = importing(&["sock_open", "sock_bind", "sock_listen", "sock_accept"]);
        refuse_unchecked_egress("c1", "wasmedge", &[], path, &server).unwrap();
    }

    #[test]
    fn budget_leaves_the_engine_and_a_margin_out() {
        assert_eq!(guest_memory_budget(64 << 20, 10 << 20), 50 << 20);
        assert_eq!(guest_memory_budget(8 << 20, 10 << 20), 0);
    }

    #[test]
    fn a_module_is_read_only_from_a_bounded_regular_file() {
        let dir = tempfile::tempdir().unwrap();
        let module = dir.path().join("m.wasm");
        std::fs::write(&module, b"\0asm\x01\0\0\0").unwrap();
        assert_eq!(read_module("c1", &module).unwrap().len(), 8);
        // A FIFO with no writer would block a plain read for ever.
        let fifo = dir.path().join("fifo.wasm");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let err = read_module("c1", &fifo).unwrap_err().to_string();
        assert!(err.ends_with("fifo.wasm: not a regular file"), "{err}");
        // Larger than the bound (sparse: no disk used).
        let huge = dir.path().join("huge.wasm");
        std::fs::File::create(&huge)
            .unwrap()
            .set_len(MAX_MODULE_BYTES + 1)
            .unwrap();
        let err = read_module("c1", &huge).unwrap_err().to_string();
        assert!(err.contains("larger than 256 MiB"), "{err}");
    }

    #[test]
    fn resident_memory_of_this_process_is_known() {
        let rss = resident_bytes().unwrap();
        assert!(rss > 0 && rss.is_multiple_of(1024), "{rss}");
        assert_eq!(mib(64 << 20), "64.0 MiB");
    }
}
