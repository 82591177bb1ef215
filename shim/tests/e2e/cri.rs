//! Pods through containerd's CRI plugin, called as kubelet (and so K3s) calls it.

use triage_testkit::cri::{container, host_network_pod, CriClient};
use triage_testkit::{images_dir, require_host, shim_dir, CRI_NAMESPACE};

use crate::support::*;

/// A CRI-enabled private containerd with the test images in `k8s.io`.
fn cri_containerd(test: &str) -> Option<PrivateContainerd> {
    if !require_host(test) {
        return None;
    }
    let ctd = PrivateContainerd::start_with_cri(&shim_dir(env!(
        "CARGO_BIN_EXE_containerd-shim-triage-v1"
    )))
    .expect("start a private containerd with CRI");
    for image in ["pause", "wasm", "busybox"] {
        ctd.import_into(CRI_NAMESPACE, &images_dir().join(format!("{image}.tar")))
            .expect("import into k8s.io");
    }
    Some(ctd)
}

/// Shim daemons serving namespace `k8s.io`.
fn pod_shims() -> usize {
    std::fs::read_dir("/proc")
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok())
        .filter_map(|e| std::fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .filter(|cmd| {
            cmd.contains("containerd-shim-triage-v1 -namespace k8s.io") && cmd.contains(" -socket ")
        })
        .count()
}

#[test]
fn pod_runs_wasm_and_native_containers_in_one_shim_and_logs_for_kubectl() {
    let Some(ctd) =
        cri_containerd("pod_runs_wasm_and_native_containers_in_one_shim_and_logs_for_kubectl")
    else {
        return;
    };
    let logs = tempfile::tempdir().unwrap();
    let mut cri = CriClient::connect(&ctd).expect("CRI client");
    let pod_config = host_network_pod("edge-pod", "uid-edge-pod", logs.path());
    let pod = cri
        .run_pod(&pod_config, "triage")
        .unwrap_or_else(|e| panic!("{e:#}\n{}", ctd.log()));

    let wasm = cri
        .create_container(
            &pod,
            container(
                "wasm",
                WASM_IMAGE,
                &["/hello.wasm", "from", "a", "pod"],
                "wasm.log",
            ),
            &pod_config,
        )
        .unwrap_or_else(|e| panic!("{e:#}\n{}", ctd.log()));
    let native = cri
        .create_container(
            &pod,
            container(
                "native",
                BUSYBOX_IMAGE,
                &["sh", "-c", "echo native in a pod; exit 4"],
                "native.log",
            ),
            &pod_config,
        )
        .unwrap_or_else(|e| panic!("{e:#}\n{}", ctd.log()));
    cri.start_container(&wasm)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", ctd.log()));
    cri.start_container(&native)
        .unwrap_or_else(|e| panic!("{e:#}\n{}", ctd.log()));
    assert_eq!(cri.wait_exited(&wasm).unwrap().exit_code, 0);
    assert_eq!(cri.wait_exited(&native).unwrap().exit_code, 4);

    // The pause container and both workloads share the pod's one shim.
    assert_eq!(pod_shims(), 1, "{}", ctd.log());
    assert!(shim_log(&ctd, &wasm).contains("workload decision kind=\"wasm\""));
    assert!(shim_log(&ctd, &native).contains("workload decision kind=\"native\""));
    assert!(shim_log(&ctd, &pod).contains("workload decision kind=\"native\""));

    // What `kubectl logs` reads: CRI-format lines in the pod's log directory.
    let wasm_log = std::fs::read_to_string(logs.path().join("wasm.log")).unwrap();
    assert!(
        wasm_log
            .lines()
            .any(|l| l.ends_with(" stdout F hello from wasm")),
        "{wasm_log}"
    );
    assert!(
        wasm_log
            .lines()
            .any(|l| l.ends_with(" stdout F args: from a pod")),
        "{wasm_log}"
    );
    let native_log = std::fs::read_to_string(logs.path().join("native.log")).unwrap();
    assert!(
        native_log
            .lines()
            .any(|l| l.ends_with(" stdout F native in a pod")),
        "{native_log}"
    );

    for id in [&wasm, &native] {
        cri.remove_container(id).unwrap();
    }
    cri.stop_pod(&pod).unwrap();
    cri.remove_pod(&pod).unwrap();
    for id in [&wasm, &native, &pod] {
        assert_clean_in(&ctd, CRI_NAMESPACE, id);
    }
    assert_eq!(pod_shims(), 0);
}
