//! Prepared wasi-nn graphs in the node's artifact cache: made once per model, backend and target, mapped by every container that preloads them.
//!
//! A backend with a prepared form (ONNX Runtime: the model optimised and saved in its ORT
//! format) gets it made in a child of the create helper the first time a node sees the
//! model (the child may start the library's threads; the helper, which forks the
//! container next, must not). The entry is keyed by the model's sha256 (remembered by the
//! file's identity, so a known file is not read again), the backend, its identity
//! (library file and version) and the target, and is MAC-verified like compiled modules.
//! The helper maps it read-only before the fork; the container's init builds its session
//! over the mapped bytes without copying them, so every container of the model shares one
//! copy of its weights in the page cache and none parses or optimises it again.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use triage_nn::{BackendSet, ExecutionTarget, NnBackend, NnGraph, SharedBytes};

use super::ModelBytes;
use crate::engine::cache::{ArtifactCache, CacheOutcome};

/// A model's prepared graph, mapped from the store.
#[derive(Clone)]
pub struct PreparedModel {
    /// The backend that made it (and loads it).
    pub backend: String,
    /// The target it was prepared for.
    pub target: ExecutionTarget,
    /// Why the target is not the one asked for, when it is not.
    pub fallback: Option<String>,
    /// Its name in the artifact cache.
    pub entry: String,
    /// Whether it was there already.
    pub outcome: CacheOutcome,
    /// The mapped file.
    pub bytes: SharedBytes,
}

impl std::fmt::Debug for PreparedModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedModel")
            .field("backend", &self.backend)
            .field("target", &self.target)
            .field("entry", &self.entry)
            .field("outcome", &self.outcome)
            .field("bytes", &(*self.bytes).as_ref().len())
            .finish()
    }
}

/// The cache entry name of a model (by its sha256) prepared by `backend` (with
/// `identity`) for `target`.
pub fn entry_name(
    model_sha256: &[u8; 32],
    backend: &str,
    identity: &str,
    target: ExecutionTarget,
) -> String {
    ArtifactCache::entry_name(&[
        b"wasi-nn prepared graph",
        backend.as_bytes(),
        identity.as_bytes(),
        target.as_str().as_bytes(),
        model_sha256,
    ])
}

/// Finds or makes the prepared graph of each model whose backend has a prepared form, and
/// maps it. A model without one (its backend has no prepared form, or preparing failed:
/// logged) is built from its bytes in the container, as before.
pub fn prepare_models(
    id: &str,
    backends: &BackendSet,
    models: &mut [ModelBytes],
    cache: &ArtifactCache,
) {
    for model in models {
        let p = &model.preload;
        // An encoding no backend serves fails at load, with the container's error.
        let Ok(choice) = backends.choose(p.encoding, p.target) else {
            continue;
        };
        let backend = choice.backend.name().to_owned();
        let Some(identity) = choice.backend.prepared_identity() else {
            tracing::info!(container = %id, model = %p.name, backend, "wasi-nn graph built in the container: the backend has no prepared form");
            continue;
        };
        let started = Instant::now();
        // The file's digest is remembered by its identity: a model the node has seen is
        // not read again.
        let digest = cache
            .file_digest(model.file(), || model.bytes(id).map_err(|e| e.to_string()))
            .map_err(|e| e.to_string());
        let built = digest.and_then(|(digest, _)| {
            let entry = entry_name(&digest, &backend, &identity, choice.target);
            cache
                .get_or_build(&entry, || {
                    let bytes = model.bytes(id).map_err(|e| e.to_string())?;
                    prepare_in_child(choice.backend.as_ref(), bytes, choice.target)
                })
                .map(|(path, outcome)| (entry, path, outcome))
                .map_err(|e| e.to_string())
        });
        let mapped = built.and_then(|(entry, path, outcome)| {
            map(&path)
                .map(|bytes| (entry, bytes, outcome))
                .map_err(|e| format!("mapping {}: {e}", path.display()))
        });
        match mapped {
            Ok((entry, bytes, outcome)) => {
                tracing::info!(
                    container = %id,
                    model = %p.name,
                    backend,
                    target = %choice.target,
                    entry,
                    outcome = ?outcome,
                    bytes = (*bytes).as_ref().len(),
                    ms = started.elapsed().as_secs_f64() * 1000.0,
                    "wasi-nn prepared graph from the node's store"
                );
                model.prepared = Some(PreparedModel {
                    backend,
                    target: choice.target,
                    fallback: choice.fallback,
                    entry,
                    outcome,
                    bytes,
                });
            }
            Err(why) => tracing::warn!(
                container = %id,
                model = %p.name,
                backend,
                "wasi-nn model not prepared ({why}); the container builds its graph"
            ),
        }
    }
}

/// The graph of `prepared`, loaded by its backend over the mapped bytes.
pub fn load_prepared(
    backends: &BackendSet,
    prepared: &PreparedModel,
) -> Result<Arc<dyn NnGraph>, String> {
    let backend = backends
        .backends()
        .iter()
        .find(|b| b.name() == prepared.backend)
        .ok_or_else(|| format!("no backend {}", prepared.backend))?;
    backend
        .load_prepared(Arc::clone(&prepared.bytes), prepared.target)
        .map_err(|e| e.to_string())
}

