//! The three ways containerd runs the shim binary: `start`, `delete`, and the daemon.

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::SystemTime;

use anyhow::Context;
use containerd_shim_protos::api::DeleteResponse;
use containerd_shim_protos::protobuf::Message;
use sha2::{Digest, Sha256};

use crate::args::Flags;
use crate::events::{timestamp, Publisher};
use crate::logging;
use crate::reaper::{self, ExitRegistry};
use crate::task::{self, ShutdownSignal, TaskService};

/// Where shim sockets live, as containerd's own shims place them.
const SOCKET_ROOT: &str = "/run/containerd/s";
/// The fd on which the daemon finds its listening socket.
const LISTENER_FD: i32 = 3;
/// Annotation CRI sets on every container of a pod: the pod's containers share a shim.
const SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// Exit status containerd records for a task whose shim is gone.
const KILLED_STATUS: u32 = 128 + 9;

/// The shim socket for a (containerd, namespace, group), as containerd's Go shims name it.
pub fn socket_address(containerd: &str, namespace: &str, group: &str) -> String {
    let key = Path::new(containerd).join(namespace).join(group);
    let digest = Sha256::digest(key.as_os_str().as_encoded_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("unix://{SOCKET_ROOT}/{hex}")
}

/// The shim group of a container: its pod's sandbox id, or its own id.
fn group_of(bundle: &Path, id: &str) -> String {
    std::fs::read(bundle.join("config.json"))
        .ok()
        .and_then(|bytes| serde_json::from_slice::<serde_json::Value>(&bytes).ok())
        .and_then(|spec| spec["annotations"][SANDBOX_ID].as_str().map(str::to_owned))
        .unwrap_or_else(|| id.to_owned())
}

/// `start`: make sure a daemon serves this container's group and print its address.
pub fn start(flags: &Flags) -> anyhow::Result<()> {
    let bundle = std::env::current_dir().context("reading the bundle directory (cwd)")?;
    let address = socket_address(
        &flags.address,
        &flags.namespace,
        &group_of(&bundle, &flags.id),
    );
    let path = address.trim_start_matches("unix://");

    if UnixStream::connect(path).is_err() {
        let _ = std::fs::remove_file(path);
        std::fs::create_dir_all(SOCKET_ROOT).with_context(|| format!("creating {SOCKET_ROOT}"))?;
        let listener =
            UnixListener::bind(path).with_context(|| format!("binding shim socket {path}"))?;
        // Park the fd above 3: dup2 onto itself would keep close-on-exec set.
        let parked = nix::fcntl::fcntl(
            listener.as_raw_fd(),
            nix::fcntl::FcntlArg::F_DUPFD_CLOEXEC(10),
        )
        .context("duplicating the shim socket")?;
        // SAFETY: fcntl returned a new descriptor that nothing else owns.
        let parked = unsafe { OwnedFd::from_raw_fd(parked) };
        let pid = spawn_daemon(flags, &address, &bundle, parked.as_raw_fd())?;
        std::fs::write(bundle.join("shim.pid"), pid.to_string()).context("writing shim.pid")?;
    }
    std::fs::write(bundle.join("address"), &address).context("writing address file")?;
    let mut out = std::io::stdout().lock();
    out.write_all(address.as_bytes())?;
    out.flush()?;
    Ok(())
}

fn spawn_daemon(flags: &Flags, address: &str, bundle: &Path, listener: i32) -> anyhow::Result<u32> {
    let exe = std::env::current_exe().context("locating the shim binary")?;
    let mut command = Command::new(exe);
    command
        .args([
            "-namespace",
            &flags.namespace,
            "-id",
            &flags.id,
            "-address",
            &flags.address,
        ])
        .args(["-publish-binary", &flags.publish_binary, "-socket", address])
        .current_dir(bundle)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    if flags.debug {
        command.arg("-debug");
    }
    // SAFETY: setsid and dup2 are async-signal-safe.
    unsafe {
        command.pre_exec(move || {
            nix::unistd::setsid()?;
            if libc::dup2(listener, LISTENER_FD) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = command.spawn().context("spawning the shim daemon")?;
    Ok(child.id())
}

/// The daemon: serve the Task API until containerd shuts the shim down.
pub fn serve(flags: &Flags) -> anyhow::Result<()> {
    // Before any thread exists: every thread inherits the mask, the reaper sigwaits.
    reaper::block_sigchld().context("blocking SIGCHLD")?;
    // SAFETY: plain prctl on this process.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
        return Err(std::io::Error::last_os_error()).context("becoming a child subreaper");
    }
    let bundle = std::env::current_dir().context("reading the bundle directory (cwd)")?;
    let log = logging::open_log_fifo(&bundle);
    logging::init(log.as_ref().and_then(|f| f.try_clone().ok()), flags.debug);
    // Lines outside any request still name the container the shim was started for.
    let span = tracing::info_span!("shim", id = %flags.id);
    let _guard = span.enter();

    let ttrpc_address = std::env::var("TTRPC_ADDRESS").context("TTRPC_ADDRESS is not set")?;
    let exits = Arc::new(ExitRegistry::default());
    reaper::spawn(Arc::clone(&exits)).context("starting the reaper")?;
    let events = Publisher::spawn(ttrpc_address, flags.namespace.clone())
        .context("starting the event publisher")?;
    let shutdown = Arc::new(ShutdownSignal::default());
    let service = Arc::new(TaskService::new(
        flags.namespace.clone(),
        PathBuf::from(&flags.address),
        exits,
        events,
        log,
        Arc::clone(&shutdown),
    ));

    // SAFETY: `start` passed the listening socket as fd 3 and nothing else owns it.
    let listener = unsafe { OwnedFd::from_raw_fd(LISTENER_FD) };
    let mut server = ttrpc::Server::new()
        .add_listener(listener.as_raw_fd())
        .context("serving the shim socket")?
        .register_service(task::methods(service));
    std::mem::forget(listener); // the server owns the fd now
    if let Err(e) = server.start() {
        tracing::error!("starting the ttrpc server: {e}");
        return Err(e).context("starting the ttrpc server");
    }
    tracing::info!(socket = %flags.socket, pid = std::process::id(), "shim serving");

    shutdown.wait();
    server.shutdown();
    let _ = std::fs::remove_file(flags.socket.trim_start_matches("unix://"));
    tracing::info!("shim exited");
    Ok(())
}

/// Removes the socket of the bundle's shim (its `address` file) when no shim listens on it
/// any more: a killed daemon cannot remove it itself. A socket another container of the
/// same group is still served on answers, and stays.
fn remove_dead_socket(bundle: &Path) {
    let Ok(address) = std::fs::read_to_string(bundle.join("address")) else {
        return;
    };
    let path = Path::new(address.trim().trim_start_matches("unix://"));
    if path.exists() && std::os::unix::net::UnixStream::connect(path).is_err() {
        match std::fs::remove_file(path) {
            Ok(()) => tracing::info!(socket = %path.display(), "removed the dead shim's socket"),
            Err(e) => {
                tracing::warn!(socket = %path.display(), "removing the dead shim's socket: {e}")
            }
        }
    }
}

/// `delete`: containerd's clean-up after a shim that is gone.
pub fn delete(flags: &Flags) -> anyhow::Result<()> {
    logging::init(None, flags.debug);
    let span = tracing::info_span!("cleanup", id = %flags.id);
    let _guard = span.enter();
    let bundle = if flags.bundle.is_empty() {
        std::env::current_dir().context("reading the bundle directory (cwd)")?
    } else {
        PathBuf::from(&flags.bundle)
    };
    // A fresh, single-threaded process: libcontainer may run here directly.
    if let Err(e) = triage_runtime::container::delete(&flags.id, &bundle) {
        tracing::warn!("{e}");
    }
    if let Err(e) = triage_runtime::rootfs::unmount_rootfs(&flags.id, &bundle.join("rootfs")) {
        tracing::warn!("{e}");
    }
    remove_dead_socket(&bundle);
    let response = DeleteResponse {
        exit_status: KILLED_STATUS,
        exited_at: Some(timestamp(SystemTime::now())).into(),
        ..Default::default()
    };
    let mut out = std::io::stdout().lock();
    response.write_to_writer(&mut out)?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_address_matches_containerds_scheme() {
        // sha256("/run/containerd/containerd.sock/default/c1")
        let address = socket_address("/run/containerd/containerd.sock", "default", "c1");
        let expected = Sha256::digest(b"/run/containerd/containerd.sock/default/c1");
        let hex: String = expected.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(address, format!("unix:///run/containerd/s/{hex}"));
    }

    #[test]
    fn pod_containers_share_a_group() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            br#"{"annotations":{"io.kubernetes.cri.sandbox-id":"pod-1"}}"#,
        )
        .unwrap();
        assert_eq!(group_of(dir.path(), "ctr-1"), "pod-1");
        assert_eq!(group_of(Path::new("/nonexistent"), "ctr-2"), "ctr-2");
    }
}
