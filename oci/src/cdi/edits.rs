//! Applies resolved CDI edits to a container's OCI spec. Device nodes whose spec leaves
//! out the type or numbers get them from the host through [`HostDeviceNodes`], the one
//! side effect this crate leaves to its caller.
//!
//! What the spec already has is kept: a device node or mount at the same container
//! path, an identical hook or group. So devices containerd already injected (CRI with
//! `enable_cdi`) are not added twice. Environment entries replace the same key.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{
    Hook, Hooks, LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, LinuxResources, Mount, Spec,
};

use super::error::CdiError;
use super::registry::ResolvedDevices;
use super::spec::{CdiHook, CdiMount, DeviceNode};

/// The kinds of device node CDI can create.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeType {
    /// Character device (`c`, or `u` for unbuffered).
    Char,
    /// Block device (`b`).
    Block,
    /// FIFO (`p`).
    Fifo,
}

impl NodeType {
    fn from_cdi(text: &str) -> Self {
        match text {
            "b" => Self::Block,
            "p" => Self::Fifo,
            _ => Self::Char,
        }
    }

    fn oci(self) -> LinuxDeviceType {
        match self {
            Self::Char => LinuxDeviceType::C,
            Self::Block => LinuxDeviceType::B,
            Self::Fifo => LinuxDeviceType::P,
        }
    }

    /// How errors call it.
    pub fn describe(self) -> &'static str {
        match self {
            Self::Char => "a character device",
            Self::Block => "a block device",
            Self::Fifo => "a FIFO",
        }
    }
}

/// What a path on the host is, as far as device nodes go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HostFileType {
    /// A device node or FIFO.
    Node(NodeType),
    /// Something else (`a regular file`, `a directory`).
    Other(&'static str),
}

/// What stat says about a host device node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostNode {
    /// Its type.
    pub file_type: HostFileType,
    /// Major number (0 for a FIFO).
    pub major: i64,
    /// Minor number (0 for a FIFO).
    pub minor: i64,
    /// Permission bits (`st_mode & 0o7777`).
    pub mode: u32,
}

/// The side-effect hole: looks at a host device node (`stat`), for the device nodes
/// whose CDI spec leaves out the type or the numbers.
pub trait HostDeviceNodes {
    /// Stats `host_path`.
    fn stat(&self, host_path: &Path) -> std::io::Result<HostNode>;
}

/// A device node with everything the OCI spec needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CompleteDeviceNode {
    /// Path in the container.
    pub path: PathBuf,
    /// Its type.
    pub node_type: NodeType,
    /// Major number.
    pub major: i64,
    /// Minor number.
    pub minor: i64,
    /// Mode in the container, when known.
    pub file_mode: Option<u32>,
    /// Owner in the container.
    pub uid: Option<u32>,
    /// Group in the container.
    pub gid: Option<u32>,
    /// Device cgroup access (`rwm` unless the spec narrows it).
    pub access: String,
}

/// All edits of a container's devices, ready to apply.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct DeviceEdits {
    /// `KEY=VALUE` entries, in order (a later one wins a key).
    pub env: Vec<String>,
    /// Device nodes.
    pub device_nodes: Vec<CompleteDeviceNode>,
    /// Mounts.
    pub mounts: Vec<CdiMount>,
    /// Hooks.
    pub hooks: Vec<CdiHook>,
    /// Supplementary groups.
    pub additional_gids: Vec<u32>,
    /// Fields not applied, as `intelRdt (example.com/device=zero)`, for the log.
    pub ignored: Vec<String>,
}

/// What applying changed.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AppliedEdits {
    /// Whether the spec changed (and so must be written back).
    pub changed: bool,
    /// Device nodes and mounts left out because the spec already had them
    /// (e.g. `device node /dev/nvidia0`).
    pub already_present: Vec<String>,
}

impl ResolvedDevices {
    /// Completes every device node (type, major, minor, mode), asking `host` about
    /// those whose spec leaves something out.
    pub fn complete(&self, id: &str, host: &dyn HostDeviceNodes) -> Result<DeviceEdits, CdiError> {
        let mut out = DeviceEdits::default();
        for from in &self.edits {
            let edits = &from.edits;
            out.env.extend(edits.env.iter().cloned());
            for node in &edits.device_nodes {
                out.device_nodes
                    .push(complete_node(id, &from.origin, node, host)?);
            }
            out.mounts.extend(edits.mounts.iter().cloned());
            out.hooks.extend(edits.hooks.iter().cloned());
            out.additional_gids
                .extend(edits.additional_gids.iter().copied());
            out.ignored.extend(
                edits
                    .ignored_fields()
                    .into_iter()
                    .map(|field| format!("{field} ({})", from.origin)),
            );
        }
        Ok(out)
    }
}

