//! What a create helper prepares before libcontainer forks the init: the module from the artifact cache, wasi-nn backends and models.
//!
//! This runs in the single-threaded helper, where the host's filesystem is in view; the
//! init inherits the results (copy-on-write) and never opens the cache itself.

use std::sync::Arc;

use libcontainer::oci_spec::runtime::Spec;
use triage_oci::{ModuleSource, WasmPlan, WorkloadKind, WorkloadPlan};

use super::executor::memory_limit;
use crate::engine;

/// The node's artifact cache, opened once per Create for the compiled module and the
/// prepared wasi-nn graphs; `None` for a native plan, `triage.io/cache: off`, no cache
/// directory, or a cache that cannot be used (logged: the container then compiles and
/// builds its graphs itself).
pub fn open_cache(
    plan: &WorkloadPlan,
    settings: &crate::engine::cache::CacheSettings,
) -> Option<crate::engine::cache::ArtifactCache> {
    let WorkloadKind::Wasm(WasmPlan {
        artifact_cache: true,
        ..
    }) = &plan.kind
    else {
        return None;
    };
    let dir = settings.dir.as_ref()?;
    match crate::engine::cache::ArtifactCache::open(dir, settings.max_bytes) {
        Ok(cache) => Some(cache),
        Err(e) => {
            tracing::warn!(container = %plan.id, "{e}; compiling and building graphs without the cache");
            None
        }
    }
}

/// What the helper prepared for the container's init before the fork.
pub struct Prepared {
    /// The engine holding the loaded module, where it was preloaded.
    pub engine: Option<Arc<dyn engine::WasmEngine>>,
    /// wasi-nn's backends and models, for a module that imports wasi-nn.
    pub nn: Option<NnPrepared>,
    /// The module's bytes, where nothing was preloaded (the init compiles them).
    pub module: Option<Arc<[u8]>>,
    /// What the guest may reach, its granted names resolved here (the node's resolver,
    /// not one the container's files name).
    pub egress: Arc<engine::egress::Egress>,
}

/// Everything the helper does for a container before the fork: reads the module once
/// through the descriptor the shim's decision opened (`files`), loads it through the
/// node's artifact cache (compiled, and pre-initialised, once per node), and prepares
/// wasi-nn's backends and models.
pub fn prepare(
    plan: &WorkloadPlan,
    spec: Option<&Spec>,
    node: &super::NodeSettings<'_>,
    files: triage_oci::PlanFiles,
) -> Result<Prepared, crate::RuntimeError> {
    let module = read_module(plan, &files, node.files)?;
    drop(files.module);
    let store = open_cache(plan, node.cache);
    let (preloaded, engine) = preload_module(plan, spec, module.as_deref(), store.as_ref()).unzip();
    // wasi-nn models are read here too, where the node's files are in view.
    let nn = preload_nn(
        plan,
        node.nn,
        module.as_deref(),
        preloaded.as_ref(),
        store.as_ref(),
        files.models,
        node.files.model_bytes,
    )?;
    // The init is a fork of this process: of the cache it inherits only the entries
    // loaded from it (opened read-only), not its directory or its key (zeroed on drop).
    drop(store);
    // An init with a preloaded module does not need its bytes; one without compiles them.
    let module = if engine.is_some() { None } else { module };
    let egress = match plan.wasm() {
        Some(wasm) => engine::egress::Egress::resolve(&plan.id, &wasm.egress),
        None => engine::egress::Egress::denied(&plan.id),
    };
    Ok(Prepared {
        engine,
        nn,
        module,
        egress,
    })
}

/// The plan's module, read once (at most the node's `[files] max_module_size`) through
/// the descriptor the shim's decision opened; `None` for a native plan or a module in an
/// image layer.
pub fn read_module(
    plan: &WorkloadPlan,
    files: &triage_oci::PlanFiles,
    limits: &triage_oci::FileLimits,
) -> Result<Option<Arc<[u8]>>, engine::EngineError> {
    let Some(WasmPlan {
        module: ModuleSource::File { container_path, .. },
        ..
    }) = plan.wasm()
    else {
        return Ok(None);
    };
    let failed = |source| engine::EngineError::Read {
        id: plan.id.clone(),
        path: container_path.clone(),
        source,
    };
    let Some(file) = &files.module else {
        return Err(failed(std::io::Error::other(
            "the shim passed no descriptor for it",
        )));
    };
    let bytes = file
        .read_all(
            limits.module_bytes,
            triage_oci::node_profile::MAX_MODULE_SIZE_KEY,
        )
        .map_err(|e| failed(e.into()))?;
    Ok(Some(bytes.into()))
}

