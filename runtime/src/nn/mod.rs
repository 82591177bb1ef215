//! The node's wasi-nn backends, and the models a container preloads for `load_by_name`.
//!
//! Model files are opened in the create helper, before the fork, where both the node's
//! models (host paths) and the container's (its rootfs, mounted) are visible, and read
//! only where a graph is built from them. The
//! graphs are built in the container's init after the fork: their memory and the time to
//! build them are the container's, and a backend that starts threads or opens a device
//! does it in the process that uses it. They are ready before Start, so a guest's
//! `load_by_name` finds them without loading anything. Where the backend has a prepared
//! form, the graph comes from the node's store instead (see [`store`]).

pub mod store;

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use triage_nn::{BackendSet, NnError, NnGraph};
use triage_oci::{NnPreload, NnSettings};

/// The backend every build has: CPU graphs' default where the node has no ONNX Runtime.
pub const CPU_BACKEND: &str = triage_nn_tract::NAME;
/// The ONNX Runtime backend, offered where the node has its library.
pub const ONNXRUNTIME_BACKEND: &str = "onnxruntime";
/// The backend for GPU graphs unless the node profile names another.
pub const GPU_BACKEND: &str = ONNXRUNTIME_BACKEND;
/// Where the ONNX Runtime library is when the node profile does not say.
pub const ONNXRUNTIME_ENV: &str = "TRIAGE_ONNXRUNTIME";

/// What the environment of a process that may load the node's backends must hold (the
/// create helper's: it and the container's init make the backends' environments).
#[cfg(feature = "onnxruntime")]
pub const BACKEND_ENVIRONMENT: &[(&str, &str)] = &[triage_nn_onnxruntime::TELEMETRY_OFF];
/// What the environment of a process that may load the node's backends must hold.
#[cfg(not(feature = "onnxruntime"))]
pub const BACKEND_ENVIRONMENT: &[(&str, &str)] = &[];

/// Errors setting up wasi-nn for a container, each naming it.
#[derive(Debug, thiserror::Error)]
pub enum NnSetupError {
    /// The node profile names a backend this build does not have.
    #[error("container {id}: node profile nn.{key} = {name:?}: no such wasi-nn backend (this build has: {available})")]
    UnknownBackend {
        /// Container id.
        id: String,
        /// `cpu_backend` or `gpu_backend`.
        key: &'static str,
        /// The name given.
        name: String,
        /// The backends there are.
        available: String,
    },
    /// A model file could not be read.
    #[error("container {id}: wasi-nn model {name:?}: cannot read {path}: {source}")]
    Read {
        /// Container id.
        id: String,
        /// The model's name.
        name: String,
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// A model could not be loaded into a graph.
    #[error("container {id}: wasi-nn model {name:?} ({preload}): {source}")]
    Load {
        /// Container id.
        id: String,
        /// The model's name.
        name: String,
        /// The preload as written.
        preload: String,
        /// The backend's error.
        source: Box<NnError>,
    },
}

/// The backends this build has, in the node's order of preference.
///
/// CPU graphs go to `nn.cpu_backend` when the profile names one; otherwise to ONNX
/// Runtime where the node has its library (its prepared graphs are mapped and shared by
/// every container, and it computes faster), else to tract. A preferred backend whose
/// library does not load leaves the graph to the next one.
pub fn backend_set(id: &str, settings: &NnSettings) -> Result<BackendSet, NnSetupError> {
    let library = settings
        .onnxruntime
        .clone()
        .or_else(|| std::env::var_os(ONNXRUNTIME_ENV).map(PathBuf::from));
    backends_with(id, settings, library)
}

/// [`backend_set`] with the ONNX Runtime library found (or not).
fn backends_with(
    id: &str,
    settings: &NnSettings,
    onnxruntime: Option<PathBuf>,
) -> Result<BackendSet, NnSetupError> {
    let mut set = BackendSet::new();
    set.add(Arc::new(triage_nn_tract::TractBackend::new()));
    #[cfg(feature = "onnxruntime")]
    if let Some(library) = onnxruntime {
        set.add(Arc::new(triage_nn_onnxruntime::OnnxRuntimeBackend::new(
            library,
        )));
    }
    #[cfg(not(feature = "onnxruntime"))]
    let _ = onnxruntime;
    let names: Vec<String> = set.backends().iter().map(|b| b.name().to_owned()).collect();
    let known = |key: &'static str, name: &str| {
        // The GPU backend may be one this node has no library for: then GPU graphs fall
        // back to the CPU, with the reason logged.
        if names.iter().any(|n| n == name) || (key == "gpu_backend" && name == GPU_BACKEND) {
            Ok(())
        } else {
            Err(NnSetupError::UnknownBackend {
                id: id.to_owned(),
                key,
                name: name.to_owned(),
                available: names.join(", "),
            })
        }
    };
    let cpu = match settings.cpu_backend.as_deref() {
        Some(name) => name,
        None if names.iter().any(|n| n == ONNXRUNTIME_BACKEND) => ONNXRUNTIME_BACKEND,
        None => CPU_BACKEND,
    };
    let gpu = settings.gpu_backend.as_deref().unwrap_or(GPU_BACKEND);
    known("cpu_backend", cpu)?;
    known("gpu_backend", gpu)?;
    set.prefer_cpu(cpu);
    set.prefer_gpu(gpu);
    Ok(set)
}

