//! Writes one image as an OCI image-layout tar archive (uncompressed layer).

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::images::{Entry, Image};

const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_TYPE: &str = "application/vnd.oci.image.layer.v1.tar";

fn digest(bytes: &[u8]) -> String {
    let hex: String = Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    format!("sha256:{hex}")
}

/// The layer tar for `entries`: root-owned, mtime 0, so the digest is reproducible.
pub fn layer(entries: &[Entry]) -> anyhow::Result<Vec<u8>> {
    let mut builder = tar::Builder::new(Vec::new());
    for entry in entries {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(0);
        header.set_uid(0);
        header.set_gid(0);
        match entry {
            Entry::Dir { path } => {
                header.set_entry_type(tar::EntryType::Directory);
                header.set_mode(0o755);
                header.set_size(0);
                builder.append_data(&mut header, path, std::io::empty())?;
            }
            Entry::File {
                path,
                mode,
                content,
            } => {
                header.set_entry_type(tar::EntryType::Regular);
                header.set_mode(*mode);
                header.set_size(content.len() as u64);
                builder.append_data(&mut header, path, content.as_slice())?;
            }
            Entry::Symlink { path, target } => {
                header.set_entry_type(tar::EntryType::Symlink);
                header.set_mode(0o777);
                header.set_size(0);
                builder.append_link(&mut header, path, target)?;
            }
        }
    }
    Ok(builder.into_inner()?)
}

/// Writes `image` to `path` as an OCI archive.
pub fn write(image: &Image, path: &Path) -> anyhow::Result<()> {
    let layer = layer(&image.entries)?;
    let layer_digest = digest(&layer);
    let mut config_section = json!({"Env": image.env, "WorkingDir": "/"});
    if let Some(cmd) = &image.cmd {
        config_section["Cmd"] = json!(cmd);
    }
    let config = serde_json::to_vec(&json!({
        "architecture": image.architecture,
        "os": image.os,
        "config": config_section,
        "rootfs": {"type": "layers", "diff_ids": [layer_digest]},
        "history": [{"created_by": "triage-image-builder"}],
    }))?;
    let config_digest = digest(&config);
    let manifest = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "mediaType": MANIFEST_TYPE,
        "config": {"mediaType": CONFIG_TYPE, "digest": config_digest, "size": config.len()},
        "layers": [{"mediaType": LAYER_TYPE, "digest": layer_digest, "size": layer.len()}],
    }))?;
    let manifest_digest = digest(&manifest);
    let tag = image
        .reference
        .rsplit_once(':')
        .map(|(_, t)| t)
        .unwrap_or("latest");
    let index = serde_json::to_vec(&json!({
        "schemaVersion": 2,
        "manifests": [{
            "mediaType": MANIFEST_TYPE,
            "digest": manifest_digest,
            "size": manifest.len(),
            "annotations": {
                "io.containerd.image.name": image.reference,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    }))?;

    let mut out = tar::Builder::new(Vec::new());
    let mut add = |name: &str, bytes: &[u8]| -> anyhow::Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_mtime(0);
        header.set_mode(0o644);
        header.set_size(bytes.len() as u64);
        out.append_data(&mut header, name, bytes)?;
        Ok(())
    };
    add("oci-layout", br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    add("index.json", &index)?;
    for (d, bytes) in [
        (&layer_digest, &layer),
        (&config_digest, &config),
        (&manifest_digest, &manifest),
    ] {
        let name = format!("blobs/sha256/{}", d.trim_start_matches("sha256:"));
        add(&name, bytes)?;
    }
    let bytes = out.into_inner()?;
    let tmp = path.with_extension("tar.tmp");
    std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(&bytes))
        .with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("renaming to {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layer_is_reproducible_and_readable() {
        let entries = vec![
            Entry::Dir { path: "bin".into() },
            Entry::File {
                path: "bin/busybox".into(),
                mode: 0o755,
                content: b"\x7fELF".to_vec(),
            },
            Entry::Symlink {
                path: "bin/echo".into(),
                target: "busybox".into(),
            },
        ];
        let a = layer(&entries).unwrap();
        assert_eq!(a, layer(&entries).unwrap());
        let mut archive = tar::Archive::new(&a[..]);
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(names, vec!["bin", "bin/busybox", "bin/echo"]);
    }

    #[test]
    fn archive_has_layout_index_and_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let image = Image {
            reference: "triage.test/x:1".into(),
            file_stem: "x".into(),
            os: "linux".into(),
            architecture: "amd64".into(),
            cmd: Some(vec!["/x".into()]),
            env: vec![],
            entries: vec![Entry::File {
                path: "x".into(),
                mode: 0o755,
                content: b"#!/bin/sh".to_vec(),
            }],
        };
        let path = dir.path().join("x.tar");
        write(&image, &path).unwrap();
        let file = std::fs::File::open(&path).unwrap();
        let mut archive = tar::Archive::new(file);
        let mut index = None;
        let mut blobs = 0;
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let name = entry.path().unwrap().display().to_string();
            if name == "index.json" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut entry, &mut s).unwrap();
                index = Some(s);
            } else if name.starts_with("blobs/sha256/") {
                blobs += 1;
            }
        }
        let index: serde_json::Value = serde_json::from_str(&index.unwrap()).unwrap();
        assert_eq!(
            index["manifests"][0]["annotations"]["io.containerd.image.name"],
            "triage.test/x:1"
        );
        assert_eq!(
            index["manifests"][0]["annotations"]["org.opencontainers.image.ref.name"],
            "1"
        );
        assert_eq!(blobs, 3);
    }
}
