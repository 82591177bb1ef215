//! What the guest is told when it passes the wrong things.

use triage_nn::{ExecutionTarget, NnBackend, NnError, Tensor, TensorType};

use crate::{backend, load, model};

#[test]
fn a_tensor_of_the_wrong_type_or_shape_is_refused_naming_the_input() {
    let Some(backend) = backend("a_tensor_of_the_wrong_type_or_shape_is_refused_naming_the_input")
    else {
        return;
    };
    let graph = load(&backend, "digits_mlp.onnx");
    let mut context = graph.init_context().expect("context");

    let ints = Tensor {
        dimensions: vec![1, 64],
        ty: TensorType::I64,
        data: vec![0; 64 * 8],
    };
    let err = context.set_input(0, &ints).unwrap_err();
    assert!(matches!(err, NnError::Tensor { .. }), "{err:?}");
    assert_eq!(
        err.to_string(),
        "onnxruntime: input 0 (\"input\") takes F32 tensors, the guest passed I64"
    );

    let halves = Tensor {
        dimensions: vec![1, 64],
        ty: TensorType::F16,
        data: vec![0; 64 * 2],
    };
    let err = context.set_input(0, &halves).unwrap_err().to_string();
    assert!(
        err.contains("input 0 (\"input\"): F16 tensors are not supported"),
        "{err}"
    );

    let narrow = Tensor::from_f32(vec![1, 63], &[0.0; 63]);
    let err = context.set_input(0, &narrow).unwrap_err().to_string();
    assert_eq!(
        err,
        "onnxruntime: input 0 (\"input\") takes shape [?, 64], the guest passed [1, 63]"
    );

    let short = Tensor {
        data: vec![0; 12],
        ..Tensor::from_f32(vec![1, 64], &[0.0; 64])
    };
    let err = context.set_input(0, &short).unwrap_err().to_string();
    assert!(err.contains("needs 256 bytes, got 12"), "{err}");

    let err = context.set_input(1, &narrow).unwrap_err().to_string();
    assert_eq!(
        err,
        "onnxruntime: input 1 does not exist: the model has 1 input (\"input\")"
    );
}

#[test]
fn compute_needs_every_input_and_outputs_exist_only_after_it() {
    let Some(backend) = backend("compute_needs_every_input_and_outputs_exist_only_after_it") else {
        return;
    };
    let graph = load(&backend, "digits_mlp.onnx");
    let mut context = graph.init_context().expect("context");
    let err = context.get_output(0).unwrap_err().to_string();
    assert!(err.contains("compute has not run"), "{err}");
    let err = context.compute().unwrap_err();
    assert!(matches!(err, NnError::Tensor { .. }), "{err:?}");
    assert!(
        err.to_string().contains("input 0 (\"input\") is not set"),
        "{err}"
    );
    context
        .set_input(0, &Tensor::from_f32(vec![1, 64], &[0.0; 64]))
        .expect("set_input");
    context.compute().expect("compute");
    let err = context.get_output(1).unwrap_err().to_string();
    assert_eq!(
        err,
        "onnxruntime: output 1 does not exist: the model has 1 output (\"probabilities\")"
    );
}

#[test]
fn an_onnx_graph_is_exactly_one_builder() {
    let Some(backend) = backend("an_onnx_graph_is_exactly_one_builder") else {
        return;
    };
    let bytes = model("digits_mlp.onnx");
    for builders in [vec![], vec![&bytes[..], &bytes[..]]] {
        let err = backend
            .load(&builders, ExecutionTarget::Cpu)
            .err()
            .expect("refused");
        assert!(matches!(err, NnError::Load { .. }), "{err:?}");
        let text = err.to_string();
        let passed = format!("{} were passed", builders.len());
        assert!(
            text.contains("one builder") && text.contains(&passed),
            "{text}"
        );
    }
}

#[test]
fn a_garbage_model_is_a_load_error_from_onnxruntime() {
    let Some(backend) = backend("a_garbage_model_is_a_load_error_from_onnxruntime") else {
        return;
    };
    let garbage = b"this is not an ONNX model".repeat(10);
    let err = backend
        .load(&[&garbage], ExecutionTarget::Cpu)
        .err()
        .expect("refused");
    assert!(matches!(err, NnError::Load { .. }), "{err:?}");
    let text = err.to_string();
    assert!(
        text.starts_with("onnxruntime: cannot load the model: "),
        "{text}"
    );
    eprintln!("garbage model: {text}");
}
