//! CDI devices through `triage.io/gpu`: fake CDI specs over ordinary device nodes
//! (/dev/zero, /dev/null), in a spec directory the node profile points at.

use std::os::unix::fs::{FileTypeExt, MetadataExt};

use crate::support::*;

/// A node's CDI setup: a spec directory and the host directory a device mounts.
struct FakeCdiNode {
    specs: tempfile::TempDir,
    _data: tempfile::TempDir,
}

/// Writes `example.com/device` (devices `zero` and `null`) and a broken spec file
/// into a temp directory and points the node profile's `[cdi] spec_dirs` at it.
fn fake_cdi_node(ctd: &PrivateContainerd) -> FakeCdiNode {
    let data = tempfile::tempdir().unwrap();
    std::fs::write(data.path().join("note.txt"), "cdi data for zero\n").unwrap();
    let specs = tempfile::tempdir().unwrap();
    let yaml = format!(
        "cdiVersion: 0.6.0
kind: example.com/device
devices:
- name: zero
  containerEdits:
    env:
    - TRIAGE_CDI=zero
    deviceNodes:
    - path: /dev/triage-zero
      hostPath: /dev/zero
    mounts:
    - hostPath: {}
      containerPath: /cdi-data
      options: [ro, rbind]
- name: null
  containerEdits:
    deviceNodes:
    - path: /dev/triage-null
      hostPath: /dev/null
",
        data.path().display()
    );
    std::fs::write(specs.path().join("example.yaml"), yaml).unwrap();
    std::fs::write(specs.path().join("broken.yaml"), "cdiVersion: [").unwrap();
    ctd.write_node_profile(&format!(
        "[cdi]\nspec_dirs = [\"{}\"]\nannotation_devices = [\"example.com/device=*\", \"nvidia.com/gpu=*\"]\n",
        specs.path().display()
    ))
    .unwrap();
    FakeCdiNode { specs, _data: data }
}

const GPU_ZERO: [&str; 2] = ["--annotation", "triage.io/gpu=example.com/device=zero"];

