//! Reads what containerd knows of a container's image (config `os`/`architecture`, layer
//! media types) from its content store, for the image rule of the Wasm/native decision.

use std::path::Path;
use std::sync::OnceLock;
use std::time::Duration;

use containerd_client::services::v1::containers_client::ContainersClient;
use containerd_client::services::v1::content_client::ContentClient;
use containerd_client::services::v1::images_client::ImagesClient;
use containerd_client::services::v1::{GetContainerRequest, GetImageRequest, ReadContentRequest};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::Request;
use containerd_client::with_namespace;
use serde::Deserialize;
use triage_oci::ImageFacts;

/// How long one lookup may take before the decision goes on without image facts.
const LOOKUP_TIMEOUT: Duration = Duration::from_secs(2);

const INDEX_TYPES: &[&str] = &[
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
];

/// Why the image could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ImageLookupError {
    /// A gRPC call failed.
    #[error("container {id}: {what}: {reason}")]
    Api {
        /// Container id.
        id: String,
        /// The call.
        what: &'static str,
        /// The status.
        reason: String,
    },
    /// A blob was not the JSON it should be.
    #[error("container {id}: {what} is not valid JSON: {reason}")]
    Json {
        /// Container id.
        id: String,
        /// Which blob.
        what: &'static str,
        /// The parser's message.
        reason: String,
    },
    /// The lookup took longer than [`LOOKUP_TIMEOUT`].
    #[error("container {id}: reading the image from containerd timed out")]
    Timeout {
        /// Container id.
        id: String,
    },
}

#[derive(Deserialize)]
struct Descriptor {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    digest: String,
    #[serde(default)]
    platform: Option<Platform>,
}

#[derive(Deserialize)]
struct Platform {
    #[serde(default)]
    os: String,
    #[serde(default)]
    architecture: String,
}

#[derive(Deserialize)]
struct Manifest {
    #[serde(rename = "mediaType", default)]
    media_type: String,
    #[serde(default)]
    config: Option<Descriptor>,
    #[serde(default)]
    layers: Vec<Descriptor>,
    #[serde(default)]
    manifests: Vec<Descriptor>,
}

#[derive(Deserialize)]
struct Config {
    #[serde(default)]
    os: Option<String>,
    #[serde(default)]
    architecture: Option<String>,
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a current-thread tokio runtime")
    })
}

/// Looks up the image of container `id` in `namespace` through containerd at `address`.
pub fn lookup(address: &Path, namespace: &str, id: &str) -> Result<ImageFacts, ImageLookupError> {
    runtime().block_on(async {
        tokio::time::timeout(LOOKUP_TIMEOUT, read_facts(address, namespace, id))
            .await
            .unwrap_or_else(|_| Err(ImageLookupError::Timeout { id: id.to_owned() }))
    })
}

async fn read_facts(address: &Path, ns: &str, id: &str) -> Result<ImageFacts, ImageLookupError> {
    let api = |what: &'static str| {
        move |e: &dyn std::fmt::Display| ImageLookupError::Api {
            id: id.to_owned(),
            what,
            reason: e.to_string(),
        }
    };
    let channel = containerd_client::connect(address)
        .await
        .map_err(|e| api("connecting to containerd")(&e))?;
    let container = ContainersClient::new(channel.clone())
        .get(with_namespace!(
            GetContainerRequest { id: id.to_owned() },
            ns
        ))
        .await
        .map_err(|e| api("reading the container record")(&e))?
        .into_inner()
        .container
        .map(|c| c.image)
        .unwrap_or_default();
    if container.is_empty() {
        return Ok(ImageFacts::default());
    }
    let target = ImagesClient::new(channel.clone())
        .get(with_namespace!(GetImageRequest { name: container }, ns))
        .await
        .map_err(|e| api("reading the image record")(&e))?
        .into_inner()
        .image
        .and_then(|i| i.target)
        .map(|t| t.digest)
        .unwrap_or_default();
    let mut content = ContentClient::new(channel);
    let mut manifest: Manifest = read_json(&mut content, ns, id, &target, "image manifest").await?;
    if INDEX_TYPES.contains(&manifest.media_type.as_str()) || !manifest.manifests.is_empty() {
        let Some(chosen) = pick_manifest(&manifest.manifests) else {
            return Ok(ImageFacts::default());
        };
        let digest = chosen.digest.clone();
        manifest = read_json(&mut content, ns, id, &digest, "image manifest").await?;
    }
    let config: Config = match &manifest.config {
        Some(c) => read_json(&mut content, ns, id, &c.digest, "image config").await?,
        None => Config {
            os: None,
            architecture: None,
        },
    };
    Ok(ImageFacts {
        os: config.os,
        architecture: config.architecture,
        layers: manifest
            .layers
            .into_iter()
            .map(|l| (l.media_type, l.digest))
            .collect(),
    })
}

/// From an index: a Wasm platform if there is one, else this host's.
fn pick_manifest(manifests: &[Descriptor]) -> Option<&Descriptor> {
    let is = |d: &&Descriptor, f: &dyn Fn(&Platform) -> bool| d.platform.as_ref().is_some_and(f);
    manifests
        .iter()
        .find(|d| is(d, &|p| p.architecture == "wasm" || p.os.starts_with("wasi")))
        .or_else(|| {
            manifests.iter().find(|d| {
                is(d, &|p| {
                    p.os == "linux"
                        && p.architecture
                            == std::env::consts::ARCH
                                .replace("x86_64", "amd64")
                                .replace("aarch64", "arm64")
                })
            })
        })
}

async fn read_json<T: for<'de> Deserialize<'de>>(
    content: &mut ContentClient<Channel>,
    ns: &str,
    id: &str,
    digest: &str,
    what: &'static str,
) -> Result<T, ImageLookupError> {
    let request = ReadContentRequest {
        digest: digest.to_owned(),
        offset: 0,
        size: 0,
    };
    let api_err = |e: &dyn std::fmt::Display| ImageLookupError::Api {
        id: id.to_owned(),
        what,
        reason: e.to_string(),
    };
    let mut stream = content
        .read(with_namespace!(request, ns))
        .await
        .map_err(|e| api_err(&e))?
        .into_inner();
    let mut bytes = Vec::new();
    while let Some(chunk) = stream.message().await.map_err(|e| api_err(&e))? {
        bytes.extend_from_slice(&chunk.data);
    }
    serde_json::from_slice(&bytes).map_err(|e| ImageLookupError::Json {
        id: id.to_owned(),
        what,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn descriptor(os: &str, arch: &str) -> Descriptor {
        Descriptor {
            media_type: String::new(),
            digest: format!("sha256:{os}-{arch}"),
            platform: Some(Platform {
                os: os.into(),
                architecture: arch.into(),
            }),
        }
    }

    #[test]
    fn index_prefers_wasm_then_host() {
        let list = vec![
            descriptor("linux", "arm64"),
            descriptor("linux", "amd64"),
            descriptor("wasip1", "wasm"),
        ];
        assert_eq!(pick_manifest(&list).unwrap().digest, "sha256:wasip1-wasm");
        let host = std::env::consts::ARCH
            .replace("x86_64", "amd64")
            .replace("aarch64", "arm64");
        let list = vec![descriptor("linux", "s390x"), descriptor("linux", &host)];
        assert_eq!(
            pick_manifest(&list).unwrap().digest,
            format!("sha256:linux-{host}")
        );
        assert!(pick_manifest(&[descriptor("windows", "amd64")]).is_none());
    }
}
