//! The wasmtime engine: validates and runs WASI preview 1 modules, and components through [`super::component`].

use std::path::Path;

use triage_oci::ListenSource;
use wasmtime::component::Component;
use wasmtime::{
    Config, Engine, Instance, InstanceAllocationStrategy, InstancePre, Linker, Module,
    PoolingAllocationConfig, ResourceLimiter, Store,
};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::{FsPerms, I32Exit, WasiCtxBuilder};

use super::cache::{ArtifactCache, CacheError, CacheOutcome};
use super::component::{self, WarmComponent};
use super::facts::{ComponentWorld, ModuleFacts};
use super::memory::{MemoryAccount, MemoryLimiter};
use super::p1_sockets::{P1Sockets, SocketsView};
use super::serve::ProxyRequests;
use super::{
    snapshot, EngineError, GuestExit, GuestInterrupt, GuestInvocation, GuestStdio, MemoryBudget,
    PreloadOptions, Preloaded, PreparedGuest, WasmEngine,
};

/// The wasmtime release this build links (pinned with `=` in the workspace manifest);
/// part of every artifact cache key.
const WASMTIME_VERSION: &str = "48.0.8";

/// Core instances one component instance may hold in a service's pool (a Rust
/// `wasm32-wasip2` component has a handful: its module, the WASI adapter's, shims).
const CORE_INSTANCES_PER_COMPONENT: usize = 16;

/// How much of a pooled instance's memory, tables and stack is zeroed in place when a
/// request ends rather than given back to the kernel: `madvise` on a process whose
/// workers run on several cores makes every core flush its TLB. Measured with
/// `wrk -c 50` on 2 cores: 8.0k req/s given back, 9.2k with 256 KiB kept (1 MiB: no more).
/// Only the slots a service has used keep it.
const KEEP_RESIDENT_BYTES: usize = 256 << 10;

/// What each of a pool's `slots` keeps resident: [`KEEP_RESIDENT_BYTES`], less where all
/// slots together would keep more than an eighth of the container's memory `limit` (the
/// kept pages are the container's, outside the budget its instances draw on).
fn keep_resident(limit: Option<u64>, slots: usize) -> usize {
    let Some(limit) = limit else {
        return KEEP_RESIDENT_BYTES;
    };
    let share = usize::try_from(limit / 8).unwrap_or(usize::MAX) / slots.max(1);
    // Whole pages.
    KEEP_RESIDENT_BYTES.min(share) & !0xfff
}

/// wasmtime with Cranelift, one `Engine` per instance of this type.
pub struct WasmtimeEngine {
    engine: Engine,
    /// The module or component [`WasmEngine::preload`] loaded and linked, ready to
    /// instantiate.
    warm: std::sync::Mutex<Option<Warm>>,
}

/// What [`WasmEngine::preload`] left ready.
#[derive(Clone)]
enum Warm {
    Module(WarmModule),
    Component(WarmComponent),
}

/// A module linked against WASI: what a container's Start instantiates.
#[derive(Clone)]
struct WarmModule {
    pre: InstancePre<GuestState>,
    /// Whether instantiating runs guest code (a wasm start function): then it waits
    /// for Start instead of happening at Create.
    has_start_function: bool,
}

impl WasmtimeEngine {
    /// An engine with Triage's configuration.
    pub fn new() -> Self {
        let engine =
            Engine::new(&engine_config()).expect("wasmtime default configuration is valid");
        Self {
            engine,
            warm: std::sync::Mutex::new(None),
        }
    }

    /// The per-request path of the `wasi:http/proxy` component this engine preloaded (or,
    /// with nothing preloaded, compiles from `inv`), without listeners: benchmarks
    /// measure a request's instantiation and handling with it.
    pub fn proxy_requests(&self, inv: &GuestInvocation) -> Result<ProxyRequests, EngineError> {
        let preloaded = self.warm.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let warm = match preloaded {
            Some(Warm::Component(warm)) => warm,
            _ => component::compile(
                &self.engine,
                &inv.id,
                &inv.module_path,
                &inv.module_bytes()?,
            )?,
        };
        component::requests(warm, inv)
    }

