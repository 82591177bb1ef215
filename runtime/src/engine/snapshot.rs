//! Pre-initialised snapshots: runs a module's or a component's init export once and returns the one whose memory and globals start where the init left them (wasmtime-wizer).

use std::future::Future;
use std::task::{Context, Poll, Waker};

use std::time::Duration;

use wasmtime::{Config, Engine, Instance, Linker, Module, ResourceLimiter, Store};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wizer::{InstanceState, SnapshotVal, ValType, Wizer};

/// How much work an init may do (wasmtime fuel: about one unit per wasm instruction),
/// so that a guest whose init never ends cannot hold a Create forever. Tens of seconds.
const INIT_FUEL: u64 = 50_000_000_000;

/// The memory an init may use when the container sets no limit.
const INIT_MEMORY_DEFAULT: u64 = 1 << 30;

/// The most memories, tables and table elements an init may have (a guest with more is
/// not snapshotted).
const INIT_MEMORIES: usize = 16;
const INIT_TABLES: usize = 16;
const INIT_TABLE_ELEMENTS: usize = 1 << 20;
/// The most core instances a component's init may make (a Rust `wasm32-wasip2`
/// component has a handful).
const INIT_COMPONENT_INSTANCES: usize = 16;

/// What an init's store holds: a WASI context with no arguments, environment, files or
/// output (writes are discarded), and what is left of its memory bound.
struct InitState {
    wasi: WasiP1Ctx,
    limits: InitLimits,
}

/// The init's memory bound over all its memories together (a module with several
/// memories gets the bound once, not once per memory).
struct InitLimits {
    bytes_left: usize,
    /// Core instances: a module is one, a component a handful.
    instances: usize,
}

impl InitLimits {
    /// `memory_limit` (else [`INIT_MEMORY_DEFAULT`]) over all memories, and `instances`.
    fn new(memory_limit: Option<u64>, instances: usize) -> Self {
        let limit = memory_limit.unwrap_or(INIT_MEMORY_DEFAULT);
        Self {
            bytes_left: usize::try_from(limit).unwrap_or(usize::MAX),
            instances,
        }
    }
}

/// An init's store: its memory bound (`limits` of `state`), its fuel, and its epoch
/// deadline (which [`with_deadline`]'s timer reaches).
fn bounded_store<T: 'static>(
    engine: &Engine,
    state: T,
    limits: fn(&mut T) -> &mut InitLimits,
) -> Result<Store<T>, String> {
    let mut store = Store::new(engine, state);
    store.limiter(move |state| limits(state));
    store.set_fuel(INIT_FUEL).map_err(|e| format!("{e:#}"))?;
    store.set_epoch_deadline(1);
    Ok(store)
}

impl ResourceLimiter for InitLimits {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let more = desired.saturating_sub(current);
        if more > self.bytes_left {
            return Ok(false);
        }
        self.bytes_left -= more;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= INIT_TABLE_ELEMENTS)
    }

    fn memories(&self) -> usize {
        INIT_MEMORIES
    }

    fn tables(&self) -> usize {
        INIT_TABLES
    }

    fn instances(&self) -> usize {
        self.instances
    }
}

