//! Reads a container's cgroup, found through its init process: its processes, and the
//! usage figures `ctr task metrics` shows.

use std::collections::BTreeMap;
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

/// The v1 directory of `controller` for a process, from its `/proc/PID/cgroup` text:
/// `<root>/<controllers as mounted>/<path>` (e.g. `cpu,cpuacct` where co-mounted).
pub fn v1_dir(cgroup_root: &Path, proc_cgroup: &str, controller: &str) -> Option<PathBuf> {
    proc_cgroup.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
        controllers.split(',').any(|c| c == controller).then(|| {
            cgroup_root
                .join(controllers)
                .join(path.trim_start_matches('/'))
        })
    })
}

/// Usage figures of a cgroup v1 container (zero where a file is missing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupV1Usage {
    /// `memory.usage_in_bytes`.
    pub memory_usage: u64,
    /// `memory.limit_in_bytes`.
    pub memory_limit: u64,
    /// `memory.max_usage_in_bytes`.
    pub memory_max: u64,
    /// `cache` from `memory.stat`.
    pub memory_cache: u64,
    /// `rss` from `memory.stat`.
    pub memory_rss: u64,
    /// `cpuacct.usage`, nanoseconds.
    pub cpu_total_ns: u64,
    /// `cpuacct.usage_percpu`, nanoseconds.
    pub cpu_per_cpu_ns: Vec<u64>,
    /// `pids.current`.
    pub pids_current: u64,
    /// `pids.max` (0 for `max`).
    pub pids_limit: u64,
}

fn read_u64(dir: &Option<PathBuf>, file: &str) -> u64 {
    dir.as_ref()
        .and_then(|d| std::fs::read_to_string(d.join(file)).ok())
        .and_then(|t| t.trim().parse().ok())
        .unwrap_or(0)
}

/// Reads the v1 usage of the cgroups `proc_cgroup` names, under `cgroup_root`.
/// `None` when the process is not in v1 memory/cpuacct/pids hierarchies.
pub fn v1_usage(cgroup_root: &Path, proc_cgroup: &str) -> Option<CgroupV1Usage> {
    let memory = v1_dir(cgroup_root, proc_cgroup, "memory");
    let cpuacct = v1_dir(cgroup_root, proc_cgroup, "cpuacct");
    let pids = v1_dir(cgroup_root, proc_cgroup, "pids");
    if memory.is_none() && cpuacct.is_none() && pids.is_none() {
        return None;
    }
    let stat = memory
        .as_ref()
        .and_then(|d| std::fs::read_to_string(d.join("memory.stat")).ok())
        .unwrap_or_default();
    let stat_value = |key: &str| {
        stat.lines()
            .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0)
    };
    Some(CgroupV1Usage {
        memory_usage: read_u64(&memory, "memory.usage_in_bytes"),
        memory_limit: read_u64(&memory, "memory.limit_in_bytes"),
        memory_max: read_u64(&memory, "memory.max_usage_in_bytes"),
        memory_cache: stat_value("cache"),
        memory_rss: stat_value("rss"),
        cpu_total_ns: read_u64(&cpuacct, "cpuacct.usage"),
        cpu_per_cpu_ns: cpuacct
            .as_ref()
            .and_then(|d| std::fs::read_to_string(d.join("cpuacct.usage_percpu")).ok())
            .map(|t| {
                t.split_whitespace()
                    .filter_map(|v| v.parse().ok())
                    .collect()
            })
            .unwrap_or_default(),
        pids_current: read_u64(&pids, "pids.current"),
        pids_limit: read_u64(&pids, "pids.max"),
    })
}

/// Usage figures of a cgroup v2 container, as its interface files give them (missing
/// files read as empty or zero: a controller not enabled for the cgroup).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CgroupV2Usage {
    /// `memory.current`.
    pub memory_current: u64,
    /// `memory.max` (0 for `max`).
    pub memory_max: u64,
    /// `memory.peak`, where the kernel has it.
    pub memory_peak: u64,
    /// `memory.swap.current`.
    pub swap_current: u64,
    /// `memory.swap.max` (0 for `max`).
    pub swap_max: u64,
    /// `memory.stat`, key by key.
    pub memory_stat: BTreeMap<String, u64>,
    /// `memory.events` (`oom`, `oom_kill`, ...).
    pub memory_events: BTreeMap<String, u64>,
    /// `cpu.stat` (`usage_usec`, `nr_throttled`, ...); present without the cpu controller.
    pub cpu_stat: BTreeMap<String, u64>,
    /// `pids.current`.
    pub pids_current: u64,
    /// `pids.max` (0 for `max`).
    pub pids_max: u64,
}