/// Loads the plan's module (`bytes`) through the artifact cache in the helper, before the fork:
/// from its snapshot where the plan asks for one and the module has the init export.
/// Returns what happened and the engine holding the loaded module, which the init uses
/// instead of compiling; `None` where nothing was preloaded (a native plan, a module in an
/// image layer, or no cache: then the init compiles).
pub fn preload_module(
    plan: &WorkloadPlan,
    spec: Option<&Spec>,
    bytes: Option<&[u8]>,
    cache: Option<&crate::engine::cache::ArtifactCache>,
) -> Option<(engine::Preloaded, Arc<dyn engine::WasmEngine>)> {
    let WorkloadKind::Wasm(
        wasm @ WasmPlan {
            module: ModuleSource::File { container_path, .. },
            snapshot,
            ..
        },
    ) = &plan.kind
    else {
        return None;
    };
    let (bytes, cache) = (bytes?, cache?);
    let engine = engine::for_plan(&plan.id, wasm).ok()?;
    let snapshot_init = snapshot.init_export().map(str::to_owned);
    // A snapshot's init is bounded by the container's memory limit.
    let init_memory_limit = snapshot_init
        .as_ref()
        .and_then(|_| spec.and_then(memory_limit));
    let options = engine::PreloadOptions {
        snapshot_init,
        init_memory_limit,
        init_deadline: std::time::Duration::from_secs(wasm.snapshot_init_seconds),
        cpu_millis: spec
            .and_then(super::executor::cpu_limit)
            .map(|cpus| (cpus * 1000.0).ceil() as u64),
        memory_limit: spec.and_then(memory_limit),
    };
    let started = std::time::Instant::now();
    match engine.preload(&plan.id, container_path, bytes, cache, &options) {
        Ok(preloaded) => {
            tracing::info!(
                container = %plan.id,
                outcome = ?preloaded.outcome,
                snapshot = preloaded.snapshot_of.as_deref().unwrap_or("none"),
                ms = started.elapsed().as_secs_f64() * 1000.0,
                "wasm module from the artifact cache"
            );
            Some((preloaded, Arc::from(engine)))
        }
        Err(e) => {
            tracing::warn!(container = %plan.id, "{e}; compiling in the container instead");
            None
        }
    }
}

/// The wasi-nn backends and model bytes the helper prepared before the fork; the init
/// builds the graphs from them in `prepare`.
pub type NnPrepared = Arc<(triage_nn::BackendSet, Vec<crate::nn::ModelBytes>)>;

/// For a guest (module or component) that imports wasi-nn: the node's backends (opening the libraries they
/// load, while the host's filesystem is in view) and the node's and the container's
/// preloaded models (`models`, opened by the shim's decision, read at most
/// `model_limit` bytes each), with their prepared graphs from the node's store where the
/// plan uses the artifact cache. A guest that does not import wasi-nn gets nothing.
pub fn preload_nn(
    plan: &WorkloadPlan,
    settings: &triage_oci::NnSettings,
    module: Option<&[u8]>,
    preloaded: Option<&engine::Preloaded>,
    cache: Option<&crate::engine::cache::ArtifactCache>,
    models: Vec<triage_oci::container_fs::ContainerFile>,
    model_limit: u64,
) -> Result<Option<NnPrepared>, crate::RuntimeError> {
    let WorkloadKind::Wasm(wasm) = &plan.kind else {
        return Ok(None);
    };
    let uses_wasi_nn = match (preloaded, &wasm.module, module) {
        (Some(preloaded), _, _) => preloaded.uses_wasi_nn,
        (None, ModuleSource::File { container_path, .. }, Some(bytes)) => {
            engine::for_plan(&plan.id, wasm)?.uses_wasi_nn(&plan.id, container_path, bytes)?
        }
        (None, _, _) => false,
    };
    if !uses_wasi_nn {
        if !wasm.nn_preload.is_empty() {
            tracing::warn!(
                container = %plan.id,
                "annotation {} ignored: the guest imports no wasi-nn ({} for a module, {}* for a component)",
                triage_oci::annotations::NN_PRELOAD,
                engine::WASI_NN_MODULE,
                engine::WASI_NN_PACKAGE,
            );
        }
        return Ok(None);
    }
    let backends = crate::nn::backend_set(&plan.id, settings)?;
    let container_models = wasm.nn_preload.iter().cloned().zip(models).collect();
    let mut models =
        crate::nn::read_models(&plan.id, &settings.preload, container_models, model_limit)?;
    crate::nn::open_libraries(&backends);
    if let Some(cache) = cache {
        crate::nn::store::prepare_models(&plan.id, &backends, &mut models, cache);
    }
    let (cpu, gpu) = backends.preferred();
    tracing::info!(
        container = %plan.id,
        models = models.len(),
        cpu = cpu.unwrap_or_default(),
        gpu = gpu.unwrap_or_default(),
        "wasi-nn backends: {}",
        backends.describe()
    );
    Ok(Some(Arc::new((backends, models))))
}
