//! Charges the node's work for one container (compiling its module, its snapshot's init, preparing its models) to that container's cgroup.
//!
//! The create helper does that work before libcontainer forks the container's init, in
//! the helper's own cgroup: containerd's. So the helper joins the container's cgroup
//! (created here with the spec's limits, exactly where libcontainer will put the init)
//! for the work, and leaves it again before libcontainer runs: what it allocated stays
//! charged to the container (the kernel does not move charges with a process), the CPU
//! it used is the container's, its limits (memory, CPU quota, pids) bound the work, and
//! libcontainer's own clean-up, which kills every process of the cgroup, never finds the
//! helper there.

use std::path::{Path, PathBuf};

use libcgroups::common::{create_cgroup_manager, CgroupConfig, CgroupManager};
use libcontainer::oci_spec::runtime::Spec;

use crate::error::RuntimeError;

/// Where cgroup hierarchies are mounted (as everywhere else in Triage).
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The helper, inside the container's cgroup until [`Charged::leave`].
#[derive(Debug)]
pub struct Charged {
    id: String,
    /// `/proc/self/cgroup` before joining.
    before: String,
}

/// Moves this process into the cgroup the container of `spec` will have, with the
/// spec's limits applied; `None` (logged) where that cannot be done, and the work is then
/// done where the helper is.
pub fn enter(id: &str, spec: &Spec) -> Option<Charged> {
    let before = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    let linux = spec.linux().as_ref();
    let cgroups_path = linux.and_then(|l| l.cgroups_path().clone());
    let joined = create_cgroup_manager(CgroupConfig {
        cgroup_path: libcontainer::utils::get_cgroup_path(&cgroups_path, id),
        systemd_cgroup: false,
        container_name: id.to_owned(),
    })
    .map_err(|e| e.to_string())
    .and_then(|manager| {
        manager
            .add_task(nix::unistd::Pid::this())
            .map_err(|e| e.to_string())?;
        if let Some(resources) = linux.and_then(|l| l.resources().as_ref()) {
            manager
                .apply(&super::limits(resources))
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    });
    let charged = Charged {
        id: id.to_owned(),
        before,
    };
    match joined {
        Ok(()) => Some(charged),
        Err(e) => {
            tracing::warn!(
                container = %id,
                "cannot charge the node's work for container {id} to its cgroup ({e}); it is done in the shim's"
            );
            // Back where it was, whatever of the move happened.
            if let Err(e) = charged.leave() {
                tracing::warn!(container = %id, "{e}");
            }
            None
        }
    }
}

impl Charged {
    /// Moves this process back to the cgroups it was in before [`enter`].
    pub fn leave(self) -> Result<(), RuntimeError> {
        let now = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| self.error(e))?;
        for (was, is) in self.before.lines().zip(now.lines()) {
            if was == is {
                continue;
            }
            let Some(procs) = procs_file(was) else {
                continue;
            };
            std::fs::write(&procs, std::process::id().to_string()).map_err(|e| {
                self.error(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", procs.display()),
                ))
            })?;
        }
        Ok(())
    }

    fn error(&self, source: std::io::Error) -> RuntimeError {
        RuntimeError::Container {
            id: self.id.clone(),
            op: "leave the container's cgroup after working for it",
            reason: source.to_string(),
        }
    }
}

/// The `cgroup.procs` file of one `/proc/self/cgroup` line: `<root>/<controllers>/<path>`
/// for a v1 hierarchy (`name=systemd` is mounted as `systemd`), `<root>/<path>` (or
/// `<root>/unified/<path>` beside v1 hierarchies) for v2.
fn procs_file(line: &str) -> Option<PathBuf> {
    let mut fields = line.splitn(3, ':');
    let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
    let relative = path.trim_start_matches('/');
    let root = Path::new(CGROUP_ROOT);
    let dir = if controllers.is_empty() {
        let unified = root.join("unified");
        if unified.join("cgroup.procs").exists() {
            unified.join(relative)
        } else {
            root.join(relative)
        }
    } else {
        root.join(controllers.trim_start_matches("name="))
            .join(relative)
    };
    Some(dir.join("cgroup.procs"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_hierarchy_line_names_its_procs_file() {
        assert_eq!(
            procs_file("4:cpu,cpuacct:/system.slice/containerd.service"),
            Some(PathBuf::from(
                "/sys/fs/cgroup/cpu,cpuacct/system.slice/containerd.service/cgroup.procs"
            ))
        );
        assert_eq!(
            procs_file("1:name=systemd:/user.slice"),
            Some(PathBuf::from(
                "/sys/fs/cgroup/systemd/user.slice/cgroup.procs"
            ))
        );
        assert_eq!(procs_file("garbage"), None);
    }
}
