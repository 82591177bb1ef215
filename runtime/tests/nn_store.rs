//! Prepared wasi-nn graphs in the node's store: made once per model, backend and target, mapped by later containers; against a real libonnxruntime.so (`TRIAGE_ONNXRUNTIME`).

use std::path::PathBuf;

use triage_nn::Tensor;
use triage_oci::{NnPreload, NnSettings};
use triage_runtime::engine::cache::{ArtifactCache, CacheOutcome, DEFAULT_MAX_BYTES};
use triage_runtime::nn::{backend_set, read_models, store, ModelBytes, NnHost};
use triage_testkit::models::DIGITS;

/// The store prepares models in a forked child. The runtime forks from a single-threaded
/// helper; here the tests take turns, so no other test thread holds a lock (the
/// allocator's, a library's) that the child would wait on forever.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn library() -> Option<PathBuf> {
    match std::env::var_os("TRIAGE_ONNXRUNTIME").map(PathBuf::from) {
        Some(path) if path.is_file() => Some(path),
        _ => {
            eprintln!(
                "skipping: TRIAGE_ONNXRUNTIME names no library \
                 (export TRIAGE_ONNXRUNTIME=\"$(scripts/onnxruntime.sh)\")"
            );
            None
        }
    }
}

fn settings(cpu_backend: &str, library: PathBuf) -> NnSettings {
    NnSettings {
        cpu_backend: Some(cpu_backend.into()),
        onnxruntime: Some(library),
        ..NnSettings::default()
    }
}

/// What each store test needs: its turn, the library, and an empty store.
struct Fixture {
    _turn: std::sync::MutexGuard<'static, ()>,
    library: PathBuf,
    dir: tempfile::TempDir,
    cache: ArtifactCache,
}

/// The fixture, or `None` (with the reason on stderr) where no library is configured.
fn fixture() -> Option<Fixture> {
    let turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let library = library()?;
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    Some(Fixture {
        _turn: turn,
        library,
        dir,
        cache,
    })
}

/// The node's preload of `model` for `target`, read and looked up in the store.
fn prepared(
    id: &str,
    settings: &NnSettings,
    cache: &ArtifactCache,
    model: &std::path::Path,
    target: &str,
) -> (triage_nn::BackendSet, Vec<ModelBytes>) {
    let preload = NnPreload::parse(&format!("digits:ONNX:{target}:{}", model.display())).unwrap();
    let backends = backend_set(id, settings).expect("backends");
    let mut models = read_models(id, &[preload], Vec::new(), u64::MAX).expect("model read");
    store::prepare_models(id, &backends, &mut models, cache);
    (backends, models)
}

#[test]
fn a_model_is_prepared_once_per_node_and_target_and_mapped_after() {
    // Bound whole, the turn is held to the end of the test.
    let Some(fixture) = fixture() else { return };
    let Fixture {
        library,
        dir,
        cache,
        ..
    } = &fixture;
    let ort = settings("onnxruntime", library.clone());

    // The first container of the node prepares the model; the entry is ORT format.
    let (_, first) = prepared("c1", &ort, cache, &DIGITS.path(), "CPU");
    let first = first[0].prepared.clone().expect("prepared");
    assert_eq!(first.outcome, CacheOutcome::Built);
    assert_eq!(first.backend, "onnxruntime");
    assert_eq!(&(*first.bytes).as_ref()[4..8], b"ORTM");
    // Two entries: the prepared graph, and the model file's digest.
    assert_eq!(cache.entries().unwrap().len(), 2);

    // The next maps the same entry without reading the model file, and its graph
    // classifies as the model does.
    let (backends, models) = prepared("c2", &ort, cache, &DIGITS.path(), "CPU");
    let second = models[0].prepared.clone().expect("prepared");
    assert_eq!(second.outcome, CacheOutcome::Hit);
    assert_eq!(second.entry, first.entry);
    assert!(!models[0].was_read());
    let host = NnHost::load("c2", backends, &models).expect("graphs");
    assert!(!models[0].was_read());
    let (name, graph) = &host.graphs[0];
    assert_eq!((name.as_str(), graph.backend()), ("digits", "onnxruntime"));
    let mut context = graph.init_context().unwrap();
    let cases = DIGITS.holdout();
    let right = cases
        .iter()
        .filter(|case| {
            let input = Tensor::from_f32(vec![1, DIGITS.features as u32], &case.features);
            context.set_input(0, &input).unwrap();
            context.compute().unwrap();
            let p = context.get_output(0).unwrap().to_f32().unwrap();
            DIGITS.classify(&p).0 == case.label
        })
        .count();
    assert!(
        right as f64 / cases.len() as f64 >= 0.95,
        "{right}/{}",
        cases.len()
    );

    // A GPU asked for on a node without one runs the CPU graph: the same entry.
    let (_, gpu) = prepared("c3", &ort, cache, &DIGITS.path(), "GPU");
    let gpu = gpu[0].prepared.clone().expect("prepared");
    assert_eq!(
        (gpu.entry.as_str(), gpu.outcome),
        (first.entry.as_str(), CacheOutcome::Hit)
    );
    assert!(gpu.fallback.is_some());

    // Another model is another entry; the store keys by content, not by path: a copy
    // is read once (its digest is new) and maps the same entry.
    let copy = dir.path().join("same-digits.onnx");
    std::fs::copy(DIGITS.path(), &copy).unwrap();
    let (_, same) = prepared("c4", &ort, cache, &copy, "CPU");
    assert_eq!(
        same[0].prepared.as_ref().unwrap().outcome,
        CacheOutcome::Hit
    );
    assert!(same[0].was_read());
    let other = dir.path().join("breast.onnx");
    std::fs::copy(triage_testkit::models::BREAST_CANCER.path(), &other).unwrap();
    let (_, other) = prepared("c5", &ort, cache, &other, "CPU");
    assert_eq!(
        other[0].prepared.as_ref().unwrap().outcome,
        CacheOutcome::Built
    );
    // Prepared graphs: digits, breast cancer; digests: three files.
    assert_eq!(cache.entries().unwrap().len(), 5);

    // A model rewritten in place is read again and prepared again.
    std::fs::copy(triage_testkit::models::BREAST_CANCER.path(), &copy).unwrap();
    let (_, rewritten) = prepared("c6", &ort, cache, &copy, "CPU");
    assert!(rewritten[0].was_read());
    let rewritten = rewritten[0].prepared.clone().unwrap();
    assert_ne!(rewritten.entry, first.entry);
    assert_eq!(rewritten.outcome, CacheOutcome::Hit);
}

