//! The devices of the loaded CDI spec files, indexed by kind and name, and the
//! resolution of a container's request into the edits it gets.
//!
//! Spec directories are given in priority order, lowest first (`/etc/cdi` before
//! `/var/run/cdi`): a device defined in a later directory replaces the same device from
//! an earlier one, as in the CDI reference implementation. Two files of the same
//! directory defining one device make that device unusable until one is removed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use super::error::CdiError;
use super::name::QualifiedName;
use super::spec::{CdiSpec, ContainerEdits};

/// A spec file that was read and parsed.
#[derive(Debug, Clone)]
pub struct LoadedSpec {
    /// The file.
    pub path: PathBuf,
    /// The index of its directory in the search order; higher wins a conflict.
    pub priority: usize,
    /// What it says.
    pub spec: CdiSpec,
}

/// A spec file that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedSpecFile {
    /// The file.
    pub path: PathBuf,
    /// Why it was skipped.
    pub reason: String,
}

/// Where a device's definition lives.
#[derive(Debug, Clone)]
struct DeviceEntry {
    /// Index into [`CdiRegistry::specs`].
    spec: usize,
    /// Index into that spec's devices.
    device: usize,
    /// Other files of the same priority defining the same device.
    conflicts: Vec<PathBuf>,
}

/// Every usable CDI device on the node, by kind (`vendor.com/class`) and name.
#[derive(Debug, Clone, Default)]
pub struct CdiRegistry {
    searched: Vec<PathBuf>,
    specs: Vec<LoadedSpec>,
    skipped: Vec<SkippedSpecFile>,
    kinds: BTreeMap<String, BTreeMap<String, DeviceEntry>>,
}

/// Edits that came from one place: a device, or a spec file's shared edits.
#[derive(Debug, Clone, PartialEq)]
pub struct EditsFrom {
    /// The device (`vendor.com/class=name`) or the spec file the edits come from.
    pub origin: String,
    /// The edits.
    pub edits: ContainerEdits,
}

/// A device given to the container, and the file that defines it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedDevice {
    /// The device.
    pub name: QualifiedName,
    /// Its spec file.
    pub source: PathBuf,
}

/// What a container's request resolved to.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ResolvedDevices {
    /// The devices, `=all` expanded, without repeats.
    pub devices: Vec<ResolvedDevice>,
    /// The edits to apply, in order: each spec file's shared edits before its first
    /// device's own.
    pub edits: Vec<EditsFrom>,
}

impl CdiRegistry {
    /// Indexes the loaded specs. `searched` lists the spec directories in priority
    /// order and `skipped` the files that could not be used (both for error messages).
    pub fn new(
        searched: Vec<PathBuf>,
        mut specs: Vec<LoadedSpec>,
        skipped: Vec<SkippedSpecFile>,
    ) -> Self {
        specs.sort_by(|a, b| (a.priority, &a.path).cmp(&(b.priority, &b.path)));
        let mut kinds: BTreeMap<String, BTreeMap<String, DeviceEntry>> = BTreeMap::new();
        for (spec_index, loaded) in specs.iter().enumerate() {
            let Ok(kind) = loaded.spec.device_kind() else {
                continue;
            };
            let devices = kinds.entry(kind.to_string()).or_default();
            for (device_index, device) in loaded.spec.devices.iter().enumerate() {
                let entry = DeviceEntry {
                    spec: spec_index,
                    device: device_index,
                    conflicts: Vec::new(),
                };
                match devices.get_mut(&device.name) {
                    None => {
                        devices.insert(device.name.clone(), entry);
                    }
                    Some(old) if specs[old.spec].priority < loaded.priority => *old = entry,
                    Some(old) => old.conflicts.push(loaded.path.clone()),
                }
            }
        }
        Self {
            searched,
            specs,
            skipped,
            kinds,
        }
    }

    /// The spec files that were skipped.
    pub fn skipped(&self) -> &[SkippedSpecFile] {
        &self.skipped
    }

    /// Every device's qualified name, sorted.
    pub fn device_names(&self) -> Vec<String> {
        self.kinds
            .iter()
            .flat_map(|(kind, devices)| devices.keys().map(move |name| format!("{kind}={name}")))
            .collect()
    }

