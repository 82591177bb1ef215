//! A containerd daemon private to one test (or one demo), and `ctr` calls against it.

use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The containerd namespace the tests use.
pub const NAMESPACE: &str = "triage-test";
/// The runtime name `ctr run --runtime` takes for Triage.
pub const TRIAGE_RUNTIME: &str = "io.containerd.triage.v1";

/// What one `ctr` call did.
#[derive(Debug, Clone)]
pub struct CtrOutput {
    /// Exit code (-1 if killed by a signal).
    pub code: i32,
    /// Captured stdout.
    pub stdout: String,
    /// Captured stderr.
    pub stderr: String,
}

impl CtrOutput {
    fn from_output(output: Output) -> Self {
        Self {
            code: output.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        }
    }
}

/// The CRI plugin's namespace.
pub const CRI_NAMESPACE: &str = "k8s.io";
/// The sandbox ("pause") image a CRI-enabled daemon is configured with.
pub const PAUSE_IMAGE: &str = "triage.test/pause:latest";

/// A running containerd whose config, root, state and sockets live in one temp dir.
pub struct PrivateContainerd {
    dir: tempfile::TempDir,
    daemon: Option<Child>,
    shim_dir: PathBuf,
    /// `TRIAGE_LOG` for the shims, if set.
    shim_log: Option<String>,
}

/// The CRI plugin's part of the config: Triage's handlers, no negative oom_score_adj
/// (this VM lacks CAP_SYS_RESOURCE), a random stream port, CNI under the temp dir.
fn cri_config(d: &Path) -> String {
    format!(
        r#"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = "{d}/cni"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
    runtime_type = "io.containerd.runc.v2"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.triage]
    runtime_type = "io.containerd.triage.v1"
    pod_annotations = ["triage.io/*", "module.wasm.image/*", "run.oci.handler"]
    container_annotations = ["triage.io/*", "module.wasm.image/*", "run.oci.handler"]
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.wasmedge]
    runtime_type = "io.containerd.wasmedge.v1"
    pod_annotations = ["triage.io/*", "module.wasm.image/*", "run.oci.handler"]
    container_annotations = ["triage.io/*", "module.wasm.image/*", "run.oci.handler"]
  # Handlers whose `options` Triage must honour or refuse (containerd 1.6 passes a
  # non-runc runtime's options as a ConfigPath).
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.triage-cgroupfs]
    runtime_type = "io.containerd.triage.v1"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.triage-cgroupfs.options]
      ConfigPath = "{d}/options-cgroupfs.toml"
  [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.triage-systemd]
    runtime_type = "io.containerd.triage.v1"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.triage-systemd.options]
      ConfigPath = "{d}/options-systemd.toml"
"#,
        d = d.display()
    )
}

/// The bridge and subnet of this daemon's pod network, unique per temp dir so that
/// parallel daemons do not collide: (`trg` + 6 characters of the dir name, 10.223.N.0/24).
pub fn pod_network(dir: &Path) -> (String, String) {
    let tag: String = dir
        .file_name()
        .map(|n| n.to_string_lossy().chars().rev().take(6).collect())
        .unwrap_or_default();
    let n = tag
        .bytes()
        .fold(0u32, |acc, b| acc.wrapping_mul(31).wrapping_add(b as u32))
        % 250
        + 1;
    (format!("trg{tag}"), format!("10.223.{n}.0/24"))
}

/// A bridge + host-local CNI network for pods that do not use the node's network.
fn write_cni_config(d: &Path) -> anyhow::Result<()> {
    let (bridge, subnet) = pod_network(d);
    let conflist = format!(
        r#"{{
  "cniVersion": "0.4.0",
  "name": "triage-test",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "{bridge}",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {{
        "type": "host-local",
        "ranges": [[{{"subnet": "{subnet}"}}]],
        "dataDir": "{d}/cni-ipam"
      }}
    }},
    {{"type": "loopback"}}
  ]
}}
"#,
        d = d.display()
    );
    std::fs::write(d.join("cni/10-triage-test.conflist"), conflist)
        .context("writing the CNI config")?;
    Ok(())
}

impl PrivateContainerd {
    /// Starts containerd (CRI plugin off) with `shim_dir` first on its PATH, and waits
    /// until it answers.
    pub fn start(shim_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(shim_dir, false, None)
    }

    /// Like [`PrivateContainerd::start`], with the shims' log filter (`TRIAGE_LOG`, e.g.
    /// `debug`).
    pub fn start_with_shim_log(shim_dir: &Path, filter: &str) -> anyhow::Result<Self> {
        Self::start_with(shim_dir, false, Some(filter))
    }

    /// Like [`PrivateContainerd::start`], with containerd's CRI plugin on, configured as
    /// a K3s node would be for Triage's `triage` and `wasmedge` handlers.
    pub fn start_with_cri(shim_dir: &Path) -> anyhow::Result<Self> {
        Self::start_with(shim_dir, true, None)
    }

