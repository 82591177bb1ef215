//! Calls to containerd's gRPC API for what `ctr` cannot do (create a task without
//! starting it).

use anyhow::Context;
use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::snapshots::snapshots_client::SnapshotsClient;
use containerd_client::services::v1::snapshots::MountsRequest;
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{CreateTaskRequest, DeleteTaskRequest, GetContainerRequest};
use containerd_client::tonic::Request;
use containerd_client::with_namespace;

use crate::containerd::{PrivateContainerd, NAMESPACE};

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?)
}

impl PrivateContainerd {
    /// Creates the task of existing container `id` (made with `ctr container create`)
    /// without starting it, as a kubelet or containerd client may; returns its pid.
    pub fn create_task_only(&self, id: &str) -> anyhow::Result<u32> {
        runtime()?.block_on(async {
            let channel = containerd_client::connect(self.socket()).await?;
            let container = ContainersClient::new(channel.clone())
                .get(with_namespace!(
                    GetContainerRequest { id: id.to_owned() },
                    NAMESPACE
                ))
                .await?
                .into_inner()
                .container
                .context("containerd returned no container")?;
            let mounts = SnapshotsClient::new(channel.clone())
                .mounts(with_namespace!(
                    MountsRequest {
                        snapshotter: container.snapshotter.clone(),
                        key: container.snapshot_key.clone(),
                    },
                    NAMESPACE
                ))
                .await?
                .into_inner()
                .mounts;
            let request = CreateTaskRequest {
                container_id: id.to_owned(),
                rootfs: mounts,
                ..Default::default()
            };
            let created = TasksClient::new(channel)
                .create(with_namespace!(request, NAMESPACE))
                .await?
                .into_inner();
            Ok(created.pid)
        })
    }

    /// Deletes the task of `id` through the Tasks API, whatever its state (`ctr task rm`
    /// refuses a task that never ran); returns its exit status.
    pub fn delete_task(&self, id: &str) -> anyhow::Result<u32> {
        runtime()?.block_on(async {
            let channel = containerd_client::connect(self.socket()).await?;
            let request = DeleteTaskRequest {
                container_id: id.to_owned(),
            };
            let deleted = TasksClient::new(channel)
                .delete(with_namespace!(request, NAMESPACE))
                .await?
                .into_inner();
            Ok(deleted.exit_status)
        })
    }
}
