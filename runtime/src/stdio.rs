//! Opens the stdio FIFOs containerd names for a container, and relays its output to them.

use std::fs::OpenOptions;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::error::RuntimeError;

/// The stdio paths from `CreateTaskRequest` (empty means none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StdioPaths {
    /// stdin FIFO.
    pub stdin: String,
    /// stdout FIFO.
    pub stdout: String,
    /// stderr FIFO.
    pub stderr: String,
}

/// Open descriptors for a container's fds 0, 1 and 2.
#[derive(Debug)]
pub struct ContainerStdio {
    /// fd 0.
    pub stdin: OwnedFd,
    /// fd 1.
    pub stdout: OwnedFd,
    /// fd 2.
    pub stderr: OwnedFd,
}

impl ContainerStdio {
    /// Opens the FIFOs (or `/dev/null` where a path is empty) without blocking on a
    /// missing peer.
    pub fn open(id: &str, paths: &StdioPaths) -> Result<Self, RuntimeError> {
        Ok(Self {
            stdin: open_end(id, &paths.stdin, false)?,
            stdout: open_end(id, &paths.stdout, true)?,
            stderr: open_end(id, &paths.stderr, true)?,
        })
    }
}

/// Copies one output stream of a container (the read end of its pipe) to its FIFO until
/// every writer has closed the pipe, then closes the FIFO (the reader sees EOF).
pub type Relay = std::thread::JoinHandle<()>;

impl ContainerStdio {
    /// Like [`ContainerStdio::open`], but the container writes stdout and stderr into
    /// pipes that this process relays to the FIFOs. The container then never writes to a
    /// FIFO itself: when the reader goes away (`ctr run -d` returns, containerd restarts)
    /// its output is dropped instead of failing its writes with EPIPE or SIGPIPE, and
    /// flows again once a reader opens the FIFO. Call it in a process that outlives the
    /// container (the shim); its relays end when the container's last writer exits.
    pub fn open_relayed(id: &str, paths: &StdioPaths) -> Result<(Self, Vec<Relay>), RuntimeError> {
        let mut relays = Vec::new();
        let mut relayed = |path: &str| -> Result<OwnedFd, RuntimeError> {
            let fifo = open_end(id, path, true)?;
            if path.is_empty() {
                return Ok(fifo);
            }
            let (read, write) =
                nix::unistd::pipe2(OFlag::O_CLOEXEC).map_err(|e| RuntimeError::Io {
                    id: id.to_owned(),
                    op: "create output pipe for",
                    path: Path::new(path).to_path_buf(),
                    source: e.into(),
                })?;
            let name = format!("relay-{id}");
            let relay = std::thread::Builder::new()
                .name(name)
                .spawn(move || relay(read, fifo))
                .map_err(|source| RuntimeError::Io {
                    id: id.to_owned(),
                    op: "start output relay for",
                    path: Path::new(path).to_path_buf(),
                    source,
                })?;
            relays.push(relay);
            Ok(write)
        };
        let stdout = relayed(&paths.stdout)?;
        let stderr = relayed(&paths.stderr)?;
        Ok((
            Self {
                stdin: open_end(id, &paths.stdin, false)?,
                stdout,
                stderr,
            },
            relays,
        ))
    }
}