    fn start_with(shim_dir: &Path, cri: bool, shim_log: Option<&str>) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("triage-ctd.")
            .tempdir_in("/tmp")
            .context("creating the containerd directory")?;
        let d = dir.path();
        let disabled = if cri {
            ""
        } else {
            r#""io.containerd.grpc.v1.cri""#
        };
        let mut config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
disabled_plugins = [{disabled}]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[debug]
  address = "{d}/debug.sock"
  level = "info"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#,
            d = d.display()
        );
        if cri {
            config.push_str(&cri_config(d));
            std::fs::create_dir_all(d.join("cni")).context("creating the CNI config dir")?;
            write_cni_config(d)?;
            std::fs::write(d.join("options-cgroupfs.toml"), "SystemdCgroup = false\n")?;
            std::fs::write(d.join("options-systemd.toml"), "SystemdCgroup = true\n")?;
        }
        std::fs::write(d.join("config.toml"), config).context("writing config.toml")?;
        let mut me = Self {
            dir,
            daemon: None,
            shim_dir: shim_dir.to_path_buf(),
            shim_log: shim_log.map(str::to_owned),
        };
        me.spawn_daemon()?;
        me.wait_ready()?;
        Ok(me)
    }

    /// The artifact cache the shims of this containerd use (`TRIAGE_CACHE_DIR`).
    pub fn artifact_cache_dir(&self) -> PathBuf {
        self.dir.path().join("artifact-cache")
    }

    /// The home directory of this containerd and its shims (`HOME`); it exists.
    pub fn home_dir(&self) -> PathBuf {
        self.dir.path().join("home")
    }

    /// The node profile file the shims of this containerd read (`TRIAGE_CONFIG`).
    pub fn node_profile_path(&self) -> PathBuf {
        self.dir.path().join("triage-config.toml")
    }

    /// Writes the node profile the shims of this containerd read (`TRIAGE_CONFIG`); without
    /// one they use the built-in profile.
    pub fn write_node_profile(&self, toml: &str) -> anyhow::Result<()> {
        std::fs::write(self.node_profile_path(), toml).context("writing the node profile")
    }

    /// Starts the daemon on the existing config; its output is appended to the log.
    fn spawn_daemon(&mut self) -> anyhow::Result<()> {
        let d = self.dir.path();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(d.join("containerd.log"))
            .context("opening containerd.log")?;
        let path = format!(
            "{}:{}",
            self.shim_dir.display(),
            std::env::var("PATH").unwrap_or_else(|_| "/usr/sbin:/usr/bin:/sbin:/bin".into())
        );
        std::fs::create_dir_all(self.home_dir()).context("creating the node's home")?;
        let mut command = Command::new("containerd");
        command
            .arg("--config")
            .arg(d.join("config.toml"))
            .env("PATH", path)
            .env("TRIAGE_CONFIG", self.node_profile_path())
            .env("TRIAGE_CACHE_DIR", d.join("artifact-cache"))
            // The node's wasi-nn backends are what its profile says: a test that wants
            // ONNX Runtime names the library there.
            .env_remove("TRIAGE_ONNXRUNTIME")
            // A node is not a CI job: libraries that behave differently under CI (ONNX
            // Runtime's telemetry is off there) are tested as a node runs them, and what
            // turns that telemetry off is the shim's doing, not the test's environment.
            .env_remove("CI")
            .env_remove("ORT_DISABLE_TELEMETRY")
            // Its own home, where a library's files would show.
            .env("HOME", self.home_dir())
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log);
        if let Some(filter) = &self.shim_log {
            command.env("TRIAGE_LOG", filter);
        }
        // SAFETY: setsid is async-signal-safe; the daemon gets its own session so that
        // signals meant for the test runner do not reach it.
        unsafe {
            command.pre_exec(|| nix::unistd::setsid().map(|_| ()).map_err(Into::into));
        }
        self.daemon = Some(command.spawn().context("starting containerd")?);
        Ok(())
    }

    /// Stops the daemon by PID (TERM, then KILL after 10 s), leaving shims running.
    fn stop_daemon(&mut self) {
        if let Some(mut daemon) = self.daemon.take() {
            let pid = nix::unistd::Pid::from_raw(daemon.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            let deadline = Instant::now() + Duration::from_secs(10);
            while daemon.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = daemon.kill();
            let _ = daemon.wait();
        }
    }

    /// Runs the shim's `delete` action (containerd's clean-up for a dead shim) on every
    /// bundle still present, so that a test that failed half-way leaves no container
    /// process, cgroup or mount behind.
    fn clean_up_left_tasks(&self) {
        let tasks = self.dir.path().join("state/io.containerd.runtime.v2.task");
        let Ok(namespaces) = std::fs::read_dir(&tasks) else {
            return;
        };
        for namespace in namespaces.filter_map(|e| e.ok()) {
            let Ok(bundles) = std::fs::read_dir(namespace.path()) else {
                continue;
            };
            for bundle in bundles.filter_map(|e| e.ok()) {
                let _ = Command::new(self.shim_dir.join("containerd-shim-triage-v1"))
                    .args(["-namespace", &namespace.file_name().to_string_lossy()])
                    .args(["-id", &bundle.file_name().to_string_lossy()])
                    .arg("-bundle")
                    .arg(bundle.path())
                    .arg("delete")
                    .current_dir(bundle.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status();
            }
        }
    }

    /// Restarts containerd as an operator would: the daemon stops, its shims keep
    /// running, and the new daemon reconnects to them.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop_daemon();
        self.spawn_daemon()?;
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if self.ctr(&["version"]).code == 0 {
                return Ok(());
            }
            if let Some(status) = self
                .daemon
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                bail!(
                    "containerd exited with {status} during start-up:\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                bail!("containerd did not answer within 30 s:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The directory holding everything of this daemon.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// containerd's gRPC socket.
    pub fn socket(&self) -> PathBuf {
        self.dir.path().join("containerd.sock")
    }

    /// containerd's log so far, including the shims' log lines it copied.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The file containerd (and the shims it starts) log to.
    pub fn log_path(&self) -> std::path::PathBuf {
        self.dir.path().join("containerd.log")
    }

    /// A `ctr` command against this daemon, in [`NAMESPACE`].
    pub fn ctr_command(&self, args: &[&str]) -> Command {
        self.ctr_command_in(NAMESPACE, args)
    }

    fn ctr_command_in(&self, namespace: &str, args: &[&str]) -> Command {
        let mut command = Command::new("ctr");
        command
            .arg("--address")
            .arg(self.socket())
            .args(["--namespace", namespace])
            .args(args)
            .stdin(Stdio::null());
        command
    }

    /// Runs `ctr` to completion.
    pub fn ctr(&self, args: &[&str]) -> CtrOutput {
        self.ctr_in(NAMESPACE, args)
    }

    /// Runs `ctr` in containerd namespace `namespace`.
    pub fn ctr_in(&self, namespace: &str, args: &[&str]) -> CtrOutput {
        match self.ctr_command_in(namespace, args).output() {
            Ok(output) => CtrOutput::from_output(output),
            Err(e) => CtrOutput {
                code: -1,
                stdout: String::new(),
                stderr: format!("cannot run ctr: {e}"),
            },
        }
    }

    /// Imports an OCI archive.
    pub fn import(&self, archive: &Path) -> anyhow::Result<()> {
        self.import_into(NAMESPACE, archive)
    }

    /// Imports an OCI archive into `namespace` (CRI sees only [`CRI_NAMESPACE`]).
    pub fn import_into(&self, namespace: &str, archive: &Path) -> anyhow::Result<()> {
        let archive = archive.display().to_string();
        let out = self.ctr_in(
            namespace,
            &["images", "import", "--all-platforms", &archive],
        );
        if out.code != 0 {
            bail!(
                "ctr images import {archive} failed: {}{}",
                out.stdout,
                out.stderr
            );
        }
        Ok(())
    }

    /// The bundle directory containerd would use for task `id`.
    pub fn bundle_dir(&self, id: &str) -> PathBuf {
        self.bundle_dir_in(NAMESPACE, id)
    }

    /// The bundle directory of task `id` in containerd namespace `namespace`.
    pub fn bundle_dir_in(&self, namespace: &str, id: &str) -> PathBuf {
        self.dir
            .path()
            .join("state/io.containerd.runtime.v2.task")
            .join(namespace)
            .join(id)
    }

    /// Stops containerd by PID (TERM, then KILL), kills shims it left, and unmounts
    /// everything under its directory. Called on drop.
    pub fn stop(&mut self) {
        self.stop_daemon();
        crate::host::kill_processes_mentioning(&self.socket().display().to_string());
        self.clean_up_left_tasks();
        crate::host::unmount_under(self.dir.path());
        // The CNI bridge outlives its pods by design; this daemon's network goes with it.
        let (bridge, _) = pod_network(self.dir.path());
        let _ = Command::new("ip")
            .args(["link", "delete", &bridge])
            .stderr(Stdio::null())
            .status();
    }
}

/// Removes the per-namespace cgroup parents (`/triage-test`) the containers' cgroups were
/// made under, in every hierarchy, where they are empty. For a program that runs alone
/// (the demo): between tests it could race another test's container creation.
pub fn remove_namespace_cgroups() {
    let Ok(hierarchies) = std::fs::read_dir("/sys/fs/cgroup") else {
        return;
    };
    for hierarchy in hierarchies.flatten() {
        let _ = std::fs::remove_dir(hierarchy.path().join(NAMESPACE));
    }
    let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(NAMESPACE));
}

impl Drop for PrivateContainerd {
    fn drop(&mut self) {
        self.stop();
    }
}
