//! WasmEdge's plugin mechanism for wasi-nn: a guest that imports `wasi_ephemeral_nn` is linked to the module of the installed `wasi_nn` plugin (a test plugin built here: Debian 13 ships none).
//!
//! Its own test binary: WasmEdge reads `$WASMEDGE_PLUGIN_PATH` once per process.
#![cfg(feature = "wasmedge")]

use std::path::Path;
use std::process::Command;

use triage_runtime::engine::{GuestExit, GuestInvocation, GuestStdio, WasmEngine, WasmedgeEngine};

// (module (import "wasi_ephemeral_nn" "load" (func)) (func (export "_start") call 0))
const CALLS_WASI_NN_LOAD: &[u8] = &[
    0x00, 0x61, 0x73, 0x6d, 0x01, 0x00, 0x00, 0x00, // header
    0x01, 0x04, 0x01, 0x60, 0x00, 0x00, // type section: () -> ()
    0x02, 0x1a, 0x01, 0x11, b'w', b'a', b's', b'i', b'_', b'e', b'p', b'h', b'e', b'm', b'e', b'r',
    b'a', b'l', b'_', b'n', b'n', 0x04, b'l', b'o', b'a', b'd', 0x00, 0x00, // import
    0x03, 0x02, 0x01, 0x00, // func section: 1 func of type 0
    0x07, 0x0a, 0x01, 0x06, b'_', b's', b't', b'a', b'r', b't', 0x00, 0x01, // export
    0x0a, 0x06, 0x01, 0x04, 0x00, 0x10, 0x00, 0x0b, // code: call 0
];

fn build_plugin(dir: &Path) {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/wasmedge_plugin/test_wasi_nn.c");
    let include = std::env::var("WASMEDGE_INCLUDE_DIR").unwrap_or_else(|_| "/usr/include".into());
    let output = Command::new("cc")
        .args(["-shared", "-fPIC", "-Wall", "-Werror", "-o"])
        .arg(dir.join("libwasmedgePluginTestWasiNn.so"))
        .arg(format!("-I{include}"))
        .arg(&source)
        .output()
        .expect("cc (build-essential) runs");
    assert!(
        output.status.success(),
        "building the test plugin {}: {}",
        source.display(),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn a_wasi_nn_guest_calls_the_installed_plugin() {
    let plugins = tempfile::tempdir().unwrap();
    build_plugin(plugins.path());
    let work = tempfile::tempdir().unwrap();
    let marker = work.path().join("calls");
    let module = work.path().join("nn.wasm");
    std::fs::write(&module, CALLS_WASI_NN_LOAD).unwrap();
    // Before WasmEdge's plugin manager first looks (this binary's only test).
    std::env::set_var("WASMEDGE_PLUGIN_PATH", plugins.path());
    std::env::set_var("TRIAGE_TEST_PLUGIN_MARKER", &marker);

    let engine = WasmedgeEngine::new();
    assert!(
        WasmedgeEngine::has_wasi_nn_plugin(),
        "the test plugin was not found"
    );
    engine
        .validate("nn1", &module, CALLS_WASI_NN_LOAD, "_start")
        .unwrap();
    let guest = engine
        .prepare(&GuestInvocation {
            nn: None,
            id: "nn1".into(),
            module_path: module.clone(),
            module_bytes: None,
            export: "_start".into(),
            args: vec!["/nn.wasm".into()],
            env: Vec::new(),
            preopens: Vec::new(),
            memory_limit: None,
            stdio: GuestStdio::Inherit,
            listen: Default::default(),
            metrics_listen: None,
            request_timeout: std::time::Duration::from_millis(
                triage_oci::DEFAULT_REQUEST_TIMEOUT_MS,
            ),
            cpus: None,
            egress: triage_runtime::engine::egress::Egress::denied("nn1"),
        })
        .unwrap();
    assert_eq!(guest.run().unwrap(), GuestExit::Exited(0));
    assert_eq!(
        std::fs::read_to_string(&marker).unwrap(),
        "wasi_ephemeral_nn.load called\n"
    );
}
