//! The WasmEdge engine (cargo feature `wasmedge`): runs WASI preview 1 guests through the system's libwasmedge.

use std::path::Path;
use std::sync::{Arc, Mutex};

use wasmedge_sys::{
    AsInstance, Config, Executor, Instance, Loader, Module, Store, Validator, WasiModule,
};
use wasmedge_types::error::{CoreCommonError, CoreError, WasmEdgeError};
use wasmedge_types::{CompilerOptimizationLevel, CompilerOutputFormat};

use super::cache::ArtifactCache;
use super::facts::ModuleFacts;
use super::{
    mib, EngineError, GuestExit, GuestInterrupt, GuestInvocation, GuestStdio, MemoryBudget,
    PreloadOptions, Preloaded, PreparedGuest, WasmEngine,
};

/// The size of a wasm page.
const PAGE: u64 = 64 << 10;

/// The name of WasmEdge's wasi-nn plugin, as its plugin manager lists it.
const WASI_NN_PLUGIN: &str = "wasi_nn";

/// WasmEdge, one per container: modules are compiled ahead of time (WasmEdge's LLVM
/// compiler, the universal-wasm format) into the artifact cache and run from there; a
/// module compiled in the container instead (no cache) runs in WasmEdge's interpreter.
pub struct WasmedgeEngine {
    /// The module [`WasmEngine::preload`] loaded, ready to instantiate.
    warm: Mutex<Option<WarmModule>>,
}

/// A loaded and validated module, and what Triage read of it.
#[derive(Clone)]
struct WarmModule {
    module: Arc<Module>,
    function_exports: Vec<String>,
    has_start_function: bool,
    uses_wasi_nn: bool,
    /// Whether the module carries native code (from the cache), else it is interpreted.
    compiled: bool,
}

impl WasmedgeEngine {
    /// An engine with Triage's configuration. WasmEdge's own log is turned off: every
    /// failure reaches the container's stderr and the shim log through Triage's messages.
    pub fn new() -> Self {
        wasmedge_sys::utils::log_off();
        Self {
            warm: Mutex::new(None),
        }
    }

    /// The library's version, as it reports it (part of every cache key).
    pub fn version() -> String {
        wasmedge_sys::utils::version_string()
    }

    /// The configuration modules are compiled, loaded and run with: WasmEdge's defaults
    /// (the proposals wasm32-wasip1 programs use are on), universal-wasm output at O2,
    /// and, where given, a cap on linear memory in pages.
    fn config(max_memory_pages: Option<u32>) -> Result<Config, String> {
        let mut config = Config::create().map_err(|e| format!("creating a configuration: {e}"))?;
        config.set_aot_optimization_level(CompilerOptimizationLevel::O2);
        config.set_aot_compiler_output_format(CompilerOutputFormat::Wasm);
        if let Some(pages) = max_memory_pages {
            config.set_max_memory_pages(pages);
        }
        Ok(config)
    }

    /// The artifact cache's entry for `bytes` under this library's version and settings.
    fn cache_entry(bytes: &[u8]) -> String {
        use sha2::Digest;
        let digest = sha2::Sha256::digest(bytes);
        let version = Self::version();
        let settings = b"O2 universal-wasm";
        ArtifactCache::entry_name(&[b"wasmedge", version.as_bytes(), settings, &digest])
    }

