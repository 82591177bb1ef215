//! Kill: deliver a signal to the container's init process, an exec process, or all.

use containerd_shim_protos::api;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::state::Status;
use super::{TaskError, TaskService};

impl TaskService {
    pub(super) fn task_kill(&self, req: &api::KillRequest) -> Result<api::Empty, TaskError> {
        let container = self.container(&req.id)?;
        let target = container.process(&req.exec_id)?;
        let process = target.get(&container);
        let signal = Signal::try_from(req.signal as i32).map_err(|_| {
            TaskError::InvalidArgument(format!(
                "container {}: invalid signal number {}",
                req.id, req.signal
            ))
        })?;
        let life = process.lock();
        match life.status {
            Status::Stopped => {
                return Err(TaskError::NotFound(format!(
                    "{}: process already finished",
                    process.label()
                )))
            }
            // An exec process that was never started has no pid to signal.
            Status::Created | Status::Starting if life.pid == 0 => {
                return Err(TaskError::FailedPrecondition(format!(
                    "{}: process is not started",
                    process.label()
                )))
            }
            _ => {}
        }
        if req.all {
            drop(life);
            self.helpers
                .container(&container.id, &container.bundle)
                .kill_all(signal as i32)?;
            tracing::info!(%signal, "signal sent to all processes");
            return Ok(api::Empty::new());
        }
        match kill(Pid::from_raw(life.pid as i32), signal) {
            Ok(()) => {
                tracing::info!(pid = life.pid, %signal, "signal sent");
                Ok(api::Empty::new())
            }
            Err(nix::Error::ESRCH) => Err(TaskError::NotFound(format!(
                "{}: process already finished",
                process.label()
            ))),
            Err(e) => Err(TaskError::Internal(format!(
                "{}: kill {signal} to pid {}: {e}",
                process.label(),
                life.pid
            ))),
        }
    }
}
