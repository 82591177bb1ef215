//! The backend: options, which targets it serves on this node, and loading a model into a session.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use ort::session::builder::{GraphOptimizationLevel, SessionBuilder};
use ort::session::Session;
use triage_nn::{ExecutionTarget, GraphEncoding, NnBackend, NnError, NnGraph, SharedBytes};

use crate::graph::OnnxGraph;
use crate::library::{self, Library};
use crate::NAME;

/// How sessions are made.
#[derive(Debug, Clone)]
pub struct OnnxRuntimeOptions {
    intra_threads: usize,
    cuda_device: i32,
    device_dir: PathBuf,
}

impl Default for OnnxRuntimeOptions {
    fn default() -> Self {
        Self {
            intra_threads: 1,
            cuda_device: 0,
            device_dir: PathBuf::from("/dev"),
        }
    }
}

impl OnnxRuntimeOptions {
    /// Threads one inference uses: the calling thread plus `threads - 1` of the session's own,
    /// which block rather than spin while idle. `0` lets ONNX Runtime choose (one per core,
    /// which ignores a container's CPU quota). **Default 1.**
    pub fn with_intra_threads(&mut self, threads: usize) -> &mut Self {
        self.intra_threads = threads;
        self
    }

    /// The CUDA device GPU graphs run on. **Default 0.**
    pub fn with_cuda_device(&mut self, device: i32) -> &mut Self {
        self.cuda_device = device;
        self
    }

    /// Where NVIDIA device nodes (`nvidiactl`, `nvidia0`, ...) are looked for when asked
    /// whether a GPU is served. **Default `/dev`**; tests point it elsewhere.
    pub fn with_device_dir(&mut self, dir: impl Into<PathBuf>) -> &mut Self {
        self.device_dir = dir.into();
        self
    }
}

/// ONNX Runtime as a wasi-nn backend for ONNX models, on the CPU and on CUDA GPUs.
pub struct OnnxRuntimeBackend {
    library: PathBuf,
    options: OnnxRuntimeOptions,
    /// The library, opened on first use.
    opened: OnceLock<Result<Arc<Library>, String>>,
    /// Whether GPU graphs are served, asked once.
    gpu: OnceLock<Result<(), String>>,
}

impl OnnxRuntimeBackend {
    /// A backend that will load `library` (a `libonnxruntime.so`) when first asked to serve or
    /// load; until then it does nothing with it. Sessions use the default options.
    pub fn new(library: PathBuf) -> Self {
        Self::with_options(library, OnnxRuntimeOptions::default())
    }

    /// A backend that will load `library` when first used, with `options` for its sessions.
    pub fn with_options(library: PathBuf, options: OnnxRuntimeOptions) -> Self {
        Self {
            library,
            options,
            opened: OnceLock::new(),
            gpu: OnceLock::new(),
        }
    }

    /// The library this backend loads.
    pub fn library(&self) -> &Path {
        &self.library
    }

    fn opened(&self) -> Result<&Arc<Library>, String> {
        self.opened
            .get_or_init(|| library::open(&self.library))
            .as_ref()
            .map_err(Clone::clone)
    }

    fn serves_gpu(&self) -> Result<(), String> {
        let library = self.opened()?;
        let mut missing = Vec::new();
        if !library.cuda_provider {
            missing.push(format!(
                "CUDA provider not in {} (the CPU-only onnxruntime wheel; use onnxruntime-gpu)",
                library.path.display()
            ));
        }
        if let Err(why) = library::nvidia_device(&self.options.device_dir) {
            missing.push(why);
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(missing.join("; "))
        }
    }

    /// A session builder with this backend's options for `target`.
    fn builder(
        &self,
        library: &Library,
        target: ExecutionTarget,
    ) -> Result<SessionBuilder, NnError> {
        let environment = library.environment().map_err(unavailable)?;
        let configure = || -> ort::Result<SessionBuilder> {
            Ok(Session::builder(environment)?
                .with_optimization_level(GraphOptimizationLevel::All)?
                .with_intra_threads(self.options.intra_threads)?
                .with_intra_op_spinning(false)?)
        };
        let builder = configure().map_err(|e| NnError::Load {
            backend: NAME.to_owned(),
            reason: format!("cannot configure a session: {e}"),
        })?;
        if target != ExecutionTarget::Gpu {
            return Ok(builder);
        }
        let cuda = ort::ep::CUDA::default()
            .with_device_id(self.options.cuda_device)
            .build()
            .error_on_failure();
        builder.with_execution_providers([cuda]).map_err(|e| {
            unavailable(format!(
                "the CUDA execution provider of {} cannot be used: {e}",
                library.path.display()
            ))
        })
    }
}

impl fmt::Debug for OnnxRuntimeBackend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OnnxRuntimeBackend")
            .field("library", &self.library)
            .field("options", &self.options)
            .field("loaded", &self.opened.get().map(|r| r.is_ok()))
            .finish()
    }
}

fn load_error(reason: impl fmt::Display) -> NnError {
    NnError::Load {
        backend: NAME.to_owned(),
        reason: reason.to_string(),
    }
}