    /// The artifact cache's entry for `bytes` (pre-initialised with `snapshot_init`)
    /// under this engine's version and settings.
    fn cache_entry(&self, bytes: &[u8], snapshot_init: Option<&str>) -> String {
        use sha2::Digest;
        use std::hash::{Hash, Hasher};
        let mut settings = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut settings);
        let digest = sha2::Sha256::digest(bytes);
        let settings = settings.finish().to_le_bytes();
        let mut parts: Vec<&[u8]> =
            vec![b"wasmtime", WASMTIME_VERSION.as_bytes(), &settings, &digest];
        if let Some(init) = snapshot_init {
            parts.extend([b"snapshot".as_slice(), init.as_bytes()]);
        }
        ArtifactCache::entry_name(&parts)
    }

    /// Maps the verified artifact and links it against WASI.
    fn load_artifact(
        &self,
        id: &str,
        path: &Path,
        artifact: &Path,
        has_start_function: bool,
    ) -> Result<WarmModule, EngineError> {
        // Opened read-only through a read-only mount: the container's init keeps this
        // mapping, and nothing that reaches into the init can reopen it for writing.
        let loaded = crate::read_only::open(artifact)
            .map_err(wasmtime::Error::from)
            .and_then(|file| {
                // SAFETY: the artifact verified against this node's cache key, so it is
                // native code this engine build compiled; its entry name pins version and
                // settings.
                unsafe { Module::deserialize_open_file(&self.engine, file) }
            });
        let module = loaded.map_err(|e| {
            let reason = format!("loading the cached artifact {}: {e:#}", artifact.display());
            EngineError::invalid(id, path, reason)
        })?;
        self.link(id, module, has_start_function)
    }

    fn link(
        &self,
        id: &str,
        module: Module,
        has_start_function: bool,
    ) -> Result<WarmModule, EngineError> {
        let setup = |what: &str, e: wasmtime::Error| EngineError::Setup {
            id: id.to_owned(),
            reason: format!("{what}: {e:#}"),
        };
        let mut linker: Linker<GuestState> = Linker::new(&self.engine);
        wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state| &mut state.wasi)
            .and_then(|()| super::p1_sockets::add_to_linker(&mut linker))
            .map_err(|e| setup("linking WASI", e))?;
        wasmtime_wasi_nn::witx::add_to_linker(&mut linker, |state: &mut GuestState| &mut state.nn)
            .map_err(|e| setup("linking wasi-nn", e))?;
        let pre = linker
            .instantiate_pre(&module)
            .map_err(|e| setup("linking the module's imports", e))?;
        Ok(WarmModule {
            pre,
            has_start_function,
        })
    }

    /// The snapshot of `bytes` (a module, or a component when `component`) pre-initialised
    /// with `init`, compiled, from the cache: built once per node; `None` (logged) when the
    /// init fails, so that the container runs the guest as it is.
    #[allow(clippy::too_many_arguments)]
    fn snapshot_artifact(
        &self,
        id: &str,
        host_path: &Path,
        bytes: &[u8],
        cache: &ArtifactCache,
        init: &str,
        options: &PreloadOptions,
        component: bool,
    ) -> Result<Option<(std::path::PathBuf, CacheOutcome)>, EngineError> {
        let what = if component { "component" } else { "module" };
        let entry = self.cache_entry(bytes, Some(init));
        let built = cache.get_or_build_once(&entry, || {
            let started = std::time::Instant::now();
            let (memory, deadline) = (options.init_memory_limit, options.init_deadline);
            let snapshot = if component {
                snapshot::pre_initialise_component(id, bytes, init, memory, deadline)?
            } else {
                snapshot::pre_initialise(bytes, init, memory, deadline)?
            };
            tracing::info!(
                container = %id,
                init,
                ms = started.elapsed().as_secs_f64() * 1000.0,
                bytes = snapshot.len(),
                "wasm {what} pre-initialised"
            );
            self.precompile(&snapshot, component)
                .map_err(|e| format!("compiling the snapshot: {e}"))
        });
        match built {
            Ok(built) => Ok(Some(built)),
            Err(CacheError::Build(reason)) => {
                tracing::warn!(
                    container = %id,
                    "container {id}: no snapshot of {} with init export {init:?}: {reason}; the {what} runs as it is",
                    host_path.display()
                );
                Ok(None)
            }
            Err(source) => Err(EngineError::Cache {
                id: id.to_owned(),
                source,
            }),
        }
    }

    /// Compiles a module, or a component when `component`.
    fn precompile(&self, bytes: &[u8], component: bool) -> Result<Vec<u8>, String> {
        let compiled = if component {
            self.engine.precompile_component(bytes)
        } else {
            self.engine.precompile_module(bytes)
        };
        compiled.map_err(|e| format!("{e:#}"))
    }
}

