//! Writes only when told to: waits for `/etc/go`, prints a line, creates `/etc/done`,
//! then sleeps forever. Shows whether output written long after start still succeeds.

use std::io::Write;
use std::time::Duration;

fn main() {
    while std::fs::metadata("/etc/go").is_err() {
        std::thread::sleep(Duration::from_millis(20));
    }
    println!("late output");
    let _ = std::io::stdout().flush();
    std::fs::write("/etc/done", b"").expect("create /etc/done");
    loop {
        std::thread::sleep(Duration::from_secs(3600));
    }
}
