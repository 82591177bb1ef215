//! tract serves the committed models: held-out accuracy, and clear errors for bad input.

use std::sync::Arc;

use triage_nn::{ExecutionTarget, NnBackend, NnError, NnGraph, Tensor, TensorType};
use triage_nn_tract::TractBackend;
use triage_testkit::models::{TestModel, BREAST_CANCER, DIGITS};

/// Classifies every held-out case one by one; returns the accuracy.
fn holdout_accuracy(model: TestModel) -> f64 {
    let graph = TractBackend::new()
        .load(&[&model.bytes()], ExecutionTarget::Cpu)
        .expect("model loads");
    graph_accuracy(graph.as_ref(), model)
}

/// The model's graph from its prepared form (as the node's store keeps it).
fn prepared_graph(model: TestModel) -> Arc<dyn NnGraph> {
    let backend = TractBackend::new();
    let prepared = backend
        .prepare(&[&model.bytes()], ExecutionTarget::Cpu)
        .expect("prepare");
    backend
        .load_prepared(Arc::new(prepared), ExecutionTarget::Cpu)
        .expect("load_prepared")
}

/// The probabilities `graph` gives for the first five held-out digits, as one batch.
fn first_five_digits(graph: &dyn NnGraph) -> Vec<f32> {
    let flat: Vec<f32> = DIGITS.holdout()[..5]
        .iter()
        .flat_map(|c| c.features.clone())
        .collect();
    let mut context = graph.init_context().unwrap();
    context
        .set_input(0, &Tensor::from_f32(vec![5, 64], &flat))
        .unwrap();
    context.compute().unwrap();
    let output = context.get_output(0).unwrap();
    assert_eq!(output.dimensions, vec![5, 10]);
    output.to_f32().unwrap()
}

/// Classifies every held-out case of `model` one by one with `graph`; returns the accuracy.
fn graph_accuracy(graph: &dyn NnGraph, model: TestModel) -> f64 {
    let mut context = graph.init_context().expect("context");
    let cases = model.holdout();
    let mut correct = 0;
    for case in &cases {
        let input = Tensor::from_f32(vec![1, model.features as u32], &case.features);
        context.set_input(0, &input).expect("input");
        context.compute().expect("compute");
        let output = context.get_output(0).expect("output");
        assert_eq!(output.dimensions, vec![1, model.labels.len() as u32]);
        let probabilities = output.to_f32().expect("f32 output");
        let sum: f32 = probabilities.iter().sum();
        assert!((sum - 1.0).abs() < 1e-4, "softmax sums to {sum}");
        if model.classify(&probabilities).0 == case.label {
            correct += 1;
        }
    }
    correct as f64 / cases.len() as f64
}

#[test]
fn breast_cancer_holdout_is_classified_with_at_least_95_percent_accuracy() {
    let accuracy = holdout_accuracy(BREAST_CANCER);
    assert!(accuracy >= 0.95, "accuracy {accuracy}");
}

#[test]
fn digits_holdout_is_classified_with_at_least_95_percent_accuracy() {
    let accuracy = holdout_accuracy(DIGITS);
    assert!(accuracy >= 0.95, "accuracy {accuracy}");
}

#[test]
fn a_batch_gives_one_row_per_case() {
    let cases = &DIGITS.holdout()[..5];
    let graph = TractBackend::new()
        .load(&[&DIGITS.bytes()], ExecutionTarget::Cpu)
        .unwrap();
    let probabilities = first_five_digits(graph.as_ref());
    let labels: Vec<&str> = probabilities
        .chunks(10)
        .map(|row| DIGITS.classify(row).0)
        .collect();
    let truth: Vec<&str> = cases.iter().map(|c| c.label.as_str()).collect();
    assert_eq!(labels, truth);
}

#[test]
fn bad_models_and_tensors_are_refused_with_the_reason() {
    let backend = TractBackend::new();
    let err = backend
        .load(&[b"not a model"], ExecutionTarget::Cpu)
        .err()
        .unwrap();
    assert!(matches!(err, NnError::Load { .. }), "{err}");
    assert!(
        err.to_string().starts_with("tract: cannot load the model"),
        "{err}"
    );

    let bytes = DIGITS.bytes();
    let err = backend
        .load(&[&bytes, &bytes], ExecutionTarget::Cpu)
        .err()
        .unwrap();
    assert!(
        err.to_string()
            .contains("one builder (the model's bytes), 2 were passed"),
        "{err}"
    );
    assert!(backend.serves(ExecutionTarget::Gpu).is_err());

    let graph = backend.load(&[&bytes], ExecutionTarget::Cpu).unwrap();
    let mut context = graph.init_context().unwrap();
    let err = context.compute().unwrap_err().to_string();
    assert!(err.contains("input 0 was not set"), "{err}");
    let short = Tensor {
        dimensions: vec![1, 64],
        ty: TensorType::F32,
        data: vec![0; 12],
    };
    let err = context.set_input(0, &short).unwrap_err().to_string();
    assert!(err.contains("needs 256 bytes, got 12"), "{err}");
    let err = context.set_input(3, &short).unwrap_err().to_string();
    assert!(
        err.contains("input 3 does not exist (the graph has 1)"),
        "{err}"
    );
    // 63 features where the model takes 64: tract refuses at compute.
    let wrong = Tensor::from_f32(vec![1, 63], &[0.0; 63]);
    context.set_input(0, &wrong).unwrap();
    let err = context.compute().unwrap_err().to_string();
    assert!(err.starts_with("tract: compute failed"), "{err}");
}

#[test]
fn prepared_models_classify_as_the_onnx_models_do_batches_included() {
    for model in [DIGITS, BREAST_CANCER] {
        let accuracy = graph_accuracy(prepared_graph(model).as_ref(), model);
        assert!(accuracy >= 0.95, "{}: accuracy {accuracy}", model.file);
    }
    // Same probabilities as the graph built from the ONNX model, for a batch of 5.
    let direct = TractBackend::new()
        .load(&[&DIGITS.bytes()], ExecutionTarget::Cpu)
        .unwrap();
    let (a, b) = (
        first_five_digits(direct.as_ref()),
        first_five_digits(prepared_graph(DIGITS).as_ref()),
    );
    assert!(
        a.iter().zip(&b).all(|(p, q)| (p - q).abs() < 1e-6),
        "{a:?}\n{b:?}"
    );
    // Both forms keep the model's tensor names (models.json records them), which
    // wasi-nn's component interface addresses.
    for graph in [direct, prepared_graph(DIGITS)] {
        assert_eq!(graph.input_names(), ["input"]);
        assert_eq!(graph.output_names(), ["probabilities"]);
    }
    let identity = TractBackend::new().prepared_identity().unwrap();
    assert!(
        identity.contains(triage_nn_tract::TRACT_VERSION),
        "{identity}"
    );
}

#[test]
fn a_prepared_form_is_refused_for_a_gpu_and_garbage_does_not_load() {
    let backend = TractBackend::new();
    let err = backend
        .prepare(&[&DIGITS.bytes()], ExecutionTarget::Gpu)
        .expect_err("CPU only");
    assert!(matches!(err, NnError::Unavailable { .. }), "{err}");
    let err = backend
        .load_prepared(Arc::new(b"not a tar".to_vec()), ExecutionTarget::Cpu)
        .err()
        .expect("refused")
        .to_string();
    assert!(
        err.starts_with("tract: cannot load the model: reading the prepared NNEF model"),
        "{err}"
    );
}