/// Triage's settings, whatever allocates the instances.
pub(super) fn engine_config() -> Config {
    let mut config = Config::new();
    config.cranelift_opt_level(wasmtime::OptLevel::Speed);
    // Compiled code checks the epoch at loop heads and calls, so a Kill stops a
    // guest that never returns to the host.
    config.epoch_interruption(true);
    // Compiling happens in the single-threaded helper right before it forks the
    // container's init: no compiler threads may exist then.
    config.parallel_compilation(false);
    // A component that serves instantiates per request: the image of its memory is
    // mapped copy-on-write, not copied (the default, stated because it matters).
    config.memory_init_cow(true);
    config
}

/// An engine for serving `component`: its instances come from a pool made once, as
/// many as the container admits requests at once (`options.cpu_millis`), each memory
/// bounded by the container's limit; `None` (said in the log) where the pool cannot be
/// made, e.g. where the address space is too small for its reservations: then
/// instances are allocated on demand. Compiled code is the same for both allocators,
/// so the cached artifact serves either.
pub(super) fn serving_engine(
    id: &str,
    component: &Component,
    options: &PreloadOptions,
) -> Option<Engine> {
    let cpus = options.cpu_millis.map(|m| m as f64 / 1000.0);
    let (_, in_flight) = super::serve::bounds(cpus);
    let needs = component.resources_required();
    let per_instance = |n: Option<u32>| n.unwrap_or(1).max(1) as usize;
    let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    let memories = in_flight * per_instance(needs.as_ref().map(|r| r.num_memories));
    let tables = in_flight * per_instance(needs.as_ref().map(|r| r.num_tables));
    let mut pool = PoolingAllocationConfig::new();
    pool.total_component_instances(count(in_flight))
        .total_core_instances(count(in_flight * CORE_INSTANCES_PER_COMPONENT))
        .total_memories(count(memories))
        .total_tables(count(tables))
        .total_stacks(count(in_flight));
    let keep = keep_resident(options.memory_limit, memories + tables + in_flight);
    pool.linear_memory_keep_resident(keep)
        .table_keep_resident(keep)
        .async_stack_keep_resident(keep);
    if let Some(limit) = options.memory_limit {
        pool.max_memory_size(usize::try_from(limit).unwrap_or(usize::MAX));
    }
    let mut config = engine_config();
    config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    match Engine::new(&config) {
        Ok(engine) => {
            tracing::info!(container = %id, instances = in_flight, memories, "instance pool for serving");
            Some(engine)
        }
        Err(e) => {
            tracing::warn!(container = %id, "no instance pool for serving ({e:#}); instances are allocated per request");
            None
        }
    }
}

impl Default for WasmtimeEngine {
    fn default() -> Self {
        Self::new()
    }
}

