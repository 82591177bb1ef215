//! Logging: `tracing` to the shim's log FIFO, which containerd copies into its own log.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Mutex;

use tracing_subscriber::EnvFilter;

/// The environment variable that overrides the log filter (e.g. `triage=trace`).
pub const LOG_ENV: &str = "TRIAGE_LOG";

/// Opens containerd's `log` FIFO in `bundle` without blocking; `None` if nobody reads it.
pub fn open_log_fifo(bundle: &Path) -> Option<File> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(bundle.join("log"))
        .ok()
}

/// Installs the global subscriber writing to `sink` (stderr when `None`).
pub fn init(sink: Option<File>, debug: bool) {
    let default = if debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_env(LOG_ENV).unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .with_target(false);
    let _ = match sink {
        Some(file) => builder.with_writer(Mutex::new(file)).try_init(),
        None => builder.with_writer(std::io::stderr).try_init(),
    };
}
