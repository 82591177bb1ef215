//! wasmtime's wasi-nn (`wasi_ephemeral_nn`) served by Triage's backends and preloaded graphs.

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
use wasmtime_wasi_nn::witx::WasiNnCtx;
use wasmtime_wasi_nn::{Backend, ExecutionContext, Graph, GraphRegistry, Registry};

use crate::nn::NnHost;

/// A guest's wasi-nn state: one entry per encoding the node's backends load, and the
/// preloaded graphs by name.
pub(super) fn context(id: &str, host: Option<&NnHost>) -> WasiNnCtx {
    let Some(host) = host else {
        return WasiNnCtx::new(Vec::<Backend>::new(), Registry::from(Preloaded::default()));
    };
    let mut encodings: Vec<GraphEncoding> = Vec::new();
    for backend in host.backends.backends() {
        for &encoding in backend.encodings() {
            if !encodings.contains(&encoding) {
                encodings.push(encoding);
            }
        }
    }
    let backends = encodings.into_iter().filter_map(|encoding| {
        Some(Backend::from(ForEncoding {
            id: id.to_owned(),
            encoding,
            wit: wit_encoding(encoding)?,
            backends: host.backends.clone(),
        }))
    });
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
    WasiNnCtx::new(backends, Registry::from(Preloaded(graphs)))
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
            context: Mutex::new(context),
        });
        Ok(ExecutionContext::from(boxed))
    }
}

/// One execution context; wasmtime wants it `Sync`, the backend's is only `Send`.
struct GuestContext {
    id: String,
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

impl BackendExecutionContext for GuestContext {
    fn set_input(&mut self, id: Id, tensor: &wasmtime_wasi_nn::Tensor) -> Result<(), BackendError> {
        let index = index(&id)?;
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

    fn get_output(&mut self, id: Id) -> Result<wasmtime_wasi_nn::Tensor, BackendError> {
        let index = index(&id)?;
        let cid = self.id.clone();
        let tensor = self
            .context()
            .get_output(index)
            .map_err(|e| backend_error(&cid, e))?;
        let ty = match tensor.ty {
            TensorType::F16 => WitTensorType::Fp16,
            TensorType::F32 => WitTensorType::Fp32,
            TensorType::F64 => WitTensorType::Fp64,
            TensorType::U8 => WitTensorType::U8,
            TensorType::I32 => WitTensorType::I32,
            TensorType::I64 => WitTensorType::I64,
        };
        Ok(wasmtime_wasi_nn::Tensor::new(
            tensor.dimensions,
            ty,
            tensor.data,
        ))
    }

    fn compute(
        &mut self,
        inputs: Option<Vec<NamedTensor>>,
    ) -> Result<Option<Vec<NamedTensor>>, BackendError> {
        if inputs.is_some() {
            // Named tensors are the component-model interface's; witx guests set inputs
            // by index first.
            return Err(BackendError::BackendAccess(wasmtime::Error::msg(
                "named tensors are not supported by wasi_ephemeral_nn",
            )));
        }
        let id = self.id.clone();
        self.context()
            .compute()
            .map_err(|e| backend_error(&id, e))?;
        Ok(None)
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