/// Runs `init` of the module `wasm` and returns the pre-initialised module's bytes.
///
/// The init runs in this process, outside any container, so it sees nothing of the host:
/// no preopened directory, no environment, no arguments; its stdout and stderr are
/// discarded; its memory is bounded by `memory_limit` over all its memories together, its
/// work by fuel and its time by `deadline` (an epoch interrupt from a timer thread that
/// ends before this returns, so the helper is single-threaded again for its fork).
/// Whatever it reads from clocks or random sources is frozen into the snapshot.
pub fn pre_initialise(
    wasm: &[u8],
    init: &str,
    memory_limit: Option<u64>,
    deadline: Duration,
) -> Result<Vec<u8>, String> {
    let mut wizer = Wizer::new();
    wizer.init_func(init);
    let (context, instrumented) = wizer
        .instrument(wasm)
        .map_err(|e| format!("preparing the module for a snapshot: {e:#}"))?;

    let engine = init_engine()?;
    let module = Module::new(&engine, &instrumented)
        .map_err(|e| format!("compiling the module for its init: {e:#}"))?;
    let mut linker: Linker<InitState> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state| &mut state.wasi)
        .map_err(|e| format!("linking WASI: {e:#}"))?;
    let state = InitState {
        wasi: WasiCtxBuilder::new().build_p1(),
        limits: InitLimits::new(memory_limit, 1),
    };
    let mut store = bounded_store(&engine, state, |state| &mut state.limits)?;
    let instance = with_deadline(&engine, deadline, || {
        run_init(&mut store, &linker, &module, init, deadline)
    })?;
    let mut source = SnapshotSource {
        store: &mut store,
        instance,
    };
    completed(wizer.snapshot(&context, &mut source))
        .map_err(|e| format!("taking the snapshot: {e:#}"))
}

/// What a component's init store holds: WASI 0.2 and `wasi:http` with nothing in them
/// (no arguments, environment, files, output or egress), and its memory bound.
struct ComponentInitState {
    wasi: wasmtime_wasi::WasiCtx,
    table: wasmtime::component::ResourceTable,
    http: wasmtime_wasi_http::WasiHttpCtx,
    hooks: super::outgoing_http::OutgoingHttp,
    limits: InitLimits,
}

