//! Linux containers through youki's `libcontainer`, for Wasm and native workloads alike.
//!
//! Why libcontainer is confined here: it forks (clone3) and changes process-wide state
//! (cwd while talking to its notify socket, environment, signal dispositions). These
//! functions must therefore run in a single-threaded process made for the purpose: the
//! shim execs itself as a helper for each call (see `triage-shim`'s `helper` module) and
//! never calls them from its own multi-threaded process.

mod charge;
mod executor;
mod preload;
pub mod wire;

use std::path::{Path, PathBuf};

use libcontainer::container::builder::ContainerBuilder;
use libcontainer::container::Container;
use libcontainer::syscall::syscall::SyscallType;
use triage_oci::WorkloadPlan;

pub use executor::TriageExecutor;

use crate::error::RuntimeError;

/// Where libcontainer keeps its state for the containers of one bundle.
pub fn state_root(bundle: &Path) -> PathBuf {
    bundle.join(".triage")
}

fn container_error(id: &str, op: &'static str, err: impl std::error::Error) -> RuntimeError {
    let mut reason = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        reason.push_str(": ");
        reason.push_str(&cause.to_string());
        source = cause.source();
    }
    RuntimeError::Container {
        id: id.to_owned(),
        op,
        reason,
    }
}

/// What the node profile says about preparing a container.
#[derive(Debug, Clone, Copy)]
pub struct NodeSettings<'a> {
    /// The artifact cache.
    pub cache: &'a crate::engine::cache::CacheSettings,
    /// wasi-nn's backends and the node's models.
    pub nn: &'a triage_oci::NnSettings,
    /// How much of a container's files the node reads.
    pub files: &'a triage_oci::FileLimits,
}

/// Creates the container of `bundle` and returns its init process's pid.
///
/// The container's stdio is this process's fds 0, 1 and 2, or, with `console_socket`, a
/// new terminal whose master libcontainer sends to that socket. The init process waits for
/// [`start`]. A Wasm module (read through `files`, the descriptors the shim's decision
/// opened) comes from the node's artifact cache where the plan allows; a module that
/// imports wasi-nn gets the node's backends and models and the plan's.
/// `report_fd` receives errors that happen inside the container before it is
/// ready (libcontainer only tells its caller that the init process failed). On failure
/// the caller runs [`delete`], which removes whatever was made (the shim does after every
/// failed create, from outside the container's cgroup): one rollback path.
pub fn create(
    plan: &WorkloadPlan,
    bundle: &Path,
    report_fd: Option<i32>,
    console_socket: Option<&Path>,
    node: &NodeSettings<'_>,
    files: triage_oci::PlanFiles,
) -> Result<i32, RuntimeError> {
    let id = plan.id.as_str();
    let root = state_root(bundle);
    // libcontainer reads the spec again for the container.
    let spec = libcontainer::oci_spec::runtime::Spec::load(bundle.join("config.json")).ok();
    // The node's work for a Wasm container is the container's: done inside its cgroup.
    let charged = plan
        .wasm()
        .and(spec.as_ref())
        .and_then(|spec| charge::enter(id, spec));
    let prepared = preload::prepare(plan, spec.as_ref(), node, files);
    if let Some(charged) = charged {
        charged.leave()?;
    }
    let preload::Prepared {
        engine,
        nn,
        module,
        egress,
    } = prepared?;
    let executor = TriageExecutor::new(plan.clone(), report_fd, engine, nn, module, egress);
    let built = ContainerBuilder::new(id.to_owned(), SyscallType::default())
        .with_root_path(&root)
        .and_then(|b| {
            b.with_executor(executor)
                .with_console_socket(console_socket)
                .as_init(bundle)
                .with_systemd(false)
                .with_detach(true)
                .build()
        });
    built
        .map_err(|err| container_error(id, "create", err))?
        .pid()
        .map(|pid| pid.as_raw())
        .ok_or_else(|| RuntimeError::Container {
            id: id.to_owned(),
            op: "create",
            reason: "libcontainer reported no init pid".to_owned(),
        })
}

