//! One task's lifecycle: its states, the allowed transitions, and waiting for exit.

use std::collections::HashMap;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};

use triage_runtime::cgroup_procs::MemoryCgroup;
use triage_runtime::stdio::{OutputRelays, StdioPaths};

use super::error::TaskError;
use crate::reaper::ProcessExit;

/// Where a task is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Created; the init process waits for Start.
    Created,
    /// Start is in progress (its event not yet published).
    Starting,
    /// The workload runs.
    Running,
    /// The workload is frozen (Pause).
    Paused,
    /// The init process has exited.
    Stopped,
}

/// Mutable part of a task.
#[derive(Debug)]
pub struct Lifecycle {
    /// Current status.
    pub status: Status,
    /// Init pid (host namespace).
    pub pid: u32,
    /// Set once stopped.
    pub exit: Option<ProcessExit>,
}

/// One process of a task (the init process, or one started by Exec): its lifecycle and
/// the condition that announces changes to it.
pub struct Process {
    /// How errors name it: `container ID` or `container ID exec EXEC`.
    label: String,
    /// The master of its terminal, if it has one (ResizePty).
    pub terminal: OnceLock<OwnedFd>,
    /// The relays of its output to the FIFOs, once it runs: its exit waits for them.
    pub output: OnceLock<OutputRelays>,
    lifecycle: Mutex<Lifecycle>,
    changed: Condvar,
}

impl Process {
    fn new(label: String, status: Status, pid: u32) -> Self {
        Self {
            label,
            terminal: OnceLock::new(),
            output: OnceLock::new(),
            lifecycle: Mutex::new(Lifecycle {
                status,
                pid,
                exit: None,
            }),
            changed: Condvar::new(),
        }
    }

    /// How errors name it.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// Locks the lifecycle.
    pub fn lock(&self) -> MutexGuard<'_, Lifecycle> {
        self.lifecycle.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Moves Created → Starting, or says why not.
    pub fn begin_start(&self) -> Result<u32, TaskError> {
        let mut life = self.lock();
        match life.status {
            Status::Created => {
                life.status = Status::Starting;
                Ok(life.pid)
            }
            other => Err(TaskError::FailedPrecondition(format!(
                "{}: cannot start a task that is {other:?}",
                self.label
            ))),
        }
    }

    /// Moves the task from `from` to `to` (Pause, Resume) under the lock, running
    /// `change` (the cgroup change) only if the task is in state `from`.
    pub fn transition<E>(
        &self,
        from: Status,
        to: Status,
        change: impl FnOnce() -> Result<(), E>,
    ) -> Result<(), TaskError>
    where
        TaskError: From<E>,
    {
        let mut life = self.lock();
        if life.status != from {
            return Err(TaskError::FailedPrecondition(format!(
                "{}: task is {:?}, not {from:?}",
                self.label, life.status
            )));
        }
        change()?;
        life.status = to;
        Ok(())
    }

    /// Ends a start: Running (with its pid, for an exec) on success unless it already
    /// exited, back to Created on failure. `publish` runs under the lock so the start
    /// event precedes the exit event.
    pub fn finish_start(&self, started: Option<u32>, publish: impl FnOnce()) {
        let mut life = self.lock();
        if let Some(pid) = started {
            life.pid = pid;
        }
        if life.status == Status::Starting {
            life.status = if started.is_some() {
                Status::Running
            } else {
                Status::Created
            };
        }
        if started.is_some() {
            publish();
        }
        self.changed.notify_all();
    }

    /// Records the process's exit; waits while a start is in flight so events stay
    /// ordered. `publish` runs under the lock.
    pub fn record_exit(&self, exit: ProcessExit, publish: impl FnOnce(&Lifecycle)) {
        let mut life = self.lock();
        while life.status == Status::Starting {
            life = self.changed.wait(life).unwrap_or_else(|p| p.into_inner());
        }
        life.status = Status::Stopped;
        life.exit = Some(exit);
        publish(&life);
        self.changed.notify_all();
    }

