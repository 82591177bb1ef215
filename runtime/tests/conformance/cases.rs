//! The cases, written once: each runs on the engine it is given and asserts what a user of
//! that container sees.

use std::path::PathBuf;

use triage_oci::EngineName;

use crate::container::{Node, Outcome, Request, MOTD};

/// A case: its name and its body (which panics on a difference).
pub struct Case {
    pub name: &'static str,
    pub run: fn(&Node, EngineName),
}

/// A case named after its function.
macro_rules! case {
    ($run:ident) => {
        Case {
            name: stringify!($run),
            run: $run,
        }
    };
}

/// Every case, in the order they run on each engine.
pub const ALL: &[Case] = &[
    case!(args_and_env_reach_the_guest),
    case!(proc_exit_status_is_the_exit_status),
    case!(guest_code_computes_what_native_code_computes),
    case!(a_trap_exits_134_and_says_why),
    case!(an_export_suffix_calls_that_export),
    case!(a_missing_export_or_invalid_module_is_refused_at_create),
    case!(the_guest_sees_only_its_rootfs_and_mounts),
    case!(a_looping_guest_ends_on_sigterm_143_and_sigkill_137),
    case!(memory_beyond_the_limit_is_refused_to_the_guest),
    case!(a_module_is_compiled_once_per_engine_and_node),
    case!(wasmedges_own_sockets_serve_on_wasmedge_and_are_refused_on_wasmtime),
];

/// The cases that hold for components as they do for modules (the others call a core
/// module's export, or use workloads not built as components: `crunch`, `reactor`).
pub const FOR_COMPONENTS: &[Case] = &[
    case!(args_and_env_reach_the_guest),
    case!(a_components_exit_result_is_its_status),
    case!(a_trap_exits_134_and_says_why),
    case!(the_guest_sees_only_its_rootfs_and_mounts),
    case!(a_looping_guest_ends_on_sigterm_143_and_sigkill_137),
    case!(memory_beyond_the_limit_is_refused_to_the_guest),
    case!(a_module_is_compiled_once_per_engine_and_node),
];

/// Rust's standard library for `wasm32-wasip2` ends a process through
/// `wasi:cli/exit.exit(result)`, which carries only success or failure: `exit(42)` is
/// status 1, as under `wasmtime run`. (Triage also links `exit-with-code`, for toolchains
/// that call it.)
fn a_components_exit_result_is_its_status(node: &Node, engine: EngineName) {
    for (code, status) in [("42", 1), ("0", 0), ("3", 1)] {
        let (_, out) = node.run("exit", &request(engine, &["/exit.wasm", code]));
        exited(&out, status);
        assert_eq!(out.stdout, format!("exiting with {code}\n"));
    }
}

