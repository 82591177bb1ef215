//! Listening sockets for WASI preview-1 modules: Triage binds `triage.io/listen` and hands the sockets to the module as systemd does (fds 3…, `LISTEN_FDS`), with `sock_accept`, `sock_recv`, `sock_send`, `sock_shutdown`, reads, writes and polls on them.
//!
//! wasmtime-wasi's preview 1 has no sockets (its `sock_accept` answers `ENOTSOCK`), so each
//! preview-1 function that takes a descriptor is linked over wasmtime's: a socket's
//! descriptor is served here, any other goes to wasmtime's own function unchanged.
//! wasmtime numbers its descriptors from 3 in the order of the preopens; the module's first
//! preopens are placeholders (the container's root, read-only, never reachable: every call
//! on their numbers is answered here), one per listener, so that the listeners are 3…
//! and the real preopens follow them. `fd_prestat_get` answers a listener with a preopen
//! type that is not a directory, which wasi-libc's scan of the preopens steps over.
//! Accepted connections are numbered from [`CONNECTION_FDS`], above anything wasmtime
//! hands out. What the module may accept is bounded ([`MAX_CONNECTIONS`]).

use std::collections::HashMap;
use std::net::TcpListener;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use wasmtime::{AsContextMut, Caller, Extern, Linker};
use wasmtime_wasi::p1::wasi_snapshot_preview1 as p1;
use wasmtime_wasi::p1::WasiP1Ctx;
use wiggle::GuestMemory;

use super::EngineError;

/// The first descriptor number of an accepted connection.
const CONNECTION_FDS: u32 = 1 << 30;

/// The most connections a module holds open at once; `sock_accept` answers `EMFILE` past it.
pub const MAX_CONNECTIONS: usize = 1024;

/// The most buffers one read or write names.
const MAX_BUFFERS: u32 = 1024;

/// The most bytes one read or write moves (a larger request is answered in part, as a
/// socket may).
const MAX_TRANSFER: usize = 1 << 20;

// WASI preview-1 errno values.
const SUCCESS: i32 = 0;
const EAGAIN: i32 = 6;
const EBADF: i32 = 8;
const EFAULT: i32 = 21;
const EINTR: i32 = 27;
const EINVAL: i32 = 28;
const EIO: i32 = 29;
const EMFILE: i32 = 33;
const ENOTCONN: i32 = 53;
const ENOTDIR: i32 = 54;
const ENOTSUP: i32 = 58;
const EPIPE: i32 = 64;
const ESPIPE: i32 = 70;

/// `filetype::socket_stream`.
const FILETYPE_SOCKET_STREAM: u8 = 6;
/// `fdflags::nonblock`.
const FDFLAGS_NONBLOCK: u16 = 1 << 2;
/// What a socket's descriptor allows: read, write, poll, shutdown, accept.
const SOCKET_RIGHTS: u64 = (1 << 1) | (1 << 6) | (1 << 27) | (1 << 28) | (1 << 29);
/// The preopen type a listener reports (preview 1 defines only `dir`, 0): not a directory.
const PREOPENTYPE_SOCKET: u8 = 1;

/// The sockets of one module: its listeners (3…) and the connections it accepted.
#[derive(Default)]
pub struct P1Sockets {
    listeners: Vec<Option<OwnedFd>>,
    connections: HashMap<u32, OwnedFd>,
    next_connection: u32,
}

/// What a descriptor number is to this module.
enum Owner {
    Listener(RawFd),
    Connection(RawFd),
    /// A listener the module closed: its number stays taken.
    Closed,
    Wasmtime,
}

impl P1Sockets {
    /// Binds each of `addrs` in the container's network namespace (at Create, so the ports
    /// take connections from then on).
    pub fn bind(id: &str, addrs: &[std::net::SocketAddr]) -> Result<Self, EngineError> {
        let mut listeners = Vec::with_capacity(addrs.len());
        for addr in addrs {
            let listener = TcpListener::bind(addr).map_err(|e| EngineError::Setup {
                id: id.to_owned(),
                reason: format!(
                    "cannot listen on {addr} (annotation {}): {e}",
                    triage_oci::annotations::LISTEN
                ),
            })?;
            listeners.push(Some(OwnedFd::from(listener)));
        }
        Ok(Self {
            listeners,
            connections: HashMap::new(),
            next_connection: CONNECTION_FDS,
        })
    }

