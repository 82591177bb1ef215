//! Update: new resource limits for a running task, checked against the node profile.

use containerd_shim_protos::api;
use triage_oci::{CgroupQuota, LinuxResources};
use triage_runtime::container::update;

use super::state::Status;
use super::{TaskError, TaskService};

impl TaskService {
    pub(super) fn task_update(
        &self,
        req: &api::UpdateTaskRequest,
    ) -> Result<api::Empty, TaskError> {
        let container = self.container(&req.id)?;
        let id = container.id.as_str();
        let Some(any) = req.resources.as_ref() else {
            return Err(TaskError::InvalidArgument(format!(
                "container {id}: update carries no resources"
            )));
        };
        // containerd sends the runtime-spec's LinuxResources as JSON.
        let resources: LinuxResources = serde_json::from_slice(&any.value).map_err(|e| {
            TaskError::InvalidArgument(format!(
                "container {id}: update resources ({}) are not runtime-spec LinuxResources: {e}",
                any.type_url
            ))
        })?;
        let profile = crate::profile::load()
            .map_err(|e| TaskError::FailedPrecondition(format!("container {id}: {e}")))?;
        let quota = CgroupQuota::from_resources(Some(&resources));
        quota.check(id, &profile)?;
        let life = container.lock();
        if life.status == Status::Stopped {
            return Err(TaskError::FailedPrecondition(format!(
                "container {id}: cannot update a stopped task"
            )));
        }
        update(id, &container.bundle, &resources)?;
        tracing::info!(?quota, "resources updated");
        Ok(api::Empty::new())
    }
}
