//! Relays a helper's (and its container init's) log pipe into the shim's log, line by line, rate-limited.
//!
//! A container's init is a fork of its create helper and logs what its guest makes happen
//! (traps, refusals, wasi-nn errors). It writes to a pipe of its own, never to the
//! shim's log FIFO: a process that reaches into the init (`/proc/<pid>/fd`) finds only
//! that pipe. The shim copies whole lines from it into its log, each cut to
//! [`MAX_LINE`] bytes (one atomic FIFO write), at most [`BURST`] lines at once and
//! [`PER_SECOND`] a second after that; what is dropped is counted and said once the
//! flood ebbs, naming the container.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The longest line relayed; longer ones are cut (PIPE_BUF: one write, never interleaved).
pub const MAX_LINE: usize = 4096;
/// Lines a container may log at once.
pub const BURST: f64 = 200.0;
/// Lines a second a container may log after its burst.
pub const PER_SECOND: f64 = 50.0;

/// A token bucket of log lines.
struct RateLimit {
    tokens: f64,
    last: Instant,
    dropped: u64,
}

impl RateLimit {
    fn new() -> Self {
        Self {
            tokens: BURST,
            last: Instant::now(),
            dropped: 0,
        }
    }

    /// Whether a line may go out now; counts it as dropped if not.
    fn admit(&mut self, now: Instant) -> bool {
        let refill = now.duration_since(self.last).as_secs_f64() * PER_SECOND;
        self.tokens = (self.tokens + refill).min(BURST);
        self.last = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            self.dropped += 1;
            false
        }
    }
}

/// One relay: the pipe's write end for the helper, a thread copying its lines.
pub struct LogRelay {
    writer: OwnedFd,
    /// The read end, shared with the thread: its fd number stays this pipe's while
    /// either holds it.
    reader: Arc<File>,
    idle: Arc<AtomicBool>,
    thread: std::thread::JoinHandle<()>,
}

impl LogRelay {
    /// A pipe whose lines go to `sink`, each naming container `id` when dropped lines are
    /// reported.
    pub fn spawn(id: &str, sink: &File) -> io::Result<Self> {
        let (reader, writer) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
        let sink = sink.try_clone()?;
        let idle = Arc::new(AtomicBool::new(true));
        let reader = Arc::new(File::from(reader));
        let (thread_reader, thread_idle) = (Arc::clone(&reader), Arc::clone(&idle));
        let id = id.to_owned();
        let thread = std::thread::Builder::new()
            .name("log-relay".into())
            .spawn(move || relay(&id, &thread_reader, sink, &thread_idle))?;
        Ok(Self {
            writer,
            reader,
            idle,
            thread,
        })
    }

    /// The write end, for the helper's log fd.
    pub fn writer(&self) -> &OwnedFd {
        &self.writer
    }

