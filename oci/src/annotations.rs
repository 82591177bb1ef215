//! The OCI annotation keys Triage reads, and how their values parse.

use std::collections::HashMap;

use crate::error::PlanError;
use crate::plan::SnapshotPlan;

/// Set by containerd's CRI plugin: `sandbox` for a pod's pause container.
pub const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";

/// Triage's own switch: `wasm` or `native`, always obeyed.
pub const RUNTIME: &str = "triage.io/runtime";
/// crun's handler key (`wasm`, `wasm-smart`).
pub const CRUN_HANDLER: &str = "run.oci.handler";
/// The wasm image variant key used by crun and WasmEdge images (`compat`, `compat-smart`).
pub const WASM_VARIANT: &str = "module.wasm.image/variant";

/// Triage's per-container switch for the node's artifact cache: `on` (default) or `off`.
pub const ARTIFACT_CACHE: &str = "triage.io/cache";

/// Reads `triage.io/cache`: whether this container's module goes through the node's
/// artifact cache (`off` compiles it inside the container, as without a cache).
pub fn artifact_cache(id: &str, annotations: &HashMap<String, String>) -> Result<bool, PlanError> {
    match annotations.get(ARTIFACT_CACHE).map(|v| v.trim()) {
        None | Some("on") => Ok(true),
        Some("off") => Ok(false),
        Some(other) => Err(PlanError::InvalidAnnotation {
            id: id.to_owned(),
            key: ARTIFACT_CACHE,
            value: other.to_owned(),
            expected: "\"on\" or \"off\"",
        }),
    }
}

/// Triage's per-container choice of Wasm engine: `wasmtime` or `wasmedge`.
pub const ENGINE: &str = "triage.io/engine";

/// Reads `triage.io/engine`: the engine the container asks for, if it names one.
pub fn engine(
    id: &str,
    annotations: &HashMap<String, String>,
) -> Result<Option<crate::engine::EngineName>, PlanError> {
    let Some(value) = annotations.get(ENGINE) else {
        return Ok(None);
    };
    crate::engine::EngineName::parse(value)
        .map(Some)
        .ok_or_else(|| PlanError::InvalidAnnotation {
            id: id.to_owned(),
            key: ENGINE,
            value: value.clone(),
            expected: "\"wasmtime\" or \"wasmedge\"",
        })
}

/// Triage's per-container switch for pre-initialised snapshots: `on` (default) or `off`.
pub const SNAPSHOT: &str = "triage.io/snapshot";
/// The export that initialises the guest for its snapshot (default `wizer-initialize`).
pub const SNAPSHOT_INIT: &str = "triage.io/snapshot-init";

/// Reads `triage.io/snapshot` and `triage.io/snapshot-init`.
pub fn snapshot(
    id: &str,
    annotations: &HashMap<String, String>,
) -> Result<SnapshotPlan, PlanError> {
    let enabled = match annotations.get(SNAPSHOT).map(|v| v.trim()) {
        None | Some("on") => true,
        Some("off") => false,
        Some(other) => {
            return Err(PlanError::InvalidAnnotation {
                id: id.to_owned(),
                key: SNAPSHOT,
                value: other.to_owned(),
                expected: "\"on\" or \"off\"",
            })
        }
    };
    match annotations.get(SNAPSHOT_INIT).map(|v| v.trim()) {
        None => Ok(if enabled {
            SnapshotPlan::Default
        } else {
            SnapshotPlan::Off
        }),
        Some("") => Err(PlanError::InvalidAnnotation {
            id: id.to_owned(),
            key: SNAPSHOT_INIT,
            value: String::new(),
            expected: "the name of a function the module exports",
        }),
        Some(init) if enabled => Ok(SnapshotPlan::Named(init.to_owned())),
        Some(init) => Err(PlanError::InvalidAnnotation {
            id: id.to_owned(),
            key: SNAPSHOT_INIT,
            value: init.to_owned(),
            expected: "no init export while triage.io/snapshot=off",
        }),
    }
}

/// Models preloaded for the guest's wasi-nn `load_by_name`: `name:ENCODING:TARGET:path`
/// (WasmEdge's `--nn-preload`), several separated by commas; paths inside the container.
pub const NN_PRELOAD: &str = "triage.io/nn-preload";

