//! The decision table: annotations, then crun's keys, then the image, then the entrypoint.

use std::cell::RefCell;
use std::path::PathBuf;
use std::sync::Arc;

use crate::annotations::{self, CrunWasmHint, RuntimeChoice};
use crate::bundle::Bundle;
use crate::container_fs::{ContainerFile, ContainerFs};
use crate::engine::{EngineChoice, EngineName};
use crate::entrypoint::{Entrypoint, EntrypointKind};
use crate::error::PlanError;
use crate::image::ImageFacts;
use crate::node_profile::{FileLimits, WasmSettings};
use crate::plan::{
    DecisionReason, Listen, ListenSource, ModuleSource, Preopen, SnapshotPlan, WasmForm, WasmPlan,
    WorkloadKind, WorkloadPlan, LISTEN_ENV,
};

/// The export a WASI command starts at.
pub const DEFAULT_EXPORT: &str = "_start";

/// A decision, with the container files it opened for the steps that read them.
#[derive(Debug)]
pub struct Decision {
    /// What runs, and why.
    pub plan: WorkloadPlan,
    /// The files the plan names, open.
    pub files: PlanFiles,
}

/// The container files a plan names, each opened once (see [`crate::container_fs`]):
/// whoever reads them later reads these descriptors, never the path again.
#[derive(Debug, Default)]
pub struct PlanFiles {
    /// The Wasm module, for a plan whose module is a file of the container.
    pub module: Option<Arc<ContainerFile>>,
    /// The container's wasi-nn models, in the plan's `nn_preload` order.
    pub models: Vec<ContainerFile>,
}

/// What a decision takes from the node beside the container: the profile's file bounds
/// and Wasm settings, whether the node keeps an artifact cache, and the engine this build
/// prefers. The plan it yields is settled: nothing later finishes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeContext {
    /// The largest module and model the node reads (`[files]`).
    pub files: FileLimits,
    /// The profile's `[wasm]` settings (engine, snapshots).
    pub wasm: WasmSettings,
    /// Whether the node has an artifact cache (snapshots live there).
    pub cache: bool,
    /// The engine of a container and node that name none.
    pub build_default: EngineName,
    /// What every Wasm guest of the node may reach (the profile's `[network] egress`),
    /// besides what its own `triage.io/egress` grants.
    pub egress: crate::EgressGrants,
}

impl Default for NodeContext {
    /// The default profile, with a cache, on a build whose default engine is wasmtime.
    fn default() -> Self {
        Self {
            files: FileLimits::default(),
            wasm: WasmSettings::default(),
            cache: true,
            build_default: EngineName::Wasmtime,
            egress: Vec::new(),
        }
    }
}

/// Decides how `bundle` runs on a node with the default profile; see [`decide`].
pub fn plan_workload(
    bundle: &Bundle,
    image: Option<&ImageFacts>,
) -> Result<WorkloadPlan, PlanError> {
    decide(bundle, image, &NodeContext::default()).map(|decision| decision.plan)
}

/// Decides how `bundle` runs on `node`.
///
/// `image` carries what is known of the image (config and layers); pass `None` when the
/// caller cannot see it. Of the container's files it opens the entrypoint (reading its
/// first bytes) and, for a Wasm plan, the models it preloads; a module or model larger
/// than the node's bounds is refused.
pub fn decide(
    bundle: &Bundle,
    image: Option<&ImageFacts>,
    node: &NodeContext,
) -> Result<Decision, PlanError> {
    // Filled where the plan becomes a Wasm plan of a module file, and only there.
    let files = RefCell::new(PlanFiles::default());
    let plan = decide_plan(bundle, image, node, &files)?;
    Ok(Decision {
        plan,
        files: files.into_inner(),
    })
}

