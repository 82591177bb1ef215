//! The one-line JSON replies a container helper process writes on its report fd.

use std::io::{BufRead, BufReader, Read, Write};

use serde::{Deserialize, Serialize};

/// The fd number on which a helper process reports back to the shim.
pub const REPORT_FD: i32 = 3;
/// The fd number on which a helper process finds the shim's log.
pub const LOG_FD: i32 = 4;
/// The fd number on which a create helper, and the container's init it forks, find the
/// read end of a pipe: the shim writes the `CLOCK_MONOTONIC` time of the Start RPC there
/// (nanoseconds, 8 bytes little-endian), so the init can log Start → guest entry.
pub const START_CLOCK_FD: i32 = 5;

/// `CLOCK_MONOTONIC` in nanoseconds: one clock for every process on the host.
pub fn monotonic_ns() -> u64 {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes the timespec we pass.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut now) };
    now.tv_sec as u64 * 1_000_000_000 + now.tv_nsec as u64
}

/// One report line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reply {
    /// The operation succeeded; `pid` is the container's init process after a create.
    Done {
        /// Init pid, after a create.
        pid: Option<i32>,
    },
    /// It failed; the message names the container and the cause.
    Failed {
        /// What went wrong.
        message: String,
    },
}

impl Reply {
    /// Writes this reply as one line. Errors are ignored: the reader treats silence as
    /// a failure of its own.
    pub fn write_to(&self, mut out: impl Write) {
        if let Ok(mut line) = serde_json::to_vec(self) {
            line.push(b'\n');
            let _ = out.write_all(&line);
        }
    }

    /// Reads replies until EOF. The first failure wins (it comes from deepest inside),
    /// then a success; `None` if the helper said nothing.
    pub fn read_from(input: impl Read) -> Option<Reply> {
        let mut done = None;
        for line in BufReader::new(input).lines() {
            let Ok(line) = line else { break };
            match serde_json::from_str::<Reply>(&line) {
                Ok(failed @ Reply::Failed { .. }) => return Some(failed),
                Ok(ok) => done = Some(ok),
                Err(_) => continue,
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_failure_wins() {
        let mut buf = Vec::new();
        Reply::Failed {
            message: "inner".into(),
        }
        .write_to(&mut buf);
        Reply::Failed {
            message: "outer".into(),
        }
        .write_to(&mut buf);
        assert_eq!(
            Reply::read_from(&buf[..]),
            Some(Reply::Failed {
                message: "inner".into()
            })
        );
    }

    #[test]
    fn done_and_silence() {
        let mut buf = Vec::new();
        Reply::Done { pid: Some(42) }.write_to(&mut buf);
        assert_eq!(
            Reply::read_from(&buf[..]),
            Some(Reply::Done { pid: Some(42) })
        );
        assert_eq!(Reply::read_from(&b""[..]), None);
    }
}