/// Runs the process described in `process` (a runtime-spec `Process` JSON file) in the
/// running container's namespaces and cgroup, with this process's stdio; returns its pid.
/// For native containers: a Wasm container has no environment a process can join.
pub fn exec(
    id: &str,
    bundle: &Path,
    process: &Path,
    console_socket: Option<&Path>,
) -> Result<i32, RuntimeError> {
    ContainerBuilder::new(id.to_owned(), SyscallType::default())
        .with_root_path(state_root(bundle))
        .and_then(|b| {
            b.with_executor(libcontainer::workload::default::DefaultExecutor {})
                .with_console_socket(console_socket)
                .as_tenant()
                .with_process(Some(process))
                .with_detach(true)
                .build()
        })
        .map(|pid| pid.as_raw())
        .map_err(|e| container_error(id, "exec", e))
}

/// Lets a created container's init process run its workload.
pub fn start(id: &str, bundle: &Path) -> Result<(), RuntimeError> {
    let mut container =
        Container::load(state_root(bundle).join(id)).map_err(|e| container_error(id, "load", e))?;
    container
        .start()
        .map_err(|e| container_error(id, "start", e))
}

/// Starts a created container from any process, the shim's included: what libcontainer's
/// `Container::start` does (wake the init through its notify socket, record the container
/// as running) without forking or changing the working directory, so no helper process is
/// needed. Returns `Ok(false)`, having done nothing, when the spec has poststart hooks:
/// those run as processes, through [`start`] in a helper.
pub fn release(id: &str, bundle: &Path) -> Result<bool, RuntimeError> {
    use libcontainer::container::ContainerStatus;
    use libcontainer::notify_socket::NOTIFY_FILE;

    let root = state_root(bundle).join(id);
    let mut container =
        Container::load(root.clone()).map_err(|e| container_error(id, "load", e))?;
    if !container.can_start() {
        return Err(RuntimeError::Container {
            id: id.to_owned(),
            op: "start",
            reason: format!("the container is {}, not created", container.status()),
        });
    }
    let config = container
        .spec()
        .map_err(|e| container_error(id, "start", e))?;
    let poststart = config.hooks.as_ref().and_then(|h| h.poststart().as_ref());
    if poststart.is_some_and(|hooks| !hooks.is_empty()) {
        return Ok(false);
    }
    notify_start(&root.join(NOTIFY_FILE)).map_err(|e| RuntimeError::Container {
        id: id.to_owned(),
        op: "start",
        reason: format!(
            "waking the init through {}: {e}",
            root.join(NOTIFY_FILE).display()
        ),
    })?;
    container.set_status(ContainerStatus::Running);
    save_state(id, &container)?;
    Ok(true)
}

/// Writes the container's libcontainer state as a whole: to a temporary file renamed over
/// `state.json`, so a shim killed at any moment leaves the old state or the new one,
/// never an empty file that no later `delete` can read.
fn save_state(id: &str, container: &Container) -> Result<(), RuntimeError> {
    let path = container.root.join("state.json");
    let temporary = container.root.join(".state.json.new");
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| RuntimeError::Io {
            id: id.to_owned(),
            op,
            path,
            source,
        }
    };
    let bytes = serde_json::to_vec(&container.state)
        .map_err(|e| io("encode container state", &path)(std::io::Error::other(e)))?;
    std::fs::write(&temporary, bytes).map_err(io("write container state", &temporary))?;
    std::fs::rename(&temporary, &path).map_err(io("replace container state", &path))
}

