//! Table tests for the Wasm/native decision.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};

use serde_json::json;

use super::*;
use crate::image::ImageFacts;

const WASM: &[u8] = b"\0asm\x01\0\0\0";
const ELF: &[u8] = b"\x7fELF\x02\x01\x01\0";
const COMPONENT: &[u8] = b"\0asm\x0d\0\x01\0";

/// A bundle on disk: `rootfs/` with a module, a busybox-like ELF, a script, and a
/// bind-mount source holding another module.
struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("rootfs");
        std::fs::create_dir_all(root.join("bin")).unwrap();
        std::fs::write(root.join("app.wasm"), WASM).unwrap();
        std::fs::write(root.join("svc.wasm"), COMPONENT).unwrap();
        std::fs::write(root.join("bin/busybox"), ELF).unwrap();
        symlink("/bin/busybox", root.join("bin/echo")).unwrap();
        std::fs::write(root.join("run.sh"), b"#!/bin/sh\n").unwrap();
        std::fs::write(root.join("data.txt"), b"hello").unwrap();
        std::fs::create_dir_all(dir.path().join("mnt")).unwrap();
        std::fs::write(dir.path().join("mnt/tool.wasm"), WASM).unwrap();
        Self { dir }
    }

    fn bundle(&self, args: &[&str], annotations: &[(&str, &str)]) -> Bundle {
        let annotations: serde_json::Map<String, serde_json::Value> = annotations
            .iter()
            .map(|(k, v)| (k.to_string(), json!(v)))
            .collect();
        let spec = json!({
            "ociVersion": "1.0.2",
            "root": {"path": "rootfs", "readonly": false},
            "process": {
                "user": {"uid": 0, "gid": 0},
                "args": args,
                "env": ["PATH=/usr/bin:/bin", "GREETING=hi"],
                "cwd": "/"
            },
            "mounts": [
                {"destination": "/proc", "type": "proc", "source": "proc"},
                {"destination": "/opt/tools", "type": "bind",
                 "source": self.dir.path().join("mnt"), "options": ["rbind", "ro"]}
            ],
            "annotations": annotations
        });
        let spec = serde_json::from_value(spec).unwrap();
        Bundle::from_spec("c1", self.dir.path(), spec)
    }

    fn plan(&self, args: &[&str], annotations: &[(&str, &str)]) -> Result<WorkloadPlan, PlanError> {
        plan_workload(&self.bundle(args, annotations), None)
    }
}

#[test]
fn wasm_magic_without_annotation_is_wasm() {
    let fx = Fixture::new();
    let plan = fx.plan(&["/app.wasm", "a", "b"], &[]).unwrap();
    let wasm = plan.wasm().expect("wasm plan");
    assert_eq!(wasm.export, "_start");
    assert_eq!(wasm.args, vec!["/app.wasm", "a", "b"]);
    assert_eq!(
        wasm.env,
        vec![
            ("PATH".to_owned(), "/usr/bin:/bin".to_owned()),
            ("GREETING".to_owned(), "hi".to_owned())
        ]
    );
    assert_eq!(
        wasm.module,
        ModuleSource::File {
            container_path: PathBuf::from("/app.wasm"),
        }
    );
    assert_eq!(
        plan.reason.to_string(),
        "no annotation; entrypoint /app.wasm is a wasm module"
    );
}

#[test]
fn the_engine_annotation_is_carried_and_a_bad_one_refused() {
    let fx = Fixture::new();
    let plan = fx.plan(&["/app.wasm"], &[]).unwrap();
    assert_eq!(
        plan.wasm().unwrap().engine,
        crate::EngineChoice {
            engine: crate::EngineName::Wasmtime,
            source: crate::EngineSource::BuildDefault,
        }
    );
    let plan = fx
        .plan(&["/app.wasm"], &[("triage.io/engine", "wasmedge")])
        .unwrap();
    assert_eq!(
        plan.wasm().unwrap().engine,
        crate::EngineChoice {
            engine: crate::EngineName::Wasmedge,
            source: crate::EngineSource::Annotation,
        }
    );
    let err = fx
        .plan(&["/app.wasm"], &[("triage.io/engine", "wasmer")])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "container c1: annotation triage.io/engine=\"wasmer\" is not valid (expected \"wasmtime\" or \"wasmedge\")"
    );
}

