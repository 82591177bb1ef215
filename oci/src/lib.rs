//! Pure decisions for Triage: what a container runs (Wasm or native) and why.
//!
//! `triage-oci` reads an OCI bundle's `config.json`, its annotations and the first bytes
//! of its entrypoint, and returns a [`WorkloadPlan`]. It performs no side effects beyond
//! reading files: no mounts, no processes, no cgroups. Everything here is unit-tested
//! without root.
#![deny(missing_docs)]

pub mod annotations;
pub mod bundle;
pub mod cdi;
pub mod container_fs;
pub mod egress;
pub mod engine;
pub mod entrypoint;
pub mod error;
pub mod guest_view;
pub mod image;
pub mod lsm_labels;
pub mod nn;
pub mod node_profile;
pub mod plan;
pub mod quota;
pub mod runtime_options;

mod decide;

pub use annotations::RuntimeChoice;
pub use bundle::Bundle;
pub use decide::{decide, plan_workload, Decision, NodeContext, PlanFiles};
pub use egress::{EgressGrant, EgressGrants, GrantedHost};
pub use engine::{EngineChoice, EngineName, EngineSource};
pub use entrypoint::{Entrypoint, EntrypointKind};
pub use error::PlanError;
pub use image::ImageFacts;
pub use nn::{NnPreload, NnSettings};
pub use node_profile::{
    CacheLocation, CdiSettings, FileLimits, NodeProfile, ProfileError, Resources, WasmSettings,
};
pub use plan::{
    DecisionReason, Listen, ListenSource, ModuleSource, Preopen, SnapshotPlan, WasmForm, WasmPlan,
    WorkloadKind, WorkloadPlan, DEFAULT_LISTEN, DEFAULT_REQUEST_TIMEOUT_MS, DEFAULT_SNAPSHOT_INIT,
    DEFAULT_SNAPSHOT_INIT_SECONDS, LISTEN_ENV,
};
pub use quota::{admit, CgroupQuota};
pub use runtime_options::RuntimeOptions;

/// The OCI runtime-spec types Triage works with (re-exported so that every crate uses one version).
pub use oci_spec::runtime::{LinuxResources, Spec};