    /// Compiles `bytes` with WasmEdge's AOT compiler into a universal wasm (the module
    /// with its native code in a custom section), in a child process: LLVM leaves threads
    /// behind and installs its own handlers for SIGTERM, SIGSEGV and more, none of which
    /// may reach the helper that forks the container's init.
    fn compile(id: &str, bytes: &[u8]) -> Result<Vec<u8>, String> {
        use std::io::{Read, Write};
        use std::os::fd::{FromRawFd, IntoRawFd};
        let out = std::env::temp_dir().join(format!(
            "triage-wasmedge-{}-{}.wasm",
            std::process::id(),
            id.chars()
                .filter(char::is_ascii_alphanumeric)
                .collect::<String>()
        ));
        let (read, write) = nix::unistd::pipe().map_err(|e| format!("pipe: {e}"))?;
        // SAFETY: the child only compiles and writes its error, then _exits; the helper
        // that calls this is single-threaded, so no lock is held across the fork.
        match unsafe { nix::unistd::fork() }.map_err(|e| format!("fork: {e}"))? {
            nix::unistd::ForkResult::Child => {
                drop(read);
                let status = match Self::compile_to(bytes, &out) {
                    Ok(()) => 0,
                    Err(message) => {
                        // SAFETY: the write end of our own pipe.
                        let mut pipe = unsafe { std::fs::File::from_raw_fd(write.into_raw_fd()) };
                        let _ = pipe.write_all(message.as_bytes());
                        1
                    }
                };
                // SAFETY: ends the child without running the parent's destructors.
                unsafe { libc::_exit(status) }
            }
            nix::unistd::ForkResult::Parent { child } => {
                drop(write);
                let mut message = String::new();
                let _ = std::fs::File::from(read).read_to_string(&mut message);
                let status = nix::sys::wait::waitpid(child, None);
                let compiled = match status {
                    Ok(nix::sys::wait::WaitStatus::Exited(_, 0)) => {
                        std::fs::read(&out).map_err(|e| format!("reading {}: {e}", out.display()))
                    }
                    Ok(nix::sys::wait::WaitStatus::Exited(..)) => Err(message),
                    other => Err(format!("the compiler process ended: {other:?}")),
                };
                let _ = std::fs::remove_file(&out);
                compiled
            }
        }
    }

    fn compile_to(bytes: &[u8], out: &Path) -> Result<(), String> {
        let config = Self::config(None)?;
        let compiler = wasmedge_sys::Compiler::create(Some(&config))
            .map_err(|e| format!("WasmEdge's AOT compiler is not available: {e}"))?;
        compiler
            .compile_from_bytes(bytes, out)
            .map_err(|e| format!("compiling: {e}"))
    }

    /// Loads and validates a module from a file (the cached universal wasm).
    fn load_file(id: &str, path: &Path, artifact: &Path) -> Result<Arc<Module>, EngineError> {
        let invalid = |what: &str, e: Box<WasmEdgeError>| {
            EngineError::invalid(id, path, format!("{what} {}: {e}", artifact.display()))
        };
        let config = Self::config(None).map_err(|reason| setup(id, reason))?;
        let loader = Loader::create(Some(&config)).map_err(|e| setup(id, e.to_string()))?;
        // Loader::from_file insists on a `.wasm` extension; the cache names entries `.bin`.
        let module = parse_file(&loader, artifact).map_err(|e| invalid("loading", e))?;
        Validator::create(Some(&config))
            .and_then(|validator| validator.validate(&module))
            .map_err(|e| invalid("validating", e))?;
        Ok(module)
    }

    /// Loads and validates a module from its bytes; it runs interpreted.
    fn load_bytes(id: &str, path: &Path, bytes: &[u8]) -> Result<Arc<Module>, EngineError> {
        let invalid = |e: Box<WasmEdgeError>| EngineError::invalid(id, path, e.to_string());
        let config = Self::config(None).map_err(|reason| setup(id, reason))?;
        let loader = Loader::create(Some(&config)).map_err(|e| setup(id, e.to_string()))?;
        let module = loader.from_bytes(bytes).map_err(invalid)?;
        Validator::create(Some(&config))
            .and_then(|validator| validator.validate(&module))
            .map_err(invalid)?;
        Ok(module)
    }

    /// Whether WasmEdge's wasi-nn plugin is installed on this node (its default plugin
    /// paths and `$WASMEDGE_PLUGIN_PATH`).
    pub fn has_wasi_nn_plugin() -> bool {
        static LOADED: std::sync::Once = std::sync::Once::new();
        LOADED.call_once(wasmedge_sys::plugin::PluginManager::load_plugins_from_default_paths);
        wasmedge_sys::plugin::PluginManager::find(WASI_NN_PLUGIN).is_ok()
    }

    fn wasi_nn_unavailable(id: &str, path: &Path) -> EngineError {
        EngineError::Setup {
            id: id.to_owned(),
            reason: format!(
                "wasm module {} imports wasi-nn ({}), which is not available on this node for the wasmedge engine: WasmEdge's {WASI_NN_PLUGIN} plugin is not installed (it is looked for in $WASMEDGE_PLUGIN_PATH and the library's plugin directory); run it with triage.io/engine=wasmtime, whose wasi-nn Triage serves",
                path.display(),
                super::WASI_NN_MODULE
            ),
        }
    }
}

