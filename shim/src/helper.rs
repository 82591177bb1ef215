//! Container helper processes: the shim execs itself to run libcontainer single-threaded.
//!
//! The shim's own process has ttrpc, reaper and event threads; `fork` there could leave
//! a child holding locks no thread will release. So each libcontainer call (create,
//! start, delete) runs in a fresh exec of this binary, which has one thread. The helper
//! gets the container's stdio as fds 0-2, a report pipe as fd 3 and the shim log as
//! fd 4, and answers with one [`Reply`] line.

use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::fcntl::{fcntl, FcntlArg};
use serde::{Deserialize, Serialize};
use triage_oci::WorkloadPlan;
use triage_runtime::container::{
    self,
    reply::{Reply, LOG_FD, REPORT_FD, START_CLOCK_FD},
};
use triage_runtime::engine::cache::CacheSettings;
use triage_runtime::stdio::ContainerStdio;

use crate::reaper::ExitRegistry;

/// argv[1] that turns this binary into a helper.
pub const HELPER_ARG: &str = "__triage-container";

/// What a helper is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum HelperRequest {
    /// Create the container of `plan` in `bundle`.
    Create {
        /// The decided plan.
        plan: Box<WorkloadPlan>,
        /// Bundle directory.
        bundle: PathBuf,
        /// Where to send the terminal's master, for a container with a terminal.
        console_socket: Option<PathBuf>,
        /// The node's artifact cache.
        cache: CacheSettings,
        /// The node's wasi-nn backends and models (`[nn]` of the node profile).
        nn: triage_oci::NnSettings,
    },
    /// Start a created container.
    Start {
        /// Container id.
        id: String,
        /// Bundle directory.
        bundle: PathBuf,
    },
    /// Run a process (runtime-spec `Process` JSON in a file) in a running container.
    Exec {
        /// Container id.
        id: String,
        /// Bundle directory.
        bundle: PathBuf,
        /// The process file.
        process: PathBuf,
        /// Where to send the terminal's master, for a process with a terminal.
        console_socket: Option<PathBuf>,
    },
    /// Freeze a running container.
    Pause {
        /// Container id.
        id: String,
        /// Bundle directory.
        bundle: PathBuf,
    },
    /// Thaw a paused container.
    Resume {
        /// Container id.
        id: String,
        /// Bundle directory.
        bundle: PathBuf,
    },
    /// Signal every process of a container (`kill --all`).
    KillAll {
        /// Container id.
        id: String,
        /// Bundle directory.
        bundle: PathBuf,
        /// Signal number.
        signal: i32,
    },
    /// Remove a container's remains (processes, cgroup, state).
    Delete {
        /// Container id.
        id: String,
        /// Bundle directory.
        bundle: PathBuf,
    },
}

impl HelperRequest {
    fn id(&self) -> &str {
        match self {
            Self::Create { plan, .. } => &plan.id,
            Self::Start { id, .. }
            | Self::Exec { id, .. }
            | Self::Pause { id, .. }
            | Self::Resume { id, .. }
            | Self::KillAll { id, .. }
            | Self::Delete { id, .. } => id,
        }
    }

    fn verb(&self) -> &'static str {
        match self {
            Self::Create { .. } => "create",
            Self::Start { .. } => "start",
            Self::Exec { .. } => "exec",
            Self::Pause { .. } => "pause",
            Self::Resume { .. } => "resume",
            Self::KillAll { .. } => "kill",
            Self::Delete { .. } => "delete",
        }
    }
}

/// Why a helper call failed.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    /// The helper could not be spawned.
    #[error("container {id}: cannot spawn {verb} helper: {source}")]
    Spawn {
        /// Container id.
        id: String,
        /// The operation.
        verb: &'static str,
        /// The cause.
        source: io::Error,
    },
    /// The helper (or the container's init before it was ready) reported a failure.
    #[error("{0}")]
    Failed(String),
    /// The helper ended without a reply.
    #[error("container {id}: {verb} helper exited with status {status} without a reply (see the shim log)")]
    Silent {
        /// Container id.
        id: String,
        /// The operation.
        verb: &'static str,
        /// Its exit status.
        status: u32,
    },
}

/// Runs one helper to completion and returns the init pid it reported (after a create).
pub fn call(
    request: &HelperRequest,
    stdio: Option<ContainerStdio>,
    log: Option<&File>,
    exits: &ExitRegistry,
) -> Result<Option<i32>, HelperError> {
    call_with_clock(request, stdio, None, log, exits)
}

