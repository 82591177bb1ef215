//! The cgroup v2 path on a v1-hybrid host: a cgroup2 hierarchy this test mounts itself
//! (processes, freezer, cpu.stat, kill, as the kernel really does them) and a fake v2
//! tree in a temp dir for the limit files libcgroups writes from Triage's resources.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use libcgroups::common::{CgroupManager, ControllerOpt, FreezerState};
use libcgroups::v2::manager::Manager;
use oci_spec::runtime::{LinuxBuilder, LinuxPidsBuilder, LinuxResourcesBuilder, SpecBuilder};
use triage_oci::{admit, NodeProfile};
use triage_runtime::cgroup_procs::{procs_file, usage_under, CgroupUsage, MemoryCgroup};

/// cgroup2 mounted on a temp dir, unmounted on drop.
struct Cgroup2Mount {
    dir: tempfile::TempDir,
}

impl Cgroup2Mount {
    fn new() -> Result<Self, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        nix::mount::mount(
            Some("cgroup2"),
            dir.path(),
            Some("cgroup2"),
            nix::mount::MsFlags::empty(),
            None::<&str>,
        )
        .map_err(|e| format!("mount -t cgroup2: {e}"))?;
        Ok(Self { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Cgroup2Mount {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

fn can_mount() -> bool {
    if nix::unistd::Uid::effective().is_root() {
        return true;
    }
    if std::env::var("CI").as_deref() == Ok("true") {
        panic!("CI must run the cgroup v2 tests as root");
    }
    eprintln!("SKIPPED: mounting cgroup2 needs root");
    false
}

fn sleeper() -> Child {
    Command::new("sleep")
        .arg("600")
        .spawn()
        .expect("spawn sleep")
}

fn line_of(text: &str, key: &str) -> Option<String> {
    text.lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ').map(str::to_owned))
}

#[test]
fn a_real_cgroup2_hierarchy_holds_freezes_reads_and_kills_a_container() {
    if !can_mount() {
        return;
    }
    let mount = Cgroup2Mount::new().expect("this kernel mounts cgroup2");
    let name = format!("triage-v2-test-{}", std::process::id());
    let relative = PathBuf::from(format!("/{name}"));
    let dir = mount.path().join(&name);
    let manager = Manager::new(mount.path().to_path_buf(), relative.clone()).unwrap();
    let mut child = sleeper();
    let pid = child.id();
    manager
        .add_task(nix::unistd::Pid::from_raw(pid as i32))
        .unwrap();

    // The kernel moved the process: /proc says so, and Pids finds it through v2 files.
    let proc_cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let unified = format!("0::/{name}\n");
    assert!(proc_cgroup.contains(unified.trim()), "{proc_cgroup}");
    let procs = procs_file(mount.path(), &unified).unwrap();
    assert_eq!(procs, dir.join("cgroup.procs"));
    assert_eq!(
        std::fs::read_to_string(&procs).unwrap().trim(),
        pid.to_string()
    );

    // Stats read the real v2 files; cpu.stat exists even without the cpu controller.
    match usage_under(mount.path(), &unified) {
        Some(CgroupUsage::V2(usage)) => {
            assert!(usage.cpu_stat.contains_key("usage_usec"), "{usage:?}")
        }
        other => panic!("expected v2 usage, got {other:?}"),
    }
    // The memory controller is on v1 here: no v2 memory cgroup for OOM accounting.
    let controllers = std::fs::read_to_string(mount.path().join("cgroup.controllers")).unwrap();
    assert_eq!(
        MemoryCgroup::from_proc(mount.path(), &unified).is_some(),
        controllers.split_whitespace().any(|c| c == "memory")
    );

    // Pause/Resume on v2 is cgroup.freeze; the kernel reports it in cgroup.events.
    manager.freeze(FreezerState::Frozen).unwrap();
    let events = std::fs::read_to_string(dir.join("cgroup.events")).unwrap();
    assert_eq!(line_of(&events, "frozen").as_deref(), Some("1"), "{events}");
    manager.freeze(FreezerState::Thawed).unwrap();
    let events = std::fs::read_to_string(dir.join("cgroup.events")).unwrap();
    assert_eq!(line_of(&events, "frozen").as_deref(), Some("0"), "{events}");

    // Delete: cgroup.kill ends every process, then the directory goes.
    manager.remove().unwrap();
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert!(!dir.exists());
}

#[test]
fn limits_and_node_defaults_become_v2_interface_files() {
    // A fake unified tree: the files a v2 host has at its root.
    let root = tempfile::tempdir().unwrap();
    std::fs::write(
        root.path().join("cgroup.controllers"),
        "cpuset cpu io memory hugetlb pids\n",
    )
    .unwrap();
    std::fs::write(root.path().join("cgroup.subtree_control"), "").unwrap();

    // A container that sets only shares and a pids limit; the node profile fills in
    // its CPU and memory limits as the shim does at Create.
    let resources = LinuxResourcesBuilder::default()
        .cpu(
            oci_spec::runtime::LinuxCpuBuilder::default()
                .shares(512u64)
                .build()
                .unwrap(),
        )
        .pids(LinuxPidsBuilder::default().limit(64).build().unwrap())
        .build()
        .unwrap();
    let mut spec = SpecBuilder::default()
        .linux(
            LinuxBuilder::default()
                .resources(resources)
                .build()
                .unwrap(),
        )
        .build()
        .unwrap();
    let defaulted = admit("v2-fake", &mut spec, &NodeProfile::default()).unwrap();
    assert_eq!(defaulted, vec!["CPU 1", "memory 256 MiB"]);
    let resources = spec.linux().as_ref().unwrap().resources().clone().unwrap();

    // The container's cgroup as the kernel creates it: the interface files of the
    // enabled controllers (empty: libcgroups writes without truncating, as a real
    // interface file needs).
    let cgroup = root.path().join("kubepods/c1");
    std::fs::create_dir_all(&cgroup).unwrap();
    for file in [
        "cgroup.procs",
        "cpu.weight",
        "cpu.max",
        "memory.min",
        "memory.low",
        "memory.high",
        "memory.max",
        "memory.swap.max",
        "pids.max",
    ] {
        std::fs::write(cgroup.join(file), "").unwrap();
    }
    let manager = Manager::new(root.path().to_path_buf(), PathBuf::from("/kubepods/c1")).unwrap();
    manager
        .apply(&ControllerOpt {
            resources: &resources,
            disable_oom_killer: false,
            oom_score_adj: None,
            freezer_state: None,
        })
        .unwrap();
    let read = |file: &str| {
        std::fs::read_to_string(root.path().join("kubepods/c1").join(file))
            .unwrap_or_else(|e| panic!("{file}: {e}"))
            .trim()
            .to_owned()
    };
    assert_eq!(read("cpu.max"), "100000 100000");
    assert_eq!(read("memory.max"), "268435456");
    assert_eq!(read("pids.max"), "64");
    // shares 512 → weight 59: the logarithmic conversion crun (and runc ≥ 1.3) use, so
    // 1024 shares stay the default weight 100.
    assert_eq!(read("cpu.weight"), "59");
}