fn decide_plan(
    bundle: &Bundle,
    image: Option<&ImageFacts>,
    node: &NodeContext,
    files: &RefCell<PlanFiles>,
) -> Result<WorkloadPlan, PlanError> {
    let limits = &node.files;
    let id = bundle.id.as_str();
    let args = bundle.args();
    let Some(arg0) = args.first().filter(|a| !a.is_empty()) else {
        return Err(PlanError::EmptyArgs { id: id.to_owned() });
    };
    let annotations = bundle.annotations();
    annotations::refuse_unknown(id, &annotations)?;
    // A pod's pause container carries the pod's annotations (which may ask for Wasm
    // for the pod's workloads) but is always the native sandbox process.
    if annotations::is_cri_sandbox(&annotations) {
        return Ok(WorkloadPlan {
            id: id.to_owned(),
            kind: WorkloadKind::Native,
            reason: DecisionReason::Annotation {
                key: annotations::CRI_CONTAINER_TYPE.to_owned(),
                value: "sandbox".to_owned(),
                entrypoint: None,
            },
        });
    }
    let explicit = annotations::runtime_choice(id, &annotations)?;
    let artifact_cache = annotations::artifact_cache(id, &annotations)?;
    let snapshot = annotations::snapshot(id, &annotations)?;
    let nn_preload = annotations::nn_preload(id, &annotations)?;
    let (program, export) = split_export(id, arg0)?;
    let listen = match annotations::listen(id, &annotations)? {
        Some(addrs) => Listen {
            addrs,
            source: ListenSource::Annotation,
        },
        None => listen_of_env(bundle),
    };
    let metrics_listen = annotations::metrics_listen(id, &annotations)?;
    if let Some(addr) = metrics_listen.filter(|a| listen.addrs.contains(a)) {
        return Err(PlanError::MetricsOnListenAddress {
            id: id.to_owned(),
            addr,
            listen: listen.to_string(),
        });
    }
    let settled = Settled {
        engine: EngineChoice::settle(
            annotations::engine(id, &annotations)?,
            node.wasm.engine,
            node.build_default,
        ),
        listen,
        metrics_listen,
        request_timeout_ms: annotations::request_timeout_ms(id, &annotations)?
            .unwrap_or(crate::plan::DEFAULT_REQUEST_TIMEOUT_MS),
        egress: {
            let mut grants = annotations::egress(id, &annotations)?;
            for grant in &node.egress {
                if !grants.contains(grant) {
                    grants.push(grant.clone());
                }
            }
            grants
        },
        artifact_cache,
        // Snapshots live in the cache: without it, or off on this node, there are none.
        snapshot: if node.cache && artifact_cache && node.wasm.snapshots {
            snapshot
        } else {
            SnapshotPlan::Off
        },
        snapshot_init_seconds: node.wasm.snapshot_init_seconds,
        export: export.map(str::to_owned),
    };
    let fs = ContainerFs::new(bundle).map_err(|source| PlanError::EntrypointUnreadable {
        id: id.to_owned(),
        path: bundle.rootfs(),
        source,
    })?;
    let entry = Entrypoint::locate(bundle, &fs, program)?;

    let plan = |kind, reason| WorkloadPlan {
        id: id.to_owned(),
        kind,
        reason,
    };
    let not_found = || PlanError::EntrypointNotFound {
        id: id.to_owned(),
        path: program.to_owned(),
    };
    let wasm_from = |entry: &Entrypoint| -> Result<WorkloadKind, PlanError> {
        if entry.file.size > limits.module_bytes {
            return Err(PlanError::ModuleTooLarge {
                id: id.to_owned(),
                path: entry.container_path.clone(),
                size: entry.file.size,
                limit: limits.module_bytes,
            });
        }
        *files.borrow_mut() = PlanFiles {
            module: Some(Arc::clone(&entry.file)),
            models: container_models(bundle, &fs, limits, &nn_preload)?,
        };
        let module = ModuleSource::File {
            container_path: entry.container_path.clone(),
        };
        let form = entry.wasm_form.unwrap_or(WasmForm::Module);
        let mut plan = wasm_plan(id, bundle, &settled, module, form)?;
        plan.nn_preload = nn_preload.clone();
        Ok(WorkloadKind::Wasm(plan))
    };

    if let Some(choice) = explicit {
        let value = annotations[annotations::RUNTIME].trim().to_owned();
        let reason = DecisionReason::Annotation {
            key: annotations::RUNTIME.to_owned(),
            value: value.clone(),
            entrypoint: None,
        };
        let signal = format!("annotation {}={value}", annotations::RUNTIME);
        let entry = entry.ok_or_else(not_found)?;
        return match (choice, entry.kind) {
            (RuntimeChoice::Wasm, EntrypointKind::Wasm) => Ok(plan(wasm_from(&entry)?, reason)),
            (RuntimeChoice::Wasm, found) => Err(contradiction(id, signal, "wasm", &entry, found)),
            (RuntimeChoice::Native, EntrypointKind::Wasm) => Err(contradiction(
                id,
                signal,
                "native",
                &entry,
                EntrypointKind::Wasm,
            )),
            (RuntimeChoice::Native, _) => Ok(plan(WorkloadKind::Native, reason)),
        };
    }

    if let Some(hint) = annotations::crun_wasm_hint(&annotations) {
        let entry = entry.ok_or_else(not_found)?;
        return match (hint, entry.kind) {
            (CrunWasmHint::Always { key, value }, EntrypointKind::Wasm)
            | (CrunWasmHint::Smart { key, value }, EntrypointKind::Wasm) => Ok(plan(
                wasm_from(&entry)?,
                DecisionReason::Annotation {
                    key: key.to_owned(),
                    value,
                    entrypoint: Some(entry.describe().to_owned()),
                },
            )),
            (CrunWasmHint::Always { key, value }, found) => Err(contradiction(
                id,
                format!("annotation {key}={value}"),
                "wasm",
                &entry,
                found,
            )),
            (CrunWasmHint::Smart { key, value }, found) => Ok(plan(
                WorkloadKind::Native,
                DecisionReason::Annotation {
                    key: key.to_owned(),
                    value,
                    entrypoint: Some(found.describe().to_owned()),
                },
            )),
        };
    }

    if let Some(signal) = image.and_then(ImageFacts::wasm_signal) {
        let layer = image.and_then(ImageFacts::wasm_layer);
        return match (&entry, layer) {
            (Some(e), _) if e.kind == EntrypointKind::Wasm => {
                Ok(plan(wasm_from(e)?, DecisionReason::Image { signal }))
            }
            // A wasm artifact image: the module is a layer, not a file in the rootfs.
            (_, Some((media_type, digest))) => Ok(plan(
                WorkloadKind::Wasm(wasm_plan(
                    id,
                    bundle,
                    &settled,
                    ModuleSource::OciLayer {
                        media_type: media_type.to_owned(),
                        digest: digest.to_owned(),
                    },
                    if media_type.contains("component") {
                        WasmForm::Component
                    } else {
                        WasmForm::Module
                    },
                )?),
                DecisionReason::Image { signal },
            )),
            (Some(e), None) => Err(contradiction(id, signal, "wasm", e, e.kind)),
            (None, None) => Err(not_found()),
        };
    }

    let entry = entry.ok_or_else(not_found)?;
    let reason = DecisionReason::EntrypointMagic {
        path: entry.container_path.clone(),
        kind: entry.describe().to_owned(),
    };
    match entry.kind {
        EntrypointKind::Wasm => Ok(plan(wasm_from(&entry)?, reason)),
        EntrypointKind::Elf | EntrypointKind::Script | EntrypointKind::Other => {
            Ok(plan(WorkloadKind::Native, reason))
        }
    }
}

