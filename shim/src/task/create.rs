//! Create: mount the rootfs, apply limits and CDI devices, decide Wasm or native,
//! validate, and build the container.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;

use containerd_shim_protos::api;
use containerd_shim_protos::events::task::{TaskCreate, TaskExit, TaskIO, TaskOOM};
use triage_oci::node_profile::MAX_MODULE_SIZE_KEY;
use triage_oci::{Bundle, DecisionReason, ModuleSource, PlanError, SnapshotPlan, WorkloadKind};
use triage_runtime::engine::validate_module;
use triage_runtime::rootfs::{mount_rootfs, unmount_rootfs, RootfsMount};
use triage_runtime::stdio::{ContainerStdio, OutputRelays, StdioPaths};

use super::state::{Container, ExecProcess, Process};
use super::{TaskError, TaskService};
use crate::console::ConsoleSocket;
use crate::events::{timestamp, TaskEvent};
use crate::helper::CreateRequest;

impl TaskService {
    pub(super) fn task_create(
        &self,
        req: api::CreateTaskRequest,
    ) -> Result<api::CreateTaskResponse, TaskError> {
        let id = req.id.clone();
        if self.container(&id).is_ok() {
            return Err(TaskError::AlreadyExists(id));
        }
        if !req.checkpoint.is_empty() {
            return Err(TaskError::Unimplemented {
                id,
                what: "restoring from a checkpoint".to_owned(),
            });
        }
        let options = crate::options::runtime_options(&id, req.options.as_ref())?;
        if let Some(binary) = &options.binary_name {
            tracing::debug!(%binary, "runtime option BinaryName (this shim is already running)");
        }
        let bundle = PathBuf::from(&req.bundle);
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
        };
        let mounts: Vec<RootfsMount> = req
            .rootfs
            .iter()
            .map(|m| RootfsMount {
                fs_type: m.type_.clone(),
                source: m.source.clone(),
                options: m.options.clone(),
            })
            .collect();
        let rootfs = bundle.join("rootfs");
        let owns_rootfs = !mounts.is_empty();
        // Whatever this Create made is unmade again, newest first, unless it completes.
        let mut rollback = Rollback::new(&id);
        if owns_rootfs {
            std::fs::create_dir_all(&rootfs).map_err(|e| {
                TaskError::Internal(format!(
                    "container {id}: create rootfs directory {}: {e}",
                    rootfs.display()
                ))
            })?;
            mount_rootfs(&id, &mounts, &rootfs)?;
            let (id, rootfs) = (id.clone(), rootfs.clone());
            rollback.push(move || unmount_rootfs(&id, &rootfs).map_err(|e| e.to_string()));
        }

        // The Start RPC's time reaches the init through this pipe (Start → guest entry).
        let (clock_read, clock_write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)
            .map_err(|e| TaskError::Internal(format!("container {id}: start clock pipe: {e}")))?;
        let built = self.build(
            &id,
            &bundle,
            &stdio,
            req.terminal,
            clock_read,
            &mut rollback,
        )?;
        rollback.complete();

