//! Lists the processes of a container from its cgroup, found through its init process.

use std::path::{Path, PathBuf};

/// The `cgroup.procs` file of the cgroup `init_pid` belongs to, under `cgroup_root`
/// (normally `/sys/fs/cgroup`): the v1 `pids` hierarchy when there is one, else v2.
pub fn procs_file(cgroup_root: &Path, proc_cgroup: &str) -> Option<PathBuf> {
    let mut v2 = None;
    for line in proc_cgroup.lines() {
        let mut fields = line.splitn(3, ':');
        let (Some(_), Some(controllers), Some(path)) =
            (fields.next(), fields.next(), fields.next())
        else {
            continue;
        };
        let relative = path.trim_start_matches('/');
        if controllers.split(',').any(|c| c == "pids") {
            return Some(cgroup_root.join("pids").join(relative).join("cgroup.procs"));
        }
        if controllers.is_empty() {
            v2 = Some(cgroup_root.join(relative).join("cgroup.procs"));
        }
    }
    v2
}

/// The pids in the cgroup of `init_pid`; just `init_pid` when it cannot be read.
pub fn container_pids(init_pid: u32) -> Vec<u32> {
    let proc_cgroup =
        std::fs::read_to_string(format!("/proc/{init_pid}/cgroup")).unwrap_or_default();
    let pids: Vec<u32> = procs_file(Path::new("/sys/fs/cgroup"), &proc_cgroup)
        .and_then(|file| std::fs::read_to_string(file).ok())
        .map(|text| text.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default();
    if pids.is_empty() {
        vec![init_pid]
    } else {
        pids
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_hybrid_uses_the_pids_hierarchy() {
        let proc_cgroup = "12:pids:/triage-test/c1\n4:memory:/triage-test/c1\n0::/triage-test/c1\n";
        assert_eq!(
            procs_file(Path::new("/sys/fs/cgroup"), proc_cgroup),
            Some(PathBuf::from(
                "/sys/fs/cgroup/pids/triage-test/c1/cgroup.procs"
            ))
        );
    }

    #[test]
    fn pure_v2_uses_the_unified_path() {
        assert_eq!(
            procs_file(Path::new("/sys/fs/cgroup"), "0::/kubepods/pod1/c2\n"),
            Some(PathBuf::from(
                "/sys/fs/cgroup/kubepods/pod1/c2/cgroup.procs"
            ))
        );
        assert_eq!(procs_file(Path::new("/sys/fs/cgroup"), ""), None);
    }

    #[test]
    fn own_process_is_listed() {
        let me = std::process::id();
        assert!(container_pids(me).contains(&me));
    }
}
