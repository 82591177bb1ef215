//! Pause and Resume: freeze and thaw a running container's processes (cgroup freezer).

use containerd_shim_protos::api;
use containerd_shim_protos::events::task::{TaskPaused, TaskResumed};

use super::state::Status;
use super::{TaskError, TaskService};
use crate::events::TaskEvent;
use crate::helper::{self, HelperRequest};

impl TaskService {
    pub(super) fn task_pause(&self, id: &str) -> Result<api::Empty, TaskError> {
        let container = self.container(id)?;
        let request = HelperRequest::Pause {
            id: container.id.clone(),
            bundle: container.bundle.clone(),
        };
        container.transition(Status::Running, Status::Paused, || {
            helper::call(&request, None, self.log.as_ref(), &self.exits).map(drop)
        })?;
        self.events.publish(TaskEvent::Paused(TaskPaused {
            container_id: container.id.clone(),
            ..Default::default()
        }));
        tracing::info!("paused");
        Ok(api::Empty::new())
    }

    pub(super) fn task_resume(&self, id: &str) -> Result<api::Empty, TaskError> {
        let container = self.container(id)?;
        let request = HelperRequest::Resume {
            id: container.id.clone(),
            bundle: container.bundle.clone(),
        };
        container.transition(Status::Paused, Status::Running, || {
            helper::call(&request, None, self.log.as_ref(), &self.exits).map(drop)
        })?;
        self.events.publish(TaskEvent::Resumed(TaskResumed {
            container_id: container.id.clone(),
            ..Default::default()
        }));
        tracing::info!("resumed");
        Ok(api::Empty::new())
    }
}