/// Reads `triage.io/nn-preload`.
pub fn nn_preload(
    id: &str,
    annotations: &HashMap<String, String>,
) -> Result<Vec<crate::NnPreload>, PlanError> {
    let Some(value) = annotations.get(NN_PRELOAD) else {
        return Ok(Vec::new());
    };
    let invalid = |expected: &'static str| PlanError::InvalidAnnotation {
        id: id.to_owned(),
        key: NN_PRELOAD,
        value: value.clone(),
        expected,
    };
    let list = crate::NnPreload::parse_list(value).map_err(|reason| PlanError::NnPreload {
        id: id.to_owned(),
        reason,
    })?;
    if list.is_empty() {
        return Err(invalid(
            "name:ENCODING:TARGET:path, several separated by commas",
        ));
    }
    if list.iter().any(|p| !p.path.is_absolute()) {
        return Err(invalid("absolute paths inside the container"));
    }
    Ok(list)
}

/// The addresses a serving Wasm guest listens on: `IP:PORT`, several separated by commas
/// (`0.0.0.0:8080,0.0.0.0:8081`). A `wasi:http/proxy` component is served on them; a
/// preview-1 module on wasmtime is handed them as sockets (`LISTEN_FDS`).
pub const LISTEN: &str = "triage.io/listen";

/// Reads `triage.io/listen`: `None` when absent; the addresses in order, each once.
pub fn listen(
    id: &str,
    annotations: &HashMap<String, String>,
) -> Result<Option<Vec<std::net::SocketAddr>>, PlanError> {
    parsed(id, annotations, LISTEN, LISTEN_FORMS, parse_listen)
}

/// What a list of listen addresses may be (the annotation's, the environment's).
pub const LISTEN_FORMS: &str =
    "at most 16 IP:PORT addresses separated by commas (e.g. 0.0.0.0:8080,0.0.0.0:8081)";

/// Annotation `key` read with `parse`: `None` when absent; refused, with the forms it
/// takes (`expected`), when present but not parsed.
fn parsed<T>(
    id: &str,
    annotations: &HashMap<String, String>,
    key: &'static str,
    expected: &'static str,
    parse: impl FnOnce(&str) -> Option<T>,
) -> Result<Option<T>, PlanError> {
    let Some(value) = annotations.get(key) else {
        return Ok(None);
    };
    parse(value)
        .map(Some)
        .ok_or_else(|| PlanError::InvalidAnnotation {
            id: id.to_owned(),
            key,
            value: value.clone(),
            expected,
        })
}

/// The most addresses a serving guest listens on (each is a socket its init holds).
pub const MAX_LISTEN_ADDRESSES: usize = 16;

/// `IP:PORT[,IP:PORT…]`, each address once, at most [`MAX_LISTEN_ADDRESSES`]; `None`
/// when any part is not one, or the list is empty or longer.
pub fn parse_listen(value: &str) -> Option<Vec<std::net::SocketAddr>> {
    let mut addrs: Vec<std::net::SocketAddr> = Vec::new();
    for part in value.split(',') {
        let addr: std::net::SocketAddr = part.trim().parse().ok()?;
        if !addrs.contains(&addr) {
            addrs.push(addr);
        }
    }
    (!addrs.is_empty() && addrs.len() <= MAX_LISTEN_ADDRESSES).then_some(addrs)
}

/// The destinations a Wasm guest may reach (see [`crate::egress`]): `host:port`, `CIDR` or
/// `CIDR:port`, several separated by commas. Without it (and without the node profile's
/// `[network] egress`) a guest reaches nothing.
pub const EGRESS: &str = "triage.io/egress";

/// Reads `triage.io/egress`: no grants when absent.
pub fn egress(
    id: &str,
    annotations: &HashMap<String, String>,
) -> Result<crate::egress::EgressGrants, PlanError> {
    let Some(value) = annotations.get(EGRESS) else {
        return Ok(Vec::new());
    };
    crate::egress::parse_grants(value).map_err(|reason| PlanError::InvalidEgress {
        id: id.to_owned(),
        reason,
    })
}

/// Where a serving Wasm guest's request count and latency histogram are answered in
/// Prometheus's text format (`IP:PORT`, e.g. `0.0.0.0:9090`); off without it.
pub const METRICS_LISTEN: &str = "triage.io/metrics-listen";

/// Reads `triage.io/metrics-listen`: `None` when absent.
pub fn metrics_listen(
    id: &str,
    annotations: &HashMap<String, String>,
) -> Result<Option<std::net::SocketAddr>, PlanError> {
    parsed(
        id,
        annotations,
        METRICS_LISTEN,
        "one IP:PORT address (e.g. 0.0.0.0:9090)",
        |value| value.trim().parse().ok(),
    )
}

/// How long a serving Wasm guest may take to answer one request (its response's head)
/// before the host ends that request with `504`: `500ms`, `10s`, `2m`; default
/// [`crate::plan::DEFAULT_REQUEST_TIMEOUT_MS`].
pub const REQUEST_TIMEOUT: &str = "triage.io/request-timeout";