#[test]
fn preopens_are_root_and_bind_mounts_only() {
    let fx = Fixture::new();
    let plan = fx.plan(&["/app.wasm"], &[]).unwrap();
    let preopens = &plan.wasm().unwrap().preopens;
    assert_eq!(
        preopens,
        &vec![
            Preopen {
                guest_path: "/".into(),
                read_only: false
            },
            Preopen {
                guest_path: "/opt/tools".into(),
                read_only: true
            },
        ]
    );
}

#[test]
fn elf_and_scripts_without_annotation_are_native() {
    let fx = Fixture::new();
    let plan = fx.plan(&["echo", "hi"], &[]).unwrap();
    assert_eq!(plan.kind, WorkloadKind::Native);
    assert_eq!(
        plan.reason.to_string(),
        "no annotation; entrypoint /bin/echo is an ELF executable"
    );
    let plan = fx.plan(&["/run.sh"], &[]).unwrap();
    assert_eq!(plan.kind, WorkloadKind::Native);
    assert!(plan.reason.to_string().contains("script"));
}

#[test]
fn export_suffix_selects_export() {
    let fx = Fixture::new();
    let plan = fx.plan(&["/app.wasm#greet", "x"], &[]).unwrap();
    let wasm = plan.wasm().unwrap();
    assert_eq!(wasm.export, "greet");
    assert_eq!(wasm.args, vec!["/app.wasm", "x"]);
    let err = fx.plan(&["/app.wasm#"], &[]).unwrap_err();
    assert!(err.to_string().contains("empty export"), "{err}");
}

#[test]
fn module_in_bind_mount_is_found() {
    let fx = Fixture::new();
    // The image's own file under the mount point is hidden by the mount.
    let hidden = fx.dir.path().join("rootfs/opt/tools");
    std::fs::create_dir_all(&hidden).unwrap();
    std::fs::write(hidden.join("tool.wasm"), ELF).unwrap();
    let bundle = fx.bundle(&["/opt/tools/tool.wasm"], &[]);
    let decision = decide(&bundle, None, &NodeContext::default()).unwrap();
    assert!(decision.plan.wasm().is_some(), "{:?}", decision.plan);
    let module = decision.files.module.expect("the module is open");
    assert_eq!(module.read_all(1 << 20, "k").unwrap(), WASM);
}

#[test]
fn modules_and_models_past_the_node_bounds_are_refused() {
    let fx = Fixture::new();
    let bundle = fx.bundle(&["/app.wasm"], &[]);
    let small = NodeContext {
        files: FileLimits {
            module_bytes: 4,
            model_bytes: 4,
        },
        ..NodeContext::default()
    };
    let err = decide(&bundle, None, &small).unwrap_err().to_string();
    assert_eq!(
        err,
        "container c1: wasm module /app.wasm is 8 bytes, larger than the 4 bytes the node profile allows (files.max_module_size)"
    );
    let bundle = fx.bundle(
        &["/app.wasm"],
        &[("triage.io/nn-preload", "greeting:ONNX:CPU:/data.txt")],
    );
    let limits = NodeContext {
        files: FileLimits {
            module_bytes: 8,
            model_bytes: 4,
        },
        ..NodeContext::default()
    };
    let err = decide(&bundle, None, &limits).unwrap_err().to_string();
    assert_eq!(
        err,
        "container c1: wasi-nn model \"greeting\" at /data.txt: 5 bytes, larger than the 4 bytes the node profile allows (files.max_model_size)"
    );
    let decision = decide(&bundle, None, &NodeContext::default()).unwrap();
    assert_eq!(decision.files.models.len(), 1);
    assert_eq!(decision.files.models[0].size, 5);
}

