//! Runs until killed: prints one line, then sleeps forever.

use std::io::Write;

fn main() {
    println!("sleeper ready");
    let _ = std::io::stdout().flush();
    loop {
        std::thread::sleep(std::time::Duration::from_secs(3600));
    }
}
