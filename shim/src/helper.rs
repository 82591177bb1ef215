//! Container helper processes: the shim's one face for running libcontainer single-threaded.
//!
//! The shim's own process has ttrpc, reaper and event threads; `fork` there could leave
//! a child holding locks no thread will release. So each libcontainer call (create,
//! start, exec, pause, resume, kill, delete) runs in a fresh exec of this binary, which
//! has one thread. [`Helpers::container`] is the typed face of that: one method per
//! verb. What travels between the two halves (fd numbers, request, reply) is
//! `triage_runtime::container::wire`; this module spawns, feeds and waits.
//!
//! What a helper gets of the node, since a Wasm container's init is a fork of it that never
//! execs: its executable through a read-only mount (its `/proc/<pid>/exe` cannot be
//! reopened for writing), an allow-listed environment, the request on a pipe (not argv),
//! and a log pipe the shim relays (not the shim's log FIFO).

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::fcntl::{fcntl, FcntlArg};
use triage_oci::WorkloadPlan;
use triage_runtime::container::{
    self,
    wire::{
        PlanFileFds, Reply, Request, HELPER_PATH, LOG_FD, PASSED_ENVIRONMENT, REPORT_FD,
        REQUEST_FD, START_CLOCK_FD,
    },
};
use triage_runtime::engine::cache::CacheSettings;
use triage_runtime::stdio::ContainerStdio;

use crate::log_relay::LogRelay;
use crate::reaper::ExitRegistry;

pub use triage_runtime::container::wire::HELPER_ARG;

/// How long any helper other than a create may take: the node profile's
/// `[helpers] timeout`, read at each call like the rest of the profile (its default where
/// the profile cannot be read). A create's deadline is `[helpers] create_timeout`.
fn verb_deadline() -> Duration {
    let seconds = crate::profile::load()
        .map(|profile| profile.helper_timeout_seconds)
        .unwrap_or(triage_oci::node_profile::DEFAULT_HELPER_TIMEOUT_SECONDS);
    Duration::from_secs(seconds)
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
    /// The create helper was killed (SIGKILL) while it worked for the container, which its
    /// limits bound.
    #[error("container {id}: create helper was killed (SIGKILL) without a reply: the node's work for the container (compiling its module, its snapshot's init, preparing its models) runs in the container's cgroup, within its limits; a memory limit too small for it ends it so (see the shim log)")]
    KilledWorking {
        /// Container id.
        id: String,
    },
    /// The helper did not answer in time and was killed.
    #[error("container {id}: {verb} did not finish within {seconds} s; its helper was killed")]
    Deadline {
        /// Container id.
        id: String,
        /// The operation.
        verb: &'static str,
        /// The deadline.
        seconds: u64,
    },
}

/// The shim binary, as helpers are executed from it.
enum Executable {
    /// An `O_PATH` descriptor through a read-only copy of its mount.
    ReadOnly(OwnedFd),
    /// `/proc/self/exe`, where no read-only mount could be made (logged).
    Plain,
}

impl Executable {
    fn path(&self) -> String {
        match self {
            Self::ReadOnly(fd) => format!("/proc/self/fd/{}", fd.as_raw_fd()),
            Self::Plain => "/proc/self/exe".to_owned(),
        }
    }

    /// This executable with a descriptor numbered at least `floor` (a duplicate where
    /// its own is lower), so that a child's fd set-up cannot replace it before the exec.
    fn above(&self, floor: i32) -> io::Result<Executable> {
        match self {
            Self::ReadOnly(fd) => Ok(Self::ReadOnly(dup_above(fd, floor)?)),
            Self::Plain => Ok(Self::Plain),
        }
    }
}

/// Runs helpers for the containers of one shim.
pub struct Helpers {
    exe: Executable,
    log: Option<File>,
    exits: Arc<ExitRegistry>,
    /// Per container, the log relays still held by a process a helper started.
    lingering:
        std::sync::Mutex<std::collections::HashMap<String, Vec<std::thread::JoinHandle<()>>>>,
}