/// Copies `pipe` to `fifo` until `pipe` ends (EOF, or an error such as a terminal
/// master's EIO once its last user exits); output that cannot be written (no reader) is
/// dropped.
pub fn relay(pipe: OwnedFd, fifo: OwnedFd) {
    use std::io::{Read, Write};
    let mut pipe = std::fs::File::from(pipe);
    let mut fifo = std::fs::File::from(fifo);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                // EPIPE while no one reads the FIFO: drop this chunk, keep draining.
                let _ = fifo.write_all(&buf[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

fn open_end(id: &str, path: &str, write: bool) -> Result<OwnedFd, RuntimeError> {
    let io_err = |op, source| RuntimeError::Io {
        id: id.to_owned(),
        op,
        path: Path::new(path).to_path_buf(),
        source,
    };
    if path.is_empty() {
        let null = OpenOptions::new()
            .read(!write)
            .write(write)
            .open("/dev/null")
            .map_err(|e| io_err("open /dev/null for", e))?;
        return Ok(null.into());
    }
    if path.contains("://") {
        return Err(RuntimeError::Unsupported {
            id: id.to_owned(),
            what: format!("stdio URI {path:?} (only FIFO paths are)"),
        });
    }
    // Non-blocking opens never wait for the other end; a writer without a reader yet
    // (ENXIO) keeps the FIFO open read-write so the container's writes do not fail.
    let file = if write {
        match OpenOptions::new()
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
        {
            Ok(f) => f,
            Err(e) if e.raw_os_error() == Some(libc::ENXIO) => OpenOptions::new()
                .read(true)
                .write(true)
                .open(path)
                .map_err(|e| io_err("open stdio FIFO", e))?,
            Err(e) => return Err(io_err("open stdio FIFO", e)),
        }
    } else {
        OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| io_err("open stdin FIFO", e))?
    };
    let flags = fcntl(file.as_raw_fd(), FcntlArg::F_GETFL)
        .map_err(|e| io_err("read flags of", e.into()))?;
    let mut flags = OFlag::from_bits_truncate(flags);
    flags.remove(OFlag::O_NONBLOCK);
    fcntl(file.as_raw_fd(), FcntlArg::F_SETFL(flags))
        .map_err(|e| io_err("set blocking mode on", e.into()))?;
    Ok(file.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    /// A temp dir with a FIFO `out`, named as the stdout of `StdioPaths`.
    fn stdout_fifo() -> (tempfile::TempDir, StdioPaths) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out");
        nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        let paths = StdioPaths {
            stdout: path.display().to_string(),
            ..Default::default()
        };
        (dir, paths)
    }

    #[test]
    fn empty_paths_are_dev_null() {
        let stdio = ContainerStdio::open("c", &StdioPaths::default()).unwrap();
        let mut out = std::fs::File::from(stdio.stdout);
        out.write_all(b"discarded").unwrap();
    }

    #[test]
    fn fifo_without_reader_still_opens_and_data_flows_later() {
        let (dir, paths) = stdout_fifo();
        let path = dir.path().join("out");
        let stdio = ContainerStdio::open("c", &paths).unwrap();
        let mut reader = OpenOptions::new().read(true).open(&path).unwrap();
        let mut out = std::fs::File::from(stdio.stdout);
        out.write_all(b"hi").unwrap();
        let mut buf = [0u8; 2];
        reader.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
    }

    #[test]
    fn relayed_output_survives_its_reader_going_away() {
        let (dir, paths) = stdout_fifo();
        let path = dir.path().join("out");
        let first_reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(&path)
            .unwrap();
        let (stdio, relays) = ContainerStdio::open_relayed("c", &paths).unwrap();
        assert_eq!(relays.len(), 1);
        drop(stdio.stderr);
        let mut out = std::fs::File::from(stdio.stdout);
        // The reader leaves: writes still succeed (the relay drops them) ...
        drop(first_reader);
        out.write_all(b"nobody hears this\n").unwrap();
        // ... and a new reader gets what is written after it opened, then EOF.
        let mut reader = OpenOptions::new().read(true).open(&path).unwrap();
        out.write_all(b"hello again\n").unwrap();
        drop(out);
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert!(text.ends_with("hello again\n"), "{text:?}");
        for relay in relays {
            relay.join().unwrap();
        }
    }

    #[test]
    fn uri_is_rejected_with_container_id() {
        let paths = StdioPaths {
            stdout: "binary:///usr/bin/logger".into(),
            ..Default::default()
        };
        let err = ContainerStdio::open("c5", &paths).unwrap_err();
        assert!(
            err.to_string().starts_with("container c5: stdio URI"),
            "{err}"
        );
    }
}
