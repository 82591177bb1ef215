//! The node profile (`/etc/triage/config.toml`): capacity, system reserve, and the limits
//! given to containers that set none.

use toml_edit::{DocumentMut, Item};

/// An amount of CPU and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resources {
    /// CPU in thousandths of a core (Kubernetes' `m`).
    pub cpu_millis: u64,
    /// Memory in bytes.
    pub memory_bytes: u64,
}

impl Resources {
    /// `self − other`, floored at zero.
    pub fn saturating_sub(self, other: Self) -> Self {
        Self {
            cpu_millis: self.cpu_millis.saturating_sub(other.cpu_millis),
            memory_bytes: self.memory_bytes.saturating_sub(other.memory_bytes),
        }
    }
}

impl std::fmt::Display for Resources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} CPU / {}",
            cpu_text(self.cpu_millis),
            bytes_text(self.memory_bytes)
        )
    }
}

/// Where the artifact cache of compiled modules and snapshots is (`[wasm] cache`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheLocation {
    /// `"off"`: every container compiles its module itself; no snapshots.
    Off,
    /// A directory (created with mode 0700).
    Dir(std::path::PathBuf),
}

/// The `[wasm]` section: how Wasm containers start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmSettings {
    /// The cache; `None` leaves it to `$TRIAGE_CACHE_DIR`, else `/var/lib/triage/cache`.
    pub cache: Option<CacheLocation>,
    /// The cache's size bound (least recently used entries go beyond it); `None` leaves
    /// it to `$TRIAGE_CACHE_MAX_BYTES`, else 1 GiB.
    pub cache_max_bytes: Option<u64>,
    /// Whether modules with an init export are pre-initialised into snapshots.
    pub snapshots: bool,
    /// How long a snapshot's init may run (seconds; `snapshot_init_timeout`).
    pub snapshot_init_seconds: u64,
    /// The engine of Wasm containers that do not name one (`triage.io/engine`); `None`
    /// leaves it to the build (wasmtime where it has it).
    pub engine: Option<crate::engine::EngineName>,
}

impl Default for WasmSettings {
    fn default() -> Self {
        Self {
            cache: None,
            cache_max_bytes: None,
            snapshots: true,
            snapshot_init_seconds: crate::plan::DEFAULT_SNAPSHOT_INIT_SECONDS,
            engine: None,
        }
    }
}

/// The `[cdi]` section: where CDI spec files are read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CdiSettings {
    /// Spec directories, lowest priority first: a device defined in a later directory
    /// replaces the same device from an earlier one.
    pub spec_dirs: Vec<std::path::PathBuf>,
    /// The devices a container may ask for with `triage.io/gpu`: `vendor.com/class=name`
    /// or `vendor.com/class=*`. Default: none (devices come from containerd's CDI).
    pub annotation_devices: Vec<String>,
}

impl Default for CdiSettings {
    fn default() -> Self {
        Self {
            spec_dirs: crate::cdi::DEFAULT_SPEC_DIRS
                .iter()
                .map(std::path::PathBuf::from)
                .collect(),
            annotation_devices: Vec::new(),
        }
    }
}

/// The `[files]` section: how much of a container's files the node reads for it before
/// the container exists (a Wasm module to compile, wasi-nn models to prepare).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct FileLimits {
    /// The largest Wasm module (`max_module_size`).
    pub module_bytes: u64,
    /// The largest wasi-nn model a container preloads (`max_model_size`).
    pub model_bytes: u64,
}

/// The profile key bounding modules, named in refusals.
pub const MAX_MODULE_SIZE_KEY: &str = "files.max_module_size";
/// The profile key bounding a container's models, named in refusals.
pub const MAX_MODEL_SIZE_KEY: &str = "files.max_model_size";

impl Default for FileLimits {
    /// Sized for the 8 GiB edge node: a module's compilation takes several times its
    /// size, and a model is held whole while its graph is built.
    fn default() -> Self {
        Self {
            module_bytes: 256 << 20,
            model_bytes: 1 << 30,
        }
    }
}

