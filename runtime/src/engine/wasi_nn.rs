//! wasmtime's wasi-nn, both interfaces (modules' `wasi_ephemeral_nn`, components' `wasi:nn`), served by Triage's backends and preloaded graphs.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use triage_nn::{
    BackendSet, ExecutionTarget, GraphEncoding, NnContext, NnError, NnGraph, Tensor, TensorType,
};
use wasmtime_wasi_nn::backend::{
    BackendError, BackendExecutionContext, BackendFromDir, BackendGraph, BackendInner, Id,
    NamedTensor,
};
use wasmtime_wasi_nn::wit::{
    ExecutionTarget as WitTarget, GraphEncoding as WitEncoding, TensorType as WitTensorType,
};
use wasmtime_wasi_nn::{Backend, ExecutionContext, Graph, GraphRegistry, Registry};

use crate::nn::NnHost;

/// A module's wasi-nn state (`wasi_ephemeral_nn`).
pub(super) fn module_context(id: &str, host: Option<&NnHost>) -> wasmtime_wasi_nn::witx::WasiNnCtx {
    let (backends, registry) = parts(id, host);
    wasmtime_wasi_nn::witx::WasiNnCtx::new(backends, registry)
}

/// A component instance's wasi-nn state (`wasi:nn`): the container's graphs, built once,
/// shared by every instance.
pub(super) fn component_context(
    id: &str,
    host: Option<&NnHost>,
) -> wasmtime_wasi_nn::wit::WasiNnCtx {
    let (backends, registry) = parts(id, host);
    wasmtime_wasi_nn::wit::WasiNnCtx::new(backends, registry)
}

/// A guest's backends (one per encoding the node's backends load) and the preloaded
/// graphs by name.
fn parts(id: &str, host: Option<&NnHost>) -> (Vec<Backend>, Registry) {
    let Some(host) = host else {
        return (Vec::new(), Registry::from(Preloaded::default()));
    };
    let mut encodings: Vec<GraphEncoding> = Vec::new();
    for backend in host.backends.backends() {
        for &encoding in backend.encodings() {
            if !encodings.contains(&encoding) {
                encodings.push(encoding);
            }
        }
    }
    let backends = encodings
        .into_iter()
        .filter_map(|encoding| {
            Some(Backend::from(ForEncoding {
                id: id.to_owned(),
                encoding,
                wit: wit_encoding(encoding)?,
                backends: host.backends.clone(),
            }))
        })
        .collect();
    let graphs = host
        .graphs
        .iter()
        .map(|(name, graph)| {
            let shared: Box<dyn BackendGraph> = Box::new(SharedGraph {
                id: id.to_owned(),
                graph: Arc::clone(graph),
            });
            (name.clone(), Graph::from(shared))
        })
        .collect();
    (backends, Registry::from(Preloaded(graphs)))
}

fn wit_encoding(encoding: GraphEncoding) -> Option<WitEncoding> {
    Some(match encoding {
        GraphEncoding::Openvino => WitEncoding::Openvino,
        GraphEncoding::Onnx => WitEncoding::Onnx,
        GraphEncoding::Tensorflow => WitEncoding::Tensorflow,
        GraphEncoding::Pytorch => WitEncoding::Pytorch,
        GraphEncoding::TensorflowLite => WitEncoding::Tensorflowlite,
        GraphEncoding::Autodetect => WitEncoding::Autodetect,
        GraphEncoding::Ggml => return None,
    })
}

/// A backend error for the guest (which sees an errno), logged with the container's id.
fn backend_error(id: &str, e: NnError) -> BackendError {
    tracing::warn!(container = %id, "wasi-nn: {e}");
    BackendError::BackendAccess(wasmtime::Error::msg(e.to_string()))
}

/// wasmtime keeps one backend per encoding: this one chooses among the node's backends
/// for each graph the guest loads from bytes.
struct ForEncoding {
    id: String,
    encoding: GraphEncoding,
    wit: WitEncoding,
    backends: BackendSet,
}

