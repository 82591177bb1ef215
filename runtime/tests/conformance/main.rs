//! The engine conformance suite: every case runs, as a real container, on each Wasm engine
//! this build has, and must give the same stdout, exit status and errors on all of them.
//!
//! A custom harness (no libtest threads): libcontainer's create must run in a
//! single-threaded process. Needs root and the built workloads (`$TRIAGE_WASM_DIR`, which
//! `make test` sets); without them it says so and passes nothing. Arguments filter cases
//! by substring of `engine::case`, as `cargo test` does.
//!
//! The cases that apply to components run once more on wasmtime, with the same workloads
//! built as WASI 0.2 components (`$TRIAGE_COMPONENTS_DIR`): `wasmtime-component::case`.

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
    let mut runs: Vec<(
        String,
        &container::Node,
        triage_oci::EngineName,
        &[cases::Case],
    )> = engines
        .iter()
        .map(|&engine| (engine.as_str().to_owned(), &node, engine, cases::ALL))
        .collect();
    // Components run on wasmtime only: a build without it has no component cases.
    let components = engines
        .contains(&triage_oci::EngineName::Wasmtime)
        .then(components_dir)
        .flatten()
        .map(|dir| container::Node::logging_with(dir, &node));
    if let Some(components) = &components {
        runs.push((
            "wasmtime-component".to_owned(),
            components,
            triage_oci::EngineName::Wasmtime,
            cases::FOR_COMPONENTS,
        ));
    }
    let (mut passed, mut failed, mut filtered) = (0, Vec::new(), 0);
    for (label, node, engine, cases) in runs {
        for case in cases {
            let name = format!("{label}::{}", case.name);
            if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
                filtered += 1;
                continue;
            }
            let result =
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| (case.run)(node, engine)));
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

/// The workloads built as components, where the build has them (CI must).
fn components_dir() -> Option<PathBuf> {
    match std::env::var_os("TRIAGE_COMPONENTS_DIR").map(PathBuf::from) {
        Some(dir) if dir.join("hello.wasm").is_file() => Some(dir),
        _ if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("CI must run the component cases: TRIAGE_COMPONENTS_DIR has no hello.wasm")
        }
        _ => {
            println!("SKIPPED: the component cases: TRIAGE_COMPONENTS_DIR (the workloads built for wasm32-wasip2) is not set; `make test` sets it");
            None
        }
    }
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
