//! State, Wait, Pids and Connect: read-only views of a task.

use containerd_shim_protos::api;
use containerd_shim_protos::protobuf::EnumOrUnknown;

use super::state::Status;
use super::{TaskError, TaskService};
use crate::events::timestamp;

impl TaskService {
    pub(super) fn task_state(
        &self,
        req: &api::StateRequest,
    ) -> Result<api::StateResponse, TaskError> {
        let container = self.container(&req.id)?;
        let target = container.process(&req.exec_id)?;
        let stdio = target.stdio(&container);
        let life = target.get(&container).lock();
        let status = match life.status {
            Status::Created | Status::Starting => api::Status::CREATED,
            Status::Running => api::Status::RUNNING,
            Status::Paused => api::Status::PAUSED,
            Status::Stopped => api::Status::STOPPED,
        };
        Ok(api::StateResponse {
            id: container.id.clone(),
            bundle: container.bundle.display().to_string(),
            pid: life.pid,
            status: EnumOrUnknown::new(status),
            exec_id: req.exec_id.clone(),
            stdin: stdio.stdin.clone(),
            stdout: stdio.stdout.clone(),
            stderr: stdio.stderr.clone(),
            terminal: target.get(&container).terminal.get().is_some(),
            exit_status: life.exit.map(|e| e.status).unwrap_or_default(),
            exited_at: life.exit.map(|e| timestamp(e.at)).into(),
            ..Default::default()
        })
    }

    pub(super) fn task_wait(&self, req: &api::WaitRequest) -> Result<api::WaitResponse, TaskError> {
        let container = self.container(&req.id)?;
        let exit = container.process(&req.exec_id)?.get(&container).wait_exit();
        Ok(api::WaitResponse {
            exit_status: exit.status,
            exited_at: Some(timestamp(exit.at)).into(),
            ..Default::default()
        })
    }

    pub(super) fn task_pids(&self, req: &api::PidsRequest) -> Result<api::PidsResponse, TaskError> {
        let container = self.container(&req.id)?;
        let life = container.lock();
        let processes = if life.status == Status::Stopped {
            vec![]
        } else {
            triage_runtime::cgroup_procs::container_pids(life.pid)
                .into_iter()
                .map(|pid| api::ProcessInfo {
                    pid,
                    ..Default::default()
                })
                .collect()
        };
        Ok(api::PidsResponse {
            processes,
            ..Default::default()
        })
    }

    pub(super) fn task_connect(
        &self,
        req: &api::ConnectRequest,
    ) -> Result<api::ConnectResponse, TaskError> {
        let task_pid = self.container(&req.id).map(|c| c.lock().pid).unwrap_or(0);
        Ok(api::ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").to_owned(),
            ..Default::default()
        })
    }
}
