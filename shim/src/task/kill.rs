//! Kill: deliver a signal to the container's init process.

use containerd_shim_protos::api;
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use super::state::Status;
use super::{TaskError, TaskService};

impl TaskService {
    pub(super) fn task_kill(&self, req: &api::KillRequest) -> Result<api::Empty, TaskError> {
        Self::no_exec(&req.id, &req.exec_id)?;
        let container = self.container(&req.id)?;
        let signal = Signal::try_from(req.signal as i32).map_err(|_| {
            TaskError::InvalidArgument(format!(
                "container {}: invalid signal number {}",
                req.id, req.signal
            ))
        })?;
        let life = container.lock();
        if life.status == Status::Stopped {
            return Err(TaskError::NotFound(format!(
                "{}: process already finished",
                req.id
            )));
        }
        // The init process is PID 1 of the container's pid namespace (when it has one):
        // when it dies the kernel kills the rest, which is what `all` asks for.
        match kill(Pid::from_raw(life.pid as i32), signal) {
            Ok(()) => {
                tracing::info!(pid = life.pid, %signal, "signal sent");
                Ok(api::Empty::new())
            }
            Err(nix::Error::ESRCH) => Err(TaskError::NotFound(format!(
                "{}: process already finished",
                req.id
            ))),
            Err(e) => Err(TaskError::Internal(format!(
                "container {}: kill {signal} to pid {}: {e}",
                req.id, life.pid
            ))),
        }
    }
}
