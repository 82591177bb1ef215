//! Wasm services: a `wasi:http/proxy` component served by its container's process, one instance per request.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use triage_testkit::models::{TestModel, BREAST_CANCER, DIGITS};

use crate::support::*;

/// A port nothing listens on now (the kernel's choice, released at once).
fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// Connects to 127.0.0.1:`port`, waiting while nothing listens there yet.
fn connect(port: u16) -> TcpStream {
    http_connect(([127, 0, 0, 1], port).into())
}

/// `GET path` from 127.0.0.1:`port`: the status line and the body.
fn get(port: u16, path: &str) -> (String, String) {
    http_get(([127, 0, 0, 1], port).into(), path)
}

#[test]
fn a_component_serves_each_request_from_a_fresh_instance_on_its_listen_addresses() {
    let Some(ctd) =
        containerd("a_component_serves_each_request_from_a_fresh_instance_on_its_listen_addresses")
    else {
        return;
    };
    let (first, second) = (free_port(), free_port());
    let listen = format!("triage.io/listen=127.0.0.1:{first},127.0.0.1:{second}");
    let child = spawn_run(
        &ctd,
        COMPONENTS_IMAGE,
        "svc-hello",
        &["/http-hello.wasm"],
        &[
            "--net-host",
            "--annotation",
            &listen,
            "--env",
            "TRIAGE_SITE=ward-4",
        ],
    );
    wait_for_status(&ctd, "svc-hello", "RUNNING");
    // Both addresses answer, each request from the guest.
    let (status, body) = get(first, "/scan/17?q=1");
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert_eq!(body, "hello from wasm over http: GET /scan/17?q=1\n");
    let (status, body) = get(second, "/env");
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.lines().any(|l| l == "TRIAGE_SITE=ward-4"), "{body}");
    // The host's health path, without a guest.
    let (status, body) = get(first, "/.well-known/triage/health");
    assert_eq!(
        (status.as_str(), body.as_str()),
        ("HTTP/1.1 200 OK", "ok\n")
    );
    // Keep-alive: two requests on one connection.
    let mut stream = connect(first);
    let mut answered = String::new();
    for n in 1..=2 {
        write!(stream, "GET /keep/{n} HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let mut buf = [0u8; 4096];
        let deadline = Instant::now() + Duration::from_secs(10);
        while !answered.contains(&format!("GET /keep/{n}\n")) && Instant::now() < deadline {
            let read = stream.read(&mut buf).unwrap();
            assert!(read > 0, "the connection closed after {answered:?}");
            answered.push_str(&String::from_utf8_lossy(&buf[..read]));
        }
    }
    assert_eq!(answered.matches("HTTP/1.1 200 OK").count(), 2, "{answered}");
    // h2c with prior knowledge.
    let curl = std::process::Command::new("curl")
        .args(["-s", "--http2-prior-knowledge", "-w", "\n%{http_version}"])
        .arg(format!("http://127.0.0.1:{first}/h2"))
        .output()
        .expect("curl (scripts/setup.sh installs it)");
    assert_eq!(
        String::from_utf8_lossy(&curl.stdout),
        "hello from wasm over http: GET /h2\n\n2"
    );
    // A trap fails that request alone, with a 500; the service goes on.
    let (status, _) = get(first, "/trap");
    assert_eq!(status, "HTTP/1.1 500 Internal Server Error");
    assert_eq!(get(first, "/after").0, "HTTP/1.1 200 OK");
    // SIGTERM: the server drains and exits 0.
    assert_eq!(ctd.ctr(&["task", "kill", "svc-hello"]).code, 0);
    let out = finish(child);
    assert_eq!(out.code, 0, "{out:?}");
    let log = ctd.log();
    assert!(log.contains("serving wasi:http/incoming-handler"), "{log}");
    // One CPU (the node profile's default limit): a pool of 64 instances.
    let pool = log
        .lines()
        .find(|l| l.contains("instance pool for serving"));
    assert!(
        pool.is_some_and(|l| l.contains("container=svc-hello instances=64")),
        "{log}"
    );
    assert!(log.contains("drained"), "{log}");
    assert!(TcpStream::connect(("127.0.0.1", first)).is_err());
    assert_clean(&ctd, "svc-hello");
}