/// The node as Triage sizes containers against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeProfile {
    /// What the node has (the edge profile: 4 CPU, 8 GiB).
    pub capacity: Resources,
    /// What is kept for the OS, kubelet and containerd.
    pub reserve: Resources,
    /// Limits for a container whose spec sets none.
    pub defaults: Resources,
    /// The artifact cache and snapshots.
    pub wasm: WasmSettings,
    /// wasi-nn backends and the node's preloaded models.
    pub nn: crate::nn::NnSettings,
    /// Where CDI devices are described.
    pub cdi: CdiSettings,
    /// What every Wasm guest of the node may reach (`[network] egress`; default nothing),
    /// besides what its own `triage.io/egress` grants.
    pub egress: crate::EgressGrants,
    /// How long a Create's helper may take (`[helpers] create_timeout`, seconds).
    pub create_timeout_seconds: u64,
    /// Bounds on the container files the node reads.
    pub files: FileLimits,
    /// How long any other helper (start, exec, pause, resume, kill, delete) may take
    /// (`[helpers] timeout`, seconds).
    pub helper_timeout_seconds: u64,
}

/// How long a Create's helper may take unless the node profile says otherwise: compiling
/// a large module, preparing models, libcontainer's set-up and the spec's hooks.
pub const DEFAULT_CREATE_TIMEOUT_SECONDS: u64 = 300;

/// How long any other helper may take unless the node profile says otherwise: libcontainer
/// and the spec's poststart or poststop hooks.
pub const DEFAULT_HELPER_TIMEOUT_SECONDS: u64 = 60;

impl Default for NodeProfile {
    fn default() -> Self {
        Self {
            capacity: Resources {
                cpu_millis: 4000,
                memory_bytes: 8 << 30,
            },
            reserve: Resources {
                cpu_millis: 250,
                memory_bytes: 512 << 20,
            },
            defaults: Resources {
                cpu_millis: 1000,
                memory_bytes: 256 << 20,
            },
            wasm: WasmSettings::default(),
            nn: crate::nn::NnSettings::default(),
            cdi: CdiSettings::default(),
            egress: Vec::new(),
            create_timeout_seconds: DEFAULT_CREATE_TIMEOUT_SECONDS,
            files: FileLimits::default(),
            helper_timeout_seconds: DEFAULT_HELPER_TIMEOUT_SECONDS,
        }
    }
}

/// Why a node profile could not be read.
#[derive(Debug, thiserror::Error)]
#[error("node profile {source_name}: {reason}")]
pub struct ProfileError {
    /// The file (or other source) it came from.
    pub source_name: String,
    /// What is wrong.
    pub reason: String,
}

impl NodeProfile {
    /// What containers may use: capacity less the reserve.
    pub fn allocatable(&self) -> Resources {
        self.capacity.saturating_sub(self.reserve)
    }

