//! Shared helpers of Triage's benchmarks: where the test workloads are.

use std::path::PathBuf;

/// The directory holding the compiled Wasm test workloads (`make test-images` builds
/// them): `$TRIAGE_WASM_DIR`, else the workloads' target directory under
/// `$CARGO_TARGET_DIR` (or the workspace's `target/`).
pub fn wasm_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TRIAGE_WASM_DIR") {
        return PathBuf::from(dir);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../target")));
    target.join("wasm-workloads/wasm32-wasip1/release")
}

/// The path of workload `name` (`hello` → `hello.wasm`); panics with what to run when
/// it has not been built.
pub fn workload(name: &str) -> PathBuf {
    let path = wasm_dir().join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `make test-images` (or set TRIAGE_WASM_DIR)",
        path.display()
    );
    path
}
