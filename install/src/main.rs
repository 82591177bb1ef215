//! `triage-install install|uninstall`: what `make install` and `make uninstall` run.

use std::path::PathBuf;

use anyhow::{bail, Context};
use triage_install::{install, uninstall, InstallOptions};

const USAGE: &str =
    "usage: triage-install install|uninstall [--shim PATH] [--prefix DIR] [--destdir DIR] \
[--containerd-config FILE] [--containerd-version MAJOR] [--k3s-root DIR]";

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let action = args.next().context(USAGE)?;
    let mut options = InstallOptions {
        destdir: PathBuf::from("/"),
        prefix: PathBuf::from("/usr/local"),
        shim: None,
        containerd_config: PathBuf::from("/etc/containerd/config.toml"),
        containerd_major: None,
        k3s_root: PathBuf::from("/var/lib/rancher/k3s"),
    };
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value\n{USAGE}"))?;
        match flag.as_str() {
            "--shim" => options.shim = Some(PathBuf::from(value)),
            "--prefix" => options.prefix = PathBuf::from(value),
            // An empty DESTDIR (make's default) means the live system.
            "--destdir" if value.is_empty() => options.destdir = PathBuf::from("/"),
            "--destdir" => options.destdir = PathBuf::from(value),
            "--containerd-config" => options.containerd_config = PathBuf::from(value),
            "--containerd-version" => {
                options.containerd_major = Some(
                    value
                        .parse()
                        .with_context(|| format!("--containerd-version {value:?}"))?,
                )
            }
            "--k3s-root" => options.k3s_root = PathBuf::from(value),
            other => bail!("unknown flag {other}\n{USAGE}"),
        }
    }
    let report = match action.as_str() {
        "install" => install(&options)?,
        "uninstall" => uninstall(&options)?,
        other => bail!("unknown action {other}\n{USAGE}"),
    };
    for line in report.lines {
        println!("triage-install: {line}");
    }
    Ok(())
}