/// Sends libcontainer's start message to the init waiting on `socket`. The socket is
/// reached through an `O_PATH` descriptor of its directory, since a bundle path can be
/// longer than a socket address allows.
fn notify_start(socket: &Path) -> std::io::Result<()> {
    use std::io::Write;
    let dir = socket.parent().unwrap_or(Path::new("/"));
    let name = socket.file_name().unwrap_or_default();
    let dir = std::fs::File::open(dir)?;
    let short = Path::new("/proc/self/fd")
        .join(std::os::fd::AsRawFd::as_raw_fd(&dir).to_string())
        .join(name);
    let mut stream = std::os::unix::net::UnixStream::connect(short)?;
    stream.write_all(b"start container")
    // Dropping the stream closes it: the init reads to end of file.
}

/// Freezes every process of the container (cgroup freezer).
pub fn pause(id: &str, bundle: &Path) -> Result<(), RuntimeError> {
    Container::load(state_root(bundle).join(id))
        .map_err(|e| container_error(id, "load", e))?
        .pause()
        .map_err(|e| container_error(id, "pause", e))
}

/// Thaws a paused container.
pub fn resume(id: &str, bundle: &Path) -> Result<(), RuntimeError> {
    Container::load(state_root(bundle).join(id))
        .map_err(|e| container_error(id, "load", e))?
        .resume()
        .map_err(|e| container_error(id, "resume", e))
}

/// Applies new resource limits to a running container's cgroup (CRI
/// `UpdateContainerResources`, containerd's task Update). Only the fields set in
/// `resources` change. Writes cgroup files only: it needs no helper process.
pub fn update(
    id: &str,
    bundle: &Path,
    resources: &libcontainer::oci_spec::runtime::LinuxResources,
) -> Result<(), RuntimeError> {
    use libcgroups::common::{create_cgroup_manager, CgroupConfig, CgroupManager};

    let container =
        Container::load(state_root(bundle).join(id)).map_err(|e| container_error(id, "load", e))?;
    let config = container
        .spec()
        .map_err(|e| container_error(id, "update", e))?;
    let manager = create_cgroup_manager(CgroupConfig {
        cgroup_path: config.cgroup_path,
        systemd_cgroup: false,
        container_name: id.to_owned(),
    })
    .map_err(|e| container_error(id, "update", e))?;
    manager
        .apply(&limits(resources))
        .map_err(|e| container_error(id, "update", e))
}

/// What a cgroup manager applies for `resources`: those limits and nothing else.
fn limits(
    resources: &libcontainer::oci_spec::runtime::LinuxResources,
) -> libcgroups::common::ControllerOpt<'_> {
    libcgroups::common::ControllerOpt {
        resources,
        disable_oom_killer: false,
        oom_score_adj: None,
        freezer_state: None,
    }
}

/// Sends `signal` to every process in the container's cgroup (`kill --all`).
pub fn kill_all(id: &str, bundle: &Path, signal: i32) -> Result<(), RuntimeError> {
    let signal = libcontainer::signal::Signal::try_from(signal)
        .map_err(|e| container_error(id, "kill", e))?;
    let mut container =
        Container::load(state_root(bundle).join(id)).map_err(|e| container_error(id, "load", e))?;
    container
        .kill(signal, true)
        .map_err(|e| container_error(id, "kill", e))
}

/// How often [`delete`] tries to remove a cgroup whose killed processes are not yet
/// reaped (an orphan waits for whoever adopted it), and the pause between tries.
const DELETE_ATTEMPTS: u32 = 10;
const DELETE_RETRY_PAUSE: std::time::Duration = std::time::Duration::from_millis(200);

