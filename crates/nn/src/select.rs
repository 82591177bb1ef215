//! The backends a node has, and which one serves a graph for the target a guest asked.

use std::sync::Arc;

use crate::{ExecutionTarget, GraphEncoding, NnBackend, NnError};

/// The backends of this node, with the node's preferred one per target.
#[derive(Default, Clone)]
pub struct BackendSet {
    backends: Vec<Arc<dyn NnBackend>>,
    cpu: Option<String>,
    gpu: Option<String>,
}

/// The backend chosen for a graph.
#[derive(Clone)]
pub struct BackendChoice {
    /// The backend that loads it.
    pub backend: Arc<dyn NnBackend>,
    /// The target it runs on (`Cpu` or `Gpu`).
    pub target: ExecutionTarget,
    /// Why the target asked for is not the one served, when it is not: a GPU asked for
    /// on a node where none serves (a warning), or `AUTO` served by the CPU (a note).
    pub fallback: Option<String>,
}

/// A graph loaded by [`BackendSet::load`], with where it runs and why.
pub struct LoadedGraph {
    /// The graph.
    pub graph: Arc<dyn crate::NnGraph>,
    /// The backend that loaded it.
    pub backend: String,
    /// The target it runs on.
    pub target: ExecutionTarget,
    /// Why it does not run on the target asked for, when it does not.
    pub fallback: Option<String>,
}

impl BackendSet {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds a backend (later ones are tried after earlier ones).
    pub fn add(&mut self, backend: Arc<dyn NnBackend>) {
        self.backends.push(backend);
    }

    /// The backend tried first for CPU graphs (by name).
    pub fn prefer_cpu(&mut self, name: impl Into<String>) {
        self.cpu = Some(name.into());
    }

    /// The backend tried first for GPU graphs (by name).
    pub fn prefer_gpu(&mut self, name: impl Into<String>) {
        self.gpu = Some(name.into());
    }

    /// The backend tried first for CPU graphs, and for GPU graphs.
    pub fn preferred(&self) -> (Option<&str>, Option<&str>) {
        (self.cpu.as_deref(), self.gpu.as_deref())
    }

    /// The backends, in order.
    pub fn backends(&self) -> &[Arc<dyn NnBackend>] {
        &self.backends
    }

    /// One line for the log: each backend, its encodings and what it serves.
    pub fn describe(&self) -> String {
        if self.backends.is_empty() {
            return "none".to_owned();
        }
        let lines: Vec<String> = self
            .backends
            .iter()
            .map(|b| {
                let encodings: Vec<&str> = b.encodings().iter().map(|e| e.as_str()).collect();
                let targets: Vec<String> = [ExecutionTarget::Cpu, ExecutionTarget::Gpu]
                    .into_iter()
                    .map(|t| match b.serves(t) {
                        Ok(()) => t.to_string(),
                        Err(why) => format!("no {t}: {why}"),
                    })
                    .collect();
                format!(
                    "{} ({}; {})",
                    b.name(),
                    encodings.join(","),
                    targets.join("; ")
                )
            })
            .collect();
        lines.join(", ")
    }

    /// Candidates for `encoding`, the preferred one first.
    fn candidates(
        &self,
        encoding: GraphEncoding,
        preferred: Option<&str>,
    ) -> Vec<&Arc<dyn NnBackend>> {
        let mut list: Vec<&Arc<dyn NnBackend>> = self
            .backends
            .iter()
            .filter(|b| b.encodings().contains(&encoding))
            .collect();
        if let Some(name) = preferred {
            list.sort_by_key(|b| b.name() != name);
        }
        list
    }

    /// Loads a model with the backend [`BackendSet::choose`] picks; where a GPU backend
    /// said it serves but cannot load the model there (a CUDA library missing, say), the
    /// CPU loads it and the reason is in [`LoadedGraph::fallback`].
    pub fn load(
        &self,
        encoding: GraphEncoding,
        asked: ExecutionTarget,
        builders: &[&[u8]],
    ) -> Result<LoadedGraph, NnError> {
        let choice = self.choose(encoding, asked)?;
        match choice.backend.load(builders, choice.target) {
            Ok(graph) => Ok(LoadedGraph {
                graph,
                backend: choice.backend.name().to_owned(),
                target: choice.target,
                fallback: choice.fallback,
            }),
            Err(NnError::Unavailable { backend, reason })
                if choice.target == ExecutionTarget::Gpu =>
            {
                let cpu = self.choose(encoding, ExecutionTarget::Cpu)?;
                let graph = cpu.backend.load(builders, ExecutionTarget::Cpu)?;
                Ok(LoadedGraph {
                    graph,
                    backend: cpu.backend.name().to_owned(),
                    target: ExecutionTarget::Cpu,
                    fallback: Some(format!("{backend}: {reason}")),
                })
            }
            Err(e) => Err(e),
        }
    }