        let container = Arc::new(Container::new(
            id.clone(),
            bundle.clone(),
            stdio.clone(),
            owns_rootfs,
            built.is_wasm,
            built.pid as u32,
        ));
        let pid = built.pid;
        if let Some(master) = built.terminal {
            let _ = container.terminal.set(master);
        }
        if let Some(output) = built.output {
            let _ = container.output.set(output);
        }
        *container
            .start_clock
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some(std::fs::File::from(clock_write));
        self.containers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.clone(), Arc::clone(&container));
        self.watch_exit(container, None, pid);

        self.events.publish(TaskEvent::Create(TaskCreate {
            container_id: id,
            bundle: req.bundle.clone(),
            rootfs: req.rootfs.clone(),
            io: Some(TaskIO {
                stdin: stdio.stdin,
                stdout: stdio.stdout,
                stderr: stdio.stderr,
                terminal: req.terminal,
                ..Default::default()
            })
            .into(),
            pid: pid as u32,
            ..Default::default()
        }));
        Ok(api::CreateTaskResponse {
            pid: pid as u32,
            ..Default::default()
        })
    }

    /// Plans, validates and creates the container.
    fn build<'a>(
        &'a self,
        id: &'a str,
        bundle: &'a std::path::Path,
        stdio: &StdioPaths,
        terminal: bool,
        start_clock: OwnedFd,
        rollback: &mut Rollback<'a>,
    ) -> Result<Built, TaskError> {
        let mut spec = Bundle::load(id, bundle)?;
        let profile = crate::profile::load()
            .map_err(|e| TaskError::FailedPrecondition(format!("container {id}: {e}")))?;
        // These edit the spec libcontainer will read: it is written back once.
        let defaulted = admit_resources(&mut spec, &profile)?;
        let devices_added = inject_cdi_devices(&mut spec, &profile)?;
        let cache = crate::profile::cache_settings(&profile);
        let node = triage_oci::NodeContext {
            files: profile.files,
            wasm: profile.wasm.clone(),
            cache: cache.dir.is_some(),
            build_default: triage_runtime::engine::build_default(),
            egress: profile.egress.clone(),
        };
        let triage_oci::Decision { plan, files } = self.plan(&spec, &node)?;
        tracing::info!(kind = plan.kind_name(), reason = %plan.reason, "workload decision");
        let lsms = triage_runtime::lsm::active();
        let dropped =
            triage_oci::lsm_labels::settle(id, &mut spec.spec, plan.wasm().is_some(), &lsms)?;
        for label in &dropped {
            tracing::info!(
                "{label} not applied: this kernel has no such security module (active: {})",
                if lsms.is_empty() { "none found" } else { &lsms }
            );
        }
        let engine_hidden =
            plan.wasm().is_some() && triage_oci::guest_view::hide_engine_process(&mut spec.spec);
        if defaulted || devices_added || engine_hidden || !dropped.is_empty() {
            let path = bundle.join("config.json");
            spec.spec.save(&path).map_err(|e| {
                TaskError::Internal(format!("container {id}: writing {}: {e}", path.display()))
            })?;
        }
        if let WorkloadKind::Wasm(wasm) = &plan.kind {
            tracing::info!(
                engine = %wasm.engine.engine,
                reason = %wasm.engine.reason(),
                form = wasm.form.as_str(),
                "wasm engine"
            );
            if let (ModuleSource::File { container_path, .. }, Some(module)) =
                (&wasm.module, &files.module)
            {
                // An init export an annotation names must exist; the default one may not.
                let named_init = match &wasm.snapshot {
                    SnapshotPlan::Named(init) => Some(init.as_str()),
                    _ => None,
                };
                let bytes = module
                    .read_all(profile.files.module_bytes, MAX_MODULE_SIZE_KEY)
                    .map_err(|e| {
                        TaskError::InvalidArgument(format!(
                            "container {id}: wasm module {}: {e}",
                            container_path.display()
                        ))
                    })?;
                validate_module(id, wasm, container_path, &bytes, named_init)
                    .map_err(|e| TaskError::InvalidArgument(e.to_string()))?;
            }
        }
        let is_wasm = plan.wasm().is_some();
        let console = terminal.then(|| bind_console(id)).transpose()?;
        // Output goes through the shim, so a FIFO reader that leaves (a detached `ctr
        // run`, a containerd restart) never breaks the container's writes. The relays
        // end by themselves when the container's last writer exits. A container with a
        // terminal gets the terminal instead, relayed once its master arrives.
        let (helper_stdio, relays) = match console {
            Some(_) => (None, None),
            None => {
                let (fds, relays) = ContainerStdio::open_relayed(id, stdio)?;
                (Some(fds), Some(relays))
            }
        };
        let helper = self.helpers.container(id, bundle);
        let pid = helper.create(CreateRequest {
            plan,
            console_socket: console.as_ref().map(|c| c.path().to_path_buf()),
            cache,
            nn: profile.nn.clone(),
            stdio: helper_stdio,
            start_clock,
            deadline: std::time::Duration::from_secs(profile.create_timeout_seconds),
            files,
            limits: profile.files,
        })?;
        rollback.push(move || {
            // The container exists but the Create failed after it: do not leave it.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            helper.delete().map_err(|e| e.to_string())
        });
        let (terminal, output) = match console {
            Some(console) => {
                let (master, output) = attach_terminal(id, &console, stdio)?;
                (Some(master), Some(output))
            }
            None => (None, relays),
        };
        Ok(Built {
            pid,
            is_wasm,
            terminal,
            output,
        })
    }

    /// Decides Wasm or native. The image is read from containerd only when it could
    /// change the answer: no annotation decided, and the entrypoint is not a module.
    fn plan(
        &self,
        spec: &Bundle,
        node: &triage_oci::NodeContext,
    ) -> Result<triage_oci::Decision, TaskError> {
        let first = triage_oci::decide(spec, None, node);
        let image_may_decide = match &first {
            Ok(triage_oci::Decision { plan, .. }) => {
                plan.wasm().is_none() && !matches!(plan.reason, DecisionReason::Annotation { .. })
            }
            Err(PlanError::EntrypointNotFound { .. }) => true,
            Err(_) => false,
        };
        if !image_may_decide {
            return Ok(first?);
        }
        match crate::image::lookup(&self.containerd, &self.namespace, &spec.id) {
            Ok(facts) => {
                tracing::debug!(?facts, "image facts");
                Ok(triage_oci::decide(spec, Some(&facts), node)?)
            }
            Err(e) => {
                tracing::warn!("{e}; deciding without the image");
                Ok(first?)
            }
        }
    }

    /// Publishes the exit of `pid` (the init process, or `exec`) once the reaper sees it.
    pub(super) fn watch_exit(
        &self,
        container: Arc<Container>,
        exec: Option<Arc<ExecProcess>>,
        pid: i32,
    ) {
        let exits = Arc::clone(&self.exits);
        let events = self.events.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("exit-{pid}"))
            .spawn(move || {
                let exit = exits.wait(pid);
                let exec_id = exec.as_ref().map(|e| e.exec_id.as_str()).unwrap_or("");
                let span = tracing::info_span!("task", verb = "exit", id = %container.id, exec_id);
                let _guard = span.enter();
                tracing::info!(pid, status = exit.status, "process exited");
                let process: &Process = match &exec {
                    Some(exec) => &exec.process,
                    None => &container,
                };
                // `ctr run` stops reading its FIFOs once it sees the exit: let the output
                // reach them first, unless something the process started keeps it open.
                if let Some(output) = process.output.get() {
                    if !output.wait_ended(OUTPUT_DRAIN_LIMIT) {
                        tracing::warn!(
                            "{}: its output is still open {} ms after it exited (a process it started holds it); closing it to its reader and reporting the exit",
                            process.label(),
                            OUTPUT_DRAIN_LIMIT.as_millis()
                        );
                        output.stop();
                    }
                }
                // Only the init's exit can be the container's OOM kill.
                let oom = container
                    .memory_cgroup
                    .as_ref()
                    .filter(|cgroup| exec.is_none() && cgroup.oom_kills() > 0);
                process.record_exit(exit, |_| {
                    if let Some(cgroup) = oom {
                        let limit = cgroup
                            .limit()
                            .map(triage_runtime::engine::mib)
                            .unwrap_or_else(|| "unlimited".to_owned());
                        tracing::error!(
                            "container {}: the kernel's OOM killer killed a process of the container (memory limit {limit}); exit status {}",
                            container.id,
                            exit.status
                        );
                        events.publish(TaskEvent::Oom(TaskOOM {
                            container_id: container.id.clone(),
                            ..Default::default()
                        }));
                    }
                    events.publish(TaskEvent::Exit(TaskExit {
                        container_id: container.id.clone(),
                        id: if exec_id.is_empty() {
                            container.id.clone()
                        } else {
                            exec_id.to_owned()
                        },
                        pid: pid as u32,
                        exit_status: exit.status,
                        exited_at: Some(timestamp(exit.at)).into(),
                        ..Default::default()
                    }))
                });
            });
        if let Err(e) = spawned {
            tracing::error!(pid, "cannot start exit watcher: {e}");
        }
    }
}

