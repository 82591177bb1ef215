//! Integration tests against a real libonnxruntime.so (env `TRIAGE_ONNXRUNTIME`) and the model fixtures in `test-images/models`.

mod errors;
mod models;
mod prepared;
mod targets;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use triage_nn::{ExecutionTarget, NnBackend, NnContext, NnGraph, Tensor};
use triage_nn_onnxruntime::OnnxRuntimeBackend;

/// The library named by `TRIAGE_ONNXRUNTIME`, or `None` (with the reason on stderr) when the
/// test cannot run here.
pub fn library(test: &str) -> Option<PathBuf> {
    let path = match std::env::var_os("TRIAGE_ONNXRUNTIME") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => {
            eprintln!(
                "skipping {test}: TRIAGE_ONNXRUNTIME is not set \
                 (export TRIAGE_ONNXRUNTIME=\"$(scripts/onnxruntime.sh)\")"
            );
            return None;
        }
    };
    if !path.is_file() {
        eprintln!(
            "skipping {test}: TRIAGE_ONNXRUNTIME={} does not exist (run scripts/onnxruntime.sh)",
            path.display()
        );
        return None;
    }
    Some(path)
}

/// The backend over the test library, or `None` when the test cannot run here.
pub fn backend(test: &str) -> Option<OnnxRuntimeBackend> {
    library(test).map(OnnxRuntimeBackend::new)
}

/// `test-images/models` of this workspace.
pub fn models_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../test-images/models")
}

/// The bytes of a model fixture.
pub fn model(file: &str) -> Vec<u8> {
    let path = models_dir().join(file);
    std::fs::read(&path).unwrap_or_else(|e| panic!("model fixture {}: {e}", path.display()))
}

/// A model fixture loaded on the CPU.
pub fn load(backend: &OnnxRuntimeBackend, file: &str) -> Arc<dyn NnGraph> {
    backend
        .load(&[&model(file)], ExecutionTarget::Cpu)
        .unwrap_or_else(|e| panic!("{file}: {e}"))
}

/// One inference: `values` as a `[1, n]` f32 input, the first output as f32s.
pub fn infer(context: &mut dyn NnContext, values: &[f32]) -> Vec<f32> {
    let input = Tensor::from_f32(vec![1, values.len() as u32], values);
    context.set_input(0, &input).expect("set_input");
    context.compute().expect("compute");
    context
        .get_output(0)
        .expect("output")
        .to_f32()
        .expect("f32")
}
