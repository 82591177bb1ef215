//! A loaded model (one session shared by every context) and a guest's execution context.

use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use ort::session::{Session, SessionInputValue};
use ort::value::{DynValue, Outlet, TensorElementType, ValueType};
use triage_nn::{ExecutionTarget, NnContext, NnError, NnGraph, SharedBytes, Tensor};

use crate::tensor::{self, shape_text, type_name};
use crate::NAME;

/// A model input or output: wasi-nn addresses them by index, in the model's order.
struct Port {
    name: String,
    /// Element type and dimensions (`-1` where dynamic), or what it is when not a tensor.
    tensor: Result<(TensorElementType, Vec<i64>), String>,
}

impl Port {
    fn new(outlet: &Outlet) -> Self {
        let tensor = match outlet.dtype() {
            ValueType::Tensor { ty, shape, .. } => Ok((*ty, shape.to_vec())),
            other => Err(format!("{other:?}")),
        };
        Self {
            name: outlet.name().to_owned(),
            tensor,
        }
    }
}

/// What every context of a graph shares.
struct Shared {
    /// `ort` runs a session from one thread at a time (`Session::run` takes `&mut self`).
    session: Mutex<Session>,
    inputs: Vec<Port>,
    outputs: Vec<Port>,
    target: ExecutionTarget,
    /// The prepared model the session reads its graph and weights from, when it was
    /// loaded from one: declared after `session`, so it is dropped after it.
    _borrowed: Option<SharedBytes>,
}

/// An ONNX model in an ONNX Runtime session.
pub(crate) struct OnnxGraph {
    shared: Arc<Shared>,
}

impl OnnxGraph {
    /// The graph of `session`; `borrowed` holds the bytes the session was made from
    /// without copying them, for as long as the session lives.
    pub(crate) fn new(
        session: Session,
        target: ExecutionTarget,
        borrowed: Option<SharedBytes>,
    ) -> Self {
        let inputs = session.inputs().iter().map(Port::new).collect();
        let outputs = session.outputs().iter().map(Port::new).collect();
        Self {
            shared: Arc::new(Shared {
                session: Mutex::new(session),
                inputs,
                outputs,
                target,
                _borrowed: borrowed,
            }),
        }
    }
}

impl fmt::Debug for OnnxGraph {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names = |ports: &[Port]| ports.iter().map(|p| p.name.clone()).collect::<Vec<_>>();
        f.debug_struct("OnnxGraph")
            .field("target", &self.shared.target)
            .field("inputs", &names(&self.shared.inputs))
            .field("outputs", &names(&self.shared.outputs))
            .finish()
    }
}

impl NnGraph for OnnxGraph {
    fn backend(&self) -> &str {
        NAME
    }

    fn target(&self) -> ExecutionTarget {
        self.shared.target
    }

    fn init_context(&self) -> Result<Box<dyn NnContext>, NnError> {
        Ok(Box::new(OnnxContext {
            inputs: self.shared.inputs.iter().map(|_| None).collect(),
            outputs: None,
            shared: Arc::clone(&self.shared),
        }))
    }

    fn input_names(&self) -> Vec<String> {
        self.shared.inputs.iter().map(|p| p.name.clone()).collect()
    }

    fn output_names(&self) -> Vec<String> {
        self.shared.outputs.iter().map(|p| p.name.clone()).collect()
    }
}

/// One guest's inputs (by index) and the outputs of its last compute.
struct OnnxContext {
    shared: Arc<Shared>,
    inputs: Vec<Option<DynValue>>,
    /// Each output of the last compute, or why wasi-nn cannot have it.
    outputs: Option<Vec<Result<Tensor, String>>>,
}

fn tensor_error(reason: String) -> NnError {
    NnError::Tensor {
        backend: NAME.to_owned(),
        reason,
    }
}

/// `input 0 ("x")`.
fn port_label(kind: &str, index: usize, port: &Port) -> String {
    format!("{kind} {index} ({:?})", port.name)
}