    /// How many listeners the module gets (its `LISTEN_FDS`).
    pub fn count(&self) -> usize {
        self.listeners.len()
    }

    fn owner(&self, fd: i32) -> Owner {
        let fd = fd as u32;
        if let Some(slot) = fd
            .checked_sub(3)
            .and_then(|i| self.listeners.get(i as usize))
        {
            return match slot {
                Some(listener) => Owner::Listener(listener.as_raw_fd()),
                None => Owner::Closed,
            };
        }
        match self.connections.get(&fd) {
            Some(connection) => Owner::Connection(connection.as_raw_fd()),
            None => Owner::Wasmtime,
        }
    }

    fn socket(&self, fd: i32) -> Option<RawFd> {
        match self.owner(fd) {
            Owner::Listener(raw) | Owner::Connection(raw) => Some(raw),
            Owner::Closed | Owner::Wasmtime => None,
        }
    }

    fn ours(&self, fd: i32) -> bool {
        !matches!(self.owner(fd), Owner::Wasmtime)
    }
}

/// What a guest's store gives this module: its sockets and wasmtime's preview-1 context.
pub trait SocketsView: Send + 'static {
    fn sockets(&mut self) -> &mut P1Sockets;
    fn wasi(&mut self) -> &mut WasiP1Ctx;
}

/// The errno of the last failed libc call, as preview 1 numbers it.
fn last_errno() -> i32 {
    let errno = std::io::Error::last_os_error().raw_os_error().unwrap_or(0);
    match errno {
        libc::EAGAIN => EAGAIN,
        libc::EINTR => EINTR,
        libc::EBADF => EBADF,
        libc::EINVAL => EINVAL,
        libc::EMFILE | libc::ENFILE => EMFILE,
        libc::ENOTCONN => ENOTCONN,
        libc::EPIPE => EPIPE,
        libc::ECONNRESET => 15,
        libc::ECONNABORTED => 13,
        libc::ENOBUFS | libc::ENOMEM => 48,
        _ => EIO,
    }
}

/// The module's memory and its store's state, as the host functions need them.
fn memory_and_state<'a, T: SocketsView>(
    caller: &'a mut Caller<'_, T>,
) -> wasmtime::Result<(&'a mut [u8], &'a mut T)> {
    match caller.get_export("memory") {
        Some(Extern::Memory(memory)) => Ok(memory.data_and_store_mut(caller)),
        _ => wasmtime::bail!("the module exports no memory"),
    }
}

/// Runs wasmtime's own preview-1 function `call` for a descriptor that is not a socket,
/// as wasmtime's linker would.
fn wasmtime_call<T: SocketsView>(
    caller: &mut Caller<'_, T>,
    call: impl FnOnce(&mut WasiP1Ctx, &mut GuestMemory<'_>) -> wasmtime::Result<i32>,
) -> wasmtime::Result<i32> {
    let fuel = caller.as_context_mut().hostcall_fuel();
    let (memory, state) = memory_and_state(caller)?;
    let wasi = state.wasi();
    p1::WasiSnapshotPreview1::set_hostcall_fuel(wasi, fuel);
    call(wasi, &mut GuestMemory::Unshared(memory))
}

/// Bounds-checked access to the module's memory; `Err` is `EFAULT`.
struct Memory<'a>(&'a mut [u8]);