fn request<'a>(engine: EngineName, args: &'a [&'a str]) -> Request<'a> {
    Request {
        engine,
        args,
        env: &[],
        memory_limit: Some(256 << 20),
        binds: Vec::new(),
        signal_after: None,
        exchange: None,
        cache: None,
    }
}

fn exited(outcome: &Outcome, code: i32) {
    assert_eq!(outcome.result, Ok(code), "{outcome:#?}");
}

fn args_and_env_reach_the_guest(node: &Node, engine: EngineName) {
    let (_, out) = node.run(
        "hello",
        &Request {
            env: &["GREETING=hi", "TRIAGE_NODE=edge-7", "OTHER=hidden"],
            ..request(engine, &["/hello.wasm", "via", "conformance"])
        },
    );
    exited(&out, 0);
    assert_eq!(
        out.stdout,
        "hello from wasm\nargv0: /hello.wasm\nargs: via conformance\nenv: GREETING=hi\nenv: TRIAGE_NODE=edge-7\n"
    );
    assert_eq!(out.stderr, "");
}

fn proc_exit_status_is_the_exit_status(node: &Node, engine: EngineName) {
    for code in ["42", "0", "3"] {
        let (_, out) = node.run("exit", &request(engine, &["/exit.wasm", code]));
        exited(&out, code.parse().unwrap());
        assert_eq!(out.stdout, format!("exiting with {code}\n"));
    }
}

fn guest_code_computes_what_native_code_computes(node: &Node, engine: EngineName) {
    // The kernels the throughput benchmark times, at a size a test affords: both engines
    // must give the checksum the same source gives compiled for this machine.
    let cases: [(&[&str], String); 2] = [
        (
            &["/crunch.wasm", "blur", "64", "3"],
            format!("blur {:016x}\n", crate::kernels::blur(64, 3)),
        ),
        (
            &["/crunch.wasm", "sort", "20000"],
            format!("sort {:016x}\n", crate::kernels::sort(20_000)),
        ),
    ];
    for (args, expected) in cases {
        let (_, out) = node.run("crunch", &request(engine, args));
        exited(&out, 0);
        assert_eq!(out.stdout, expected, "{args:?}");
    }
    let (_, out) = node.run("crunch", &request(engine, &["/crunch.wasm", "fold"]));
    exited(&out, 2);
    assert_eq!(
        out.stderr,
        "usage: crunch blur SIDE PASSES | crunch sort COUNT\n"
    );
}

fn a_trap_exits_134_and_says_why(node: &Node, engine: EngineName) {
    let (id, out) = node.run("trap", &request(engine, &["/trap.wasm"]));
    exited(&out, 134);
    assert_eq!(out.stdout, "about to trap\n");
    assert!(out.stderr.starts_with("wasm guest trapped: "), "{out:#?}");
    assert!(out.stderr.contains("unreachable"), "{out:#?}");
    let log = node.log_of(&id);
    assert!(log.contains("wasm guest trapped"), "{log}");
}

fn an_export_suffix_calls_that_export(node: &Node, engine: EngineName) {
    let (_, out) = node.run("export", &request(engine, &["/reactor.wasm#greet"]));
    exited(&out, 0);
    assert_eq!(out.stdout, "greet export called\n");
}

fn a_missing_export_or_invalid_module_is_refused_at_create(node: &Node, engine: EngineName) {
    let (id, out) = node.run("noexport", &request(engine, &["/reactor.wasm#nope"]));
    let error = out.result.clone().unwrap_err();
    assert!(
        // The module is named by its path in the container, not the node's.
        error.starts_with(&format!(
            "container {id}: wasm module /reactor.wasm has no function export \"nope\" (exports: "
        )),
        "{error}"
    );
    assert!(error.contains("greet"), "{error}");
    assert_eq!(out.stdout, "");
    let (id, out) = node.run("invalid", &request(engine, &["/bad.wasm"]));
    let error = out.result.clone().unwrap_err();
    assert!(
        error.starts_with(&format!("container {id}: invalid wasm module /bad.wasm: ")),
        "{error}"
    );
    assert_eq!(out.stdout, "");
}

fn the_guest_sees_only_its_rootfs_and_mounts(node: &Node, engine: EngineName) {
    let host = node.dir.path().join(format!("host-data-{engine}"));
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("data.txt"), "from the host mount\n").unwrap();
    // A file on the host, outside the container's rootfs and mounts.
    let secret = node.dir.path().join(format!("secret-{engine}"));
    std::fs::write(&secret, "host secret").unwrap();
    let secret = secret.display().to_string();
    let (_, out) = node.run(
        "fs",
        &Request {
            binds: vec![(host.clone(), "/data")],
            ..request(
                engine,
                &[
                    "/fsprobe.wasm",
                    "/etc/motd",
                    "/data/data.txt",
                    &secret,
                    "/../../etc/motd",
                ],
            )
        },
    );
    exited(&out, 0);
    let lines: Vec<&str> = out.stdout.lines().collect();
    let workloads = workload_names(&node.wasm_dir);
    let mut root: Vec<String> = ["bad.wasm", "data", "dev", "etc", "proc", "sys"]
        .iter()
        .map(|s| s.to_string())
        .chain(workloads)
        .collect();
    root.sort();
    assert_eq!(lines[0], format!("ls /: {}", root.join(" ")), "{out:#?}");
    assert_eq!(lines[1], format!("read /etc/motd: ok {}", MOTD.trim_end()));
    assert_eq!(lines[2], "read /data/data.txt: ok from the host mount");
    assert_eq!(lines[3], format!("read {secret}: error NotFound"));
    // WASI refuses to resolve `..` above a preopen.
    assert_eq!(lines[4], "read /../../etc/motd: error PermissionDenied");
    assert_eq!(lines[5], "write /tmp-write-probe: ok");
    assert_eq!(lines.len(), 6, "{out:#?}");
}

