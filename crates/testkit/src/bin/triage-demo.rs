//! `make demo`: a private containerd running one Wasm and one native container via Triage.

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
    for image in ["wasm", "busybox"] {
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
    println!("\nshim decisions (from containerd's log):");
    for line in ctd
        .log()
        .lines()
        .filter(|l| l.contains("workload decision"))
    {
        println!("  {line}");
    }
    drop(ctd);
    triage_testkit::remove_namespace_cgroups();
    println!("\ncontainerd stopped; nothing left running, mounted or in a cgroup.");
    Ok(())
}
