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
    kill_and_check_clean(&ctd, "native-kill", child);

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

#[test]
fn exec_adds_a_process_to_a_native_container_and_is_refused_for_wasm() {
    let Some(ctd) = containerd("exec_adds_a_process_to_a_native_container_and_is_refused_for_wasm")
    else {
        return;
    };
    let mut native = spawn_run(
        &ctd,
        BUSYBOX_IMAGE,
        "exec-native",
        &["sh", "-c", "echo ready; exec sleep 600"],
        &[],
    );
    assert_eq!(first_line(&mut native), "ready");

    // The exec'd process runs in the container's cgroup, with its own stdio and status.
    let out = ctd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "exec-native",
        "sh",
        "-c",
        "echo hello from exec; cat /proc/self/cgroup; echo to stderr >&2; exit 7",
    ]);
    assert_eq!(out.code, 7, "{out:?}\n{}", ctd.log());
    assert!(out.stdout.starts_with("hello from exec\n"), "{out:?}");
    assert!(
        out.stdout
            .lines()
            .any(|l| l.contains(":memory:") && l.ends_with("/triage-test/exec-native")),
        "{out:?}"
    );
    assert!(out.stderr.contains("to stderr"), "{out:?}");

    // Kill with an exec id signals that process only; the container keeps running.
    let sleeper = ctd
        .ctr_command(&[
            "task",
            "exec",
            "--exec-id",
            "e2",
            "exec-native",
            "sleep",
            "600",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let init = task_pid(&ctd, "exec-native").unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while ctd
        .ctr(&["task", "ps", "exec-native"])
        .stdout
        .lines()
        .count()
        < 3
    {
        assert!(std::time::Instant::now() < deadline, "exec e2 never ran");
        std::thread::sleep(std::time::Duration::from_millis(25));
    }
    let out = ctd.ctr(&["task", "kill", "--exec-id", "e2", "exec-native"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(finish(sleeper).code, 143);
    assert_eq!(task_status(&ctd, "exec-native").as_deref(), Some("RUNNING"));
    assert_eq!(task_pid(&ctd, "exec-native"), Some(init));

    // A command that does not exist fails the exec's start, with the reason.
    let out = ctd.ctr(&["task", "exec", "--exec-id", "e3", "exec-native", "/no/such"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("/no/such"), "{out:?}");

    // A Wasm container has no process environment to join: a clear refusal.
    let mut wasm = spawn_run(&ctd, WASM_IMAGE, "exec-wasm", &["/sleeper.wasm"], &[]);
    assert_eq!(first_line(&mut wasm), "sleeper ready");
    let out = ctd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "e1",
        "exec-wasm",
        "/hello.wasm",
    ]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains(
            "container exec-wasm: exec (process \"e1\") in a Wasm container: its workload is \
             one Wasm instance, with no process environment to add to is not supported by Triage"
        ),
        "{out:?}"
    );

    for (id, child) in [("exec-native", native), ("exec-wasm", wasm)] {
        kill_and_check_clean(&ctd, id, child);
    }
}

#[test]
fn stdin_reaches_the_container_and_its_end_closes_it() {
    let Some(ctd) = containerd("stdin_reaches_the_container_and_its_end_closes_it") else {
        return;
    };
    // `ctr run` copies its stdin to the container and, at EOF, closes it (CloseIO):
    // `cat` must see every line and then the end of its input.
    let mut child = ctd
        .ctr_command(&[
            "run",
            "--rm",
            "--runtime",
            TRIAGE_RUNTIME,
            BUSYBOX_IMAGE,
            "stdin-cat",
            "cat",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(b"line one\nline two\n").unwrap();
    }
    let out = finish(child);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "line one\nline two\n");
    assert_clean(&ctd, "stdin-cat");
}

#[test]
fn output_written_before_the_exit_reaches_ctr_in_full() {
    let Some(ctd) = containerd("output_written_before_the_exit_reaches_ctr_in_full") else {
        return;
    };
    // The init writes more than the pipe and the FIFO hold and exits at once: `ctr run`
    // closes its end when it sees the exit, so the exit must wait for the relay.
    let out = run(
        &ctd,
        &[],
        BUSYBOX_IMAGE,
        "drain-init",
        &[
            "sh",
            "-c",
            "head -c 1048576 /dev/zero | tr '\\0' x; echo; echo END",
        ],
    );
    assert_eq!(out.code, 0, "{}", ctd.log());
    assert_eq!(out.stdout.len(), 1048576 + "\nEND\n".len());
    assert!(out.stdout.ends_with("x\nEND\n"));
    assert_clean(&ctd, "drain-init");

    let mut native = spawn_run(
        &ctd,
        BUSYBOX_IMAGE,
        "drain-exec",
        &["sh", "-c", "echo ready; exec sleep 600"],
        &[],
    );
    assert_eq!(first_line(&mut native), "ready");
    // What a child of the exec'd process writes after it exited, with the stream it
    // inherited, still reaches `ctr task exec` ...
    let out = ctd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "late",
        "drain-exec",
        "sh",
        "-c",
        "(sleep 0.3; echo late) & echo early",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "early\nlate\n");
    // ... but a child that keeps it open holds the exit for a bounded time only.
    let out = ctd.ctr(&[
        "task",
        "exec",
        "--exec-id",
        "held",
        "drain-exec",
        "sh",
        "-c",
        "sleep 60 & echo bye",
    ]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(out.stdout, "bye\n");
    wait_for_log(
        &ctd,
        "drain-exec",
        "container drain-exec exec held: its output is still open 2000 ms after it exited \
         (a process it started holds it); closing it to its reader and reporting the exit",
    );
    kill_and_check_clean(&ctd, "drain-exec", native);
}
