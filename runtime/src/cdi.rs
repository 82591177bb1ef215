//! CDI on the host: reads the spec files of the node's CDI directories, stats host
//! device nodes, and edits a container's OCI spec with the devices `triage.io/gpu`
//! asks for.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use triage_oci::cdi::{
    requested_devices, AppliedEdits, CdiError, CdiRegistry, CdiSpec, HostDeviceNodes, HostFileType,
    HostNode, LoadedSpec, NodeType, ResolvedDevice, SkippedSpecFile,
};
use triage_oci::Spec;

/// The file names read as CDI specs.
const SPEC_EXTENSIONS: [&str; 3] = ["json", "yaml", "yml"];

/// Host device nodes as `stat(2)` (following symlinks) sees them.
#[derive(Debug, Clone, Copy, Default)]
pub struct StatHostDeviceNodes;

impl HostDeviceNodes for StatHostDeviceNodes {
    fn stat(&self, host_path: &Path) -> std::io::Result<HostNode> {
        let meta = std::fs::metadata(host_path)?;
        let kind = meta.file_type();
        let file_type = if kind.is_char_device() {
            HostFileType::Node(NodeType::Char)
        } else if kind.is_block_device() {
            HostFileType::Node(NodeType::Block)
        } else if kind.is_fifo() {
            HostFileType::Node(NodeType::Fifo)
        } else if kind.is_dir() {
            HostFileType::Other("a directory")
        } else if kind.is_file() {
            HostFileType::Other("a regular file")
        } else {
            HostFileType::Other("not a device node")
        };
        let rdev = meta.rdev();
        Ok(HostNode {
            file_type,
            major: nix::sys::stat::major(rdev) as i64,
            minor: nix::sys::stat::minor(rdev) as i64,
            mode: meta.mode() & 0o7777,
        })
    }
}

/// Reads every spec file (`*.json`, `*.yaml`, `*.yml`) of `dirs`, lowest priority
/// first. A missing directory is fine; a file that cannot be read or parsed is skipped
/// with a warning naming it (and named again if a requested device is then missing).
pub fn load_registry(dirs: &[PathBuf]) -> CdiRegistry {
    let mut specs = Vec::new();
    let mut skipped = Vec::new();
    for (priority, dir) in dirs.iter().enumerate() {
        let entries = match std::fs::read_dir(dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                tracing::debug!(dir = %dir.display(), "no CDI spec directory");
                continue;
            }
            Err(e) => {
                tracing::warn!("skipping CDI spec directory {}: {e}", dir.display());
                skipped.push(SkippedSpecFile {
                    path: dir.clone(),
                    reason: format!("cannot list: {e}"),
                });
                continue;
            }
        };
        let mut files: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|entry| entry.path())
            .filter(|path| {
                path.extension()
                    .and_then(|e| e.to_str())
                    .is_some_and(|e| SPEC_EXTENSIONS.contains(&e))
            })
            .collect();
        files.sort();
        for path in files {
            let parsed = std::fs::read_to_string(&path)
                .map_err(|e| format!("cannot read: {e}"))
                .and_then(|text| CdiSpec::parse(&path, &text));
            match parsed {
                Ok(spec) => specs.push(LoadedSpec {
                    path,
                    priority,
                    spec,
                }),
                Err(reason) => {
                    tracing::warn!("skipping CDI spec file {}: {reason}", path.display());
                    skipped.push(SkippedSpecFile { path, reason });
                }
            }
        }
    }
    CdiRegistry::new(dirs.to_vec(), specs, skipped)
}

/// The CDI devices a container was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InjectedDevices {
    /// The devices (`=all` expanded) and the files defining them.
    pub devices: Vec<ResolvedDevice>,
    /// What changed in the spec, and what it already had.
    pub applied: AppliedEdits,
    /// Spec fields present but not applied (`intelRdt (vendor.com/class=name)`).
    pub ignored: Vec<String>,
}