    /// Parses a profile; keys left out keep [`NodeProfile::default`]'s values.
    ///
    /// ```toml
    /// [capacity]
    /// cpu = 4            # cores: 4, 0.5, "500m"
    /// memory = "8Gi"     # bytes, or Ki/Mi/Gi/Ti, k/M/G/T suffixes
    /// [reserve]
    /// cpu = "250m"
    /// memory = "512Mi"
    /// [defaults]
    /// cpu = 1
    /// memory = "256Mi"
    /// [wasm]
    /// cache = "/var/lib/triage/cache"   # or "off"
    /// cache_max_size = "1Gi"
    /// snapshots = true
    /// engine = "wasmtime"                # or "wasmedge"; triage.io/engine overrides it
    /// [nn]
    /// cpu_backend = "tract"              # built in; default: onnxruntime where set
    /// gpu_backend = "onnxruntime"
    /// onnxruntime = "/usr/lib/triage/libonnxruntime.so.1.32.0"
    /// preload = ["digits:ONNX:CPU:/var/lib/triage/models/digits.onnx"]
    /// [cdi]
    /// spec_dirs = ["/etc/cdi", "/var/run/cdi"]   # lowest priority first
    /// annotation_devices = ["nvidia.com/gpu=*"]  # what triage.io/gpu may ask for (default: none)
    /// [network]
    /// egress = ["pacs.hospital.local:443", "10.20.0.0/16:5432"]  # what every Wasm guest may reach (default: nothing)
    /// [helpers]
    /// create_timeout = "5m"              # a Create's helper (compile, models, hooks)
    /// timeout = "60s"                    # every other helper
    /// [files]
    /// max_module_size = "256Mi"          # the largest Wasm module the node compiles
    /// max_model_size = "1Gi"             # the largest model a container preloads
    /// ```
    pub fn from_toml(source_name: &str, text: &str) -> Result<Self, ProfileError> {
        let error = |reason: String| ProfileError {
            source_name: source_name.to_owned(),
            reason,
        };
        let doc: DocumentMut = text
            .parse()
            .map_err(|e| error(format!("not valid TOML: {e}")))?;
        let mut profile = Self::default();
        for (section, item) in doc.iter() {
            let Some(table) = item.as_table_like() else {
                return Err(error(format!("[{section}] must be a table")));
            };
            let target = match section {
                "capacity" => &mut profile.capacity,
                "reserve" => &mut profile.reserve,
                "defaults" => &mut profile.defaults,
                "wasm" => {
                    profile.wasm = wasm_settings(table).map_err(error)?;
                    continue;
                }
                "nn" => {
                    profile.nn = crate::nn::NnSettings::from_table(table).map_err(error)?;
                    continue;
                }
                "cdi" => {
                    profile.cdi = cdi_settings(table).map_err(error)?;
                    continue;
                }
                "network" => {
                    profile.egress = network_egress(table).map_err(error)?;
                    continue;
                }
                "helpers" => {
                    for (key, value) in table.iter() {
                        match key {
                            "create_timeout" => {
                                profile.create_timeout_seconds = seconds_value(value)
                                    .map_err(|r| error(format!("helpers.create_timeout: {r}")))?
                            }
                            "timeout" => {
                                profile.helper_timeout_seconds = seconds_value(value)
                                    .map_err(|r| error(format!("helpers.timeout: {r}")))?
                            }
                            other => {
                                return Err(error(format!(
                                    "unknown key helpers.{other} (expected create_timeout, timeout)"
                                )))
                            }
                        }
                    }
                    continue;
                }
                "files" => {
                    for (key, value) in table.iter() {
                        let place = match key {
                            "max_module_size" => &mut profile.files.module_bytes,
                            "max_model_size" => &mut profile.files.model_bytes,
                            other => {
                                return Err(error(format!(
                                    "unknown key files.{other} (expected max_module_size, max_model_size)"
                                )))
                            }
                        };
                        *place = memory_value(value)
                            .map_err(|r| error(format!("files.{key}: {r}")))?;
                    }
                    continue;
                }
                other => {
                    return Err(error(format!(
                        "unknown section [{other}] (expected [capacity], [reserve], [defaults], [wasm], [nn], [cdi], [network], [helpers], [files])"
                    )))
                }
            };
            for (key, value) in table.iter() {
                let place = format!("{section}.{key}");
                match key {
                    "cpu" => {
                        target.cpu_millis =
                            cpu_value(value).map_err(|r| error(format!("{place}: {r}")))?
                    }
                    "memory" => {
                        target.memory_bytes =
                            memory_value(value).map_err(|r| error(format!("{place}: {r}")))?
                    }
                    other => {
                        return Err(error(format!(
                            "unknown key {section}.{other} (expected cpu, memory)"
                        )))
                    }
                }
            }
        }
        if profile.reserve.cpu_millis >= profile.capacity.cpu_millis
            || profile.reserve.memory_bytes >= profile.capacity.memory_bytes
        {
            return Err(error(format!(
                "the reserve ({}) leaves nothing of the capacity ({})",
                profile.reserve, profile.capacity
            )));
        }
        Ok(profile)
    }
}