#[test]
fn a_model_that_is_a_fifo_is_refused_without_blocking() {
    let fx = Fixture::new();
    let fifo = std::ffi::CString::new(
        fx.dir
            .path()
            .join("rootfs/model.onnx")
            .into_os_string()
            .into_encoded_bytes(),
    )
    .unwrap();
    // SAFETY: mkfifo reads a NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o644) }, 0);
    let err = fx
        .plan(
            &["/app.wasm"],
            &[("triage.io/nn-preload", "m:ONNX:CPU:/model.onnx")],
        )
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "container c1: wasi-nn model \"m\" at /model.onnx: not a regular file (a FIFO)"
    );
}

#[test]
fn triage_annotation_wins_and_contradictions_fail() {
    let fx = Fixture::new();
    let plan = fx
        .plan(&["/app.wasm"], &[("triage.io/runtime", "wasm")])
        .unwrap();
    assert_eq!(plan.reason.to_string(), "annotation triage.io/runtime=wasm");

    let err = fx
        .plan(&["/bin/busybox"], &[("triage.io/runtime", "wasm")])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "container c1: annotation triage.io/runtime=wasm asks for wasm but entrypoint \
         /bin/busybox is an ELF executable"
    );
    let err = fx
        .plan(&["/app.wasm"], &[("triage.io/runtime", "native")])
        .unwrap_err();
    assert!(err.to_string().contains("asks for native"), "{err}");
    // The explicit annotation beats crun's keys.
    let plan = fx
        .plan(
            &["echo"],
            &[("triage.io/runtime", "native"), ("run.oci.handler", "wasm")],
        )
        .unwrap();
    assert_eq!(plan.kind, WorkloadKind::Native);
}

#[test]
fn unknown_runtime_value_fails() {
    let fx = Fixture::new();
    let err = fx
        .plan(&["/app.wasm"], &[("triage.io/runtime", "banana")])
        .unwrap_err();
    assert!(matches!(err, PlanError::UnknownRuntime { .. }));
}

#[test]
fn crun_keys() {
    let fx = Fixture::new();
    for (k, v) in [
        ("run.oci.handler", "wasm"),
        ("module.wasm.image/variant", "compat"),
    ] {
        let plan = fx.plan(&["/app.wasm"], &[(k, v)]).unwrap();
        assert!(plan.wasm().is_some());
        assert!(plan
            .reason
            .to_string()
            .starts_with(&format!("annotation {k}={v}")));
        let err = fx.plan(&["echo"], &[(k, v)]).unwrap_err();
        assert!(matches!(err, PlanError::Contradiction { .. }), "{err}");
    }
    for (k, v) in [
        ("run.oci.handler", "wasm-smart"),
        ("module.wasm.image/variant", "compat-smart"),
    ] {
        assert!(fx.plan(&["/app.wasm"], &[(k, v)]).unwrap().wasm().is_some());
        let native = fx.plan(&["echo"], &[(k, v)]).unwrap();
        assert_eq!(native.kind, WorkloadKind::Native);
        assert!(native.reason.to_string().contains("ELF"));
    }
}

#[test]
fn image_facts_decide_before_magic() {
    let fx = Fixture::new();
    let bundle = fx.bundle(&["/app.wasm"], &[]);
    let facts = ImageFacts {
        os: Some("wasip1".into()),
        architecture: Some("wasm".into()),
        layers: vec![],
    };
    let plan = plan_workload(&bundle, Some(&facts)).unwrap();
    assert_eq!(plan.reason.to_string(), "image config architecture=wasm");

    // An image that says wasm but runs an ELF entrypoint is a contradiction.
    let bundle = fx.bundle(&["echo"], &[]);
    let err = plan_workload(&bundle, Some(&facts)).unwrap_err();
    assert!(matches!(err, PlanError::Contradiction { .. }), "{err}");
}

#[test]
fn wasm_layer_without_file_uses_the_layer() {
    let fx = Fixture::new();
    let bundle = fx.bundle(&["/module.wasm"], &[]);
    let facts = ImageFacts {
        os: None,
        architecture: None,
        layers: vec![("application/wasm".into(), "sha256:abc".into())],
    };
    let plan = plan_workload(&bundle, Some(&facts)).unwrap();
    assert_eq!(
        plan.wasm().unwrap().module,
        ModuleSource::OciLayer {
            media_type: "application/wasm".into(),
            digest: "sha256:abc".into()
        }
    );
}

