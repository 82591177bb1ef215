//! Pause and Resume: freeze and thaw a running container's processes (cgroup freezer).

use containerd_shim_protos::api;
use containerd_shim_protos::events::task::{TaskPaused, TaskResumed};

use super::state::Status;
use super::{TaskError, TaskService};
use crate::events::TaskEvent;

impl TaskService {
    pub(super) fn task_pause(&self, id: &str) -> Result<api::Empty, TaskError> {
        self.freeze(id, true)
    }

    pub(super) fn task_resume(&self, id: &str) -> Result<api::Empty, TaskError> {
        self.freeze(id, false)
    }

    /// Freezes (Running → Paused) or thaws (Paused → Running), then publishes the event.
    fn freeze(&self, id: &str, freeze: bool) -> Result<api::Empty, TaskError> {
        let container = self.container(id)?;
        let (from, to) = if freeze {
            (Status::Running, Status::Paused)
        } else {
            (Status::Paused, Status::Running)
        };
        container.transition(from, to, || {
            let helper = self.helpers.container(&container.id, &container.bundle);
            if freeze {
                helper.pause()
            } else {
                helper.resume()
            }
        })?;
        let container_id = container.id.clone();
        self.events.publish(if freeze {
            TaskEvent::Paused(TaskPaused {
                container_id,
                ..Default::default()
            })
        } else {
            TaskEvent::Resumed(TaskResumed {
                container_id,
                ..Default::default()
            })
        });
        tracing::info!(paused = freeze, "freezer changed");
        Ok(api::Empty::new())
    }
}