impl Default for WasmedgeEngine {
    fn default() -> Self {
        Self::new()
    }
}

fn setup(id: &str, reason: impl Into<String>) -> EngineError {
    EngineError::Setup {
        id: id.to_owned(),
        reason: reason.into(),
    }
}

/// Loads a universal wasm from a file of any name: `Loader::from_file` refuses names other
/// than `.wasm`/`.so` (the cache's are `.bin`), and `from_bytes` keeps its native code.
fn parse_file(loader: &Loader, path: &Path) -> Result<Arc<Module>, Box<WasmEdgeError>> {
    let bytes =
        std::fs::read(path).map_err(|e| Box::new(WasmEdgeError::Operation(e.to_string())))?;
    loader.from_bytes(bytes)
}

impl WasmEngine for WasmedgeEngine {
    fn name(&self) -> &'static str {
        "wasmedge"
    }

    fn validate(
        &self,
        id: &str,
        path: &Path,
        bytes: &[u8],
        export: &str,
    ) -> Result<(), EngineError> {
        Self::load_bytes(id, path, bytes)?;
        let facts = ModuleFacts::of(id, path, bytes)?;
        ModuleFacts::require_export(&facts.function_exports, id, path, export)?;
        if facts.uses_wasi_nn && !Self::has_wasi_nn_plugin() {
            return Err(Self::wasi_nn_unavailable(id, path));
        }
        Ok(())
    }

    fn preload(
        &self,
        id: &str,
        host_path: &Path,
        bytes: &[u8],
        cache: &ArtifactCache,
        options: &PreloadOptions,
    ) -> Result<Preloaded, EngineError> {
        let facts = ModuleFacts::of(id, host_path, bytes)?;
        if let Some(init) = options
            .snapshot_init
            .as_deref()
            .filter(|init| facts.function_exports.iter().any(|e| e == init))
        {
            tracing::info!(
                container = %id,
                "no snapshot with init export {init:?}: pre-initialised snapshots are made by the wasmtime engine; the module runs as it is"
            );
        }
        let entry = Self::cache_entry(bytes);
        let (artifact, outcome) = cache
            .get_or_build(&entry, || {
                let started = std::time::Instant::now();
                let compiled = Self::compile(id, bytes)?;
                tracing::info!(
                    container = %id,
                    ms = started.elapsed().as_secs_f64() * 1000.0,
                    bytes = compiled.len(),
                    "wasm module compiled by WasmEdge's AOT compiler"
                );
                Ok(compiled)
            })
            .map_err(|e| EngineError::compiling(id, host_path, e))?;
        let module = Self::load_file(id, host_path, &artifact)?;
        *self.warm.lock().unwrap_or_else(|p| p.into_inner()) = Some(WarmModule {
            module,
            function_exports: facts.function_exports,
            has_start_function: facts.has_start_function,
            uses_wasi_nn: facts.uses_wasi_nn,
            compiled: true,
        });
        Ok(Preloaded {
            outcome,
            snapshot_of: None,
            uses_wasi_nn: facts.uses_wasi_nn,
        })
    }

    fn prepare(&self, inv: &GuestInvocation) -> Result<Box<dyn PreparedGuest + Send>, EngineError> {
        let id = inv.id.as_str();
        let preloaded = self.warm.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let warm = match preloaded {
            Some(warm) => warm,
            None => {
                let bytes = inv.module_bytes()?;
                let facts = ModuleFacts::of(id, &inv.module_path, &bytes)?;
                WarmModule {
                    module: Self::load_bytes(id, &inv.module_path, &bytes)?,
                    function_exports: facts.function_exports,
                    has_start_function: facts.has_start_function,
                    uses_wasi_nn: facts.uses_wasi_nn,
                    compiled: false,
                }
            }
        };
        ModuleFacts::require_export(&warm.function_exports, id, &inv.module_path, &inv.export)?;
        if inv.listen.source == triage_oci::ListenSource::Annotation {
            tracing::warn!(
                container = %id,
                listen = %inv.listen,
                "annotation {} is not handed to WasmEdge guests as sockets (LISTEN_FDS is wasmtime's): the guest binds with WasmEdge's own socket functions, in the pod's network namespace",
                triage_oci::annotations::LISTEN
            );
        }
        // Triage's own backends serve wasi-nn in wasmtime; in WasmEdge the plugin's module
        // does, with the plugin's backends.
        let nn = if warm.uses_wasi_nn {
            if !Self::has_wasi_nn_plugin() {
                return Err(Self::wasi_nn_unavailable(id, &inv.module_path));
            }
            let module = wasmedge_sys::plugin::PluginManager::create_plugin_instance(
                WASI_NN_PLUGIN,
                super::WASI_NN_MODULE,
            )
            .map_err(|e| {
                setup(
                    id,
                    format!(
                        "WasmEdge's {WASI_NN_PLUGIN} plugin gave no {} module: {e}",
                        super::WASI_NN_MODULE
                    ),
                )
            })?;
            Some(module)
        } else {
            None
        };
        if !warm.compiled {
            tracing::info!(container = %id, "wasm module interpreted by WasmEdge (no compiled module: the artifact cache is off or unusable)");
        }

        let memory = inv
            .memory_limit
            .map(|limit| MemoryBudget::measure(id, limit));
        let pages = memory
            .as_ref()
            .map(|m| u32::try_from(m.budget / PAGE).unwrap_or(u32::MAX));
        let config = Self::config(pages).map_err(|reason| setup(id, reason))?;
        let executor = Executor::create(Some(&config), None)
            .map_err(|e| setup(id, format!("executor: {e}")))?;
        let store = Store::create().map_err(|e| setup(id, format!("store: {e}")))?;

        let args: Vec<&str> = inv.args.iter().map(String::as_str).collect();
        let env: Vec<String> = inv.env.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let preopens: Vec<String> = inv
            .preopens
            .iter()
            .map(|(dir, guest, read_only)| {
                let mode = if *read_only { ":readonly" } else { "" };
                format!("{guest}:{}{mode}", dir.display())
            })
            .collect();
        let nul = |what: &str| setup(id, format!("{what} contains a NUL byte"));
        if args.iter().any(|a| a.contains('\0')) {
            return Err(nul("an argument"));
        }
        if env.iter().any(|e| e.contains('\0')) {
            return Err(nul("an environment variable"));
        }
        if preopens.iter().any(|p| p.contains('\0')) {
            return Err(nul("a mount path"));
        }
        let wasi = WasiModule::create(
            Some(args),
            Some(env.iter().map(String::as_str).collect()),
            Some(preopens.iter().map(String::as_str).collect()),
        )
        .map_err(|e| setup(id, format!("WASI: {e}")))?;

        let mut guest = WasmedgeGuest {
            id: id.to_owned(),
            export: inv.export.clone(),
            module: warm.module,
            executor,
            store,
            wasi,
            nn,
            instance: None,
            memory,
            stdio: inv.stdio,
            _config: config,
        };
        guest
            .executor
            .register_import_module(&mut guest.store, &guest.wasi)
            .map_err(|e| setup(id, format!("linking WASI: {e}")))?;
        if let Some(nn) = &guest.nn {
            guest
                .executor
                .register_import_module(&mut guest.store, nn)
                .map_err(|e| setup(id, format!("linking WasmEdge's wasi-nn plugin: {e}")))?;
        }
        // Instantiating runs no guest code unless the module has a start function: do it
        // now, so that Start only calls the export.
        if !warm.has_start_function {
            let instance = guest
                .executor
                .register_active_module(&mut guest.store, &guest.module)
                .map_err(|e| setup(id, format!("instantiating: {e}")))?;
            guest.instance = Some(instance);
        }
        Ok(Box::new(guest))
    }
}

