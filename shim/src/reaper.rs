//! Reaps every child of the shim and hands exit statuses to whoever waits for that pid.
//!
//! The shim is a child subreaper, so container init processes whose helper has exited
//! become its children. One thread owns `waitpid`; nobody else calls it.

use std::collections::HashMap;
use std::sync::{Arc, Condvar, Mutex};
use std::time::SystemTime;

use nix::sys::signal::{SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// How a process ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcessExit {
    /// Exit code, or 128 + signal number for a process killed by a signal.
    pub status: u32,
    /// When it was reaped.
    pub at: SystemTime,
}

/// Exit statuses by pid, kept until claimed.
#[derive(Default)]
pub struct ExitRegistry {
    exits: Mutex<HashMap<i32, ProcessExit>>,
    reaped: Condvar,
}

impl ExitRegistry {
    /// Blocks until `pid` has exited, and claims its status.
    pub fn wait(&self, pid: i32) -> ProcessExit {
        let mut exits = self.exits.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(exit) = exits.remove(&pid) {
                return exit;
            }
            exits = self.reaped.wait(exits).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn record(&self, pid: i32, status: u32) {
        let mut exits = self.exits.lock().unwrap_or_else(|p| p.into_inner());
        exits.insert(
            pid,
            ProcessExit {
                status,
                at: SystemTime::now(),
            },
        );
        self.reaped.notify_all();
    }
}

/// Blocks SIGCHLD in the calling thread. Call before any other thread starts, so every
/// thread inherits the mask and only the reaper receives the signal.
pub fn block_sigchld() -> nix::Result<()> {
    let mut set = SigSet::empty();
    set.add(Signal::SIGCHLD);
    set.thread_block()
}

/// Starts the reaper thread.
pub fn spawn(registry: Arc<ExitRegistry>) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("reaper".into())
        .spawn(move || {
            let mut set = SigSet::empty();
            set.add(Signal::SIGCHLD);
            loop {
                reap_all(&registry);
                if let Err(e) = set.wait() {
                    tracing::error!("waiting for SIGCHLD: {e}");
                }
            }
        })
        .map(|_| ())
}

fn reap_all(registry: &ExitRegistry) {
    loop {
        match waitpid(Pid::from_raw(-1), Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(pid, code)) => registry.record(pid.as_raw(), code as u32),
            Ok(WaitStatus::Signaled(pid, signal, _)) => {
                registry.record(pid.as_raw(), 128 + signal as u32)
            }
            Ok(WaitStatus::StillAlive) | Err(nix::Error::ECHILD) => return,
            Ok(_) => continue,
            Err(nix::Error::EINTR) => continue,
            Err(e) => {
                tracing::error!("waitpid: {e}");
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_recorded_before_wait_is_not_lost() {
        let registry = ExitRegistry::default();
        registry.record(10, 42);
        assert_eq!(registry.wait(10).status, 42);
    }

    #[test]
    fn waiter_wakes_on_record() {
        let registry = Arc::new(ExitRegistry::default());
        let waiter = {
            let registry = Arc::clone(&registry);
            std::thread::spawn(move || registry.wait(7).status)
        };
        registry.record(8, 1);
        registry.record(7, 137);
        assert_eq!(waiter.join().unwrap(), 137);
        assert_eq!(registry.wait(8).status, 1);
    }
}
