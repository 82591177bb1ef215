//! Pod start and teardown through containerd's CRI plugin, Triage's handler vs runc's,
//! interleaved in one private containerd. Used by `benches/pod-start.sh`.
//!
//! One sample: RunPodSandbox + CreateContainer + StartContainer (start), then
//! StopPodSandbox + RemovePodSandbox (teardown). Triage runs the Wasm hello module;
//! runc, which cannot run Wasm, runs busybox `true`.
//!
//! Usage: `triage-pod-bench SHIM IMAGES_DIR [N]`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use triage_testkit::cri::{container, host_network_pod, CriClient};
use triage_testkit::{PrivateContainerd, CRI_NAMESPACE};

struct Variant {
    name: &'static str,
    handler: &'static str,
    image: &'static str,
    command: &'static [&'static str],
}

const VARIANTS: &[Variant] = &[
    Variant {
        name: "triage (wasm hello)",
        handler: "triage",
        image: "triage.test/wasm:latest",
        command: &["/hello.wasm"],
    },
    Variant {
        name: "runc (busybox true)",
        handler: "runc",
        image: "triage.test/busybox:latest",
        command: &["true"],
    },
];

fn sample(
    cri: &mut CriClient,
    logs: &std::path::Path,
    v: &Variant,
    n: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let uid = format!("bench-{}-{n}", v.handler);
    let config = host_network_pod(&uid, &uid, &logs.join(&uid));
    let t0 = Instant::now();
    let pod = cri.run_pod(&config, v.handler)?;
    let id = cri.create_container(
        &pod,
        container("app", v.image, v.command, "app.log"),
        &config,
    )?;
    cri.start_container(&id)?;
    let started = t0.elapsed();
    cri.wait_exited(&id)?;
    let t1 = Instant::now();
    cri.stop_pod(&pod)?;
    cri.remove_pod(&pod)?;
    Ok((started, t1.elapsed()))
}

fn median_p90(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    let median = if v.len() % 2 == 1 {
        ms(v[v.len() / 2])
    } else {
        (ms(v[v.len() / 2 - 1]) + ms(v[v.len() / 2])) / 2.0
    };
    let p90 = ms(v[((v.len() as f64 * 0.9).ceil() as usize).clamp(1, v.len()) - 1]);
    (median, p90)
}

fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let usage = "usage: triage-pod-bench SHIM IMAGES_DIR [N]";
    let shim = PathBuf::from(args.next().context(usage)?);
    let images = PathBuf::from(args.next().context(usage)?);
    let n: usize = args.next().map(|a| a.parse()).transpose()?.unwrap_or(20);

    let ctd =
        PrivateContainerd::start_with_cri(shim.parent().context("shim path has no directory")?)?;
    for image in ["pause", "wasm", "busybox"] {
        ctd.import_into(CRI_NAMESPACE, &images.join(format!("{image}.tar")))?;
    }
    let logs = tempfile::tempdir()?;
    let mut cri = CriClient::connect(&ctd)?;
    // Warm-up: one pod each (snapshots unpacked, page cache).
    for v in VARIANTS {
        sample(&mut cri, logs.path(), v, usize::MAX)
            .with_context(|| format!("warm-up {}", v.name))?;
    }
    let mut start: Vec<Vec<Duration>> = vec![Vec::new(); VARIANTS.len()];
    let mut teardown: Vec<Vec<Duration>> = vec![Vec::new(); VARIANTS.len()];
    for i in 0..n {
        for j in 0..VARIANTS.len() {
            // Rotate the order so no variant always goes first.
            let k = (i + j) % VARIANTS.len();
            let (s, t) = sample(&mut cri, logs.path(), &VARIANTS[k], i)?;
            start[k].push(s);
            teardown[k].push(t);
        }
    }
    let (runc_start, _) = median_p90(start[1].clone());
    let (runc_teardown, _) = median_p90(teardown[1].clone());
    println!("pod start = RunPodSandbox+CreateContainer+StartContainer; teardown = StopPodSandbox+RemovePodSandbox (N={n}, interleaved)");
    println!(
        "{:<22} {:>12} {:>9} {:>8} {:>15} {:>9} {:>8}",
        "handler", "start med ms", "p90", "vs runc", "teardown med ms", "p90", "vs runc"
    );
    for (k, v) in VARIANTS.iter().enumerate() {
        let (sm, sp) = median_p90(start[k].clone());
        let (tm, tp) = median_p90(teardown[k].clone());
        println!(
            "{:<22} {:>12.1} {:>9.1} {:>7.2}x {:>15.1} {:>9.1} {:>7.2}x",
            v.name,
            sm,
            sp,
            sm / runc_start,
            tm,
            tp,
            tm / runc_teardown
        );
    }
    Ok(())
}
