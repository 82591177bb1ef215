//! Test support for Triage: a private containerd, `ctr` helpers and leftover checks.
//!
//! Everything here drives the real thing: Debian's `containerd` and `ctr`, started with
//! config, root, state and sockets under one temporary directory, stopped by PID.

mod api;
mod containerd;
pub mod cri;
mod host;
pub mod models;

pub use containerd::{
    pod_network, remove_namespace_cgroups, CtrOutput, PrivateContainerd, CRI_NAMESPACE, NAMESPACE,
    PAUSE_IMAGE, TRIAGE_RUNTIME,
};
pub use host::{
    cgroup_dirs_named, images_dir, leftovers, missing_requirements, require_host, shim_dir,
};
