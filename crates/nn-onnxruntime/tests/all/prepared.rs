//! Prepared models: optimised once into ONNX Runtime's ORT format, loaded from borrowed bytes.

use std::sync::Arc;

use triage_nn::{ExecutionTarget, NnBackend, SharedBytes};

use crate::{backend, library, load, model};

/// The probabilities each graph gives for the first rows of the digits hold-out set.
fn answers(graph: &dyn triage_nn::NnGraph) -> Vec<Vec<f32>> {
    let csv = std::fs::read_to_string(crate::models_dir().join("digits_holdout.csv"))
        .expect("digits_holdout.csv");
    let mut context = graph.init_context().expect("context");
    csv.lines()
        .skip(1)
        .take(25)
        .map(|line| {
            let values: Vec<f32> = line
                .split(',')
                .skip(1)
                .map(|v| v.parse().expect("feature"))
                .collect();
            crate::infer(context.as_mut(), &values)
        })
        .collect()
}

#[test]
fn a_prepared_model_is_ort_format_and_answers_as_the_onnx_model_does() {
    let Some(backend) =
        backend("a_prepared_model_is_ort_format_and_answers_as_the_onnx_model_does")
    else {
        return;
    };
    let onnx = model("digits_mlp.onnx");
    let prepared = backend
        .prepare(&[&onnx], ExecutionTarget::Cpu)
        .expect("prepare");
    // An ORT-format model is a flatbuffer with the file identifier "ORTM" at offset 4.
    assert_eq!(&prepared[4..8], b"ORTM", "not an ORT-format model");
    let shared: SharedBytes = Arc::new(prepared);
    let from_prepared = backend
        .load_prepared(Arc::clone(&shared), ExecutionTarget::Cpu)
        .expect("load_prepared");
    assert_eq!(from_prepared.backend(), "onnxruntime");
    let from_onnx = load(&backend, "digits_mlp.onnx");
    let (a, b) = (answers(from_onnx.as_ref()), answers(from_prepared.as_ref()));
    assert_eq!(a.len(), 25);
    for (row, (x, y)) in a.iter().zip(&b).enumerate() {
        for (p, q) in x.iter().zip(y) {
            assert!((p - q).abs() < 1e-5, "row {row}: {x:?} vs {y:?}");
        }
    }
    // The graph holds the bytes it borrows; they are released with it.
    assert_eq!(Arc::strong_count(&shared), 2);
    drop(from_prepared);
    assert_eq!(Arc::strong_count(&shared), 1);
}

#[test]
fn the_identity_of_prepared_models_names_the_library_and_follows_it() {
    let Some(library) = library("the_identity_of_prepared_models_names_the_library_and_follows_it")
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let copy = dir.path().join("libonnxruntime.so");
    std::fs::copy(&library, &copy).expect("copy the library");
    let backend = triage_nn_onnxruntime::OnnxRuntimeBackend::new(copy.clone());
    let before = backend.prepared_identity().expect("identity");
    assert!(before.contains(copy.to_str().unwrap()), "{before}");
    // Another library at the same path (an upgrade) prepares other models.
    let file = std::fs::OpenOptions::new()
        .append(true)
        .open(&copy)
        .expect("open the copy");
    file.set_len(std::fs::metadata(&copy).unwrap().len() + 1)
        .expect("grow the copy");
    assert_ne!(backend.prepared_identity().expect("identity"), before);
    let gone = triage_nn_onnxruntime::OnnxRuntimeBackend::new(dir.path().join("absent.so"));
    assert_eq!(gone.prepared_identity(), None);
}

#[test]
fn bytes_that_are_not_a_prepared_model_are_a_load_error() {
    let Some(backend) = backend("bytes_that_are_not_a_prepared_model_are_a_load_error") else {
        return;
    };
    let err = backend
        .load_prepared(Arc::new(b"not a model".to_vec()), ExecutionTarget::Cpu)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.starts_with("onnxruntime: cannot load the model:"),
        "{err}"
    );
    let err = backend
        .prepare(&[b"not a model"], ExecutionTarget::Cpu)
        .expect_err("refused")
        .to_string();
    assert!(
        err.starts_with("onnxruntime: cannot load the model:"),
        "{err}"
    );
}
