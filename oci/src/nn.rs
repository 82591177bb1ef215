//! wasi-nn preloads in WasmEdge's `name:ENCODING:TARGET:path` form, and the node's `[nn]` settings.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use triage_nn::{ExecutionTarget, GraphEncoding};

/// A model loaded before the guest runs, which the guest opens with `load_by_name`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NnPreload {
    /// The name the guest loads it by.
    pub name: String,
    /// The model's format.
    pub encoding: GraphEncoding,
    /// Where it should run.
    pub target: ExecutionTarget,
    /// The model file (inside the container for an annotation, on the host for the node
    /// profile).
    pub path: PathBuf,
}

impl NnPreload {
    /// Parses `name:ENCODING:TARGET:path` (WasmEdge's `--nn-preload`); the path is
    /// everything after the third colon, so it may contain colons.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let mut parts = text.splitn(4, ':');
        let (Some(name), Some(encoding), Some(target), Some(path)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(format!(
                "{} is not name:ENCODING:TARGET:path",
                crate::error::excerpt(text)
            ));
        };
        if name.is_empty() {
            return Err(format!(
                "{}: the name is empty",
                crate::error::excerpt(text)
            ));
        }
        if path.is_empty() {
            return Err(format!(
                "{}: the path is empty",
                crate::error::excerpt(text)
            ));
        }
        Ok(Self {
            name: name.to_owned(),
            encoding: encoding
                .parse()
                .map_err(|e| format!("{}: {e}", crate::error::excerpt(text)))?,
            target: target
                .parse()
                .map_err(|e| format!("{}: {e}", crate::error::excerpt(text)))?,
            path: PathBuf::from(path),
        })
    }

    /// Parses a list separated by commas or newlines (an annotation's value); a name
    /// given twice is an error.
    pub fn parse_list(text: &str) -> Result<Vec<Self>, String> {
        let mut list: Vec<Self> = Vec::new();
        for item in text.split([',', '\n']).filter(|s| !s.trim().is_empty()) {
            let preload = Self::parse(item)?;
            if list.iter().any(|p| p.name == preload.name) {
                return Err(format!("the name {:?} is preloaded twice", preload.name));
            }
            list.push(preload);
        }
        Ok(list)
    }

    /// The `name:ENCODING:TARGET:path` text.
    pub fn to_text(&self) -> String {
        format!(
            "{}:{}:{}:{}",
            self.name,
            self.encoding,
            self.target,
            self.path.display()
        )
    }
}

/// The `[nn]` section of the node profile: the node's wasi-nn backends and models.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct NnSettings {
    /// The backend for CPU graphs (default: `onnxruntime` where the node has its library,
    /// else `tract`, built in).
    pub cpu_backend: Option<String>,
    /// The backend for GPU graphs (default `onnxruntime`).
    pub gpu_backend: Option<String>,
    /// The ONNX Runtime library (`libonnxruntime.so…`); without it (and without
    /// `$TRIAGE_ONNXRUNTIME`) the `onnxruntime` backend is not offered.
    pub onnxruntime: Option<PathBuf>,
    /// Models every Wasm guest that uses wasi-nn can load by name (host paths).
    pub preload: Vec<NnPreload>,
}

impl NnSettings {
    /// Reads the `[nn]` table.
    pub(crate) fn from_table(table: &dyn toml_edit::TableLike) -> Result<Self, String> {
        let mut settings = Self::default();
        let text = |key: &str, value: &toml_edit::Item| {
            value
                .as_str()
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .ok_or(format!("nn.{key}: expected a non-empty string"))
        };
        for (key, value) in table.iter() {
            match key {
                "cpu_backend" => settings.cpu_backend = Some(text(key, value)?),
                "gpu_backend" => settings.gpu_backend = Some(text(key, value)?),
                "onnxruntime" => {
                    let path = text(key, value)?;
                    if !path.starts_with('/') {
                        return Err(format!("nn.onnxruntime: {path:?} is not an absolute path"));
                    }
                    settings.onnxruntime = Some(path.into());
                }
                "preload" => {
                    let items = value
                        .as_array()
                        .ok_or("nn.preload: expected an array of \"name:ENCODING:TARGET:path\"")?;
                    let mut texts = Vec::new();
                    for item in items.iter() {
                        let item = item
                            .as_str()
                            .ok_or("nn.preload: expected strings \"name:ENCODING:TARGET:path\"")?;
                        texts.push(item.to_owned());
                    }
                    settings.preload = NnPreload::parse_list(&texts.join("\n"))
                        .map_err(|e| format!("nn.preload: {e}"))?;
                    if let Some(p) = settings.preload.iter().find(|p| !p.path.is_absolute()) {
                        return Err(format!(
                            "nn.preload: {:?}: a node model's path must be absolute",
                            p.to_text()
                        ));
                    }
                }
                other => {
                    return Err(format!(
                        "unknown key nn.{other} (expected cpu_backend, gpu_backend, onnxruntime, preload)"
                    ))
                }
            }
        }
        Ok(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wasmedge_preload_strings_parse() {
        let p = NnPreload::parse("digits:ONNX:CPU:/models/digits.onnx").unwrap();
        assert_eq!(p.name, "digits");
        assert_eq!(p.encoding, GraphEncoding::Onnx);
        assert_eq!(p.target, ExecutionTarget::Cpu);
        assert_eq!(p.path, PathBuf::from("/models/digits.onnx"));
        assert_eq!(p.to_text(), "digits:ONNX:CPU:/models/digits.onnx");
        let colon = NnPreload::parse("default:GGML:AUTO:/m/a:b.gguf").unwrap();
        assert_eq!(colon.path, PathBuf::from("/m/a:b.gguf"));
        assert_eq!(colon.target, ExecutionTarget::Auto);
    }

    #[test]
    fn malformed_preloads_say_what_is_wrong() {
        let err = NnPreload::parse("digits:ONNX:/m.onnx").unwrap_err();
        assert!(err.contains("is not name:ENCODING:TARGET:path"), "{err}");
        let err = NnPreload::parse("digits:ONYX:CPU:/m.onnx").unwrap_err();
        assert!(err.contains("unknown encoding \"ONYX\""), "{err}");
        let err = NnPreload::parse("digits:ONNX:NPU:/m.onnx").unwrap_err();
        assert!(err.contains("unknown execution target \"NPU\""), "{err}");
        let err = NnPreload::parse(":ONNX:CPU:/m.onnx").unwrap_err();
        assert!(err.contains("the name is empty"), "{err}");
        let err = NnPreload::parse_list("a:ONNX:CPU:/x, a:ONNX:GPU:/y").unwrap_err();
        assert!(err.contains("\"a\" is preloaded twice"), "{err}");
        let list = NnPreload::parse_list("a:ONNX:CPU:/x,\n b:onnx:gpu:/y").unwrap();
        assert_eq!(list.len(), 2);
        assert_eq!(list[1].target, ExecutionTarget::Gpu);
    }
}