    /// Waits (briefly) until what was written so far has been relayed: the helper's lines
    /// then reach the log before its verb's reply does. Returns the relay thread while a
    /// process the helper started (a Wasm init) still holds the pipe: it ends at that
    /// process's exit, and [`drain`] waits for its last lines.
    pub fn settle(self) -> Option<std::thread::JoinHandle<()>> {
        let until = Instant::now() + Duration::from_millis(200);
        drop(self.writer);
        while Instant::now() < until && !self.thread.is_finished() {
            let mut pending: libc::c_int = 0;
            // SAFETY: FIONREAD writes an int for a descriptor we hold open.
            let rc = unsafe { libc::ioctl(self.reader.as_raw_fd(), libc::FIONREAD, &mut pending) };
            if rc < 0 || (pending == 0 && self.idle.load(Ordering::SeqCst)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        (!self.thread.is_finished()).then_some(self.thread)
    }

    /// Closes our write end and waits until every writer has closed its own and the
    /// relay has written all it read.
    #[cfg(test)]
    fn finish(self) {
        drop(self.writer);
        let _ = self.thread.join();
    }
}

/// Waits, at most `limit`, for relay threads whose writers have all exited to write
/// their last lines (a Wasm init's last words before its container is deleted).
pub fn drain(threads: Vec<std::thread::JoinHandle<()>>, limit: Duration) {
    let until = Instant::now() + limit;
    for thread in threads {
        while !thread.is_finished() && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(1));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

fn relay(id: &str, reader: &File, mut sink: File, idle: &AtomicBool) {
    let mut lines = BufReader::new(reader);
    let mut limit = RateLimit::new();
    let mut line = Vec::with_capacity(256);
    loop {
        line.clear();
        idle.store(true, Ordering::SeqCst);
        // At most MAX_LINE bytes a line; the rest of a longer one is skipped.
        let read = (&mut lines)
            .take(MAX_LINE as u64)
            .read_until(b'\n', &mut line);
        idle.store(false, Ordering::SeqCst);
        match read {
            Ok(0) | Err(_) => break,
            Ok(_) => {}
        }
        if line.last() != Some(&b'\n') {
            if line.len() >= MAX_LINE {
                skip_rest_of_line(&mut lines);
            }
            line.truncate(MAX_LINE - 1);
            line.push(b'\n');
        }
        if !limit.admit(Instant::now()) {
            continue;
        }
        say_dropped(id, &mut limit, &mut sink);
        let _ = sink.write_all(&line);
    }
    say_dropped(id, &mut limit, &mut sink);
}

/// Writes how many lines the limit dropped since it last said so, if any.
fn say_dropped(id: &str, limit: &mut RateLimit, sink: &mut File) {
    if limit.dropped > 0 {
        let note = format!(
            "container {id}: {} log lines dropped (more than {PER_SECOND} a second after a burst of {BURST})\n",
            limit.dropped
        );
        let _ = sink.write_all(note.as_bytes());
        limit.dropped = 0;
    }
}

fn skip_rest_of_line(lines: &mut BufReader<&File>) {
    loop {
        let (done, used) = match lines.fill_buf() {
            Ok([]) | Err(_) => return,
            Ok(buf) => match buf.iter().position(|&b| b == b'\n') {
                Some(at) => (true, at + 1),
                None => (false, buf.len()),
            },
        };
        lines.consume(used);
        if done {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;

    fn relayed(write: impl FnOnce(&mut File)) -> String {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("log");
        let sink = File::create(&path).unwrap();
        let relay = LogRelay::spawn("c1", &sink).unwrap();
        let mut writer = File::from(relay.writer().try_clone().unwrap());
        write(&mut writer);
        drop(writer);
        relay.finish();
        let mut text = String::new();
        File::open(&path)
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        text
    }

    #[test]
    fn a_flood_is_cut_to_its_burst_and_counted() {
        let text = relayed(|w| {
            for n in 0..1000 {
                writeln!(w, "warning {n}").unwrap();
            }
        });
        let kept = text.lines().filter(|l| l.starts_with("warning")).count();
        // The burst, and what the rate refilled while the lines were written.
        assert!((200..260).contains(&kept), "{kept} lines kept");
        let note = text.lines().last().unwrap();
        assert!(
            note.starts_with("container c1: ") && note.contains("log lines dropped"),
            "{note}"
        );
        let dropped: usize = note
            .trim_start_matches("container c1: ")
            .split(' ')
            .next()
            .unwrap()
            .parse()
            .unwrap();
        assert_eq!(kept + dropped, 1000);
    }

    #[test]
    fn long_lines_are_cut_and_ordinary_ones_pass_whole() {
        let text = relayed(|w| {
            w.write_all(&vec![b'x'; 3 * MAX_LINE]).unwrap();
            w.write_all(b"\nnext line\n").unwrap();
        });
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2, "{lines:?}");
        assert_eq!(lines[0].len(), MAX_LINE - 1);
        assert_eq!(lines[1], "next line");
    }
}