/// Kills what is left of the container and removes its cgroup and state.
///
/// A container that libcontainer never recorded is not an error. One whose state file
/// cannot be read (a process killed while libcontainer rewrote it) is removed through
/// its bundle's spec instead: the processes of its cgroup are killed and the cgroup goes.
pub fn delete(id: &str, bundle: &Path) -> Result<(), RuntimeError> {
    let dir = state_root(bundle).join(id);
    if !dir.join("state.json").exists() && bundle.join("config.json").exists() {
        // Never recorded by libcontainer: a create that failed, or a helper killed while
        // it worked in the container's cgroup, may still have left that cgroup.
        if let Err(e) = remove_cgroup_of_bundle(id, bundle, true) {
            tracing::warn!("container {id}: removing its cgroup: {e}");
        }
    }
    let mut attempt = 1;
    while dir.join("state.json").exists() {
        let mut container = match Container::load(dir.clone()) {
            Ok(container) => container,
            Err(e) => {
                tracing::warn!(
                    "container {id}: unreadable state ({}); removing it through the bundle's spec",
                    container_error(id, "load", e)
                );
                remove_cgroup_of_bundle(id, bundle, false)?;
                break;
            }
        };
        let result = container
            .delete(true)
            .map_err(|e| container_error(id, "delete", e));
        match result {
            Ok(()) => break,
            // libcontainer keeps its state when the cgroup cannot go yet: try again.
            Err(e) if attempt < DELETE_ATTEMPTS => {
                tracing::warn!(attempt, "{e}; retrying");
                attempt += 1;
                std::thread::sleep(DELETE_RETRY_PAUSE);
            }
            Err(e) => return Err(e),
        }
    }
    remove_state_dirs(id, bundle)
}

/// Kills every process in the cgroup the bundle's spec names for container `id` and
/// removes that cgroup (retrying while killed processes are being reaped); with
/// `absent_ok`, a cgroup that does not exist is left so.
fn remove_cgroup_of_bundle(id: &str, bundle: &Path, absent_ok: bool) -> Result<(), RuntimeError> {
    use libcgroups::common::{create_cgroup_manager, CgroupConfig, CgroupManager, FreezerState};
    use libcontainer::oci_spec::runtime::Spec;

    let spec = Spec::load(bundle.join("config.json"))
        .map_err(|e| container_error(id, "read the bundle's spec", e))?;
    let cgroups_path = spec
        .linux()
        .as_ref()
        .and_then(|linux| linux.cgroups_path().clone());
    let manager = create_cgroup_manager(CgroupConfig {
        cgroup_path: libcontainer::utils::get_cgroup_path(&cgroups_path, id),
        systemd_cgroup: false,
        container_name: id.to_owned(),
    })
    .map_err(|e| container_error(id, "delete", e))?;
    // Freezing would create the freezer's directory of a cgroup that does not exist.
    if absent_ok && manager.get_all_pids().is_err() {
        return Ok(());
    }
    let mut attempt = 1;
    loop {
        let _ = manager.freeze(FreezerState::Frozen);
        let pids = manager
            .get_all_pids()
            .map_err(|e| container_error(id, "delete", e))?;
        for pid in pids {
            match nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL) {
                Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
                Err(e) => tracing::warn!("container {id}: killing pid {pid}: {e}"),
            }
        }
        let _ = manager.freeze(FreezerState::Thawed);
        match manager.remove() {
            Ok(()) => return Ok(()),
            Err(e) if attempt < DELETE_ATTEMPTS => {
                tracing::warn!(
                    attempt,
                    "container {id}: removing the cgroup: {e}; retrying"
                );
                attempt += 1;
                std::thread::sleep(DELETE_RETRY_PAUSE);
            }
            Err(e) => return Err(container_error(id, "delete", e)),
        }
    }
}

/// Removes libcontainer's state directory of `id` and the bundle's state root.
fn remove_state_dirs(id: &str, bundle: &Path) -> Result<(), RuntimeError> {
    let dir = state_root(bundle).join(id);
    for leftover in [dir.as_path(), state_root(bundle).as_path()] {
        match std::fs::remove_dir_all(leftover) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(RuntimeError::Io {
                    id: id.to_owned(),
                    op: "remove state directory",
                    path: leftover.to_path_buf(),
                    source,
                })
            }
        }
    }
    Ok(())
}