fn complete_node(
    id: &str,
    origin: &str,
    node: &DeviceNode,
    host: &dyn HostDeviceNodes,
) -> Result<CompleteDeviceNode, CdiError> {
    let declared = node.node_type.as_deref().map(NodeType::from_cdi);
    let needs_host = match declared {
        None => true,
        Some(NodeType::Fifo) => false,
        Some(_) => node.major.is_none() || node.minor.is_none(),
    };
    let mut complete = CompleteDeviceNode {
        path: PathBuf::from(&node.path),
        node_type: declared.unwrap_or(NodeType::Char),
        major: node.major.unwrap_or(0),
        minor: node.minor.unwrap_or(0),
        file_mode: node.file_mode,
        uid: node.uid,
        gid: node.gid,
        access: node.permissions.clone().unwrap_or_else(|| "rwm".to_owned()),
    };
    if !needs_host {
        return Ok(complete);
    }
    let host_path = PathBuf::from(node.host_path());
    let facts = host.stat(&host_path).map_err(|source| CdiError::HostNode {
        id: id.to_owned(),
        device: origin.to_owned(),
        path: node.path.clone(),
        host_path: host_path.clone(),
        source,
    })?;
    let mismatch = |found: &'static str| CdiError::HostNodeType {
        id: id.to_owned(),
        device: origin.to_owned(),
        path: node.path.clone(),
        host_path: host_path.clone(),
        found,
        expected: declared,
    };
    let found = match facts.file_type {
        HostFileType::Other(what) => return Err(mismatch(what)),
        HostFileType::Node(found) => found,
    };
    if declared.is_some_and(|d| d != found) {
        return Err(mismatch(found.describe()));
    }
    complete.node_type = found;
    complete.major = node.major.unwrap_or(facts.major);
    complete.minor = node.minor.unwrap_or(facts.minor);
    complete.file_mode = node.file_mode.or(Some(facts.mode));
    Ok(complete)
}

impl DeviceEdits {
    /// Applies the edits to `spec`; `devices` names the container's devices for the
    /// error when the spec is not a Linux one.
    pub fn apply_to(
        &self,
        id: &str,
        devices: &str,
        spec: &mut Spec,
    ) -> Result<AppliedEdits, CdiError> {
        let mut applied = AppliedEdits::default();
        let linux = spec
            .linux_mut()
            .as_mut()
            .ok_or_else(|| CdiError::NotLinux {
                id: id.to_owned(),
                devices: devices.to_owned(),
            })?;
        for node in &self.device_nodes {
            let nodes = linux.devices_mut().get_or_insert_with(Vec::new);
            if nodes.iter().any(|d| d.path() == &node.path) {
                applied
                    .already_present
                    .push(format!("device node {}", node.path.display()));
                continue;
            }
            let mut device = LinuxDevice::default();
            device
                .set_path(node.path.clone())
                .set_typ(node.node_type.oci())
                .set_major(node.major)
                .set_minor(node.minor)
                .set_file_mode(node.file_mode)
                .set_uid(node.uid)
                .set_gid(node.gid);
            nodes.push(device);
            if node.node_type != NodeType::Fifo {
                let mut rule = LinuxDeviceCgroup::default();
                rule.set_allow(true)
                    .set_typ(Some(node.node_type.oci()))
                    .set_major(Some(node.major))
                    .set_minor(Some(node.minor))
                    .set_access(Some(node.access.clone()));
                linux
                    .resources_mut()
                    .get_or_insert_with(LinuxResources::default)
                    .devices_mut()
                    .get_or_insert_with(Vec::new)
                    .push(rule);
            }
            applied.changed = true;
        }
        if !self.mounts.is_empty() {
            let mounts = spec.mounts_mut().get_or_insert_with(Vec::new);
            for cdi in &self.mounts {
                let destination = PathBuf::from(&cdi.container_path);
                if mounts.iter().any(|m| m.destination() == &destination) {
                    applied
                        .already_present
                        .push(format!("mount {}", destination.display()));
                    continue;
                }
                mounts.push(oci_mount(cdi));
                applied.changed = true;
            }
        }
        if !self.hooks.is_empty() {
            let hooks = spec.hooks_mut().get_or_insert_with(Hooks::default);
            for cdi in &self.hooks {
                let hook = oci_hook(cdi);
                let list = hook_list(hooks, &cdi.hook_name).get_or_insert_with(Vec::new);
                if !list.contains(&hook) {
                    list.push(hook);
                    applied.changed = true;
                }
            }
        }
        let Some(process) = spec.process_mut() else {
            return Ok(applied);
        };
        if !self.env.is_empty() {
            let env = process.env_mut().get_or_insert_with(Vec::new);
            for entry in &self.env {
                let key = env_key(entry);
                match env.iter_mut().find(|e| env_key(e) == key) {
                    Some(existing) if existing == entry => {}
                    Some(existing) => {
                        existing.clone_from(entry);
                        applied.changed = true;
                    }
                    None => {
                        env.push(entry.clone());
                        applied.changed = true;
                    }
                }
            }
        }
        if !self.additional_gids.is_empty() {
            let gids = process
                .user_mut()
                .additional_gids_mut()
                .get_or_insert_with(Vec::new);
            for gid in &self.additional_gids {
                if !gids.contains(gid) {
                    gids.push(*gid);
                    applied.changed = true;
                }
            }
        }
        Ok(applied)
    }
}

