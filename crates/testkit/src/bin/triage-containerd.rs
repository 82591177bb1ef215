//! Runs a command against a private containerd: starts it, imports images, exports
//! `CONTAINERD_ADDRESS`/`CONTAINERD_NAMESPACE` (which `ctr` reads) and the shims'
//! `TRIAGE_CACHE_DIR` and `TRIAGE_CONFIG`, and its log's path as `TRIAGE_CONTAINERD_LOG`,
//! runs the command,
//! stops containerd and cleans up. Used by the scripts in `benches/`.
//!
//! Usage: `triage-containerd --shim PATH [--import ARCHIVE]... -- COMMAND [ARGS]...`

use std::path::PathBuf;
use std::process::Command;

use anyhow::{bail, Context};
use triage_testkit::{PrivateContainerd, NAMESPACE};

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let mut shim = None;
    let mut imports = Vec::new();
    let mut command = Vec::new();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--shim" => shim = Some(PathBuf::from(args.next().context("--shim needs a path")?)),
            "--import" => {
                imports.push(PathBuf::from(args.next().context("--import needs a path")?))
            }
            "--" => {
                command.extend(args.by_ref());
            }
            other => bail!("unknown argument {other}"),
        }
    }
    let shim =
        shim.context("usage: triage-containerd --shim PATH [--import ARCHIVE]... -- COMMAND")?;
    let Some((program, rest)) = command.split_first() else {
        bail!("no command given after --");
    };
    let ctd = PrivateContainerd::start(shim.parent().context("shim path has no directory")?)?;
    for archive in &imports {
        ctd.import(archive)?;
    }
    let status = Command::new(program)
        .args(rest)
        .env("CONTAINERD_ADDRESS", ctd.socket())
        .env("CONTAINERD_NAMESPACE", NAMESPACE)
        // The artifact cache and node profile its Triage shims use.
        .env("TRIAGE_CACHE_DIR", ctd.artifact_cache_dir())
        .env("TRIAGE_CONFIG", ctd.node_profile_path())
        .env("TRIAGE_CONTAINERD_LOG", ctd.log_path())
        .status()
        .with_context(|| format!("running {program}"))?;
    drop(ctd);
    std::process::exit(status.code().unwrap_or(1));
}
