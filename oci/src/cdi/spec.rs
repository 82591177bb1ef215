//! The CDI spec file format (versions 0.3.0 to 1.0.x), parsed from JSON or YAML and
//! checked before any of it is used.
//!
//! Not applied, and named in the log when a requested device carries them: `intelRdt`
//! (0.7.0) and `netDevices` (1.1.0). `additionalGids` is applied.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use serde::de::IgnoredAny;
use serde::{Deserialize, Deserializer};

use super::name::{check_device_name, DeviceKind};

/// The oldest CDI spec version this reader understands (the first with `containerEdits`).
pub const OLDEST_VERSION: (u64, u64) = (0, 3);
/// The newest CDI spec version this reader understands (1.0.x).
pub const NEWEST_VERSION: (u64, u64) = (1, 0);

/// One CDI spec file: a vendor's devices of one kind and how each changes a container.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CdiSpec {
    /// The CDI spec version the file follows (`0.6.0`).
    pub cdi_version: String,
    /// `vendor.com/class`.
    pub kind: String,
    /// Free-form annotations of the spec.
    #[serde(default, deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, String>,
    /// The devices a container may ask for.
    #[serde(default, deserialize_with = "null_as_default")]
    pub devices: Vec<CdiDevice>,
    /// Edits made once to a container that gets any device of this file.
    #[serde(default, deserialize_with = "null_as_default")]
    pub container_edits: ContainerEdits,
}

/// One device of a spec file.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CdiDevice {
    /// The name within the kind (`0`, `all`, a UUID).
    pub name: String,
    /// Free-form annotations of the device.
    #[serde(default, deserialize_with = "null_as_default")]
    pub annotations: BTreeMap<String, String>,
    /// Edits made to a container that gets this device.
    #[serde(default, deserialize_with = "null_as_default")]
    pub container_edits: ContainerEdits,
}

/// Changes to a container's OCI spec.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerEdits {
    /// `KEY=VALUE` entries for the process environment.
    #[serde(default, deserialize_with = "null_as_default")]
    pub env: Vec<String>,
    /// Device nodes to create in the container.
    #[serde(default, deserialize_with = "null_as_default")]
    pub device_nodes: Vec<DeviceNode>,
    /// Mounts to add.
    #[serde(default, deserialize_with = "null_as_default")]
    pub mounts: Vec<CdiMount>,
    /// OCI hooks to add.
    #[serde(default, deserialize_with = "null_as_default")]
    pub hooks: Vec<CdiHook>,
    /// Supplementary groups for the container's process.
    #[serde(default, deserialize_with = "null_as_default")]
    pub additional_gids: Vec<u32>,
    /// Intel RDT settings: not applied.
    #[serde(default)]
    pub intel_rdt: Option<IgnoredAny>,
    /// Network devices (CDI 1.1.0): not applied.
    #[serde(default)]
    pub net_devices: Option<IgnoredAny>,
}

/// A device node to create in the container.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeviceNode {
    /// Path in the container.
    pub path: String,
    /// Path on the host; `path` when absent.
    #[serde(default)]
    pub host_path: Option<String>,
    /// `c`, `u` (character), `b` (block) or `p` (FIFO); from the host node when absent.
    #[serde(default, rename = "type")]
    pub node_type: Option<String>,
    /// Major number; from the host node when absent.
    #[serde(default)]
    pub major: Option<i64>,
    /// Minor number; from the host node when absent.
    #[serde(default)]
    pub minor: Option<i64>,
    /// Mode of the node in the container; from the host node when it is stat'ed.
    #[serde(default)]
    pub file_mode: Option<u32>,
    /// Device cgroup access, some of `rwm`; `rwm` when absent.
    #[serde(default)]
    pub permissions: Option<String>,
    /// Owner of the node in the container.
    #[serde(default)]
    pub uid: Option<u32>,
    /// Group of the node in the container.
    #[serde(default)]
    pub gid: Option<u32>,
}