/// What a guest that trapped with `memory` bytes of linear memory was refused, if its
/// memory had reached the budget (WasmEdge fails `memory.grow` past its page limit without
/// telling the host how much was asked).
fn refusal_at_cap(budget: &MemoryBudget, memory: u64) -> Option<String> {
    // A guest's allocator grows by at least what it needs: at the budget, the next request
    // of a few pages was refused.
    const NEAR: u64 = 4 << 20;
    (memory + NEAR > budget.budget).then(|| budget.refusal(&format!("beyond {}", mib(memory))))
}

/// A WasmEdge guest with its WASI module linked and, unless it has a start function,
/// instantiated.
struct WasmedgeGuest {
    id: String,
    export: String,
    module: Arc<Module>,
    executor: Executor,
    store: Store,
    wasi: WasiModule,
    /// The wasi-nn plugin's module, where the guest imports wasi-nn.
    nn: Option<Instance>,
    instance: Option<Instance>,
    memory: Option<MemoryBudget>,
    stdio: GuestStdio,
    /// Kept for the executor's lifetime.
    _config: Config,
}

/// WasmEdge offers no signal-safe way to stop running code: the executor's watchdog ends
/// the guest's process once its grace period is over, with the same status.
struct ProcessEnds;

impl GuestInterrupt for ProcessEnds {
    fn interrupt(&self) {}
}