#[test]
fn tract_prepares_nnef_and_a_model_that_fails_to_prepare_is_built_in_the_container() {
    // Bound whole, the turn is held to the end of the test.
    let Some(fixture) = fixture() else { return };
    let Fixture {
        library,
        dir,
        cache,
        ..
    } = &fixture;
    // tract's prepared form: the decluttered model as an NNEF archive (a tar).
    let tract = settings("tract", library.clone());
    let (_, models) = prepared("c1", &tract, cache, &DIGITS.path(), "CPU");
    let first = models[0].prepared.clone().expect("prepared");
    assert_eq!(
        (first.backend.as_str(), first.outcome),
        ("tract", CacheOutcome::Built)
    );
    assert_eq!(&(*first.bytes).as_ref()[257..262], b"ustar");
    let (backends, models) = prepared("c2", &tract, cache, &DIGITS.path(), "CPU");
    assert_eq!(
        models[0].prepared.as_ref().unwrap().outcome,
        CacheOutcome::Hit
    );
    let host = NnHost::load("c2", backends, &models).unwrap();
    assert_eq!(host.graphs[0].1.backend(), "tract");
    // The same model for another backend is another entry.
    let (_, models) = prepared(
        "c3",
        &settings("onnxruntime", library.clone()),
        cache,
        &DIGITS.path(),
        "CPU",
    );
    assert_ne!(models[0].prepared.as_ref().unwrap().entry, first.entry);
    // Two prepared graphs, and the model file's digest.
    assert_eq!(cache.entries().unwrap().len(), 3);

    // A file that is not a model fails in the preparing process; nothing is stored and
    // the container's load reports the error.
    let bad = dir.path().join("bad.onnx");
    std::fs::write(&bad, b"not a model").unwrap();
    for backend in ["tract", "onnxruntime"] {
        let (backends, models) = prepared(
            "c4",
            &settings(backend, library.clone()),
            cache,
            &bad,
            "CPU",
        );
        assert!(models[0].prepared.is_none());
        let err = NnHost::load("c4", backends, &models)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("container c4: wasi-nn model \"digits\""),
            "{err}"
        );
    }
    // No prepared graph for it; its digest is remembered.
    assert_eq!(cache.entries().unwrap().len(), 4);
}

/// A third-party backend with no prepared form (the trait's defaults): tract's loading
/// under another name.
struct NoPreparedForm(triage_nn_tract::TractBackend);

impl triage_nn::NnBackend for NoPreparedForm {
    fn name(&self) -> &str {
        "plain"
    }
    fn encodings(&self) -> &[triage_nn::GraphEncoding] {
        self.0.encodings()
    }
    fn serves(&self, target: triage_nn::ExecutionTarget) -> Result<(), String> {
        self.0.serves(target)
    }
    fn load(
        &self,
        builders: &[&[u8]],
        target: triage_nn::ExecutionTarget,
    ) -> Result<std::sync::Arc<dyn triage_nn::NnGraph>, triage_nn::NnError> {
        self.0.load(builders, target)
    }
}

#[test]
fn a_backend_without_a_prepared_form_builds_its_graph_in_the_container() {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let dir = tempfile::tempdir().unwrap();
    let cache = ArtifactCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
    let mut backends = triage_nn::BackendSet::new();
    backends.add(std::sync::Arc::new(NoPreparedForm(
        triage_nn_tract::TractBackend::new(),
    )));
    let preload =
        NnPreload::parse(&format!("digits:ONNX:CPU:{}", DIGITS.path().display())).unwrap();
    let mut models = read_models("c1", &[preload], Vec::new(), u64::MAX).unwrap();
    store::prepare_models("c1", &backends, &mut models, &cache);
    // Nothing stored, nothing read before the fork ...
    assert!(models[0].prepared.is_none());
    assert!(!models[0].was_read());
    assert!(cache.entries().unwrap().is_empty());
    // ... the container's init reads the model and builds the graph.
    let host = NnHost::load("c1", backends, &models).unwrap();
    assert!(models[0].was_read());
    assert_eq!(host.graphs[0].1.backend(), "tract");
}