fn workload_names(dir: &std::path::Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|name| name.ends_with(".wasm"))
        .collect()
}

fn a_looping_guest_ends_on_sigterm_143_and_sigkill_137(node: &Node, engine: EngineName) {
    for (signal, status) in [(libc::SIGTERM, 143), (libc::SIGKILL, 137)] {
        let (_, out) = node.run(
            "spin",
            &Request {
                signal_after: Some(("spinning", signal)),
                exchange: None,
                ..request(engine, &["/spin.wasm"])
            },
        );
        exited(&out, status);
        assert_eq!(out.stdout, "spinning\n");
    }
}

fn memory_beyond_the_limit_is_refused_to_the_guest(node: &Node, engine: EngineName) {
    let (id, out) = node.run(
        "memhog",
        &Request {
            memory_limit: Some(64 << 20),
            ..request(engine, &["/memhog.wasm"])
        },
    );
    // The guest's allocator sees memory.grow fail and aborts: a trap, not an OOM kill.
    exited(&out, 134);
    assert!(out.stdout.contains("memhog holds 16 MiB\n"), "{out:#?}");
    assert!(!out.stdout.contains("memhog holds 64 MiB"), "{out:#?}");
    let refusal = "refused: the container's memory limit is 64.0 MiB (67108864 bytes)";
    assert!(out.stderr.contains(refusal), "{out:#?}");
    assert!(node.log_of(&id).contains(refusal), "{}", node.log_of(&id));
}

fn a_module_is_compiled_once_per_engine_and_node(node: &Node, engine: EngineName) {
    // One cache for this case on every engine: each engine builds its own entry once.
    let cache = triage_runtime::engine::cache::CacheSettings {
        dir: Some(node.dir.path().join("cache-shared")),
        max_bytes: 1 << 30,
    };
    let entries = || {
        std::fs::read_dir(cache.dir.as_ref().unwrap())
            .map(|dir| {
                dir.filter(|e| {
                    let name = PathBuf::from(e.as_ref().unwrap().file_name());
                    name.extension().is_some_and(|ext| ext == "bin")
                })
                .count()
            })
            .unwrap_or(0)
    };
    let before = entries();
    for expected in ["Built", "Hit"] {
        let (id, out) = node.run(
            "once",
            &Request {
                cache: Some(&cache),
                ..request(engine, &["/hello.wasm"])
            },
        );
        exited(&out, 0);
        assert!(out.stdout.starts_with("hello from wasm\n"), "{out:#?}");
        let log = node.log_of(&id);
        assert!(
            log.contains(&format!("outcome={expected}")),
            "{id} should be {expected}: {log}"
        );
    }
    // Another engine's entry for the same module is not this engine's.
    assert_eq!(entries(), before + 1, "one entry per engine");
}

/// WasmEdge's extension of preview 1 (`sock_open`, `sock_bind`, `sock_listen`,
/// `sock_accept`, … with its own signatures): a guest written for it serves on WasmEdge in
/// its container's network namespace (here the test's, which it shares to be reached);
/// wasmtime has no such functions, so Create refuses the module and names the first.
fn wasmedges_own_sockets_serve_on_wasmedge_and_are_refused_on_wasmtime(
    node: &Node,
    engine: EngineName,
) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    let port_arg = port.to_string();
    let args = ["/wasmedge-echo.wasm", port_arg.as_str()];
    let mut req = request(engine, &args);
    req.exchange = Some(crate::container::Exchange {
        after: "listening",
        port,
        send: "ward 4",
    });
    let (_, out) = node.run("wasmedge-echo", &req);
    match engine {
        EngineName::Wasmedge => {
            exited(&out, 0);
            assert_eq!(out.reply.as_deref(), Some("echo: ward 4\n"), "{out:#?}");
            assert_eq!(out.stdout, "listening\nanswered\n");
        }
        EngineName::Wasmtime => {
            let error = out.result.as_ref().unwrap_err();
            assert!(
                error.contains("wasi_snapshot_preview1::sock_open"),
                "{out:#?}"
            );
        }
    }
}