#[test]
fn no_request_sees_what_another_left_and_outgoing_requests_are_refused() {
    let Some(ctd) =
        containerd("no_request_sees_what_another_left_and_outgoing_requests_are_refused")
    else {
        return;
    };
    let (state, egress) = (free_port(), free_port());
    let state_listen = format!("triage.io/listen=127.0.0.1:{state}");
    let state_child = spawn_run(
        &ctd,
        COMPONENTS_IMAGE,
        "svc-state",
        &["/http-state.wasm"],
        &["--net-host", "--annotation", &state_listen],
    );
    // runwasi's variable names the address when no annotation does.
    let egress_env = format!("WASMTIME_HTTP_PROXY_SOCKET_ADDR=127.0.0.1:{egress}");
    let egress_child = spawn_run(
        &ctd,
        COMPONENTS_IMAGE,
        "svc-egress",
        &["/http-egress.wasm"],
        &["--net-host", "--env", &egress_env],
    );
    wait_for_status(&ctd, "svc-state", "RUNNING");
    wait_for_status(&ctd, "svc-egress", "RUNNING");
    // Patient data isolation: each request has a fresh instance.
    for patient in ["alice", "bob", "carol"] {
        let (status, body) = get(state, &format!("/patient/{patient}"));
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, "seen before: nothing\n");
    }
    // Egress: the request is refused in the host, and the destination logged once.
    for _ in 0..2 {
        let (status, body) = get(egress, &format!("/to/127.0.0.1:{state}"));
        assert_eq!(status, "HTTP/1.1 200 OK");
        assert_eq!(body, "refused: ErrorCode::HttpRequestDenied\n");
    }
    let refusal = format!("outgoing wasi:http request to 127.0.0.1:{state} refused");
    assert_eq!(ctd.log().matches(&refusal).count(), 1, "{}", ctd.log());
    for (id, child) in [("svc-state", state_child), ("svc-egress", egress_child)] {
        assert_eq!(ctd.ctr(&["task", "kill", id]).code, 0);
        assert_eq!(finish(child).code, 0);
        assert_clean(&ctd, id);
    }
}

#[test]
fn a_guest_reaches_what_its_grants_name_and_nothing_else() {
    let Some(ctd) = containerd("a_guest_reaches_what_its_grants_name_and_nothing_else") else {
        return;
    };
    let (target, egress, closed) = (free_port(), free_port(), free_port());
    let target_listen = format!("triage.io/listen=127.0.0.1:{target}");
    let target_child = spawn_run(
        &ctd,
        COMPONENTS_IMAGE,
        "svc-target",
        &["/http-hello.wasm"],
        &["--net-host", "--annotation", &target_listen],
    );
    // A name grant: the node resolves `localhost` at Create (its /etc/hosts).
    let egress_listen = format!("triage.io/listen=127.0.0.1:{egress}");
    let grant = format!("triage.io/egress=localhost:{target}");
    let egress_child = spawn_run(
        &ctd,
        COMPONENTS_IMAGE,
        "svc-granted",
        &["/http-egress.wasm"],
        &[
            "--net-host",
            "--annotation",
            &egress_listen,
            "--annotation",
            &grant,
        ],
    );
    wait_for_status(&ctd, "svc-target", "RUNNING");
    wait_for_status(&ctd, "svc-granted", "RUNNING");
    let answer = |path: String| {
        let (status, body) = get(egress, &path);
        assert_eq!(status, "HTTP/1.1 200 OK", "{path}: {body}");
        body
    };
    // Granted: wasi:http by name and by the address the name resolved to, a wasi:sockets
    // connection after the guest's own lookup of the name.
    assert_eq!(answer(format!("/to/localhost:{target}")), "sent: 200\n");
    assert_eq!(answer(format!("/to/127.0.0.1:{target}")), "sent: 200\n");
    let tcp = answer(format!("/tcp/localhost:{target}"));
    assert_eq!(tcp, "connected: HTTP/1.1 200 OK\n");
    let lookup = answer("/lookup/localhost".to_owned());
    assert!(
        lookup.starts_with("addresses: ") && lookup.contains("127.0.0.1"),
        "{lookup}"
    );
    // Not granted: another port on the same address, another name. Each refused twice,
    // logged once.
    for _ in 0..2 {
        let http = answer(format!("/to/127.0.0.1:{closed}"));
        assert_eq!(http, "refused: ErrorCode::HttpRequestDenied\n");
        let tcp = answer(format!("/tcp/127.0.0.1:{closed}"));
        assert!(tcp.starts_with("refused: "), "{tcp}");
        let lookup = answer("/lookup/patients.example.org".to_owned());
        assert!(lookup.starts_with("refused: "), "{lookup}");
    }
    for refusal in [
        format!("outgoing wasi:http request to 127.0.0.1:{closed} refused: no egress grant allows it (granted: localhost:{target})"),
        format!("connection to 127.0.0.1:{closed} refused"),
        "name lookup of \"patients.example.org\" refused".to_owned(),
    ] {
        let log = wait_for_log(&ctd, "svc-granted", &refusal);
        assert_eq!(log.matches(&refusal).count(), 1, "{log}");
    }
    // The node resolved the name once, at Create.
    assert!(shim_log(&ctd, "svc-granted").contains("egress grant localhost:"));
    for (id, child) in [("svc-target", target_child), ("svc-granted", egress_child)] {
        assert_eq!(ctd.ctr(&["task", "kill", id]).code, 0);
        assert_eq!(finish(child).code, 0);
        assert_clean(&ctd, id);
    }
}

