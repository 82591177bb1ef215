//! Delete: remove a stopped (or never started) container and everything it left, or
//! forget a finished exec process.

use containerd_shim_protos::api;
use containerd_shim_protos::events::task::TaskDelete;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use triage_runtime::rootfs::unmount_rootfs;

use super::state::Status;
use super::{TaskError, TaskService};
use crate::events::{timestamp, TaskEvent};

impl TaskService {
    pub(super) fn task_delete(
        &self,
        req: &api::DeleteRequest,
    ) -> Result<api::DeleteResponse, TaskError> {
        if !req.exec_id.is_empty() {
            return self.delete_exec(&req.id, &req.exec_id);
        }
        let container = self.container(&req.id)?;
        let (status, pid) = {
            let life = container.lock();
            (life.status, life.pid)
        };
        match status {
            Status::Starting | Status::Running | Status::Paused => {
                return Err(TaskError::FailedPrecondition(format!(
                    "container {}: cannot delete a running task; kill it first",
                    req.id
                )))
            }
            // Never started: the init process still waits for Start.
            Status::Created => {
                if let Err(e) = kill(Pid::from_raw(pid as i32), Signal::SIGKILL) {
                    if e != nix::Error::ESRCH {
                        return Err(TaskError::Internal(format!(
                            "container {}: kill created init {pid}: {e}",
                            req.id
                        )));
                    }
                }
            }
            Status::Stopped => {}
        }
        let exit = container.wait_exit();
        // The init's last log lines (a Wasm guest's trap or interruption) before it goes.
        self.helpers
            .drain_logs(&container.id, std::time::Duration::from_secs(1));

        self.helpers
            .container(&container.id, &container.bundle)
            .delete()?;
        if container.owns_rootfs {
            unmount_rootfs(&container.id, &container.bundle.join("rootfs"))?;
        }
        self.containers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&container.id);

        self.events.publish(TaskEvent::Delete(TaskDelete {
            container_id: container.id.clone(),
            id: container.id.clone(),
            pid,
            exit_status: exit.status,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        }));
        tracing::info!(pid, status = exit.status, "deleted");
        Ok(api::DeleteResponse {
            pid,
            exit_status: exit.status,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        })
    }

    /// Forgets a finished (or never started) exec process; the container stays.
    fn delete_exec(&self, id: &str, exec_id: &str) -> Result<api::DeleteResponse, TaskError> {
        let container = self.container(id)?;
        let exec = container.exec(exec_id)?;
        let (status, pid, exit) = {
            let life = exec.process.lock();
            (life.status, life.pid, life.exit)
        };
        if matches!(status, Status::Starting | Status::Running | Status::Paused) {
            return Err(TaskError::FailedPrecondition(format!(
                "{}: cannot delete a running process; kill it first",
                exec.process.label()
            )));
        }
        let exit = match (status, exit) {
            (_, Some(exit)) => Some(exit),
            // Never started: release any Wait on it.
            _ => {
                let exit = super::start::never_ran();
                exec.process.record_exit(exit, |_| {});
                Some(exit)
            }
        };
        container
            .execs
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(exec_id);
        tracing::info!(exec_id, pid, "exec process deleted");
        Ok(api::DeleteResponse {
            pid,
            exit_status: exit.map(|e| e.status).unwrap_or_default(),
            exited_at: exit.map(|e| timestamp(e.at)).into(),
            ..Default::default()
        })
    }
}