/// Splits `/app.wasm#fn` into (`/app.wasm`, `Some("fn")`).
fn split_export<'a>(id: &str, arg0: &'a str) -> Result<(&'a str, Option<&'a str>), PlanError> {
    match arg0.rsplit_once('#') {
        Some((_, "")) => Err(PlanError::EmptyExport {
            id: id.to_owned(),
            arg0: arg0.to_owned(),
        }),
        Some((program, export)) if !program.is_empty() => Ok((program, Some(export))),
        _ => Ok((arg0, None)),
    }
}

fn contradiction(
    id: &str,
    signal: String,
    wanted: &'static str,
    entry: &Entrypoint,
    found: EntrypointKind,
) -> PlanError {
    PlanError::Contradiction {
        id: id.to_owned(),
        signal,
        wanted,
        path: entry.container_path.display().to_string(),
        found: found.describe(),
    }
}

/// What the annotations and the node settle for a Wasm plan of this container, whatever
/// its module.
struct Settled {
    engine: EngineChoice,
    listen: Listen,
    metrics_listen: Option<std::net::SocketAddr>,
    request_timeout_ms: u64,
    egress: crate::EgressGrants,
    artifact_cache: bool,
    /// Modules and components alike.
    snapshot: SnapshotPlan,
    snapshot_init_seconds: u64,
    /// The export `module.wasm#name` names, if any.
    export: Option<String>,
}

