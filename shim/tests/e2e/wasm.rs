//! Wasm containers through `ctr run --runtime io.containerd.triage.v1`.

use crate::support::*;

#[test]
fn hello_prints_args_and_env_and_logs_the_decision() {
    let Some(ctd) = containerd("hello_prints_args_and_env_and_logs_the_decision") else {
        return;
    };
    let out = run(
        &ctd,
        &["--env", "GREETING=hi", "--env", "TRIAGE_COLOR=blue"],
        WASM_IMAGE,
        "wasm-hello",
        &["/hello.wasm", "one", "two words"],
    );
    assert_eq!(out.code, 0, "{out:?}\n{}", ctd.log());
    assert_eq!(
        out.stdout,
        "hello from wasm\nargv0: /hello.wasm\nargs: one two words\nenv: GREETING=hi\nenv: TRIAGE_COLOR=blue\n"
    );
    let log = shim_log(&ctd, "wasm-hello");
    assert!(
        log.contains("workload decision kind=\"wasm\" reason=no annotation; entrypoint /hello.wasm is a wasm module"),
        "{log}"
    );
    assert_clean(&ctd, "wasm-hello");
}

#[test]
fn image_default_command_runs() {
    let Some(ctd) = containerd("image_default_command_runs") else {
        return;
    };
    let out = run(&ctd, &[], WASM_IMAGE, "wasm-default", &[]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(out.stdout.starts_with("hello from wasm\n"), "{out:?}");
}

#[test]
fn proc_exit_status_is_the_exit_code() {
    let Some(ctd) = containerd("proc_exit_status_is_the_exit_code") else {
        return;
    };
    let out = run(&ctd, &[], WASM_IMAGE, "wasm-exit", &["/exit.wasm", "42"]);
    assert_eq!(out.stdout, "exiting with 42\n");
    assert_eq!(out.code, 42, "{out:?}");
    assert_clean(&ctd, "wasm-exit");
}

#[test]
fn trap_is_nonzero_and_logged() {
    let Some(ctd) = containerd("trap_is_nonzero_and_logged") else {
        return;
    };
    let out = run(&ctd, &[], WASM_IMAGE, "wasm-trap", &["/trap.wasm"]);
    assert_eq!(out.code, 134, "{out:?}");
    assert!(out.stdout.contains("about to trap"), "{out:?}");
    let log = wait_for_log(&ctd, "wasm-trap", "wasm guest trapped");
    assert!(log.contains("unreachable"), "{log}");
    assert_clean(&ctd, "wasm-trap");
}

#[test]
fn export_suffix_calls_that_export() {
    let Some(ctd) = containerd("export_suffix_calls_that_export") else {
        return;
    };
    let out = run(
        &ctd,
        &[],
        WASM_IMAGE,
        "wasm-export",
        &["/reactor.wasm#greet"],
    );
    assert_eq!(out.code, 0, "{out:?}\n{}", ctd.log());
    assert_eq!(out.stdout, "greet export called\n");
}

#[test]
fn guest_sees_only_its_rootfs_and_mounts() {
    let Some(ctd) = containerd("guest_sees_only_its_rootfs_and_mounts") else {
        return;
    };
    let host = tempfile::tempdir().unwrap();
    std::fs::write(host.path().join("data.txt"), "from the host mount\n").unwrap();
    // A file that exists on the host but not in the image.
    let secret = tempfile::NamedTempFile::new_in("/tmp").unwrap();
    std::fs::write(secret.path(), "host secret").unwrap();
    let secret_path = secret.path().display().to_string();
    let mount = format!(
        "type=bind,src={},dst=/data,options=rbind:ro",
        host.path().display()
    );
    // A single bind-mounted file, as CRI mounts /etc/hosts.
    let conf = host.path().join("site.conf");
    std::fs::write(&conf, "site=edge-7\n").unwrap();
    let file_mount = format!(
        "type=bind,src={},dst=/etc/site.conf,options=rbind:ro",
        conf.display()
    );
    let out = run(
        &ctd,
        &["--mount", &mount, "--mount", &file_mount],
        WASM_IMAGE,
        "wasm-fs",
        &[
            "/fsprobe.wasm",
            "/etc/motd",
            "/data/data.txt",
            &secret_path,
            "/../../etc/motd",
            "/etc/site.conf",
        ],
    );
    assert_eq!(out.code, 0, "{out:?}\n{}", ctd.log());
    let lines: Vec<&str> = out.stdout.lines().collect();
    // `/` is the image's root plus the spec's mount points, nothing of the host.
    assert_eq!(
        lines[0],
        "ls /: bad.wasm classify.wasm data dev etc exit.wasm fsprobe.wasm hello.sh hello.wasm listen-echo.wasm memhog.wasm models \
         proc reactor.wasm run sleeper.wasm snapinit.wasm spin.wasm sys trap.wasm waiter.wasm"
    );
    assert_eq!(lines[1], "read /etc/motd: ok inside the wasm image");
    assert_eq!(lines[2], "read /data/data.txt: ok from the host mount");
    assert_eq!(lines[3], format!("read {secret_path}: error NotFound"));
    // WASI refuses to resolve `..` above a preopen.
    assert_eq!(lines[4], "read /../../etc/motd: error PermissionDenied");
    assert_eq!(lines[5], "read /etc/site.conf: ok site=edge-7");
    assert_eq!(lines[6], "write /tmp-write-probe: ok");
}

#[test]
fn sigterm_gives_143_and_sigkill_137() {
    let Some(ctd) = containerd("sigterm_gives_143_and_sigkill_137") else {
        return;
    };
    for (id, signal, status) in [("wasm-term", "SIGTERM", 143), ("wasm-kill", "SIGKILL", 137)] {
        let mut child = spawn_run(&ctd, WASM_IMAGE, id, &["/sleeper.wasm"], &[]);
        assert_eq!(first_line(&mut child), "sleeper ready");
        // Start returns after the guest is released; until then ctr shows CREATED.
        wait_for_status(&ctd, id, "RUNNING");
        let kill = ctd.ctr(&["task", "kill", "--signal", signal, id]);
        assert_eq!(kill.code, 0, "{kill:?}");
        let out = finish(child);
        assert_eq!(out.code, status, "{id}: {out:?}\n{}", ctd.log());
        assert_clean(&ctd, id);
    }
}

#[test]
fn the_wasmedge_runtime_name_runs_triage() {
    if !triage_testkit::require_host("the_wasmedge_runtime_name_runs_triage") {
        return;
    }
    // As `make install` lays it out: both shim names lead to Triage.
    let bin = installed_shim_dir();
    let ctd =
        TestContainerd::shared(|| PrivateContainerd::start(bin.path()).expect("start containerd"));
    ctd.import(&triage_testkit::images_dir().join("wasm.tar"))
        .expect("import");
    let out = ctd.ctr(&[
        "run",
        "--rm",
        "--runtime",
        "io.containerd.wasmedge.v1",
        WASM_IMAGE,
        "wasmedge-name",
        "/hello.wasm",
        "via",
        "wasmedge",
    ]);
    assert_eq!(out.code, 0, "{out:?}\n{}", ctd.log());
    assert!(out.stdout.contains("args: via wasmedge"), "{out:?}");
    assert!(shim_log(&ctd, "wasmedge-name").contains("workload decision kind=\"wasm\""));
    assert_clean(&ctd, "wasmedge-name");
}

#[test]
fn modules_are_compiled_once_and_a_tampered_artifact_is_rebuilt() {
    let Some(ctd) = containerd("modules_are_compiled_once_and_a_tampered_artifact_is_rebuilt")
    else {
        return;
    };
    let outcome = |id: &str| {
        let log = shim_log(&ctd, id);
        ["Hit", "Built", "Rebuilt"]
            .into_iter()
            .find(|o| log.contains(&format!("outcome={o}")))
            .unwrap_or_else(|| panic!("no artifact cache line for {id}:\n{log}"))
    };
    for (id, expected) in [("cache-1", "Built"), ("cache-2", "Hit")] {
        let out = run(&ctd, &[], WASM_IMAGE, id, &["/hello.wasm"]);
        assert_eq!(out.code, 0, "{out:?}");
        assert!(out.stdout.starts_with("hello from wasm"), "{out:?}");
        assert_eq!(outcome(id), expected);
    }
    // Native code on disk that this node did not write is never loaded.
    let cache = ctd.artifact_cache_dir();
    let artifact = std::fs::read_dir(&cache)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|e| e == "bin"))
        .expect("an artifact in the cache");
    let mut bytes = std::fs::read(&artifact).unwrap();
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&artifact, bytes).unwrap();
    let out = run(&ctd, &[], WASM_IMAGE, "cache-3", &["/hello.wasm"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(outcome("cache-3"), "Rebuilt");
    assert!(shim_log(&ctd, "cache-3").contains("its MAC does not match"));
    let out = run(&ctd, &[], WASM_IMAGE, "cache-4", &["/hello.wasm"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(outcome("cache-4"), "Hit");

    // Per container: `triage.io/cache: off` compiles inside the container instead.
    let off = ["--annotation", "triage.io/cache=off"];
    let out = run(&ctd, &off, WASM_IMAGE, "cache-off", &["/hello.wasm"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(!shim_log(&ctd, "cache-off").contains("artifact cache"));
    let bad = ["--annotation", "triage.io/cache=sometimes"];
    let out = run(&ctd, &bad, WASM_IMAGE, "cache-bad", &["/hello.wasm"]);
    assert_ne!(out.code, 0);
    assert!(
        out.stderr
            .contains("container cache-bad: annotation triage.io/cache=\"sometimes\" is not valid"),
        "{out:?}"
    );
    assert_clean(&ctd, "cache-bad");
}

#[test]
fn a_snapshot_is_made_once_and_starts_later_containers_with_the_same_output() {
    let Some(ctd) =
        containerd("a_snapshot_is_made_once_and_starts_later_containers_with_the_same_output")
    else {
        return;
    };
    let preload_line = |id: &str| {
        let log = shim_log(&ctd, id);
        log.lines()
            .find(|l| l.contains("wasm module from the artifact cache"))
            .map(str::to_owned)
            .unwrap_or_else(|| panic!("no artifact cache line for {id}:\n{log}"))
    };
    // The reference: the guest builds its 16 MiB table itself, in every container.
    let off = ["--annotation", "triage.io/snapshot=off"];
    let reference = run(
        &ctd,
        &off,
        WASM_IMAGE,
        "snap-off",
        &["/snapinit.wasm", "777"],
    );
    assert_eq!(reference.code, 0, "{reference:?}");
    assert!(
        reference
            .stdout
            .starts_with("table of 4194304 entries (16 MiB), digest "),
        "{reference:?}"
    );
    assert!(
        preload_line("snap-off").contains("snapshot=\"none\""),
        "{}",
        preload_line("snap-off")
    );

    // The first container with snapshots on runs `wizer-initialize` once, outside any
    // container; it and every later one start from the snapshot.
    for (id, outcome) in [("snap-1", "outcome=Built"), ("snap-2", "outcome=Hit")] {
        let out = run(&ctd, &[], WASM_IMAGE, id, &["/snapinit.wasm", "777"]);
        assert_eq!(out.code, 0, "{out:?}");
        assert_eq!(
            out.stdout, reference.stdout,
            "snapshot output differs from running the init"
        );
        let line = preload_line(id);
        assert!(line.contains(outcome), "{id}: {line}");
        assert!(line.contains("wizer-initialize"), "{id}: {line}");
    }
    assert!(shim_log(&ctd, "snap-1").contains("wasm module pre-initialised"));
    assert!(!shim_log(&ctd, "snap-2").contains("wasm module pre-initialised"));

    // A module without the init export runs as it is, with no error.
    let out = run(&ctd, &[], WASM_IMAGE, "snap-none", &["/hello.wasm"]);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        preload_line("snap-none").contains("snapshot=\"none\""),
        "{}",
        preload_line("snap-none")
    );

    // An init export named by annotation must exist.
    let named = ["--annotation", "triage.io/snapshot-init=build_tables"];
    let out = run(
        &ctd,
        &named,
        WASM_IMAGE,
        "snap-missing",
        &["/snapinit.wasm"],
    );
    assert_ne!(out.code, 0);
    assert!(
        out.stderr.contains("container snap-missing: wasm module")
            && out
                .stderr
                .contains("snapinit.wasm has no function export \"build_tables\""),
        "{out:?}"
    );
    assert_clean(&ctd, "snap-missing");

    // The node profile turns snapshots off for every container.
    ctd.write_node_profile("[wasm]\nsnapshots = false\n")
        .unwrap();
    let out = run(
        &ctd,
        &[],
        WASM_IMAGE,
        "snap-node-off",
        &["/snapinit.wasm", "777"],
    );
    assert_eq!(out.stdout, reference.stdout, "{out:?}");
    let line = preload_line("snap-node-off");
    assert!(!line.contains("wizer-initialize"), "{line}");
}

#[test]
fn operators_list_and_prune_the_artifact_cache() {
    let Some(ctd) = containerd("operators_list_and_prune_the_artifact_cache") else {
        return;
    };
    for (id, module) in [("prune-1", "/hello.wasm"), ("prune-2", "/exit.wasm")] {
        assert_eq!(run(&ctd, &[], WASM_IMAGE, id, &[module, "0"]).code, 0);
    }
    let cache = |args: &[&str]| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_containerd-shim-triage-v1"))
            .arg("cache")
            .args(args)
            .env("TRIAGE_CACHE_DIR", ctd.artifact_cache_dir())
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let listed = cache(&["ls"]);
    assert!(listed.contains("\n2 entries, "), "{listed}");
    assert!(cache(&["prune", "1"]).starts_with("removed 2 entries"));
    assert!(cache(&["ls"]).contains("\n0 entries, "));
    // The next start compiles and stores it again.
    assert_eq!(
        run(&ctd, &[], WASM_IMAGE, "prune-3", &["/hello.wasm"]).code,
        0
    );
    assert!(shim_log(&ctd, "prune-3").contains("outcome=Built"));
}

#[test]
fn start_to_guest_entry_is_logged_at_debug_level() {
    if !triage_testkit::require_host("start_to_guest_entry_is_logged_at_debug_level") {
        return;
    }
    let ctd = TestContainerd::shared(|| {
        let ctd = PrivateContainerd::start_with_shim_log(
            &triage_testkit::shim_dir(env!("CARGO_BIN_EXE_containerd-shim-triage-v1")),
            "debug",
        )
        .expect("start containerd");
        ctd.import(&triage_testkit::images_dir().join("wasm.tar"))
            .expect("import");
        ctd
    });
    let out = run(&ctd, &[], WASM_IMAGE, "entry-time", &["/hello.wasm"]);
    assert_eq!(out.code, 0, "{out:?}");
    let log = shim_log(&ctd, "entry-time");
    let line = log
        .lines()
        .find(|l| l.contains("start RPC to guest entry"))
        .unwrap_or_else(|| panic!("no Start → guest entry line:\n{log}"));
    let micros: u64 = line
        .split("micros=")
        .nth(1)
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no micros in {line}"));
    eprintln!("Start RPC → guest entry: {micros} µs");
}
