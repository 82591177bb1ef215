//! The three traits a backend implements: loading, graphs, execution contexts.

use std::sync::Arc;

use crate::{ExecutionTarget, GraphEncoding, NnError, Tensor};

/// A wasi-nn backend: loads models of some encodings for some targets.
///
/// A backend is made once per process and shared; it must not start threads or touch a
/// device before [`NnBackend::load`] is called (the process that makes it may fork).
pub trait NnBackend: Send + Sync {
    /// A short name for configuration and logs (`tract`, `onnxruntime`).
    fn name(&self) -> &str;

    /// The encodings it loads.
    fn encodings(&self) -> &[GraphEncoding];

    /// Whether it can run graphs on `target` on this node now; `Err` says why not (no
    /// library, no device, no provider). Only `Cpu` and `Gpu` are asked.
    fn serves(&self, target: ExecutionTarget) -> Result<(), String>;

    /// Loads a model (wasi-nn's "builders": one buffer for ONNX) to run on `target`,
    /// which is one [`NnBackend::serves`] accepted.
    fn load(
        &self,
        builders: &[&[u8]],
        target: ExecutionTarget,
    ) -> Result<Arc<dyn NnGraph>, NnError>;
}

/// A loaded model. Immutable: every guest that uses the model shares it.
pub trait NnGraph: Send + Sync {
    /// The backend that loaded it.
    fn backend(&self) -> &str;

    /// The target it runs on.
    fn target(&self) -> ExecutionTarget;

    /// A fresh context for one guest's inferences.
    fn init_context(&self) -> Result<Box<dyn NnContext>, NnError>;
}

/// One guest's inputs and outputs for a graph.
pub trait NnContext: Send {
    /// Sets input `index` (wasi-nn numbers a graph's inputs from 0).
    fn set_input(&mut self, index: u32, tensor: &Tensor) -> Result<(), NnError>;

    /// Runs the graph on the inputs set so far.
    fn compute(&mut self) -> Result<(), NnError>;

    /// Output `index` of the last compute.
    fn get_output(&mut self, index: u32) -> Result<Tensor, NnError>;
}
