//! Opens the stdio FIFOs containerd names for a container, and relays its output to them.

use std::fs::OpenOptions;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

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

/// The threads relaying one process's output streams to its FIFOs. A relay ends when
/// every writer of its stream has closed it (the process and anything it passed the
/// stream to) and it has written what they wrote. The shim holds a process's exit until
/// then, or until [`OutputRelays::stop`]: `ctr run` stops reading once it sees the exit,
/// so output still in flight would be lost.
#[derive(Debug)]
pub struct OutputRelays {
    shared: Arc<RelayShared>,
    /// Closing it wakes every relay (POLLHUP on `RelayShared::stop`).
    stop_write: Mutex<Option<OwnedFd>>,
}

/// What the relay threads of one process share with it.
#[derive(Debug)]
struct RelayShared {
    /// Relays not yet ended.
    running: Mutex<usize>,
    ended: Condvar,
    /// Read end of the stop pipe.
    stop: OwnedFd,
}

impl OutputRelays {
    /// No relays yet.
    pub fn new() -> std::io::Result<Self> {
        let (stop, stop_write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)?;
        Ok(Self {
            shared: Arc::new(RelayShared {
                running: Mutex::new(0),
                ended: Condvar::new(),
                stop,
            }),
            stop_write: Mutex::new(Some(stop_write)),
        })
    }

    /// Copies `pipe` to `fifo` in a thread named `name`, counted until `pipe` ends (EOF,
    /// or an error such as a terminal master's EIO once its last user has exited).
    /// Output that cannot be written (no reader) is dropped.
    pub fn relay(&self, name: String, pipe: OwnedFd, fifo: OwnedFd) -> std::io::Result<()> {
        /// Counts its relay out when the thread ends, however it ends.
        struct Running(Arc<RelayShared>);
        impl Drop for Running {
            fn drop(&mut self) {
                *self.0.running.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
                self.0.ended.notify_all();
            }
        }
        *self
            .shared
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner()) += 1;
        let running = Running(Arc::clone(&self.shared));
        std::thread::Builder::new()
            .name(name)
            .spawn(move || copy_until_end(pipe, fifo, &running.0.stop))
            .map(drop)
    }

    /// Waits until every relay has ended, for at most `limit`. Returns whether they did
    /// (false: something still holds an output stream open).
    pub fn wait_ended(&self, limit: Duration) -> bool {
        let running = self
            .shared
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let (running, _) = self
            .shared
            .ended
            .wait_timeout_while(running, limit, |running| *running > 0)
            .unwrap_or_else(|p| p.into_inner());
        *running == 0
    }

    /// Stops forwarding: each relay writes what is already in its pipe, closes its FIFO
    /// (the reader sees EOF), and from then on discards what still arrives, so a process
    /// that kept the stream is not killed by SIGPIPE.
    pub fn stop(&self) {
        self.stop_write
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
    }
}

/// The loop of one relay (see [`OutputRelays::relay`]).
fn copy_until_end(pipe: OwnedFd, fifo: OwnedFd, stop: &OwnedFd) {
    use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
    use std::io::{Read, Write};
    let mut pipe = std::fs::File::from(pipe);
    let mut fifo = Some(std::fs::File::from(fifo));
    let mut buf = vec![0u8; 64 * 1024];
    // Polls the pipe (and, while forwarding, the stop pipe); true when the pipe can be
    // read without blocking.
    let ready = |pipe: &std::fs::File, forwarding: bool, timeout: PollTimeout| -> (bool, bool) {
        let mut fds = [
            PollFd::new(pipe.as_fd(), PollFlags::POLLIN),
            PollFd::new(stop.as_fd(), PollFlags::POLLIN),
        ];
        let watched = if forwarding { 2 } else { 1 };
        match poll(&mut fds[..watched], timeout) {
            Ok(_) => {
                let fired = |fd: &PollFd| fd.revents().is_some_and(|r| !r.is_empty());
                (fired(&fds[0]), forwarding && fired(&fds[1]))
            }
            Err(nix::errno::Errno::EINTR) => (false, false),
            // Polling cannot fail on two valid descriptors; fall back to reading.
            Err(_) => (true, false),
        }
    };
    loop {
        let (readable, stopped) = ready(&pipe, fifo.is_some(), PollTimeout::NONE);
        if stopped {
            // Forward what is already there, then let the reader see the end.
            while ready(&pipe, false, PollTimeout::ZERO).0 {
                match pipe.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if let Some(fifo) = fifo.as_mut() {
                            let _ = fifo.write_all(&buf[..n]);
                        }
                    }
                }
            }
            fifo = None;
            continue;
        }
        if !readable {
            continue;
        }
        match pipe.read(&mut buf) {
            Ok(0) => return,
            Ok(n) => {
                // EPIPE while no one reads the FIFO: drop this chunk, keep draining.
                if let Some(fifo) = fifo.as_mut() {
                    let _ = fifo.write_all(&buf[..n]);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return,
        }
    }
}