/// Reads `triage.io/request-timeout` in milliseconds: `None` when absent.
pub fn request_timeout_ms(
    id: &str,
    annotations: &HashMap<String, String>,
) -> Result<Option<u64>, PlanError> {
    parsed(
        id,
        annotations,
        REQUEST_TIMEOUT,
        "a duration of at least 1ms with its unit (e.g. 500ms, 10s, 2m)",
        |value| {
            let text = value.trim();
            let (number, unit_ms) = if let Some(ms) = text.strip_suffix("ms") {
                (ms, 1)
            } else if let Some(s) = text.strip_suffix('s') {
                (s, 1000)
            } else {
                (text.strip_suffix('m')?, 60_000)
            };
            let ms = number.trim().parse::<u64>().ok()?.saturating_mul(unit_ms);
            (ms > 0).then_some(ms)
        },
    )
}

/// Every `triage.io/` annotation Triage reads.
pub const KNOWN: &[&str] = &[
    RUNTIME,
    LISTEN,
    METRICS_LISTEN,
    REQUEST_TIMEOUT,
    EGRESS,
    ARTIFACT_CACHE,
    ENGINE,
    SNAPSHOT,
    SNAPSHOT_INIT,
    NN_PRELOAD,
    crate::cdi::GPU_ANNOTATION,
];

/// Refuses a `triage.io/` annotation that is not in [`KNOWN`], naming the first one (in
/// key order) and the keys that exist.
pub fn refuse_unknown(id: &str, annotations: &HashMap<String, String>) -> Result<(), PlanError> {
    let mut unknown: Vec<&String> = annotations
        .keys()
        .filter(|k| k.starts_with("triage.io/") && !KNOWN.contains(&k.as_str()))
        .collect();
    unknown.sort();
    match unknown.first() {
        None => Ok(()),
        Some(key) => Err(PlanError::UnknownAnnotation {
            id: id.to_owned(),
            key: (*key).clone(),
            known: KNOWN.join(", "),
        }),
    }
}

/// What Triage's own `triage.io/runtime` annotation asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RuntimeChoice {
    /// Run in the Wasm engine.
    Wasm,
    /// Run as a native Linux container.
    Native,
}

/// How strongly crun's compatibility keys ask for Wasm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CrunWasmHint {
    /// `wasm` / `compat`: the entrypoint is a Wasm module.
    Always {
        /// The annotation key that asked.
        key: &'static str,
        /// Its value.
        value: String,
    },
    /// `wasm-smart` / `compat-smart`: Wasm if the entrypoint is a module, native otherwise.
    Smart {
        /// The annotation key that asked.
        key: &'static str,
        /// Its value.
        value: String,
    },
}

/// Whether this is a CRI pod sandbox (pause) container.
pub fn is_cri_sandbox(annotations: &HashMap<String, String>) -> bool {
    annotations.get(CRI_CONTAINER_TYPE).map(String::as_str) == Some("sandbox")
}

/// Reads `triage.io/runtime`; an unknown value is an error naming the container.
pub fn runtime_choice(
    id: &str,
    annotations: &HashMap<String, String>,
) -> Result<Option<RuntimeChoice>, PlanError> {
    match annotations.get(RUNTIME).map(|v| v.trim()) {
        None => Ok(None),
        Some("wasm") => Ok(Some(RuntimeChoice::Wasm)),
        Some("native") => Ok(Some(RuntimeChoice::Native)),
        Some(other) => Err(PlanError::UnknownRuntime {
            id: id.to_owned(),
            value: other.to_owned(),
        }),
    }
}