/// A model file, opened before the fork (where both the node's paths and the container's
/// are visible). Its bytes are read only when something needs them: not at all when its
/// prepared graph is in the node's store and the store remembers the file's digest.
#[derive(Debug, Clone)]
pub struct ModelBytes {
    /// The preload, with the path as it was written (container or host).
    pub preload: NnPreload,
    /// The open file (read with `pread`: the descriptor, and its offset, are shared with
    /// the container's init after the fork).
    file: Arc<std::fs::File>,
    /// Its size when opened, for the log.
    size: u64,
    /// The most that is read of it (a container's model: `[files] max_model_size`).
    limit: u64,
    /// Its contents, once read.
    bytes: OnceLock<Arc<Vec<u8>>>,
    /// Its prepared graph from the node's store, when its backend has one.
    pub prepared: Option<store::PreparedModel>,
}

impl ModelBytes {
    /// The model file's contents, read on first use.
    pub fn bytes(&self, id: &str) -> Result<&[u8], NnSetupError> {
        if let Some(bytes) = self.bytes.get() {
            return Ok(bytes);
        }
        let read = triage_oci::container_fs::read_all_bounded(
            &self.file,
            self.limit,
            triage_oci::node_profile::MAX_MODEL_SIZE_KEY,
        )
        .map_err(|e| NnSetupError::Read {
            id: id.to_owned(),
            name: self.preload.name.clone(),
            path: self.preload.path.clone(),
            source: e.into(),
        })?;
        Ok(self.bytes.get_or_init(|| Arc::new(read)))
    }

    /// Whether its contents have been read.
    pub fn was_read(&self) -> bool {
        self.bytes.get().is_some()
    }

    /// The file's size when it was opened.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The open file.
    pub fn file(&self) -> &std::fs::File {
        &self.file
    }
}

/// Opens the node's models and takes the container's (opened by the shim's decision,
/// read at most `container_limit` bytes each); a container model replaces a node model of
/// the same name. Every file is held through a read-only mount: the container's init
/// keeps the descriptors.
pub fn read_models(
    id: &str,
    node: &[NnPreload],
    container: Vec<(NnPreload, triage_oci::container_fs::ContainerFile)>,
    container_limit: u64,
) -> Result<Vec<ModelBytes>, NnSetupError> {
    let mut models: Vec<ModelBytes> = Vec::new();
    let node = node.iter().map(|p| {
        // Regular files only, refused without blocking otherwise.
        let opened = crate::read_only::open(&p.path);
        (p.clone(), opened, u64::MAX)
    });
    let container = container.into_iter().map(|(p, opened)| {
        let reopened = crate::read_only::reopen(&opened.file);
        (p, reopened, container_limit)
    });
    for (preload, opened, limit) in node.chain(container) {
        let opened = opened.and_then(|file| {
            let size = file.metadata()?.len();
            Ok((file, size))
        });
        let (file, size) = opened.map_err(|source| NnSetupError::Read {
            id: id.to_owned(),
            name: preload.name.clone(),
            path: preload.path.clone(),
            source,
        })?;
        models.retain(|m| m.preload.name != preload.name);
        models.push(ModelBytes {
            preload,
            file: Arc::new(file),
            size,
            limit,
            bytes: OnceLock::new(),
            prepared: None,
        });
    }
    Ok(models)
}

