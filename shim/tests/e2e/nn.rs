//! wasi-nn: a Wasm guest classifies cases from its mount with preloaded models.

use std::path::Path;

use triage_testkit::models::{models_dir, TestModel, BREAST_CANCER, DIGITS};

use crate::support::{
    assert_clean, containerd, run, shim_log, CtrOutput, PrivateContainerd, WASM_IMAGE,
};

/// Writes the model's held-out cases into `dir`: digits as 8×8 PGM images, breast-mass
/// features as CSV lines. Returns the true labels by file name.
fn write_cases(model: TestModel, dir: &Path) -> Vec<(String, String)> {
    std::fs::create_dir_all(dir).unwrap();
    model
        .holdout()
        .into_iter()
        .enumerate()
        .map(|(i, case)| {
            let (name, content) = if model.features == 64 {
                let pixels: Vec<String> = case.features.iter().map(|p| format!("{p}")).collect();
                (
                    format!("case-{i:03}.pgm"),
                    format!("P2\n8 8\n16\n{}\n", pixels.join(" ")),
                )
            } else {
                let values: Vec<String> = case.features.iter().map(|v| format!("{v:?}")).collect();
                (format!("case-{i:03}.csv"), values.join(","))
            };
            std::fs::write(dir.join(&name), content).unwrap();
            (name, case.label)
        })
        .collect()
}

/// The share of cases the guest labelled right; every case must have a line.
fn accuracy(stdout: &str, truth: &[(String, String)]) -> f64 {
    let mut correct = 0;
    for (name, label) in truth {
        let line = stdout
            .lines()
            .find(|l| l.split(' ').next() == Some(name.as_str()))
            .unwrap_or_else(|| panic!("no line for {name} in:\n{stdout}"));
        let fields: Vec<&str> = line.split(' ').collect();
        assert_eq!(fields.len(), 3, "{line}");
        let p: f32 = fields[2].parse().unwrap_or_else(|_| panic!("{line}"));
        assert!(p > 0.0 && p <= 1.0, "{line}");
        if fields[1] == label {
            correct += 1;
        }
    }
    correct as f64 / truth.len() as f64
}

fn labels_env(model: TestModel) -> String {
    format!("LABELS={}", model.labels.join(","))
}

/// Runs `/classify.wasm MODEL /cases` with `cases` mounted read-only at `/cases`, the
/// labels of `labels` in the environment, and `extra` flags.
fn classify(
    ctd: &PrivateContainerd,
    id: &str,
    cases: &Path,
    labels: TestModel,
    extra: &[&str],
    model: &str,
) -> CtrOutput {
    let mount = format!(
        "type=bind,src={},dst=/cases,options=rbind:ro",
        cases.display()
    );
    let labels = labels_env(labels);
    let mut flags = vec!["--mount", mount.as_str(), "--env", labels.as_str()];
    flags.extend_from_slice(extra);
    run(
        ctd,
        &flags,
        WASM_IMAGE,
        id,
        &["/classify.wasm", model, "/cases"],
    )
}

/// The first line of the shim's log for container `id` that contains `message`.
fn log_line(ctd: &PrivateContainerd, id: &str, message: &str) -> String {
    let log = shim_log(ctd, id);
    log.lines()
        .find(|l| l.contains(message))
        .map(str::to_owned)
        .unwrap_or_else(|| panic!("no {message:?} line:\n{log}"))
}

/// The shim's `wasi-nn model preloaded` line for container `id`.
fn preload_line(ctd: &PrivateContainerd, id: &str) -> String {
    log_line(ctd, id, "wasi-nn model preloaded")
}

/// The shim's `wasi-nn prepared graph from the node's store` line for container `id`.
fn store_line(ctd: &PrivateContainerd, id: &str) -> String {
    log_line(ctd, id, "wasi-nn prepared graph from the node's store")
}

