//! Shared helpers of Triage's benchmarks: where the test workloads are, and which engine a bench process measures.

use std::path::{Path, PathBuf};

use triage_oci::{EngineChoice, EngineName};
use triage_runtime::engine::cache::ArtifactCache;
use triage_runtime::engine::{
    GuestExit, GuestInvocation, GuestStdio, PreloadOptions, Preloaded, WasmEngine,
};

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

/// The directory holding the workloads built as WASI 0.2 components and the HTTP services:
/// `$TRIAGE_COMPONENTS_DIR`, else beside [`wasm_dir`] (`wasm32-wasip2`).
pub fn components_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("TRIAGE_COMPONENTS_DIR") {
        return PathBuf::from(dir);
    }
    wasm_dir().join("../../wasm32-wasip2/release")
}

/// The path of component `name` (`http-hello` → `http-hello.wasm`); panics with what to
/// run when it has not been built.
pub fn component(name: &str) -> PathBuf {
    built(components_dir(), name, "TRIAGE_COMPONENTS_DIR")
}

/// The path of workload `name` (`hello` → `hello.wasm`); panics with what to run when
/// it has not been built.
pub fn workload(name: &str) -> PathBuf {
    built(wasm_dir(), name, "TRIAGE_WASM_DIR")
}

/// `NAME.wasm` in `dir`, which `$variable` can name instead; it must have been built.
fn built(dir: PathBuf, name: &str, variable: &str) -> PathBuf {
    let path = dir.join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is missing: run `make test-images` (or set {variable})",
        path.display()
    );
    path
}

/// The engine this bench process measures: `$TRIAGE_BENCH_ENGINE` (`wasmtime` or
/// `wasmedge`), else the build's default. One engine per process: WasmEdge's compiled code
/// puts its own handlers on SIGSEGV, SIGBUS and SIGFPE, which wasmtime's traps need.
pub fn engine_under_test() -> EngineName {
    let Some(name) = std::env::var_os("TRIAGE_BENCH_ENGINE") else {
        return triage_runtime::engine::build_default();
    };
    let name = name.to_string_lossy();
    let engine = EngineName::parse(&name).unwrap_or_else(|| {
        panic!("TRIAGE_BENCH_ENGINE={name}: not an engine (wasmtime or wasmedge)")
    });
    assert!(
        triage_runtime::engine::available().contains(&engine),
        "TRIAGE_BENCH_ENGINE={name}: not in this build (it has: {:?}); build the benches with --features wasmedge",
        triage_runtime::engine::available()
    );
    engine
}

/// A new engine of kind `name`, as the shim makes one per container.
pub fn new_engine(name: EngineName) -> Box<dyn WasmEngine> {
    let choice = EngineChoice::settle(Some(name), None, name);
    triage_runtime::engine::named("bench", choice).expect("an engine of this build")
}

/// Loads `module` into `engine` through `cache`, reading its file as the create helper
/// reads the descriptor it is given.
pub fn preload(
    engine: &dyn WasmEngine,
    module: &Path,
    cache: &ArtifactCache,
    options: &PreloadOptions,
) -> Preloaded {
    let bytes = std::fs::read(module).expect("the workload's module");
    engine
        .preload("bench", module, &bytes, cache, options)
        .expect("preload")
}

/// A `_start` call of `module` with `args` after argv0, output discarded.
pub fn invocation(module: &Path, args: &[&str]) -> GuestInvocation {
    GuestInvocation {
        nn: None,
        id: "bench".into(),
        module_path: module.to_path_buf(),
        module_bytes: None,
        export: "_start".into(),
        args: std::iter::once(module.display().to_string())
            .chain(args.iter().map(|a| a.to_string()))
            .collect(),
        env: Vec::new(),
        preopens: Vec::new(),
        memory_limit: None,
        stdio: GuestStdio::Discard,
        listen: Default::default(),
        metrics_listen: None,
        request_timeout: std::time::Duration::from_millis(triage_oci::DEFAULT_REQUEST_TIMEOUT_MS),
        cpus: None,
        egress: triage_runtime::engine::egress::Egress::denied("bench"),
    }
}

/// Instantiates the preloaded module and runs its export to the end, which must be a
/// clean exit.
pub fn start(engine: &dyn WasmEngine, inv: &GuestInvocation) {
    let guest = engine.prepare(inv).expect("prepare");
    assert_eq!(guest.run().expect("run"), GuestExit::Exited(0));
}