/// Checks the container's resources against the node profile and, where the spec sets
/// no limit, puts the profile's defaults in the spec (libcontainer builds the cgroup
/// from the bundle's `config.json`). Returns whether the spec changed.
fn admit_resources(
    bundle: &mut Bundle,
    profile: &triage_oci::NodeProfile,
) -> Result<bool, TaskError> {
    let defaulted = triage_oci::admit(&bundle.id, &mut bundle.spec, profile)?;
    if defaulted.is_empty() {
        return Ok(false);
    }
    tracing::info!(
        "node profile defaults applied where the spec sets no limit: {}",
        defaulted.join(", ")
    );
    Ok(true)
}

/// Gives the container the CDI devices `triage.io/gpu` asks for, from the spec
/// directories of the node profile: device nodes, cgroup rules, mounts, env and hooks
/// go into the spec, for native and Wasm containers alike. What containerd already
/// injected (CRI with `enable_cdi`) is kept, not added twice. Returns whether the spec
/// changed.
fn inject_cdi_devices(
    bundle: &mut Bundle,
    profile: &triage_oci::NodeProfile,
) -> Result<bool, TaskError> {
    let id = bundle.id.clone();
    let from_containerd: Vec<String> = bundle
        .annotations()
        .into_iter()
        .filter(|(key, _)| key.starts_with(triage_oci::cdi::CRI_ANNOTATION_PREFIX))
        .map(|(_, devices)| devices)
        .collect();
    if !from_containerd.is_empty() {
        tracing::debug!(
            devices = %from_containerd.join(","),
            "CDI devices containerd injected before the shim"
        );
    }
    let Some(injected) = triage_runtime::cdi::inject_devices(&id, &mut bundle.spec, &profile.cdi)?
    else {
        return Ok(false);
    };
    tracing::info!(devices = %injected.describe(), "CDI devices resolved");
    if !injected.applied.already_present.is_empty() {
        tracing::info!(
            "CDI edits the spec already had (kept, not added again): {}",
            injected.applied.already_present.join(", ")
        );
    }
    if !injected.ignored.is_empty() {
        tracing::warn!(
            "CDI spec fields Triage does not apply: {}",
            injected.ignored.join(", ")
        );
    }
    Ok(injected.applied.changed)
}

