//! Pod start and teardown through containerd's CRI plugin, Triage's handler vs runc's,
//! interleaved in one private containerd. Used by `benches/pod-start.sh`.
//!
//! One sample: RunPodSandbox + CreateContainer + StartContainer (start), then
//! StopPodSandbox + RemovePodSandbox (teardown). Jobs: Triage runs the Wasm hello module;
//! runc, which cannot run Wasm, runs busybox `true` (host network). Services, in a pod of
//! their own on the bridge network: Triage serves the Wasm hello component, runc the
//! native hyper hello server, and "start" lasts until the pod IP's port 8080 answers its
//! first `200` (polled every millisecond from the node, as a readiness probe would).
//!
//! Usage: `triage-pod-bench SHIM IMAGES_DIR [N]`

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;
use triage_testkit::cri::{bridge_network_pod, container, host_network_pod, CriClient};
use triage_testkit::{PrivateContainerd, CRI_NAMESPACE};

struct Variant {
    name: &'static str,
    handler: &'static str,
    image: &'static str,
    command: &'static [&'static str],
    /// Whether it serves HTTP on the pod IP's port 8080 (else it runs to its exit).
    serves: bool,
    /// The variant its times are compared with (runc's of the same kind).
    baseline: usize,
}

const VARIANTS: &[Variant] = &[
    Variant {
        name: "triage (wasm hello)",
        handler: "triage",
        image: "triage.test/wasm:latest",
        command: &["/hello.wasm"],
        serves: false,
        baseline: 1,
    },
    Variant {
        name: "runc (busybox true)",
        handler: "runc",
        image: "triage.test/busybox:latest",
        command: &["true"],
        serves: false,
        baseline: 1,
    },
    Variant {
        name: "triage (wasm service)",
        handler: "triage",
        image: "triage.test/wasm-components:latest",
        command: &["/http-hello.wasm"],
        serves: true,
        baseline: 3,
    },
    Variant {
        name: "runc (native service)",
        handler: "runc",
        image: "triage.test/native-hello:latest",
        command: &["/native-hello", "0.0.0.0:8080", "1"],
        serves: true,
        baseline: 3,
    },
];

/// Waits until `GET /` on `ip`:8080 answers `200` (at most 10 s).
fn first_200(ip: std::net::IpAddr) -> anyhow::Result<()> {
    use std::io::{Read, Write};
    let addr = std::net::SocketAddr::new(ip, 8080);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let answered = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(1))
            .and_then(|mut stream| {
                stream.write_all(b"GET / HTTP/1.1\r\nHost: pod\r\nConnection: close\r\n\r\n")?;
                let mut head = [0u8; 12];
                stream.read_exact(&mut head)?;
                Ok(&head == b"HTTP/1.1 200")
            });
        if let Ok(true) = answered {
            return Ok(());
        }
        anyhow::ensure!(Instant::now() < deadline, "{addr} never answered 200");
        std::thread::sleep(Duration::from_millis(1));
    }
}

fn sample(
    cri: &mut CriClient,
    logs: &std::path::Path,
    v: &Variant,
    n: usize,
) -> anyhow::Result<(Duration, Duration)> {
    let uid = format!("bench-{}-{}-{n}", v.handler, v.serves);
    let config = if v.serves {
        bridge_network_pod(&uid, &uid, &logs.join(&uid))
    } else {
        host_network_pod(&uid, &uid, &logs.join(&uid))
    };
    let t0 = Instant::now();
    let pod = cri.run_pod(&config, v.handler)?;
    let id = cri.create_container(
        &pod,
        container("app", v.image, v.command, "app.log"),
        &config,
    )?;
    cri.start_container(&id)?;
    if v.serves {
        first_200(cri.pod_ip(&pod)?.parse()?)?;
    }
    let started = t0.elapsed();
    if !v.serves {
        cri.wait_exited(&id)?;
    }
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
    for image in [
        "pause",
        "wasm",
        "busybox",
        "wasm-components",
        "native-hello",
    ] {
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
    println!("pod start = RunPodSandbox+CreateContainer+StartContainer (services: until the pod IP's :8080 answers 200); teardown = StopPodSandbox+RemovePodSandbox (N={n}, interleaved)");
    println!(
        "{:<22} {:>12} {:>9} {:>8} {:>15} {:>9} {:>8}",
        "handler", "start med ms", "p90", "vs runc", "teardown med ms", "p90", "vs runc"
    );
    for (k, v) in VARIANTS.iter().enumerate() {
        let (runc_start, _) = median_p90(start[v.baseline].clone());
        let (runc_teardown, _) = median_p90(teardown[v.baseline].clone());
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