/// What a guest's wasi-nn sees: the backends, and the graphs it can load by name.
#[derive(Clone, Default)]
pub struct NnHost {
    /// The node's backends.
    pub backends: BackendSet,
    /// Preloaded graphs by name.
    pub graphs: Vec<(String, Arc<dyn NnGraph>)>,
}

impl std::fmt::Debug for NnHost {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.graphs.iter().map(|(n, _)| n.as_str()).collect();
        f.debug_struct("NnHost")
            .field("backends", &self.backends.describe())
            .field("graphs", &names)
            .finish()
    }
}

impl NnHost {
    /// Builds each model's graph with the backend the node chooses for its encoding and
    /// target; logs the choice, a GPU fallback (as a warning) and the time each took.
    pub fn load(
        id: &str,
        backends: BackendSet,
        models: &[ModelBytes],
    ) -> Result<Self, NnSetupError> {
        let mut graphs = Vec::with_capacity(models.len());
        for model in models {
            let p = &model.preload;
            let error = |source| NnSetupError::Load {
                id: id.to_owned(),
                name: p.name.clone(),
                preload: p.to_text(),
                source: Box::new(source),
            };
            let started = Instant::now();
            let from_store = model.prepared.as_ref().and_then(|prepared| {
                match store::load_prepared(&backends, prepared) {
                    Ok(graph) => Some((prepared, graph)),
                    Err(why) => {
                        tracing::warn!(container = %id, model = %p.name, entry = prepared.entry, "wasi-nn prepared graph not loaded ({why}); building it from the model");
                        None
                    }
                }
            });
            let (loaded, source) = match from_store {
                Some((prepared, graph)) => (
                    triage_nn::LoadedGraph {
                        graph,
                        backend: prepared.backend.clone(),
                        target: prepared.target,
                        fallback: prepared.fallback.clone(),
                    },
                    "prepared graph (node store)",
                ),
                None => (
                    backends
                        .load(p.encoding, p.target, &[model.bytes(id)?])
                        .map_err(error)?,
                    "model bytes",
                ),
            };
            log_fallback(id, &p.name, p.target, loaded.fallback.as_deref());
            tracing::info!(
                container = %id,
                model = %p.name,
                backend = loaded.backend,
                target = %loaded.target,
                bytes = model.size(),
                from = source,
                model_read = model.was_read(),
                ms = started.elapsed().as_secs_f64() * 1000.0,
                "wasi-nn model preloaded"
            );
            graphs.push((p.name.clone(), loaded.graph));
        }
        Ok(Self { backends, graphs })
    }
}

/// Logs why a graph runs on the CPU when the guest asked for more: a warning for a GPU
/// or TPU, a note for `AUTO`.
pub fn log_fallback(id: &str, model: &str, asked: triage_nn::ExecutionTarget, why: Option<&str>) {
    let Some(why) = why else {
        return;
    };
    if asked == triage_nn::ExecutionTarget::Auto {
        tracing::info!(container = %id, model, "wasi-nn AUTO runs on the CPU: {why}");
    } else {
        tracing::warn!(container = %id, model, asked = %asked, "wasi-nn target not available, running on the CPU: {why}");
    }
}