impl WasmEngine for WasmtimeEngine {
    fn name(&self) -> &'static str {
        "wasmtime"
    }

    fn runs_components(&self) -> bool {
        true
    }

    fn checks_egress(&self) -> bool {
        true
    }

    fn validate(
        &self,
        id: &str,
        path: &Path,
        bytes: &[u8],
        export: &str,
    ) -> Result<(), EngineError> {
        if wasmparser::Parser::is_component(bytes) {
            return component::validate(id, path, bytes).map(drop);
        }
        Module::validate(&self.engine, bytes)
            .map_err(|e| EngineError::invalid(id, path, format!("{e:#}")))?;
        let exports = ModuleFacts::of(id, path, bytes)?.function_exports;
        ModuleFacts::require_export(&exports, id, path, export)
    }

    fn preload(
        &self,
        id: &str,
        host_path: &Path,
        bytes: &[u8],
        cache: &ArtifactCache,
        options: &PreloadOptions,
    ) -> Result<Preloaded, EngineError> {
        let component = wasmparser::Parser::is_component(bytes);
        let (exports, has_start_function, uses_wasi_nn) = if component {
            let exports = ComponentWorld::top_level_exports(bytes)
                .map_err(|e| EngineError::invalid(id, host_path, e.to_string()))?;
            let nn = ComponentWorld::imports_wasi_nn(id, host_path, bytes)?;
            (exports, false, nn)
        } else {
            let facts = ModuleFacts::of(id, host_path, bytes)?;
            (
                facts.function_exports,
                facts.has_start_function,
                facts.uses_wasi_nn,
            )
        };
        let snapshot_init = options
            .snapshot_init
            .as_deref()
            .filter(|init| exports.iter().any(|e| e == init));
        let snapshot = match snapshot_init {
            Some(init) => self
                .snapshot_artifact(id, host_path, bytes, cache, init, options, component)?
                .map(|built| (built, init.to_owned())),
            None => None,
        };
        let ((artifact, outcome), snapshot_of) = match snapshot {
            Some((built, init)) => (built, Some(init)),
            None => {
                let built = cache
                    .get_or_build(&self.cache_entry(bytes, None), || {
                        self.precompile(bytes, component)
                    })
                    .map_err(|e| EngineError::compiling(id, host_path, e))?;
                (built, None)
            }
        };
        let warm = if component {
            Warm::Component(component::preload(
                &self.engine,
                id,
                host_path,
                bytes,
                &artifact,
                options,
            )?)
        } else {
            // Wizer removes the start function: a snapshot is past it.
            let start = has_start_function && snapshot_of.is_none();
            Warm::Module(self.load_artifact(id, host_path, &artifact, start)?)
        };
        *self.warm.lock().unwrap_or_else(|p| p.into_inner()) = Some(warm);
        Ok(Preloaded {
            outcome,
            snapshot_of,
            uses_wasi_nn,
        })
    }

    fn prepare(&self, inv: &GuestInvocation) -> Result<Box<dyn PreparedGuest + Send>, EngineError> {
        let setup = |what: &str, e: wasmtime::Error| EngineError::Setup {
            id: inv.id.clone(),
            reason: format!("{what}: {e:#}"),
        };
        // Cloning an `InstancePre` shares its module and linked imports.
        let preloaded = self.warm.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let warm = match preloaded {
            Some(Warm::Module(warm)) => warm,
            Some(Warm::Component(warm)) => return component::prepare(warm, inv),
            None => {
                let (id, path) = (&inv.id, &inv.module_path);
                let bytes = inv.module_bytes()?;
                if wasmparser::Parser::is_component(&bytes) {
                    let warm = component::compile(&self.engine, id, path, &bytes)?;
                    return component::prepare(warm, inv);
                }
                let facts = ModuleFacts::of(id, path, &bytes)?;
                let module = Module::new(&self.engine, &bytes)
                    .map_err(|e| EngineError::invalid(id, path, format!("{e:#}")))?;
                self.link(&inv.id, module, facts.has_start_function)?
            }
        };
        let exports: Vec<String> = warm
            .pre
            .module()
            .exports()
            .filter(|e| e.ty().func().is_some())
            .map(|e| e.name().to_owned())
            .collect();
        ModuleFacts::require_export(&exports, &inv.id, &inv.module_path, &inv.export)?;

        // A module that serves gets its listeners first (fds 3…), bound now, in the pod's
        // network namespace.
        let sockets = if inv.listen.source == ListenSource::Annotation {
            P1Sockets::bind(&inv.id, &inv.listen.addrs)?
        } else {
            P1Sockets::default()
        };
        let mut wasi = wasi_builder(inv, true, true, sockets.count())?;
        // Measured after compiling: the engine and the module's code are resident now.
        let memory = inv
            .memory_limit
            .map(|limit| MemoryAccount::new(MemoryBudget::measure(&inv.id, limit)));
        let mut store = Store::new(
            &self.engine,
            GuestState {
                wasi: wasi.build_p1(),
                nn: super::wasi_nn::module_context(&inv.id, inv.nn.as_ref()),
                sockets,
                limits: MemoryLimiter::new(memory),
            },
        );
        store.limiter(|state| &mut state.limits as &mut dyn ResourceLimiter);
        store.set_epoch_deadline(1);
        store.epoch_deadline_trap();
        // Instantiating maps the memory image and runs no guest code unless the module
        // has a start function: do it now, so that Start only calls the export.
        let ready = if warm.has_start_function {
            Ready::Linked(warm.pre)
        } else {
            Ready::Instance(
                warm.pre
                    .instantiate(&mut store)
                    .map_err(|e| setup("instantiating", e))?,
            )
        };
        Ok(Box::new(WasmtimeGuest {
            ready,
            store,
            export: inv.export.clone(),
            id: inv.id.clone(),
        }))
    }
}

