//! Bad input: a clear error from `ctr` at Create, the same in the shim log, nothing left.

use crate::support::*;

/// Runs a container that must fail at Create and checks the message and the clean-up.
fn assert_refused(
    ctd: &PrivateContainerd,
    flags: &[&str],
    image: &str,
    id: &str,
    args: &[&str],
    message: &str,
) {
    let out = run(ctd, flags, image, id, args);
    assert_ne!(out.code, 0, "{id} should fail: {out:?}");
    assert!(
        out.stderr.contains(message),
        "{id}: ctr should print {message:?}, got {:?}",
        out.stderr
    );
    assert!(
        shim_log(ctd, id).contains(message),
        "{id}: the shim log should say {message:?}:\n{}",
        ctd.log()
    );
    assert!(out.stdout.is_empty(), "{id}: nothing may run: {out:?}");
    assert_clean(ctd, id);
}

#[test]
fn bad_input_is_refused_at_create_and_leaves_nothing() {
    let Some(ctd) = containerd("bad_input_is_refused_at_create_and_leaves_nothing") else {
        return;
    };
    assert_refused(
        &ctd,
        &[],
        WASM_IMAGE,
        "bad-missing",
        &["/missing.wasm"],
        "container bad-missing: entrypoint \"/missing.wasm\" not found in the container's rootfs or mounts",
    );
    assert_refused(
        &ctd,
        &[],
        WASM_IMAGE,
        "bad-bytes",
        &["/bad.wasm"],
        "container bad-bytes: invalid wasm module",
    );
    assert_refused(
        &ctd,
        &[],
        NOARGS_IMAGE,
        "bad-noargs",
        &[],
        "container bad-noargs: process.args is empty: nothing to run",
    );
    assert_refused(
        &ctd,
        &["--annotation", "triage.io/runtime=banana"],
        WASM_IMAGE,
        "bad-runtime",
        &["/hello.wasm"],
        "container bad-runtime: unknown value \"banana\" for annotation triage.io/runtime",
    );
    assert_refused(
        &ctd,
        &["--annotation", "triage.io/runtime=wasm"],
        BUSYBOX_IMAGE,
        "bad-contradiction",
        &["echo", "hi"],
        "container bad-contradiction: annotation triage.io/runtime=wasm asks for wasm but entrypoint /bin/echo is an ELF executable",
    );
    assert_refused(
        &ctd,
        &[],
        WASM_IMAGE,
        "bad-image-rule",
        &["/hello.sh"],
        "container bad-image-rule: image config architecture=wasm asks for wasm but entrypoint /hello.sh is a script (#!)",
    );
    assert_refused(
        &ctd,
        &[],
        WASM_IMAGE,
        "bad-export",
        &["/reactor.wasm#nope"],
        "container bad-export: wasm module",
    );
    assert_refused(
        &ctd,
        &["--annotation", "triage.io/egress=10.0.0.0/8,pacs.hospital.local"],
        WASM_IMAGE,
        "bad-egress",
        &["/hello.wasm"],
        "container bad-egress: annotation triage.io/egress: \"pacs.hospital.local\" names no port (expected host:port, CIDR or CIDR:port",
    );
}

#[test]
fn an_engine_that_is_not_in_the_build_is_refused_with_where_it_was_asked() {
    let Some(ctd) =
        containerd("an_engine_that_is_not_in_the_build_is_refused_with_where_it_was_asked")
    else {
        return;
    };
    // The default build has wasmtime only (WasmEdge needs libwasmedge: `--features wasmedge`).
    assert_refused(
        &ctd,
        &["--annotation", "triage.io/engine=wasmedge"],
        WASM_IMAGE,
        "engine-missing",
        &["/hello.wasm"],
        "container engine-missing: wasm engine wasmedge (annotation triage.io/engine=wasmedge) is not in this build of the shim (it has: wasmtime); the wasmedge engine is built with `cargo build --features wasmedge`",
    );
    assert_refused(
        &ctd,
        &["--annotation", "triage.io/engine=wasmer"],
        WASM_IMAGE,
        "engine-unknown",
        &["/hello.wasm"],
        "container engine-unknown: annotation triage.io/engine=\"wasmer\" is not valid (expected \"wasmtime\" or \"wasmedge\")",
    );
    ctd.write_node_profile("[wasm]\nengine = \"wasmedge\"\n")
        .unwrap();
    assert_refused(
        &ctd,
        &[],
        WASM_IMAGE,
        "engine-node",
        &["/hello.wasm"],
        "container engine-node: wasm engine wasmedge (node profile [wasm] engine = \"wasmedge\") is not in this build",
    );
    // The container's annotation wins over the node's setting.
    let out = run(
        &ctd,
        &["--annotation", "triage.io/engine=wasmtime"],
        WASM_IMAGE,
        "engine-annotated",
        &["/hello.wasm"],
    );
    ctd.write_node_profile("").unwrap();
    assert_eq!(out.code, 0, "{out:?}\n{}", ctd.log());
    assert!(out.stdout.starts_with("hello from wasm\n"), "{out:?}");
    assert!(
        shim_log(&ctd, "engine-annotated")
            .contains("wasm engine engine=wasmtime reason=annotation triage.io/engine=wasmtime"),
        "{}",
        ctd.log()
    );
    assert_clean(&ctd, "engine-annotated");
}

#[test]
fn annotations_steer_the_decision() {
    let Some(ctd) = containerd("annotations_steer_the_decision") else {
        return;
    };
    let out = run(
        &ctd,
        &["--annotation", "module.wasm.image/variant=compat-smart"],
        BUSYBOX_IMAGE,
        "steer-smart",
        &["echo", "still native"],
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "still native\n");
    assert!(shim_log(&ctd, "steer-smart").contains(
        "kind=\"native\" reason=annotation module.wasm.image/variant=compat-smart and the entrypoint is an ELF executable"
    ));
    let out = run(
        &ctd,
        &["--annotation", "run.oci.handler=wasm"],
        WASM_IMAGE,
        "steer-crun",
        &["/exit.wasm", "7"],
    );
    assert_eq!(out.code, 7, "{out:?}");
    assert!(shim_log(&ctd, "steer-crun")
        .contains("kind=\"wasm\" reason=annotation run.oci.handler=wasm"));
}
