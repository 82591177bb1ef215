//! The Wasm engine interface, and the engines compiled into this build.

use std::path::PathBuf;

#[cfg(feature = "wasmtime")]
mod wasmtime;
#[cfg(feature = "wasmtime")]
pub use self::wasmtime::WasmtimeEngine;

/// Exit status reported for a guest that trapped (128 + SIGABRT, as wasmtime's CLI does).
pub const TRAP_EXIT_STATUS: i32 = 134;

/// One run of a guest: what to load and how to call it.
#[derive(Debug, Clone)]
pub struct GuestInvocation {
    /// Container id (for errors and logs).
    pub id: String,
    /// The module's path as this process sees it.
    pub module_path: PathBuf,
    /// The export to call.
    pub export: String,
    /// argv, `argv[0]` first.
    pub args: Vec<String>,
    /// Environment in order.
    pub env: Vec<(String, String)>,
    /// (directory in this process's view, path the guest sees, read-only).
    pub preopens: Vec<(PathBuf, String, bool)>,
}

/// How a guest ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GuestExit {
    /// It returned (status 0) or called `proc_exit(status)`.
    Exited(i32),
    /// It trapped; the message says where and why.
    Trapped(String),
}

impl GuestExit {
    /// The process exit status that represents this outcome.
    pub fn status(&self) -> i32 {
        match self {
            Self::Exited(code) => *code,
            Self::Trapped(_) => TRAP_EXIT_STATUS,
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
    /// Setting up the guest (linking, WASI context, instantiation) failed.
    #[error("container {id}: cannot set up wasm guest: {reason}")]
    Setup {
        /// Container id.
        id: String,
        /// What went wrong.
        reason: String,
    },
    /// No engine of that name is compiled into this build.
    #[error("container {id}: wasm engine {name:?} is not enabled in this build (available: {available:?})")]
    NotEnabled {
        /// Container id.
        id: String,
        /// The engine asked for.
        name: String,
        /// The engines this build has.
        available: &'static [&'static str],
    },
}

/// A guest that is compiled, linked and ready: running it does no further preparation.
pub trait PreparedGuest {
    /// Instantiates and runs the guest to completion in the calling thread.
    fn run(self: Box<Self>) -> Result<GuestExit, EngineError>;
}

/// A WebAssembly engine that can check and run WASI guests.
pub trait WasmEngine: Send + Sync {
    /// The engine's name, as in `triage.io/engine`.
    fn name(&self) -> &'static str;

    /// Checks that `bytes` is a valid module exporting `export`, without running it.
    fn validate(
        &self,
        id: &str,
        path: &std::path::Path,
        bytes: &[u8],
        export: &str,
    ) -> Result<(), EngineError>;

    /// Compiles and links the guest so that [`PreparedGuest::run`] only instantiates and
    /// calls it. Every error a guest can have before it runs (invalid module, missing
    /// import or export, unopenable preopen) is reported here.
    fn prepare(
        &self,
        invocation: &GuestInvocation,
    ) -> Result<Box<dyn PreparedGuest + Send>, EngineError>;
}

/// The names of the engines compiled into this build.
pub fn available() -> &'static [&'static str] {
    &[
        #[cfg(feature = "wasmtime")]
        "wasmtime",
    ]
}

/// The default engine of this build.
pub fn default_engine(id: &str) -> Result<Box<dyn WasmEngine>, EngineError> {
    #[cfg(feature = "wasmtime")]
    {
        let _ = id;
        Ok(Box::new(WasmtimeEngine::new()))
    }
    #[cfg(not(feature = "wasmtime"))]
    {
        Err(EngineError::NotEnabled {
            id: id.to_owned(),
            name: "wasmtime".to_owned(),
            available: available(),
        })
    }
}

/// Reads and validates a module file with the default engine.
pub fn validate_module_file(
    id: &str,
    path: &std::path::Path,
    export: &str,
) -> Result<(), EngineError> {
    let bytes = std::fs::read(path).map_err(|source| EngineError::Read {
        id: id.to_owned(),
        path: path.to_path_buf(),
        source,
    })?;
    default_engine(id)?.validate(id, path, &bytes, export)
}