fn check_target(target: ExecutionTarget) -> Result<(), NnError> {
    if matches!(target, ExecutionTarget::Cpu | ExecutionTarget::Gpu) {
        Ok(())
    } else {
        Err(unavailable(format!(
            "{NAME} serves CPU and GPU, not {target}"
        )))
    }
}

/// `builder` with session configuration `entries` added.
fn with_entries(
    mut builder: SessionBuilder,
    entries: &[(&str, &str)],
) -> Result<SessionBuilder, NnError> {
    for (key, value) in entries {
        builder = builder
            .with_config_entry(key, value)
            .map_err(|e| load_error(format!("cannot set {key} = {value}: {e}")))?;
    }
    Ok(builder)
}

/// A file name for an optimised model that no other process writes at the same time.
fn scratch_path() -> PathBuf {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    std::env::temp_dir().join(format!(
        "triage-nn-{}-{}.ort",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ))
}

fn unavailable(reason: String) -> NnError {
    NnError::Unavailable {
        backend: NAME.to_owned(),
        reason,
    }
}

impl NnBackend for OnnxRuntimeBackend {
    fn name(&self) -> &str {
        NAME
    }

    fn encodings(&self) -> &[GraphEncoding] {
        &[GraphEncoding::Onnx]
    }

    /// `Cpu`: the library loads. `Gpu`: it loads, has the CUDA execution provider, and this
    /// node has an NVIDIA device; `Err` names each of these that is missing. Answers are
    /// cached.
    fn serves(&self, target: ExecutionTarget) -> Result<(), String> {
        match target {
            ExecutionTarget::Cpu => self.opened().map(|_| ()),
            ExecutionTarget::Gpu => self.gpu.get_or_init(|| self.serves_gpu()).clone(),
            other => Err(format!("{NAME} serves CPU and GPU, not {other}")),
        }
    }

    fn load(
        &self,
        builders: &[&[u8]],
        target: ExecutionTarget,
    ) -> Result<Arc<dyn NnGraph>, NnError> {
        let model = triage_nn::one_builder(NAME, GraphEncoding::Onnx, builders)?;
        check_target(target)?;
        let library = self.opened().map_err(unavailable)?;
        let mut builder = self.builder(library, target)?;
        let session = builder.commit_from_memory(model).map_err(load_error)?;
        Ok(Arc::new(OnnxGraph::new(session, target, None)))
    }

    /// The library file as it is now (path, size, modification time): another library
    /// (version) at the same path makes other prepared models. `None` if it cannot be
    /// examined (then nothing is prepared).
    fn prepared_identity(&self) -> Option<String> {
        use std::os::unix::fs::MetadataExt;
        let path = std::fs::canonicalize(&self.library).ok()?;
        let meta = std::fs::metadata(&path).ok()?;
        Some(format!(
            "{} {} bytes, modified {}.{:09}, optimisation all, ORT format",
            path.display(),
            meta.size(),
            meta.mtime(),
            meta.mtime_nsec()
        ))
    }

    /// The model optimised for `target` (graph optimisation level all, with the CUDA
    /// execution provider for a GPU) and saved in ONNX Runtime's ORT format.
    fn prepare(&self, builders: &[&[u8]], target: ExecutionTarget) -> Result<Vec<u8>, NnError> {
        let model = triage_nn::one_builder(NAME, GraphEncoding::Onnx, builders)?;
        check_target(target)?;
        let library = self.opened().map_err(unavailable)?;
        let scratch = scratch_path();
        let builder = with_entries(
            self.builder(library, target)?,
            &[("session.save_model_format", "ORT")],
        )?;
        let mut builder = builder
            .with_optimized_model_path(&scratch)
            .map_err(|e| load_error(format!("cannot configure the optimised model: {e}")))?;
        let committed = builder.commit_from_memory(model).map_err(load_error);
        let saved = std::fs::read(&scratch);
        let _ = std::fs::remove_file(&scratch);
        drop(committed?);
        saved.map_err(|e| {
            load_error(format!(
                "the optimised model {} was not written: {e}",
                scratch.display()
            ))
        })
    }

    /// A session over the ORT-format bytes without copying them: the graph's weights stay
    /// in `prepared` (`session.use_ort_model_bytes_directly` and `..._for_initializers`).
    fn load_prepared(
        &self,
        prepared: SharedBytes,
        target: ExecutionTarget,
    ) -> Result<Arc<dyn NnGraph>, NnError> {
        check_target(target)?;
        let library = self.opened().map_err(unavailable)?;
        let mut builder = with_entries(
            self.builder(library, target)?,
            &[
                ("session.use_ort_model_bytes_directly", "1"),
                ("session.use_ort_model_bytes_for_initializers", "1"),
            ],
        )?;
        let bytes: &[u8] = (*prepared).as_ref();
        let session = builder.commit_from_memory(bytes).map_err(load_error)?;
        Ok(Arc::new(OnnxGraph::new(session, target, Some(prepared))))
    }
}
