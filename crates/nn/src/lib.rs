//! The NN plugin hook: what a wasi-nn backend implements, engine-neutral.
//!
//! A Wasm guest calls wasi-nn (`load`, `load_by_name`, `init_execution_context`,
//! `set_input`, `compute`, `get_output`). The engine adapter in `triage-runtime` turns those
//! calls into calls on the traits here, so a backend never sees the engine:
//!
//! - [`NnBackend`] loads a model into an [`NnGraph`] for an [`ExecutionTarget`];
//! - [`NnGraph`] is immutable and shared (`Arc`) by every guest that loaded the same model;
//! - [`NnContext`] holds one guest's inputs and outputs.
//!
//! [`BackendSet`] holds the backends this node has and picks one for a graph: the node's
//! choice per target, and the CPU backend (with a reason to log) when a GPU was asked for
//! but none can serve it.
//!
//! A backend may also have a *prepared form* of a model ([`NnBackend::prepare`]): made
//! once per node and kept in the node's artifact cache, it is mapped by every container
//! that preloads the same model for the same target, which then neither parses nor
//! optimises it again and shares its pages with the others.
#![deny(missing_docs)]

mod backend;
mod error;
mod select;
mod tensor;

pub use backend::{one_builder, NnBackend, NnContext, NnGraph, SharedBytes};
pub use error::NnError;
pub use select::{BackendChoice, BackendSet, LoadedGraph};
pub use tensor::{ExecutionTarget, GraphEncoding, Tensor, TensorType};
