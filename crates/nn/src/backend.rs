//! The three traits a backend implements: loading, graphs, execution contexts.

use std::sync::Arc;

use crate::{ExecutionTarget, GraphEncoding, NnError, Tensor};

/// Bytes a graph may borrow for as long as it lives: a prepared model mapped from the
/// node's store, whose pages every container that maps it shares.
pub type SharedBytes = Arc<dyn AsRef<[u8]> + Send + Sync>;

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

    /// What a prepared model of this backend depends on besides the model and target (the
    /// library and its version), or `None` when the backend has no prepared form: then
    /// every container builds its graphs from the model itself. Must not start threads.
    fn prepared_identity(&self) -> Option<String> {
        None
    }

    /// The model turned, once per node, into the form [`NnBackend::load_prepared`] loads
    /// quickly (parsed, optimised for `target`, serialised). Called in a process made for
    /// it, which may start threads and exits afterwards.
    fn prepare(&self, builders: &[&[u8]], target: ExecutionTarget) -> Result<Vec<u8>, NnError> {
        let _ = (builders, target);
        Err(NnError::Load {
            backend: self.name().to_owned(),
            reason: "this backend has no prepared form".to_owned(),
        })
    }

    /// A graph from what [`NnBackend::prepare`] made under the same identity, for `target`.
    /// The graph may borrow `prepared` instead of copying it.
    fn load_prepared(
        &self,
        prepared: SharedBytes,
        target: ExecutionTarget,
    ) -> Result<Arc<dyn NnGraph>, NnError> {
        let _ = (prepared, target);
        Err(NnError::Load {
            backend: self.name().to_owned(),
            reason: "this backend has no prepared form".to_owned(),
        })
    }
}

/// The one builder of a model whose encoding has a single buffer (ONNX: the model's
/// bytes); `Err` names `backend` and the number passed.
pub fn one_builder<'a>(
    backend: &str,
    encoding: GraphEncoding,
    builders: &[&'a [u8]],
) -> Result<&'a [u8], NnError> {
    match builders {
        [model] => Ok(model),
        _ => Err(NnError::Load {
            backend: backend.to_owned(),
            reason: format!(
                "an {encoding} graph is one builder (the model's bytes), {} were passed",
                builders.len()
            ),
        }),
    }
}

/// A loaded model. Immutable: every guest that uses the model shares it.
pub trait NnGraph: Send + Sync {
    /// The backend that loaded it.
    fn backend(&self) -> &str;

    /// The target it runs on.
    fn target(&self) -> ExecutionTarget;

    /// A fresh context for one guest's inferences.
    fn init_context(&self) -> Result<Box<dyn NnContext>, NnError>;

    /// The model's input names, in index order (wasi-nn's component interface names its
    /// tensors); empty when the backend does not know them.
    fn input_names(&self) -> Vec<String> {
        Vec::new()
    }

    /// The model's output names, in index order; empty when the backend does not know
    /// them.
    fn output_names(&self) -> Vec<String> {
        Vec::new()
    }
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