/// The Wasm plan of `module`, a binary of `form`; a component refuses an export.
fn wasm_plan(
    id: &str,
    bundle: &Bundle,
    settled: &Settled,
    module: ModuleSource,
    form: WasmForm,
) -> Result<WasmPlan, PlanError> {
    let args = bundle.args();
    let mut guest_args = Vec::with_capacity(args.len());
    guest_args.push(args[0].split('#').next().unwrap_or_default().to_owned());
    guest_args.extend(args[1..].iter().cloned());
    // A file module's argv[0] is its path as the container sees it.
    if let ModuleSource::File { container_path } = &module {
        guest_args[0] = container_path.display().to_string();
    }

    let root_ro = bundle
        .spec
        .root()
        .as_ref()
        .and_then(|r| r.readonly())
        .unwrap_or(false);
    let mut preopens = vec![Preopen {
        guest_path: PathBuf::from("/"),
        read_only: root_ro,
    }];
    preopens.extend(
        bundle
            .bind_mounts()
            .into_iter()
            .map(|(dest, _, read_only)| Preopen {
                guest_path: dest,
                read_only,
            }),
    );

    if let (WasmForm::Component, Some(export)) = (form, &settled.export) {
        return Err(PlanError::ExportOfComponent {
            id: id.to_owned(),
            path: PathBuf::from(&guest_args[0]),
            export: export.clone(),
        });
    }
    Ok(WasmPlan {
        module,
        form,
        listen: settled.listen.clone(),
        metrics_listen: settled.metrics_listen,
        request_timeout_ms: settled.request_timeout_ms,
        egress: settled.egress.clone(),
        export: settled
            .export
            .as_deref()
            .unwrap_or(DEFAULT_EXPORT)
            .to_owned(),
        args: guest_args,
        env: bundle.env(),
        cwd: bundle.cwd(),
        preopens,
        artifact_cache: settled.artifact_cache,
        snapshot: settled.snapshot.clone(),
        snapshot_init_seconds: settled.snapshot_init_seconds,
        nn_preload: Vec::new(),
        engine: settled.engine,
    })
}

/// The listen addresses of the container's `WASMTIME_HTTP_PROXY_SOCKET_ADDR` (a runwasi
/// manifest's), else [`DEFAULT_LISTEN`]. A value that is no list of addresses is not
/// guessed at: it is recorded, and a service is refused with it.
fn listen_of_env(bundle: &Bundle) -> Listen {
    let Some((_, value)) = bundle
        .env()
        .into_iter()
        .rev()
        .find(|(key, _)| key == LISTEN_ENV)
    else {
        return Listen::default();
    };
    match annotations::parse_listen(&value) {
        Some(addrs) => Listen {
            addrs,
            source: ListenSource::Env,
        },
        None => Listen {
            source: ListenSource::EnvNotAddresses(crate::error::excerpt(&value)),
            ..Listen::default()
        },
    }
}

/// The container's preloaded models, each opened as the container will see it: a
/// regular file within the node's bound.
fn container_models(
    bundle: &Bundle,
    fs: &ContainerFs,
    limits: &FileLimits,
    preloads: &[crate::NnPreload],
) -> Result<Vec<ContainerFile>, PlanError> {
    let limit = (limits.model_bytes, crate::node_profile::MAX_MODEL_SIZE_KEY);
    preloads
        .iter()
        .map(|preload| {
            fs.open(&preload.path, Some(limit))
                .map_err(|e| PlanError::NnModel {
                    id: bundle.id.clone(),
                    name: preload.name.clone(),
                    path: preload.path.clone(),
                    reason: e.to_string(),
                })
        })
        .collect()
}

#[cfg(test)]
mod tests;
