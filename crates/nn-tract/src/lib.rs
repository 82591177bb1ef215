//! The built-in CPU backend: ONNX graphs on tract (pure Rust, no threads, no device).
//!
//! tract parses the model, fixes its types, and optimises it into a plan once per load;
//! every context of the graph runs that shared plan. Its prepared form (made once per node
//! by the runtime) is the model already parsed, typed and simplified ("decluttered"),
//! saved as NNEF with tract's extensions: loading it skips ONNX parsing and analysis and
//! leaves only the optimisation into a plan. It serves [`ExecutionTarget::Cpu`]
//! only; the node's backend choice sends GPU graphs here (with a logged reason) when no
//! GPU backend serves. Operators from the `ai.onnx.ml` domain are not supported: export
//! models with plain ONNX operators.
#![deny(missing_docs)]

use std::sync::Arc;

use tract_onnx::prelude::{
    tvec, DatumType, Framework, InferenceModelExt, IntoRunnable, TValue, Tensor as TractTensor,
    TypedRunnableModel,
};
use tract_onnx::WithOnnx;
use triage_nn::{
    ExecutionTarget, GraphEncoding, NnBackend, NnContext, NnError, NnGraph, SharedBytes, Tensor,
    TensorType,
};

/// The backend's name in configuration and logs.
pub const NAME: &str = "tract";

/// The tract release this crate is built with (pinned in the workspace): prepared models
/// are kept per release.
pub const TRACT_VERSION: &str = "0.23.9";

fn load_error(reason: String) -> NnError {
    NnError::Load {
        backend: NAME.to_owned(),
        reason,
    }
}

fn cpu_only(target: ExecutionTarget) -> Result<(), NnError> {
    if target == ExecutionTarget::Cpu {
        Ok(())
    } else {
        Err(NnError::Unavailable {
            backend: NAME.to_owned(),
            reason: format!("CPU only (asked {target})"),
        })
    }
}

/// An optimised, runnable graph of a typed model.
fn graph_of(model: tract_onnx::prelude::TypedModel) -> Result<Arc<dyn NnGraph>, NnError> {
    // Names before optimising, which may merge or rename nodes: an input is its source
    // node; an output is its outlet's label (the ONNX tensor's name), else its node.
    let input_names = model
        .inputs
        .iter()
        .map(|outlet| model.node(outlet.node).name.clone())
        .collect();
    let output_names = model
        .outputs
        .iter()
        .map(|&outlet| {
            model
                .outlet_label(outlet)
                .unwrap_or(&model.node(outlet.node).name)
                .to_owned()
        })
        .collect();
    let plan = model
        .into_optimized()
        .and_then(|m| m.into_runnable())
        .map_err(|e| load_error(format!("optimising: {e:#}")))?;
    Ok(Arc::new(TractGraph {
        plan,
        input_names,
        output_names,
    }))
}

/// ONNX on tract, for the CPU.
#[derive(Debug, Default, Clone, Copy)]
pub struct TractBackend;

impl TractBackend {
    /// The backend (it holds no state: each load builds its own plan).
    pub fn new() -> Self {
        Self
    }
}

impl NnBackend for TractBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn encodings(&self) -> &[GraphEncoding] {
        &[GraphEncoding::Onnx]
    }

    fn serves(&self, target: ExecutionTarget) -> Result<(), String> {
        match target {
            ExecutionTarget::Cpu => Ok(()),
            other => Err(format!("CPU only (asked {other})")),
        }
    }

    fn load(
        &self,
        builders: &[&[u8]],
        target: ExecutionTarget,
    ) -> Result<Arc<dyn NnGraph>, NnError> {
        let bytes = triage_nn::one_builder(NAME, GraphEncoding::Onnx, builders)?;
        cpu_only(target)?;
        let model = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .map_err(|e| load_error(format!("parsing ONNX: {e:#}")))?;
        let typed = model
            .into_typed()
            .map_err(|e| load_error(format!("analysing: {e:#}")))?;
        graph_of(typed)
    }

    fn prepared_identity(&self) -> Option<String> {
        Some(format!("tract {TRACT_VERSION}, decluttered model as NNEF"))
    }

    /// The model parsed, typed and decluttered, as an NNEF archive (tar) with tract's
    /// extensions. The model's properties (ONNX doc strings and metadata) are left out:
    /// the graph does not need them and NNEF cannot quote every string they hold.
    fn prepare(&self, builders: &[&[u8]], target: ExecutionTarget) -> Result<Vec<u8>, NnError> {
        let bytes = triage_nn::one_builder(NAME, GraphEncoding::Onnx, builders)?;
        cpu_only(target)?;
        let mut model = tract_onnx::onnx()
            .model_for_read(&mut &bytes[..])
            .and_then(|m| m.into_typed())
            .and_then(|m| m.into_decluttered())
            .map_err(|e| load_error(format!("parsing ONNX: {e:#}")))?;
        model.properties.clear();
        let mut archive = Vec::new();
        tract_nnef::nnef()
            .with_onnx()
            .write_to_tar(&model, &mut archive)
            .map_err(|e| load_error(format!("writing NNEF: {e:#}")))?;
        Ok(archive)
    }

    fn load_prepared(
        &self,
        prepared: SharedBytes,
        target: ExecutionTarget,
    ) -> Result<Arc<dyn NnGraph>, NnError> {
        cpu_only(target)?;
        let bytes: &[u8] = (*prepared).as_ref();
        let model = tract_nnef::nnef()
            .with_onnx()
            .model_for_read(&mut &bytes[..])
            .map_err(|e| load_error(format!("reading the prepared NNEF model: {e:#}")))?;
        graph_of(model)
    }
}