/// Opens what a backend must open while the host's filesystem is still in view (the ONNX
/// Runtime library): called in the helper before the fork. A backend that cannot serve
/// is left for the choice to skip, with its reason.
pub fn open_libraries(backends: &BackendSet) {
    for backend in backends.backends() {
        if backend.name() != CPU_BACKEND {
            if let Err(why) = backend.serves(triage_nn::ExecutionTarget::Cpu) {
                tracing::warn!("wasi-nn backend {} unavailable: {why}", backend.name());
            }
        }
    }
    // The helper forks next: a library that started a thread would make that unsafe.
    let threads: Vec<String> = std::fs::read_dir("/proc/self/task")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|comm| comm.trim().to_owned())
        .collect();
    if threads.len() > 1 {
        tracing::warn!(threads = %threads.join(","), "threads exist before the fork");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn preload(name: &str, path: &str) -> NnPreload {
        NnPreload::parse(&format!("{name}:ONNX:CPU:{path}")).unwrap()
    }

    /// A container file as the shim's decision hands it over.
    fn opened(path: &std::path::Path) -> triage_oci::container_fs::ContainerFile {
        let file = std::fs::File::open(path).unwrap();
        let size = file.metadata().unwrap().len();
        triage_oci::container_fs::ContainerFile {
            file,
            container_path: path.to_path_buf(),
            size,
        }
    }

    #[test]
    fn a_container_model_is_read_no_further_than_the_node_bound() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("m.onnx");
        std::fs::write(&file, b"12345").unwrap();
        let models =
            read_models("c1", &[], vec![(preload("m", "/m.onnx"), opened(&file))], 4).unwrap();
        let err = models[0].bytes("c1").unwrap_err().to_string();
        assert!(
            err.contains("larger than the 4 bytes the node profile allows (files.max_model_size)"),
            "{err}"
        );
    }

    #[test]
    fn container_models_replace_node_models_of_the_same_name() {
        let dir = tempfile::tempdir().unwrap();
        let node_file = dir.path().join("node.onnx");
        let container_file = dir.path().join("container.onnx");
        std::fs::write(&node_file, b"node").unwrap();
        std::fs::write(&container_file, b"container").unwrap();
        let node = [
            preload("digits", node_file.to_str().unwrap()),
            preload("other", node_file.to_str().unwrap()),
        ];
        let container = vec![(
            preload("digits", "/models/digits.onnx"),
            opened(&container_file),
        )];
        let models = read_models("c1", &node, container, u64::MAX).unwrap();
        let found: Vec<(&str, &[u8])> = models
            .iter()
            .map(|m| (m.preload.name.as_str(), m.bytes("c1").unwrap()))
            .collect();
        assert_eq!(
            found,
            [("other", &b"node"[..]), ("digits", &b"container"[..])]
        );
    }

    #[test]
    fn a_missing_model_file_names_the_container_model_and_path() {
        let err = read_models(
            "c1",
            &[preload("digits", "/nonexistent/d.onnx")],
            Vec::new(),
            u64::MAX,
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.starts_with(
                "container c1: wasi-nn model \"digits\": cannot read /nonexistent/d.onnx"
            ),
            "{err}"
        );
    }

    #[test]
    fn an_unknown_cpu_backend_is_refused_and_the_gpu_default_is_allowed_without_a_library() {
        let settings = NnSettings {
            cpu_backend: Some("openvino".into()),
            ..NnSettings::default()
        };
        let err = backend_set("c1", &settings).err().unwrap().to_string();
        assert!(
            err.contains("nn.cpu_backend = \"openvino\": no such wasi-nn backend"),
            "{err}"
        );
        assert!(err.contains("tract"), "{err}");
        let set = backends_with("c1", &NnSettings::default(), None).unwrap();
        assert_eq!(
            set.describe(),
            "tract (ONNX; CPU; no GPU: CPU only (asked GPU))"
        );
        assert_eq!(set.preferred(), (Some("tract"), Some("onnxruntime")));
    }

    #[cfg(feature = "onnxruntime")]
    #[test]
    fn cpu_graphs_go_to_onnx_runtime_where_the_node_has_its_library_unless_the_profile_says() {
        let library = PathBuf::from("/nonexistent/libonnxruntime.so");
        let set = backends_with("c1", &NnSettings::default(), Some(library.clone())).unwrap();
        assert_eq!(set.preferred(), (Some("onnxruntime"), Some("onnxruntime")));
        // A library that does not load leaves CPU graphs to tract.
        let choice = set
            .choose(
                triage_nn::GraphEncoding::Onnx,
                triage_nn::ExecutionTarget::Cpu,
            )
            .unwrap();
        assert_eq!(choice.backend.name(), "tract");
        assert_eq!(choice.fallback, None);
        let tract = NnSettings {
            cpu_backend: Some("tract".into()),
            ..NnSettings::default()
        };
        let set = backends_with("c1", &tract, Some(library)).unwrap();
        assert_eq!(set.preferred(), (Some("tract"), Some("onnxruntime")));
    }

    #[test]
    fn a_model_that_does_not_parse_fails_its_load_with_the_preload_text() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("bad.onnx");
        std::fs::write(&file, b"not onnx").unwrap();
        let container = vec![(preload("bad", "/m/bad.onnx"), opened(&file))];
        let models = read_models("c1", &[], container, u64::MAX).unwrap();
        let set = backends_with("c1", &NnSettings::default(), None).unwrap();
        let err = NnHost::load("c1", set, &models).unwrap_err().to_string();
        assert!(
            err.starts_with("container c1: wasi-nn model \"bad\" (bad:ONNX:CPU:/m/bad.onnx): tract: cannot load the model"),
            "{err}"
        );
    }
}