/// The `KEY` of a `KEY=VALUE` entry.
fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(key, _)| key)
}

/// A CDI mount as an OCI mount; without a type it is a bind mount.
fn oci_mount(cdi: &CdiMount) -> Mount {
    let mut options = cdi.options.clone();
    let is_bind = cdi.mount_type.as_deref().is_none_or(|t| t == "bind");
    if is_bind && !options.iter().any(|o| o == "bind" || o == "rbind") {
        options.push("bind".to_owned());
    }
    let mut mount = Mount::default();
    mount
        .set_destination(PathBuf::from(&cdi.container_path))
        .set_typ(Some(
            cdi.mount_type.clone().unwrap_or_else(|| "bind".to_owned()),
        ))
        .set_source(Some(PathBuf::from(&cdi.host_path)))
        .set_options(Some(options));
    mount
}

fn oci_hook(cdi: &CdiHook) -> Hook {
    let mut hook = Hook::default();
    hook.set_path(PathBuf::from(&cdi.path))
        .set_args((!cdi.args.is_empty()).then(|| cdi.args.clone()))
        .set_env((!cdi.env.is_empty()).then(|| cdi.env.clone()))
        .set_timeout(cdi.timeout);
    hook
}

/// The OCI hook list a CDI `hookName` names (checked when the spec file was read).
fn hook_list<'h>(hooks: &'h mut Hooks, name: &str) -> &'h mut Option<Vec<Hook>> {
    match name {
        #[allow(deprecated)]
        "prestart" => hooks.prestart_mut(),
        "createRuntime" => hooks.create_runtime_mut(),
        "createContainer" => hooks.create_container_mut(),
        "startContainer" => hooks.start_container_mut(),
        "poststart" => hooks.poststart_mut(),
        _ => hooks.poststop_mut(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cdi::name::QualifiedName;
    use crate::cdi::registry::{CdiRegistry, LoadedSpec};
    use crate::cdi::spec::CdiSpec;

    /// A host with /dev/zero (c 1:5), /dev/null (c 1:3) and a regular file.
    struct FakeHost;

    impl HostDeviceNodes for FakeHost {
        fn stat(&self, host_path: &Path) -> std::io::Result<HostNode> {
            let node = |major, minor| HostNode {
                file_type: HostFileType::Node(NodeType::Char),
                major,
                minor,
                mode: 0o666,
            };
            match host_path.to_str() {
                Some("/dev/zero") => Ok(node(1, 5)),
                Some("/dev/null") => Ok(node(1, 3)),
                Some("/etc/passwd") => Ok(HostNode {
                    file_type: HostFileType::Other("a regular file"),
                    major: 0,
                    minor: 0,
                    mode: 0o644,
                }),
                _ => Err(std::io::Error::from(std::io::ErrorKind::NotFound)),
            }
        }
    }

    const SPEC: &str = r#"
cdiVersion: 0.6.0
kind: example.com/device
containerEdits:
  env: [SHARED=1]
  hooks:
  - hookName: createContainer
    path: /usr/bin/setup-device
    args: [setup-device, --all]
  - hookName: poststop
    path: /usr/bin/teardown
    timeout: 5
devices:
- name: zero
  containerEdits:
    env: [TRIAGE_CDI=zero, HOME=/cdi]
    deviceNodes:
    - path: /dev/triage-zero
      hostPath: /dev/zero
      permissions: rw
    mounts:
    - hostPath: /srv/cdi-data
      containerPath: /cdi-data
      options: [ro]
    additionalGids: [44]
- name: null
  containerEdits:
    deviceNodes:
    - path: /dev/triage-null
      hostPath: /dev/null
    - path: /dev/fixed
      type: b
      major: 8
      minor: 1
      fileMode: 0o600
    hooks:
    - hookName: prestart
      path: /usr/bin/old-style
- name: missing
  containerEdits:
    deviceNodes:
    - path: /dev/nvidia9
- name: notadevice
  containerEdits:
    deviceNodes:
    - path: /dev/x
      hostPath: /etc/passwd
- name: wrongtype
  containerEdits:
    deviceNodes:
    - path: /dev/y
      hostPath: /dev/zero
      type: b
"#;

    fn registry() -> CdiRegistry {
        CdiRegistry::new(
            vec!["/etc/cdi".into()],
            vec![LoadedSpec {
                path: "/etc/cdi/example.yaml".into(),
                priority: 0,
                spec: CdiSpec::parse(Path::new("/etc/cdi/example.yaml"), SPEC).unwrap(),
            }],
            Vec::new(),
        )
    }

    /// A spec like `ctr run` makes: a process, /dev/null already a device, a deny-all rule.
    fn container_spec() -> Spec {
        serde_json::from_str(
            r#"{
                "ociVersion": "1.0.2",
                "process": {"cwd": "/", "args": ["sh"], "user": {"uid": 0, "gid": 0},
                            "env": ["PATH=/bin", "HOME=/root"]},
                "root": {"path": "rootfs"},
                "mounts": [{"destination": "/proc", "type": "proc", "source": "proc"}],
                "linux": {
                    "devices": [{"path": "/dev/triage-null", "type": "c", "major": 1, "minor": 3}],
                    "resources": {"devices": [{"allow": false, "access": "rwm"}]}
                }
            }"#,
        )
        .unwrap()
    }

    fn edit(devices: &str, spec: &mut Spec) -> Result<AppliedEdits, CdiError> {
        let requested = crate::cdi::request::parse_device_request("c1", devices)?;
        let resolved = registry().resolve("c1", &requested)?;
        resolved
            .complete("c1", &FakeHost)?
            .apply_to("c1", devices, spec)
    }

    fn env(spec: &Spec) -> Vec<String> {
        spec.process().as_ref().unwrap().env().clone().unwrap()
    }

    #[test]
    fn device_nodes_get_host_numbers_and_a_cgroup_rule() {
        let mut spec = container_spec();
        let applied = edit("example.com/device=zero", &mut spec).unwrap();
        assert!(applied.changed);
        assert!(applied.already_present.is_empty());
        let linux = spec.linux().as_ref().unwrap();
        let node = linux.devices().as_ref().unwrap().last().unwrap().clone();
        assert_eq!(node.path(), Path::new("/dev/triage-zero"));
        assert_eq!(node.typ(), LinuxDeviceType::C);
        assert_eq!((node.major(), node.minor()), (1, 5));
        assert_eq!(node.file_mode(), Some(0o666));
        let rules = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        assert_eq!(rules.len(), 2, "the deny-all rule stays first");
        let rule = &rules[1];
        assert!(rule.allow());
        assert_eq!(rule.typ(), Some(LinuxDeviceType::C));
        assert_eq!((rule.major(), rule.minor()), (Some(1), Some(5)));
        assert_eq!(rule.access().as_deref(), Some("rw"));
    }

    #[test]
    fn env_mounts_and_groups_are_added_and_same_keys_replaced() {
        let mut spec = container_spec();
        edit("example.com/device=zero", &mut spec).unwrap();
        assert_eq!(
            env(&spec),
            ["PATH=/bin", "HOME=/cdi", "SHARED=1", "TRIAGE_CDI=zero"]
        );
        let mount = spec.mounts().as_ref().unwrap().last().unwrap().clone();
        assert_eq!(mount.destination(), Path::new("/cdi-data"));
        assert_eq!(mount.source().as_deref(), Some(Path::new("/srv/cdi-data")));
        assert_eq!(mount.typ().as_deref(), Some("bind"));
        assert_eq!(mount.options().clone().unwrap(), ["ro", "bind"]);
        let gids = spec
            .process()
            .as_ref()
            .unwrap()
            .user()
            .additional_gids()
            .clone();
        assert_eq!(gids, Some(vec![44]));
    }

    #[test]
    fn hooks_go_in_the_list_their_name_says() {
        let mut spec = container_spec();
        edit("example.com/device=zero,example.com/device=null", &mut spec).unwrap();
        let hooks = spec.hooks().clone().unwrap();
        let create = hooks.create_container().clone().unwrap();
        assert_eq!(create.len(), 1, "shared edits come once for two devices");
        assert_eq!(create[0].path(), Path::new("/usr/bin/setup-device"));
        assert_eq!(create[0].args().clone().unwrap(), ["setup-device", "--all"]);
        let poststop = hooks.poststop().clone().unwrap();
        assert_eq!(poststop[0].timeout(), Some(5));
        #[allow(deprecated)]
        let prestart = hooks.prestart().clone().unwrap();
        assert_eq!(prestart[0].path(), Path::new("/usr/bin/old-style"));
        assert!(hooks.create_runtime().is_none());
        assert!(hooks.start_container().is_none());
        assert!(hooks.poststart().is_none());
    }

    #[test]
    fn what_the_spec_already_has_is_honoured_not_duplicated() {
        let mut spec = container_spec();
        let applied = edit("example.com/device=null", &mut spec).unwrap();
        assert_eq!(applied.already_present, ["device node /dev/triage-null"]);
        let linux = spec.linux().as_ref().unwrap();
        let nodes = linux.devices().clone().unwrap();
        let paths: Vec<_> = nodes.iter().map(|d| d.path().clone()).collect();
        assert_eq!(
            paths,
            [PathBuf::from("/dev/triage-null"), "/dev/fixed".into()]
        );
        // The fixed node needs no host: its numbers and mode come from the spec.
        assert_eq!(
            (nodes[1].typ(), nodes[1].major(), nodes[1].minor()),
            (LinuxDeviceType::B, 8, 1)
        );
        assert_eq!(nodes[1].file_mode(), Some(0o600));
        let rules = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        assert_eq!(rules.len(), 2, "one rule, for /dev/fixed only");

        // Applying the same devices again (containerd did already) changes nothing.
        let mut again = container_spec();
        edit(
            "example.com/device=zero,example.com/device=null",
            &mut again,
        )
        .unwrap();
        let before = again.clone();
        let applied = edit(
            "example.com/device=zero,example.com/device=null",
            &mut again,
        )
        .unwrap();
        assert!(!applied.changed);
        assert_eq!(
            applied.already_present,
            [
                "device node /dev/triage-zero",
                "device node /dev/triage-null",
                "device node /dev/fixed",
                "mount /cdi-data"
            ]
        );
        assert_eq!(again, before);
    }

    #[test]
    fn host_nodes_that_are_missing_or_wrong_are_named() {
        let err = |device: &str| edit(device, &mut container_spec()).unwrap_err().to_string();
        assert_eq!(
            err("example.com/device=missing"),
            "container c1: CDI device example.com/device=missing: host device node /dev/nvidia9 for /dev/nvidia9: entity not found"
        );
        assert_eq!(
            err("example.com/device=notadevice"),
            "container c1: CDI device example.com/device=notadevice: host device node /etc/passwd for /dev/x is a regular file, but the spec says a device node"
        );
        assert_eq!(
            err("example.com/device=wrongtype"),
            "container c1: CDI device example.com/device=wrongtype: host device node /dev/zero for /dev/y is a character device, but the spec says a block device"
        );
    }

    #[test]
    fn a_spec_without_linux_is_refused() {
        let mut spec = container_spec();
        spec.set_linux(None);
        assert_eq!(
            edit("example.com/device=zero", &mut spec).unwrap_err().to_string(),
            "container c1: CDI devices example.com/device=zero need a Linux container, but the spec has no linux section"
        );
    }

    #[test]
    fn unapplied_fields_are_listed() {
        let text = "cdiVersion: 0.7.0\nkind: a.com/b\ndevices:\n- name: x\n  containerEdits:\n    intelRdt:\n      closID: c\n";
        let registry = CdiRegistry::new(
            Vec::new(),
            vec![LoadedSpec {
                path: "/etc/cdi/b.yaml".into(),
                priority: 0,
                spec: CdiSpec::parse(Path::new("b.yaml"), text).unwrap(),
            }],
            Vec::new(),
        );
        let resolved = registry
            .resolve("c", &[QualifiedName::parse("a.com/b=x").unwrap()])
            .unwrap();
        let edits = resolved.complete("c", &FakeHost).unwrap();
        assert_eq!(edits.ignored, ["intelRdt (a.com/b=x)"]);
    }
}
