//! Facts about the container's image that bear on the Wasm/native decision.

/// Layer media types that carry a Wasm module instead of a filesystem.
pub const WASM_LAYER_MEDIA_TYPES: &[&str] = &[
    "application/wasm",
    "application/vnd.wasm.content.layer.v1+wasm",
    "application/vnd.bytecodealliance.wasm.component.layer.v0+wasm",
    "application/vnd.w3c.wasm.module.v1+wasm",
];

/// What the image's config and manifest say, when the caller knows them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageFacts {
    /// Image config `os` (e.g. `linux`, `wasip1`).
    pub os: Option<String>,
    /// Image config `architecture` (e.g. `amd64`, `wasm`).
    pub architecture: Option<String>,
    /// Layers as (media type, digest), in manifest order.
    pub layers: Vec<(String, String)>,
}

impl ImageFacts {
    /// Why this image is a Wasm image, if it is one.
    pub fn wasm_signal(&self) -> Option<String> {
        if self.architecture.as_deref() == Some("wasm") {
            return Some("image config architecture=wasm".to_owned());
        }
        if let Some(os) = self
            .os
            .as_deref()
            .filter(|os| matches!(*os, "wasip1" | "wasip2" | "wasi"))
        {
            return Some(format!("image config os={os}"));
        }
        self.wasm_layer()
            .map(|(media_type, _)| format!("image layer media type {media_type}"))
    }

    /// The first layer whose media type is a Wasm module, as (media type, digest).
    pub fn wasm_layer(&self) -> Option<(&str, &str)> {
        self.layers
            .iter()
            .find(|(mt, _)| WASM_LAYER_MEDIA_TYPES.contains(&mt.as_str()))
            .map(|(mt, d)| (mt.as_str(), d.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn architecture_wasm_is_wasm() {
        let facts = ImageFacts {
            architecture: Some("wasm".into()),
            ..Default::default()
        };
        assert_eq!(
            facts.wasm_signal().as_deref(),
            Some("image config architecture=wasm")
        );
    }

    #[test]
    fn wasi_os_values_are_wasm() {
        for os in ["wasip1", "wasip2", "wasi"] {
            let facts = ImageFacts {
                os: Some(os.into()),
                ..Default::default()
            };
            assert!(facts.wasm_signal().unwrap().contains(os));
        }
        let linux = ImageFacts {
            os: Some("linux".into()),
            architecture: Some("amd64".into()),
            ..Default::default()
        };
        assert_eq!(linux.wasm_signal(), None);
    }

    #[test]
    fn wasm_layer_media_types_are_wasm() {
        for mt in WASM_LAYER_MEDIA_TYPES {
            let facts = ImageFacts {
                layers: vec![
                    (
                        "application/vnd.oci.image.layer.v1.tar".into(),
                        "sha256:a".into(),
                    ),
                    (mt.to_string(), "sha256:b".into()),
                ],
                ..Default::default()
            };
            assert_eq!(facts.wasm_layer(), Some((*mt, "sha256:b")));
            assert!(facts.wasm_signal().unwrap().contains(mt));
        }
    }
}
