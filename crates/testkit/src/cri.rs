//! A blocking client for containerd's CRI plugin — the calls kubelet (and so K3s) makes.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
pub use k8s_cri::v1 as api;
use k8s_cri::v1::runtime_service_client::RuntimeServiceClient;

use crate::containerd::PrivateContainerd;

/// CRI's `RuntimeService` over containerd's socket.
pub struct CriClient {
    runtime: tokio::runtime::Runtime,
    client: RuntimeServiceClient<containerd_client::tonic::transport::Channel>,
}

/// A pod on the node's network (no CNI involved), logging under `log_dir`.
pub fn host_network_pod(name: &str, uid: &str, log_dir: &Path) -> api::PodSandboxConfig {
    api::PodSandboxConfig {
        metadata: Some(api::PodSandboxMetadata {
            name: name.to_owned(),
            uid: uid.to_owned(),
            namespace: "default".to_owned(),
            attempt: 0,
        }),
        // As kubelet does: a host-network pod shares the node's UTS namespace, so it
        // gets no hostname of its own.
        hostname: String::new(),
        log_directory: log_dir.display().to_string(),
        linux: Some(api::LinuxPodSandboxConfig {
            security_context: Some(api::LinuxSandboxSecurityContext {
                namespace_options: Some(api::NamespaceOption {
                    network: api::NamespaceMode::Node as i32,
                    pid: api::NamespaceMode::Container as i32,
                    ipc: api::NamespaceMode::Pod as i32,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A pod with a network namespace of its own, set up by the node's CNI (bridge +
/// host-local in the private containerd), and its name as hostname; logging under `log_dir`.
pub fn bridge_network_pod(name: &str, uid: &str, log_dir: &Path) -> api::PodSandboxConfig {
    let mut config = host_network_pod(name, uid, log_dir);
    config.hostname = name.to_owned();
    if let Some(namespaces) = config
        .linux
        .as_mut()
        .and_then(|linux| linux.security_context.as_mut())
        .and_then(|security| security.namespace_options.as_mut())
    {
        namespaces.network = api::NamespaceMode::Pod as i32;
    }
    config
}

/// A container of `image` running `command`, logging to `log_path` (relative to the
/// pod's log directory).
pub fn container(
    name: &str,
    image: &str,
    command: &[&str],
    log_path: &str,
) -> api::ContainerConfig {
    api::ContainerConfig {
        metadata: Some(api::ContainerMetadata {
            name: name.to_owned(),
            attempt: 0,
        }),
        image: Some(api::ImageSpec {
            image: image.to_owned(),
            ..Default::default()
        }),
        command: command.iter().map(|s| s.to_string()).collect(),
        log_path: log_path.to_owned(),
        ..Default::default()
    }
}

impl CriClient {
    /// Connects to the CRI plugin of `ctd` (started with CRI on).
    pub fn connect(ctd: &PrivateContainerd) -> anyhow::Result<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?;
        let channel = runtime.block_on(containerd_client::connect(ctd.socket()))?;
        Ok(Self {
            runtime,
            client: RuntimeServiceClient::new(channel),
        })
    }

    /// RunPodSandbox with `handler` (the RuntimeClass handler); returns the pod id.
    pub fn run_pod(
        &mut self,
        config: &api::PodSandboxConfig,
        handler: &str,
    ) -> anyhow::Result<String> {
        let request = api::RunPodSandboxRequest {
            config: Some(config.clone()),
            runtime_handler: handler.to_owned(),
        };
        let response = self
            .runtime
            .block_on(self.client.run_pod_sandbox(request))
            .context("RunPodSandbox")?;
        Ok(response.into_inner().pod_sandbox_id)
    }

    /// CreateContainer in pod `pod`; returns the container id.
    pub fn create_container(
        &mut self,
        pod: &str,
        config: api::ContainerConfig,
        sandbox: &api::PodSandboxConfig,
    ) -> anyhow::Result<String> {
        let request = api::CreateContainerRequest {
            pod_sandbox_id: pod.to_owned(),
            config: Some(config),
            sandbox_config: Some(sandbox.clone()),
        };
        let response = self
            .runtime
            .block_on(self.client.create_container(request))
            .context("CreateContainer")?;
        Ok(response.into_inner().container_id)
    }

    /// StartContainer.
    pub fn start_container(&mut self, id: &str) -> anyhow::Result<()> {
        let request = api::StartContainerRequest {
            container_id: id.to_owned(),
        };
        self.runtime
            .block_on(self.client.start_container(request))
            .context("StartContainer")?;
        Ok(())
    }

    /// The pod's IP on its network (empty for host-network pods).
    pub fn pod_ip(&mut self, pod: &str) -> anyhow::Result<String> {
        let request = api::PodSandboxStatusRequest {
            pod_sandbox_id: pod.to_owned(),
            verbose: false,
        };
        let response = self
            .runtime
            .block_on(self.client.pod_sandbox_status(request))
            .context("PodSandboxStatus")?;
        Ok(response
            .into_inner()
            .status
            .and_then(|s| s.network)
            .map(|n| n.ip)
            .unwrap_or_default())
    }

    /// ContainerStatus.
    pub fn container_status(&mut self, id: &str) -> anyhow::Result<api::ContainerStatus> {
        let request = api::ContainerStatusRequest {
            container_id: id.to_owned(),
            verbose: false,
        };
        let response = self
            .runtime
            .block_on(self.client.container_status(request))
            .context("ContainerStatus")?;
        response
            .into_inner()
            .status
            .context("ContainerStatus without a status")
    }

    /// Polls ContainerStatus until the container runs (deadline 30 s). Errors count as
    /// "not yet", as kubelet treats them: after a containerd restart CRI answers "not
    /// initialized" until it has recovered its state.
    pub fn wait_running(&mut self, id: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let last = match self.container_status(id) {
                Ok(status) if status.state == api::ContainerState::ContainerRunning as i32 => {
                    return Ok(())
                }
                Ok(status) => format!("{status:?}"),
                Err(e) => format!("{e:#}"),
            };
            if Instant::now() > deadline {
                bail!("container {id} is not running: {last}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// Polls ContainerStatus until the container has exited (deadline 30 s).
    pub fn wait_exited(&mut self, id: &str) -> anyhow::Result<api::ContainerStatus> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let status = self.container_status(id)?;
            if status.state == api::ContainerState::ContainerExited as i32 {
                return Ok(status);
            }
            if Instant::now() > deadline {
                bail!("container {id} did not exit: {status:?}");
            }
            std::thread::sleep(Duration::from_millis(25));
        }
    }

    /// StopContainer with a grace period.
    pub fn stop_container(&mut self, id: &str, timeout_s: i64) -> anyhow::Result<()> {
        let request = api::StopContainerRequest {
            container_id: id.to_owned(),
            timeout: timeout_s,
        };
        self.runtime
            .block_on(self.client.stop_container(request))
            .context("StopContainer")?;
        Ok(())
    }

    /// UpdateContainerResources (Linux resources only).
    pub fn update_resources(
        &mut self,
        id: &str,
        resources: api::LinuxContainerResources,
    ) -> anyhow::Result<()> {
        let request = api::UpdateContainerResourcesRequest {
            container_id: id.to_owned(),
            linux: Some(resources),
            ..Default::default()
        };
        self.runtime
            .block_on(self.client.update_container_resources(request))
            .context("UpdateContainerResources")?;
        Ok(())
    }

    /// RemoveContainer.
    pub fn remove_container(&mut self, id: &str) -> anyhow::Result<()> {
        let request = api::RemoveContainerRequest {
            container_id: id.to_owned(),
        };
        self.runtime
            .block_on(self.client.remove_container(request))
            .context("RemoveContainer")?;
        Ok(())
    }

    /// StopPodSandbox.
    pub fn stop_pod(&mut self, id: &str) -> anyhow::Result<()> {
        let request = api::StopPodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.runtime
            .block_on(self.client.stop_pod_sandbox(request))
            .context("StopPodSandbox")?;
        Ok(())
    }

    /// RemovePodSandbox.
    pub fn remove_pod(&mut self, id: &str) -> anyhow::Result<()> {
        let request = api::RemovePodSandboxRequest {
            pod_sandbox_id: id.to_owned(),
        };
        self.runtime
            .block_on(self.client.remove_pod_sandbox(request))
            .context("RemovePodSandbox")?;
        Ok(())
    }
}
