//! Task states as `ctr task ls` shows them, and the order of task events.

use std::time::{Duration, Instant};

use crate::support::*;

#[test]
fn task_ls_shows_running_then_stopped() {
    let Some(ctd) = containerd("task_ls_shows_running_then_stopped") else {
        return;
    };
    let child = spawn_run(&ctd, WASM_IMAGE, "life-wasm", &["/sleeper.wasm"], &[]);
    wait_for_status(&ctd, "life-wasm", "RUNNING");
    assert_eq!(
        ctd.ctr(&["task", "kill", "--signal", "SIGKILL", "life-wasm"])
            .code,
        0
    );
    assert_eq!(finish(child).code, 137);

    // A detached task stays listed, STOPPED, until it is deleted.
    let out = ctd.ctr(&[
        "run",
        "-d",
        "--runtime",
        TRIAGE_RUNTIME,
        BUSYBOX_IMAGE,
        "life-native",
        "true",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    wait_for_status(&ctd, "life-native", "STOPPED");
    assert_eq!(ctd.ctr(&["task", "rm", "life-native"]).code, 0);
    assert_eq!(task_status(&ctd, "life-native"), None);
    assert_eq!(ctd.ctr(&["container", "rm", "life-native"]).code, 0);
    assert_clean(&ctd, "life-native");
}

#[test]
fn task_events_arrive_in_lifecycle_order() {
    let Some(ctd) = containerd("task_events_arrive_in_lifecycle_order") else {
        return;
    };
    let events = EventStream::subscribe(&ctd);
    let out = run(&ctd, &[], WASM_IMAGE, "events-wasm", &["/exit.wasm", "3"]);
    assert_eq!(out.code, 3);
    let topics = events.topics_until_delete(&ctd, "events-wasm");
    assert_eq!(
        topics,
        vec![
            "/tasks/create",
            "/tasks/start",
            "/tasks/exit",
            "/tasks/delete"
        ]
    );
}

#[test]
fn created_task_shows_created_and_deletes_without_start() {
    let Some(ctd) = containerd("created_task_shows_created_and_deletes_without_start") else {
        return;
    };
    for (image, id, args) in [
        (WASM_IMAGE, "created-wasm", vec!["/sleeper.wasm"]),
        (BUSYBOX_IMAGE, "created-native", vec!["sleep", "600"]),
    ] {
        let mut create = vec![
            "container",
            "create",
            "--runtime",
            TRIAGE_RUNTIME,
            image,
            id,
        ];
        create.extend(args);
        let out = ctd.ctr(&create);
        assert_eq!(out.code, 0, "{out:?}");
        let pid = ctd.create_task_only(id).expect("create task");
        assert!(pid > 0);
        assert_eq!(task_status(&ctd, id).as_deref(), Some("CREATED"));
        // The init process exists and waits; the workload has not started.
        assert!(std::path::Path::new(&format!("/proc/{pid}")).exists());

        // Deleting a task that never started kills its waiting init process.
        let status = ctd.delete_task(id).expect("delete created task");
        assert_eq!(status, 137);
        assert_eq!(task_status(&ctd, id), None);
        assert_eq!(ctd.ctr(&["container", "rm", id]).code, 0);
        assert_clean(&ctd, id);
    }
}

#[test]
fn a_killed_shim_is_cleaned_up_through_the_delete_action() {
    let Some(ctd) = containerd("a_killed_shim_is_cleaned_up_through_the_delete_action") else {
        return;
    };
    kill_the_shim_and_expect_cleanup(&ctd, "crash-wasm", |_| {});
    // A shim killed while libcontainer rewrote its state file leaves an empty one: the
    // delete action then finds the cgroup through the bundle's spec.
    kill_the_shim_and_expect_cleanup(&ctd, "crash-torn", |state| {
        // Start records "running" after it woke the guest, which may print first: wait
        // for that write, or it would replace the torn file.
        let deadline = Instant::now() + Duration::from_secs(10);
        while !std::fs::read_to_string(state).is_ok_and(|s| s.contains("\"running\"")) {
            assert!(Instant::now() < deadline, "state.json never said running");
            std::thread::sleep(Duration::from_millis(5));
        }
        std::fs::write(state, b"").expect("truncate state.json");
    });
    assert!(
        shim_log(&ctd, "crash-torn").contains("unreadable state"),
        "{}",
        shim_log(&ctd, "crash-torn")
    );
}

/// Runs the Wasm sleeper as `id`, lets `damage` act on its libcontainer state file, kills
/// its shim with SIGKILL and waits until containerd's cleanup (`containerd-shim-triage-v1
/// delete`) has removed the guest, its cgroup, state and the dead shim's socket.
fn kill_the_shim_and_expect_cleanup(
    ctd: &PrivateContainerd,
    id: &str,
    damage: impl FnOnce(&std::path::Path),
) {
    let mut child = spawn_run(ctd, WASM_IMAGE, id, &["/sleeper.wasm"], &[]);
    assert_eq!(first_line(&mut child), "sleeper ready");
    let bundle = ctd.bundle_dir(id);
    let shim_pid: i32 = std::fs::read_to_string(bundle.join("shim.pid"))
        .expect("shim.pid")
        .trim()
        .parse()
        .expect("a pid");
    let address = std::fs::read_to_string(bundle.join("address")).expect("address");
    let socket = std::path::PathBuf::from(address.trim().trim_start_matches("unix://"));
    assert!(socket.exists());
    damage(&bundle.join(".triage").join(id).join("state.json"));
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(shim_pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the shim");
    // containerd 1.6 fails the pending Wait (as with runc's shim), notices the dead
    // shim and runs `containerd-shim-triage-v1 delete`, which kills the orphaned guest
    // and removes its cgroup and state.
    let out = finish(child);
    assert_ne!(out.code, 0, "{out:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    while task_status(ctd, id).is_some() {
        assert!(
            Instant::now() < deadline,
            "task never cleaned up:\n{}",
            ctd.log()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    // `ctr run --rm` still removes the container record.
    assert!(!ctd.ctr(&["container", "ls", "-q"]).stdout.contains(id));
    assert_clean(ctd, id);
    // The dead daemon's socket went with it.
    assert!(!socket.exists(), "{} left behind", socket.display());
}

#[test]
fn pause_freezes_and_resume_thaws_wasm_and_native_tasks() {
    let Some(ctd) = containerd("pause_freezes_and_resume_thaws_wasm_and_native_tasks") else {
        return;
    };
    for (image, id, args) in [
        (WASM_IMAGE, "pause-wasm", vec!["/sleeper.wasm"]),
        (BUSYBOX_IMAGE, "pause-native", vec!["sleep", "600"]),
    ] {
        let child = spawn_run(&ctd, image, id, &args, &[]);
        wait_for_status(&ctd, id, "RUNNING");
        let freezer = format!("/sys/fs/cgroup/freezer/triage-test/{id}/freezer.state");
        let freezer_state = || {
            std::fs::read_to_string(&freezer)
                .ok()
                .map(|s| s.trim().to_owned())
        };

        let out = ctd.ctr(&["task", "pause", id]);
        assert_eq!(out.code, 0, "{out:?}\n{}", ctd.log());
        assert_eq!(task_status(&ctd, id).as_deref(), Some("PAUSED"));
        if let Some(state) = freezer_state() {
            assert_eq!(state, "FROZEN");
        }
        // Pausing twice is refused with the reason.
        let again = ctd.ctr(&["task", "pause", id]);
        assert_ne!(again.code, 0);
        assert!(
            again.stderr.contains("task is Paused, not Running"),
            "{again:?}"
        );

        assert_eq!(ctd.ctr(&["task", "resume", id]).code, 0);
        assert_eq!(task_status(&ctd, id).as_deref(), Some("RUNNING"));
        if let Some(state) = freezer_state() {
            assert_eq!(state, "THAWED");
        }
        kill_and_check_clean(&ctd, id, child);
    }
}

#[test]
fn task_metrics_report_the_containers_cgroup() {
    let Some(ctd) = containerd("task_metrics_report_the_containers_cgroup") else {
        return;
    };
    if !std::path::Path::new("/sys/fs/cgroup/memory/cgroup.procs").exists() {
        eprintln!("SKIPPED: Stats reads cgroup v1 files; this host has no v1 memory hierarchy");
        return;
    }
    let mut child = spawn_run(
        &ctd,
        WASM_IMAGE,
        "metrics-wasm",
        &["/sleeper.wasm"],
        &["--memory-limit", "67108864"],
    );
    assert_eq!(first_line(&mut child), "sleeper ready");
    let out = ctd.ctr(&["task", "metrics", "metrics-wasm"]);
    assert_eq!(out.code, 0, "{out:?}\n{}", ctd.log());
    let value = |metric: &str| -> u64 {
        out.stdout
            .lines()
            .find_map(|l| {
                let mut words = l.split_whitespace();
                (words.next() == Some(metric)).then(|| words.next()?.parse().ok())?
            })
            .unwrap_or_else(|| panic!("{metric} missing from {}", out.stdout))
    };
    assert_eq!(value("memory.limit_in_bytes"), 67108864);
    assert!(value("memory.usage_in_bytes") > 0);
    assert!(value("cpuacct.usage") > 0);
    assert!(value("pids.current") >= 1);
    kill_and_check_clean(&ctd, "metrics-wasm", child);
}

#[test]
fn a_detached_container_keeps_writing_after_ctr_has_gone() {
    let Some(ctd) = containerd("a_detached_container_keeps_writing_after_ctr_has_gone") else {
        return;
    };
    // `ctr run -d` returns once the task started, closing its ends of the FIFOs. The
    // guest writes only when told to, after that: a Rust guest whose println! fails
    // (EPIPE) traps, so it reaching /etc/done shows the write succeeded.
    let out = ctd.ctr(&[
        "run",
        "-d",
        "--runtime",
        TRIAGE_RUNTIME,
        WASM_IMAGE,
        "detached-writer",
        "/waiter.wasm",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    let pid = task_pid(&ctd, "detached-writer").unwrap();
    let root = format!("/proc/{pid}/root/etc");
    std::fs::write(format!("{root}/go"), "").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !std::path::Path::new(&format!("{root}/done")).exists() {
        let status = task_status(&ctd, "detached-writer");
        assert_eq!(
            status.as_deref(),
            Some("RUNNING"),
            "the writer died\n{}",
            shim_log(&ctd, "detached-writer")
        );
        assert!(
            std::time::Instant::now() < deadline,
            "the guest never wrote"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        ctd.ctr(&["task", "kill", "--signal", "SIGKILL", "detached-writer"])
            .code,
        0
    );
    wait_for_status(&ctd, "detached-writer", "STOPPED");
    assert_eq!(ctd.ctr(&["task", "rm", "detached-writer"]).code, 0);
    assert_eq!(ctd.ctr(&["container", "rm", "detached-writer"]).code, 0);
    assert_clean(&ctd, "detached-writer");
}
