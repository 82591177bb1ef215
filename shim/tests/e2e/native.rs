//! Native (busybox) containers through the same shim, on libcontainer.

use crate::support::*;

#[test]
fn echo_prints_and_exit_codes_propagate() {
    let Some(ctd) = containerd("echo_prints_and_exit_codes_propagate") else {
        return;
    };
    let out = run(
        &ctd,
        &[],
        BUSYBOX_IMAGE,
        "native-echo",
        &["echo", "hello", "native"],
    );
    assert_eq!(out.code, 0, "{out:?}\n{}", ctd.log());
    assert_eq!(out.stdout, "hello native\n");
    let log = shim_log(&ctd, "native-echo");
    assert!(
        log.contains("workload decision kind=\"native\" reason=no annotation; entrypoint /bin/echo is an ELF executable"),
        "{log}"
    );
    assert_clean(&ctd, "native-echo");

    let out = run(
        &ctd,
        &[],
        BUSYBOX_IMAGE,
        "native-exit",
        &["sh", "-c", "echo out; echo err >&2; exit 3"],
    );
    assert_eq!(out.code, 3, "{out:?}");
    assert_eq!(out.stdout, "out\n");
    assert_eq!(out.stderr, "err\n");
    assert_clean(&ctd, "native-exit");
}

#[test]
fn native_signals_give_137_and_143() {
    let Some(ctd) = containerd("native_signals_give_137_and_143") else {
        return;
    };
    // PID 1 of a pid namespace ignores signals it has no handler for (as under runc),
    // so SIGKILL is what stops a plain `sleep` there...
    let child = spawn_run(&ctd, BUSYBOX_IMAGE, "native-kill", &["sleep", "600"], &[]);
    wait_for_status(&ctd, "native-kill", "RUNNING");
    assert_eq!(
        ctd.ctr(&["task", "kill", "--signal", "SIGKILL", "native-kill"])
            .code,
        0
    );
    assert_eq!(finish(child).code, 137);
    assert_clean(&ctd, "native-kill");

    // ...while outside a new pid namespace (here: the test's own) an unhandled SIGTERM
    // ends it with 143.
    let pid_ns = format!("pid:/proc/{}/ns/pid", std::process::id());
    let child = spawn_run(
        &ctd,
        BUSYBOX_IMAGE,
        "native-term",
        &["sleep", "600"],
        &["--with-ns", &pid_ns],
    );
    wait_for_status(&ctd, "native-term", "RUNNING");
    assert_eq!(ctd.ctr(&["task", "kill", "native-term"]).code, 0);
    assert_eq!(finish(child).code, 143);
    assert_clean(&ctd, "native-term");

    // `kill --all` reaches every process of the container: the `sleep` below dies of
    // SIGTERM although PID 1 (the shell) ignores it, and the shell reports its status.
    let child = spawn_run(
        &ctd,
        BUSYBOX_IMAGE,
        "native-all",
        &["sh", "-c", "sleep 600; exit $?"],
        &[],
    );
    wait_for_status(&ctd, "native-all", "RUNNING");
    let init = task_pid(&ctd, "native-all").expect("pid of native-all");
    wait_for_child_of(init);
    // `ctr task ps` lists every process of the container: the shell and its sleep.
    let ps = ctd.ctr(&["task", "ps", "native-all"]);
    let pids: Vec<&str> = ps
        .stdout
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(pids.len(), 2, "{ps:?}");
    assert!(pids.contains(&init.to_string().as_str()), "{ps:?}");
    assert_eq!(ctd.ctr(&["task", "kill", "--all", "native-all"]).code, 0);
    assert_eq!(finish(child).code, 143);
    assert_clean(&ctd, "native-all");
}
