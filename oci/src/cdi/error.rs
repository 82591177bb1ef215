//! Why a container's CDI devices could not be given to it; each error names the
//! container and the device, annotation or file that was wrong.

use std::path::PathBuf;

use super::edits::NodeType;

/// Why CDI devices could not be resolved or applied.
#[derive(Debug, thiserror::Error)]
pub enum CdiError {
    /// The annotation's value does not parse.
    #[error(
        "container {id}: annotation {key}={} is not valid: {reason} (expected {expected})",
        crate::error::excerpt(.value)
    )]
    InvalidRequest {
        /// Container id.
        id: String,
        /// The annotation key.
        key: &'static str,
        /// Its value.
        value: String,
        /// What is wrong with it.
        reason: String,
        /// What it may be.
        expected: &'static str,
    },
    /// The node does not let containers ask for this device by annotation.
    #[error("container {id}: CDI device {device} may not be requested by annotation {key} on this node (the node profile's [cdi] annotation_devices allows {allowed}); devices a device plugin or DRA assigns reach containers through containerd's own CDI injection")]
    NotAllowed {
        /// Container id.
        id: String,
        /// The annotation key.
        key: &'static str,
        /// The requested device.
        device: String,
        /// What the node allows, as text.
        allowed: String,
    },
    /// No loaded spec file defines the requested device's kind.
    #[error("container {id}: CDI device {device} is not defined: no CDI spec for kind {} in {searched}{notes}", kind_of(.device))]
    UnknownKind {
        /// Container id.
        id: String,
        /// The requested device.
        device: String,
        /// The directories searched, as text.
        searched: String,
        /// `; known kinds: ...` and `; skipped invalid spec files: ...`, or empty.
        notes: String,
    },
    /// The kind is known but has no device of that name.
    #[error("container {id}: CDI device {device} is not defined: kind {} has devices {known}{skipped}", kind_of(.device))]
    UnknownDevice {
        /// Container id.
        id: String,
        /// The requested device.
        device: String,
        /// The kind's devices, as text.
        known: String,
        /// `; skipped invalid spec files: ...`, or empty.
        skipped: String,
    },
    /// Two spec files in the same directory define the device differently.
    #[error("container {id}: CDI device {device} is defined by more than one spec file in the same directory ({files}); remove all but one")]
    Conflict {
        /// Container id.
        id: String,
        /// The requested device.
        device: String,
        /// The files, as text.
        files: String,
    },
    /// A device node's host node could not be examined.
    #[error(
        "container {id}: CDI device {device}: host device node {host_path} for {path}: {source}"
    )]
    HostNode {
        /// Container id.
        id: String,
        /// The device (or spec) whose edits name the node.
        device: String,
        /// Path in the container.
        path: String,
        /// Path on the host.
        host_path: PathBuf,
        /// Why it could not be stat'ed.
        source: std::io::Error,
    },
    /// A device node's host node is of another type than the spec says.
    #[error(
        "container {id}: CDI device {device}: host device node {host_path} for {path} is {found}, but the spec says {}",
        .expected.map_or("a device node", NodeType::describe)
    )]
    HostNodeType {
        /// Container id.
        id: String,
        /// The device (or spec) whose edits name the node.
        device: String,
        /// Path in the container.
        path: String,
        /// Path on the host.
        host_path: PathBuf,
        /// What the host node is.
        found: &'static str,
        /// What the spec says it is (`None`: any device node).
        expected: Option<NodeType>,
    },
    /// The OCI spec has no `linux` section to put device nodes in.
    #[error("container {id}: CDI devices {devices} need a Linux container, but the spec has no linux section")]
    NotLinux {
        /// Container id.
        id: String,
        /// The requested devices, as text.
        devices: String,
    },
}

/// The kind of a qualified device name (`vendor.com/class` of `vendor.com/class=name`).
fn kind_of(device: &str) -> &str {
    device.split_once('=').map_or(device, |(kind, _)| kind)
}