/// A flat-keyed cgroup file (`key value` per line).
fn read_keyed(dir: &Path, file: &str) -> BTreeMap<String, u64> {
    std::fs::read_to_string(dir.join(file))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (key, value) = l.split_once(' ')?;
            Some((key.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// Reads the v2 usage of the cgroup directory `dir`.
pub fn v2_usage(dir: &Path) -> CgroupV2Usage {
    let dir = Some(dir.to_path_buf());
    let read = |file: &str| read_u64(&dir, file);
    let dir = dir.as_deref().unwrap_or(Path::new("/"));
    CgroupV2Usage {
        memory_current: read("memory.current"),
        memory_max: read("memory.max"),
        memory_peak: read("memory.peak"),
        swap_current: read("memory.swap.current"),
        swap_max: read("memory.swap.max"),
        memory_stat: read_keyed(dir, "memory.stat"),
        memory_events: read_keyed(dir, "memory.events"),
        cpu_stat: read_keyed(dir, "cpu.stat"),
        pids_current: read("pids.current"),
        pids_max: read("pids.max"),
    }
}

/// The usage of a container's cgroups, in the version the host runs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupUsage {
    /// cgroup v1 hierarchies (memory, cpuacct, pids).
    V1(CgroupV1Usage),
    /// The unified hierarchy.
    V2(CgroupV2Usage),
}

/// The usage of the container whose init process is `init_pid`: v1 where the process
/// is in v1 memory/cpuacct/pids hierarchies, else its unified cgroup.
pub fn container_usage(init_pid: u32) -> Option<CgroupUsage> {
    let proc_cgroup = std::fs::read_to_string(format!("/proc/{init_pid}/cgroup")).ok()?;
    usage_under(Path::new("/sys/fs/cgroup"), &proc_cgroup)
}

/// [`container_usage`] for a `/proc/PID/cgroup` text under `cgroup_root`.
pub fn usage_under(cgroup_root: &Path, proc_cgroup: &str) -> Option<CgroupUsage> {
    if let Some(v1) = v1_usage(cgroup_root, proc_cgroup) {
        return Some(CgroupUsage::V1(v1));
    }
    let path = proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
    let dir = cgroup_root.join(path.trim_start_matches('/'));
    dir.join("cgroup.procs")
        .exists()
        .then(|| CgroupUsage::V2(v2_usage(&dir)))
}

/// A container's memory cgroup, v1 (`memory` hierarchy) or v2 (unified), remembered at
/// Create so it can still be read after the init process is gone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MemoryCgroup {
    /// A directory in the v1 `memory` hierarchy.
    V1(PathBuf),
    /// A directory in the unified hierarchy with the `memory` controller.
    V2(PathBuf),
}

impl MemoryCgroup {
    /// The memory cgroup named in a `/proc/PID/cgroup` text, under `cgroup_root`. The
    /// v2 directory counts only where its parent delegates the `memory` controller.
    pub fn from_proc(cgroup_root: &Path, proc_cgroup: &str) -> Option<Self> {
        if let Some(dir) = v1_dir(cgroup_root, proc_cgroup, "memory") {
            return Some(Self::V1(dir));
        }
        let path = proc_cgroup.lines().find_map(|l| l.strip_prefix("0::"))?;
        let dir = cgroup_root.join(path.trim_start_matches('/'));
        dir.join("memory.max").exists().then_some(Self::V2(dir))
    }

    /// The memory cgroup of a live process.
    pub fn of_process(pid: u32) -> Option<Self> {
        let proc_cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
        Self::from_proc(Path::new("/sys/fs/cgroup"), &proc_cgroup)
    }

    /// How many processes the kernel's OOM killer has killed in this cgroup.
    pub fn oom_kills(&self) -> u64 {
        let (dir, file) = match self {
            Self::V1(dir) => (dir, "memory.oom_control"),
            Self::V2(dir) => (dir, "memory.events"),
        };
        std::fs::read_to_string(dir.join(file))
            .ok()
            .and_then(|text| {
                text.lines().find_map(|l| {
                    l.strip_prefix("oom_kill ")
                        .and_then(|v| v.trim().parse().ok())
                })
            })
            .unwrap_or(0)
    }

    /// The memory limit in bytes, `None` when unlimited or unreadable.
    pub fn limit(&self) -> Option<u64> {
        let (dir, file) = match self {
            Self::V1(dir) => (dir, "memory.limit_in_bytes"),
            Self::V2(dir) => (dir, "memory.max"),
        };
        let text = std::fs::read_to_string(dir.join(file)).ok()?;
        // v1 reports "no limit" as the largest page-aligned i64.
        text.trim()
            .parse::<u64>()
            .ok()
            .filter(|&l| l < (i64::MAX as u64) & !0xfff)
    }
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
    fn v1_usage_reads_each_controller_where_it_is_mounted() {
        let root = tempfile::tempdir().unwrap();
        let put = |dir: &str, file: &str, text: &str| {
            let d = root.path().join(dir);
            std::fs::create_dir_all(&d).unwrap();
            std::fs::write(d.join(file), text).unwrap();
        };
        put("memory/ns/c", "memory.usage_in_bytes", "4096\n");
        put("memory/ns/c", "memory.limit_in_bytes", "67108864\n");
        put(
            "memory/ns/c",
            "memory.stat",
            "cache 1024\nrss 2048\ntotal_cache 1\n",
        );
        put("cpu,cpuacct/ns/c", "cpuacct.usage", "123456\n");
        put(
            "cpu,cpuacct/ns/c",
            "cpuacct.usage_percpu",
            "100000 23456 \n",
        );
        put("pids/ns/c", "pids.current", "3\n");
        put("pids/ns/c", "pids.max", "max\n");
        let proc_cgroup =
            "9:pids:/ns/c\n4:memory:/ns/c\n3:cpu,cpuacct:/ns/c\n1:name=systemd:/ns/c\n";
        let usage = v1_usage(root.path(), proc_cgroup).unwrap();
        assert_eq!(
            usage,
            CgroupV1Usage {
                memory_usage: 4096,
                memory_limit: 67108864,
                memory_max: 0,
                memory_cache: 1024,
                memory_rss: 2048,
                cpu_total_ns: 123456,
                cpu_per_cpu_ns: vec![100000, 23456],
                pids_current: 3,
                pids_limit: 0,
            }
        );
        assert_eq!(v1_usage(root.path(), "0::/ns/c\n"), None);
    }

    #[test]
    fn v2_usage_reads_the_unified_interface_files() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("kubepods/pod1/c2");
        std::fs::create_dir_all(&dir).unwrap();
        for (file, text) in [
            ("cgroup.procs", "42\n"),
            ("memory.current", "5242880\n"),
            ("memory.max", "67108864\n"),
            ("memory.swap.current", "0\n"),
            ("memory.swap.max", "max\n"),
            ("memory.stat", "anon 4194304\nfile 1048576\npgfault 900\n"),
            ("memory.events", "low 0\nhigh 0\nmax 3\noom 1\noom_kill 1\n"),
            ("cpu.stat", "usage_usec 1500\nuser_usec 1000\nsystem_usec 500\nnr_periods 10\nnr_throttled 4\nthrottled_usec 900\n"),
            ("pids.current", "3\n"),
            ("pids.max", "64\n"),
        ] {
            std::fs::write(dir.join(file), text).unwrap();
        }
        let Some(CgroupUsage::V2(usage)) = usage_under(root.path(), "0::/kubepods/pod1/c2\n")
        else {
            panic!("not read as v2");
        };
        assert_eq!(usage.memory_current, 5242880);
        assert_eq!(usage.memory_max, 67108864);
        assert_eq!(usage.swap_max, 0);
        assert_eq!(usage.memory_stat["anon"], 4194304);
        assert_eq!(usage.memory_events["oom_kill"], 1);
        assert_eq!(usage.cpu_stat["usage_usec"], 1500);
        assert_eq!(usage.cpu_stat["nr_throttled"], 4);
        assert_eq!((usage.pids_current, usage.pids_max), (3, 64));
        // v1 wins where the process is in v1 hierarchies (a hybrid host).
        std::fs::create_dir_all(root.path().join("memory/x")).unwrap();
        assert!(matches!(
            usage_under(root.path(), "4:memory:/x\n0::/kubepods/pod1/c2\n"),
            Some(CgroupUsage::V1(_))
        ));
    }

    #[test]
    fn memory_cgroup_counts_oom_kills_on_v1_and_v2() {
        let root = tempfile::tempdir().unwrap();
        let v1 = root.path().join("memory/ns/c");
        std::fs::create_dir_all(&v1).unwrap();
        std::fs::write(
            v1.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        std::fs::write(v1.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        let cgroup = MemoryCgroup::from_proc(root.path(), "4:memory:/ns/c\n0::/ns/c\n").unwrap();
        assert_eq!(cgroup, MemoryCgroup::V1(v1));
        assert_eq!(cgroup.oom_kills(), 2);
        assert_eq!(cgroup.limit(), None);

        let v2 = root.path().join("kubepods/c2");
        std::fs::create_dir_all(&v2).unwrap();
        std::fs::write(v2.join("memory.max"), "67108864\n").unwrap();
        std::fs::write(
            v2.join("memory.events"),
            "low 0\nhigh 0\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n",
        )
        .unwrap();
        let cgroup = MemoryCgroup::from_proc(root.path(), "0::/kubepods/c2\n").unwrap();
        assert_eq!(cgroup.oom_kills(), 1);
        assert_eq!(cgroup.limit(), Some(67108864));
        // A v2 directory without the memory controller is not a memory cgroup.
        assert_eq!(MemoryCgroup::from_proc(root.path(), "0::/ns/c\n"), None);
    }

    #[test]
    fn own_process_is_listed() {
        let me = std::process::id();
        assert!(container_pids(me).contains(&me));
    }
}