impl Memory<'_> {
    fn range(&self, at: i32, len: usize) -> Result<std::ops::Range<usize>, i32> {
        let start = at as u32 as usize;
        let end = start.checked_add(len).ok_or(EFAULT)?;
        if end > self.0.len() {
            return Err(EFAULT);
        }
        Ok(start..end)
    }

    fn bytes(&self, at: i32, len: usize) -> Result<&[u8], i32> {
        let range = self.range(at, len)?;
        Ok(&self.0[range])
    }

    fn bytes_mut(&mut self, at: i32, len: usize) -> Result<&mut [u8], i32> {
        let range = self.range(at, len)?;
        Ok(&mut self.0[range])
    }

    fn u32(&self, at: i32) -> Result<u32, i32> {
        let b = self.bytes(at, 4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn u64(&self, at: i32) -> Result<u64, i32> {
        let mut b = [0u8; 8];
        b.copy_from_slice(self.bytes(at, 8)?);
        Ok(u64::from_le_bytes(b))
    }

    fn put(&mut self, at: i32, value: &[u8]) -> Result<(), i32> {
        self.bytes_mut(at, value.len())?.copy_from_slice(value);
        Ok(())
    }

    /// A list of `(pointer, length)` buffers (preview 1's `iovec`/`ciovec`): at most
    /// [`MAX_BUFFERS`] of them (`EINVAL` past it, as Linux's `IOV_MAX`), at most
    /// [`MAX_TRANSFER`] bytes in all (the rest is left out).
    fn buffers(&self, list: i32, count: i32) -> Result<Vec<(i32, usize)>, i32> {
        if count as u32 > MAX_BUFFERS {
            return Err(EINVAL);
        }
        let mut buffers = Vec::new();
        let mut total = 0usize;
        for i in 0..count as u32 {
            let at = (list as u32)
                .checked_add(i.checked_mul(8).ok_or(EFAULT)?)
                .ok_or(EFAULT)?;
            let (ptr, len) = (self.u32(at as i32)?, self.u32(at as i32 + 4)? as usize);
            let len = len.min(MAX_TRANSFER - total);
            self.range(ptr as i32, len)?;
            buffers.push((ptr as i32, len));
            total += len;
            if total == MAX_TRANSFER {
                break;
            }
        }
        Ok(buffers)
    }
}

/// A result for the module: `SUCCESS` or an errno.
fn errno(result: Result<(), i32>) -> i32 {
    match result {
        Ok(()) => SUCCESS,
        Err(errno) => errno,
    }
}

/// Receives into the module's `buffers` (`fd_read`, `sock_recv`); writes the count at
/// `count_at`.
fn receive(
    memory: &mut Memory<'_>,
    raw: RawFd,
    list: i32,
    len: i32,
    flags: i32,
    count_at: i32,
) -> Result<(), i32> {
    let buffers = memory.buffers(list, len)?;
    let total: usize = buffers.iter().map(|(_, len)| len).sum();
    let mut data = vec![0u8; total];
    // SAFETY: receives at most `total` bytes into our own buffer of that size.
    let read = unsafe { libc::recv(raw, data.as_mut_ptr().cast(), total, flags) };
    if read < 0 {
        return Err(last_errno());
    }
    let mut rest = &data[..read as usize];
    for (ptr, len) in buffers {
        let part = len.min(rest.len());
        memory.put(ptr, &rest[..part])?;
        rest = &rest[part..];
    }
    memory.put(count_at, &(read as u32).to_le_bytes())
}

/// Sends the module's `buffers` (`fd_write`, `sock_send`); writes the count at `count_at`.
fn send(
    memory: &mut Memory<'_>,
    raw: RawFd,
    list: i32,
    len: i32,
    count_at: i32,
) -> Result<(), i32> {
    let buffers = memory.buffers(list, len)?;
    let mut data = Vec::new();
    for (ptr, len) in buffers {
        data.extend_from_slice(memory.bytes(ptr, len)?);
    }
    // SAFETY: sends our own buffer; MSG_NOSIGNAL: a closed peer is EPIPE, not SIGPIPE.
    let sent = unsafe { libc::send(raw, data.as_ptr().cast(), data.len(), libc::MSG_NOSIGNAL) };
    if sent < 0 {
        return Err(last_errno());
    }
    memory.put(count_at, &(sent as u32).to_le_bytes())
}

fn set_nonblocking(raw: RawFd, nonblocking: bool) -> Result<(), i32> {
    // SAFETY: fcntl on a socket this module owns.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    if flags < 0 {
        return Err(last_errno());
    }
    let flags = if nonblocking {
        flags | libc::O_NONBLOCK
    } else {
        flags & !libc::O_NONBLOCK
    };
    // SAFETY: as above.
    if unsafe { libc::fcntl(raw, libc::F_SETFL, flags) } < 0 {
        return Err(last_errno());
    }
    Ok(())
}

fn is_nonblocking(raw: RawFd) -> bool {
    // SAFETY: fcntl on a socket this module owns.
    let flags = unsafe { libc::fcntl(raw, libc::F_GETFL) };
    flags >= 0 && flags & libc::O_NONBLOCK != 0
}

