//! The workload step inside the container: exec the native entrypoint or run the Wasm guest.

use std::os::fd::{FromRawFd, RawFd};
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use std::path::PathBuf;

use triage_oci::{ModuleSource, Preopen, WasmPlan, WorkloadKind, WorkloadPlan};

use super::preload::NnPrepared;
use super::wire::Reply;
use crate::engine::{self, GuestExit, GuestInterrupt, GuestInvocation, PreparedGuest};

/// Signals whose default action ends a process. A Wasm guest cannot handle signals, so
/// its process ends with status 128+signal for each, even as PID 1 of its namespace.
const TERMINATING_SIGNALS: &[libc::c_int] = &[
    libc::SIGTERM,
    libc::SIGINT,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGUSR1,
    libc::SIGUSR2,
    libc::SIGALRM,
];

/// How a terminating signal reaches the guest: its interrupter (epoch), the first signal
/// received, whether wasm code is running, and the pipe that wakes the kill watchdog.
static INTERRUPT: OnceLock<Box<dyn GuestInterrupt>> = OnceLock::new();
static SIGNALLED: AtomicI32 = AtomicI32::new(0);
static GUEST_RUNNING: AtomicBool = AtomicBool::new(false);
static WATCHDOG_FD: AtomicI32 = AtomicI32::new(-1);

/// How long an interrupted guest has to end before its process ends anyway (a job blocked
/// in a host call, e.g. a read, never reaches an epoch check; a server drains): the
/// interrupter's [`GuestInterrupt::grace`], in milliseconds.
static INTERRUPT_GRACE_MS: AtomicU64 = AtomicU64::new(engine::INTERRUPT_GRACE.as_millis() as u64);

/// libcontainer's executor for Triage: native workloads exec as crun/runc would, Wasm
/// workloads run in the engine inside the container's namespaces, cgroup and root.
#[derive(Clone)]
pub struct TriageExecutor {
    plan: WorkloadPlan,
    report_fd: Option<RawFd>,
    /// The engine holding the module the helper loaded before the fork.
    preloaded: Option<Arc<dyn engine::WasmEngine>>,
    /// The wasi-nn backends and models the helper prepared before the fork.
    nn: Option<NnPrepared>,
    /// The module's bytes the helper read, where it preloaded nothing.
    module: Option<Arc<[u8]>>,
    /// What the guest may reach (names resolved by the helper).
    egress: Arc<engine::egress::Egress>,
    /// The guest prepared in `validate` (before the start signal), run in `exec`; both
    /// run in the container's init, on this executor (libcontainer may clone it).
    prepared: Arc<Mutex<Option<Box<dyn PreparedGuest + Send>>>>,
}

impl TriageExecutor {
    /// An executor for `plan`, with what [`preload_module`](super::preload::preload_module)
    /// and [`preload_nn`](super::preload::preload_nn) prepared, and the module's bytes
    /// where nothing was preloaded, and its egress.
    /// Errors inside the container go to `report_fd` too.
    pub fn new(
        plan: WorkloadPlan,
        report_fd: Option<RawFd>,
        preloaded: Option<Arc<dyn engine::WasmEngine>>,
        nn: Option<NnPrepared>,
        module: Option<Arc<[u8]>>,
        egress: Arc<engine::egress::Egress>,
    ) -> Self {
        Self {
            plan,
            report_fd,
            preloaded,
            nn,
            module,
            egress,
            prepared: Arc::default(),
        }
    }

    fn report(&self, message: &str) {
        tracing::error!(container = %self.plan.id, "{message}");
        if let Some(fd) = self.report_fd {
            // SAFETY: the fd is the helper's report pipe, inherited by this process and
            // open until exec (it is close-on-exec); ManuallyDrop keeps it open.
            let file = std::mem::ManuallyDrop::new(unsafe { std::fs::File::from_raw_fd(fd) });
            Reply::Failed {
                message: message.to_owned(),
            }
            .write_to(&*file);
        }
    }

