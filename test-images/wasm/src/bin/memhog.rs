//! Allocates and touches memory 1 MiB at a time until an allocation fails, reporting
//! every 16 MiB; a failed allocation aborts the guest as Rust programs do.

use std::io::Write;

fn main() {
    let mut held: Vec<Vec<u8>> = Vec::new();
    loop {
        // Filled, so every page is really used.
        held.push(vec![0xa5; 1 << 20]);
        if held.len().is_multiple_of(16) {
            println!("memhog holds {} MiB", held.len());
            let _ = std::io::stdout().flush();
        }
    }
}