/// Starts the hello service as `id` with one CPU (one worker, 64 requests in flight) on a
/// free port of 127.0.0.1, its metrics on another, and `flags`: the child `ctr run`, the
/// service's port and the metrics' port.
fn spawn_hello_on_one_cpu(
    ctd: &PrivateContainerd,
    id: &str,
    flags: &[&str],
) -> (std::process::Child, u16, u16) {
    let (port, metrics) = (free_port(), free_port());
    let listen = format!("triage.io/listen=127.0.0.1:{port}");
    let metrics_listen = format!("triage.io/metrics-listen=127.0.0.1:{metrics}");
    let mut all = vec![
        "--net-host",
        "--cpus",
        "1",
        "--annotation",
        &listen,
        "--annotation",
        &metrics_listen,
    ];
    all.extend_from_slice(flags);
    let child = spawn_run(ctd, COMPONENTS_IMAGE, id, &["/http-hello.wasm"], &all);
    (child, port, metrics)
}

/// The value of the metric line that starts with `series` (name and labels).
fn metric(metrics_port: u16, series: &str) -> Option<u64> {
    let (status, text) = get(metrics_port, "/metrics");
    assert_eq!(status, "HTTP/1.1 200 OK", "{text}");
    text.lines()
        .find_map(|line| line.strip_prefix(series)?.trim().parse().ok())
}