fn wasm_settings(table: &dyn toml_edit::TableLike) -> Result<WasmSettings, String> {
    let mut settings = WasmSettings::default();
    for (key, value) in table.iter() {
        match key {
            "cache" => {
                let text = value
                    .as_str()
                    .ok_or("wasm.cache: expected a directory or \"off\"")?
                    .trim();
                settings.cache = Some(match text {
                    "off" => CacheLocation::Off,
                    dir if dir.starts_with('/') => CacheLocation::Dir(dir.into()),
                    other => {
                        return Err(format!(
                            "wasm.cache: {other:?} is not an absolute directory or \"off\""
                        ))
                    }
                });
            }
            "cache_max_size" => {
                settings.cache_max_bytes =
                    Some(memory_value(value).map_err(|r| format!("wasm.cache_max_size: {r}"))?)
            }
            "snapshots" => {
                settings.snapshots = value
                    .as_bool()
                    .ok_or("wasm.snapshots: expected true or false")?
            }
            "snapshot_init_timeout" => {
                settings.snapshot_init_seconds = seconds_value(value)
                    .map_err(|r| format!("wasm.snapshot_init_timeout: {r}"))?
            }
            "engine" => {
                let text = value
                    .as_str()
                    .ok_or("wasm.engine: expected \"wasmtime\" or \"wasmedge\"")?;
                settings.engine = Some(crate::engine::EngineName::parse(text).ok_or_else(|| {
                    format!("wasm.engine: {text:?} is not an engine (expected \"wasmtime\" or \"wasmedge\")")
                })?);
            }
            other => {
                return Err(format!(
                    "unknown key wasm.{other} (expected cache, cache_max_size, snapshots, snapshot_init_timeout, engine)"
                ))
            }
        }
    }
    Ok(settings)
}

/// `[network] egress`: a list of grants (see [`crate::egress`]).
fn network_egress(table: &dyn toml_edit::TableLike) -> Result<crate::EgressGrants, String> {
    let mut grants = crate::EgressGrants::new();
    for (key, value) in table.iter() {
        if key != "egress" {
            return Err(format!("unknown key network.{key} (expected egress)"));
        }
        let list = value.as_array().ok_or_else(|| {
            format!(
                "network.egress: expected a list of {}",
                crate::egress::GRANT_FORMS
            )
        })?;
        for entry in list {
            let text = entry
                .as_str()
                .ok_or_else(|| format!("network.egress: {entry} is not a string"))?;
            let grant: crate::EgressGrant =
                text.parse().map_err(|e| format!("network.egress: {e}"))?;
            if !grants.contains(&grant) {
                grants.push(grant);
            }
        }
    }
    Ok(grants)
}

fn cdi_settings(table: &dyn toml_edit::TableLike) -> Result<CdiSettings, String> {
    let mut settings = CdiSettings::default();
    for (key, value) in table.iter() {
        match key {
            "spec_dirs" => {
                let list = value
                    .as_array()
                    .ok_or("cdi.spec_dirs: expected a list of directories")?;
                settings.spec_dirs = list
                    .iter()
                    .map(|dir| match dir.as_str() {
                        Some(dir) if dir.starts_with('/') => Ok(dir.into()),
                        Some(dir) => Err(format!(
                            "cdi.spec_dirs: {dir:?} is not an absolute directory"
                        )),
                        None => Err(format!("cdi.spec_dirs: {dir} is not a directory name")),
                    })
                    .collect::<Result<_, _>>()?;
            }
            "annotation_devices" => {
                let list = value
                    .as_array()
                    .ok_or("cdi.annotation_devices: expected a list of vendor.com/class=name")?;
                settings.annotation_devices = list
                    .iter()
                    .map(|entry| {
                        let text = entry.as_str().ok_or_else(|| {
                            format!("cdi.annotation_devices: {entry} is not a device name")
                        })?;
                        let name = text.replace("=*", "=any");
                        crate::cdi::QualifiedName::parse(&name)
                            .map(|_| text.to_owned())
                            .map_err(|e| format!("cdi.annotation_devices: {e}"))
                    })
                    .collect::<Result<_, _>>()?;
            }
            other => {
                return Err(format!(
                    "unknown key cdi.{other} (expected spec_dirs, annotation_devices)"
                ))
            }
        }
    }
    Ok(settings)
}

fn cpu_value(item: &Item) -> Result<u64, String> {
    if let Some(n) = item.as_integer() {
        return u64::try_from(n)
            .map(|n| n * 1000)
            .map_err(|_| format!("{n} is negative"));
    }
    if let Some(f) = item.as_float() {
        return if f >= 0.0 {
            Ok((f * 1000.0).round() as u64)
        } else {
            Err(format!("{f} is negative"))
        };
    }
    let text = item
        .as_str()
        .ok_or("expected a number of cores or a string like \"500m\"")?;
    parse_cpu(text).ok_or_else(|| format!("{text:?} is not a CPU quantity (e.g. 2, 0.5, \"500m\")"))
}

