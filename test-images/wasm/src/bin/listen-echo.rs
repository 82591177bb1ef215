//! A preview-1 service that serves on the sockets it inherits, as a systemd-activated one does: `LISTEN_FDS` listeners from fd 3, waited on with `poll_oneoff`.
//!
//! Each connection sends one line and gets one answer: `motd` → the image's `/etc/motd`
//! (its preopens are still there after the listeners), `env` → its environment, `probe` →
//! what fd 3 answers as a directory (`prestat`'s type, `path_open`'s and `fd_readdir`'s
//! errno), `exit` → `bye` and the module exits 0, anything else → `listener N: LINE`.

use std::io::{BufRead, BufReader, ErrorKind, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::wasi::io::FromRawFd;

#[link(wasm_import_module = "wasi_snapshot_preview1")]
extern "C" {
    fn poll_oneoff(subscriptions: *const u8, events: *mut u8, count: u32, ready: *mut u32) -> u16;
    fn fd_prestat_get(fd: u32, prestat: *mut u8) -> u16;
    #[allow(clippy::too_many_arguments)]
    fn path_open(
        fd: u32,
        dirflags: u32,
        path: *const u8,
        path_len: u32,
        oflags: u32,
        rights_base: u64,
        rights_inheriting: u64,
        fdflags: u32,
        opened: *mut u32,
    ) -> u16;
    fn fd_readdir(fd: u32, buf: *mut u8, buf_len: u32, cookie: u64, used: *mut u32) -> u16;
}

/// What fd 3, a listener, answers when used as a directory.
fn probe() -> String {
    let mut prestat = [0u8; 8];
    let (mut opened, mut used) = (0u32, 0u32);
    let mut buf = [0u8; 256];
    let path = b"etc/motd";
    // SAFETY: each call writes into the local buffers it is given, sized as it expects.
    let (prestat_errno, open_errno, readdir_errno) = unsafe {
        (
            fd_prestat_get(3, prestat.as_mut_ptr()),
            path_open(
                3,
                0,
                path.as_ptr(),
                path.len() as u32,
                0,
                2,
                0,
                0,
                &mut opened,
            ),
            fd_readdir(3, buf.as_mut_ptr(), buf.len() as u32, 0, &mut used),
        )
    };
    format!(
        "prestat errno {prestat_errno} type {}, path_open errno {open_errno}, fd_readdir errno {readdir_errno}\n",
        prestat[0]
    )
}

/// Waits until one of `fds` can be read (has a connection to accept); returns the ready ones.
fn wait_readable(fds: &[u32]) -> Vec<u32> {
    let mut subscriptions = vec![0u8; 48 * fds.len()];
    for (i, fd) in fds.iter().enumerate() {
        let sub = &mut subscriptions[48 * i..48 * (i + 1)];
        sub[0..8].copy_from_slice(&(*fd as u64).to_le_bytes());
        sub[8] = 1; // eventtype fd_read
        sub[16..20].copy_from_slice(&fd.to_le_bytes());
    }
    let mut events = vec![0u8; 32 * fds.len()];
    let mut ready = 0u32;
    // SAFETY: the buffers are sized for `fds.len()` subscriptions and events.
    let errno = unsafe {
        poll_oneoff(
            subscriptions.as_ptr(),
            events.as_mut_ptr(),
            fds.len() as u32,
            &mut ready,
        )
    };
    if errno != 0 {
        eprintln!("listen-echo: poll_oneoff: errno {errno}");
        return Vec::new();
    }
    (0..ready as usize)
        .map(|i| u64::from_le_bytes(events[32 * i..32 * i + 8].try_into().unwrap()) as u32)
        .collect()
}

fn answer(index: usize, mut stream: TcpStream) {
    stream.set_nonblocking(false).expect("blocking connection");
    let mut line = String::new();
    if BufReader::new(&stream).read_line(&mut line).is_err() {
        return;
    }
    let line = line.trim_end();
    let reply = match line {
        "motd" => {
            std::fs::read_to_string("/etc/motd").unwrap_or_else(|e| format!("no motd: {e}\n"))
        }
        "env" => std::env::vars()
            .map(|(k, v)| format!("{k}={v}\n"))
            .collect(),
        "probe" => probe(),
        "exit" => {
            let _ = stream.write_all(b"bye\n");
            let _ = stream.shutdown(Shutdown::Write);
            std::process::exit(0);
        }
        other => format!("listener {index}: {other}\n"),
    };
    let _ = stream.write_all(reply.as_bytes());
    let _ = stream.shutdown(Shutdown::Write);
}

fn main() {
    let count: u32 = match std::env::var("LISTEN_FDS")
        .ok()
        .and_then(|n| n.parse().ok())
    {
        Some(n) if n > 0 => n,
        _ => {
            eprintln!("listen-echo: no LISTEN_FDS: nothing to serve on");
            std::process::exit(2);
        }
    };
    let fds: Vec<u32> = (3..3 + count).collect();
    let listeners: Vec<TcpListener> = fds
        .iter()
        .map(|&fd| {
            // SAFETY: LISTEN_FDS says fds 3… are listening sockets this module owns.
            let listener = unsafe { TcpListener::from_raw_fd(fd as i32) };
            listener
                .set_nonblocking(true)
                .expect("nonblocking listener");
            listener
        })
        .collect();
    eprintln!("listen-echo: serving on {count} inherited sockets");
    loop {
        for fd in wait_readable(&fds) {
            let index = (fd - 3) as usize;
            match listeners[index].accept() {
                Ok((stream, _)) => answer(index, stream),
                Err(e) if e.kind() == ErrorKind::WouldBlock => {}
                Err(e) => {
                    eprintln!("listen-echo: accept: {e}");
                    std::process::exit(1);
                }
            }
        }
    }
}