impl P1Sockets {
    /// `sock_accept`: a connection of listener `fd`, numbered from [`CONNECTION_FDS`].
    fn accept(
        &mut self,
        memory: &mut Memory<'_>,
        fd: i32,
        flags: i32,
        fd_at: i32,
    ) -> Result<(), i32> {
        let Owner::Listener(raw) = self.owner(fd) else {
            return Err(if self.ours(fd) { ENOTSUP } else { EBADF });
        };
        if flags as u16 & !FDFLAGS_NONBLOCK != 0 {
            return Err(EINVAL);
        }
        memory.range(fd_at, 4)?;
        if self.connections.len() >= MAX_CONNECTIONS {
            return Err(EMFILE);
        }
        let mut options = libc::SOCK_CLOEXEC;
        if flags as u16 & FDFLAGS_NONBLOCK != 0 {
            options |= libc::SOCK_NONBLOCK;
        }
        // SAFETY: accepts on a listener this module owns; the new descriptor is owned below.
        let accepted =
            unsafe { libc::accept4(raw, std::ptr::null_mut(), std::ptr::null_mut(), options) };
        if accepted < 0 {
            return Err(last_errno());
        }
        // SAFETY: accept4 returned a new descriptor that nothing else owns.
        let connection = unsafe { OwnedFd::from_raw_fd(accepted) };
        let one: libc::c_int = 1;
        // SAFETY: sets TCP_NODELAY (as the HTTP server does) from a local int.
        unsafe {
            libc::setsockopt(
                accepted,
                libc::IPPROTO_TCP,
                libc::TCP_NODELAY,
                (&one as *const libc::c_int).cast(),
                std::mem::size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        let number = loop {
            let candidate = self.next_connection;
            self.next_connection = candidate.checked_add(1).unwrap_or(CONNECTION_FDS);
            if !self.connections.contains_key(&candidate) {
                break candidate;
            }
        };
        self.connections.insert(number, connection);
        memory.put(fd_at, &number.to_le_bytes())
    }

    fn close(&mut self, fd: i32) -> Result<(), i32> {
        match self.owner(fd) {
            Owner::Listener(_) => {
                self.listeners[(fd - 3) as usize] = None;
                Ok(())
            }
            Owner::Connection(_) => {
                self.connections.remove(&(fd as u32));
                Ok(())
            }
            Owner::Closed | Owner::Wasmtime => Err(EBADF),
        }
    }

    fn shutdown(&self, fd: i32, how: i32) -> Result<(), i32> {
        let raw = self.socket(fd).ok_or(EBADF)?;
        let how = match how {
            1 => libc::SHUT_RD,
            2 => libc::SHUT_WR,
            3 => libc::SHUT_RDWR,
            _ => return Err(EINVAL),
        };
        // SAFETY: shuts down a socket this module owns.
        if unsafe { libc::shutdown(raw, how) } < 0 {
            return Err(last_errno());
        }
        Ok(())
    }

    fn fdstat(&self, memory: &mut Memory<'_>, fd: i32, at: i32) -> Result<(), i32> {
        let raw = self.socket(fd).ok_or(EBADF)?;
        let mut stat = [0u8; 24];
        stat[0] = FILETYPE_SOCKET_STREAM;
        if is_nonblocking(raw) {
            stat[2..4].copy_from_slice(&FDFLAGS_NONBLOCK.to_le_bytes());
        }
        stat[8..16].copy_from_slice(&SOCKET_RIGHTS.to_le_bytes());
        memory.put(at, &stat)
    }

    fn set_flags(&self, fd: i32, flags: i32) -> Result<(), i32> {
        let raw = self.socket(fd).ok_or(EBADF)?;
        if flags as u16 & !FDFLAGS_NONBLOCK != 0 {
            return Err(ENOTSUP);
        }
        set_nonblocking(raw, flags as u16 & FDFLAGS_NONBLOCK != 0)
    }

    fn filestat(&self, memory: &mut Memory<'_>, fd: i32, at: i32) -> Result<(), i32> {
        self.socket(fd).ok_or(EBADF)?;
        let mut stat = [0u8; 64];
        stat[16] = FILETYPE_SOCKET_STREAM;
        stat[24..32].copy_from_slice(&1u64.to_le_bytes());
        memory.put(at, &stat)
    }

    fn prestat(&self, memory: &mut Memory<'_>, fd: i32, at: i32) -> Result<(), i32> {
        match self.owner(fd) {
            // Not a directory: wasi-libc's scan of the preopens goes on past it.
            Owner::Listener(_) => memory.put(at, &[PREOPENTYPE_SOCKET, 0, 0, 0, 0, 0, 0, 0]),
            _ => Err(EBADF),
        }
    }
}

/// The most subscriptions one `poll_oneoff` that involves a socket may carry.
const MAX_SUBSCRIPTIONS: u32 = 4096;

/// `clock_gettime` of preview 1's clock `id`, in nanoseconds.
fn now(id: u32) -> u64 {
    let clock = match id {
        0 => libc::CLOCK_REALTIME,
        _ => libc::CLOCK_MONOTONIC,
    };
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: writes the time into a local timespec.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

/// One subscription of a `poll_oneoff` that involves a socket.
enum Wait {
    /// Until this many nanoseconds from the call's start.
    Clock(u64),
    /// A socket ready to read (`POLLIN`) or write (`POLLOUT`).
    Socket(RawFd, i16),
    /// Ready at once: wasmtime's descriptors (files are always ready) or an error.
    Now(u16),
}

/// `poll_oneoff` when a subscription names a socket: every socket through `poll(2)`, clocks
/// as its timeout, wasmtime's descriptors as ready at once.
fn poll(
    memory: &mut Memory<'_>,
    sockets: &P1Sockets,
    subs: i32,
    events: i32,
    count: i32,
    nevents_at: i32,
) -> Result<(), i32> {
    let count = count as u32;
    if count == 0 || count > MAX_SUBSCRIPTIONS {
        return Err(EINVAL);
    }
    memory.range(events, count as usize * 32)?;
    memory.range(nevents_at, 4)?;
    let started = now(1);
    let mut waits = Vec::with_capacity(count as usize);
    for i in 0..count {
        let at = subs.wrapping_add((i * 48) as i32);
        let userdata = memory.u64(at)?;
        let tag = memory.bytes(at + 8, 1)?[0];
        let wait = match tag {
            0 => {
                let (id, timeout) = (memory.u32(at + 16)?, memory.u64(at + 24)?);
                let absolute = memory.bytes(at + 40, 2)?[0] & 1 != 0;
                Wait::Clock(if absolute {
                    timeout.saturating_sub(now(id))
                } else {
                    timeout
                })
            }
            1 | 2 => {
                let fd = memory.u32(at + 16)? as i32;
                let events = if tag == 1 {
                    libc::POLLIN
                } else {
                    libc::POLLOUT
                };
                match sockets.owner(fd) {
                    Owner::Listener(raw) | Owner::Connection(raw) => Wait::Socket(raw, events),
                    Owner::Closed => Wait::Now(EBADF as u16),
                    Owner::Wasmtime => Wait::Now(0),
                }
            }
            _ => return Err(EINVAL),
        };
        waits.push((userdata, tag, wait));
    }
    loop {
        let elapsed = now(1).saturating_sub(started);
        let mut timeout: Option<u64> = None;
        let mut fds = Vec::new();
        for (_, _, wait) in &waits {
            match wait {
                Wait::Clock(after) => {
                    let left = after.saturating_sub(elapsed);
                    timeout = Some(timeout.map_or(left, |t| t.min(left)));
                }
                Wait::Socket(raw, events) => fds.push(libc::pollfd {
                    fd: *raw,
                    events: *events,
                    revents: 0,
                }),
                Wait::Now(_) => timeout = Some(0),
            }
        }
        // Whole milliseconds, rounded up so that a clock is never reported early.
        let timeout_ms =
            timeout.map_or(-1, |ns| ns.div_ceil(1_000_000).min(i32::MAX as u64) as i32);
        // SAFETY: polls our own array of pollfds.
        let ready = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if ready < 0 {
            return Err(last_errno());
        }
        let elapsed = now(1).saturating_sub(started);
        let mut written = 0u32;
        let mut sockets_seen = 0;
        for (userdata, tag, wait) in &waits {
            let (error, nbytes, hangup) = match wait {
                Wait::Clock(after) if *after <= elapsed => (0, 0, false),
                Wait::Clock(_) => continue,
                Wait::Now(error) => (*error, 0, false),
                Wait::Socket(raw, _) => {
                    let revents = fds[sockets_seen].revents;
                    sockets_seen += 1;
                    if revents == 0 {
                        continue;
                    }
                    let mut available: libc::c_int = 0;
                    // SAFETY: FIONREAD into a local int on a socket this module owns.
                    unsafe { libc::ioctl(*raw, libc::FIONREAD, &mut available) };
                    (0, available.max(0) as u64, revents & libc::POLLHUP != 0)
                }
            };
            let mut event = [0u8; 32];
            event[0..8].copy_from_slice(&userdata.to_le_bytes());
            event[8..10].copy_from_slice(&error.to_le_bytes());
            event[10] = *tag;
            event[16..24].copy_from_slice(&nbytes.to_le_bytes());
            event[24] = u8::from(hangup);
            memory.put(events + (written * 32) as i32, &event)?;
            written += 1;
        }
        if written > 0 {
            return memory.put(nevents_at, &written.to_le_bytes());
        }
    }
}

/// Runs wasmtime's own async preview-1 function on its runtime.
macro_rules! wasmtime_fn {
    (async, $call:expr) => {
        wasmtime_wasi::runtime::in_tokio($call)
    };
    (sync, $call:expr) => {
        $call
    };
}

/// Links `$name` over wasmtime's: on a socket's descriptor (any of `$fd`) it answers
/// `$errno`, on any other it is wasmtime's.
macro_rules! not_on_sockets {
    ($linker:ident, $kind:ident, $name:ident, $errno:expr, [$($fd:ident),+], ($($arg:ident: $ty:ty),*)) => {
        $linker.func_wrap(
            "wasi_snapshot_preview1",
            stringify!($name),
            |mut caller: Caller<'_, T>, $($arg: $ty),*| -> wasmtime::Result<i32> {
                let sockets = caller.data_mut().sockets();
                if false $(|| sockets.ours($fd))+ {
                    return Ok($errno);
                }
                wasmtime_call(&mut caller, |wasi, memory| {
                    wasmtime_fn!($kind, p1::$name(wasi, memory, $($arg),*))
                })
            },
        )?;
    };
}

/// Links `$name` over wasmtime's: on a socket's descriptor `$fd` it runs `$ours` with the
/// module's memory and sockets, on any other it is wasmtime's.
macro_rules! on_sockets {
    ($linker:ident, $kind:ident, $name:ident, $fd:ident, ($($arg:ident: $ty:ty),*), |$memory:ident, $sockets:ident| $ours:expr) => {
        $linker.func_wrap(
            "wasi_snapshot_preview1",
            stringify!($name),
            |mut caller: Caller<'_, T>, $($arg: $ty),*| -> wasmtime::Result<i32> {
                if caller.data_mut().sockets().ours($fd) {
                    let (memory, state) = memory_and_state(&mut caller)?;
                    let $memory = &mut Memory(memory);
                    let $sockets = state.sockets();
                    return Ok(errno($ours));
                }
                wasmtime_call(&mut caller, |wasi, memory| {
                    wasmtime_fn!($kind, p1::$name(wasi, memory, $($arg),*))
                })
            },
        )?;
    };
}

/// Links the preview-1 functions that take a descriptor over wasmtime's (`linker` already
/// has wasmtime's): sockets are served here, everything else by wasmtime.
pub fn add_to_linker<T: SocketsView>(linker: &mut Linker<T>) -> wasmtime::Result<()> {
    linker.allow_shadowing(true);
    // What a socket is used through.
    on_sockets!(linker, sync, sock_accept, fd, (fd: i32, flags: i32, fd_at: i32),
        |memory, sockets| sockets.accept(memory, fd, flags, fd_at));
    on_sockets!(linker, sync, sock_recv, fd,
    (fd: i32, list: i32, len: i32, flags: i32, count_at: i32, flags_at: i32),
    |memory, sockets| {
        // RECV_PEEK and RECV_WAITALL, as MSG_PEEK and MSG_WAITALL.
        let mut recv_flags = 0;
        if flags & 1 != 0 { recv_flags |= libc::MSG_PEEK; }
        if flags & 2 != 0 { recv_flags |= libc::MSG_WAITALL; }
        match sockets.socket(fd) {
            Some(raw) => receive(memory, raw, list, len, recv_flags, count_at)
                .and_then(|()| memory.put(flags_at, &0u16.to_le_bytes())),
            None => Err(EBADF),
        }
    });
    on_sockets!(linker, sync, sock_send, fd,
    (fd: i32, list: i32, len: i32, _flags: i32, count_at: i32),
    |memory, sockets| match sockets.socket(fd) {
        Some(raw) => send(memory, raw, list, len, count_at),
        None => Err(EBADF),
    });
    on_sockets!(linker, sync, sock_shutdown, fd, (fd: i32, how: i32),
        |_memory, sockets| sockets.shutdown(fd, how));
    on_sockets!(linker, async, fd_read, fd, (fd: i32, list: i32, len: i32, count_at: i32),
    |memory, sockets| match sockets.socket(fd) {
        Some(raw) => receive(memory, raw, list, len, 0, count_at),
        None => Err(EBADF),
    });
    on_sockets!(linker, async, fd_write, fd, (fd: i32, list: i32, len: i32, count_at: i32),
    |memory, sockets| match sockets.socket(fd) {
        Some(raw) => send(memory, raw, list, len, count_at),
        None => Err(EBADF),
    });
    on_sockets!(linker, async, fd_close, fd, (fd: i32), |_memory, sockets| sockets.close(fd));
    on_sockets!(linker, async, fd_fdstat_get, fd, (fd: i32, at: i32),
        |memory, sockets| sockets.fdstat(memory, fd, at));
    on_sockets!(linker, sync, fd_fdstat_set_flags, fd, (fd: i32, flags: i32),
        |_memory, sockets| sockets.set_flags(fd, flags));
    on_sockets!(linker, async, fd_filestat_get, fd, (fd: i32, at: i32),
        |memory, sockets| sockets.filestat(memory, fd, at));
    on_sockets!(linker, sync, fd_prestat_get, fd, (fd: i32, at: i32),
        |memory, sockets| sockets.prestat(memory, fd, at));
    linker.func_wrap(
        "wasi_snapshot_preview1",
        "poll_oneoff",
        |mut caller: Caller<'_, T>,
         subs: i32,
         events: i32,
         count: i32,
         nevents_at: i32|
         -> wasmtime::Result<i32> {
            let (memory, state) = memory_and_state(&mut caller)?;
            let sockets = state.sockets();
            let memory = &mut Memory(memory);
            let names_socket = (0..(count as u32).min(MAX_SUBSCRIPTIONS)).any(|i| {
                let at = subs.wrapping_add((i * 48) as i32);
                matches!(memory.bytes(at + 8, 1), Ok([1 | 2]))
                    && memory.u32(at + 16).is_ok_and(|fd| sockets.ours(fd as i32))
            });
            if names_socket {
                return Ok(errno(poll(
                    memory, sockets, subs, events, count, nevents_at,
                )));
            }
            wasmtime_call(&mut caller, |wasi, memory| {
                wasmtime_fn!(
                    async,
                    p1::poll_oneoff(wasi, memory, subs, events, count, nevents_at)
                )
            })
        },
    )?;

    // What a socket is not: a file or a directory.
    not_on_sockets!(linker, async, fd_advise, ESPIPE, [fd], (fd: i32, offset: i64, len: i64, advice: i32));
    not_on_sockets!(linker, sync, fd_allocate, ENOTSUP, [fd], (fd: i32, offset: i64, len: i64));
    not_on_sockets!(linker, async, fd_datasync, EINVAL, [fd], (fd: i32));
    not_on_sockets!(linker, sync, fd_fdstat_set_rights, ENOTSUP, [fd], (fd: i32, base: i64, inheriting: i64));
    not_on_sockets!(linker, async, fd_filestat_set_size, EINVAL, [fd], (fd: i32, size: i64));
    not_on_sockets!(linker, async, fd_filestat_set_times, ENOTSUP, [fd], (fd: i32, atim: i64, mtim: i64, flags: i32));
    not_on_sockets!(linker, async, fd_pread, ESPIPE, [fd], (fd: i32, list: i32, len: i32, offset: i64, count_at: i32));
    not_on_sockets!(linker, async, fd_pwrite, ESPIPE, [fd], (fd: i32, list: i32, len: i32, offset: i64, count_at: i32));
    not_on_sockets!(linker, sync, fd_prestat_dir_name, ENOTDIR, [fd], (fd: i32, path: i32, len: i32));
    not_on_sockets!(linker, async, fd_readdir, ENOTDIR, [fd], (fd: i32, buf: i32, len: i32, cookie: i64, used_at: i32));
    not_on_sockets!(linker, async, fd_renumber, ENOTSUP, [fd, to], (fd: i32, to: i32));
    not_on_sockets!(linker, async, fd_seek, ESPIPE, [fd], (fd: i32, offset: i64, whence: i32, at: i32));
    not_on_sockets!(linker, async, fd_sync, EINVAL, [fd], (fd: i32));
    not_on_sockets!(linker, sync, fd_tell, ESPIPE, [fd], (fd: i32, at: i32));
    not_on_sockets!(linker, async, path_create_directory, ENOTDIR, [fd], (fd: i32, path: i32, len: i32));
    not_on_sockets!(linker, async, path_filestat_get, ENOTDIR, [fd], (fd: i32, flags: i32, path: i32, len: i32, at: i32));
    not_on_sockets!(linker, async, path_filestat_set_times, ENOTDIR, [fd],
        (fd: i32, flags: i32, path: i32, len: i32, atim: i64, mtim: i64, fst: i32));
    not_on_sockets!(linker, async, path_link, ENOTDIR, [fd, new_fd],
        (fd: i32, flags: i32, path: i32, len: i32, new_fd: i32, new_path: i32, new_len: i32));
    not_on_sockets!(linker, async, path_open, ENOTDIR, [fd],
        (fd: i32, dirflags: i32, path: i32, len: i32, oflags: i32, base: i64, inheriting: i64, fdflags: i32, fd_at: i32));
    not_on_sockets!(linker, async, path_readlink, ENOTDIR, [fd],
        (fd: i32, path: i32, len: i32, buf: i32, buf_len: i32, used_at: i32));
    not_on_sockets!(linker, async, path_remove_directory, ENOTDIR, [fd], (fd: i32, path: i32, len: i32));
    not_on_sockets!(linker, async, path_rename, ENOTDIR, [fd, new_fd],
        (fd: i32, path: i32, len: i32, new_fd: i32, new_path: i32, new_len: i32));
    not_on_sockets!(linker, async, path_symlink, ENOTDIR, [fd],
        (old_path: i32, old_len: i32, fd: i32, new_path: i32, new_len: i32));
    not_on_sockets!(linker, async, path_unlink_file, ENOTDIR, [fd], (fd: i32, path: i32, len: i32));
    linker.allow_shadowing(false);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A memory with `iovecs` written at 0 (pointer, length pairs).
    fn memory_with(iovecs: &[(u32, u32)], size: usize) -> Vec<u8> {
        let mut bytes = vec![0u8; size];
        for (i, (ptr, len)) in iovecs.iter().enumerate() {
            bytes[8 * i..8 * i + 4].copy_from_slice(&ptr.to_le_bytes());
            bytes[8 * i + 4..8 * i + 8].copy_from_slice(&len.to_le_bytes());
        }
        bytes
    }

    #[test]
    fn a_guests_buffer_lists_are_bounded_and_checked_against_its_memory() {
        let mut bytes = memory_with(&[(64, 16), (128, 32)], 4096);
        let memory = Memory(&mut bytes);
        assert_eq!(memory.buffers(0, 2), Ok(vec![(64, 16), (128, 32)]));
        // Past the memory, the list or a buffer: EFAULT, never a panic.
        assert_eq!(memory.buffers(4092, 1), Err(EFAULT));
        let mut bytes = memory_with(&[(4090, 16)], 4096);
        assert_eq!(Memory(&mut bytes).buffers(0, 1), Err(EFAULT));
        // More buffers than IOV_MAX, or a negative count: EINVAL before any is read.
        let mut bytes = vec![0u8; 4096];
        let memory = Memory(&mut bytes);
        assert_eq!(memory.buffers(0, 1025), Err(EINVAL));
        assert_eq!(memory.buffers(0, -1), Err(EINVAL));
        // At most MAX_TRANSFER bytes in all.
        let mut bytes = memory_with(&[(64, 1 << 20), (64, 1 << 20)], (1 << 20) + 64);
        assert_eq!(
            Memory(&mut bytes).buffers(0, 2),
            Ok(vec![(64, MAX_TRANSFER)])
        );
    }

    #[test]
    fn listeners_are_3_and_up_connections_from_2_to_the_30_the_rest_wasmtimes() {
        let sockets = P1Sockets::bind("c1", &["127.0.0.1:0".parse().unwrap(); 2]).unwrap();
        assert_eq!(sockets.count(), 2);
        assert!(matches!(sockets.owner(3), Owner::Listener(_)));
        assert!(matches!(sockets.owner(4), Owner::Listener(_)));
        for fd in [
            0,
            1,
            2,
            5,
            (CONNECTION_FDS - 1) as i32,
            CONNECTION_FDS as i32,
        ] {
            assert!(matches!(sockets.owner(fd), Owner::Wasmtime), "{fd}");
        }
        // Without listeners nothing is a socket: a module's fd 3 is its first preopen.
        assert!(!P1Sockets::default().ours(3));
    }
}
