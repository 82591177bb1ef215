//! One task's lifecycle: its states, the allowed transitions, and waiting for exit.

use std::path::PathBuf;
use std::sync::{Condvar, Mutex, MutexGuard};

use triage_runtime::cgroup_procs::MemoryCgroup;
use triage_runtime::stdio::StdioPaths;

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

/// One container held by this shim.
pub struct Container {
    /// Container id.
    pub id: String,
    /// Bundle directory.
    pub bundle: PathBuf,
    /// stdio FIFOs, for State.
    pub stdio: StdioPaths,
    /// Whether the shim mounted `bundle/rootfs` (and must unmount it).
    pub owns_rootfs: bool,
    /// The container's memory cgroup, read while the init process lived (for OOM).
    pub memory_cgroup: Option<MemoryCgroup>,
    lifecycle: Mutex<Lifecycle>,
    changed: Condvar,
}

impl Container {
    /// A created container whose init process is `pid`.
    pub fn new(
        id: String,
        bundle: PathBuf,
        stdio: StdioPaths,
        owns_rootfs: bool,
        pid: u32,
    ) -> Self {
        Self {
            id,
            bundle,
            stdio,
            owns_rootfs,
            memory_cgroup: MemoryCgroup::of_process(pid),
            lifecycle: Mutex::new(Lifecycle {
                status: Status::Created,
                pid,
                exit: None,
            }),
            changed: Condvar::new(),
        }
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
                "container {}: cannot start a task that is {other:?}",
                self.id
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
                "container {}: task is {:?}, not {from:?}",
                self.id, life.status
            )));
        }
        change()?;
        life.status = to;
        Ok(())
    }

    /// Ends a start: Running on success (unless it already exited), back to Created on
    /// failure. `publish` runs under the lock so the start event precedes the exit event.
    pub fn finish_start(&self, ok: bool, publish: impl FnOnce()) {
        let mut life = self.lock();
        if life.status == Status::Starting {
            life.status = if ok { Status::Running } else { Status::Created };
        }
        if ok {
            publish();
        }
        self.changed.notify_all();
    }

    /// Records the init's exit; waits while a start is in flight so events stay ordered.
    /// `publish` runs under the lock.
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

    /// Blocks until the init process has exited.
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
            10,
        ))
    }

    #[test]
    fn start_only_from_created() {
        let c = container();
        assert_eq!(c.begin_start().unwrap(), 10);
        let err = c.begin_start().unwrap_err();
        assert!(err.to_string().contains("Starting"), "{err}");
        c.finish_start(true, || {});
        assert_eq!(c.lock().status, Status::Running);
        assert!(c.begin_start().is_err());
    }

    #[test]
    fn failed_start_returns_to_created() {
        let c = container();
        c.begin_start().unwrap();
        c.finish_start(false, || panic!("no event on failure"));
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
        c.finish_start(true, || order.lock().unwrap().push("start"));
        exit_thread.join().unwrap();
        assert_eq!(*order.lock().unwrap(), vec!["start", "exit"]);
        assert_eq!(c.wait_exit().status, 0);
        assert_eq!(c.lock().status, Status::Stopped);
    }
}
