//! Resource limits end to end: memory hogs fail cleanly, spinners are capped and killable.

use std::time::{Duration, Instant};

use crate::support::*;

const MIB_64: &str = "67108864";

#[test]
fn wasm_memory_hog_gets_a_failed_grow_naming_the_limit() {
    let Some(ctd) = containerd("wasm_memory_hog_gets_a_failed_grow_naming_the_limit") else {
        return;
    };
    let out = run(
        &ctd,
        &["--memory-limit", MIB_64],
        WASM_IMAGE,
        "hog-wasm",
        &["/memhog.wasm"],
    );
    // The guest's allocator sees memory.grow fail and aborts: a trap, not an OOM kill.
    assert_eq!(out.code, 134, "{out:?}\n{}", ctd.log());
    assert!(out.stdout.contains("memhog holds 16 MiB"), "{out:?}");
    let refusal = "refused: the container's memory limit is 64.0 MiB (67108864 bytes)";
    assert!(out.stderr.contains(refusal), "{out:?}");
    wait_for_log(&ctd, "hog-wasm", refusal);
    let log = wait_for_log(&ctd, "hog-wasm", "wasm guest trapped");
    assert!(!log.contains("OOM killer"), "{log}");
    assert_clean(&ctd, "hog-wasm");
}

#[test]
fn native_memory_hog_is_oom_killed_with_an_event_and_a_reason() {
    let Some(ctd) = containerd("native_memory_hog_is_oom_killed_with_an_event_and_a_reason") else {
        return;
    };
    let events = EventStream::subscribe(&ctd);
    // busybox dd allocates its whole 256 MiB block and fills it.
    let out = run(
        &ctd,
        &["--memory-limit", MIB_64],
        BUSYBOX_IMAGE,
        "hog-native",
        &["dd", "if=/dev/zero", "of=/dev/null", "bs=256M", "count=1"],
    );
    assert_eq!(out.code, 137, "{out:?}\n{}", ctd.log());
    let topics = events.topics_until_delete(&ctd, "hog-native");
    assert_eq!(
        topics,
        vec![
            "/tasks/create",
            "/tasks/start",
            "/tasks/oom",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
    wait_for_log(
        &ctd,
        "hog-native",
        "OOM killer killed a process of the container (memory limit 64.0 MiB)",
    );
    assert_clean(&ctd, "hog-native");
}

#[test]
fn spinning_wasm_guest_is_interrupted_by_kill() {
    let Some(ctd) = containerd("spinning_wasm_guest_is_interrupted_by_kill") else {
        return;
    };
    let mut child = spawn_run(&ctd, WASM_IMAGE, "spin-kill", &["/spin.wasm"], &[]);
    assert_eq!(first_line(&mut child), "spinning");
    // SIGTERM: the guest never calls the host, so only the epoch check can stop it.
    assert_eq!(ctd.ctr(&["task", "kill", "spin-kill"]).code, 0);
    assert_eq!(finish(child).code, 143);
    wait_for_log(
        &ctd,
        "spin-kill",
        "wasm guest interrupted by signal 15 at its next epoch check",
    );
    assert_clean(&ctd, "spin-kill");
}

/// The v1 directory of `controller` for process `pid` (co-mounted or not).
fn v1_dir(pid: u32, controller: &str) -> String {
    let proc_cgroup = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    proc_cgroup
        .lines()
        .find_map(|line| {
            let mut fields = line.splitn(3, ':');
            let (_, controllers, path) = (fields.next()?, fields.next()?, fields.next()?);
            controllers
                .split(',')
                .any(|c| c == controller)
                .then(|| format!("/sys/fs/cgroup/{controllers}{path}"))
        })
        .unwrap_or_else(|| panic!("process {pid} has no v1 {controller} cgroup"))
}

/// `cpuacct.usage` (ns) and `cpu.stat` `nr_periods` of process `pid`'s cgroups.
fn cpu_accounting(pid: u32) -> (u64, u64) {
    let read = |controller: &str, file: &str| {
        let path = format!("{}/{file}", v1_dir(pid, controller));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    };
    let periods = read("cpu", "cpu.stat")
        .lines()
        .find_map(|l| l.strip_prefix("nr_periods "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap();
    (
        read("cpuacct", "cpuacct.usage").trim().parse().unwrap(),
        periods,
    )
}

#[test]
fn spinners_at_half_a_cpu_use_half_a_cpu() {
    // Alone on the machine: the lower bound needs the CPU time the quota allows.
    let Some(ctd) = containerd_alone("spinners_at_half_a_cpu_use_half_a_cpu") else {
        return;
    };
    if !std::fs::read_to_string("/proc/self/cgroup")
        .unwrap_or_default()
        .contains("cpuacct")
    {
        eprintln!("SKIPPED: reads cgroup v1 cpu,cpuacct accounting; this host has none");
        return;
    }
    let flags = ["--cpus", "0.5"];
    let mut wasm = spawn_run(&ctd, WASM_IMAGE, "cpu-wasm", &["/spin.wasm"], &flags);
    let mut native = spawn_run(
        &ctd,
        BUSYBOX_IMAGE,
        "cpu-native",
        &["sh", "-c", "echo spinning; while :; do :; done"],
        &flags,
    );
    assert_eq!(first_line(&mut wasm), "spinning");
    assert_eq!(first_line(&mut native), "spinning");
    let pids = ["cpu-wasm", "cpu-native"].map(|id| task_pid(&ctd, id).unwrap());
    for pid in pids {
        let dir = v1_dir(pid, "cpu");
        assert!(
            dir.ends_with("/triage-test/cpu-wasm") || dir.ends_with("/triage-test/cpu-native"),
            "{dir}"
        );
        let read = |f: &str| std::fs::read_to_string(format!("{dir}/{f}")).unwrap();
        assert_eq!(read("cpu.cfs_quota_us").trim(), "50000", "{dir}");
        assert_eq!(read("cpu.cfs_period_us").trim(), "100000", "{dir}");
    }
    // The cgroup's own clock: CPU time used per CFS period it was runnable in. Both
    // spin in every period, so the ratio is the share of a CPU each one gets.
    let before = pids.map(cpu_accounting);
    let deadline = Instant::now() + Duration::from_secs(30);
    while cpu_accounting(pids[0]).1 < before[0].1 + 20
        || cpu_accounting(pids[1]).1 < before[1].1 + 20
    {
        assert!(Instant::now() < deadline, "CFS periods did not advance");
        std::thread::sleep(Duration::from_millis(100));
    }
    for ((id, pid), (usage0, periods0)) in
        ["cpu-wasm", "cpu-native"].into_iter().zip(pids).zip(before)
    {
        let (usage, periods) = cpu_accounting(pid);
        let share = (usage - usage0) as f64 / ((periods - periods0) as f64 * 100_000_000.0);
        eprintln!("{id}: {share:.3} of a CPU per CFS period");
        assert!(
            (0.35..=0.65).contains(&share),
            "{id} used {share:.2} of a CPU per period"
        );
    }
    for (id, child) in [("cpu-wasm", wasm), ("cpu-native", native)] {
        kill_and_check_clean(&ctd, id, child);
    }
}

#[test]
fn requests_beyond_the_node_profile_are_refused_at_create() {
    let Some(ctd) = containerd("requests_beyond_the_node_profile_are_refused_at_create") else {
        return;
    };
    // The built-in edge profile: 4 CPU / 8 GiB, 250m / 512 MiB reserved.
    let out = run(
        &ctd,
        &["--memory-limit", "17179869184"],
        BUSYBOX_IMAGE,
        "cap-memory",
        &["true"],
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains(
            "container cap-memory: asks for a memory limit of 16 GiB, more than this node can \
             give a container: 7.5 GiB allocatable (node profile: capacity 4 CPU / 8 GiB, \
             reserve 250m CPU / 512 MiB)"
        ),
        "{out:?}"
    );
    let out = run(
        &ctd,
        &["--cpus", "6"],
        WASM_IMAGE,
        "cap-cpu",
        &["/hello.wasm"],
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("container cap-cpu: asks for a CPU limit of 6, more than this node"),
        "{out:?}"
    );
    assert!(shim_log(&ctd, "cap-cpu").contains("asks for a CPU limit of 6"));

    // The profile file is read at each Create.
    ctd.write_node_profile(
        "[capacity]\ncpu = 2\nmemory = \"1Gi\"\n[reserve]\nmemory = \"128Mi\"\n",
    )
    .unwrap();
    let out = run(
        &ctd,
        &["--memory-limit", "1073741824"],
        WASM_IMAGE,
        "cap-small",
        &["/hello.wasm"],
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("a memory limit of 1 GiB, more than this node can give a container: 896 MiB allocatable"),
        "{out:?}"
    );
    ctd.write_node_profile("[capacity]\nmemory = \"lots\"\n")
        .unwrap();
    let out = run(&ctd, &[], WASM_IMAGE, "cap-broken", &["/hello.wasm"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("container cap-broken: node profile ")
            && out
                .stderr
                .contains("triage-config.toml: capacity.memory: \"lots\" is not a memory quantity"),
        "{out:?}"
    );
    for id in ["cap-memory", "cap-cpu", "cap-small", "cap-broken"] {
        assert_clean(&ctd, id);
    }
}

#[test]
fn containers_without_limits_get_the_profile_defaults() {
    let Some(ctd) = containerd("containers_without_limits_get_the_profile_defaults") else {
        return;
    };
    if !std::path::Path::new("/sys/fs/cgroup/memory/memory.limit_in_bytes").exists() {
        eprintln!("SKIPPED: reads cgroup v1 limit files; this host has no v1 memory hierarchy");
        return;
    }
    ctd.write_node_profile("[defaults]\ncpu = \"500m\"\nmemory = \"128Mi\"\n")
        .unwrap();
    for (image, id, args) in [
        (WASM_IMAGE, "default-wasm", vec!["/sleeper.wasm"]),
        (
            BUSYBOX_IMAGE,
            "default-native",
            vec!["sh", "-c", "echo sleeper ready; exec sleep 600"],
        ),
    ] {
        let mut child = spawn_run(&ctd, image, id, &args, &[]);
        assert_eq!(first_line(&mut child), "sleeper ready");
        let pid = task_pid(&ctd, id).unwrap();
        let read = |controller: &str, file: &str| {
            std::fs::read_to_string(format!("{}/{file}", v1_dir(pid, controller)))
                .unwrap()
                .trim()
                .to_owned()
        };
        assert_eq!(read("memory", "memory.limit_in_bytes"), "134217728", "{id}");
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000", "{id}");
        assert_eq!(read("cpu", "cpu.cfs_period_us"), "100000", "{id}");
        let log = shim_log(&ctd, id);
        assert!(
            log.contains("node profile defaults applied where the spec sets no limit: CPU 0.5, memory 128 MiB"),
            "{log}"
        );
        kill_and_check_clean(&ctd, id, child);
    }
}