    fn prepare_wasm(&self, wasm: &WasmPlan, spec: &Spec) -> Result<(), String> {
        let module_path = match &wasm.module {
            ModuleSource::File { container_path, .. } => container_path.clone(),
            ModuleSource::OciLayer { digest, .. } => {
                return Err(format!(
                    "container {}: wasm modules in image layers ({digest}) are not supported by this shim yet",
                    self.plan.id
                ))
            }
        };
        let invocation = GuestInvocation {
            memory_limit: memory_limit(spec),
            id: self.plan.id.clone(),
            module_path,
            module_bytes: self.module.clone(),
            export: wasm.export.clone(),
            args: wasm.args.clone(),
            env: wasm.env.clone(),
            // After pivot_root the container's view is this process's view.
            preopens: directory_preopens(&wasm.preopens),
            listen: wasm.listen.clone(),
            metrics_listen: wasm.metrics_listen,
            request_timeout: std::time::Duration::from_millis(wasm.request_timeout_ms),
            cpus: cpu_limit(spec),
            egress: Arc::clone(&self.egress),
            stdio: engine::GuestStdio::Inherit,
            nn: match self.nn.as_deref() {
                Some((backends, models)) => Some(
                    crate::nn::NnHost::load(&self.plan.id, backends.clone(), models)
                        .map_err(|e| e.to_string())?,
                ),
                None => None,
            },
        };
        // From here on this process is the guest's: a terminating signal ends it with
        // 128+signal, also while it still waits for Start (PID 1 would ignore it).
        end_on_terminating_signals();
        let fresh;
        let engine = match &self.preloaded {
            Some(engine) => engine.as_ref(),
            None => {
                fresh = engine::for_plan(&self.plan.id, wasm).map_err(|e| e.to_string())?;
                fresh.as_ref()
            }
        };
        let guest = engine.prepare(&invocation).map_err(|e| e.to_string())?;
        let interrupter = guest.interrupter();
        INTERRUPT_GRACE_MS.store(interrupter.grace().as_millis() as u64, Ordering::SeqCst);
        let _ = INTERRUPT.set(interrupter);
        *self.prepared.lock().unwrap_or_else(|p| p.into_inner()) = Some(guest);
        Ok(())
    }

    fn run_wasm(&self) -> ! {
        let guest = self
            .prepared
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        let Some(guest) = guest else {
            self.report(&format!(
                "container {}: wasm guest was not prepared",
                self.plan.id
            ));
            std::process::exit(1);
        };
        if let Some(micros) = micros_since_start_rpc() {
            tracing::debug!(container = %self.plan.id, micros, "start RPC to guest entry");
        }
        tracing::debug!(container = %self.plan.id, "entering wasm guest");
        GUEST_RUNNING.store(true, Ordering::SeqCst);
        let outcome = guest.run();
        GUEST_RUNNING.store(false, Ordering::SeqCst);
        let status = match outcome {
            Ok(GuestExit::Exited(code)) => code,
            Ok(GuestExit::Interrupted) => {
                let signal = SIGNALLED.load(Ordering::SeqCst);
                tracing::info!(
                    container = %self.plan.id,
                    "wasm guest interrupted by signal {signal} at its next epoch check"
                );
                128 + signal
            }
            Ok(GuestExit::Trapped(message)) => {
                engine::to_stderr(&format!("wasm guest trapped: {message}"));
                // One log line per event, so every line carries the container id.
                let one_line = message
                    .split('\n')
                    .map(str::trim)
                    .collect::<Vec<_>>()
                    .join(" | ");
                tracing::error!(container = %self.plan.id, "wasm guest trapped: {one_line}");
                GuestExit::Trapped(message).status()
            }
            Err(e) => {
                engine::to_stderr(&e.to_string());
                tracing::error!(container = %self.plan.id, "{e}");
                1
            }
        };
        std::process::exit(status)
    }
}

impl Executor for TriageExecutor {
    fn exec(&self, spec: &Spec) -> Result<(), ExecutorError> {
        match &self.plan.kind {
            WorkloadKind::Native => DefaultExecutor {}.exec(spec),
            WorkloadKind::Wasm(_) => self.run_wasm(),
        }
    }

    fn validate(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        let result = self.validate_workload(spec);
        // The shim reads the report pipe to EOF during Create: release it now, before
        // this process waits for the start signal.
        if let Some(fd) = self.report_fd {
            // SAFETY: closes this process's copy of the inherited report pipe only.
            unsafe { libc::close(fd) };
        }
        result
    }
}

impl TriageExecutor {
    fn validate_workload(&self, spec: &Spec) -> Result<(), ExecutorValidationError> {
        match &self.plan.kind {
            WorkloadKind::Native => DefaultExecutor {}.validate(spec).map_err(|e| {
                self.report(&format!("container {}: {e}", self.plan.id));
                e
            }),
            WorkloadKind::Wasm(wasm) => self.prepare_wasm(wasm, spec).map_err(|message| {
                self.report(&message);
                ExecutorValidationError::ArgValidationError(message)
            }),
        }
    }
}