impl DeviceNode {
    /// The node on the host this one copies.
    pub fn host_path(&self) -> &str {
        self.host_path.as_deref().unwrap_or(&self.path)
    }
}

/// A mount to add.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CdiMount {
    /// Source on the host.
    pub host_path: String,
    /// Destination in the container.
    pub container_path: String,
    /// Filesystem type; a bind mount when absent.
    #[serde(default, rename = "type")]
    pub mount_type: Option<String>,
    /// Mount options.
    #[serde(default, deserialize_with = "null_as_default")]
    pub options: Vec<String>,
}

/// An OCI hook to add.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CdiHook {
    /// Which OCI hook list it goes in (`createRuntime`, `prestart`, ...).
    pub hook_name: String,
    /// Absolute path of the program on the host.
    pub path: String,
    /// Its arguments, `argv[0]` included.
    #[serde(default, deserialize_with = "null_as_default")]
    pub args: Vec<String>,
    /// Its environment, `KEY=VALUE`.
    #[serde(default, deserialize_with = "null_as_default")]
    pub env: Vec<String>,
    /// Seconds before it is aborted.
    #[serde(default)]
    pub timeout: Option<i64>,
}

/// The OCI hook lists a CDI hook may name.
pub const HOOK_NAMES: [&str; 6] = [
    "prestart",
    "createRuntime",
    "createContainer",
    "startContainer",
    "poststart",
    "poststop",
];

fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de> + Default,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

impl CdiSpec {
    /// Parses a spec file's text (JSON for `*.json`, YAML otherwise) and checks it.
    /// The error is the reason the file cannot be used.
    pub fn parse(path: &Path, text: &str) -> Result<Self, String> {
        let spec: Self = if path.extension().is_some_and(|e| e == "json") {
            serde_json::from_str(text).map_err(|e| format!("not a valid CDI spec: {e}"))?
        } else {
            serde_norway::from_str(text).map_err(|e| format!("not a valid CDI spec: {e}"))?
        };
        spec.check()?;
        Ok(spec)
    }

    /// The spec's kind, parsed.
    pub fn device_kind(&self) -> Result<DeviceKind, String> {
        DeviceKind::parse(&self.kind)
    }

    /// Checks what the CDI spec requires: a known version, a valid kind, unique valid
    /// device names, and well-formed edits.
    pub fn check(&self) -> Result<(), String> {
        check_version(&self.cdi_version)?;
        self.device_kind()?;
        self.container_edits.check("containerEdits")?;
        let mut names = HashSet::new();
        for device in &self.devices {
            check_device_name(&device.name)?;
            if !names.insert(device.name.as_str()) {
                return Err(format!("device {:?} is defined twice", device.name));
            }
            device
                .container_edits
                .check(&format!("device {:?}", device.name))?;
        }
        Ok(())
    }
}

fn check_version(version: &str) -> Result<(), String> {
    let unsupported = || {
        format!(
            "cdiVersion {version:?} is not supported (this reader knows {}.{}.0 to {}.{}.x)",
            OLDEST_VERSION.0, OLDEST_VERSION.1, NEWEST_VERSION.0, NEWEST_VERSION.1
        )
    };
    let mut parts = version.trim().splitn(3, '.').map(|p| p.parse::<u64>().ok());
    let (Some(Some(major)), Some(Some(minor))) = (parts.next(), parts.next()) else {
        return Err(unsupported());
    };
    if (major, minor) < OLDEST_VERSION || (major, minor) > NEWEST_VERSION {
        return Err(unsupported());
    }
    Ok(())
}