fn map(path: &std::path::Path) -> std::io::Result<SharedBytes> {
    // Through a read-only mount: the container's init keeps this mapping.
    let file = crate::read_only::open(path)?;
    // SAFETY: the cache never writes an entry in place: it is replaced or removed by
    // rename and unlink, which leave this mapping's file as it is.
    let mapped = unsafe { memmap2::Mmap::map(&file)? };
    Ok(Arc::new(mapped))
}

/// Runs `backend.prepare` in a child process and returns what it made. The child may
/// start threads (ONNX Runtime does); it ends with `_exit`, running no exit handlers, and
/// this process stays single-threaded for the fork that makes the container.
fn prepare_in_child(
    backend: &dyn NnBackend,
    model: &[u8],
    target: ExecutionTarget,
) -> Result<Vec<u8>, String> {
    use nix::sys::wait::{waitpid, WaitStatus};
    use nix::unistd::{fork, pipe, ForkResult};

    let (reader, writer) = pipe().map_err(|e| format!("pipe: {e}"))?;
    // SAFETY: the helper is single-threaded here (checked and logged before); the child
    // only prepares, writes to the pipe and leaves with _exit.
    match unsafe { fork() }.map_err(|e| format!("fork: {e}"))? {
        ForkResult::Child => {
            drop(reader);
            // The model is the tenant's: what preparing it may allocate is bounded, so a
            // crafted one fails here instead of taking the node's memory.
            let bound = libc::rlimit {
                rlim_cur: PREPARE_MEMORY,
                rlim_max: PREPARE_MEMORY,
            };
            // SAFETY: setrlimit reads the struct we pass; it only lowers this child's limit.
            unsafe { libc::setrlimit(libc::RLIMIT_DATA, &bound) };
            let (code, payload) = match backend.prepare(&[model], target) {
                Ok(bytes) => (0, bytes),
                Err(e) => (1, e.to_string().into_bytes()),
            };
            let mut pipe = std::fs::File::from(writer);
            let code = if pipe.write_all(&payload).is_ok() {
                code
            } else {
                2
            };
            // SAFETY: ends the child without running the parent's exit handlers.
            unsafe { libc::_exit(code) }
        }
        ForkResult::Parent { child } => {
            drop(writer);
            let read = read_until(std::fs::File::from(reader), PREPARE_LIMIT);
            if read.is_err() {
                // Too slow or stuck: it goes, and the container builds its own graph.
                let _ = nix::sys::signal::kill(child, nix::sys::signal::Signal::SIGKILL);
            }
            let status = waitpid(child, None)
                .map_err(|e| format!("waiting for the preparing process: {e}"))?;
            let payload = read?;
            match status {
                WaitStatus::Exited(_, 0) => Ok(payload),
                WaitStatus::Exited(_, 1) => Err(String::from_utf8_lossy(&payload).into_owned()),
                other => Err(format!("the preparing process ended: {other:?}")),
            }
        }
    }
}

/// How long a model may take to prepare before the preparing process is killed.
const PREPARE_LIMIT: std::time::Duration = std::time::Duration::from_secs(120);

/// The data memory (heap and private mappings, `RLIMIT_DATA`) the preparing process may
/// have: SqueezeNet-sized models prepare in well under 200 MiB.
const PREPARE_MEMORY: libc::rlim_t = 2 << 30;

/// Reads the preparing process's pipe to its end, giving up after `limit`.
fn read_until(pipe: std::fs::File, limit: std::time::Duration) -> Result<Vec<u8>, String> {
    crate::pipe::read_to_end_within(pipe, limit).map_err(|e| match e.kind() {
        std::io::ErrorKind::TimedOut => format!("preparing took longer than {} s", limit.as_secs()),
        _ => format!("reading the prepared model: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_preparation_that_does_not_finish_in_time_is_given_up() {
        let (reader, writer) = nix::unistd::pipe().unwrap();
        let err = read_until(
            std::fs::File::from(reader),
            std::time::Duration::from_millis(50),
        )
        .unwrap_err();
        assert_eq!(err, "preparing took longer than 0 s");
        drop(writer);
    }

    /// A backend whose preparation asks for `bytes` of memory.
    struct Greedy {
        bytes: usize,
    }

    impl NnBackend for Greedy {
        fn name(&self) -> &str {
            "greedy"
        }
        fn encodings(&self) -> &[triage_nn::GraphEncoding] {
            &[]
        }
        fn serves(&self, _: ExecutionTarget) -> Result<(), String> {
            Ok(())
        }
        fn load(
            &self,
            _: &[&[u8]],
            _: ExecutionTarget,
        ) -> Result<Arc<dyn triage_nn::NnGraph>, triage_nn::NnError> {
            unreachable!("only prepare is called")
        }
        fn prepare(&self, _: &[&[u8]], _: ExecutionTarget) -> Result<Vec<u8>, triage_nn::NnError> {
            let mut taken: Vec<u8> = Vec::new();
            taken
                .try_reserve_exact(self.bytes)
                .map_err(|e| triage_nn::NnError::Load {
                    backend: "greedy".into(),
                    reason: e.to_string(),
                })?;
            Ok(b"prepared".to_vec())
        }
    }

    #[test]
    fn a_preparation_asking_for_more_memory_than_its_bound_fails() {
        let err = prepare_in_child(&Greedy { bytes: 3 << 30 }, b"model", ExecutionTarget::Cpu)
            .unwrap_err();
        assert!(err.contains("memory allocation"), "{err}");
        let ok = prepare_in_child(&Greedy { bytes: 1 << 20 }, b"model", ExecutionTarget::Cpu);
        assert_eq!(ok.unwrap(), b"prepared");
    }
}