impl ContainerStdio {
    /// Like [`ContainerStdio::open`], but the container writes stdout and stderr into
    /// pipes that this process relays to the FIFOs. The container then never writes to a
    /// FIFO itself: when the reader goes away (`ctr run -d` returns, containerd restarts)
    /// its output is dropped instead of failing its writes with EPIPE or SIGPIPE, and
    /// flows again once a reader opens the FIFO. Call it in a process that outlives the
    /// container (the shim); its relays end when the container's last writer exits.
    pub fn open_relayed(
        id: &str,
        paths: &StdioPaths,
    ) -> Result<(Self, OutputRelays), RuntimeError> {
        let relays = OutputRelays::new().map_err(|source| RuntimeError::Io {
            id: id.to_owned(),
            op: "create the output relays of",
            path: Path::new(&paths.stdout).to_path_buf(),
            source,
        })?;
        let relayed = |path: &str| -> Result<OwnedFd, RuntimeError> {
            let fifo = open_end(id, path, true)?;
            if path.is_empty() {
                return Ok(fifo);
            }
            let io_err = |op, source| RuntimeError::Io {
                id: id.to_owned(),
                op,
                path: Path::new(path).to_path_buf(),
                source,
            };
            let (read, write) = nix::unistd::pipe2(OFlag::O_CLOEXEC)
                .map_err(|e| io_err("create output pipe for", e.into()))?;
            relays
                .relay(format!("relay-{id}"), read, fifo)
                .map_err(|e| io_err("start output relay for", e))?;
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

    /// A FIFO with a non-blocking reader open, relayed stdout for it, and the relays.
    fn relayed_stdout() -> (
        tempfile::TempDir,
        std::fs::File,
        std::fs::File,
        OutputRelays,
    ) {
        let (dir, paths) = stdout_fifo();
        let reader = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(dir.path().join("out"))
            .unwrap();
        let (stdio, relays) = ContainerStdio::open_relayed("c", &paths).unwrap();
        drop(stdio.stderr);
        (dir, reader, std::fs::File::from(stdio.stdout), relays)
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
        let (dir, first_reader, mut out, relays) = relayed_stdout();
        let path = dir.path().join("out");
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
        assert!(relays.wait_ended(Duration::from_secs(10)));
    }

    /// What a process wrote before it exited is in the FIFO once the relays have ended,
    /// even when the reader is slow: a reader that stops as soon as they have (as `ctr`
    /// does on the exit) still gets all of it.
    #[test]
    fn relays_end_only_once_the_output_is_in_the_fifo() {
        let (_dir, mut reader, mut out, relays) = relayed_stdout();
        // More than a pipe and a FIFO hold: the writer finishes only as the reader reads.
        let sent = vec![b'x'; 512 * 1024];
        let writer = {
            let sent = sent.clone();
            std::thread::spawn(move || out.write_all(&sent).unwrap())
        };
        let mut got = Vec::new();
        let mut buf = vec![0u8; 4096];
        // Read slowly while the writer (the "process") writes and the relay forwards; stop
        // as soon as the relays have ended ...
        while !(writer.is_finished() && relays.wait_ended(Duration::from_millis(1))) {
            match reader.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("{e}"),
            }
        }
        writer.join().unwrap();
        // ... and take only what is in the FIFO by then: its writer has closed, so EOF
        // follows.
        reader.read_to_end(&mut got).unwrap();
        assert_eq!(got.len(), sent.len());
    }

    /// A stream some other process keeps open: after `stop`, the reader gets what was
    /// written before and then EOF, and later writes neither fail nor reach it.
    #[test]
    fn stopped_relays_close_the_fifo_and_discard_what_follows() {
        let (_dir, mut reader, mut holder, relays) = relayed_stdout();
        holder.write_all(b"before\n").unwrap();
        assert!(!relays.wait_ended(Duration::from_millis(50)));
        relays.stop();
        // Blocking from here: EOF only comes once the relay has closed the FIFO.
        let flags = fcntl(reader.as_raw_fd(), FcntlArg::F_GETFL).unwrap();
        let flags = OFlag::from_bits_truncate(flags) - OFlag::O_NONBLOCK;
        fcntl(reader.as_raw_fd(), FcntlArg::F_SETFL(flags)).unwrap();
        let mut text = String::new();
        reader.read_to_string(&mut text).unwrap();
        assert_eq!(text, "before\n");
        holder.write_all(b"after\n").unwrap();
        drop(holder);
        assert!(relays.wait_ended(Duration::from_secs(10)));
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
