//! Start: release a created container's init process into its workload, or run a
//! process added by Exec.

use containerd_shim_protos::api;
use containerd_shim_protos::events::task::{TaskExecStarted, TaskStart};

use super::{TaskError, TaskService};
use crate::reaper::ProcessExit;

/// The exit recorded for an exec process that failed to start or was deleted unstarted.
pub(super) fn never_ran() -> ProcessExit {
    ProcessExit {
        status: 255,
        at: std::time::SystemTime::now(),
    }
}
use crate::events::TaskEvent;
use crate::helper;

impl TaskService {
    pub(super) fn task_start(
        &self,
        req: &api::StartRequest,
    ) -> Result<api::StartResponse, TaskError> {
        if !req.exec_id.is_empty() {
            return self.start_exec(&req.id, &req.exec_id);
        }
        let container = self.container(&req.id)?;
        let pid = container.begin_start()?;
        if let Some(mut clock) = container
            .start_clock
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            use std::io::Write;
            let now = triage_runtime::container::wire::monotonic_ns();
            let _ = clock.write_all(&now.to_le_bytes());
        }
        // Waking the init is a socket write: done here, unless poststart hooks must run
        // (they are processes, so a helper runs them).
        let result = match triage_runtime::container::release(&container.id, &container.bundle) {
            Ok(true) => Ok(()),
            Ok(false) => self
                .helpers
                .container(&container.id, &container.bundle)
                .start(),
            Err(e) => Err(helper::HelperError::Failed(e.to_string())),
        };
        if result.is_err() {
            // A start helper that failed or was killed at its deadline may have woken the
            // init before its poststart hooks: a failed Start leaves no process running
            // (as runc ends the container when its poststart hooks fail). Its exit is
            // reported as any exit.
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
        container.finish_start(result.is_ok().then_some(pid), || {
            self.events.publish(TaskEvent::Start(TaskStart {
                container_id: container.id.clone(),
                pid,
                ..Default::default()
            }))
        });
        if result.is_err() {
            // Reported stopped before the error returns: containerd's client refuses to
            // delete a task it still sees as created with a pid.
            container.wait_exit();
        }
        result?;
        tracing::info!(pid, "started");
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }

    /// Runs exec process `exec_id` in the container's namespaces and cgroup.
    fn start_exec(&self, id: &str, exec_id: &str) -> Result<api::StartResponse, TaskError> {
        let container = self.container(id)?;
        let exec = container.exec(exec_id)?;
        exec.process.begin_start()?;
        let result = self.spawn_exec(&container.id, &container.bundle, &exec);
        let started = result.as_ref().ok().map(|&pid| pid as u32);
        if let Ok(pid) = result {
            self.watch_exit(std::sync::Arc::clone(&container), Some(exec.clone()), pid);
        }
        exec.process.finish_start(started, || {
            self.events.publish(TaskEvent::ExecStarted(TaskExecStarted {
                container_id: container.id.clone(),
                exec_id: exec_id.to_owned(),
                pid: started.unwrap_or_default(),
                ..Default::default()
            }))
        });
        if started.is_none() {
            // It will never run: release any Wait on it (runc's shim reports 255 too).
            exec.process.record_exit(never_ran(), |_| {});
        }
        let pid = result? as u32;
        tracing::info!(exec_id, pid, "exec process started");
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }
}
