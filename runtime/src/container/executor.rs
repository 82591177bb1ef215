//! The workload step inside the container: exec the native entrypoint or run the Wasm guest.

use std::os::fd::{FromRawFd, RawFd};
use std::sync::Mutex;

use libcontainer::oci_spec::runtime::Spec;
use libcontainer::workload::default::DefaultExecutor;
use libcontainer::workload::{Executor, ExecutorError, ExecutorValidationError};
use std::path::PathBuf;

use triage_oci::{ModuleSource, Preopen, WasmPlan, WorkloadKind, WorkloadPlan};

use super::reply::Reply;
use crate::engine::{self, GuestExit, GuestInvocation, PreparedGuest};

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

/// The guest prepared in `validate` (before the start signal), run in `exec`.
/// One per init process: this code runs in the container's own process.
static PREPARED: Mutex<Option<Box<dyn PreparedGuest + Send>>> = Mutex::new(None);

/// libcontainer's executor for Triage: native workloads exec as crun/runc would, Wasm
/// workloads run in the engine inside the container's namespaces, cgroup and root.
#[derive(Clone)]
pub struct TriageExecutor {
    plan: WorkloadPlan,
    report_fd: Option<RawFd>,
}

impl TriageExecutor {
    /// An executor for `plan`. Errors inside the container go to `report_fd` too.
    pub fn new(plan: WorkloadPlan, report_fd: Option<RawFd>) -> Self {
        Self { plan, report_fd }
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

    fn prepare_wasm(&self, wasm: &WasmPlan) -> Result<(), String> {
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
            id: self.plan.id.clone(),
            module_path,
            export: wasm.export.clone(),
            args: wasm.args.clone(),
            env: wasm.env.clone(),
            // After pivot_root the container's view is this process's view.
            preopens: directory_preopens(&wasm.preopens),
        };
        // From here on this process is the guest's: a terminating signal ends it with
        // 128+signal, also while it still waits for Start (PID 1 would ignore it).
        exit_on_terminating_signals();
        let engine = engine::default_engine(&self.plan.id).map_err(|e| e.to_string())?;
        let guest = engine.prepare(&invocation).map_err(|e| e.to_string())?;
        *PREPARED.lock().unwrap_or_else(|p| p.into_inner()) = Some(guest);
        Ok(())
    }

    fn run_wasm(&self) -> ! {
        let guest = PREPARED.lock().unwrap_or_else(|p| p.into_inner()).take();
        let Some(guest) = guest else {
            self.report(&format!(
                "container {}: wasm guest was not prepared",
                self.plan.id
            ));
            std::process::exit(1);
        };
        tracing::debug!(container = %self.plan.id, "entering wasm guest");
        let status = match guest.run() {
            Ok(GuestExit::Exited(code)) => code,
            Ok(GuestExit::Trapped(message)) => {
                eprintln!("wasm guest trapped: {message}");
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
                eprintln!("{e}");
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
            WorkloadKind::Wasm(wasm) => self.prepare_wasm(wasm).map_err(|message| {
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

extern "C" fn exit_with_signal_status(signal: libc::c_int) {
    // SAFETY: _exit is async-signal-safe.
    unsafe { libc::_exit(128 + signal) }
}

fn exit_on_terminating_signals() {
    for &signal in TERMINATING_SIGNALS {
        // SAFETY: installs an async-signal-safe handler; the previous disposition is
        // not needed.
        unsafe {
            let mut action: libc::sigaction = std::mem::zeroed();
            action.sa_sigaction = exit_with_signal_status as *const () as usize;
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
