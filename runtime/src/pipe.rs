//! Reading a pipe to its end within a deadline, for what a child process reports back.

use std::fs::File;
use std::io::{self, Read};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

/// Reads `pipe` until every writer has closed it; an error of kind `TimedOut` once
/// `limit` has passed first (the caller decides what becomes of the writer).
pub fn read_to_end_within(mut pipe: File, limit: Duration) -> io::Result<Vec<u8>> {
    let deadline = Instant::now() + limit;
    let mut payload = Vec::new();
    let mut chunk = vec![0u8; 1 << 16];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let mut fd = libc::pollfd {
            fd: pipe.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, for the duration of the call.
        let ready =
            unsafe { libc::poll(&mut fd, 1, left.as_millis().min(i32::MAX as u128) as i32) };
        match ready {
            0 if Instant::now() >= deadline => {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("no end of the pipe within {} s", limit.as_secs()),
                ))
            }
            0 => continue,
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            -1 => return Err(io::Error::last_os_error()),
            _ => {}
        }
        match pipe.read(&mut chunk) {
            Ok(0) => return Ok(payload),
            Ok(n) => payload.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn a_pipe_still_open_at_the_deadline_times_out() {
        let (reader, writer) = nix::unistd::pipe().unwrap();
        let err = read_to_end_within(File::from(reader), Duration::from_millis(50)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(writer);
    }

    #[test]
    fn a_pipe_is_read_to_its_end() {
        let (reader, writer) = nix::unistd::pipe().unwrap();
        let payload: Vec<u8> = (0..200_000u32).map(|i| i as u8).collect();
        let expected = payload.clone();
        let sender = std::thread::spawn(move || File::from(writer).write_all(&payload).unwrap());
        let read = read_to_end_within(File::from(reader), Duration::from_secs(30)).unwrap();
        sender.join().unwrap();
        assert_eq!(read, expected);
    }
}
