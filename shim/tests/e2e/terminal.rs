//! Terminals: `ctr run -t` and `ctr task exec -t` get a pty of their own, sized by
//! ResizePty. `ctr` needs a terminal itself, so it runs under `script`.

use crate::support::*;

/// Runs `ctr ARGS` on a pseudo-terminal of `rows`×`cols` (util-linux `script`) and
/// returns everything the terminal showed.
fn ctr_on_a_terminal(ctd: &PrivateContainerd, rows: u16, cols: u16, args: &str) -> String {
    let line = format!(
        "stty rows {rows} cols {cols}; ctr --address {} --namespace {} {args}; echo \"rc=$?\"",
        ctd.socket().display(),
        triage_testkit::NAMESPACE
    );
    let out = std::process::Command::new("script")
        .args(["-qec", &line, "/dev/null"])
        .stdin(std::process::Stdio::null())
        .output()
        .expect("script (util-linux)");
    String::from_utf8_lossy(&out.stdout).replace('\r', "")
}

/// A shell line that waits until the terminal has the size ctr asked for (ctr resizes
/// right after Start), then shows what the process sees.
fn show_terminal(rows: u16, cols: u16) -> String {
    format!(
        "n=0; until [ \"$(stty size 2>/dev/null)\" = \"{rows} {cols}\" ] || [ $n -ge 400 ]; \
         do n=$((n+1)); sleep 0.05; done; tty; stty size; exit 5"
    )
}

#[test]
fn run_and_exec_get_a_terminal_of_the_size_ctr_asks() {
    let Some(ctd) = containerd("run_and_exec_get_a_terminal_of_the_size_ctr_asks") else {
        return;
    };
    let shown = ctr_on_a_terminal(
        &ctd,
        33,
        101,
        &format!(
            "run -t --rm --runtime {TRIAGE_RUNTIME} {BUSYBOX_IMAGE} tty-native sh -c '{}'",
            show_terminal(33, 101)
        ),
    );
    assert!(shown.contains("/dev/pts/0\n33 101\n"), "{shown:?}");
    assert!(shown.contains("rc=5"), "{shown:?}");

    // A Wasm guest writes to its terminal like any process.
    let shown = ctr_on_a_terminal(
        &ctd,
        20,
        70,
        &format!("run -t --rm --runtime {TRIAGE_RUNTIME} {WASM_IMAGE} tty-wasm /hello.wasm a b"),
    );
    assert!(shown.contains("hello from wasm\n"), "{shown:?}");
    assert!(shown.contains("args: a b\n"), "{shown:?}");
    assert!(shown.contains("rc=0"), "{shown:?}");

    // exec -t into a running native container.
    let mut host = spawn_run(
        &ctd,
        BUSYBOX_IMAGE,
        "tty-host",
        &["sh", "-c", "echo ready; exec sleep 600"],
        &[],
    );
    assert_eq!(first_line(&mut host), "ready");
    let shown = ctr_on_a_terminal(
        &ctd,
        40,
        120,
        &format!(
            "task exec -t --exec-id x1 tty-host sh -c '{}'",
            show_terminal(40, 120)
        ),
    );
    assert!(shown.contains("/dev/pts/0\n40 120\n"), "{shown:?}");
    assert!(shown.contains("rc=5"), "{shown:?}");
    assert_eq!(
        ctd.ctr(&["task", "kill", "--signal", "SIGKILL", "tty-host"])
            .code,
        0
    );
    assert_eq!(finish(host).code, 137);
    for id in ["tty-native", "tty-wasm", "tty-host"] {
        assert_clean(&ctd, id);
    }
}