/// The undo steps of a Create in progress: run newest first when it is dropped before
/// [`Rollback::complete`], so every way a Create fails leaves nothing behind.
pub(super) struct Rollback<'a> {
    id: String,
    steps: Vec<Box<dyn FnOnce() -> Result<(), String> + 'a>>,
}

impl<'a> Rollback<'a> {
    fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            steps: Vec::new(),
        }
    }

    /// Adds the step that undoes what was just made.
    fn push(&mut self, step: impl FnOnce() -> Result<(), String> + 'a) {
        self.steps.push(Box::new(step));
    }

    /// The Create succeeded: nothing is undone.
    fn complete(mut self) {
        self.steps.clear();
    }
}

impl Drop for Rollback<'_> {
    fn drop(&mut self) {
        while let Some(step) = self.steps.pop() {
            if let Err(e) = step() {
                tracing::error!("container {}: undoing a failed create: {e}", self.id);
            }
        }
    }
}

/// How long an exit waits for the process's output to reach its FIFOs (containerd's
/// runc shim gives its output copies as long at Delete).
const OUTPUT_DRAIN_LIMIT: std::time::Duration = std::time::Duration::from_secs(2);

/// A container that Create built.
struct Built {
    /// Its init pid.
    pid: i32,
    /// Whether it runs a Wasm guest.
    is_wasm: bool,
    /// Its terminal's master, when it has one.
    terminal: Option<OwnedFd>,
    /// The relays of its output.
    output: Option<OutputRelays>,
}

/// A console socket for a process that asked for a terminal.
pub(super) fn bind_console(id: &str) -> Result<ConsoleSocket, TaskError> {
    ConsoleSocket::bind()
        .map_err(|e| TaskError::Internal(format!("container {id}: creating a console socket: {e}")))
}

/// Takes the terminal master libcontainer sent and relays it to the stdio FIFOs;
/// returns the master and the relay of its output.
pub(super) fn attach_terminal(
    id: &str,
    console: &ConsoleSocket,
    stdio: &StdioPaths,
) -> Result<(OwnedFd, OutputRelays), TaskError> {
    let master = console
        .receive()
        .map_err(|e| TaskError::Internal(format!("container {id}: receiving the terminal: {e}")))?;
    let output = crate::console::relay(id, &master, stdio).map_err(TaskError::Internal)?;
    Ok((master, output))
}