/// What a guest's store holds: its WASI context, its listening sockets and its share of
/// the memory limit.
struct GuestState {
    wasi: WasiP1Ctx,
    nn: wasmtime_wasi_nn::witx::WasiNnCtx,
    sockets: P1Sockets,
    limits: MemoryLimiter,
}

impl SocketsView for GuestState {
    fn sockets(&mut self) -> &mut P1Sockets {
        &mut self.sockets
    }

    fn wasi(&mut self) -> &mut WasiP1Ctx {
        &mut self.wasi
    }
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        // Refused: memory.grow returns -1, and the guest decides how to fail.
        Ok(MemoryLimiter::memory_growing(
            self,
            current as u64,
            desired as u64,
        ))
    }

    fn table_growing(
        &mut self,
        _current: usize,
        _desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(true)
    }
}

/// Bumps the engine's epoch: every store's deadline is one tick away.
pub(super) struct EpochInterrupt(pub(super) Engine);

impl GuestInterrupt for EpochInterrupt {
    fn interrupt(&self) {
        // Signal-safe per wasmtime's documentation: a relaxed atomic increment.
        self.0.increment_epoch();
    }
}

/// How far a guest got before Start.
enum Ready {
    /// Instantiated: Start calls the export.
    Instance(Instance),
    /// Linked only, because instantiating runs its start function.
    Linked(InstancePre<GuestState>),
}

/// A wasmtime guest with its module linked and its WASI context built.
struct WasmtimeGuest {
    ready: Ready,
    store: Store<GuestState>,
    export: String,
    id: String,
}

impl PreparedGuest for WasmtimeGuest {
    fn interrupter(&self) -> Box<dyn GuestInterrupt> {
        Box::new(EpochInterrupt(self.store.engine().clone()))
    }

    fn run(self: Box<Self>) -> Result<GuestExit, EngineError> {
        let Self {
            ready,
            mut store,
            export,
            id,
        } = *self;
        let instantiated = match ready {
            Ready::Instance(instance) => Ok(instance),
            Ready::Linked(pre) => pre.instantiate(&mut store),
        };
        let instance = match instantiated {
            Ok(instance) => instance,
            Err(e) => return failed_instantiation(id, &store.data().limits, e),
        };
        // A reactor module is initialised before any other export is called.
        if export != "_start" {
            if let Ok(init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
                if let Err(e) = init.call(&mut store, ()) {
                    return Ok(outcome(&store.data().limits, e));
                }
            }
        }
        let func = instance
            .get_typed_func::<(), ()>(&mut store, &export)
            .map_err(|e| EngineError::Setup {
                id,
                reason: format!(
                    "export {export:?} is not a function without parameters or results: {e:#}"
                ),
            })?;
        Ok(match func.call(&mut store, ()) {
            Ok(()) => GuestExit::Exited(0),
            Err(e) => outcome(&store.data().limits, e),
        })
    }
}