/// [`call`], giving the helper (and the init a create forks) `start_clock` as its
/// [`START_CLOCK_FD`].
pub fn call_with_clock(
    request: &HelperRequest,
    stdio: Option<ContainerStdio>,
    start_clock: Option<OwnedFd>,
    log: Option<&File>,
    exits: &ExitRegistry,
) -> Result<Option<i32>, HelperError> {
    let id = request.id().to_owned();
    let verb = request.verb();
    let spawn_err = |source| HelperError::Spawn {
        id: id.clone(),
        verb,
        source,
    };
    let json = serde_json::to_string(request).map_err(|e| spawn_err(io::Error::other(e)))?;
    let (report_read, pipe_write) =
        nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| spawn_err(e.into()))?;
    // Park the child's fds above the range dup2 will write, so no source is clobbered.
    let report_write = dup_high(&pipe_write).map_err(spawn_err)?;
    drop(pipe_write);
    let log = log.map(dup_high).transpose().map_err(spawn_err)?;
    let start_clock = start_clock
        .as_ref()
        .map(dup_high)
        .transpose()
        .map_err(spawn_err)?;

    let mut command = Command::new("/proc/self/exe");
    command
        .arg(HELPER_ARG)
        .arg(json)
        .envs(triage_runtime::nn::BACKEND_ENVIRONMENT.iter().copied());
    match stdio {
        Some(s) => command
            .stdin(Stdio::from(s.stdin))
            .stdout(Stdio::from(s.stdout))
            .stderr(Stdio::from(s.stderr)),
        None => command
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null()),
    };
    let report_raw = report_write.as_raw_fd();
    let log_raw = log.as_ref().map(|l| l.as_raw_fd());
    let clock_raw = start_clock.as_ref().map(|c| c.as_raw_fd());
    // SAFETY: only dup2, which is async-signal-safe, runs between fork and exec.
    unsafe {
        command.pre_exec(move || {
            if libc::dup2(report_raw, REPORT_FD) < 0 {
                return Err(io::Error::last_os_error());
            }
            if let Some(log) = log_raw {
                if libc::dup2(log, LOG_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            if let Some(clock) = clock_raw {
                if libc::dup2(clock, START_CLOCK_FD) < 0 {
                    return Err(io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    let child = command.spawn().map_err(spawn_err)?;
    // Our copies must close, or the pipe never reaches EOF.
    drop(command);
    drop(report_write);
    drop(log);
    drop(start_clock);

    let reply = Reply::read_from(File::from(report_read));
    let exit = exits.wait(child.id() as i32);
    match reply {
        Some(Reply::Done { pid }) if exit.status == 0 => Ok(pid),
        Some(Reply::Failed { message }) => Err(HelperError::Failed(message)),
        _ => Err(HelperError::Silent {
            id,
            verb,
            status: exit.status,
        }),
    }
}

fn dup_high(fd: &impl AsRawFd) -> io::Result<OwnedFd> {
    let new = fcntl(fd.as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(10))?;
    // SAFETY: fcntl returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// The helper's `main`: runs one request and reports on fd 3. Returns the exit status.
pub fn main(args: &[String]) -> i32 {
    // Rust ignores SIGPIPE at start-up; a native workload must get the default back.
    // SAFETY: restoring a default disposition in a single-threaded process.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let log =
        (fcntl(LOG_FD, FcntlArg::F_GETFD).is_ok()).then(|| unsafe { File::from_raw_fd(LOG_FD) });
    crate::logging::init(log, std::env::var_os(crate::logging::LOG_ENV).is_some());
    // SAFETY: fd 3 is the report pipe the shim set up for this process.
    let report = unsafe { File::from_raw_fd(REPORT_FD) };
    // Keep the report pipe and the start clock out of the container payload after exec.
    let _ = fcntl(REPORT_FD, FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC));
    let _ = fcntl(
        START_CLOCK_FD,
        FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    );

    let request: HelperRequest = match args.first().map(|a| serde_json::from_str(a)) {
        Some(Ok(r)) => r,
        other => {
            let message = format!("helper: bad request {other:?}");
            Reply::Failed { message }.write_to(&report);
            return 2;
        }
    };
    // The container's init process is a fork of this one: a panic there (exit 101)
    // must reach the shim log, not only a stderr nobody may be reading.
    let default_hook = std::panic::take_hook();
    let id = request.id().to_owned();
    std::panic::set_hook(Box::new(move |info| {
        tracing::error!(
            "container {id}: panic in pid {}: {info}",
            std::process::id()
        );
        default_hook(info);
    }));
    let span = tracing::info_span!("helper", id = %request.id(), verb = request.verb());
    let _guard = span.enter();
    let result = match &request {
        HelperRequest::Create {
            plan,
            bundle,
            console_socket,
            cache,
            nn,
        } => container::create(
            plan,
            bundle,
            Some(REPORT_FD),
            console_socket.as_deref(),
            cache,
            nn,
        )
        .map(Some),
        HelperRequest::Start { id, bundle } => container::start(id, bundle).map(|()| None),
        HelperRequest::Exec {
            id,
            bundle,
            process,
            console_socket,
        } => container::exec(id, bundle, process, console_socket.as_deref()).map(Some),
        HelperRequest::Pause { id, bundle } => container::pause(id, bundle).map(|()| None),
        HelperRequest::Resume { id, bundle } => container::resume(id, bundle).map(|()| None),
        HelperRequest::KillAll { id, bundle, signal } => {
            container::kill_all(id, bundle, *signal).map(|()| None)
        }
        HelperRequest::Delete { id, bundle } => container::delete(id, bundle).map(|()| None),
    };
    match result {
        Ok(pid) => {
            tracing::debug!(?pid, "done");
            Reply::Done { pid }.write_to(&report);
            0
        }
        Err(e) => {
            tracing::error!("{e}");
            Reply::Failed {
                message: e.to_string(),
            }
            .write_to(&report);
            1
        }
    }
}
