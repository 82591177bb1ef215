//! Triage's executors: the Wasm engine, the native container path, rootfs mounts and stdio.
//!
//! Process model: the shim never forks from its own (multi-threaded) process. Every
//! container is created by a freshly exec'd helper process (see [`container`]) that calls
//! youki's `libcontainer` with [`container::TriageExecutor`]. libcontainer builds the
//! container (namespaces, cgroups, mounts, `pivot_root`); inside it the executor either
//! `execve`s the native entrypoint or runs the Wasm guest in the engine, confined by WASI
//! preopens to the container's own root and mounts.
#![deny(missing_docs)]

pub mod cdi;
pub mod cgroup_procs;
pub mod container;
pub mod engine;
pub mod error;
pub mod lsm;
pub mod nn;
pub mod pipe;
pub mod read_only;
pub mod rootfs;
pub mod stdio;

pub use error::RuntimeError;