#[test]
fn bad_input_errors_name_the_container() {
    let fx = Fixture::new();
    let err = fx.plan(&[], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "container c1: process.args is empty: nothing to run"
    );
    let err = fx.plan(&["/missing.wasm"], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "container c1: entrypoint \"/missing.wasm\" not found in the container's rootfs or mounts"
    );
    // A relative program not on PATH is also missing.
    assert!(matches!(
        fx.plan(&["nope"], &[]).unwrap_err(),
        PlanError::EntrypointNotFound { .. }
    ));
}

#[test]
fn bundle_load_reports_path() {
    let dir = tempfile::tempdir().unwrap();
    let err = Bundle::load("c9", dir.path()).unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.starts_with("container c9: cannot load OCI spec"),
        "{msg}"
    );
    assert!(msg.contains(&dir.path().join("config.json").display().to_string()));
    let _ = Path::new("/");
}

#[test]
fn cri_sandbox_is_native_whatever_the_pod_asks() {
    let fx = Fixture::new();
    let plan = fx
        .plan(
            &["echo"],
            &[
                ("io.kubernetes.cri.container-type", "sandbox"),
                ("triage.io/runtime", "wasm"),
            ],
        )
        .unwrap();
    assert_eq!(plan.kind, WorkloadKind::Native);
    assert_eq!(
        plan.reason.to_string(),
        "annotation io.kubernetes.cri.container-type=sandbox"
    );
    // A pod's workload containers follow the pod's annotations.
    let err = fx
        .plan(
            &["echo"],
            &[
                ("io.kubernetes.cri.container-type", "container"),
                ("triage.io/runtime", "wasm"),
            ],
        )
        .unwrap_err();
    assert!(matches!(err, PlanError::Contradiction { .. }));
}

#[test]
fn the_node_settles_engine_and_snapshots_in_the_plan() {
    let fx = Fixture::new();
    let bundle = fx.bundle(&["/app.wasm"], &[]);
    let node = NodeContext {
        wasm: crate::WasmSettings {
            engine: Some(crate::EngineName::Wasmedge),
            ..Default::default()
        },
        ..NodeContext::default()
    };
    let plan = decide(&bundle, None, &node).unwrap().plan;
    let wasm = plan.wasm().unwrap();
    assert_eq!(wasm.engine.source, crate::EngineSource::NodeProfile);
    assert_eq!(wasm.engine.engine, crate::EngineName::Wasmedge);
    assert_eq!(wasm.snapshot, SnapshotPlan::Default);
    // The annotation wins over the node.
    let bundle = fx.bundle(&["/app.wasm"], &[("triage.io/engine", "wasmtime")]);
    let plan = decide(&bundle, None, &node).unwrap().plan;
    assert_eq!(
        plan.wasm().unwrap().engine.engine,
        crate::EngineName::Wasmtime
    );
    // No cache, snapshots off on the node, or the cache off for the container: none.
    let bundle = fx.bundle(&["/app.wasm"], &[("triage.io/snapshot-init", "init")]);
    for node in [
        NodeContext {
            cache: false,
            ..NodeContext::default()
        },
        NodeContext {
            wasm: crate::WasmSettings {
                snapshots: false,
                snapshot_init_seconds: 7,
                ..Default::default()
            },
            ..NodeContext::default()
        },
    ] {
        let plan = decide(&bundle, None, &node).unwrap().plan;
        assert_eq!(plan.wasm().unwrap().snapshot, SnapshotPlan::Off);
        assert_eq!(
            plan.wasm().unwrap().snapshot_init_seconds,
            node.wasm.snapshot_init_seconds
        );
    }
    let plan = fx
        .plan(&["/app.wasm"], &[("triage.io/cache", "off")])
        .unwrap();
    assert_eq!(plan.wasm().unwrap().snapshot, SnapshotPlan::Off);
}