/// Reads crun's keys. Values other than the known ones are ignored, as crun does.
pub fn crun_wasm_hint(annotations: &HashMap<String, String>) -> Option<CrunWasmHint> {
    for key in [CRUN_HANDLER, WASM_VARIANT] {
        let Some(value) = annotations.get(key) else {
            continue;
        };
        let value = value.trim().to_owned();
        match (key, value.as_str()) {
            (CRUN_HANDLER, "wasm") | (WASM_VARIANT, "compat") => {
                return Some(CrunWasmHint::Always { key, value })
            }
            (CRUN_HANDLER, "wasm-smart") | (WASM_VARIANT, "compat-smart") => {
                return Some(CrunWasmHint::Smart { key, value })
            }
            _ => {}
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_triage_keys_are_refused_by_name() {
        let mut annotations: HashMap<String, String> = [
            (RUNTIME, "wasm"),
            ("io.kubernetes.cri.sandbox-id", "x"),
            ("module.wasm.image/variant", "compat"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect();
        assert!(refuse_unknown("c1", &annotations).is_ok());
        annotations.insert("triage.io/snapshots".into(), "off".into());
        annotations.insert("triage.io/zzz".into(), "1".into());
        let err = refuse_unknown("c1", &annotations).unwrap_err().to_string();
        assert!(
            err.starts_with(
                "container c1: annotation triage.io/snapshots is not one Triage knows (known: triage.io/runtime, "
            ),
            "{err}"
        );
        assert!(err.contains("triage.io/snapshot,"), "{err}");
    }

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn runtime_choice_parses_known_values() {
        assert_eq!(
            runtime_choice("c", &map(&[(RUNTIME, "wasm")])).unwrap(),
            Some(RuntimeChoice::Wasm)
        );
        assert_eq!(
            runtime_choice("c", &map(&[(RUNTIME, " native ")])).unwrap(),
            Some(RuntimeChoice::Native)
        );
        assert_eq!(runtime_choice("c", &map(&[])).unwrap(), None);
    }

    #[test]
    fn runtime_choice_rejects_unknown_value_naming_container() {
        let err = runtime_choice("web-1", &map(&[(RUNTIME, "banana")])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("web-1"), "{msg}");
        assert!(msg.contains("banana"), "{msg}");
        assert!(msg.contains(RUNTIME), "{msg}");
    }

    #[test]
    fn snapshot_switch_and_init_export() {
        assert_eq!(snapshot("c", &map(&[])).unwrap(), SnapshotPlan::Default);
        assert_eq!(
            snapshot("c", &map(&[(SNAPSHOT, "off")])).unwrap(),
            SnapshotPlan::Off
        );
        assert_eq!(
            snapshot("c", &map(&[(SNAPSHOT_INIT, "init_tables")])).unwrap(),
            SnapshotPlan::Named("init_tables".into())
        );
        assert_eq!(
            SnapshotPlan::Default.init_export(),
            Some(crate::plan::DEFAULT_SNAPSHOT_INIT)
        );
        let err = snapshot("c3", &map(&[(SNAPSHOT, "off"), (SNAPSHOT_INIT, "init")])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "container c3: annotation triage.io/snapshot-init=\"init\" is not valid (expected no init export while triage.io/snapshot=off)"
        );
        let err = snapshot("c4", &map(&[(SNAPSHOT_INIT, " ")])).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("container c4: annotation triage.io/snapshot-init=\"\""),
            "{err}"
        );
        let err = snapshot("c5", &map(&[(SNAPSHOT, "yes")])).unwrap_err();
        assert!(
            err.to_string().contains("triage.io/snapshot=\"yes\""),
            "{err}"
        );
    }

    #[test]
    fn artifact_cache_switch() {
        assert!(artifact_cache("c", &map(&[])).unwrap());
        assert!(!artifact_cache("c", &map(&[(ARTIFACT_CACHE, "off")])).unwrap());
        assert_eq!(
            artifact_cache("c9", &map(&[(ARTIFACT_CACHE, "sometimes")]))
                .unwrap_err()
                .to_string(),
            "container c9: annotation triage.io/cache=\"sometimes\" is not valid (expected \"on\" or \"off\")"
        );
    }

    #[test]
    fn engine_choice() {
        use crate::engine::EngineName;
        assert_eq!(engine("c", &map(&[])).unwrap(), None);
        assert_eq!(
            engine("c", &map(&[(ENGINE, "wasmedge")])).unwrap(),
            Some(EngineName::Wasmedge)
        );
        assert_eq!(
            engine("c", &map(&[(ENGINE, "wasmtime")])).unwrap(),
            Some(EngineName::Wasmtime)
        );
        assert_eq!(
            engine("c2", &map(&[(ENGINE, "v8")])).unwrap_err().to_string(),
            "container c2: annotation triage.io/engine=\"v8\" is not valid (expected \"wasmtime\" or \"wasmedge\")"
        );
    }

    #[test]
    fn crun_keys() {
        assert!(matches!(
            crun_wasm_hint(&map(&[(CRUN_HANDLER, "wasm")])),
            Some(CrunWasmHint::Always { .. })
        ));
        assert!(matches!(
            crun_wasm_hint(&map(&[(WASM_VARIANT, "compat-smart")])),
            Some(CrunWasmHint::Smart { .. })
        ));
        assert_eq!(crun_wasm_hint(&map(&[(CRUN_HANDLER, "krun")])), None);
        assert_eq!(crun_wasm_hint(&map(&[])), None);
    }
}
