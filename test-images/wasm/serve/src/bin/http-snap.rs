//! A service with an init worth snapshotting: `wizer-initialize` builds a table once; each request answers whether its instance started from the initialised memory, and the table's sum.

#[rustfmt::skip]
#[path = "../snapshot_bindings.rs"]
#[allow(warnings)]
mod snapshot_bindings;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use wasi::http::types::{IncomingRequest, ResponseOutparam};

/// Set by the init: an instance made from a snapshot starts with it set.
static INITIALISED: AtomicBool = AtomicBool::new(false);
static TABLE: OnceLock<Vec<u64>> = OnceLock::new();

/// The work a real service does once (parsing its configuration, building lookup
/// tables): here the squares of the first 100,000 numbers.
fn build_table() -> Vec<u64> {
    (0..100_000u64).map(|n| n * n).collect()
}

struct Service;

impl snapshot_bindings::Guest for Service {
    fn wizer_initialize() {
        TABLE.get_or_init(build_table);
        INITIALISED.store(true, Ordering::SeqCst);
    }
}

impl wasi::exports::http::incoming_handler::Guest for Service {
    fn handle(_request: IncomingRequest, out: ResponseOutparam) {
        let from_snapshot = INITIALISED.load(Ordering::SeqCst);
        let sum: u64 = TABLE
            .get_or_init(build_table)
            .iter()
            .fold(0, |a, b| a.wrapping_add(*b));
        serve::respond(
            out,
            200,
            format!("from snapshot: {from_snapshot}, table sum {sum}\n").as_bytes(),
        );
    }
}

snapshot_bindings::export!(Service with_types_in snapshot_bindings);
wasi::http::proxy::export!(Service with_types_in wasi);

fn main() {}