    /// Resolves the requested devices (`=all` meaning the kind's device literally named
    /// `all` when a spec defines one, else every device of the kind) into the edits
    /// the container gets.
    pub fn resolve(
        &self,
        id: &str,
        requested: &[QualifiedName],
    ) -> Result<ResolvedDevices, CdiError> {
        let mut chosen: Vec<(QualifiedName, &DeviceEntry)> = Vec::new();
        for request in requested {
            let Some(devices) = self.kinds.get(&request.kind.to_string()) else {
                return Err(CdiError::UnknownKind {
                    id: id.to_owned(),
                    device: request.to_string(),
                    searched: self.searched_text(),
                    notes: self.known_kinds_text() + &self.skipped_text(),
                });
            };
            let names: Vec<&String> = match devices.get_key_value(&request.name) {
                Some((name, _)) => vec![name],
                None if request.is_all() => devices.keys().collect(),
                None => {
                    return Err(CdiError::UnknownDevice {
                        id: id.to_owned(),
                        device: request.to_string(),
                        known: devices.keys().cloned().collect::<Vec<_>>().join(", "),
                        skipped: self.skipped_text(),
                    })
                }
            };
            for name in names {
                let entry = &devices[name];
                let qualified = QualifiedName {
                    kind: request.kind.clone(),
                    name: name.clone(),
                };
                if !entry.conflicts.is_empty() {
                    let files: Vec<String> = std::iter::once(&self.specs[entry.spec].path)
                        .chain(&entry.conflicts)
                        .map(|p| p.display().to_string())
                        .collect();
                    return Err(CdiError::Conflict {
                        id: id.to_owned(),
                        device: qualified.to_string(),
                        files: files.join(", "),
                    });
                }
                if !chosen.iter().any(|(n, _)| *n == qualified) {
                    chosen.push((qualified, entry));
                }
            }
        }
        let mut resolved = ResolvedDevices::default();
        let mut specs_applied: Vec<usize> = Vec::new();
        for (name, entry) in chosen {
            let loaded = &self.specs[entry.spec];
            if !specs_applied.contains(&entry.spec) {
                specs_applied.push(entry.spec);
                if loaded.spec.container_edits != ContainerEdits::default() {
                    resolved.edits.push(EditsFrom {
                        origin: format!("{} (shared edits of {})", name, loaded.path.display()),
                        edits: loaded.spec.container_edits.clone(),
                    });
                }
            }
            resolved.edits.push(EditsFrom {
                origin: name.to_string(),
                edits: loaded.spec.devices[entry.device].container_edits.clone(),
            });
            resolved.devices.push(ResolvedDevice {
                name,
                source: loaded.path.clone(),
            });
        }
        Ok(resolved)
    }

    fn searched_text(&self) -> String {
        if self.searched.is_empty() {
            return "no directory (the node profile's [cdi] spec_dirs is empty)".to_owned();
        }
        self.searched
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(", ")
    }

    fn known_kinds_text(&self) -> String {
        if self.kinds.is_empty() {
            return String::new();
        }
        let kinds: Vec<&str> = self.kinds.keys().map(String::as_str).collect();
        format!("; known kinds: {}", kinds.join(", "))
    }