impl Helpers {
    /// Helpers whose logs go to `log` (relayed) and whose exits `exits` reports.
    pub fn new(log: Option<File>, exits: Arc<ExitRegistry>) -> Self {
        let exe = match triage_runtime::read_only::executable(Path::new("/proc/self/exe")) {
            Ok(fd) => Executable::ReadOnly(fd),
            Err(e) => {
                tracing::warn!(
                    "cannot open the shim binary through a read-only mount ({e}); helpers run from /proc/self/exe"
                );
                Executable::Plain
            }
        };
        Self {
            exe,
            log,
            exits,
            lingering: Default::default(),
        }
    }

    /// Waits (at most `limit`) until the log lines of container `id`'s exited processes
    /// have reached the shim's log: call once its init has exited, before it is deleted.
    pub fn drain_logs(&self, id: &str, limit: Duration) {
        let threads = self
            .lingering
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
            .unwrap_or_default();
        crate::log_relay::drain(threads, limit);
    }

    /// The helper-run face of container `id` in `bundle`.
    pub fn container<'a>(&'a self, id: &'a str, bundle: &'a Path) -> HelperContainer<'a> {
        HelperContainer {
            helpers: self,
            id,
            bundle,
        }
    }
}

/// One container, each verb run by a helper.
pub struct HelperContainer<'a> {
    helpers: &'a Helpers,
    id: &'a str,
    bundle: &'a Path,
}

/// What a create needs besides the container's id and bundle.
pub struct CreateRequest {
    /// The decided plan.
    pub plan: WorkloadPlan,
    /// Where libcontainer sends a terminal's master.
    pub console_socket: Option<std::path::PathBuf>,
    /// The node's artifact cache.
    pub cache: CacheSettings,
    /// The node's wasi-nn settings.
    pub nn: triage_oci::NnSettings,
    /// The container's stdio (none with a terminal).
    pub stdio: Option<ContainerStdio>,
    /// The read end of the Start clock pipe.
    pub start_clock: OwnedFd,
    /// How long the helper may take before it (and what it started) is killed.
    pub deadline: Duration,
    /// The container files the decision opened.
    pub files: triage_oci::PlanFiles,
    /// The node's bounds on reading them.
    pub limits: triage_oci::FileLimits,
}