impl InjectedDevices {
    /// The devices as `vendor.com/class=name (file), ...`, for the log.
    pub fn describe(&self) -> String {
        self.devices
            .iter()
            .map(|d| format!("{} ({})", d.name, d.source.display()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Gives the container the CDI devices its `triage.io/gpu` annotation asks for, from
/// the spec files in `dirs`: resolves them, stats their host device nodes and edits
/// `spec`. `None` when the container asks for none (no directory is read then).
pub fn inject_devices(
    id: &str,
    spec: &mut Spec,
    settings: &triage_oci::CdiSettings,
) -> Result<Option<InjectedDevices>, CdiError> {
    let annotations = spec.annotations().clone().unwrap_or_default();
    let requested = requested_devices(id, &annotations)?;
    if requested.is_empty() {
        return Ok(None);
    }
    triage_oci::cdi::check_consent(id, &requested, &settings.annotation_devices)?;
    let resolved = load_registry(&settings.spec_dirs).resolve(id, &requested)?;
    let edits = resolved.complete(id, &StatHostDeviceNodes)?;
    let names: Vec<String> = requested.iter().map(ToString::to_string).collect();
    let applied = edits.apply_to(id, &names.join(", "), spec)?;
    Ok(Some(InjectedDevices {
        devices: resolved.devices,
        applied,
        ignored: edits.ignored,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(annotation: Option<&str>) -> Spec {
        let mut spec: Spec = serde_json::from_str(
            r#"{"ociVersion": "1.0.2", "root": {"path": "rootfs"},
                "process": {"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0}},
                "linux": {}}"#,
        )
        .unwrap();
        if let Some(value) = annotation {
            spec.set_annotations(Some(
                [("triage.io/gpu".to_owned(), value.to_owned())].into(),
            ));
        }
        spec
    }

    const DEVICES: &str = "cdiVersion: 0.6.0\nkind: example.com/device\ndevices:\n\
        - name: zero\n  containerEdits:\n    deviceNodes:\n    - path: /dev/triage-zero\n      hostPath: /dev/zero\n\
        - name: gone\n  containerEdits:\n    deviceNodes:\n    - path: /dev/triage-gone-device\n";

    #[test]
    fn host_nodes_are_stated() {
        let null = StatHostDeviceNodes.stat(Path::new("/dev/null")).unwrap();
        assert_eq!(null.file_type, HostFileType::Node(NodeType::Char));
        assert_eq!((null.major, null.minor), (1, 3));
        let dir = StatHostDeviceNodes.stat(Path::new("/")).unwrap();
        assert_eq!(dir.file_type, HostFileType::Other("a directory"));
    }

    #[test]
    fn spec_files_are_read_in_priority_order_and_broken_ones_skipped() {
        let etc = tempfile::tempdir().unwrap();
        let run = tempfile::tempdir().unwrap();
        std::fs::write(etc.path().join("example.yaml"), DEVICES).unwrap();
        std::fs::write(etc.path().join("broken.json"), "{ not json").unwrap();
        std::fs::write(etc.path().join("README.md"), "not a spec").unwrap();
        std::fs::write(
            run.path().join("override.yml"),
            "cdiVersion: 0.6.0\nkind: example.com/device\ndevices:\n- name: zero\n  containerEdits:\n    env: [FROM=run]\n",
        )
        .unwrap();
        let missing = etc.path().join("missing");
        let registry = load_registry(&[missing, etc.path().into(), run.path().into()]);
        assert_eq!(
            registry.device_names(),
            ["example.com/device=gone", "example.com/device=zero"]
        );
        assert_eq!(registry.skipped().len(), 1);
        assert_eq!(registry.skipped()[0].path, etc.path().join("broken.json"));
        assert!(registry.skipped()[0]
            .reason
            .starts_with("not a valid CDI spec: "));
    }

    #[test]
    fn devices_are_injected_with_host_numbers() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("example.yaml"), DEVICES).unwrap();
        let settings = triage_oci::CdiSettings {
            spec_dirs: vec![dir.path().to_path_buf()],
            annotation_devices: vec!["example.com/device=*".to_owned()],
        };
        let dirs = &settings;
        let mut spec = spec_with(None);
        assert_eq!(inject_devices("c", &mut spec, dirs).unwrap(), None);

        let mut spec = spec_with(Some("example.com/device=zero"));
        let injected = inject_devices("c", &mut spec, dirs).unwrap().unwrap();
        assert!(injected.applied.changed);
        assert_eq!(
            injected.describe(),
            format!(
                "example.com/device=zero ({})",
                dir.path().join("example.yaml").display()
            )
        );
        let device = spec.linux().as_ref().unwrap().devices().clone().unwrap()[0].clone();
        assert_eq!((device.major(), device.minor()), (1, 5));

        let mut spec = spec_with(Some("example.com/device=gone"));
        let err = inject_devices("job-3", &mut spec, dirs).unwrap_err();
        assert!(
            err.to_string().starts_with(
                "container job-3: CDI device example.com/device=gone: host device node /dev/triage-gone-device for /dev/triage-gone-device: "
            ),
            "{err}"
        );
        std::fs::write(dir.path().join("bad.yaml"), "kind: [").unwrap();
        let mut spec = spec_with(Some("example.com/device=nope"));
        let err = inject_devices("job-4", &mut spec, dirs)
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("container job-4: CDI device example.com/device=nope is not defined: kind example.com/device has devices gone, zero; skipped invalid CDI spec files, which may have defined it: ")
                && err.contains("bad.yaml"),
            "{err}"
        );
    }
}