impl BackendInner for ForEncoding {
    fn encoding(&self) -> WitEncoding {
        self.wit
    }

    fn load(&mut self, builders: &[&[u8]], target: WitTarget) -> Result<Graph, BackendError> {
        let asked = match target {
            WitTarget::Cpu => ExecutionTarget::Cpu,
            WitTarget::Gpu => ExecutionTarget::Gpu,
            WitTarget::Tpu => ExecutionTarget::Tpu,
        };
        let loaded = self
            .backends
            .load(self.encoding, asked, builders)
            .map_err(|e| backend_error(&self.id, e))?;
        crate::nn::log_fallback(
            &self.id,
            "(loaded by the guest)",
            asked,
            loaded.fallback.as_deref(),
        );
        tracing::info!(container = %self.id, backend = loaded.backend, target = %loaded.target, "wasi-nn graph loaded by the guest");
        let shared: Box<dyn BackendGraph> = Box::new(SharedGraph {
            id: self.id.clone(),
            graph: loaded.graph,
        });
        Ok(Graph::from(shared))
    }

    fn as_dir_loadable(&mut self) -> Option<&mut dyn BackendFromDir> {
        None
    }
}

/// A graph shared by every guest of this process that loads it.
struct SharedGraph {
    id: String,
    graph: Arc<dyn NnGraph>,
}

impl BackendGraph for SharedGraph {
    fn init_execution_context(&self) -> Result<ExecutionContext, BackendError> {
        let context = self
            .graph
            .init_context()
            .map_err(|e| backend_error(&self.id, e))?;
        let boxed: Box<dyn BackendExecutionContext> = Box::new(GuestContext {
            id: self.id.clone(),
            graph: Arc::clone(&self.graph),
            context: Mutex::new(context),
        });
        Ok(ExecutionContext::from(boxed))
    }
}

/// One execution context; wasmtime wants it `Sync`, the backend's is only `Send`.
struct GuestContext {
    id: String,
    /// For the names of its inputs and outputs.
    graph: Arc<dyn NnGraph>,
    context: Mutex<Box<dyn NnContext>>,
}

impl GuestContext {
    fn context(&mut self) -> &mut Box<dyn NnContext> {
        self.context.get_mut().unwrap_or_else(|p| p.into_inner())
    }
}

fn index(id: &Id) -> Result<u32, BackendError> {
    id.index().ok_or_else(|| {
        BackendError::BackendAccess(wasmtime::Error::msg(
            "tensors are addressed by index in wasi_ephemeral_nn",
        ))
    })
}

impl GuestContext {
    fn set(&mut self, index: u32, tensor: &wasmtime_wasi_nn::Tensor) -> Result<(), BackendError> {
        let ty = match tensor.ty {
            WitTensorType::Fp16 => TensorType::F16,
            WitTensorType::Fp32 => TensorType::F32,
            WitTensorType::Fp64 => TensorType::F64,
            WitTensorType::U8 => TensorType::U8,
            WitTensorType::I32 => TensorType::I32,
            WitTensorType::I64 => TensorType::I64,
            other => {
                return Err(BackendError::UnsupportedTensorType(format!("{other:?}")));
            }
        };
        let tensor = Tensor {
            dimensions: tensor.dimensions.clone(),
            ty,
            data: tensor.data.clone(),
        };
        let id = self.id.clone();
        self.context()
            .set_input(index, &tensor)
            .map_err(|e| backend_error(&id, e))
    }

    fn get(&mut self, index: u32) -> Result<wasmtime_wasi_nn::Tensor, BackendError> {
        let cid = self.id.clone();
        self.context()
            .get_output(index)
            .map(wasmtime_tensor)
            .map_err(|e| backend_error(&cid, e))
    }

