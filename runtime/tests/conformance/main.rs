//! The engine conformance suite: every case runs, as a real container, on each Wasm engine
//! this build has, and must give the same stdout, exit status and errors on all of them.
//!
//! A custom harness (no libtest threads): libcontainer's create must run in a
//! single-threaded process. Needs root and the built workloads (`$TRIAGE_WASM_DIR`, which
//! `make test` sets); without them it says so and passes nothing. Arguments filter cases
//! by substring of `engine::case`, as `cargo test` does.

mod cases;
mod container;
/// The compute kernels of the `crunch` workload, compiled natively: what its checksums must be.
#[path = "../../../test-images/wasm/crunch/src/kernels.rs"]
mod kernels;

use std::path::PathBuf;

fn main() {
    let filters = filters(std::env::args().skip(1));
    let Some(wasm_dir) = prerequisites() else {
        println!("\ntest result: ok. 0 passed; 0 failed; 0 ignored; 0 measured; 0 filtered out");
        return;
    };
    // The container's init is reparented here when libcontainer's intermediate exits.
    // SAFETY: prctl with integer arguments only.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    let node = container::Node::new(wasm_dir);
    let log = std::fs::File::create(node.log_path()).expect("log file");
    tracing_subscriber::fmt()
        .with_writer(std::sync::Mutex::new(log))
        .with_ansi(false)
        .with_max_level(tracing::Level::INFO)
        .init();

    let engines = triage_runtime::engine::available();
    println!(
        "\nrunning the conformance cases on {}",
        engines
            .iter()
            .map(|e| e.as_str())
            .collect::<Vec<_>>()
            .join(" and ")
    );
    let (mut passed, mut failed, mut filtered) = (0, Vec::new(), 0);
    for &engine in engines {
        for case in cases::ALL {
            let name = format!("{}::{}", engine.as_str(), case.name);
            if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
                filtered += 1;
                continue;
            }
            let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                (case.run)(&node, engine)
            }));
            match result {
                Ok(()) => {
                    println!("test {name} ... ok");
                    passed += 1;
                }
                Err(panic) => {
                    let message = panic
                        .downcast_ref::<String>()
                        .cloned()
                        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                        .unwrap_or_default();
                    println!("test {name} ... FAILED\n{message}");
                    failed.push(name);
                }
            }
        }
    }
    let status = if failed.is_empty() { "ok" } else { "FAILED" };
    if !failed.is_empty() {
        println!("\nfailures:\n    {}", failed.join("\n    "));
        println!(
            "\nthe node's log:\n{}",
            std::fs::read_to_string(node.log_path()).unwrap_or_default()
        );
    }
    println!(
        "\ntest result: {status}. {passed} passed; {} failed; 0 ignored; 0 measured; {filtered} filtered out",
        failed.len()
    );
    if !failed.is_empty() {
        std::process::exit(101);
    }
}

/// The arguments that are not libtest options (`--test-threads 2`, `--nocapture`).
fn filters(args: impl Iterator<Item = String>) -> Vec<String> {
    let mut filters = Vec::new();
    let mut args = args.peekable();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--test-threads" | "--skip" | "--format" | "--color" => {
                args.next();
            }
            option if option.starts_with('-') => {}
            filter => filters.push(filter.to_owned()),
        }
    }
    filters
}

/// The workloads' directory, when this process may run containers; else `None`, having
/// said why. Under CI both must be there.
fn prerequisites() -> Option<PathBuf> {
    let ci = std::env::var("CI").as_deref() == Ok("true");
    let missing = |reason: &str| {
        if ci {
            panic!("CI must run the conformance suite: {reason}");
        }
        println!("SKIPPED: the conformance suite: {reason}");
        None
    };
    if !nix::unistd::Uid::effective().is_root() {
        return missing("creating containers needs root");
    }
    match std::env::var_os("TRIAGE_WASM_DIR").map(PathBuf::from) {
        Some(dir) if dir.join("hello.wasm").is_file() => Some(dir),
        Some(dir) => missing(&format!("{} has no hello.wasm", dir.display())),
        None => missing("TRIAGE_WASM_DIR (the built workloads) is not set; `make test` sets it"),
    }
}