impl HelperContainer<'_> {
    /// Creates the container; returns its init's pid. A create that fails, or outlives
    /// its deadline, leaves no container behind.
    pub fn create(&self, create: CreateRequest) -> Result<i32, HelperError> {
        // The container files the decision opened go to the helper as they are: it
        // reads them through these descriptors, never by path.
        let (numbering, passed) = PlanFileFds::numbering(&create.files);
        let request = Request::Create {
            plan: Box::new(create.plan),
            bundle: self.bundle.to_path_buf(),
            console_socket: create.console_socket,
            cache: create.cache,
            nn: create.nn,
            files: numbering,
            limits: create.limits,
        };
        let result = self.call(
            &request,
            create.stdio,
            Some(create.start_clock),
            &passed,
            create.deadline,
        );
        if let Err(failed) = &result {
            // Whatever the helper made goes now, from outside the container's cgroup (a
            // stuck or killed helper may have forked the init already): the one rollback.
            if let Err(e) = self.delete() {
                tracing::warn!(
                    "container {}: removing it after a failed create: {e}",
                    self.id
                );
            }
            if let HelperError::Silent { status: 137, .. } = failed {
                return Err(HelperError::KilledWorking {
                    id: self.id.to_owned(),
                });
            }
        }
        result?.ok_or_else(|| {
            HelperError::Failed(format!(
                "container {}: create reported no init pid",
                self.id
            ))
        })
    }

    /// Starts a created container whose spec has poststart hooks (they run as processes).
    pub fn start(&self) -> Result<(), HelperError> {
        self.simple(Request::Start {
            id: self.id.to_owned(),
            bundle: self.bundle.to_path_buf(),
        })
    }

    /// Runs the process of the runtime-spec `Process` file `process`; returns its pid.
    pub fn exec(
        &self,
        process: &Path,
        console_socket: Option<&Path>,
        stdio: Option<ContainerStdio>,
    ) -> Result<i32, HelperError> {
        let request = Request::Exec {
            id: self.id.to_owned(),
            bundle: self.bundle.to_path_buf(),
            process: process.to_path_buf(),
            console_socket: console_socket.map(Path::to_path_buf),
        };
        self.call(&request, stdio, None, &[], verb_deadline())?
            .ok_or_else(|| {
                HelperError::Failed(format!("container {}: exec reported no pid", self.id))
            })
    }

    /// Freezes the container.
    pub fn pause(&self) -> Result<(), HelperError> {
        self.simple(Request::Pause {
            id: self.id.to_owned(),
            bundle: self.bundle.to_path_buf(),
        })
    }

    /// Thaws the container.
    pub fn resume(&self) -> Result<(), HelperError> {
        self.simple(Request::Resume {
            id: self.id.to_owned(),
            bundle: self.bundle.to_path_buf(),
        })
    }

    /// Sends `signal` to every process of the container.
    pub fn kill_all(&self, signal: i32) -> Result<(), HelperError> {
        self.simple(Request::KillAll {
            id: self.id.to_owned(),
            bundle: self.bundle.to_path_buf(),
            signal,
        })
    }

    /// Removes what is left of the container: processes, cgroup, state.
    pub fn delete(&self) -> Result<(), HelperError> {
        self.simple(Request::Delete {
            id: self.id.to_owned(),
            bundle: self.bundle.to_path_buf(),
        })
    }

    fn simple(&self, request: Request) -> Result<(), HelperError> {
        self.call(&request, None, None, &[], verb_deadline())
            .map(drop)
    }

    /// Runs one helper to completion: spawns it with `files` at the fd numbers paired with
    /// them, writes the request to its pipe and reads its reply, killing it at `deadline`.
    fn call(
        &self,
        request: &Request,
        stdio: Option<ContainerStdio>,
        start_clock: Option<OwnedFd>,
        files: &[(i32, &File)],
        deadline: Duration,
    ) -> Result<Option<i32>, HelperError> {
        let id = request.id().to_owned();
        let verb = request.verb();
        let spawn_err = |source| HelperError::Spawn {
            id: id.clone(),
            verb,
            source,
        };
        let cloexec = nix::fcntl::OFlag::O_CLOEXEC;
        let (report_read, report_write) =
            nix::unistd::pipe2(cloexec).map_err(|e| spawn_err(e.into()))?;
        let (request_read, request_write) =
            nix::unistd::pipe2(cloexec).map_err(|e| spawn_err(e.into()))?;
        let relay = match &self.helpers.log {
            Some(sink) => Some(LogRelay::spawn(&id, sink).map_err(spawn_err)?),
            None => None,
        };
        // Park the child's fds above the range dup2 will write, so no source is clobbered.
        let floor = files
            .iter()
            .map(|(target, _)| *target)
            .chain([REPORT_FD, LOG_FD, START_CLOCK_FD, REQUEST_FD])
            .max()
            .unwrap_or(0)
            + 1;
        let dup_high = |fd: &dyn AsRawFd| dup_above(fd, floor);
        let mut parked = vec![
            (REPORT_FD, Some(dup_high(&report_write).map_err(spawn_err)?)),
            (
                REQUEST_FD,
                Some(dup_high(&request_read).map_err(spawn_err)?),
            ),
            (
                LOG_FD,
                relay
                    .as_ref()
                    .map(|r| dup_high(r.writer()))
                    .transpose()
                    .map_err(spawn_err)?,
            ),
            (
                START_CLOCK_FD,
                start_clock
                    .as_ref()
                    .map(|fd| dup_high(fd))
                    .transpose()
                    .map_err(spawn_err)?,
            ),
        ];
        for (target, file) in files {
            parked.push((*target, Some(dup_high(*file).map_err(spawn_err)?)));
        }
        drop((report_write, request_read));

        // The binary is exec'd through its descriptor's number, which dup2 must not reuse.
        let exe = self.helpers.exe.above(floor).map_err(spawn_err)?;
        let mut command = Command::new(exe.path());
        command
            .arg0("containerd-shim-triage-v1")
            // The verb and container id (no secret) say on the node's process list what
            // the helper does; the request itself comes through its pipe.
            .args([HELPER_ARG, verb, id.as_str()])
            .env_clear()
            .env("PATH", HELPER_PATH)
            .envs(
                PASSED_ENVIRONMENT
                    .iter()
                    .filter_map(|key| std::env::var_os(key).map(|value| (key, value))),
            )
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
        let moves: Vec<(i32, i32)> = parked
            .iter()
            .filter_map(|(target, fd)| fd.as_ref().map(|fd| (fd.as_raw_fd(), *target)))
            .collect();
        // SAFETY: only setpgid and dup2, which are async-signal-safe, run between fork
        // and exec.
        unsafe {
            command.pre_exec(move || {
                // Its own process group: a helper killed at its deadline takes the hooks
                // and libcontainer processes it started with it (a container's init makes
                // a session of its own).
                if libc::setpgid(0, 0) < 0 {
                    return Err(io::Error::last_os_error());
                }
                for &(from, to) in &moves {
                    if libc::dup2(from, to) < 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let child = command.spawn().map_err(spawn_err)?;
        // Our copies must close, or the pipes never reach EOF.
        drop(command);
        drop(parked);
        drop(start_clock);
        let pid = child.id() as i32;

        // The request may be larger than a pipe holds: the helper reads it to EOF first.
        let mut request_write = File::from(request_write);
        let sent = request_write.write_all(&request.encode());
        drop(request_write);
        if let Err(e) = sent {
            tracing::warn!("container {id}: sending the {verb} request: {e}");
        }

        let reply = match read_reply(report_read, deadline) {
            Some(reply) => reply,
            None => {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pid),
                    nix::sys::signal::Signal::SIGKILL,
                );
                self.helpers.exits.wait(pid);
                tracing::error!(
                    "container {id}: {verb} helper killed after {} s without finishing",
                    deadline.as_secs()
                );
                return Err(HelperError::Deadline {
                    id,
                    verb,
                    seconds: deadline.as_secs(),
                });
            }
        };
        let exit = self.helpers.exits.wait(pid);
        if let Some(lingering) = relay.and_then(LogRelay::settle) {
            let mut all = self
                .helpers
                .lingering
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            let mine = all.entry(id.clone()).or_default();
            // Relays that ended since (an exec'd process's, once it exec'd) are let go, so
            // a container exec'd into every few seconds (probes) keeps none of them.
            mine.retain(|relay| !relay.is_finished());
            mine.push(lingering);
        }
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
}

/// Reads the helper's replies to end of file, or gives up at `deadline` (`None`).
fn read_reply(report: OwnedFd, deadline: Duration) -> Option<Option<Reply>> {
    match triage_runtime::pipe::read_to_end_within(File::from(report), deadline) {
        Ok(bytes) => Some(Reply::read_from(&bytes[..])),
        Err(e) if e.kind() == io::ErrorKind::TimedOut => None,
        Err(_) => Some(None),
    }
}

/// A close-on-exec duplicate of `fd` numbered at least `floor`.
fn dup_above(fd: &dyn AsRawFd, floor: i32) -> io::Result<OwnedFd> {
    let new = fcntl(fd.as_raw_fd(), FcntlArg::F_DUPFD_CLOEXEC(floor))?;
    // SAFETY: fcntl returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(new) })
}

/// The helper's `main`: reads one request from its pipe, runs it and reports on fd 3.
/// Returns the exit status.
pub fn main() -> i32 {
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

    // SAFETY: REQUEST_FD is the request pipe the shim set up; read whole, then closed
    // (dropped here), so the container's init never holds it.
    let request = Request::read_from(unsafe { File::from_raw_fd(REQUEST_FD) });
    let request = match request {
        Ok(r) => r,
        Err(e) => {
            let message = format!("helper: {e}");
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
        Request::Create {
            plan,
            bundle,
            console_socket,
            cache,
            nn,
            files,
            limits,
        } => container::create(
            plan,
            bundle,
            Some(REPORT_FD),
            console_socket.as_deref(),
            &container::NodeSettings {
                cache,
                nn,
                files: limits,
            },
            // SAFETY: the shim numbered and passed these fds for this request; they are
            // taken once, here.
            unsafe { files.take(plan) },
        )
        .map(Some),
        Request::Start { id, bundle } => container::start(id, bundle).map(|()| None),
        Request::Exec {
            id,
            bundle,
            process,
            console_socket,
        } => container::exec(id, bundle, process, console_socket.as_deref()).map(Some),
        Request::Pause { id, bundle } => container::pause(id, bundle).map(|()| None),
        Request::Resume { id, bundle } => container::resume(id, bundle).map(|()| None),
        Request::KillAll { id, bundle, signal } => {
            container::kill_all(id, bundle, *signal).map(|()| None)
        }
        Request::Delete { id, bundle } => container::delete(id, bundle).map(|()| None),
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
