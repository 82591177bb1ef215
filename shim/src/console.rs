//! Terminals: receives a process's pty master from libcontainer over a console socket,
//! relays it to the stdio FIFOs, and resizes it (ResizePty).

use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixListener;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
use triage_runtime::stdio::{ContainerStdio, OutputRelays, StdioPaths};

/// A listening console socket for one process; removed when dropped.
pub struct ConsoleSocket {
    listener: UnixListener,
    path: PathBuf,
}

impl ConsoleSocket {
    /// Binds a socket with a short path (socket paths are limited to 108 bytes; bundle
    /// paths can be longer).
    pub fn bind() -> std::io::Result<Self> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        let path = std::env::temp_dir().join(format!(
            "triage-pty-{}-{}.sock",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_file(&path);
        let listener = UnixListener::bind(&path)?;
        Ok(Self { listener, path })
    }

    /// Where libcontainer connects.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pty master libcontainer sent. Called after the create (or exec) helper
    /// succeeded: its connection and message are already queued.
    pub fn receive(&self) -> std::io::Result<OwnedFd> {
        self.listener.set_nonblocking(true)?;
        let (stream, _) = self.listener.accept()?;
        stream.set_nonblocking(false)?;
        let mut name = [0u8; 4096];
        let mut iov = [std::io::IoSliceMut::new(&mut name)];
        let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let message = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        for cmsg in message.cmsgs()? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                if let Some(&fd) = fds.first() {
                    // SAFETY: the kernel just installed this descriptor for us.
                    return Ok(unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) });
                }
            }
        }
        Err(std::io::Error::other(
            "the console socket carried no descriptor",
        ))
    }
}

impl Drop for ConsoleSocket {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// Copies the terminal's output to the stdout FIFO and the stdin FIFO to the terminal,
/// each in a thread that ends with its stream. Returns the output's relay.
pub fn relay(id: &str, master: &OwnedFd, paths: &StdioPaths) -> Result<OutputRelays, String> {
    let fifos = ContainerStdio::open(id, paths).map_err(|e| e.to_string())?;
    let dup = |fd: &OwnedFd| {
        fd.try_clone()
            .map_err(|e| format!("container {id}: duplicating the terminal: {e}"))
    };
    let output = dup(master)?;
    let mut input = std::fs::File::from(dup(master)?);
    let stdout = fifos.stdout;
    let mut stdin = std::fs::File::from(fifos.stdin);
    let failed = |e| format!("container {id}: starting the terminal relay: {e}");
    // Ends with EIO once the last process holding the terminal has exited.
    let relays = OutputRelays::new().map_err(failed)?;
    relays
        .relay(format!("pty-out-{id}"), output, stdout)
        .map_err(failed)?;
    if !paths.stdin.is_empty() {
        std::thread::Builder::new()
            .name(format!("pty-in-{id}"))
            .spawn(move || {
                let _ = std::io::copy(&mut stdin, &mut input);
            })
            .map_err(failed)?;
    }
    Ok(relays)
}

/// Sets the terminal's window size (columns × rows), as ResizePty asks.
pub fn resize(master: &OwnedFd, width: u32, height: u32) -> std::io::Result<()> {
    let size = libc::winsize {
        ws_row: u16::try_from(height).unwrap_or(u16::MAX),
        ws_col: u16::try_from(width).unwrap_or(u16::MAX),
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads a winsize from the pointer, which is valid for the call.
    if unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSWINSZ, &size) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
