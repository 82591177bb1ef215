//! Builds Triage's test images as OCI archives, offline, for `ctr images import`.
//!
//! Usage: `triage-image-builder --wasm-dir DIR --components-dir DIR --models DIR --busybox PATH --out DIR [--native-hello PATH]`

mod archive;
mod images;

use std::path::PathBuf;

use anyhow::{bail, Context};

fn main() -> anyhow::Result<()> {
    let mut wasm_dir = None;
    let mut components_dir = None;
    let mut busybox = None;
    let mut models = None;
    let mut out = None;
    let mut native_hello = None;
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let value = args
            .next()
            .with_context(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--wasm-dir" => wasm_dir = Some(PathBuf::from(value)),
            "--components-dir" => components_dir = Some(PathBuf::from(value)),
            "--busybox" => busybox = Some(PathBuf::from(value)),
            "--models" => models = Some(PathBuf::from(value)),
            "--out" => out = Some(PathBuf::from(value)),
            "--native-hello" => native_hello = Some(PathBuf::from(value)),
            other => {
                bail!("unknown flag {other} (expected --wasm-dir, --components-dir, --models, --busybox, --out, --native-hello)")
            }
        }
    }
    let usage = "usage: triage-image-builder --wasm-dir DIR --components-dir DIR --models DIR --busybox PATH --out DIR [--native-hello PATH]";
    let (Some(wasm_dir), Some(components_dir), Some(models), Some(busybox), Some(out)) =
        (wasm_dir, components_dir, models, busybox, out)
    else {
        bail!("{usage}");
    };
    std::fs::create_dir_all(&out).with_context(|| format!("creating {}", out.display()))?;
    let mut all = images::all(&wasm_dir, &components_dir, &models, &busybox)?;
    if let Some(binary) = native_hello {
        all.push(images::native_hello(&binary)?);
    }
    for image in all {
        let path = out.join(format!("{}.tar", image.file_stem));
        archive::write(&image, &path)?;
        println!("{} -> {}", image.reference, path.display());
    }
    Ok(())
}
