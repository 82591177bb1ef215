//! A guest whose initialisation is expensive: it builds a 16 MiB table and its digest (well
//! over 50 ms of work) in `wizer-initialize`, which Triage snapshots once per node; `_start`
//! builds them itself when no snapshot did, then prints the digest and a few entries.

use std::sync::OnceLock;

/// 4 Mi entries of 4 bytes: a 16 MiB heap.
const ENTRIES: usize = 4 << 20;
/// Mixing rounds per entry: the work that makes the init slow.
const ROUNDS: u32 = 10;

/// The table and its FNV-1a digest.
static TABLE: OnceLock<(Vec<u32>, u64)> = OnceLock::new();

fn build() -> (Vec<u32>, u64) {
    let mut table = Vec::with_capacity(ENTRIES);
    let mut state: u32 = 0x9e37_79b9;
    for i in 0..ENTRIES as u32 {
        let mut x = state ^ i;
        for _ in 0..ROUNDS {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x = x.wrapping_mul(0x2545_f491);
        }
        state = x;
        table.push(x);
    }
    let digest = table.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &v| {
        (h ^ u64::from(v)).wrapping_mul(0x100_0000_01b3)
    });
    (table, digest)
}

/// Pre-initialises the guest; Wizer runs it once and snapshots memory and globals.
#[export_name = "wizer-initialize"]
pub extern "C" fn initialize() {
    TABLE.get_or_init(build);
}

fn main() {
    let (table, digest) = TABLE.get_or_init(build);
    println!(
        "table of {} entries ({} MiB), digest {digest:016x}",
        table.len(),
        table.len() * 4 >> 20
    );
    let probe: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(12345);
    for index in [probe, probe * 7919, table.len() - 1] {
        let index = index % table.len();
        println!("entry {index}: {:08x}", table[index]);
    }
}