#[test]
fn native_containers_get_cdi_device_nodes_env_and_mounts() {
    let Some(ctd) = containerd("native_containers_get_cdi_device_nodes_env_and_mounts") else {
        return;
    };
    let node = fake_cdi_node(&ctd);
    let out = run(
        &ctd,
        &GPU_ZERO,
        BUSYBOX_IMAGE,
        "cdi-zero",
        &[
            "sh",
            "-c",
            "env | grep TRIAGE_CDI; test -c /dev/triage-zero && echo char device; \
             head -c 4 /dev/triage-zero | od -An -tx1; cat /cdi-data/note.txt",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}\n{}", ctd.log());
    assert_eq!(
        out.stdout,
        "TRIAGE_CDI=zero\nchar device\n 00 00 00 00\ncdi data for zero\n"
    );
    let log = shim_log(&ctd, "cdi-zero");
    let spec_file = node.specs.path().join("example.yaml");
    assert!(
        log.contains(&format!(
            "CDI devices resolved devices=example.com/device=zero ({})",
            spec_file.display()
        )),
        "{log}"
    );
    assert!(
        log.contains(&format!(
            "skipping CDI spec file {}",
            node.specs.path().join("broken.yaml").display()
        )),
        "{log}"
    );
    assert_clean(&ctd, "cdi-zero");

    // `=all`: every device of the kind.
    let out = run(
        &ctd,
        &["--annotation", "triage.io/gpu=example.com/device=all"],
        BUSYBOX_IMAGE,
        "cdi-all",
        &[
            "sh",
            "-c",
            "for d in /dev/triage-*; do test -c $d && echo $d; done; echo $TRIAGE_CDI",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}\n{}", ctd.log());
    assert_eq!(out.stdout, "/dev/triage-null\n/dev/triage-zero\nzero\n");
    assert_clean(&ctd, "cdi-all");
}

#[test]
fn wasm_containers_get_cdi_device_nodes_env_and_mounts() {
    let Some(ctd) = containerd("wasm_containers_get_cdi_device_nodes_env_and_mounts") else {
        return;
    };
    let _node = fake_cdi_node(&ctd);
    let out = run(
        &ctd,
        &GPU_ZERO,
        WASM_IMAGE,
        "cdi-wasm-env",
        &["/hello.wasm"],
    );
    assert_eq!(out.code, 0, "{out:?}\n{}", ctd.log());
    assert!(out.stdout.contains("env: TRIAGE_CDI=zero\n"), "{out:?}");
    let out = run(
        &ctd,
        &GPU_ZERO,
        WASM_IMAGE,
        "cdi-wasm-mount",
        &["/fsprobe.wasm", "/cdi-data/note.txt"],
    );
    assert_eq!(out.code, 0, "{out:?}\n{}", ctd.log());
    assert!(
        out.stdout
            .contains("read /cdi-data/note.txt: ok cdi data for zero\n"),
        "{out:?}"
    );
    // The device node is in the guest's mount namespace (seen from the host).
    let mut child = spawn_run(
        &ctd,
        WASM_IMAGE,
        "cdi-wasm-node",
        &["/sleeper.wasm"],
        &GPU_ZERO,
    );
    assert_eq!(first_line(&mut child), "sleeper ready");
    let pid = task_pid(&ctd, "cdi-wasm-node").unwrap();
    let node = std::fs::metadata(format!("/proc/{pid}/root/dev/triage-zero")).unwrap();
    assert!(node.file_type().is_char_device());
    let zero = std::fs::metadata("/dev/zero").unwrap();
    assert_eq!(node.rdev(), zero.rdev());
    kill_and_check_clean(&ctd, "cdi-wasm-node", child);
    for id in ["cdi-wasm-env", "cdi-wasm-mount"] {
        assert_clean(&ctd, id);
    }
}

#[test]
fn unknown_cdi_devices_are_refused_at_create_and_leave_nothing() {
    let Some(ctd) = containerd("unknown_cdi_devices_are_refused_at_create_and_leave_nothing")
    else {
        return;
    };
    let node = fake_cdi_node(&ctd);
    let spec_dir = node.specs.path().display().to_string();
    // (annotation value, what ctr and the shim log say; ID stands for the container id)
    let refusals = [
        (
            "example.com/device=nope",
            "container ID: CDI device example.com/device=nope is not defined: kind \
             example.com/device has devices null, zero; skipped invalid CDI spec files, \
             which may have defined it: "
                .to_owned(),
        ),
        (
            "0",
            format!(
                "container ID: CDI device nvidia.com/gpu=0 is not defined: no CDI spec for \
                 kind nvidia.com/gpu in {spec_dir}; known kinds: example.com/device"
            ),
        ),
        (
            "example.com/device",
            "container ID: annotation triage.io/gpu=\"example.com/device\" is not valid: \
             \"example.com/device\" names a kind but no device (add =name or =all)"
                .to_owned(),
        ),
    ];
    for (n, (value, message)) in refusals.iter().enumerate() {
        let annotation = format!("triage.io/gpu={value}");
        for (kind, image, args) in [
            ("native", BUSYBOX_IMAGE, vec!["echo", "ran"]),
            ("wasm", WASM_IMAGE, vec!["/hello.wasm"]),
        ] {
            let id = format!("cdi-refused-{n}-{kind}");
            let message = message.replace("container ID:", &format!("container {id}:"));
            let out = run(&ctd, &["--annotation", &annotation], image, &id, &args);
            assert_ne!(out.code, 0, "{id} should fail: {out:?}");
            assert!(
                out.stderr.contains(&message),
                "{id}: ctr should print {message:?}, got {:?}",
                out.stderr
            );
            assert!(out.stdout.is_empty(), "{id}: nothing may run: {out:?}");
            assert!(
                shim_log(&ctd, &id).contains(&message),
                "{id}: the shim log should say {message:?}:\n{}",
                ctd.log()
            );
            assert_eq!(task_status(&ctd, &id), None, "{id}: no task may remain");
            assert_clean(&ctd, &id);
        }
    }
}