impl wasmtime_wasi::WasiView for ComponentInitState {
    fn ctx(&mut self) -> wasmtime_wasi::WasiCtxView<'_> {
        wasmtime_wasi::WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl wasmtime_wasi_http::WasiHttpView for ComponentInitState {
    fn http(&mut self) -> wasmtime_wasi_http::WasiHttpCtxView<'_> {
        wasmtime_wasi_http::WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Runs the top-level export `init` of the component `wasm` (a function without
/// parameters or results) and returns the pre-initialised component's bytes, with the
/// bounds and isolation of [`pre_initialise`]: WASI 0.2 and `wasi:http` are linked with
/// nothing in them (an outgoing request is refused), other imports (wasi-nn) are not, so a
/// component that needs them is not snapshotted.
pub fn pre_initialise_component(
    id: &str,
    wasm: &[u8],
    init: &str,
    memory_limit: Option<u64>,
    deadline: Duration,
) -> Result<Vec<u8>, String> {
    use wasmtime::component::{Component, Linker as ComponentLinker};
    let mut wizer = Wizer::new();
    // Kept: wasmtime-wizer 48 removes the core export a component still lifts its
    // top-level export from, which leaves a component that does not parse.
    wizer.init_func(init).keep_init_func(true);
    let (context, instrumented) = wizer
        .instrument_component(wasm)
        .map_err(|e| format!("preparing the component for a snapshot: {e:#}"))?;
    let engine = init_engine()?;
    let component = Component::new(&engine, &instrumented)
        .map_err(|e| format!("compiling the component for its init: {e:#}"))?;
    let mut linker: ComponentLinker<ComponentInitState> = ComponentLinker::new(&engine);
    wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
        .and_then(|()| wasmtime_wasi_http::p2::add_only_http_to_linker_sync(&mut linker))
        .map_err(|e| format!("linking WASI 0.2: {e:#}"))?;
    let state = ComponentInitState {
        wasi: WasiCtxBuilder::new().build(),
        table: wasmtime::component::ResourceTable::new(),
        http: wasmtime_wasi_http::WasiHttpCtx::new(),
        hooks: super::outgoing_http::OutgoingHttp::new(super::egress::Egress::denied(id)),
        limits: InitLimits::new(memory_limit, INIT_COMPONENT_INSTANCES),
    };
    let mut store = bounded_store(&engine, state, |state| &mut state.limits)?;
    let instance = with_deadline(&engine, deadline, || {
        let stopped = |what: &str, e: wasmtime::Error| init_stopped(what, e, deadline);
        let instance = linker
            .instantiate(&mut store, &component)
            .map_err(|e| stopped("instantiating for the init", e))?;
        let func = instance
            .get_typed_func::<(), ()>(&mut store, init)
            .map_err(|e| {
                format!("export {init:?} is not a function without parameters or results: {e:#}")
            })?;
        func.call(&mut store, ()).map_err(|e| stopped(init, e))?;
        Ok(instance)
    })?;
    let mut source = ComponentSource {
        store: &mut store,
        instance,
    };
    completed(wizer.snapshot_component(&context, &mut source))
        .map_err(|e| format!("taking the snapshot: {e:#}"))
}

/// Wizer's view of an initialised component: the functions its instrumentation exports
/// to read each core instance's globals and memories.
struct ComponentSource<'a> {
    store: &'a mut Store<ComponentInitState>,
    instance: wasmtime::component::Instance,
}

impl ComponentSource<'_> {
    /// Calls `func` of the exported instance `instance` and hands its result to `with`.
    fn call<R, O>(
        &mut self,
        instance: &str,
        func: &str,
        with: impl FnOnce(&Store<ComponentInitState>, R) -> O,
    ) -> O
    where
        R: wasmtime::component::ComponentType + wasmtime::component::Lift + Send + Sync + 'static,
    {
        let exported = self
            .instance
            .get_export_index(&mut *self.store, None, instance)
            .unwrap_or_else(|| panic!("Wizer's instrumentation exports instance {instance}"));
        let index = self
            .instance
            .get_export_index(&mut *self.store, Some(&exported), func)
            .unwrap_or_else(|| panic!("Wizer's instrumentation exports {instance}#{func}"));
        let typed = self
            .instance
            .get_typed_func::<(), (R,)>(&mut *self.store, &index)
            .unwrap_or_else(|e| panic!("{instance}#{func} has the type Wizer gives it: {e:#}"));
        let (result,) = typed
            .call(&mut *self.store, ())
            .unwrap_or_else(|e| panic!("reading the snapshot through {func}: {e:#}"));
        with(&*self.store, result)
    }
}

impl wasmtime_wizer::ComponentInstanceState for ComponentSource<'_> {
    async fn call_func_ret_list_u8(
        &mut self,
        instance: &str,
        func: &str,
        contents: impl FnOnce(&[u8]) + Send,
    ) {
        self.call(
            instance,
            func,
            |store, list: wasmtime::component::WasmList<u8>| contents(list.as_le_slice(store)),
        )
    }

    async fn call_func_ret_s32(&mut self, instance: &str, func: &str) -> i32 {
        self.call(instance, func, |_, value| value)
    }

    async fn call_func_ret_s64(&mut self, instance: &str, func: &str) -> i64 {
        self.call(instance, func, |_, value| value)
    }

    async fn call_func_ret_f32(&mut self, instance: &str, func: &str) -> u32 {
        self.call(instance, func, |_, value: f32| value.to_bits())
    }

    async fn call_func_ret_f64(&mut self, instance: &str, func: &str) -> u64 {
        self.call(instance, func, |_, value: f64| value.to_bits())
    }
}

/// The engine an init runs on: fuel and epochs bound its work and time; no compiler
/// threads (this runs in the single-threaded create helper).
fn init_engine() -> Result<Engine, String> {
    let mut config = Config::new();
    config.consume_fuel(true);
    config.epoch_interruption(true);
    config.parallel_compilation(false);
    Engine::new(&config).map_err(|e| format!("{e:#}"))
}

