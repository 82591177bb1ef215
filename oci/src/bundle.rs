//! An OCI bundle as Triage sees it: the spec, the container's root on the host, its bind mounts.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;

use crate::error::PlanError;

/// The default `PATH` used when the spec's environment has none (runc's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// A loaded bundle: `config.json` plus where its root lives on the host.
#[derive(Debug, Clone)]
pub struct Bundle {
    /// Container id, used in every error.
    pub id: String,
    /// The bundle directory.
    pub dir: PathBuf,
    /// The parsed `config.json`.
    pub spec: Spec,
}

impl Bundle {
    /// Loads `<dir>/config.json`.
    pub fn load(id: &str, dir: &Path) -> Result<Self, PlanError> {
        let path = dir.join("config.json");
        let spec = Spec::load(&path).map_err(|e| PlanError::Spec {
            id: id.to_owned(),
            path: path.clone(),
            reason: e.to_string(),
        })?;
        Ok(Self::from_spec(id, dir, spec))
    }

    /// Wraps an already parsed spec.
    pub fn from_spec(id: &str, dir: &Path, spec: Spec) -> Self {
        Self {
            id: id.to_owned(),
            dir: dir.to_path_buf(),
            spec,
        }
    }

    /// The container's root directory on the host (`root.path`, relative to the bundle).
    pub fn rootfs(&self) -> PathBuf {
        let root = self
            .spec
            .root()
            .as_ref()
            .map(|r| r.path().clone())
            .unwrap_or_else(|| PathBuf::from("rootfs"));
        if root.is_absolute() {
            root
        } else {
            self.dir.join(root)
        }
    }

    /// Annotations, empty when the spec has none.
    pub fn annotations(&self) -> HashMap<String, String> {
        self.spec.annotations().clone().unwrap_or_default()
    }

    /// `process.args`, empty when absent.
    pub fn args(&self) -> &[String] {
        self.spec
            .process()
            .as_ref()
            .and_then(|p| p.args().as_deref())
            .unwrap_or(&[])
    }

    /// `process.env` as (name, value) pairs, in spec order.
    pub fn env(&self) -> Vec<(String, String)> {
        self.spec
            .process()
            .as_ref()
            .and_then(|p| p.env().as_ref())
            .map(|env| {
                env.iter()
                    .map(|kv| match kv.split_once('=') {
                        Some((k, v)) => (k.to_owned(), v.to_owned()),
                        None => (kv.clone(), String::new()),
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `process.cwd`, `/` when absent.
    pub fn cwd(&self) -> PathBuf {
        self.spec
            .process()
            .as_ref()
            .map(|p| p.cwd().clone())
            .filter(|c| !c.as_os_str().is_empty())
            .unwrap_or_else(|| PathBuf::from("/"))
    }

    /// The `PATH` the container's process will search.
    pub fn search_path(&self) -> String {
        self.env()
            .into_iter()
            .find(|(k, _)| k == "PATH")
            .map(|(_, v)| v)
            .unwrap_or_else(|| DEFAULT_PATH.to_owned())
    }

    /// Bind mounts as (destination in the container, source on the host, read-only).
    pub fn bind_mounts(&self) -> Vec<(PathBuf, PathBuf, bool)> {
        self.spec
            .mounts()
            .as_deref()
            .unwrap_or(&[])
            .iter()
            .filter_map(|m| {
                let options = m.options().as_deref().unwrap_or(&[]);
                let is_bind = m.typ().as_deref() == Some("bind")
                    || options.iter().any(|o| o == "bind" || o == "rbind");
                let source = m.source().as_ref()?;
                is_bind.then(|| {
                    (
                        m.destination().clone(),
                        source.clone(),
                        options.iter().any(|o| o == "ro"),
                    )
                })
            })
            .collect()
    }
}
