//! Start: release a created container's init process into its workload.

use containerd_shim_protos::api;
use containerd_shim_protos::events::task::TaskStart;

use super::{TaskError, TaskService};
use crate::events::TaskEvent;
use crate::helper::{self, HelperRequest};

impl TaskService {
    pub(super) fn task_start(
        &self,
        req: &api::StartRequest,
    ) -> Result<api::StartResponse, TaskError> {
        Self::no_exec(&req.id, &req.exec_id)?;
        let container = self.container(&req.id)?;
        let pid = container.begin_start()?;
        let request = HelperRequest::Start {
            id: container.id.clone(),
            bundle: container.bundle.clone(),
        };
        let result = helper::call(&request, None, self.log.as_ref(), &self.exits);
        container.finish_start(result.is_ok(), || {
            self.events.publish(TaskEvent::Start(TaskStart {
                container_id: container.id.clone(),
                pid,
                ..Default::default()
            }))
        });
        result?;
        tracing::info!(pid, "started");
        Ok(api::StartResponse {
            pid,
            ..Default::default()
        })
    }
}
