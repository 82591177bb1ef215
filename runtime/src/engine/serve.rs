//! Serving a `wasi:http/proxy` component: listeners bound at Create, a fresh instance per request, overload answered 503, a host health path, a drain on SIGTERM.

use std::convert::Infallible;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::BodyExt;
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo};
use triage_oci::annotations::LISTEN_FORMS;
use triage_oci::{ListenSource, LISTEN_ENV};
use wasmtime::{ResourceLimiter, Store, UpdateDeadline};
use wasmtime_wasi_http::p2::bindings::http::types::Scheme;
use wasmtime_wasi_http::p2::bindings::ProxyPre;
use wasmtime_wasi_http::p2::body::HyperOutgoingBody;
use wasmtime_wasi_http::WasiHttpView;

use super::component::{wasi_context, ComponentState};
use super::memory::{MemoryAccount, MemoryLimiter};
use super::metrics::{Handled, RequestMetrics};
use super::{EngineError, GuestExit, GuestInterrupt, GuestInvocation, PreparedGuest};

/// The path the host answers itself, without instantiating the guest: `200` while the
/// container serves, `503` once it drains (kubelet's probes point here).
pub const HEALTH_PATH: &str = "/.well-known/triage/health";

/// How long a draining server waits for requests in flight before it exits anyway.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(30);

/// Requests one CPU of the container's limit handles at once; more are answered `503`.
const IN_FLIGHT_PER_CPU: usize = 64;

/// How often the server's engine epoch advances: a guest running code reaches an epoch
/// check within this, yields its worker thread to the other requests there, and ends
/// there once its request's time is up.
const EPOCH_TICK: Duration = Duration::from_millis(10);

/// What a `503` asks the client to wait, seconds.
const RETRY_AFTER_SECONDS: &str = "1";

/// A proxy component with its listeners bound, waiting for Start.
struct HttpServer {
    shared: Arc<Shared>,
    listeners: Vec<std::net::TcpListener>,
    /// Where the metrics are answered (`triage.io/metrics-listen`), if anywhere.
    metrics_listener: Option<std::net::TcpListener>,
    workers: usize,
    drain_read: OwnedFd,
    drain_write: Arc<OwnedFd>,
}

/// What every request's handling reads.
struct Shared {
    pre: ProxyPre<ComponentState>,
    /// The invocation each request's WASI context is made from (and the container id).
    invocation: GuestInvocation,
    /// Whether requests get the container's directories (the component imports
    /// `wasi:filesystem`).
    preopens: bool,
    account: Option<Arc<MemoryAccount>>,
    max_in_flight: usize,
    in_flight: AtomicUsize,
    /// The most linear memory one instance has drawn so far: a request is admitted only
    /// while that much is left in the container's budget.
    instance_bytes: AtomicU64,
    draining: AtomicBool,
    metrics: RequestMetrics,
}