#[test]
fn a_wasm_guest_classifies_mounted_cases_with_preloaded_models() {
    let Some(ctd) = containerd("a_wasm_guest_classifies_mounted_cases_with_preloaded_models")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let cases = dir.path().join("digits");
    let digits = write_cases(DIGITS, &cases);
    // The built-in backend, even where the node has ONNX Runtime's library.
    ctd.write_node_profile("[nn]\ncpu_backend = \"tract\"\n")
        .unwrap();

    // A model in the image, preloaded by annotation (WasmEdge's --nn-preload form).
    let preload = [
        "--annotation",
        "triage.io/nn-preload=digits:ONNX:CPU:/models/digits_mlp.onnx",
    ];
    let out = classify(&ctd, "nn-digits", &cases, DIGITS, &preload, "digits");
    assert_eq!(out.code, 0, "{out:?}\n{}", shim_log(&ctd, "nn-digits"));
    let acc = accuracy(&out.stdout, &digits);
    assert!(acc >= 0.95, "digits accuracy {acc}");
    assert!(
        out.stderr
            .contains(&format!("classified {} cases", digits.len())),
        "{out:?}"
    );
    let backends = log_line(&ctd, "nn-digits", "wasi-nn backends: tract (ONNX; CPU");
    assert!(backends.contains("cpu=\"tract\""), "{backends}");
    let loaded = preload_line(&ctd, "nn-digits");
    assert!(
        loaded.contains("model=digits")
            && loaded.contains("backend=\"tract\"")
            && loaded.contains("target=CPU")
            && loaded.contains("from=\"prepared graph (node store)\""),
        "{loaded}"
    );

    // A GPU asked for on a node without one: the CPU serves, with the reason logged.
    let gpu = [
        "--annotation",
        "triage.io/nn-preload=digits:ONNX:GPU:/models/digits_mlp.onnx",
    ];
    let out = classify(&ctd, "nn-gpu", &cases, DIGITS, &gpu, "digits");
    assert_eq!(out.code, 0, "{out:?}");
    assert!(accuracy(&out.stdout, &digits) >= 0.95);
    let log = shim_log(&ctd, "nn-gpu");
    assert!(
        log.contains("wasi-nn target not available, running on the CPU"),
        "{log}"
    );
    // It maps the graph the first container prepared for the CPU.
    let stored = store_line(&ctd, "nn-gpu");
    assert!(stored.contains("outcome=Hit"), "{stored}");

    // The guest loads the model from bytes it reads itself (no preload).
    let out = classify(
        &ctd,
        "nn-bytes",
        &cases,
        DIGITS,
        &[],
        "/models/digits_mlp.onnx",
    );
    assert_eq!(out.code, 0, "{out:?}");
    assert!(accuracy(&out.stdout, &digits) >= 0.95);
    assert!(shim_log(&ctd, "nn-bytes").contains("wasi-nn graph loaded by the guest"));

    // A node model (host path) from the node profile, served to any guest by name.
    let cases = dir.path().join("breast");
    let breast = write_cases(BREAST_CANCER, &cases);
    ctd.write_node_profile(&format!(
        "[nn]\ncpu_backend = \"tract\"\npreload = [\"breast:ONNX:CPU:{}\"]\n",
        models_dir().join(BREAST_CANCER.file).display()
    ))
    .unwrap();
    let out = classify(&ctd, "nn-breast", &cases, BREAST_CANCER, &[], "breast");
    assert_eq!(out.code, 0, "{out:?}\n{}", shim_log(&ctd, "nn-breast"));
    let acc = accuracy(&out.stdout, &breast);
    assert!(acc >= 0.95, "breast cancer accuracy {acc}");
    assert!(out.stdout.contains(" malignant ") && out.stdout.contains(" benign "));
}

#[test]
fn onnx_runtime_serves_the_guest_from_a_graph_prepared_once_per_node() {
    let test = "onnx_runtime_serves_the_guest_from_a_graph_prepared_once_per_node";
    let Some(library) = std::env::var_os("TRIAGE_ONNXRUNTIME").filter(|l| Path::new(l).exists())
    else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!(
                "{test}: CI must set TRIAGE_ONNXRUNTIME (make test runs scripts/onnxruntime.sh)"
            );
        }
        eprintln!(
            "SKIPPED {test}: TRIAGE_ONNXRUNTIME names no library (run scripts/onnxruntime.sh)"
        );
        return;
    };
    let Some(ctd) = containerd(test) else {
        return;
    };
    // The node has the library: CPU graphs go to it without naming it.
    ctd.write_node_profile(&format!(
        "[nn]\nonnxruntime = \"{}\"\n",
        Path::new(&library).display()
    ))
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let digits = write_cases(DIGITS, dir.path());
    // The node's home is also the containers' (same path), so that anything ONNX Runtime
    // writes under $HOME, in the helper or in a container's init, shows on the host.
    let home = ctd.home_dir();
    let home_mount = format!("type=bind,src={0},dst={0},options=rbind:rw", home.display());
    let preload = [
        "--annotation",
        "triage.io/nn-preload=digits:ONNX:CPU:/models/digits_mlp.onnx",
        "--mount",
        &home_mount,
    ];
    // Classifies the cases in container `id` and returns its preload line.
    let classified = |id: &str, flags: &[&str]| {
        let out = classify(&ctd, id, dir.path(), DIGITS, flags, "digits");
        assert_eq!(out.code, 0, "{out:?}\n{}", shim_log(&ctd, id));
        assert!(accuracy(&out.stdout, &digits) >= 0.95);
        preload_line(&ctd, id)
    };
    let loaded = classified("nn-ort", &preload);
    let log = shim_log(&ctd, "nn-ort");
    assert!(loaded.contains("backend=\"onnxruntime\""), "{loaded}");
    let backends = log_line(&ctd, "nn-ort", "wasi-nn backends:");
    assert!(backends.contains("cpu=\"onnxruntime\""), "{backends}");
    // The library is opened before the helper forks; its threads start after the fork.
    assert!(!log.contains("threads exist before the fork"), "{log}");
    // The first container of the node prepared the model (optimised, ORT format) ...
    assert!(
        store_line(&ctd, "nn-ort").contains("outcome=Built"),
        "{log}"
    );
    assert!(
        loaded.contains("from=\"prepared graph (node store)\""),
        "{loaded}"
    );
    let entries = || {
        std::fs::read_dir(ctd.artifact_cache_dir())
            .unwrap()
            .filter(|e| e.as_ref().unwrap().path().extension() == Some("bin".as_ref()))
            .count()
    };
    let stored = entries();
    // ... and the next maps it without reading the model file: no new entry, the same
    // answers.
    let loaded = classified("nn-ort-2", &preload);
    assert!(
        store_line(&ctd, "nn-ort-2").contains("outcome=Hit"),
        "{}",
        shim_log(&ctd, "nn-ort-2")
    );
    assert!(
        loaded.contains("from=\"prepared graph (node store)\"")
            && loaded.contains("model_read=false"),
        "{loaded}"
    );
    assert_eq!(entries(), stored);
    // Without the artifact cache the container builds its graph from the model.
    let no_cache = [
        "--annotation",
        "triage.io/nn-preload=digits:ONNX:CPU:/models/digits_mlp.onnx",
        "--annotation",
        "triage.io/cache=off",
        "--mount",
        &home_mount,
    ];
    let loaded = classified("nn-ort-3", &no_cache);
    assert!(loaded.contains("from=\"model bytes\""), "{loaded}");

    // ONNX Runtime's telemetry is off in the helper and in the init: no device id, no
    // event store, no warning.
    let written: Vec<_> = walk(&home);
    assert!(written.is_empty(), "written under $HOME: {written:?}");
    for id in ["nn-ort", "nn-ort-2", "nn-ort-3"] {
        let log = shim_log(&ctd, id);
        assert!(!log.contains("telemetry is not turned off"), "{log}");
    }
}

