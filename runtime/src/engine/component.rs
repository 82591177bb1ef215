//! Components (WASI 0.2) on wasmtime: a `wasi:cli/command` runs as a module's `_start` does; a `wasi:http/proxy` is served ([`super::serve`]).

use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::Arc;

use wasmtime::component::{Component, Linker, ResourceTable};
use wasmtime::{Engine, ResourceLimiter, Store};
use wasmtime_wasi::p2::bindings::sync::CommandPre;
use wasmtime_wasi::sockets::SocketAddrUse;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::{WasiHttpCtx, WasiHttpCtxView, WasiHttpView};

use super::egress::Egress;
use super::facts::ComponentWorld;
use super::memory::{MemoryAccount, MemoryLimiter};
use super::outgoing_http::OutgoingHttp;
use super::serve::ProxyRequests;
use super::wasmtime::{
    failed_instantiation, outcome, serving_engine, wasi_builder, EpochInterrupt,
};
use super::{
    EngineError, GuestExit, GuestInterrupt, GuestInvocation, MemoryBudget, PreloadOptions,
    PreparedGuest,
};

/// A component compiled and linked against WASI 0.2, ready to instantiate.
#[derive(Clone)]
pub(super) enum WarmComponent {
    /// A `wasi:cli/command`.
    Command(CommandPre<ComponentState>),
    /// A `wasi:http/proxy`.
    Proxy(ProxyPre<ComponentState>),
}

/// What a component instance's store holds.
pub(super) struct ComponentState {
    wasi: WasiCtx,
    pub(super) table: ResourceTable,
    http: WasiHttpCtx,
    hooks: OutgoingHttp,
    /// What the instance may reach (its lookups, connections and outgoing requests).
    pub(super) egress: Arc<Egress>,
    /// `wasi:nn`: the container's preloaded graphs, shared with its other instances
    /// (`None` for a container without wasi-nn: nothing is made per request for it).
    nn: Option<wasmtime_wasi_nn::wit::WasiNnCtx>,
    pub(super) limits: MemoryLimiter,
}

impl ComponentState {
    /// An instance's state for the container of `inv`.
    pub(super) fn new(wasi: WasiCtx, inv: &GuestInvocation, limits: MemoryLimiter) -> Self {
        Self {
            wasi,
            table: ResourceTable::new(),
            http: WasiHttpCtx::new(),
            hooks: OutgoingHttp::new(Arc::clone(&inv.egress)),
            egress: Arc::clone(&inv.egress),
            nn: inv
                .nn
                .as_ref()
                .map(|host| super::wasi_nn::component_context(&inv.id, Some(host))),
            limits,
        }
    }

    fn nn(&mut self) -> wasmtime_wasi_nn::wit::WasiNnView<'_> {
        // A guest that calls wasi:nn in a container without it finds no backend or graph.
        let nn = self
            .nn
            .get_or_insert_with(|| super::wasi_nn::component_context("", None));
        wasmtime_wasi_nn::wit::WasiNnView::new(&mut self.table, nn)
    }
}

impl WasiView for ComponentState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl WasiHttpView for ComponentState {
    fn http(&mut self) -> WasiHttpCtxView<'_> {
        WasiHttpCtxView {
            ctx: &mut self.http,
            table: &mut self.table,
            hooks: &mut self.hooks,
        }
    }
}

/// Checks that `bytes` is a valid component that Triage can run or serve; says which.
pub(super) fn validate(id: &str, path: &Path, bytes: &[u8]) -> Result<ComponentWorld, EngineError> {
    wasmparser::Validator::new()
        .validate_all(bytes)
        .map_err(|e| EngineError::invalid(id, path, format!("{e:#}")))?;
    ComponentWorld::of(id, path, bytes)
}