/// Runs `init` with a timer that bumps `engine`'s epoch at `deadline` unless told (by the
/// channel closing) that the init is over; the timer is joined before this returns,
/// whatever the init did, so the helper is single-threaded again for its fork.
fn with_deadline<R>(
    engine: &Engine,
    deadline: Duration,
    init: impl FnOnce() -> Result<R, String>,
) -> Result<R, String> {
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let timer_engine = engine.clone();
    let timer = std::thread::Builder::new()
        .name("snapshot-deadline".into())
        .spawn(move || {
            if let Err(std::sync::mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(deadline)
            {
                timer_engine.increment_epoch();
            }
        })
        .map_err(|e| format!("starting the init's timer: {e}"))?;
    let result = init();
    drop(done);
    let _ = timer.join();
    result
}

/// Why `what` of an init stopped with `e`: its fuel, its time, or a trap.
fn init_stopped(what: &str, e: wasmtime::Error, deadline: Duration) -> String {
    match e.downcast_ref::<wasmtime::Trap>() {
        Some(wasmtime::Trap::OutOfFuel) => {
            format!("{what} did not finish within {INIT_FUEL} instructions")
        }
        Some(wasmtime::Trap::Interrupt) => {
            format!("{what} did not finish within {} s", deadline.as_secs())
        }
        _ => format!("{what} trapped: {e:#}"),
    }
}

/// Instantiates the module and runs a reactor's `_initialize`, then `init`.
fn run_init(
    store: &mut Store<InitState>,
    linker: &Linker<InitState>,
    module: &Module,
    init: &str,
    deadline: Duration,
) -> Result<Instance, String> {
    let stopped = |what: &str, e: wasmtime::Error| init_stopped(what, e, deadline);
    let instance = linker
        .instantiate(&mut *store, module)
        .map_err(|e| stopped("instantiating for the init", e))?;
    // A reactor's own initialiser comes first, as it would in a normal start.
    if init != "_initialize" {
        if let Ok(reactor_init) = instance.get_typed_func::<(), ()>(&mut *store, "_initialize") {
            reactor_init
                .call(&mut *store, ())
                .map_err(|e| stopped("_initialize", e))?;
        }
    }
    let func = instance
        .get_typed_func::<(), ()>(&mut *store, init)
        .map_err(|e| {
            format!("export {init:?} is not a function without parameters or results: {e:#}")
        })?;
    func.call(&mut *store, ()).map_err(|e| stopped(init, e))?;
    Ok(instance)
}

/// Wizer's view of the initialised instance: its exported globals and memories.
struct SnapshotSource<'a> {
    store: &'a mut Store<InitState>,
    instance: Instance,
}

impl InstanceState for SnapshotSource<'_> {
    async fn global_get(&mut self, name: &str, _: ValType) -> SnapshotVal {
        let global = self
            .instance
            .get_global(&mut *self.store, name)
            .unwrap_or_else(|| panic!("Wizer's instrumentation exports global {name}"));
        match global.get(&mut *self.store) {
            wasmtime::Val::I32(x) => SnapshotVal::I32(x),
            wasmtime::Val::I64(x) => SnapshotVal::I64(x),
            wasmtime::Val::F32(x) => SnapshotVal::F32(x),
            wasmtime::Val::F64(x) => SnapshotVal::F64(x),
            wasmtime::Val::V128(x) => SnapshotVal::V128(x.as_u128()),
            other => panic!("global {name} holds {other:?}, which Wizer rejects before this"),
        }
    }

    async fn memory_contents(&mut self, name: &str, contents: impl FnOnce(&[u8]) + Send) {
        let memory = self
            .instance
            .get_memory(&mut *self.store, name)
            .unwrap_or_else(|| panic!("Wizer's instrumentation exports memory {name}"));
        contents(memory.data(&*self.store))
    }
}

/// Drives a future whose every await is already complete (the snapshot reads state from
/// a store that is right here), without an executor or threads.
fn completed<F: Future>(future: F) -> F::Output {
    let mut future = std::pin::pin!(future);
    let mut context = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut context) {
            return output;
        }
    }
}