/// A guest's WASI context, for a module or a component: args, env, stdout and stderr
/// (and `stdin`), and (with `preopens`) its directories.
pub(super) fn wasi_builder(
    inv: &GuestInvocation,
    stdin: bool,
    preopens: bool,
    listeners: usize,
) -> Result<WasiCtxBuilder, EngineError> {
    let mut wasi = WasiCtxBuilder::new();
    if inv.stdio == GuestStdio::Inherit {
        wasi.inherit_stdout().inherit_stderr();
        if stdin {
            wasi.inherit_stdin();
        }
    }
    wasi.args(&inv.args);
    if listeners == 0 {
        wasi.envs(&inv.env);
    } else {
        // Socket activation's variables are Triage's to set (no LISTEN_PID: a module has
        // no process id).
        for (key, value) in &inv.env {
            if !matches!(key.as_str(), "LISTEN_FDS" | "LISTEN_PID" | "LISTEN_FDNAMES") {
                wasi.env(key, value);
            }
        }
        wasi.env("LISTEN_FDS", listeners.to_string());
        // One placeholder preopen per listener keeps wasmtime's numbers 3… for them (see
        // `p1_sockets`): the container's root, read only, never reached.
        for n in 0..listeners {
            wasi.preopened_dir("/", format!("/.triage-listener-{n}"), FsPerms::ReadOnly)
                .map_err(|e| EngineError::Setup {
                    id: inv.id.clone(),
                    reason: format!("reserving the descriptor of listener {n}: {e:#}"),
                })?;
        }
    }
    for (dir, guest, read_only) in inv.preopens.iter().filter(|_| preopens) {
        let perms = if *read_only {
            FsPerms::ReadOnly
        } else {
            FsPerms::ReadWrite
        };
        wasi.preopened_dir(dir, guest, perms)
            .map_err(|e| EngineError::Setup {
                id: inv.id.clone(),
                reason: format!("preopening {}: {e:#}", dir.display()),
            })?;
    }
    Ok(wasi)
}

/// What an instantiation that failed with `e` means: a trap (in a start function) is the
/// guest's own end; anything else is a setup error of container `id`.
pub(super) fn failed_instantiation(
    id: String,
    limits: &MemoryLimiter,
    e: wasmtime::Error,
) -> Result<GuestExit, EngineError> {
    if e.downcast_ref::<wasmtime::Trap>().is_some() {
        return Ok(outcome(limits, e));
    }
    Err(EngineError::Setup {
        id,
        reason: format!("instantiating: {e:#}"),
    })
}

/// How a guest that returned `e` ended: an exit, an interruption or a trap.
pub(super) fn outcome(limits: &MemoryLimiter, e: wasmtime::Error) -> GuestExit {
    if let Some(exit) = e.downcast_ref::<I32Exit>() {
        return GuestExit::Exited(exit.0);
    }
    if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::Interrupt) {
        return GuestExit::Interrupted;
    }
    match limits.refused() {
        // A guest that cannot handle a failed allocation traps right after it.
        Some(refusal) => GuestExit::Trapped(format!("{e:?}\nafter {refusal}")),
        None => GuestExit::Trapped(format!("{e:?}")),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_pool_keeps_at_most_an_eighth_of_the_limit_resident() {
        use super::{keep_resident, KEEP_RESIDENT_BYTES};
        assert_eq!(keep_resident(None, 192), KEEP_RESIDENT_BYTES);
        // The seed's 1 GiB over 192 slots: the full 256 KiB.
        assert_eq!(keep_resident(Some(1 << 30), 192), KEEP_RESIDENT_BYTES);
        // 64 MiB: 8 MiB over 192 slots, whole pages.
        assert_eq!(keep_resident(Some(64 << 20), 192), 40 << 10);
        assert_eq!(keep_resident(Some(1 << 20), 192), 0);
    }

    use super::*;

    use crate::engine::facts::fixtures::TWO_EXPORTS;

    #[test]
    fn validate_accepts_module_with_export() {
        let engine = WasmtimeEngine::new();
        engine
            .validate("c", Path::new("/m.wasm"), TWO_EXPORTS, "greet")
            .unwrap();
        engine
            .validate("c", Path::new("/m.wasm"), TWO_EXPORTS, "_start")
            .unwrap();
    }

    #[test]
    fn validate_names_missing_export_and_lists_others() {
        let engine = WasmtimeEngine::new();
        let err = engine
            .validate("c7", Path::new("/m.wasm"), TWO_EXPORTS, "nope")
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.starts_with("container c7: wasm module /m.wasm has no function export \"nope\""),
            "{msg}"
        );
        assert!(msg.contains("_start, greet"), "{msg}");
    }

    #[test]
    fn validate_rejects_garbage_after_magic() {
        let engine = WasmtimeEngine::new();
        let err = engine
            .validate(
                "c8",
                Path::new("/bad.wasm"),
                b"\0asm\x01\0\0\0\xff\xff",
                "_start",
            )
            .unwrap_err();
        assert!(
            err.to_string()
                .starts_with("container c8: invalid wasm module /bad.wasm:"),
            "{err}"
        );
    }
}