/// The preopens that are directories, as (path here, path for the guest, read-only).
/// Bind-mounted files (CRI's `/etc/hosts`, `/etc/resolv.conf`) cannot be preopened; the
/// guest reaches them through `/`, where they are mounted.
fn directory_preopens(preopens: &[Preopen]) -> Vec<(PathBuf, String, bool)> {
    preopens
        .iter()
        .filter(|p| p.guest_path.is_dir())
        .map(|p| {
            (
                p.guest_path.clone(),
                p.guest_path.display().to_string(),
                p.read_only,
            )
        })
        .collect()
}

/// Microseconds since the shim received Start, from the time it wrote on
/// [`START_CLOCK_FD`](super::wire::START_CLOCK_FD) (`None` if it wrote none).
fn micros_since_start_rpc() -> Option<u64> {
    let mut bytes = [0u8; 8];
    // SAFETY: reads into a local buffer from an fd this process inherited (or a closed
    // number, which fails with EBADF).
    let n = unsafe {
        libc::read(
            super::wire::START_CLOCK_FD,
            bytes.as_mut_ptr().cast(),
            bytes.len(),
        )
    };
    if n != 8 {
        return None;
    }
    let then = u64::from_le_bytes(bytes);
    Some(super::wire::monotonic_ns().saturating_sub(then) / 1000)
}

/// The CPUs `linux.resources.cpu` allows (`quota / period`), when it sets a quota.
pub(super) fn cpu_limit(spec: &Spec) -> Option<f64> {
    let cpu = spec
        .linux()
        .as_ref()?
        .resources()
        .as_ref()?
        .cpu()
        .as_ref()?;
    let quota = cpu.quota().filter(|&q| q > 0)?;
    let period = cpu.period().filter(|&p| p > 0).unwrap_or(100_000);
    Some(quota as f64 / period as f64)
}

/// `linux.resources.memory.limit`, when the spec sets a positive one.
pub(super) fn memory_limit(spec: &Spec) -> Option<u64> {
    let limit = spec
        .linux()
        .as_ref()?
        .resources()
        .as_ref()?
        .memory()
        .as_ref()?
        .limit()?;
    u64::try_from(limit).ok().filter(|&l| l > 0)
}

/// Records the first terminating signal, interrupts running wasm code through the
/// engine's epoch and wakes the watchdog. Only async-signal-safe calls.
extern "C" fn interrupt_guest(signal: libc::c_int) {
    let _ = SIGNALLED.compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst);
    if let Some(interrupt) = INTERRUPT.get() {
        interrupt.interrupt();
    }
    let fd = WATCHDOG_FD.load(Ordering::SeqCst);
    if fd >= 0 {
        // SAFETY: write(2) on our own pipe is async-signal-safe.
        unsafe { libc::write(fd, [1u8].as_ptr().cast(), 1) };
    }
}

/// Ends the process with 128+signal once a signal arrived: at once when no wasm code
/// runs (still waiting for Start), else after the interrupter's grace if the guest has not
/// unwound through its epoch check by then.
fn watch_for_signals(read_fd: RawFd) {
    let mut byte = [0u8; 1];
    // SAFETY: reads our own pipe into a local buffer.
    while unsafe { libc::read(read_fd, byte.as_mut_ptr().cast(), 1) } < 0 {}
    if GUEST_RUNNING.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(
            INTERRUPT_GRACE_MS.load(Ordering::SeqCst),
        ));
    }
    // SAFETY: ends the process without running destructors other threads may be using.
    unsafe { libc::_exit(128 + SIGNALLED.load(Ordering::SeqCst)) }
}

fn end_on_terminating_signals() {
    let mut fds = [-1; 2];
    // SAFETY: creates a close-on-exec pipe into a local array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == 0 {
        WATCHDOG_FD.store(fds[1], Ordering::SeqCst);
        let read_fd = fds[0];
        std::thread::spawn(move || watch_for_signals(read_fd));
    }
    for &signal in TERMINATING_SIGNALS {
        // SAFETY: installs an async-signal-safe handler; the previous disposition is
        // not needed.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = interrupt_guest as *const () as usize;
            libc::sigemptyset(&mut action.sa_mask);
            libc::sigaction(signal, &action, std::ptr::null_mut());
        }
    }
    // SAFETY: an empty set unblocks everything for this thread.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_directories_are_preopened() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("hosts");
        std::fs::write(&file, "127.0.0.1 localhost\n").unwrap();
        let preopens = vec![
            Preopen {
                guest_path: dir.path().to_path_buf(),
                read_only: true,
            },
            Preopen {
                guest_path: file,
                read_only: true,
            },
            Preopen {
                guest_path: dir.path().join("missing"),
                read_only: false,
            },
        ];
        assert_eq!(
            directory_preopens(&preopens),
            vec![(
                dir.path().to_path_buf(),
                dir.path().display().to_string(),
                true
            )]
        );
    }
}