    /// Chooses the backend for a graph of `encoding` that the guest wants on `asked`.
    ///
    /// `GPU` and `AUTO` go to the first backend that serves a GPU (the node's GPU
    /// backend first); where none does, the CPU serves, with the reasons in
    /// [`BackendChoice::fallback`]. `TPU` is served by the CPU.
    pub fn choose(
        &self,
        encoding: GraphEncoding,
        asked: ExecutionTarget,
    ) -> Result<BackendChoice, NnError> {
        let mut reasons = Vec::new();
        if matches!(asked, ExecutionTarget::Gpu | ExecutionTarget::Auto) {
            for backend in self.candidates(encoding, self.gpu.as_deref()) {
                match backend.serves(ExecutionTarget::Gpu) {
                    Ok(()) => {
                        return Ok(BackendChoice {
                            backend: Arc::clone(backend),
                            target: ExecutionTarget::Gpu,
                            fallback: None,
                        })
                    }
                    Err(why) => reasons.push(format!("{}: {why}", backend.name())),
                }
            }
        }
        if asked == ExecutionTarget::Tpu {
            reasons.push("no backend serves a TPU".to_owned());
        }
        for backend in self.candidates(encoding, self.cpu.as_deref()) {
            match backend.serves(ExecutionTarget::Cpu) {
                Ok(()) => {
                    let fallback = (asked != ExecutionTarget::Cpu).then(|| {
                        if reasons.is_empty() {
                            format!("no backend serves {asked} for {encoding}")
                        } else {
                            reasons.join("; ")
                        }
                    });
                    return Ok(BackendChoice {
                        backend: Arc::clone(backend),
                        target: ExecutionTarget::Cpu,
                        fallback,
                    });
                }
                Err(why) => reasons.push(format!("{}: {why}", backend.name())),
            }
        }
        let mut available = self.describe();
        if !reasons.is_empty() {
            available = format!("{available}; {}", reasons.join("; "));
        }
        Err(NnError::NoBackend {
            encoding,
            available,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NnGraph;

    /// A backend that serves what it is told to; it never loads anything.
    struct Fixed {
        name: &'static str,
        gpu: Result<(), String>,
    }

    impl NnBackend for Fixed {
        fn name(&self) -> &str {
            self.name
        }
        fn encodings(&self) -> &[GraphEncoding] {
            &[GraphEncoding::Onnx]
        }
        fn serves(&self, target: ExecutionTarget) -> Result<(), String> {
            match target {
                ExecutionTarget::Gpu => self.gpu.clone(),
                _ => Ok(()),
            }
        }
        fn load(&self, _: &[&[u8]], target: ExecutionTarget) -> Result<Arc<dyn NnGraph>, NnError> {
            match target {
                // A GPU the backend said it serves, whose library then fails.
                ExecutionTarget::Gpu => Err(NnError::Unavailable {
                    backend: self.name.to_owned(),
                    reason: "libcudnn.so.9 not found".to_owned(),
                }),
                _ => Ok(Arc::new(Graph(self.name))),
            }
        }
    }

    struct Graph(&'static str);

    impl NnGraph for Graph {
        fn backend(&self) -> &str {
            self.0
        }
        fn target(&self) -> ExecutionTarget {
            ExecutionTarget::Cpu
        }
        fn init_context(&self) -> Result<Box<dyn crate::NnContext>, NnError> {
            Err(NnError::Compute {
                backend: self.0.to_owned(),
                reason: "not in this test".to_owned(),
            })
        }
    }

    #[test]
    fn a_gpu_load_that_fails_for_want_of_a_library_runs_on_the_cpu_with_the_reason() {
        let loaded = set(Ok(()))
            .load(GraphEncoding::Onnx, ExecutionTarget::Gpu, &[b"model"])
            .unwrap();
        assert_eq!(loaded.backend, "tract");
        assert_eq!(loaded.graph.backend(), "tract");
        assert_eq!(loaded.target, ExecutionTarget::Cpu);
        assert_eq!(
            loaded.fallback.as_deref(),
            Some("onnxruntime: libcudnn.so.9 not found")
        );
    }

    fn set(gpu: Result<(), String>) -> BackendSet {
        let mut set = BackendSet::new();
        set.add(Arc::new(Fixed {
            name: "tract",
            gpu: Err("CPU only".to_owned()),
        }));
        set.add(Arc::new(Fixed {
            name: "onnxruntime",
            gpu,
        }));
        set.prefer_cpu("tract");
        set.prefer_gpu("onnxruntime");
        set
    }

    #[test]
    fn gpu_goes_to_the_gpu_backend_when_it_serves_one() {
        let choice = set(Ok(()))
            .choose(GraphEncoding::Onnx, ExecutionTarget::Gpu)
            .unwrap();
        assert_eq!(choice.backend.name(), "onnxruntime");
        assert_eq!(choice.target, ExecutionTarget::Gpu);
        assert!(choice.fallback.is_none());
    }

    #[test]
    fn gpu_without_a_device_falls_back_to_the_cpu_backend_with_the_reason() {
        let s = set(Err("no CUDA device".to_owned()));
        let choice = s.choose(GraphEncoding::Onnx, ExecutionTarget::Gpu).unwrap();
        assert_eq!(choice.backend.name(), "tract");
        assert_eq!(choice.target, ExecutionTarget::Cpu);
        let why = choice.fallback.unwrap();
        assert!(why.contains("onnxruntime: no CUDA device"), "{why}");
        let cpu = s.choose(GraphEncoding::Onnx, ExecutionTarget::Cpu).unwrap();
        assert_eq!((cpu.backend.name(), cpu.fallback), ("tract", None));
    }

    #[test]
    fn tpu_is_served_by_the_cpu_and_unknown_encodings_name_the_backends() {
        let s = set(Ok(()));
        let tpu = s.choose(GraphEncoding::Onnx, ExecutionTarget::Tpu).unwrap();
        assert_eq!(tpu.target, ExecutionTarget::Cpu);
        assert!(tpu.fallback.unwrap().contains("TPU"));
        let err = s
            .choose(GraphEncoding::Ggml, ExecutionTarget::Cpu)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.contains("GGML") && err.contains("tract (ONNX; CPU"),
            "{err}"
        );
    }
}
