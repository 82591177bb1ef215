//! A wasi-nn backend over ONNX Runtime, loaded from a path at run time; the worked example of Triage's NN plugin hook.
//!
//! [`OnnxRuntimeBackend`] serves ONNX models on the CPU and, with the `onnxruntime-gpu` build
//! on a node with an NVIDIA device, on the GPU (CUDA execution provider).
//!
//! # The library
//!
//! Nothing of ONNX Runtime is linked at build time (`ort`'s `load-dynamic`): the backend is
//! given the path of a `libonnxruntime.so` and opens it the first time it is asked whether it
//! serves a target or to load a model, once per process. Making the backend does nothing with
//! the library, so a process may make it and fork afterwards.
//!
//! **onnxruntime 1.17 or newer** is needed: the backend uses version 17 of its C API, the
//! oldest `ort` 2.0.0-rc.15 speaks (no `api-NN` feature), so a newer library serves it too.
//! It is tested with 1.32.0, the version `scripts/onnxruntime.sh` fetches from PyPI's
//! `onnxruntime` wheel (CPU only), and with 1.31.1 and 1.19.0 (the oldest wheel that ships
//! `libonnxruntime.so`; 1.17 and 1.18 come only from ONNX Runtime's own release archives).
//! An older library is refused with its version. For GPUs use the library of the
//! `onnxruntime-gpu` wheel, with `libonnxruntime_providers_cuda.so` and
//! `libonnxruntime_providers_shared.so` beside it and the CUDA and cuDNN libraries that
//! release names on the loader's path. One process uses one library: a second backend naming
//! another path is refused rather than silently served by the first.
//!
//! # Threads and sharing
//!
//! A session runs inferences on the calling thread plus `intra_threads - 1` threads of its
//! own (default 1: containers usually have a CPU quota) that do not spin while idle. A graph is
//! shared by every guest of the process that loaded the same model; `ort` runs a session from
//! one thread at a time, so computes on one graph are serialised (each context keeps its own
//! inputs and outputs, and holds the session only while it runs).
//!
//! Across the processes of a node, the *prepared form* of a model is shared:
//! [`triage_nn::NnBackend::prepare`] optimises it for a target and saves it in ONNX
//! Runtime's ORT format; [`triage_nn::NnBackend::load_prepared`] makes a session over those
//! bytes without copying them, so the runtime keeps one prepared copy per node (in its
//! artifact cache) that every container maps. Inputs a guest leaves unset are left to the
//! session: an input that is also an initializer (ONNX IR version 3 lists weights as
//! inputs, and an optimised model its folded constants) has its value already.
//!
//! # Adding a backend like this one
//!
//! This crate depends only on `triage-nn` and the library it wraps; a third party adds a
//! backend the same way:
//!
//! 1. Implement the three traits of `triage-nn`: [`triage_nn::NnBackend`] (name, encodings,
//!    which targets it serves on this node and why not, loading a model),
//!    [`triage_nn::NnGraph`] (an immutable, shared, `Send + Sync` model) and
//!    [`triage_nn::NnContext`] (one guest's inputs and outputs, by index). Convert between
//!    [`triage_nn::Tensor`] (little-endian bytes) and the library's tensors, and return
//!    [`triage_nn::NnError`]s that say what failed, naming the backend. Do nothing expensive
//!    in the constructor: no threads, no devices, no `dlopen` before the first `serves` or
//!    `load`.
//!    Optionally, give it a prepared form (`prepared_identity`, `prepare`, `load_prepared`)
//!    that the node makes once per model and target and every container loads quickly.
//! 2. Register it: the runtime's backend list is in `triage-runtime`'s `nn` module,
//!    which adds each compiled-in backend to a [`triage_nn::BackendSet`]; add yours there
//!    behind a cargo feature of `triage-runtime` (a feature per backend, so nodes that do not
//!    need it do not build it).
//! 3. Name it in the node profile: the `[nn]` table says which backend serves CPU graphs and
//!    which serves GPU graphs (by [`triage_nn::NnBackend::name`]); a guest that asks for a
//!    GPU on a node where that backend does not serve one runs on the CPU backend, with the
//!    reason from `serves` in the log.
//!
//! ```no_run
//! use std::sync::Arc;
//! use triage_nn::{BackendSet, ExecutionTarget, GraphEncoding, Tensor};
//! use triage_nn_onnxruntime::{OnnxRuntimeBackend, OnnxRuntimeOptions};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut options = OnnxRuntimeOptions::default();
//! options.with_intra_threads(2);
//! let library = "/var/cache/triage/onnxruntime/libonnxruntime.so.1.32.0";
//! let mut backends = BackendSet::new();
//! backends.add(Arc::new(OnnxRuntimeBackend::with_options(library.into(), options)));
//! backends.prefer_gpu("onnxruntime");
//!
//! let choice = backends.choose(GraphEncoding::Onnx, ExecutionTarget::Gpu)?;
//! if let Some(why) = &choice.fallback {
//!     eprintln!("no GPU: {why}");
//! }
//! let model = std::fs::read("digits_mlp.onnx")?;
//! let graph = choice.backend.load(&[&model], choice.target)?;
//! let mut context = graph.init_context()?;
//! context.set_input(0, &Tensor::from_f32(vec![1, 64], &[0.0; 64]))?;
//! context.compute()?;
//! let probabilities = context.get_output(0)?.to_f32();
//! # let _ = probabilities;
//! # Ok(())
//! # }
//! ```
#![deny(missing_docs)]

mod backend;
mod graph;
mod library;
mod tensor;

pub use backend::{OnnxRuntimeBackend, OnnxRuntimeOptions};

/// The backend's name, in configuration, logs and errors.
pub const NAME: &str = "onnxruntime";

/// The environment variable that must be in the environment of every process that makes
/// an ONNX Runtime environment. Official Linux builds from 1.29 on send usage telemetry
/// to Microsoft and keep a device id and an event store under
/// `$HOME/.cache/Microsoft/DeveloperTools/.onnxruntime`, starting when the environment is
/// made (turning it off through the API afterwards is too late); with this set, nothing
/// is written or sent. A patient-data node sends nothing.
pub const TELEMETRY_OFF: (&str, &str) = ("ORT_DISABLE_TELEMETRY", "1");