    /// Blocks until the process has exited.
    pub fn wait_exit(&self) -> ProcessExit {
        let mut life = self.lock();
        loop {
            if let Some(exit) = life.exit {
                return exit;
            }
            life = self.changed.wait(life).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// A process added to a running container by Exec.
pub struct ExecProcess {
    /// The exec id containerd gave it.
    pub exec_id: String,
    /// Its stdio FIFOs.
    pub stdio: StdioPaths,
    /// The runtime-spec `Process` (JSON) to run.
    pub spec: Vec<u8>,
    /// Whether it runs on a terminal of its own.
    pub tty: bool,
    /// Its lifecycle (pid 0 until started).
    pub process: Process,
}

/// One container held by this shim. It derefs to its init process.
pub struct Container {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// stdio FIFOs, for State.
    pub stdio: StdioPaths,
    /// Whether the shim mounted `bundle/rootfs` (and must unmount it).
    pub owns_rootfs: bool,
    /// Whether the workload is a Wasm guest (no process environment to exec into).
    pub is_wasm: bool,
    /// The container's memory cgroup, read while the init process lived (for OOM).
    pub memory_cgroup: Option<MemoryCgroup>,
    /// Processes added by Exec, by exec id.
    pub execs: Mutex<HashMap<String, Arc<ExecProcess>>>,
    /// Where Start writes its time for the init (taken by the first Start).
    pub start_clock: Mutex<Option<std::fs::File>>,
    init: Process,
}

impl std::ops::Deref for Container {
    type Target = Process;

    fn deref(&self) -> &Process {
        &self.init
    }
}

impl Container {
    /// A created container whose init process is `pid`.
    pub fn new(
        id: String,
        bundle: PathBuf,
        stdio: StdioPaths,
        owns_rootfs: bool,
        is_wasm: bool,
        pid: u32,
    ) -> Self {
        Self {
            init: Process::new(format!("container {id}"), Status::Created, pid),
            id,
            bundle,
            stdio,
            owns_rootfs,
            is_wasm,
            memory_cgroup: MemoryCgroup::of_process(pid),
            execs: Mutex::new(HashMap::new()),
            start_clock: Mutex::new(None),
        }
    }

    /// Records a process for Exec; it starts with Start(exec id).
    pub fn add_exec(
        &self,
        exec_id: &str,
        stdio: StdioPaths,
        spec: Vec<u8>,
        tty: bool,
    ) -> Result<Arc<ExecProcess>, TaskError> {
        let mut execs = self.execs.lock().unwrap_or_else(|p| p.into_inner());
        if execs.contains_key(exec_id) {
            return Err(TaskError::AlreadyExists(format!(
                "{} exec {exec_id}",
                self.id
            )));
        }
        let exec = Arc::new(ExecProcess {
            exec_id: exec_id.to_owned(),
            stdio,
            spec,
            tty,
            process: Process::new(
                format!("container {} exec {exec_id}", self.id),
                Status::Created,
                0,
            ),
        });
        execs.insert(exec_id.to_owned(), Arc::clone(&exec));
        Ok(exec)
    }

    /// The exec process `exec_id`.
    pub fn exec(&self, exec_id: &str) -> Result<Arc<ExecProcess>, TaskError> {
        self.execs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(exec_id)
            .cloned()
            .ok_or_else(|| TaskError::NotFound(format!("{} exec {exec_id}", self.id)))
    }

    /// The init process (empty `exec_id`) or an exec process.
    pub fn process(&self, exec_id: &str) -> Result<ProcessRef, TaskError> {
        if exec_id.is_empty() {
            Ok(ProcessRef::Init)
        } else {
            self.exec(exec_id).map(ProcessRef::Exec)
        }
    }
}

/// The process a request names.
pub enum ProcessRef {
    /// The container's init process.
    Init,
    /// A process added by Exec.
    Exec(Arc<ExecProcess>),
}

impl ProcessRef {
    /// Its lifecycle.
    pub fn get<'a>(&'a self, container: &'a Container) -> &'a Process {
        match self {
            Self::Init => container,
            Self::Exec(exec) => &exec.process,
        }
    }

    /// Its stdio FIFOs.
    pub fn stdio<'a>(&'a self, container: &'a Container) -> &'a StdioPaths {
        match self {
            Self::Init => &container.stdio,
            Self::Exec(exec) => &exec.stdio,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::SystemTime;

    fn container() -> Arc<Container> {
        Arc::new(Container::new(
            "c".into(),
            "/b".into(),
            StdioPaths::default(),
            false,
            false,
            10,
        ))
    }

    #[test]
    fn start_only_from_created() {
        let c = container();
        assert_eq!(c.begin_start().unwrap(), 10);
        let err = c.begin_start().unwrap_err();
        assert!(err.to_string().contains("Starting"), "{err}");
        c.finish_start(Some(10), || {});
        assert_eq!(c.lock().status, Status::Running);
        assert!(c.begin_start().is_err());
    }

    #[test]
    fn failed_start_returns_to_created() {
        let c = container();
        c.begin_start().unwrap();
        c.finish_start(None, || panic!("no event on failure"));
        assert_eq!(c.lock().status, Status::Created);
    }

    #[test]
    fn exit_during_start_waits_for_start_event() {
        let c = container();
        c.begin_start().unwrap();
        let order = Arc::new(Mutex::new(Vec::new()));
        let exit_thread = {
            let (c, order) = (Arc::clone(&c), Arc::clone(&order));
            std::thread::spawn(move || {
                let exit = ProcessExit {
                    status: 0,
                    at: SystemTime::now(),
                };
                c.record_exit(exit, |_| order.lock().unwrap().push("exit"));
            })
        };
        // Whatever the scheduling, "exit" cannot be recorded while Starting.
        std::thread::yield_now();
        assert!(order.lock().unwrap().is_empty());
        c.finish_start(Some(10), || order.lock().unwrap().push("start"));
        exit_thread.join().unwrap();
        assert_eq!(*order.lock().unwrap(), vec!["start", "exit"]);
        assert_eq!(c.wait_exit().status, 0);
        assert_eq!(c.lock().status, Status::Stopped);
    }
}
