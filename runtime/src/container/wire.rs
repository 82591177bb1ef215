//! The helper protocol's wire contract: its fds, the request read from a pipe, the replies.
//!
//! The shim execs itself (`HELPER_ARG VERB ID`) for every libcontainer call. The
//! request, which holds the container's plan and so its environment, arrives on
//! [`REQUEST_FD`] (a pipe), so no secret shows on the node's process list and no size of
//! environment meets the kernel's argument limits.

use std::io::{BufRead, BufReader, Read, Write};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use triage_oci::WorkloadPlan;

use crate::engine::cache::CacheSettings;

/// `argv[1]` that turns the shim binary into a helper.
pub const HELPER_ARG: &str = "__triage-container";

/// The fd number on which a helper process reports back to the shim.
pub const REPORT_FD: i32 = 3;
/// The fd number on which a helper process (and the init a create forks) writes its log:
/// a pipe the shim relays, line by line and rate-limited, into its own log.
pub const LOG_FD: i32 = 4;
/// The fd number on which a create helper, and the container's init it forks, find the
/// read end of a pipe: the shim writes the `CLOCK_MONOTONIC` time of the Start RPC there
/// (nanoseconds, 8 bytes little-endian), so the init can log Start → guest entry.
pub const START_CLOCK_FD: i32 = 5;
/// The fd number on which a helper reads its [`Request`] (JSON, to end of file).
pub const REQUEST_FD: i32 = 6;

/// The fd number of the first container file a create helper gets: the files the shim's
/// decision opened ([`triage_oci::PlanFiles`]) follow from here, numbered as
/// [`PlanFileFds`] says. The helper reads them through these descriptors and never
/// resolves their paths again.
pub const FIRST_FILE_FD: i32 = 7;

/// Where a create helper finds the plan's container files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlanFileFds {
    /// The Wasm module's fd, for a plan whose module is a file of the container.
    pub module: Option<i32>,
    /// The fds of the container's wasi-nn models, in the plan's `nn_preload` order.
    pub models: Vec<i32>,
}

impl PlanFileFds {
    /// The numbers for `files`, from [`FIRST_FILE_FD`] up (the module first, then the
    /// models), and each file with its number, for the shim to pass.
    pub fn numbering(files: &triage_oci::PlanFiles) -> (Self, Vec<(i32, &std::fs::File)>) {
        let module = files.module.as_deref().into_iter();
        let passed: Vec<(i32, &std::fs::File)> = module
            .chain(&files.models)
            .zip(FIRST_FILE_FD..)
            .map(|(opened, fd)| (fd, &opened.file))
            .collect();
        let fds = Self {
            module: files.module.as_ref().map(|_| FIRST_FILE_FD),
            models: passed
                .iter()
                .skip(usize::from(files.module.is_some()))
                .map(|&(fd, _)| fd)
                .collect(),
        };
        (fds, passed)
    }

    /// Takes the files the shim passed on these fds, for `plan`.
    ///
    /// # Safety
    /// Call once, in a helper whose fds are as the shim numbered them: each becomes
    /// owned by the returned files.
    pub unsafe fn take(&self, plan: &WorkloadPlan) -> triage_oci::PlanFiles {
        use std::os::fd::FromRawFd;
        let wasm = plan.wasm();
        let opened = |fd: i32, path: PathBuf| {
            // SAFETY: the caller guarantees the fd is this helper's, passed by the shim.
            let file = unsafe { std::fs::File::from_raw_fd(fd) };
            // Not for the hooks this helper runs, nor for a native init's exec.
            // SAFETY: sets a flag on a descriptor this function now owns.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            let size = file.metadata().map(|m| m.len()).unwrap_or(0);
            triage_oci::container_fs::ContainerFile {
                file,
                container_path: path,
                size,
            }
        };
        let module_path = match wasm.map(|w| &w.module) {
            Some(triage_oci::ModuleSource::File { container_path, .. }) => container_path.clone(),
            _ => PathBuf::new(),
        };
        let model_paths: Vec<PathBuf> = wasm
            .map(|w| {
                w.nn_preload
                    .iter()
                    .map(|preload| preload.path.clone())
                    .collect()
            })
            .unwrap_or_default();
        triage_oci::PlanFiles {
            module: self
                .module
                .map(|fd| std::sync::Arc::new(opened(fd, module_path))),
            models: self
                .models
                .iter()
                .enumerate()
                .map(|(i, &fd)| opened(fd, model_paths.get(i).cloned().unwrap_or_default()))
                .collect(),
        }
    }
}