impl PreparedGuest for WasmedgeGuest {
    fn interrupter(&self) -> Box<dyn GuestInterrupt> {
        Box::new(ProcessEnds)
    }

    fn run(mut self: Box<Self>) -> Result<GuestExit, EngineError> {
        let _discard = (self.stdio == GuestStdio::Discard).then(StdioDiscarded::new);
        let instance = match self.instance.take() {
            Some(instance) => instance,
            None => match self
                .executor
                .register_active_module(&mut self.store, &self.module)
            {
                Ok(instance) => instance,
                // A trap in a start function is the guest's own failure.
                Err(e) if is_guest_failure(&e) => return Ok(self.outcome(None, &e)),
                Err(e) => {
                    return Err(setup(&self.id, format!("instantiating: {e}")));
                }
            },
        };
        let mut instance = instance;
        // A reactor module is initialised before any other export is called.
        if self.export != "_start" {
            if let Ok(mut init) = instance.get_func_mut("_initialize") {
                if let Err(e) = self.executor.call_func(&mut init, []) {
                    return Ok(self.outcome(Some(&instance), &e));
                }
            }
        }
        let mut func = instance.get_func_mut(&self.export).map_err(|e| {
            setup(
                &self.id,
                format!("export {:?} is not a function: {e}", self.export),
            )
        })?;
        let result = self.executor.call_func(&mut func, []);
        Ok(match result {
            // A return or `proc_exit`: WASI holds the status (0 after a return).
            Ok(_) => GuestExit::Exited(self.wasi.exit_code() as i32),
            Err(e) => self.outcome(Some(&instance), &e),
        })
    }
}

impl WasmedgeGuest {
    fn outcome(&self, instance: Option<&Instance>, e: &WasmEdgeError) -> GuestExit {
        if matches!(
            e,
            WasmEdgeError::Core(CoreError::Common(CoreCommonError::Terminated))
        ) {
            return GuestExit::Exited(self.wasi.exit_code() as i32);
        }
        if matches!(
            e,
            WasmEdgeError::Core(CoreError::Common(CoreCommonError::Interrupted))
        ) {
            return GuestExit::Interrupted;
        }
        let memory = instance
            .and_then(|i| i.get_memory_ref("memory").ok())
            .map(|m| u64::from(m.size()) * PAGE);
        let refusal = self
            .memory
            .as_ref()
            .zip(memory)
            .and_then(|(budget, memory)| refusal_at_cap(budget, memory));
        if let Some(refusal) = &refusal {
            tracing::warn!(container = %self.id, "{refusal}");
        }
        let message = format!("wasm trap: {e}");
        GuestExit::Trapped(match refusal {
            Some(refusal) => format!("{message}\nafter {refusal}"),
            None => message,
        })
    }
}

fn is_guest_failure(e: &WasmEdgeError) -> bool {
    matches!(e, WasmEdgeError::Core(CoreError::Execution(_)))
}

/// fds 1 and 2 on /dev/null until dropped: WasmEdge's WASI writes a guest's output to
/// the process's own descriptors (benchmarks discard it this way; process-wide).
struct StdioDiscarded {
    saved: Vec<(i32, i32)>,
}

impl StdioDiscarded {
    fn new() -> Self {
        let mut saved = Vec::new();
        if let Ok(null) = std::fs::OpenOptions::new().write(true).open("/dev/null") {
            use std::os::fd::AsRawFd;
            for fd in [1, 2] {
                // SAFETY: dup/dup2 on this process's own descriptors.
                let copy = unsafe { libc::dup(fd) };
                if copy >= 0 && unsafe { libc::dup2(null.as_raw_fd(), fd) } >= 0 {
                    saved.push((copy, fd));
                }
            }
        }
        Self { saved }
    }
}