/// Loads the component's compiled `artifact` (from the artifact cache: the component as
/// it is, or its snapshot) and links it; a `wasi:http/proxy` into an engine with an
/// instance pool sized from `options` (see [`serving_engine`]). `bytes` are the
/// component's own, which say what it is.
pub(super) fn preload(
    engine: &Engine,
    id: &str,
    path: &Path,
    bytes: &[u8],
    artifact: &Path,
    options: &PreloadOptions,
) -> Result<WarmComponent, EngineError> {
    let world = ComponentWorld::of(id, path, bytes)?;
    let mut engine = engine.clone();
    let mut component = load(&engine, id, path, artifact)?;
    if world == ComponentWorld::HttpProxy {
        // The pool is sized from what the component needs, so it is made after a first
        // load; the verified artifact is then mapped once more, into the pooled engine.
        if let Some(pooled) = serving_engine(id, &component, options) {
            component = load(&pooled, id, path, artifact)?;
            engine = pooled;
        }
    }
    link(&engine, id, &component, &world)
}

/// Maps a verified cached `artifact` into `engine`, through a read-only mount, as a
/// module's artifact is (see `read_only`).
fn load(engine: &Engine, id: &str, path: &Path, artifact: &Path) -> Result<Component, EngineError> {
    let loaded = crate::read_only::open(artifact)
        .map_err(wasmtime::Error::from)
        .and_then(|file| {
            let through = format!("/proc/self/fd/{}", file.as_raw_fd());
            // SAFETY: the artifact verified against this node's cache key, so it is
            // native code this engine build compiled; its entry name pins version and
            // settings, which both allocators share.
            unsafe { Component::deserialize_file(engine, through) }
        });
    loaded.map_err(|e| {
        let reason = format!("loading the cached artifact {}: {e:#}", artifact.display());
        EngineError::invalid(id, path, reason)
    })
}

/// Compiles the component in this process (no cache) and links it.
pub(super) fn compile(
    engine: &Engine,
    id: &str,
    path: &Path,
    bytes: &[u8],
) -> Result<WarmComponent, EngineError> {
    let world = ComponentWorld::of(id, path, bytes)?;
    let component = Component::new(engine, bytes)
        .map_err(|e| EngineError::invalid(id, path, format!("{e:#}")))?;
    link(engine, id, &component, &world)
}

fn link(
    engine: &Engine,
    id: &str,
    component: &Component,
    world: &ComponentWorld,
) -> Result<WarmComponent, EngineError> {
    let setup = |what: &str, e: wasmtime::Error| EngineError::Setup {
        id: id.to_owned(),
        reason: format!("{what}: {e:#}"),
    };
    let mut linker: Linker<ComponentState> = Linker::new(engine);
    match world {
        ComponentWorld::Command => {
            // With `wasi:cli/exit.exit-with-code` (WASI 0.2.12): any status, not only 0/1.
            wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
                .and_then(|()| super::name_lookup::link(&mut linker))
                .map_err(|e| setup("linking WASI 0.2", e))?;
            wasmtime_wasi_nn::wit::add_to_linker(&mut linker, ComponentState::nn)
                .map_err(|e| setup("linking wasi:nn", e))?;
            let pre = linker
                .instantiate_pre(component)
                .and_then(CommandPre::new)
                .map_err(|e| setup("linking the component's imports", e))?;
            Ok(WarmComponent::Command(pre))
        }
        ComponentWorld::HttpProxy => {
            wasmtime_wasi::p2::add_to_linker_async(&mut linker)
                .and_then(|()| super::name_lookup::link(&mut linker))
                .map_err(|e| setup("linking WASI 0.2", e))?;
            wasmtime_wasi_http::p2::add_only_http_to_linker_async(&mut linker)
                .map_err(|e| setup("linking wasi:http", e))?;
            // Its host calls are synchronous: an inference runs on the request's worker
            // thread, which hands its other tasks to another thread meanwhile (see
            // `wasi_nn`).
            wasmtime_wasi_nn::wit::add_to_linker(&mut linker, ComponentState::nn)
                .map_err(|e| setup("linking wasi:nn", e))?;
            let pre = linker
                .instantiate_pre(component)
                .and_then(ProxyPre::new)
                .map_err(|e| setup("linking the component's imports", e))?;
            Ok(WarmComponent::Proxy(pre))
        }
    }
}

