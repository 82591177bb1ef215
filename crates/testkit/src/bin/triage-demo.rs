//! `make demo`: a private containerd running a Wasm job, a native container and a Wasm HTTP service via Triage.

use std::path::PathBuf;

use anyhow::{bail, Context};
use triage_testkit::{images_dir, PrivateContainerd, TRIAGE_RUNTIME};

fn main() -> anyhow::Result<()> {
    let shim = std::env::args()
        .nth(1)
        .map(PathBuf::from)
        .context("usage: triage-demo PATH/TO/containerd-shim-triage-v1")?;
    let shim_dir = shim.parent().context("shim path has no directory")?;
    let ctd = PrivateContainerd::start(shim_dir)?;
    println!("private containerd in {}", ctd.dir().display());
    for image in ["wasm", "busybox", "wasm-components"] {
        ctd.import(&images_dir().join(format!("{image}.tar")))?;
    }
    let runs: [(&str, &[&str]); 2] = [
        (
            "Wasm container (wasmtime)",
            &[
                "triage.test/wasm:latest",
                "demo-wasm",
                "/hello.wasm",
                "from",
                "the",
                "demo",
            ],
        ),
        (
            "native container (libcontainer)",
            &[
                "triage.test/busybox:latest",
                "demo-native",
                "echo",
                "hello from busybox",
            ],
        ),
    ];
    for (what, args) in runs {
        let mut full = vec!["run", "--rm", "--runtime", TRIAGE_RUNTIME];
        full.extend_from_slice(args);
        println!(
            "\n$ ctr run --rm --runtime {TRIAGE_RUNTIME} {}",
            args.join(" ")
        );
        let out = ctd.ctr(&full);
        print!("{}", out.stdout);
        eprint!("{}", out.stderr);
        if out.code != 0 {
            bail!(
                "{what} failed with exit code {}\ncontainerd log:\n{}",
                out.code,
                ctd.log()
            );
        }
    }
    service(&ctd)?;
    println!("\nshim decisions (from containerd's log):");
    for line in ctd
        .log()
        .lines()
        .filter(|l| l.contains("workload decision"))
    {
        println!("  {line}");
    }
    for line in ctd
        .log()
        .lines()
        .filter(|l| l.contains("serving wasi:http"))
    {
        println!("  {line}");
    }
    drop(ctd);
    triage_testkit::remove_namespace_cgroups();
    println!("\ncontainerd stopped; nothing left running, mounted or in a cgroup.");
    Ok(())
}

/// A Wasm HTTP service (a `wasi:http/proxy` component, one instance per request) on the
/// host network: one request through curl, then SIGTERM, which drains it (exit 0).
fn service(ctd: &PrivateContainerd) -> anyhow::Result<()> {
    let port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let listen = format!("triage.io/listen=127.0.0.1:{port}");
    let args = [
        "run",
        "--rm",
        "--net-host",
        "--runtime",
        TRIAGE_RUNTIME,
        "--annotation",
        &listen,
        "triage.test/wasm-components:latest",
        "demo-service",
        "/http-hello.wasm",
    ];
    println!("\n$ ctr {} &", args.join(" "));
    let mut child = ctd
        .ctr_command(&args)
        .stdout(std::process::Stdio::null())
        .spawn()
        .context("starting ctr run")?;
    let url = format!("http://127.0.0.1:{port}/from/the/demo");
    println!("$ curl {url}");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let answer = loop {
        let out = std::process::Command::new("curl")
            .args(["-sf", &url])
            .output()
            .context("running curl")?;
        if out.status.success() {
            break String::from_utf8_lossy(&out.stdout).into_owned();
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            bail!(
                "the service did not answer on {url}\ncontainerd log:\n{}",
                ctd.log()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    print!("{answer}");
    println!("$ ctr task kill demo-service   # SIGTERM: drain, then exit 0");
    let kill = ctd.ctr(&["task", "kill", "demo-service"]);
    if kill.code != 0 {
        let _ = child.kill();
        bail!("ctr task kill failed: {}", kill.stderr);
    }
    let status = child.wait()?;
    println!("exit status {}", status.code().unwrap_or(-1));
    if !status.success() {
        bail!(
            "the service exited with {status}\ncontainerd log:\n{}",
            ctd.log()
        );
    }
    Ok(())
}