#[test]
fn a_component_is_planned_as_one_with_the_snapshot_plan_and_no_export() {
    let fx = Fixture::new();
    let plan = fx.plan(&["/app.wasm"], &[]).unwrap();
    assert_eq!(plan.wasm().unwrap().form, crate::WasmForm::Module);
    let plan = fx.plan(&["/svc.wasm", "x"], &[]).unwrap();
    let wasm = plan.wasm().unwrap();
    assert_eq!(wasm.form, crate::WasmForm::Component);
    assert_eq!(wasm.args, ["/svc.wasm", "x"]);
    // Snapshotted as a module is: by its `wizer-initialize`, when it exports one.
    assert_eq!(wasm.snapshot, SnapshotPlan::Default);
    assert_eq!(
        plan.reason.to_string(),
        "no annotation; entrypoint /svc.wasm is a wasm component"
    );
    let err = fx.plan(&["/svc.wasm#handle"], &[]).unwrap_err();
    assert_eq!(
        err.to_string(),
        "container c1: /svc.wasm is a wasm component, which runs its wasi:cli/run or serves wasi:http/incoming-handler; `#handle` names the export of a core module"
    );
}

#[test]
fn listen_addresses_come_from_the_annotation_then_runwasis_env_then_8080() {
    let fx = Fixture::new();
    let plan = fx.plan(&["/svc.wasm"], &[]).unwrap();
    assert_eq!(
        plan.wasm().unwrap().listen.to_string(),
        "0.0.0.0:8080 (the default)"
    );
    let plan = fx
        .plan(
            &["/svc.wasm"],
            &[("triage.io/listen", "0.0.0.0:8080, [::]:8081,0.0.0.0:8080")],
        )
        .unwrap();
    assert_eq!(
        plan.wasm().unwrap().listen.to_string(),
        "0.0.0.0:8080,[::]:8081 (annotation triage.io/listen)"
    );
    let err = fx
        .plan(&["/svc.wasm"], &[("triage.io/listen", "0.0.0.0:http")])
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "container c1: annotation triage.io/listen=\"0.0.0.0:http\" is not valid (expected at most 16 IP:PORT addresses separated by commas (e.g. 0.0.0.0:8080,0.0.0.0:8081))"
    );
    // Each address is a socket the init holds: a bounded number.
    let many: Vec<String> = (0..17).map(|n| format!("0.0.0.0:{}", 9000 + n)).collect();
    assert!(fx
        .plan(&["/svc.wasm"], &[("triage.io/listen", &many.join(","))])
        .is_err());
    let mut bundle = fx.bundle(&["/svc.wasm"], &[]);
    let mut process = bundle.spec.process().clone().unwrap();
    process.set_env(Some(vec![
        "WASMTIME_HTTP_PROXY_SOCKET_ADDR=127.0.0.1:3000".into()
    ]));
    bundle.spec.set_process(Some(process));
    let plan = decide(&bundle, None, &NodeContext::default()).unwrap().plan;
    assert_eq!(
        plan.wasm().unwrap().listen.to_string(),
        "127.0.0.1:3000 (environment WASMTIME_HTTP_PROXY_SOCKET_ADDR)"
    );
    // Several, as under a handler that forwards no annotations (K3s's `wasmedge`).
    let mut process = bundle.spec.process().clone().unwrap();
    process.set_env(Some(vec![
        "WASMTIME_HTTP_PROXY_SOCKET_ADDR=0.0.0.0:8080,0.0.0.0:8081".into(),
    ]));
    bundle.spec.set_process(Some(process));
    let plan = decide(&bundle, None, &NodeContext::default()).unwrap().plan;
    assert_eq!(
        plan.wasm().unwrap().listen.to_string(),
        "0.0.0.0:8080,0.0.0.0:8081 (environment WASMTIME_HTTP_PROXY_SOCKET_ADDR)"
    );
    // A value that is no address is recorded (a service is refused with it), not taken
    // for the default.
    let mut process = bundle.spec.process().clone().unwrap();
    process.set_env(Some(vec![
        "WASMTIME_HTTP_PROXY_SOCKET_ADDR=localhost:8080".into()
    ]));
    bundle.spec.set_process(Some(process));
    let plan = decide(&bundle, None, &NodeContext::default()).unwrap().plan;
    let listen = &plan.wasm().unwrap().listen;
    assert_eq!(
        listen.source,
        crate::ListenSource::EnvNotAddresses("\"localhost:8080\"".into())
    );
    assert_eq!(
        listen.to_string(),
        "0.0.0.0:8080 (the default; environment WASMTIME_HTTP_PROXY_SOCKET_ADDR=\"localhost:8080\" is no addresses)"
    );
}

