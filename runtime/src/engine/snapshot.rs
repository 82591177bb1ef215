//! Pre-initialised snapshots: runs a module's init export once and returns the module
//! whose memory and globals start where the init left them (wasmtime-wizer).

use std::future::Future;
use std::task::{Context, Poll, Waker};

use wasmtime::{Config, Engine, Instance, Linker, Module, Store, StoreLimits, StoreLimitsBuilder};
use wasmtime_wasi::p1::WasiP1Ctx;
use wasmtime_wasi::WasiCtxBuilder;
use wasmtime_wizer::{InstanceState, SnapshotVal, ValType, Wizer};

/// How much work an init may do (wasmtime fuel: about one unit per wasm instruction),
/// so that a guest whose init never ends cannot hold a Create forever. Tens of seconds.
const INIT_FUEL: u64 = 50_000_000_000;

/// The memory an init may use when the container sets no limit.
const INIT_MEMORY_DEFAULT: u64 = 1 << 30;

/// What an init's store holds: a WASI context with no arguments, environment, files or
/// output (writes are discarded), and its memory limit.
struct InitState {
    wasi: WasiP1Ctx,
    limits: StoreLimits,
}

/// Runs `init` of the module `wasm` and returns the pre-initialised module's bytes.
///
/// The init runs in this process, outside any container, so it sees nothing of the host:
/// no preopened directory, no environment, no arguments; its stdout and stderr are
/// discarded; its memory is bounded by `memory_limit` and its work by fuel. Whatever it
/// reads from clocks or random sources is frozen into the snapshot.
pub fn pre_initialise(
    wasm: &[u8],
    init: &str,
    memory_limit: Option<u64>,
) -> Result<Vec<u8>, String> {
    let mut wizer = Wizer::new();
    wizer.init_func(init);
    let (context, instrumented) = wizer
        .instrument(wasm)
        .map_err(|e| format!("preparing the module for a snapshot: {e:#}"))?;

    let mut config = Config::new();
    config.consume_fuel(true);
    // This runs in the single-threaded create helper: no compiler threads.
    config.parallel_compilation(false);
    let engine = Engine::new(&config).map_err(|e| format!("{e:#}"))?;
    let module = Module::new(&engine, &instrumented)
        .map_err(|e| format!("compiling the module for its init: {e:#}"))?;
    let mut linker: Linker<InitState> = Linker::new(&engine);
    wasmtime_wasi::p1::add_to_linker_sync(&mut linker, |state| &mut state.wasi)
        .map_err(|e| format!("linking WASI: {e:#}"))?;
    let limit = memory_limit.unwrap_or(INIT_MEMORY_DEFAULT);
    let mut store = Store::new(
        &engine,
        InitState {
            wasi: WasiCtxBuilder::new().build_p1(),
            limits: StoreLimitsBuilder::new()
                .memory_size(usize::try_from(limit).unwrap_or(usize::MAX))
                .build(),
        },
    );
    store.limiter(|state| &mut state.limits);
    store.set_fuel(INIT_FUEL).map_err(|e| format!("{e:#}"))?;
    let instance = linker
        .instantiate(&mut store, &module)
        .map_err(|e| format!("instantiating for the init: {e:#}"))?;
    // A reactor's own initialiser comes first, as it would in a normal start.
    if init != "_initialize" {
        if let Ok(reactor_init) = instance.get_typed_func::<(), ()>(&mut store, "_initialize") {
            reactor_init
                .call(&mut store, ())
                .map_err(|e| format!("_initialize trapped: {e:#}"))?;
        }
    }
    let func = instance
        .get_typed_func::<(), ()>(&mut store, init)
        .map_err(|e| {
            format!("export {init:?} is not a function without parameters or results: {e:#}")
        })?;
    func.call(&mut store, ()).map_err(|e| {
        if e.downcast_ref::<wasmtime::Trap>() == Some(&wasmtime::Trap::OutOfFuel) {
            format!("{init} did not finish within {INIT_FUEL} instructions")
        } else {
            format!("{init} trapped: {e:#}")
        }
    })?;
    let mut source = SnapshotSource {
        store: &mut store,
        instance,
    };
    completed(wizer.snapshot(&context, &mut source))
        .map_err(|e| format!("taking the snapshot: {e:#}"))
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