/// Binds the container's listen addresses (in its network namespace, at Create: the ports
/// take connections from then on, answered once Start serves them).
pub(super) fn prepare(
    pre: ProxyPre<ComponentState>,
    inv: &GuestInvocation,
    account: Option<Arc<MemoryAccount>>,
) -> Result<Box<dyn PreparedGuest + Send>, EngineError> {
    let setup = |reason: String| EngineError::Setup {
        id: inv.id.clone(),
        reason,
    };
    if let ListenSource::EnvNotAddresses(value) = &inv.listen.source {
        return Err(setup(format!(
            "environment {LISTEN_ENV}={value} is not valid (expected {LISTEN_FORMS})"
        )));
    }
    let mut listeners = Vec::with_capacity(inv.listen.addrs.len());
    for addr in &inv.listen.addrs {
        let listener = bind(*addr).map_err(|e| {
            setup(format!(
                "cannot listen on {addr} (from {}): {e}",
                inv.listen
            ))
        })?;
        listeners.push(listener);
    }
    let metrics_listener = match inv.metrics_listen {
        Some(addr) => Some(bind(addr).map_err(|e| {
            setup(format!(
                "cannot answer metrics on {addr} (annotation {}): {e}",
                triage_oci::annotations::METRICS_LISTEN
            ))
        })?),
        None => None,
    };
    let (drain_read, drain_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
        .map_err(|e| setup(format!("drain pipe: {e}")))?;
    let (workers, _) = bounds(inv.cpus);
    let shared = Shared::new(pre, inv, account);
    tracing::info!(
        container = %inv.id,
        listen = %inv.listen,
        workers,
        max_in_flight = shared.max_in_flight,
        "serving wasi:http/incoming-handler, one instance per request"
    );
    Ok(Box::new(HttpServer {
        shared,
        listeners,
        metrics_listener,
        workers,
        drain_read,
        drain_write: Arc::new(drain_write),
    }))
}

/// The worker threads and the requests in flight a CPU limit of `cpus` allows (the node's
/// CPUs when unlimited).
pub(super) fn bounds(cpus: Option<f64>) -> (usize, usize) {
    let node_cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    // A quota past the node's CPUs buys nothing more.
    let cpus = (cpus.unwrap_or(node_cpus as f64).ceil() as usize).clamp(1, node_cpus);
    (cpus, cpus * IN_FLIGHT_PER_CPU)
}

/// A serving component's path for one request, without listeners or admission: a fresh
/// instance of the linked component answers it, as the server does for each admitted
/// request (what `benches/` measures alone).
pub struct ProxyRequests(Arc<Shared>);

impl ProxyRequests {
    /// Instantiates the component for `request` (its body in memory) alone and returns
    /// its response.
    pub async fn answer(
        &self,
        request: Request<Bytes>,
    ) -> Result<Response<HyperOutgoingBody>, EngineError> {
        let request = request.map(|body| {
            http_body_util::Full::new(body)
                .map_err(|never: Infallible| -> wasmtime_wasi_http::Error { match never {} })
        });
        Arc::clone(&self.0)
            .handle(request)
            .await
            .map_err(|e| EngineError::Setup {
                id: self.0.invocation.id.clone(),
                reason: format!("handling a request: {e:#}"),
            })
    }
}

/// The per-request path of `pre` for the container of `inv`.
pub(super) fn requests(
    pre: ProxyPre<ComponentState>,
    inv: &GuestInvocation,
    account: Option<Arc<MemoryAccount>>,
) -> ProxyRequests {
    ProxyRequests(Shared::new(pre, inv, account))
}

/// Starts a server's drain from a signal handler: one byte on its pipe.
struct DrainInterrupt(Arc<OwnedFd>);

impl GuestInterrupt for DrainInterrupt {
    fn interrupt(&self) {
        // SAFETY: write(2) on our own pipe is async-signal-safe.
        unsafe { libc::write(self.0.as_raw_fd(), [1u8].as_ptr().cast(), 1) };
    }

    fn grace(&self) -> Duration {
        DRAIN_LIMIT + Duration::from_secs(1)
    }
}

impl PreparedGuest for HttpServer {
    fn interrupter(&self) -> Box<dyn GuestInterrupt> {
        Box::new(DrainInterrupt(Arc::clone(&self.drain_write)))
    }

    fn run(self: Box<Self>) -> Result<GuestExit, EngineError> {
        let id = self.shared.invocation.id.clone();
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(self.workers)
            .thread_name("serve")
            .enable_all()
            .build()
            .map_err(|e| EngineError::Setup {
                id: id.clone(),
                reason: format!("starting the server's runtime: {e}"),
            })?;
        runtime.block_on(self.serve())?;
        Ok(GuestExit::Exited(0))
    }
}

impl HttpServer {
    async fn serve(self: Box<Self>) -> Result<(), EngineError> {
        let HttpServer {
            shared,
            listeners,
            metrics_listener,
            drain_read,
            ..
        } = *self;
        let (accepted_tx, mut accepted) = tokio::sync::mpsc::channel(1024);
        let mut acceptors = Vec::new();
        let roles = listeners
            .into_iter()
            .map(|l| (l, Role::Service))
            .chain(metrics_listener.map(|l| (l, Role::Metrics)));
        for (listener, role) in roles {
            let listener =
                tokio::net::TcpListener::from_std(listener).map_err(|e| EngineError::Setup {
                    id: shared.invocation.id.clone(),
                    reason: format!("listener: {e}"),
                })?;
            let accepted_tx = accepted_tx.clone();
            let id = shared.invocation.id.clone();
            acceptors.push(tokio::spawn(async move {
                loop {
                    match listener.accept().await {
                        Ok((stream, _)) => {
                            if accepted_tx.send((stream, role)).await.is_err() {
                                return;
                            }
                        }
                        // Out of descriptors or memory: wait, as the peer's retry will.
                        Err(e) => {
                            tracing::warn!(container = %id, "accept: {e}");
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                    }
                }
            }));
        }
        // A thread of its own: the runtime's workers may all be running guest code.
        let ticking = Arc::new(AtomicBool::new(true));
        let ticker = {
            let (engine, ticking) = (shared.pre.engine().clone(), Arc::clone(&ticking));
            std::thread::Builder::new()
                .name("epoch".into())
                .spawn(move || {
                    while ticking.load(Ordering::Relaxed) {
                        std::thread::sleep(EPOCH_TICK);
                        engine.increment_epoch();
                    }
                })
                .map_err(|e| EngineError::Setup {
                    id: shared.invocation.id.clone(),
                    reason: format!("starting the epoch thread: {e}"),
                })?
        };
        let drained = tokio::task::spawn_blocking(move || {
            let mut byte = [0u8; 1];
            // SAFETY: reads our own pipe into a local buffer.
            while unsafe { libc::read(drain_read.as_raw_fd(), byte.as_mut_ptr().cast(), 1) } < 0 {}
        });
        tokio::pin!(drained);
        let graceful = hyper_util::server::graceful::GracefulShutdown::new();
        let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
        loop {
            tokio::select! {
                Some((stream, role)) = accepted.recv() => {
                    let _ = stream.set_nodelay(true);
                    let shared = Arc::clone(&shared);
                    let service = hyper::service::service_fn(move |req| {
                        let shared = Arc::clone(&shared);
                        async move {
                            Ok::<_, Infallible>(match role {
                                Role::Service => shared.answer(req).await,
                                Role::Metrics => shared.metrics_answer(&req),
                            })
                        }
                    });
                    let connection = builder
                        .serve_connection(TokioIo::new(stream), service)
                        .into_owned();
                    tokio::spawn(graceful.watch(connection));
                }
                _ = &mut drained => break,
            }
        }
        shared.draining.store(true, Ordering::SeqCst);
        for acceptor in acceptors {
            acceptor.abort();
        }
        let in_flight = shared.in_flight.load(Ordering::SeqCst);
        tracing::info!(container = %shared.invocation.id, in_flight, "draining: no new connections; waiting for requests in flight");
        let finished = tokio::time::timeout(DRAIN_LIMIT, graceful.shutdown())
            .await
            .is_ok();
        ticking.store(false, Ordering::Relaxed);
        let _ = ticker.join();
        let (served, overloaded, failed) = shared.metrics.counts();
        tracing::info!(
            container = %shared.invocation.id,
            served,
            overloaded,
            failed,
            "{}",
            if finished {
                "drained".to_owned()
            } else {
                format!("drain limit of {} s reached: closing the connections left", DRAIN_LIMIT.as_secs())
            }
        );
        Ok(())
    }
}

impl Shared {
    fn new(
        pre: ProxyPre<ComponentState>,
        inv: &GuestInvocation,
        account: Option<Arc<MemoryAccount>>,
    ) -> Arc<Self> {
        let preopens = pre
            .instance_pre()
            .component()
            .component_type()
            .imports(pre.engine())
            .any(|(name, _)| name.starts_with("wasi:filesystem/"));
        Arc::new(Self {
            pre,
            invocation: inv.clone(),
            preopens,
            account,
            max_in_flight: bounds(inv.cpus).1,
            in_flight: AtomicUsize::new(0),
            instance_bytes: AtomicU64::new(0),
            draining: AtomicBool::new(false),
            metrics: RequestMetrics::default(),
        })
    }

    /// The response to one request: the host's health answer, a `503` when the container
    /// is at its bound, else the guest's.
    async fn answer(self: Arc<Self>, req: Request<Incoming>) -> Response<HyperOutgoingBody> {
        if req.uri().path() == HEALTH_PATH {
            return if self.draining.load(Ordering::SeqCst) {
                plain(StatusCode::SERVICE_UNAVAILABLE, "draining\n")
            } else {
                plain(StatusCode::OK, "ok\n")
            };
        }
        if self.draining.load(Ordering::SeqCst) {
            let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, "draining\n");
            response
                .headers_mut()
                .insert(hyper::header::CONNECTION, "close".parse().expect("valid"));
            return response;
        }
        let Some(_admitted) = self.admit() else {
            self.metrics.overloaded();
            let mut response = plain(StatusCode::SERVICE_UNAVAILABLE, "overloaded\n");
            response.headers_mut().insert(
                hyper::header::RETRY_AFTER,
                RETRY_AFTER_SECONDS.parse().expect("valid"),
            );
            return response;
        };
        let started = Instant::now();
        match Arc::clone(&self).handle(req).await {
            Ok(response) => {
                self.metrics.handled(Handled::Served, started.elapsed());
                response
            }
            Err(e) => {
                self.metrics.handled(Handled::Failed, started.elapsed());
                if let Some(deadline) = e.downcast_ref::<RequestDeadline>() {
                    tracing::warn!(container = %self.invocation.id, "{deadline}: answered 504");
                    return plain(
                        StatusCode::GATEWAY_TIMEOUT,
                        "the service did not answer in time\n",
                    );
                }
                let one_line = format!("{e:?}").replace('\n', " | ");
                tracing::error!(container = %self.invocation.id, "request failed in the guest: {one_line}");
                plain(StatusCode::INTERNAL_SERVER_ERROR, "the service failed\n")
            }
        }
    }

    /// The answer on the metrics address: the text format at `/metrics` (and `/`).
    fn metrics_answer(&self, req: &Request<Incoming>) -> Response<HyperOutgoingBody> {
        if !matches!(req.uri().path(), "/metrics" | "/") {
            return plain(StatusCode::NOT_FOUND, "metrics are at /metrics\n");
        }
        let text = self
            .metrics
            .render(&self.invocation.id, self.in_flight.load(Ordering::Relaxed));
        let mut response = plain(StatusCode::OK, text);
        response.headers_mut().insert(
            hyper::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8"
                .parse()
                .expect("valid"),
        );
        response
    }

    /// A place among the requests in flight, if the container's CPU and memory bounds
    /// leave one.
    fn admit(self: &Arc<Self>) -> Option<InFlight> {
        let taken = self.in_flight.fetch_add(1, Ordering::SeqCst);
        let slot = InFlight(Arc::clone(self));
        if taken >= self.max_in_flight {
            return None;
        }
        if let Some(account) = &self.account {
            let needs = self.instance_bytes.load(Ordering::Relaxed);
            if account.used().saturating_add(needs) > account.budget.budget {
                return None;
            }
        }
        Some(slot)
    }

    /// Instantiates the component for this request alone and lets it answer.
    async fn handle<B>(
        self: Arc<Self>,
        req: Request<B>,
    ) -> wasmtime::Result<Response<HyperOutgoingBody>>
    where
        B: hyper::body::Body<Data = Bytes> + Send + 'static,
        B::Error: Into<wasmtime_wasi_http::Error>,
    {
        let wasi = wasi_context(&self.invocation, false, self.preopens)?;
        let mut store = Store::new(
            self.pre.engine(),
            ComponentState::new(
                wasi,
                &self.invocation,
                MemoryLimiter::new(self.account.clone()),
            ),
        );
        store.limiter(|state| &mut state.limits as &mut dyn ResourceLimiter);
        // At each epoch tick a running guest gives its thread back to the runtime, and
        // ends once its time is up (one in a host call is ended by the timeout below).
        let (started, timeout) = (Instant::now(), self.invocation.request_timeout);
        store.set_epoch_deadline(1);
        store.epoch_deadline_callback(move |_| {
            if started.elapsed() >= timeout {
                return Err(RequestDeadline(timeout).into());
            }
            Ok(UpdateDeadline::Yield(1))
        });
        let (sender, receiver) = tokio::sync::oneshot::channel();
        let incoming = store
            .data_mut()
            .http()
            .new_incoming_request(Scheme::Http, req)?;
        let outparam = store.data_mut().http().new_response_outparam(sender)?;
        let pre = self.pre.clone();
        let shared = Arc::clone(&self);
        let task = tokio::spawn(async move {
            let proxy = pre.instantiate_async(&mut store).await?;
            let result = proxy
                .wasi_http_incoming_handler()
                .call_handle(&mut store, incoming, outparam)
                .await;
            shared
                .instance_bytes
                .fetch_max(store.data().limits.drawn(), Ordering::Relaxed);
            result
        });
        let answered = match tokio::time::timeout(timeout, receiver).await {
            Ok(answered) => answered,
            Err(_) => {
                // Dropping the guest's future drops its store: the slot is free again.
                task.abort();
                return Err(RequestDeadline(timeout).into());
            }
        };
        match answered {
            Ok(Ok(response)) => Ok(response),
            Ok(Err(code)) => Err(wasmtime::format_err!(
                "the guest answered with error {code:?}"
            )),
            Err(_) => {
                let e = match task.await {
                    Ok(Ok(())) => {
                        wasmtime::format_err!("the guest returned without setting a response")
                    }
                    Ok(Err(e)) => e,
                    Err(e) => wasmtime::format_err!("{e}"),
                };
                Err(e.context("the guest never set a response"))
            }
        }
    }
}

/// A request that ran past its container's `triage.io/request-timeout`.
#[derive(Debug)]
struct RequestDeadline(Duration);

impl std::fmt::Display for RequestDeadline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "a request ran past its deadline of {} ms ({})",
            self.0.as_millis(),
            triage_oci::annotations::REQUEST_TIMEOUT
        )
    }
}

impl std::error::Error for RequestDeadline {}

/// What a listener's connections are for.
#[derive(Debug, Clone, Copy)]
enum Role {
    /// The guest's requests (and the host's health path).
    Service,
    /// The container's metrics.
    Metrics,
}

/// A listener on `addr` that takes connections now, non-blocking for the server.
fn bind(addr: std::net::SocketAddr) -> std::io::Result<std::net::TcpListener> {
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    Ok(listener)
}

/// One request's place in flight, given back when it is answered.
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A plain-text response from the host.
fn plain(status: StatusCode, body: impl Into<Bytes>) -> Response<HyperOutgoingBody> {
    let body = http_body_util::Full::new(body.into())
        .map_err(|never: Infallible| match never {})
        .boxed_unsync();
    let mut response = Response::new(body);
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        "text/plain; charset=utf-8".parse().expect("valid"),
    );
    response
}