impl ContainerEdits {
    /// Checks the edits; `place` names them in the error (`device "0"`).
    fn check(&self, place: &str) -> Result<(), String> {
        for env in &self.env {
            if !env.contains('=') || env.starts_with('=') {
                return Err(format!("{place}: env entry {env:?} is not KEY=VALUE"));
            }
        }
        for node in &self.device_nodes {
            if !node.path.starts_with('/') {
                return Err(format!(
                    "{place}: device node path {:?} is not absolute",
                    node.path
                ));
            }
            if let Some(node_type) = &node.node_type {
                if !["c", "u", "b", "p"].contains(&node_type.as_str()) {
                    return Err(format!(
                        "{place}: device node {} has type {node_type:?} (expected c, u, b or p)",
                        node.path
                    ));
                }
            }
            if let Some(permissions) = &node.permissions {
                if permissions.is_empty() || permissions.chars().any(|c| !"rwm".contains(c)) {
                    return Err(format!(
                        "{place}: device node {} has permissions {permissions:?} (expected some of rwm)",
                        node.path
                    ));
                }
            }
        }
        for mount in &self.mounts {
            if mount.host_path.is_empty() {
                return Err(format!(
                    "{place}: mount to {:?} has no hostPath",
                    mount.container_path
                ));
            }
            if !mount.container_path.starts_with('/') {
                return Err(format!(
                    "{place}: mount containerPath {:?} is not absolute",
                    mount.container_path
                ));
            }
        }
        for hook in &self.hooks {
            if !HOOK_NAMES.contains(&hook.hook_name.as_str()) {
                return Err(format!(
                    "{place}: hook {:?} has hookName {:?} (expected one of {})",
                    hook.path,
                    hook.hook_name,
                    HOOK_NAMES.join(", ")
                ));
            }
            if !hook.path.starts_with('/') {
                return Err(format!(
                    "{place}: hook path {:?} is not absolute",
                    hook.path
                ));
            }
            if let Some(timeout) = hook.timeout.filter(|&t| t <= 0) {
                return Err(format!(
                    "{place}: hook {} has timeout {timeout} (must be more than 0)",
                    hook.path
                ));
            }
        }
        Ok(())
    }

    /// The fields present that Triage does not apply, for the log.
    pub fn ignored_fields(&self) -> Vec<&'static str> {
        let mut ignored = Vec::new();
        if self.intel_rdt.is_some() {
            ignored.push("intelRdt");
        }
        if self.net_devices.is_some() {
            ignored.push("netDevices");
        }
        ignored
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shape `nvidia-ctk cdi generate` writes, trimmed.
    const NVIDIA_YAML: &str = r#"---
cdiVersion: 0.5.0
kind: nvidia.com/gpu
devices:
- name: "0"
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
- name: all
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia0
containerEdits:
  env:
  - NVIDIA_VISIBLE_DEVICES=void
  deviceNodes:
  - path: /dev/nvidiactl
  hooks:
  - hookName: createContainer
    path: /usr/bin/nvidia-ctk
    args:
    - nvidia-ctk
    - hook
    - update-ldcache
  mounts:
  - hostPath: /usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05
    containerPath: /usr/lib/x86_64-linux-gnu/libcuda.so.535.104.05
    options:
    - ro
    - nosuid
    - nodev
    - bind
"#;

    #[test]
    fn nvidia_ctk_yaml_parses() {
        let spec = CdiSpec::parse(Path::new("/etc/cdi/nvidia.yaml"), NVIDIA_YAML).unwrap();
        assert_eq!(spec.kind, "nvidia.com/gpu");
        assert_eq!(spec.devices.len(), 2);
        assert_eq!(spec.devices[0].name, "0");
        assert_eq!(
            spec.devices[0].container_edits.device_nodes[0].host_path(),
            "/dev/nvidia0"
        );
        let edits = &spec.container_edits;
        assert_eq!(edits.env, ["NVIDIA_VISIBLE_DEVICES=void"]);
        assert_eq!(edits.hooks[0].hook_name, "createContainer");
        assert_eq!(edits.hooks[0].args.len(), 3);
        assert_eq!(edits.mounts[0].options, ["ro", "nosuid", "nodev", "bind"]);
        assert!(edits.ignored_fields().is_empty());
    }