/// `the model has 2 inputs ("a", "b")`.
fn ports_text(kind: &str, ports: &[Port]) -> String {
    let names: Vec<String> = ports.iter().map(|p| format!("{:?}", p.name)).collect();
    let plural = if ports.len() == 1 { "" } else { "s" };
    format!(
        "the model has {} {kind}{plural} ({})",
        ports.len(),
        names.join(", ")
    )
}

/// Checks a guest tensor against the model's input: element type, rank, fixed dimensions.
fn check_input(label: &str, port: &Port, tensor: &Tensor) -> Result<(), String> {
    let (ty, dims) = port.tensor.as_ref().map_err(|what| {
        format!("{label} is not a tensor but a {what}; wasi-nn passes tensors only")
    })?;
    if tensor::wasi_type(*ty) != Some(tensor.ty) {
        return Err(format!(
            "{label} takes {} tensors, the guest passed {:?}",
            type_name(*ty),
            tensor.ty
        ));
    }
    let fits = dims.len() == tensor.dimensions.len()
        && dims
            .iter()
            .zip(&tensor.dimensions)
            .all(|(&want, &got)| want < 0 || want == i64::from(got));
    if !fits {
        return Err(format!(
            "{label} takes shape {}, the guest passed {:?}",
            shape_text(dims),
            tensor.dimensions
        ));
    }
    tensor.check().map_err(|why| format!("{label}: {why}"))
}

impl NnContext for OnnxContext {
    fn set_input(&mut self, index: u32, tensor: &Tensor) -> Result<(), NnError> {
        let i = index as usize;
        let Some(port) = self.shared.inputs.get(i) else {
            return Err(tensor_error(format!(
                "input {index} does not exist: {}",
                ports_text("input", &self.shared.inputs)
            )));
        };
        let label = port_label("input", i, port);
        if tensor.ty == triage_nn::TensorType::F16 {
            return Err(tensor_error(format!("{label}: {}", tensor::F16)));
        }
        check_input(&label, port, tensor).map_err(tensor_error)?;
        let value = tensor::to_value(tensor).map_err(|e| tensor_error(format!("{label}: {e}")))?;
        self.inputs[i] = Some(value);
        Ok(())
    }

    fn compute(&mut self) -> Result<(), NnError> {
        // A failed compute leaves no outputs of an earlier one behind.
        self.outputs = None;
        // Inputs the guest did not set are left to the session: an input that is also an
        // initializer (models of IR version 3 list their weights as inputs, and an
        // optimised model its folded constants) has a value already.
        let mut values: Vec<(&str, SessionInputValue<'_>)> = Vec::with_capacity(self.inputs.len());
        let mut unset = Vec::new();
        for (i, (value, port)) in self.inputs.iter().zip(&self.shared.inputs).enumerate() {
            match value {
                Some(value) => values.push((port.name.as_str(), value.into())),
                None => unset.push(port_label("input", i, port)),
            }
        }
        let mut session = self
            .shared
            .session
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let outputs = session.run(values).map_err(|e| match unset.first() {
            Some(first) => tensor_error(format!(
                "{first} is not set; {} ({e})",
                ports_text("input", &self.shared.inputs)
            )),
            None => NnError::Compute {
                backend: NAME.to_owned(),
                reason: e.to_string(),
            },
        })?;
        let outputs = outputs
            .into_iter()
            .map(|(_, value)| tensor::from_value(&value))
            .collect();
        drop(session);
        self.outputs = Some(outputs);
        Ok(())
    }

    fn get_output(&mut self, index: u32) -> Result<Tensor, NnError> {
        let Some(outputs) = &self.outputs else {
            return Err(tensor_error(format!(
                "output {index} is not there yet: compute has not run"
            )));
        };
        let i = index as usize;
        match (outputs.get(i), self.shared.outputs.get(i)) {
            (Some(Ok(tensor)), _) => Ok(tensor.clone()),
            (Some(Err(why)), Some(port)) => Err(tensor_error(format!(
                "{} cannot be passed to the guest: {why}",
                port_label("output", i, port)
            ))),
            _ => Err(tensor_error(format!(
                "output {index} does not exist: {}",
                ports_text("output", &self.shared.outputs)
            ))),
        }
    }
}
