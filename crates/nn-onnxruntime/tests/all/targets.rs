//! Which targets the backend serves here, and why not; a library that is missing or not ONNX Runtime.

use std::fs;
use std::path::PathBuf;

use triage_nn::{BackendSet, ExecutionTarget, GraphEncoding, NnBackend, NnError};
use triage_nn_onnxruntime::{OnnxRuntimeBackend, OnnxRuntimeOptions};

use crate::{library, models_dir};

#[test]
fn making_a_backend_does_not_touch_the_library() {
    let backend = OnnxRuntimeBackend::new(PathBuf::from("/nonexistent/libonnxruntime.so"));
    assert_eq!(backend.name(), "onnxruntime");
    assert_eq!(backend.encodings(), [GraphEncoding::Onnx]);
    assert!(
        format!("{backend:?}").contains("loaded: None"),
        "{backend:?}"
    );
}

#[test]
fn a_library_that_does_not_exist_is_unavailable_naming_the_path() {
    let path = PathBuf::from("/nonexistent/triage/libonnxruntime.so.1.31.1");
    let backend = OnnxRuntimeBackend::new(path.clone());
    let why = backend.serves(ExecutionTarget::Cpu).unwrap_err();
    assert!(
        why.contains("/nonexistent/triage/libonnxruntime.so.1.31.1"),
        "{why}"
    );
    let why_gpu = backend.serves(ExecutionTarget::Gpu).unwrap_err();
    assert_eq!(why_gpu, why);
    let err = backend
        .load(&[b"model"], ExecutionTarget::Cpu)
        .err()
        .expect("refused");
    assert!(matches!(err, NnError::Unavailable { .. }), "{err:?}");
    assert!(
        err.to_string()
            .starts_with("onnxruntime: unavailable: no library at /nonexistent/triage/"),
        "{err}"
    );
}

#[test]
fn a_file_that_is_not_onnxruntime_is_unavailable_naming_the_path() {
    // Either dlopen refuses it, or (when a test already loaded the real library) the process
    // is bound to that one; both are answers naming this path.
    let path = models_dir().join("models.json");
    let backend = OnnxRuntimeBackend::new(path.clone());
    let why = backend.serves(ExecutionTarget::Cpu).unwrap_err();
    assert!(why.contains(&path.display().to_string()), "{why}");
}

#[test]
fn the_cpu_is_served_and_the_gpu_is_not_with_the_reasons() {
    let Some(library) = library("the_cpu_is_served_and_the_gpu_is_not_with_the_reasons") else {
        return;
    };
    let backend = OnnxRuntimeBackend::new(library.clone());
    assert_eq!(backend.serves(ExecutionTarget::Cpu), Ok(()));
    let why = backend.serves(ExecutionTarget::Gpu).unwrap_err();
    eprintln!("GPU on this machine: {why}");
    let cpu_wheel = format!(
        "CUDA provider not in {} (the CPU-only onnxruntime wheel; use onnxruntime-gpu)",
        library.display()
    );
    assert!(why.contains(&cpu_wheel), "{why}");
    assert!(backend.serves(ExecutionTarget::Tpu).is_err());

    // The device check, on its own: a directory without NVIDIA nodes, then one with them.
    let dev = std::env::temp_dir().join(format!("triage-ort-dev-{}", std::process::id()));
    fs::create_dir_all(&dev).expect("dev dir");
    let with_dev = |dev: &PathBuf| {
        let mut options = OnnxRuntimeOptions::default();
        options.with_device_dir(dev);
        OnnxRuntimeBackend::with_options(library.clone(), options)
            .serves(ExecutionTarget::Gpu)
            .unwrap_err()
    };
    let why = with_dev(&dev);
    assert!(why.contains(&cpu_wheel), "{why}");
    assert!(
        why.contains(&format!(
            "no NVIDIA device ({}/nvidiactl absent)",
            dev.display()
        )),
        "{why}"
    );
    fs::write(dev.join("nvidiactl"), "").expect("nvidiactl");
    let why = with_dev(&dev);
    assert!(why.contains("present but no"), "{why}");
    fs::write(dev.join("nvidia0"), "").expect("nvidia0");
    assert_eq!(with_dev(&dev), cpu_wheel);
    fs::remove_dir_all(&dev).expect("cleanup");
}

#[test]
fn a_gpu_asked_for_falls_back_to_the_cpu_with_the_reason() {
    let Some(library) = library("a_gpu_asked_for_falls_back_to_the_cpu_with_the_reason") else {
        return;
    };
    let mut set = BackendSet::new();
    set.add(std::sync::Arc::new(OnnxRuntimeBackend::new(library)));
    set.prefer_gpu("onnxruntime");
    let choice = set
        .choose(GraphEncoding::Onnx, ExecutionTarget::Gpu)
        .expect("a backend");
    assert_eq!(choice.target, ExecutionTarget::Cpu);
    let why = choice.fallback.expect("a reason");
    assert!(why.contains("onnxruntime: CUDA provider not in"), "{why}");
    let graph = choice
        .backend
        .load(&[&crate::model("digits_mlp.onnx")], choice.target)
        .expect("load");
    assert_eq!(graph.target(), ExecutionTarget::Cpu);
    assert_eq!(graph.backend(), "onnxruntime");

    // Loading for the GPU anyway: the provider cannot be registered.
    let backend = &choice.backend;
    let err = backend
        .load(&[&crate::model("digits_mlp.onnx")], ExecutionTarget::Gpu)
        .err()
        .expect("refused");
    assert!(matches!(err, NnError::Unavailable { .. }), "{err:?}");
    eprintln!("GPU load on this machine: {err}");
}