    #[test]
    fn json_parses_with_every_device_node_field() {
        let text = r#"{
            "cdiVersion": "0.8.0",
            "kind": "example.com/device",
            "devices": [{
                "name": "zero",
                "annotations": {"note": "fake"},
                "containerEdits": {
                    "deviceNodes": [{
                        "path": "/dev/triage-zero", "hostPath": "/dev/zero", "type": "c",
                        "major": 1, "minor": 5, "fileMode": 438, "permissions": "rw",
                        "uid": 1000, "gid": 1000
                    }],
                    "additionalGids": [44],
                    "intelRdt": {"closID": "x"}
                }
            }]
        }"#;
        let spec = CdiSpec::parse(Path::new("/etc/cdi/x.json"), text).unwrap();
        let edits = &spec.devices[0].container_edits;
        assert_eq!(
            edits.device_nodes[0],
            DeviceNode {
                path: "/dev/triage-zero".into(),
                host_path: Some("/dev/zero".into()),
                node_type: Some("c".into()),
                major: Some(1),
                minor: Some(5),
                file_mode: Some(0o666),
                permissions: Some("rw".into()),
                uid: Some(1000),
                gid: Some(1000),
            }
        );
        assert_eq!(edits.additional_gids, [44]);
        assert_eq!(edits.ignored_fields(), ["intelRdt"]);
        // JSON is YAML too: a `.yaml` file holding JSON reads the same.
        assert_eq!(
            CdiSpec::parse(Path::new("/etc/cdi/x.yaml"), text).unwrap(),
            spec
        );
    }

    #[test]
    fn files_breaking_the_spec_say_why() {
        let err = |text: &str| CdiSpec::parse(Path::new("/etc/cdi/x.yaml"), text).unwrap_err();
        let header = "cdiVersion: 0.6.0\nkind: example.com/device\n";
        assert!(err("devices: [").starts_with("not a valid CDI spec: "));
        assert_eq!(
            err("cdiVersion: 1.1.0\nkind: example.com/device\n"),
            "cdiVersion \"1.1.0\" is not supported (this reader knows 0.3.0 to 1.0.x)"
        );
        assert!(err("cdiVersion: 0.2.0\nkind: a.com/b\n").contains("not supported"));
        assert_eq!(
            err("cdiVersion: 0.6.0\nkind: device\n"),
            "kind \"device\" is not of the form vendor.com/class"
        );
        assert_eq!(
            err(&format!("{header}devices:\n- name: a\n- name: a\n")),
            "device \"a\" is defined twice"
        );
        assert_eq!(
            err(&format!("{header}devices:\n- name: a\n  containerEdits:\n    hooks:\n    - hookName: preStart\n      path: /bin/true\n")),
            "device \"a\": hook \"/bin/true\" has hookName \"preStart\" (expected one of prestart, createRuntime, createContainer, startContainer, poststart, poststop)"
        );
        assert_eq!(
            err(&format!(
                "{header}containerEdits:\n  deviceNodes:\n  - path: dev/x\n"
            )),
            "containerEdits: device node path \"dev/x\" is not absolute"
        );
        assert_eq!(
            err(&format!(
                "{header}containerEdits:\n  deviceNodes:\n  - path: /dev/x\n    permissions: rwx\n"
            )),
            "containerEdits: device node /dev/x has permissions \"rwx\" (expected some of rwm)"
        );
        assert_eq!(
            err(&format!("{header}containerEdits:\n  env: [FOO]\n")),
            "containerEdits: env entry \"FOO\" is not KEY=VALUE"
        );
    }

    #[test]
    fn empty_lists_may_be_null() {
        let spec = CdiSpec::parse(
            Path::new("x.yml"),
            "cdiVersion: 1.0.0\nkind: a.com/b\ndevices:\n- name: x\n  containerEdits:\n    env: ~\n    mounts: null\n",
        )
        .unwrap();
        assert_eq!(spec.devices[0].container_edits, ContainerEdits::default());
    }
}