/// A duration in whole seconds: `30`, `"30s"` or `"2m"`, at least one second.
fn seconds_value(item: &Item) -> Result<u64, String> {
    let seconds = match (item.as_integer(), item.as_str().map(str::trim)) {
        (Some(n), _) => u64::try_from(n).map_err(|_| format!("{n} is negative"))?,
        (_, Some(text)) => {
            let (number, unit) = match text.strip_suffix('m') {
                Some(minutes) => (minutes, 60),
                None => (text.strip_suffix('s').unwrap_or(text), 1),
            };
            number
                .trim()
                .parse::<u64>()
                .map(|n| n.saturating_mul(unit))
                .map_err(|_| format!("{text:?} is not a duration (e.g. \"30s\", \"2m\")"))?
        }
        _ => return Err("expected a duration (e.g. \"30s\")".to_owned()),
    };
    if seconds == 0 {
        return Err("must be at least one second".to_owned());
    }
    Ok(seconds)
}

fn memory_value(item: &Item) -> Result<u64, String> {
    if let Some(n) = item.as_integer() {
        return u64::try_from(n).map_err(|_| format!("{n} is negative"));
    }
    let text = item
        .as_str()
        .ok_or("expected bytes or a string like \"256Mi\"")?;
    parse_memory(text)
        .ok_or_else(|| format!("{text:?} is not a memory quantity (e.g. \"256Mi\", \"8Gi\")"))
}

/// A Kubernetes CPU quantity (`"2"`, `"0.5"`, `"500m"`) in millicores.
pub fn parse_cpu(text: &str) -> Option<u64> {
    let text = text.trim();
    if let Some(millis) = text.strip_suffix('m') {
        return millis.parse().ok();
    }
    let cores: f64 = text.parse().ok()?;
    (cores >= 0.0 && cores.is_finite()).then(|| (cores * 1000.0).round() as u64)
}

/// A Kubernetes memory quantity (`"256Mi"`, `"8Gi"`, `"1G"`, `"1048576"`) in bytes.
pub fn parse_memory(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text
        .find(|c: char| !c.is_ascii_digit() && c != '.')
        .unwrap_or(text.len());
    let (number, suffix) = text.split_at(split);
    let factor: u64 = match suffix {
        "" => 1,
        "Ki" => 1 << 10,
        "Mi" => 1 << 20,
        "Gi" => 1 << 30,
        "Ti" => 1 << 40,
        "k" => 1_000,
        "M" => 1_000_000,
        "G" => 1_000_000_000,
        "T" => 1_000_000_000_000,
        _ => return None,
    };
    let value: f64 = number.parse().ok()?;
    (value >= 0.0).then(|| (value * factor as f64).round() as u64)
}

/// Millicores as people write them: `4`, `0.5`, `250m`.
pub fn cpu_text(millis: u64) -> String {
    if millis.is_multiple_of(1000) {
        format!("{}", millis / 1000)
    } else if millis.is_multiple_of(100) {
        format!("{}", millis as f64 / 1000.0)
    } else {
        format!("{millis}m")
    }
}