/// The largest request a helper reads: a plan with every variable and argument a spec
/// may carry fits many times over; beyond it the request is refused, not read on.
pub const MAX_REQUEST_BYTES: u64 = 64 << 20;

/// The environment variables a helper (and so a Wasm container's init, which never
/// execs) gets from the shim, when the shim has them; nothing else of the shim's (that is,
/// containerd's) environment reaches a container.
pub const PASSED_ENVIRONMENT: &[&str] =
    &["TRIAGE_LOG", "TRIAGE_ONNXRUNTIME", "WASMEDGE_PLUGIN_PATH"];

/// The `PATH` a helper runs with (hooks name their programs by absolute path).
pub const HELPER_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What a helper is asked to do.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum Request {
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
        /// Where the plan's container files are.
        files: PlanFileFds,
        /// The node's bounds on reading them (`[files]` of the node profile).
        limits: triage_oci::FileLimits,
    },
    /// Start a created container (a spec with poststart hooks).
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

impl Request {
    /// The container the request is about.
    pub fn id(&self) -> &str {
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

    /// The operation, for logs and errors.
    pub fn verb(&self) -> &'static str {
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

    /// The request as it goes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a request always encodes")
    }

    /// Reads one request to end of file, at most [`MAX_REQUEST_BYTES`].
    pub fn read_from(input: impl Read) -> Result<Request, String> {
        let mut bytes = Vec::new();
        input
            .take(MAX_REQUEST_BYTES + 1)
            .read_to_end(&mut bytes)
            .map_err(|e| format!("reading the request: {e}"))?;
        if bytes.len() as u64 > MAX_REQUEST_BYTES {
            return Err(format!(
                "the request is larger than {MAX_REQUEST_BYTES} bytes"
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("malformed request: {e}"))
    }
}

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process on the host.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// One report line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The operation succeeded; `pid` is the container's init process after a create.
    Done {
        /// Init pid, after a create.
        pid: Option<i32>,
    },
    /// It failed; the message names the container and the cause.
    Failed {
        /// What went wrong.
        message: String,
    },
}

impl Reply {
    /// Writes this reply as one line. Errors are ignored: the reader treats silence as
    /// a failure of its own.
    pub fn write_to(&self, mut out: impl Write) {
        if let Ok(mut line) = serde_json::to_vec(self) {
            line.push(b'\n');
            let _ = out.write_all(&line);
        }
    }

    /// Reads replies until EOF. The first failure wins (it comes from deepest inside),
    /// then a success; `None` if the helper said nothing.
    pub fn read_from(input: impl Read) -> Option<Reply> {
        let mut done = None;
        for line in BufReader::new(input).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<Reply>(&line) {
                Ok(failed @ Reply::Failed { .. }) => return Some(failed),
                Ok(ok) => done = Some(ok),
                Err(_) => continue,
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_of_any_environment_size_round_trips() {
        let request = Request::KillAll {
            id: "c1".into(),
            bundle: "/run/b".into(),
            signal: 9,
        };
        let back = Request::read_from(&request.encode()[..]).unwrap();
        assert_eq!(back.id(), "c1");
        assert_eq!(back.verb(), "kill");
        let oversized = vec![b' '; MAX_REQUEST_BYTES as usize + 1];
        assert!(Request::read_from(&oversized[..])
            .unwrap_err()
            .contains("larger than"));
        assert!(Request::read_from(&b"{"[..])
            .unwrap_err()
            .starts_with("malformed request"));
    }

    #[test]
    fn first_failure_wins() {
        let mut buf = Vec::new();
        Reply::Failed {
            message: "inner".into(),
        }
        .write_to(&mut buf);
        Reply::Failed {
            message: "outer".into(),
        }
        .write_to(&mut buf);
        assert_eq!(
            Reply::read_from(&buf[..]),
            Some(Reply::Failed {
                message: "inner".into()
            })
        );
    }

    #[test]
    fn done_and_silence() {
        let mut buf = Vec::new();
        Reply::Done { pid: Some(42) }.write_to(&mut buf);
        assert_eq!(
            Reply::read_from(&buf[..]),
            Some(Reply::Done { pid: Some(42) })
        );
        assert_eq!(Reply::read_from(&b""[..]), None);
    }
}