    fn skipped_text(&self) -> String {
        if self.skipped.is_empty() {
            return String::new();
        }
        let files: Vec<String> = self
            .skipped
            .iter()
            .map(|s| format!("{} ({})", s.path.display(), s.reason))
            .collect();
        format!(
            "; skipped invalid CDI spec files, which may have defined it: {}",
            files.join(", ")
        )
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;

    fn loaded(path: &str, priority: usize, yaml: &str) -> LoadedSpec {
        LoadedSpec {
            path: PathBuf::from(path),
            priority,
            spec: CdiSpec::parse(Path::new(path), yaml).unwrap(),
        }
    }

    const DEVICES: &str = "cdiVersion: 0.6.0\nkind: example.com/device\n\
        containerEdits:\n  env: [SHARED=1]\n\
        devices:\n\
        - name: zero\n  containerEdits:\n    env: [DEV=zero]\n\
        - name: null\n  containerEdits:\n    env: [DEV=null]\n";

    fn indexed(specs: Vec<LoadedSpec>) -> CdiRegistry {
        CdiRegistry::new(
            vec!["/etc/cdi".into(), "/var/run/cdi".into()],
            specs,
            Vec::new(),
        )
    }

    fn request(names: &[&str]) -> Vec<QualifiedName> {
        names
            .iter()
            .map(|n| QualifiedName::parse(n).unwrap())
            .collect()
    }

    fn origins(resolved: &ResolvedDevices) -> Vec<&str> {
        resolved.edits.iter().map(|e| e.origin.as_str()).collect()
    }

    #[test]
    fn shared_edits_come_once_before_the_first_device() {
        let registry = indexed(vec![loaded("/etc/cdi/dev.yaml", 0, DEVICES)]);
        let resolved = registry
            .resolve(
                "c",
                &request(&["example.com/device=zero", "example.com/device=null"]),
            )
            .unwrap();
        assert_eq!(
            origins(&resolved),
            [
                "example.com/device=zero (shared edits of /etc/cdi/dev.yaml)",
                "example.com/device=zero",
                "example.com/device=null"
            ]
        );
        assert_eq!(resolved.edits[0].edits.env, ["SHARED=1"]);
        assert_eq!(
            resolved.devices[1].source,
            PathBuf::from("/etc/cdi/dev.yaml")
        );
    }

    #[test]
    fn all_means_every_device_unless_one_is_named_all() {
        let registry = indexed(vec![loaded("/etc/cdi/dev.yaml", 0, DEVICES)]);
        let resolved = registry
            .resolve(
                "c",
                &request(&["example.com/device=all", "example.com/device=zero"]),
            )
            .unwrap();
        let names: Vec<String> = resolved
            .devices
            .iter()
            .map(|d| d.name.to_string())
            .collect();
        assert_eq!(
            names,
            ["example.com/device=null", "example.com/device=zero"]
        );

        let literal = "cdiVersion: 0.5.0\nkind: nvidia.com/gpu\ndevices:\n\
            - name: '0'\n- name: all\n  containerEdits:\n    env: [ALL=1]\n";
        let registry = indexed(vec![loaded("/etc/cdi/nvidia.yaml", 0, literal)]);
        let resolved = registry
            .resolve("c", &request(&["nvidia.com/gpu=all"]))
            .unwrap();
        assert_eq!(origins(&resolved), ["nvidia.com/gpu=all"]);
        assert_eq!(resolved.edits[0].edits.env, ["ALL=1"]);
    }

    #[test]
    fn a_later_directory_replaces_a_device_and_the_same_directory_conflicts() {
        let other = "cdiVersion: 0.6.0\nkind: example.com/device\n\
            devices:\n- name: zero\n  containerEdits:\n    env: [DEV=run]\n";
        let registry = indexed(vec![
            loaded("/var/run/cdi/dev.yaml", 1, other),
            loaded("/etc/cdi/dev.yaml", 0, DEVICES),
        ]);
        let resolved = registry
            .resolve("c", &request(&["example.com/device=zero"]))
            .unwrap();
        assert_eq!(
            resolved.devices[0].source,
            PathBuf::from("/var/run/cdi/dev.yaml")
        );
        assert_eq!(resolved.edits.len(), 1);
        assert_eq!(resolved.edits[0].edits.env, ["DEV=run"]);
        // The device the later directory does not define still comes from /etc/cdi.
        let resolved = registry
            .resolve("c", &request(&["example.com/device=null"]))
            .unwrap();
        assert_eq!(
            resolved.devices[0].source,
            PathBuf::from("/etc/cdi/dev.yaml")
        );

        let registry = indexed(vec![
            loaded("/etc/cdi/a.yaml", 0, DEVICES),
            loaded("/etc/cdi/b.yaml", 0, other),
        ]);
        let err = registry
            .resolve("gpu-1", &request(&["example.com/device=zero"]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "container gpu-1: CDI device example.com/device=zero is defined by more than one spec file in the same directory (/etc/cdi/a.yaml, /etc/cdi/b.yaml); remove all but one"
        );
        assert!(registry
            .resolve("gpu-1", &request(&["example.com/device=null"]))
            .is_ok());
    }

    #[test]
    fn unknown_kinds_and_devices_name_the_container_and_device() {
        let registry = CdiRegistry::new(
            vec!["/etc/cdi".into(), "/var/run/cdi".into()],
            vec![loaded("/etc/cdi/dev.yaml", 0, DEVICES)],
            vec![SkippedSpecFile {
                path: "/etc/cdi/broken.yaml".into(),
                reason: "not a valid CDI spec: oops".into(),
            }],
        );
        let err = registry
            .resolve("job-7", &request(&["example.com/device=nope"]))
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "container job-7: CDI device example.com/device=nope is not defined: kind example.com/device has devices null, zero; skipped invalid CDI spec files, which may have defined it: /etc/cdi/broken.yaml (not a valid CDI spec: oops)"
        );
        let err = registry
            .resolve("job-7", &request(&["nvidia.com/gpu=0"]))
            .unwrap_err();
        assert!(
            err.to_string().starts_with(
                "container job-7: CDI device nvidia.com/gpu=0 is not defined: no CDI spec for kind nvidia.com/gpu in /etc/cdi, /var/run/cdi; known kinds: example.com/device; skipped"
            ),
            "{err}"
        );
        let empty = CdiRegistry::new(Vec::new(), Vec::new(), Vec::new());
        assert_eq!(
            empty.resolve("j", &request(&["nvidia.com/gpu=all"])).unwrap_err().to_string(),
            "container j: CDI device nvidia.com/gpu=all is not defined: no CDI spec for kind nvidia.com/gpu in no directory (the node profile's [cdi] spec_dirs is empty)"
        );
        assert_eq!(
            registry.device_names(),
            ["example.com/device=null", "example.com/device=zero"]
        );
    }
}