/// Prepares a command to run, or a proxy to serve (its addresses bound now).
pub(super) fn prepare(
    warm: WarmComponent,
    inv: &GuestInvocation,
) -> Result<Box<dyn PreparedGuest + Send>, EngineError> {
    let account = account_of(inv);
    match warm {
        WarmComponent::Command(pre) => {
            let wasi = wasi_context(inv, true, true)?;
            let mut store = Store::new(
                pre.engine(),
                ComponentState::new(wasi, inv, MemoryLimiter::new(account)),
            );
            store.limiter(|state| &mut state.limits as &mut dyn ResourceLimiter);
            store.set_epoch_deadline(1);
            store.epoch_deadline_trap();
            Ok(Box::new(CommandGuest {
                pre,
                store,
                id: inv.id.clone(),
            }))
        }
        WarmComponent::Proxy(pre) => super::serve::prepare(pre, inv, account),
    }
}

/// The per-request path of a proxy, without its listeners (see [`ProxyRequests`]).
pub(super) fn requests(
    warm: WarmComponent,
    inv: &GuestInvocation,
) -> Result<ProxyRequests, EngineError> {
    match warm {
        WarmComponent::Proxy(pre) => Ok(super::serve::requests(pre, inv, account_of(inv))),
        WarmComponent::Command(_) => Err(EngineError::Setup {
            id: inv.id.clone(),
            reason: "the component is a wasi:cli/command, not a wasi:http/proxy".to_owned(),
        }),
    }
}

/// The one memory budget of the container's instances. Measured after compiling: the
/// engine and the component's code are resident now.
fn account_of(inv: &GuestInvocation) -> Option<Arc<MemoryAccount>> {
    inv.memory_limit
        .map(|limit| MemoryAccount::new(MemoryBudget::measure(&inv.id, limit)))
}

/// A component's WASI context: args, env, stdout and stderr (and `stdin`), (with
/// `preopens`) its directories, and `wasi:sockets`: TCP and UDP, binding, listening and
/// accepting in the container's network namespace, connecting and sending only where the
/// container's egress allows (each refused destination logged once).
pub(super) fn wasi_context(
    inv: &GuestInvocation,
    stdin: bool,
    preopens: bool,
) -> Result<WasiCtx, EngineError> {
    let mut wasi = wasi_builder(inv, stdin, preopens, 0)?;
    let egress = Arc::clone(&inv.egress);
    wasi.allow_tcp(true)
        .allow_udp(true)
        .socket_addr_check(move |addr, purpose| {
            let outgoing = match purpose {
                SocketAddrUse::TcpConnect => Some("connection to"),
                SocketAddrUse::UdpSend => Some("datagram to"),
                // Answering the pod's clients is not egress.
                SocketAddrUse::TcpBind
                | SocketAddrUse::TcpListen
                | SocketAddrUse::TcpAccept
                | SocketAddrUse::UdpBind
                | SocketAddrUse::UdpReceive => None,
            };
            let allowed = match outgoing {
                Some(what) if !egress.allows(addr) => {
                    egress.refused(what, &addr.to_string());
                    false
                }
                _ => true,
            };
            Box::pin(std::future::ready(allowed))
        });
    Ok(wasi.build())
}

/// A command component with its WASI context built: Start instantiates it and calls
/// `wasi:cli/run`.
struct CommandGuest {
    pre: CommandPre<ComponentState>,
    store: Store<ComponentState>,
    id: String,
}

impl PreparedGuest for CommandGuest {
    fn interrupter(&self) -> Box<dyn GuestInterrupt> {
        Box::new(EpochInterrupt(self.store.engine().clone()))
    }

    fn run(self: Box<Self>) -> Result<GuestExit, EngineError> {
        let Self { pre, mut store, id } = *self;
        let command = match pre.instantiate(&mut store) {
            Ok(command) => command,
            Err(e) => return failed_instantiation(id, &store.data().limits, e),
        };
        Ok(match command.wasi_cli_run().call_run(&mut store) {
            Ok(Ok(())) => GuestExit::Exited(0),
            // `run` returned its error result: status 1, as wasmtime's CLI exits.
            Ok(Err(())) => GuestExit::Exited(1),
            Err(e) => outcome(&store.data().limits, e),
        })
    }
}