impl Drop for StdioDiscarded {
    fn drop(&mut self) {
        for &(copy, fd) in &self.saved {
            // SAFETY: puts back the descriptors `new` saved, then closes the copies.
            unsafe {
                libc::dup2(copy, fd);
                libc::close(copy);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::engine::facts::fixtures::TWO_EXPORTS;

    // (module (import "wasi_ephemeral_nn" "load" (func)) (func (export "_start")))
    const IMPORTS_WASI_NN: &[u8] = &[
        0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
        0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
        0x02, 0x1a, 0x01, 0x11, b'w', b'a', b's', b'i', b'_', b'e', b'p', b'h', b'e', b'm', b'e',
        b'r', b'a', b'l', b'_', b'n', b'n', 0x04, b'l', b'o', b'a', b'd', 0x00,
        0x00, // import
        0x03, 0x02, 0x01, 0x00, // func section: 1 func of type 0
        0x07, 0x0a, 0x01, 0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x01, // export
        0x0a, 0x04, 0x01, 0x02, 0x00, 0x0b, // code
    ];

    #[test]
    fn validate_accepts_exports_and_names_a_missing_one() {
        let engine = WasmedgeEngine::new();
        for export in ["_start", "greet"] {
            engine
                .validate("c", Path::new("/m.wasm"), TWO_EXPORTS, export)
                .unwrap();
        }
        let err = engine
            .validate("c7", Path::new("/m.wasm"), TWO_EXPORTS, "nope")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "container c7: wasm module /m.wasm has no function export \"nope\" (exports: _start, greet)"
        );
    }

    #[test]
    fn validate_rejects_garbage_after_magic() {
        let err = WasmedgeEngine::new()
            .validate(
                "c8",
                Path::new("/bad.wasm"),
                b"\0asm\x01\0\0\0\xff\xff",
                "_start",
            )
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("container c8: invalid wasm module /bad.wasm:"),
            "{err}"
        );
    }

    #[test]
    fn a_wasi_nn_guest_without_the_plugin_is_refused_with_the_reason() {
        let engine = WasmedgeEngine::new();
        let result = engine.validate("c9", Path::new("/nn.wasm"), IMPORTS_WASI_NN, "_start");
        if WasmedgeEngine::has_wasi_nn_plugin() {
            result.unwrap();
            return;
        }
        let err = result.unwrap_err().to_string();
        assert!(
            err.starts_with("container c9: cannot set up wasm guest: wasm module /nn.wasm imports wasi-nn (wasi_ephemeral_nn), which is not available on this node for the wasmedge engine: WasmEdge's wasi_nn plugin is not installed"),
            "{err}"
        );
    }

    #[test]
    fn a_module_compiles_in_a_child_process_into_a_loadable_universal_wasm() {
        let compiled = WasmedgeEngine::compile("c10", TWO_EXPORTS).unwrap();
        assert!(compiled.starts_with(b"\0asm"), "a universal wasm");
        assert!(compiled.len() > TWO_EXPORTS.len(), "with its native code");
        let dir = std::env::temp_dir().join(format!("triage-wasmedge-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let artifact = dir.join("entry.bin");
        std::fs::write(&artifact, &compiled).unwrap();
        WasmedgeEngine::load_file("c10", Path::new("/m.wasm"), &artifact).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        let err = WasmedgeEngine::compile("c11", b"\0asm\x01\0\0\0\xff\xff").unwrap_err();
        assert!(err.starts_with("compiling: "), "{err}");
    }

    #[test]
    fn a_trap_at_the_memory_budget_names_the_limit() {
        let budget = MemoryBudget {
            id: "c12".into(),
            container_limit: 64 << 20,
            engine_resident: 10 << 20,
            budget: 50 << 20,
        };
        let refusal = refusal_at_cap(&budget, 49 << 20).unwrap();
        assert_eq!(
            refusal,
            "container c12: memory.grow beyond 49.0 MiB refused: the container's memory limit is 64.0 MiB (67108864 bytes), of which the engine holds 10.0 MiB, leaving 50.0 MiB for the guest"
        );
        assert_eq!(
            refusal_at_cap(&budget, 8 << 20),
            None,
            "far from the budget"
        );
    }
}