/// Bytes in the largest binary unit that keeps one decimal honest: `8 GiB`, `256 MiB`.
pub fn bytes_text(bytes: u64) -> String {
    const UNITS: [(&str, u64); 3] = [("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)];
    for (unit, size) in UNITS {
        if bytes >= size {
            let value = bytes as f64 / size as f64;
            return if bytes.is_multiple_of(size) {
                format!("{} {unit}", bytes / size)
            } else {
                format!("{value:.1} {unit}")
            };
        }
    }
    format!("{bytes} B")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn helpers_section_sets_the_deadlines() {
        assert_eq!(NodeProfile::default().create_timeout_seconds, 300);
        assert_eq!(NodeProfile::default().helper_timeout_seconds, 60);
        let profile = NodeProfile::from_toml(
            "p",
            "[helpers]\ncreate_timeout = \"2s\"\ntimeout = \"1m\"\n",
        )
        .unwrap();
        assert_eq!(profile.create_timeout_seconds, 2);
        assert_eq!(profile.helper_timeout_seconds, 60);
        let err = NodeProfile::from_toml("p", "[helpers]\nstart_timeout = 2\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("unknown key helpers.start_timeout (expected create_timeout, timeout)"),
            "{err}"
        );
    }

    #[test]
    fn files_section_bounds_modules_and_models() {
        assert_eq!(
            NodeProfile::default().files,
            FileLimits {
                module_bytes: 256 << 20,
                model_bytes: 1 << 30
            }
        );
        let profile = NodeProfile::from_toml(
            "p",
            "[files]\nmax_module_size = \"64Mi\"\nmax_model_size = \"2Gi\"\n",
        )
        .unwrap();
        assert_eq!(profile.files.module_bytes, 64 << 20);
        assert_eq!(profile.files.model_bytes, 2 << 30);
        let err = NodeProfile::from_toml("p", "[files]\nmax_size = 1\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("unknown key files.max_size"), "{err}");
    }

    fn off_default_seconds() -> u64 {
        NodeProfile::from_toml("p", "[wasm]\nsnapshot_init_timeout = \"30s\"\n")
            .unwrap()
            .wasm
            .snapshot_init_seconds
    }

    #[test]
    fn wasm_section_sets_cache_and_snapshots() {
        let profile = NodeProfile::from_toml(
            "p",
            "[wasm]\ncache = \"/srv/triage-cache\"\ncache_max_size = \"256Mi\"\nsnapshots = false\nsnapshot_init_timeout = \"2m\"\nengine = \"wasmedge\"\n",
        )
        .unwrap();
        assert_eq!(
            profile.wasm,
            WasmSettings {
                cache: Some(CacheLocation::Dir("/srv/triage-cache".into())),
                cache_max_bytes: Some(256 << 20),
                snapshots: false,
                snapshot_init_seconds: 120,
                engine: Some(crate::engine::EngineName::Wasmedge),
            }
        );
        assert_eq!(off_default_seconds(), 30);
        let err = NodeProfile::from_toml("p", "[wasm]\nsnapshot_init_timeout = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("\"soon\" is not a duration"), "{err}");
        let err = NodeProfile::from_toml("p", "[wasm]\nsnapshot_init_timeout = 0\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least one second"), "{err}");
        let err = NodeProfile::from_toml("p", "[wasm]\nengine = \"wamr\"\n").unwrap_err();
        assert_eq!(
            err.to_string(),
            "node profile p: wasm.engine: \"wamr\" is not an engine (expected \"wasmtime\" or \"wasmedge\")"
        );
        let off = NodeProfile::from_toml("p", "[wasm]\ncache = \"off\"\n").unwrap();
        assert_eq!(off.wasm.cache, Some(CacheLocation::Off));
        assert!(off.wasm.snapshots);
        assert_eq!(off.wasm.engine, None);
        let err = NodeProfile::from_toml("/etc/triage/config.toml", "[wasm]\ncache = \"cache\"\n")
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "node profile /etc/triage/config.toml: wasm.cache: \"cache\" is not an absolute directory or \"off\""
        );
        let err = NodeProfile::from_toml("p", "[wasm]\nsnapshot = true\n").unwrap_err();
        assert!(
            err.to_string().contains("unknown key wasm.snapshot"),
            "{err}"
        );
    }

    #[test]
    fn cdi_section_sets_the_spec_dirs() {
        assert_eq!(
            NodeProfile::default().cdi.spec_dirs,
            [
                std::path::PathBuf::from("/etc/cdi"),
                std::path::PathBuf::from("/var/run/cdi")
            ]
        );
        let profile =
            NodeProfile::from_toml("p", "[cdi]\nspec_dirs = [\"/tmp/cdi-a\", \"/tmp/cdi-b\"]\n")
                .unwrap();
        assert_eq!(
            profile.cdi.spec_dirs,
            [
                std::path::PathBuf::from("/tmp/cdi-a"),
                std::path::PathBuf::from("/tmp/cdi-b")
            ]
        );
        let none = NodeProfile::from_toml("p", "[cdi]\nspec_dirs = []\n").unwrap();
        assert!(none.cdi.spec_dirs.is_empty());
        let err = |text: &str| {
            NodeProfile::from_toml("/etc/triage/config.toml", text)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("[cdi]\nspec_dirs = [\"cdi\"]\n"),
            "node profile /etc/triage/config.toml: cdi.spec_dirs: \"cdi\" is not an absolute directory"
        );
        assert_eq!(
            err("[cdi]\nspec_dirs = \"/etc/cdi\"\n"),
            "node profile /etc/triage/config.toml: cdi.spec_dirs: expected a list of directories"
        );
        assert!(err("[cdi]\nspec_dir = []\n")
            .contains("unknown key cdi.spec_dir (expected spec_dirs, annotation_devices)"));
        // What triage.io/gpu may name: devices or whole kinds, none by default.
        assert!(none.cdi.annotation_devices.is_empty());
        let allowed = NodeProfile::from_toml(
            "p",
            "[cdi]\nannotation_devices = [\"nvidia.com/gpu=*\", \"example.com/fpga=1\"]\n",
        )
        .unwrap();
        assert_eq!(
            allowed.cdi.annotation_devices,
            ["nvidia.com/gpu=*", "example.com/fpga=1"]
        );
        assert!(err("[cdi]\nannotation_devices = [\"gpu\"]\n")
            .contains("cdi.annotation_devices: \"gpu\" is not of the form vendor.com/class=name"));
        assert!(
            err("[cdi]\nspec_dirs = [1]\n").contains("cdi.spec_dirs: 1 is not a directory name")
        );
    }

    #[test]
    fn default_profile_is_the_edge_node() {
        let profile = NodeProfile::from_toml("empty", "").unwrap();
        assert_eq!(profile, NodeProfile::default());
        assert_eq!(profile.capacity.to_string(), "4 CPU / 8 GiB");
        assert_eq!(profile.allocatable().to_string(), "3750m CPU / 7.5 GiB");
        assert_eq!(profile.defaults.to_string(), "1 CPU / 256 MiB");
    }

    #[test]
    fn quantities_in_kubernetes_notation() {
        let profile = NodeProfile::from_toml(
            "t",
            "[capacity]\ncpu = 8\nmemory = \"16Gi\"\n[reserve]\ncpu = \"500m\"\nmemory = 1073741824\n[defaults]\ncpu = 0.5\nmemory = \"128Mi\"\n",
        )
        .unwrap();
        assert_eq!(profile.capacity.cpu_millis, 8000);
        assert_eq!(profile.capacity.memory_bytes, 16 << 30);
        assert_eq!(profile.reserve.cpu_millis, 500);
        assert_eq!(profile.reserve.memory_bytes, 1 << 30);
        assert_eq!(profile.defaults.cpu_millis, 500);
        assert_eq!(profile.defaults.memory_bytes, 128 << 20);
        assert_eq!(parse_memory("1G"), Some(1_000_000_000));
        assert_eq!(parse_memory("1.5Gi"), Some(3 << 29));
        assert_eq!(parse_memory("12Qi"), None);
        assert_eq!(parse_cpu("200m"), Some(200));
        assert_eq!(parse_cpu("-1"), None);
        assert_eq!(cpu_text(500), "0.5");
    }

    #[test]
    fn network_egress_lists_what_every_wasm_guest_may_reach() {
        let profile = NodeProfile::from_toml(
            "p",
            "[network]\negress = [\"PACS.hospital.local:443\", \"10.20.0.0/16:5432\", \"10.20.0.0/16:5432\"]\n",
        )
        .unwrap();
        let texts: Vec<String> = profile.egress.iter().map(ToString::to_string).collect();
        assert_eq!(texts, ["pacs.hospital.local:443", "10.20.0.0/16:5432"]);
        assert!(NodeProfile::default().egress.is_empty());
    }

    #[test]
    fn mistakes_are_named() {
        let err = |text: &str| {
            NodeProfile::from_toml("/etc/triage/config.toml", text)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("[capacity]\nmemory = \"8 gigs\"\n"),
            "node profile /etc/triage/config.toml: capacity.memory: \"8 gigs\" is not a memory quantity (e.g. \"256Mi\", \"8Gi\")"
        );
        assert!(err("[limits]\ncpu = 1\n").contains("unknown section [limits]"));
        assert!(err("[network]\negress = [\"nowhere\"]\n").contains(
            "network.egress: \"nowhere\" names no port (expected host:port, CIDR or CIDR:port"
        ));
        assert!(
            err("[network]\nallow = []\n").contains("unknown key network.allow (expected egress)")
        );
        assert!(err("[defaults]\ncpus = 1\n").contains("unknown key defaults.cpus"));
        assert!(err("[reserve]\ncpu = 4\n").contains("leaves nothing of the capacity"));
        assert!(err("capacity = 3").contains("[capacity] must be a table"));
    }
}