#[test]
fn egress_is_the_annotations_grants_then_the_nodes_and_none_by_default() {
    let fx = Fixture::new();
    let plan = fx.plan(&["/app.wasm"], &[]).unwrap();
    assert!(plan.wasm().unwrap().egress.is_empty());
    let bundle = fx.bundle(
        &["/app.wasm"],
        &[("triage.io/egress", "10.1.2.3:5432, pacs.hospital.local:443")],
    );
    let node = NodeContext {
        egress: crate::egress::parse_grants("pacs.hospital.local:443,[fd00::/8]:443").unwrap(),
        ..NodeContext::default()
    };
    let plan = decide(&bundle, None, &node).unwrap().plan;
    let texts: Vec<String> = plan
        .wasm()
        .unwrap()
        .egress
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(
        texts,
        ["10.1.2.3:5432", "pacs.hospital.local:443", "[fd00::/8]:443"]
    );
    let err = fx
        .plan(&["/app.wasm"], &[("triage.io/egress", "10.0.0.0/8,*")])
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "container c1: annotation triage.io/egress: \"*\" names no port (expected host:port, CIDR or CIDR:port (e.g. pacs.hospital.local:443, 10.20.0.0/16, 10.20.0.5:5432, [fd00::/8]:443))"
    );
}

#[test]
fn metrics_listen_is_one_address_of_its_own() {
    let fx = Fixture::new();
    let plan = fx.plan(&["/svc.wasm"], &[]).unwrap();
    assert_eq!(plan.wasm().unwrap().metrics_listen, None);
    let plan = fx
        .plan(
            &["/svc.wasm"],
            &[("triage.io/metrics-listen", "0.0.0.0:9090")],
        )
        .unwrap();
    assert_eq!(
        plan.wasm().unwrap().metrics_listen,
        Some("0.0.0.0:9090".parse().unwrap())
    );
    let err = fx
        .plan(
            &["/svc.wasm"],
            &[("triage.io/metrics-listen", "0.0.0.0:8080")],
        )
        .unwrap_err()
        .to_string();
    assert_eq!(
        err,
        "container c1: annotation triage.io/metrics-listen=0.0.0.0:8080 is also a listen address of the service (0.0.0.0:8080 (the default)); metrics need an address of their own"
    );
    let err = fx
        .plan(&["/svc.wasm"], &[("triage.io/metrics-listen", "9090")])
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("(expected one IP:PORT address (e.g. 0.0.0.0:9090))"),
        "{err}"
    );
}

#[test]
fn a_request_timeout_is_a_duration_with_its_unit() {
    let fx = Fixture::new();
    let timeout = |value: &str| {
        fx.plan(&["/svc.wasm"], &[("triage.io/request-timeout", value)])
            .map(|plan| plan.wasm().unwrap().request_timeout_ms)
    };
    assert_eq!(
        fx.plan(&["/svc.wasm"], &[])
            .unwrap()
            .wasm()
            .unwrap()
            .request_timeout_ms,
        30_000
    );
    assert_eq!(timeout("500ms").unwrap(), 500);
    assert_eq!(timeout("10s").unwrap(), 10_000);
    assert_eq!(timeout(" 2m ").unwrap(), 120_000);
    for bad in ["10", "0s", "soon", "-1s", "1h"] {
        let err = timeout(bad).unwrap_err().to_string();
        assert!(
            err.contains(
                "(expected a duration of at least 1ms with its unit (e.g. 500ms, 10s, 2m))"
            ),
            "{bad}: {err}"
        );
    }
}
