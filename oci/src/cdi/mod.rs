//! CDI (Container Device Interface) decisions: which devices `triage.io/gpu` asks for,
//! what the node's CDI spec files say about them, and how they change the OCI spec.
//!
//! Reading the spec files and stat'ing host device nodes are side effects and live in
//! `triage-runtime`; here the specs arrive as text and host nodes through
//! [`HostDeviceNodes`].

pub mod edits;
pub mod error;
pub mod name;
pub mod registry;
pub mod request;
pub mod spec;

pub use edits::{
    AppliedEdits, CompleteDeviceNode, DeviceEdits, HostDeviceNodes, HostFileType, HostNode,
    NodeType,
};
pub use error::CdiError;
pub use name::{DeviceKind, QualifiedName};
pub use registry::{CdiRegistry, LoadedSpec, ResolvedDevice, ResolvedDevices, SkippedSpecFile};
pub use request::{
    check_consent, parse_device_request, requested_devices, CRI_ANNOTATION_PREFIX,
    DEFAULT_GPU_KIND, GPU_ANNOTATION,
};
pub use spec::CdiSpec;

/// Where CDI spec files live unless the node profile says otherwise, lowest priority
/// first (a device in `/var/run/cdi` replaces the same device in `/etc/cdi`).
pub const DEFAULT_SPEC_DIRS: [&str; 2] = ["/etc/cdi", "/var/run/cdi"];
