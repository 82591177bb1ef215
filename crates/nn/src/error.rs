//! Errors a backend returns; the engine adapter adds the container id.

/// What went wrong in a backend.
#[derive(Debug, thiserror::Error)]
pub enum NnError {
    /// The model bytes could not be turned into a graph.
    #[error("{backend}: cannot load the model: {reason}")]
    Load {
        /// The backend's name.
        backend: String,
        /// The library's message.
        reason: String,
    },
    /// The backend library itself is missing or unusable.
    #[error("{backend}: unavailable: {reason}")]
    Unavailable {
        /// The backend's name.
        backend: String,
        /// Why (library path, version, device).
        reason: String,
    },
    /// A tensor did not fit what the graph expects.
    #[error("{backend}: {reason}")]
    Tensor {
        /// The backend's name.
        backend: String,
        /// What was wrong with which tensor.
        reason: String,
    },
    /// Inference failed.
    #[error("{backend}: compute failed: {reason}")]
    Compute {
        /// The backend's name.
        backend: String,
        /// The library's message.
        reason: String,
    },
    /// No backend of this node serves the encoding.
    #[error("no wasi-nn backend for encoding {encoding} (this node has: {available})")]
    NoBackend {
        /// The encoding asked for.
        encoding: GraphEncoding,
        /// The backends there are, with their encodings.
        available: String,
    },
}

use crate::GraphEncoding;
