//! The ONNX Runtime library of this process: opened once, from one path; its environment made on first use.

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use ort::environment::Environment;
use ort::LoadDynamicError;

/// The opened library, and the environment every session of the process is made in.
pub(crate) struct Library {
    /// The path it was opened from, as given.
    pub(crate) path: PathBuf,
    /// Whether the library was built with the CUDA execution provider.
    pub(crate) cuda_provider: bool,
    /// `ort` allows one environment per process; sessions keep it alive. Made at the first
    /// session, not at opening: making it starts a thread, and the process that opens the
    /// library (while the host's files are in view) may fork afterwards.
    environment: OnceLock<Result<Environment, String>>,
}

impl Library {
    /// The process's environment, made on first use.
    pub(crate) fn environment(&self) -> Result<&Environment, String> {
        self.environment
            .get_or_init(|| {
                let (key, off) = crate::TELEMETRY_OFF;
                if std::env::var_os(key).is_none_or(|v| v != off) {
                    tracing::warn!(
                        library = %self.path.display(),
                        "onnxruntime telemetry is not turned off in this process ({key}={off} is not in its environment)"
                    );
                }
                let started = std::time::Instant::now();
                let made = ort::init()
                    .with_name("triage")
                    .with_telemetry(false)
                    .build();
                tracing::info!(
                    library = %self.path.display(),
                    ms = started.elapsed().as_secs_f64() * 1000.0,
                    "onnxruntime environment made"
                );
                made.map_err(|e| {
                    format!(
                        "{}: cannot create the onnxruntime environment: {e}",
                        self.path.display()
                    )
                })
            })
            .as_ref()
            .map_err(Clone::clone)
    }
}

/// What opening a path gave. Once a path has been opened (`dlopen` succeeded) the process is
/// bound to that library.
struct Opened {
    path: PathBuf,
    result: Result<Arc<Library>, String>,
}

static OPENED: Mutex<Option<Opened>> = Mutex::new(None);

/// The library at `path`, opened on first use (`dlopen` only: no thread is started). `Err` says why it cannot be used, naming the path.
pub(crate) fn open(path: &Path) -> Result<Arc<Library>, String> {
    if let Err(e) = fs::metadata(path) {
        return Err(format!("no library at {}: {e}", path.display()));
    }
    let mut opened = OPENED.lock().unwrap_or_else(PoisonError::into_inner);
    if let Some(opened) = opened.as_ref() {
        if same_file(&opened.path, path) {
            return opened.result.clone();
        }
        return Err(format!(
            "{} cannot be loaded: this process already loaded onnxruntime from {} (one library per process)",
            path.display(),
            opened.path.display()
        ));
    }
    // Only `dlopen` and the API table: calling into the library (even asking for its
    // providers) starts a thread, which its exit handlers then join in every process
    // forked from this one.
    let result = ort::init_from(path)
        .map_err(|e| describe_load_error(path, e))
        .map(|_| {
            Arc::new(Library {
                path: path.to_owned(),
                cuda_provider: cuda_provider_beside(path),
                environment: OnceLock::new(),
            })
        });
    *opened = Some(Opened {
        path: path.to_owned(),
        result: result.clone(),
    });
    result
}

/// Whether the CUDA execution provider ships beside the library (`onnxruntime-gpu` puts
/// `libonnxruntime_providers_cuda.so` next to `libonnxruntime.so`; the CPU build has none).
fn cuda_provider_beside(library: &Path) -> bool {
    library
        .parent()
        .is_some_and(|dir| dir.join("libonnxruntime_providers_cuda.so").exists())
}

fn describe_load_error(path: &Path, error: LoadDynamicError) -> String {
    let path = path.display();
    match error {
        LoadDynamicError::Dlopen { error, .. } => format!("cannot load {path}: {error}"),
        LoadDynamicError::MissingApi { .. } => {
            format!("{path} is not an onnxruntime library (it has no OrtGetApiBase)")
        }
        LoadDynamicError::BadVersion { version_str, .. } => format!(
            "{path} is onnxruntime {version_str}; this backend needs onnxruntime 1.{} or newer",
            ort::MINOR_VERSION
        ),
        other => format!("cannot load {path}: {other}"),
    }
}

/// Whether two paths name the same file (the same path when either cannot be resolved).
fn same_file(a: &Path, b: &Path) -> bool {
    match (fs::canonicalize(a), fs::canonicalize(b)) {
        (Ok(a), Ok(b)) => a == b,
        _ => a == b,
    }
}

/// Whether an NVIDIA GPU's device nodes are in `dev` (`/dev`, or a test's directory).
pub(crate) fn nvidia_device(dev: &Path) -> Result<(), String> {
    let control = dev.join("nvidiactl");
    if !control.exists() {
        return Err(format!("no NVIDIA device ({} absent)", control.display()));
    }
    let gpus = fs::read_dir(dev)
        .map(|entries| {
            entries.flatten().any(|e| {
                e.file_name()
                    .to_str()
                    .and_then(|n| n.strip_prefix("nvidia"))
                    .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
            })
        })
        .unwrap_or(false);
    if gpus {
        Ok(())
    } else {
        Err(format!(
            "no NVIDIA GPU ({} present but no {}/nvidia0, nvidia1, ...)",
            control.display(),
            dev.display()
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gpu_needs_the_control_node_and_a_numbered_device() {
        let dev = std::env::temp_dir().join(format!("triage-ort-unit-{}", std::process::id()));
        fs::create_dir_all(&dev).unwrap();
        let why = nvidia_device(&dev).unwrap_err();
        assert_eq!(
            why,
            format!("no NVIDIA device ({}/nvidiactl absent)", dev.display())
        );
        fs::write(dev.join("nvidiactl"), "").unwrap();
        fs::write(dev.join("nvidia-uvm"), "").unwrap();
        let why = nvidia_device(&dev).unwrap_err();
        assert!(why.starts_with("no NVIDIA GPU ("), "{why}");
        fs::write(dev.join("nvidia1"), "").unwrap();
        assert_eq!(nvidia_device(&dev), Ok(()));
        fs::remove_dir_all(&dev).unwrap();
    }

    #[test]
    fn a_missing_library_is_named() {
        let why = open(Path::new("/nonexistent/libonnxruntime.so"))
            .err()
            .unwrap();
        assert!(
            why.starts_with("no library at /nonexistent/libonnxruntime.so: "),
            "{why}"
        );
    }
}