#[test]
fn past_its_bound_a_service_answers_503_with_retry_after_and_counts_it() {
    let Some(ctd) =
        containerd("past_its_bound_a_service_answers_503_with_retry_after_and_counts_it")
    else {
        return;
    };
    let (child, port, metrics) = spawn_hello_on_one_cpu(&ctd, "svc-bound", &[]);
    wait_for_status(&ctd, "svc-bound", "RUNNING");
    let label = "{container=\"svc-bound\"";
    let in_flight = format!("triage_http_requests_in_flight{label}}}");
    // One CPU admits 64 requests at once: hold 64 in the guest, each waiting for its body.
    let mut held: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut stream = connect(port);
            stream
                .write_all(b"POST /body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\n")
                .unwrap();
            stream
        })
        .collect();
    let deadline = Instant::now() + Duration::from_secs(20);
    while metric(metrics, &in_flight) != Some(64) {
        assert!(
            Instant::now() < deadline,
            "the service never held 64 requests: {:?}",
            get(metrics, "/metrics")
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The 65th is answered at once, by the host: 503 with Retry-After, not dropped.
    let answer = http_get_raw(([127, 0, 0, 1], port).into(), "/more");
    assert!(
        answer.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
        "{answer}"
    );
    assert!(
        answer
            .to_ascii_lowercase()
            .contains("\r\nretry-after: 1\r\n"),
        "{answer}"
    );
    // Kubelet's probe still gets through.
    assert_eq!(get(port, "/.well-known/triage/health").0, "HTTP/1.1 200 OK");
    // Released, every held request is answered by the guest.
    for stream in &mut held {
        stream.write_all(b"hello").unwrap();
    }
    for stream in &mut held {
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        let body = answer.split_once("\r\n\r\n").map(|(_, b)| unchunk(b));
        assert_eq!(body.as_deref(), Some("read 5 bytes\n"), "{answer}");
    }
    // The counts, as Prometheus scrapes them.
    let total = |outcome: &str| {
        metric(
            metrics,
            &format!("triage_http_requests_total{label},outcome=\"{outcome}\"}}"),
        )
    };
    assert_eq!(total("served"), Some(64));
    assert_eq!(total("overloaded"), Some(1));
    assert_eq!(total("failed"), Some(0));
    assert_eq!(metric(metrics, &in_flight), Some(0));
    let count = format!("triage_http_request_duration_seconds_count{label}}}");
    assert_eq!(metric(metrics, &count), Some(64));
    assert_eq!(get(metrics, "/other").0, "HTTP/1.1 404 Not Found");
    assert_eq!(ctd.ctr(&["task", "kill", "svc-bound"]).code, 0);
    assert_eq!(finish(child).code, 0);
    assert!(TcpStream::connect(("127.0.0.1", metrics)).is_err());
    assert_clean(&ctd, "svc-bound");
}

#[test]
fn a_component_binds_listens_and_accepts_through_wasi_sockets() {
    let Some(ctd) = containerd("a_component_binds_listens_and_accepts_through_wasi_sockets") else {
        return;
    };
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    // A command that serves by itself; no grant is needed to answer clients.
    let mut child = spawn_run(
        &ctd,
        COMPONENTS_IMAGE,
        "sock-echo",
        &["/tcp-echo.wasm", &addr, "2"],
        &["--net-host"],
    );
    assert_eq!(first_line(&mut child), format!("listening on {addr}"));
    for word in ["ping", "pong"] {
        let mut stream = connect(port);
        writeln!(stream, "{word}").unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        assert_eq!(answer, format!("echo: {word}\n"));
    }
    let out = finish(child);
    assert_eq!(out.code, 0, "{out:?}");
    assert_clean(&ctd, "sock-echo");
}

#[test]
fn a_request_past_its_deadline_is_answered_504_and_spares_the_others() {
    let Some(ctd) = containerd("a_request_past_its_deadline_is_answered_504_and_spares_the_others")
    else {
        return;
    };
    // One worker thread, which a guest that never returns would otherwise keep.
    let (child, port, metrics) = spawn_hello_on_one_cpu(
        &ctd,
        "svc-deadline",
        &["--annotation", "triage.io/request-timeout=2s"],
    );
    wait_for_status(&ctd, "svc-deadline", "RUNNING");
    let spinning: Vec<_> = (0..2)
        .map(|_| std::thread::spawn(move || get(port, "/spin")))
        .collect();
    let in_flight = "triage_http_requests_in_flight{container=\"svc-deadline\"}";
    let deadline = Instant::now() + Duration::from_secs(10);
    while metric(metrics, in_flight) != Some(2) {
        assert!(
            Instant::now() < deadline,
            "the spinning requests never started"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // While both spin, the service and kubelet's probe still answer.
    assert_eq!(get(port, "/visit").0, "HTTP/1.1 200 OK");
    assert_eq!(get(port, "/.well-known/triage/health").0, "HTTP/1.1 200 OK");
    for spinning in spinning {
        let (status, body) = spinning.join().unwrap();
        assert_eq!(status, "HTTP/1.1 504 Gateway Timeout", "{body}");
        assert_eq!(body, "the service did not answer in time\n");
    }
    let log = wait_for_log(&ctd, "svc-deadline", "past its deadline of 2000 ms");
    assert!(log.contains("answered 504"), "{log}");
    let failed = "triage_http_requests_total{container=\"svc-deadline\",outcome=\"failed\"}";
    assert_eq!(metric(metrics, failed), Some(2));
    assert_eq!(metric(metrics, in_flight), Some(0));
    assert_eq!(ctd.ctr(&["task", "kill", "svc-deadline"]).code, 0);
    assert_eq!(finish(child).code, 0);
    assert_clean(&ctd, "svc-deadline");
}

/// A held-out case as the imaging service takes it: a digit as an 8×8 PGM image, a
/// breast mass's features as CSV.
fn case_body(model: TestModel, features: &[f32]) -> Vec<u8> {
    let values: Vec<String> = features.iter().map(|v| format!("{v:?}")).collect();
    if model.features == 64 {
        format!("P2\n8 8\n16\n{}\n", values.join(" ")).into_bytes()
    } else {
        values.join(",").into_bytes()
    }
}

#[test]
fn an_imaging_service_classifies_each_posted_case_with_graphs_built_once_for_the_container() {
    let test =
        "an_imaging_service_classifies_each_posted_case_with_graphs_built_once_for_the_container";
    let Some(ctd) = containerd(test) else {
        return;
    };
    ctd.write_node_profile("[nn]\ncpu_backend = \"tract\"\n")
        .unwrap();
    let port = free_port();
    let listen = format!("triage.io/listen=127.0.0.1:{port}");
    let child = spawn_run(
        &ctd,
        COMPONENTS_IMAGE,
        "svc-classify",
        &["/http-classify.wasm"],
        &[
            "--net-host",
            "--annotation",
            &listen,
            "--annotation",
            "triage.io/nn-preload=digits:ONNX:CPU:/models/digits_mlp.onnx,breast:ONNX:CPU:/models/breast_cancer_mlp.onnx",
            "--env",
            &format!("LABELS_breast={}", BREAST_CANCER.labels.join(",")),
        ],
    );
    wait_for_status(&ctd, "svc-classify", "RUNNING");
    let addr = ([127, 0, 0, 1], port).into();

    // Every held-out case over HTTP, one request each: as accurate as the batch guest.
    for (model, name) in [(DIGITS, "digits"), (BREAST_CANCER, "breast")] {
        let cases = model.holdout();
        let mut correct = 0;
        for case in &cases {
            let (status, body) = http_post(
                addr,
                &format!("/classify/{name}"),
                &case_body(model, &case.features),
            );
            assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
            let (label, p) = body
                .trim_end()
                .split_once(' ')
                .unwrap_or_else(|| panic!("{body}"));
            let p: f32 = p.parse().unwrap_or_else(|_| panic!("{body}"));
            assert!(p > 0.0 && p <= 1.0, "{body}");
            assert!(model.labels.contains(&label), "{body}");
            correct += usize::from(label == case.label);
        }
        let accuracy = correct as f64 / cases.len() as f64;
        assert!(accuracy >= 0.95, "{name}: accuracy {accuracy} over HTTP");
    }
    // The same digit as raw floats with its shape, as an image pipeline would send it.
    let case = &DIGITS.holdout()[0];
    let raw: Vec<u8> = case.features.iter().flat_map(|f| f.to_le_bytes()).collect();
    let response = http_request_raw(
        addr,
        "POST",
        "/classify/digits",
        &[
            ("content-type", "application/octet-stream"),
            ("x-input-shape", "1,64"),
        ],
        &raw,
    );
    let (status, body) = status_and_body(&response);
    assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
    assert!(body.starts_with(&format!("{} ", case.label)), "{body}");

    // What the guest cannot classify gets the guest's answer, and the service goes on.
    let (status, body) = http_post(addr, "/classify/digits", b"not a case");
    assert_eq!(status, "HTTP/1.1 400 Bad Request", "{body}");
    let response = http_request_raw(
        addr,
        "POST",
        "/classify/digits",
        &[("x-input-name", "pixels")],
        &case_body(DIGITS, &case.features),
    );
    // wasmtime gives the guest only "Failed while accessing backend": the reason is in
    // the shim's log, under the container's id (checked below).
    let (status, body) = status_and_body(&response);
    assert_eq!(status, "HTTP/1.1 500 Internal Server Error", "{body}");
    assert!(body.contains("RuntimeError"), "{body}");
    let (status, body) = http_post(addr, "/classify/lungs", b"1,2,3");
    assert_eq!(status, "HTTP/1.1 404 Not Found", "{body}");
    assert!(
        body.contains("NotFound") && body.contains("lungs"),
        "{body}"
    );

    assert_eq!(ctd.ctr(&["task", "kill", "svc-classify"]).code, 0);
    let out = finish(child);
    assert_eq!(out.code, 0, "{out:?}");
    // Each graph was built once, for the container, before the first request: never
    // per request, and never by a guest.
    let log = shim_log(&ctd, "svc-classify");
    let built: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("wasi-nn model preloaded"))
        .collect();
    assert_eq!(built.len(), 2, "{log}");
    assert!(
        built.iter().any(|l| l.contains("model=digits"))
            && built.iter().any(|l| l.contains("model=breast")),
        "{log}"
    );
    assert!(!log.contains("wasi-nn graph loaded by the guest"), "{log}");
    assert!(
        log.lines().any(|l| l.contains("container=svc-classify")
            && l.contains(r#"the graph has no input named "pixels" (its inputs: input)"#)),
        "{log}"
    );
    assert_clean(&ctd, "svc-classify");
}

/// Sends `line` to 127.0.0.1:`port` and reads the answer to its end.
fn exchange(port: u16, line: &str) -> String {
    let mut stream = connect(port);
    writeln!(stream, "{line}").unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    answer
}

#[test]
fn a_preview1_module_serves_on_the_sockets_it_is_handed_as_listen_fds() {
    let test = "a_preview1_module_serves_on_the_sockets_it_is_handed_as_listen_fds";
    let Some(ctd) = containerd(test) else {
        return;
    };
    let (first, second) = (free_port(), free_port());
    let listen = format!("triage.io/listen=127.0.0.1:{first},127.0.0.1:{second}");
    let child = spawn_run(
        &ctd,
        WASM_IMAGE,
        "svc-p1",
        &["/listen-echo.wasm"],
        &[
            "--net-host",
            "--annotation",
            &listen,
            // The image's own socket-activation variables are replaced by Triage's.
            "--env",
            "LISTEN_FDS=7",
        ],
    );
    wait_for_status(&ctd, "svc-p1", "RUNNING");
    // Both addresses, each its own descriptor (3 and 4), waited on with poll_oneoff.
    assert_eq!(exchange(first, "scan 17"), "listener 0: scan 17\n");
    assert_eq!(exchange(second, "scan 18"), "listener 1: scan 18\n");
    // Its preopens come after the listeners, and it sees Triage's LISTEN_FDS only.
    assert_eq!(exchange(first, "motd"), "inside the wasm image\n");
    let env = exchange(second, "env");
    assert_eq!(
        env.lines()
            .filter(|l| l.starts_with("LISTEN_"))
            .collect::<Vec<_>>(),
        ["LISTEN_FDS=2"],
        "{env}"
    );
    // fd 3 is a listener, not a directory: wasi-libc's preopen scan steps over its type,
    // and nothing reaches the placeholder that holds its number in wasmtime's table.
    assert_eq!(
        exchange(first, "probe"),
        "prestat errno 0 type 1, path_open errno 54, fd_readdir errno 54\n"
    );
    // Connections one after another, as many as asked.
    for n in 0..20 {
        assert_eq!(
            exchange(first, &format!("n{n}")),
            format!("listener 0: n{n}\n")
        );
    }
    assert_eq!(exchange(first, "exit"), "bye\n");
    let out = finish(child);
    assert_eq!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains("serving on 2 inherited sockets"),
        "{out:?}"
    );
    assert!(TcpStream::connect(("127.0.0.1", first)).is_err());
    assert_clean(&ctd, "svc-p1");

    // Waiting for a connection, it ends on SIGTERM as any guest does (143).
    let port = free_port();
    let listen = format!("triage.io/listen=127.0.0.1:{port}");
    let child = spawn_run(
        &ctd,
        WASM_IMAGE,
        "svc-p1-term",
        &["/listen-echo.wasm"],
        &["--net-host", "--annotation", &listen],
    );
    wait_for_status(&ctd, "svc-p1-term", "RUNNING");
    assert_eq!(exchange(port, "ready"), "listener 0: ready\n");
    assert_eq!(ctd.ctr(&["task", "kill", "svc-p1-term"]).code, 0);
    let out = finish(child);
    assert_eq!(out.code, 143, "{out:?}");
    assert_clean(&ctd, "svc-p1-term");

    // Without the annotation a module gets no sockets: fd 3 is its first preopen again.
    let out = run(&ctd, &[], WASM_IMAGE, "svc-p1-none", &["/listen-echo.wasm"]);
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("no LISTEN_FDS"), "{out:?}");
}

#[test]
fn a_service_whose_runwasi_listen_variable_is_no_address_is_refused_with_it() {
    let test = "a_service_whose_runwasi_listen_variable_is_no_address_is_refused_with_it";
    let Some(ctd) = containerd(test) else {
        return;
    };
    // A name where an address belongs: not served on the default port instead.
    let out = run(
        &ctd,
        &[
            "--net-host",
            "--env",
            "WASMTIME_HTTP_PROXY_SOCKET_ADDR=localhost:8080",
        ],
        COMPONENTS_IMAGE,
        "svc-badenv",
        &["/http-hello.wasm"],
    );
    assert_ne!(out.code, 0, "{out:?}");
    assert!(
        out.stderr.contains(
            r#"container svc-badenv: cannot set up wasm guest: environment WASMTIME_HTTP_PROXY_SOCKET_ADDR="localhost:8080" is not valid (expected at most 16 IP:PORT addresses"#
        ),
        "{out:?}"
    );
    assert_clean(&ctd, "svc-badenv");
}

#[test]
fn a_service_component_starts_each_request_from_its_snapshot() {
    let test = "a_service_component_starts_each_request_from_its_snapshot";
    let Some(ctd) = containerd(test) else {
        return;
    };
    // Starts `id` serving /http-snap.wasm on a port of its own; its first answer.
    let serve = |id: &str, extra: &[&str]| {
        let port = free_port();
        let listen = format!("triage.io/listen=127.0.0.1:{port}");
        let mut flags = vec!["--net-host", "--annotation", listen.as_str()];
        flags.extend_from_slice(extra);
        let child = spawn_run(&ctd, COMPONENTS_IMAGE, id, &["/http-snap.wasm"], &flags);
        wait_for_status(&ctd, id, "RUNNING");
        let answers = [get(port, "/a"), get(port, "/b")];
        assert_eq!(ctd.ctr(&["task", "kill", id]).code, 0);
        let out = finish(child);
        assert_eq!(out.code, 0, "{out:?}");
        assert_clean(&ctd, id);
        answers.map(|(status, body)| {
            assert_eq!(status, "HTTP/1.1 200 OK", "{body}");
            body
        })
    };
    // Its `wizer-initialize` ran once, at the first Create: every request's fresh
    // instance starts from the memory it left.
    let snapped = serve("svc-snap", &[]);
    assert!(
        snapped[0].starts_with("from snapshot: true, table sum "),
        "{snapped:?}"
    );
    assert_eq!(snapped[0], snapped[1]);
    let log = shim_log(&ctd, "svc-snap");
    assert!(log.contains("wasm component pre-initialised"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("wasm module from the artifact cache")
                && l.contains("outcome=Built")
                && l.contains(r#"snapshot="wizer-initialize""#)),
        "{log}"
    );
    // A later container maps the same snapshot: the init does not run again.
    let again = serve("svc-snap-2", &[]);
    assert_eq!(again, snapped);
    let log = shim_log(&ctd, "svc-snap-2");
    assert!(!log.contains("pre-initialised"), "{log}");
    assert!(
        log.lines()
            .any(|l| l.contains("outcome=Hit") && l.contains(r#"snapshot="wizer-initialize""#)),
        "{log}"
    );
    // Without the snapshot each request computes what the init would have: same answer.
    let fresh = serve("svc-snap-off", &["--annotation", "triage.io/snapshot=off"]);
    let sum = |body: &str| body.split_once("table sum ").map(|(_, s)| s.to_owned());
    assert!(fresh[0].starts_with("from snapshot: false, "), "{fresh:?}");
    assert_eq!(sum(&fresh[0]), sum(&snapped[0]));
}