/// An optimised plan, shared by its contexts.
struct TractGraph {
    plan: Arc<TypedRunnableModel>,
    input_names: Vec<String>,
    output_names: Vec<String>,
}

impl NnGraph for TractGraph {
    fn backend(&self) -> &str {
        NAME
    }

    fn target(&self) -> ExecutionTarget {
        ExecutionTarget::Cpu
    }

    fn init_context(&self) -> Result<Box<dyn NnContext>, NnError> {
        Ok(Box::new(TractContext {
            plan: Arc::clone(&self.plan),
            inputs: vec![None; self.input_names.len()],
            outputs: Vec::new(),
        }))
    }

    fn input_names(&self) -> Vec<String> {
        self.input_names.clone()
    }

    fn output_names(&self) -> Vec<String> {
        self.output_names.clone()
    }
}

/// One guest's inputs and the last outputs.
struct TractContext {
    plan: Arc<TypedRunnableModel>,
    inputs: Vec<Option<TValue>>,
    outputs: Vec<TValue>,
}

fn tensor_error(reason: String) -> NnError {
    NnError::Tensor {
        backend: NAME.to_owned(),
        reason,
    }
}

fn datum_type(ty: TensorType) -> Result<DatumType, NnError> {
    Ok(match ty {
        TensorType::F16 => DatumType::F16,
        TensorType::F32 => DatumType::F32,
        TensorType::F64 => DatumType::F64,
        TensorType::U8 => DatumType::U8,
        TensorType::I32 => DatumType::I32,
        TensorType::I64 => DatumType::I64,
    })
}

fn tensor_type(dt: DatumType) -> Option<TensorType> {
    Some(match dt {
        DatumType::F16 => TensorType::F16,
        DatumType::F32 => TensorType::F32,
        DatumType::F64 => TensorType::F64,
        DatumType::U8 => TensorType::U8,
        DatumType::I32 => TensorType::I32,
        DatumType::I64 => TensorType::I64,
        _ => return None,
    })
}

impl NnContext for TractContext {
    fn set_input(&mut self, index: u32, tensor: &Tensor) -> Result<(), NnError> {
        let count = self.inputs.len();
        let slot = self.inputs.get_mut(index as usize).ok_or_else(|| {
            tensor_error(format!(
                "input {index} does not exist (the graph has {count})"
            ))
        })?;
        tensor
            .check()
            .map_err(|e| tensor_error(format!("input {index}: {e}")))?;
        let shape: Vec<usize> = tensor.dimensions.iter().map(|&d| d as usize).collect();
        // SAFETY: every wasi-nn element type is plain numbers, for which any bytes of
        // the checked length are valid values; tract copies them into aligned storage.
        let value =
            unsafe { TractTensor::from_raw_dt(datum_type(tensor.ty)?, &shape, &tensor.data) }
                .map_err(|e| tensor_error(format!("input {index}: {e}")))?;
        *slot = Some(value.into());
        Ok(())
    }

    fn compute(&mut self) -> Result<(), NnError> {
        let mut inputs = tvec![];
        for (index, value) in self.inputs.iter().enumerate() {
            let value = value
                .clone()
                .ok_or_else(|| tensor_error(format!("input {index} was not set before compute")))?;
            inputs.push(value);
        }
        self.outputs = self
            .plan
            .run(inputs)
            .map_err(|e| NnError::Compute {
                backend: NAME.to_owned(),
                reason: format!("{e:#}"),
            })?
            .into_vec();
        Ok(())
    }

    fn get_output(&mut self, index: u32) -> Result<Tensor, NnError> {
        let value = self.outputs.get(index as usize).ok_or_else(|| {
            tensor_error(format!(
                "output {index} does not exist after compute (there are {})",
                self.outputs.len()
            ))
        })?;
        let ty = tensor_type(value.datum_type()).ok_or_else(|| {
            tensor_error(format!(
                "output {index} is {:?}, which wasi-nn cannot carry",
                value.datum_type()
            ))
        })?;
        Ok(Tensor {
            dimensions: value.shape().iter().map(|&d| d as u32).collect(),
            ty,
            data: value.as_bytes().to_vec(),
        })
    }
}