/// Every path under `dir`.
fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(walk(&path));
        }
        found.push(path);
    }
    found
}

#[test]
fn the_classifier_sees_only_its_mount_and_bad_models_fail_at_create() {
    let Some(ctd) = containerd("the_classifier_sees_only_its_mount_and_bad_models_fail_at_create")
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    write_cases(DIGITS, &dir.path().join("cases"));
    let mount = format!(
        "type=bind,src={},dst=/cases,options=rbind:ro",
        dir.path().join("cases").display()
    );
    let preload = "triage.io/nn-preload=digits:ONNX:CPU:/models/digits_mlp.onnx";
    let flags = ["--mount", &mount, "--annotation", preload];

    // The host's directories and files do not exist for the guest, even where they do on
    // the host: its view is the image's root and its mount.
    let host_cases = dir.path().join("cases").display().to_string();
    let out = run(
        &ctd,
        &flags,
        WASM_IMAGE,
        "nn-host-dir",
        &["/classify.wasm", "digits", &host_cases],
    );
    assert_eq!(out.code, 3, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("cannot read cases directory {host_cases}")),
        "{out:?}"
    );
    let host_model = DIGITS.path().display().to_string();
    let out = run(
        &ctd,
        &flags,
        WASM_IMAGE,
        "nn-host-model",
        &["/classify.wasm", &host_model, "/cases"],
    );
    assert_eq!(out.code, 2, "{out:?}");
    assert!(
        out.stderr
            .contains(&format!("cannot read model {host_model}")),
        "{out:?}"
    );

    // Preloads Create refuses, naming the container and what is wrong, leaving nothing:
    // a file not in the container, a preload that does not parse, a file that is not a
    // model (its load in the container's init fails).
    let refused = [
        (
            "nn-missing",
            "digits:ONNX:CPU:/models/nope.onnx",
            "container nn-missing: wasi-nn model \"digits\" at /models/nope.onnx",
        ),
        (
            "nn-malformed",
            "digits:ONYX:CPU:/models/digits_mlp.onnx",
            "container nn-malformed: annotation triage.io/nn-preload: \"digits:ONYX:CPU:/models/digits_mlp.onnx\": unknown encoding \"ONYX\"",
        ),
        (
            "nn-not-model",
            "digits:ONNX:CPU:/hello.wasm",
            "container nn-not-model: wasi-nn model \"digits\" (digits:ONNX:CPU:/hello.wasm): tract: cannot load the model",
        ),
    ];
    for (id, preload, error) in refused {
        let annotation = format!("triage.io/nn-preload={preload}");
        let out = run(
            &ctd,
            &["--annotation", &annotation],
            WASM_IMAGE,
            id,
            &["/classify.wasm", "digits", "/"],
        );
        assert_ne!(out.code, 0, "{id}");
        assert!(out.stderr.contains(error), "{id}: {out:?}");
        assert_clean(&ctd, id);
    }
}