    /// Computes. On a server's worker thread (a multi-threaded runtime), the runtime's
    /// other tasks move to another thread for as long as the inference takes, so the
    /// server goes on accepting and answering (its health path, `503`s) meanwhile.
    fn run(&mut self) -> Result<(), BackendError> {
        let id = self.id.clone();
        let context = self.context();
        let on_server = tokio::runtime::Handle::try_current()
            .is_ok_and(|h| h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread);
        let computed = if on_server {
            tokio::task::block_in_place(|| context.compute())
        } else {
            context.compute()
        };
        computed.map_err(|e| backend_error(&id, e))
    }

    /// The index of the input a component names: the model's name for it, or its
    /// position written as a number where the backend does not know the names.
    fn input_index(&self, name: &str, names: &[String]) -> Result<u32, BackendError> {
        if let Some(at) = names.iter().position(|n| n == name) {
            return Ok(at as u32);
        }
        match name.parse::<u32>() {
            Ok(index) if names.is_empty() => Ok(index),
            _ => Err(backend_error(
                &self.id,
                NnError::Tensor {
                    backend: self.graph.backend().to_owned(),
                    reason: format!(
                        "the graph has no input named {name:?} (its inputs: {})",
                        if names.is_empty() {
                            "unnamed; name them 0, 1, …".to_owned()
                        } else {
                            names.join(", ")
                        }
                    ),
                },
            )),
        }
    }
}

fn wasmtime_tensor(tensor: Tensor) -> wasmtime_wasi_nn::Tensor {
    let ty = match tensor.ty {
        TensorType::F16 => WitTensorType::Fp16,
        TensorType::F32 => WitTensorType::Fp32,
        TensorType::F64 => WitTensorType::Fp64,
        TensorType::U8 => WitTensorType::U8,
        TensorType::I32 => WitTensorType::I32,
        TensorType::I64 => WitTensorType::I64,
    };
    wasmtime_wasi_nn::Tensor::new(tensor.dimensions, ty, tensor.data)
}

impl BackendExecutionContext for GuestContext {
    fn set_input(&mut self, id: Id, tensor: &wasmtime_wasi_nn::Tensor) -> Result<(), BackendError> {
        self.set(index(&id)?, tensor)
    }

    fn get_output(&mut self, id: Id) -> Result<wasmtime_wasi_nn::Tensor, BackendError> {
        self.get(index(&id)?)
    }

    /// `None` (`wasi_ephemeral_nn`): the inputs are set; `Some` (`wasi:nn`): the named
    /// inputs, answered with every output under its name (its index where the backend
    /// does not know the names).
    fn compute(
        &mut self,
        inputs: Option<Vec<NamedTensor>>,
    ) -> Result<Option<Vec<NamedTensor>>, BackendError> {
        let Some(inputs) = inputs else {
            return self.run().map(|()| None);
        };
        let input_names = self.graph.input_names();
        for NamedTensor { name, tensor } in &inputs {
            let index = self.input_index(name, &input_names)?;
            self.set(index, tensor)?;
        }
        self.run()?;
        let output_names = self.graph.output_names();
        let mut outputs = Vec::with_capacity(output_names.len().max(1));
        if output_names.is_empty() {
            // Unnamed: as many as the backend gives, from 0.
            while let Ok(tensor) = self.context().get_output(outputs.len() as u32) {
                outputs.push(NamedTensor {
                    name: outputs.len().to_string(),
                    tensor: wasmtime_tensor(tensor),
                });
            }
        } else {
            for (index, name) in output_names.into_iter().enumerate() {
                let tensor = self.get(index as u32)?;
                outputs.push(NamedTensor { name, tensor });
            }
        }
        Ok(Some(outputs))
    }
}

/// The preloaded graphs, by name.
#[derive(Default)]
struct Preloaded(HashMap<String, Graph>);

impl GraphRegistry for Preloaded {
    fn get(&self, name: &str) -> Option<&Graph> {
        self.0.get(name)
    }

    fn get_mut(&mut self, name: &str) -> Option<&mut Graph> {
        self.0.get_mut(name)
    }
}
