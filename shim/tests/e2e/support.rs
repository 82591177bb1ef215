//! Shared set-up for the end-to-end tests.

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{mpsc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use triage_testkit::{images_dir, leftovers, require_host, shim_dir};
pub use triage_testkit::{CtrOutput, PrivateContainerd, TRIAGE_RUNTIME};

pub const WASM_IMAGE: &str = "triage.test/wasm:latest";
pub const NOARGS_IMAGE: &str = "triage.test/wasm-noargs:latest";
pub const BUSYBOX_IMAGE: &str = "triage.test/busybox:latest";
pub const COMPONENTS_IMAGE: &str = "triage.test/wasm-components:latest";

/// Tests run two at a time; one that measures CPU shares takes this exclusively so
/// that no other test's containers compete with its own.
static MACHINE: RwLock<()> = RwLock::new(());

/// A test's private containerd, holding its share of the machine.
pub struct TestContainerd {
    ctd: PrivateContainerd,
    _share: Share,
}

enum Share {
    Shared(#[allow(dead_code)] RwLockReadGuard<'static, ()>),
    Exclusive(#[allow(dead_code)] RwLockWriteGuard<'static, ()>),
}

impl std::ops::Deref for TestContainerd {
    type Target = PrivateContainerd;

    fn deref(&self) -> &PrivateContainerd {
        &self.ctd
    }
}

impl std::ops::DerefMut for TestContainerd {
    fn deref_mut(&mut self) -> &mut PrivateContainerd {
        &mut self.ctd
    }
}

impl TestContainerd {
    /// Wraps a started containerd, sharing the machine with other tests.
    pub fn shared(start: impl FnOnce() -> PrivateContainerd) -> Self {
        let share = Share::Shared(MACHINE.read().unwrap_or_else(|p| p.into_inner()));
        Self {
            ctd: start(),
            _share: share,
        }
    }
}

fn start_with_images() -> PrivateContainerd {
    start_with_images_from(&shim_dir(env!("CARGO_BIN_EXE_containerd-shim-triage-v1")))
}

fn start_with_images_from(shims: &std::path::Path) -> PrivateContainerd {
    let ctd = PrivateContainerd::start(shims).expect("start a private containerd");
    for image in ["wasm", "wasm-noargs", "busybox", "wasm-components"] {
        ctd.import(&images_dir().join(format!("{image}.tar")))
            .expect("import test image");
    }
    ctd
}

/// A private containerd with the test images imported; `None` when the host cannot run
/// end-to-end tests (the reason is printed).
pub fn containerd(test: &str) -> Option<TestContainerd> {
    if !require_host(test) {
        return None;
    }
    Some(TestContainerd::shared(start_with_images))
}

/// Like [`containerd`], with the shim found in `shims` (e.g. a copy of the build's).
pub fn containerd_with_shims(test: &str, shims: &std::path::Path) -> Option<TestContainerd> {
    if !require_host(test) {
        return None;
    }
    let shims = shims.to_path_buf();
    Some(TestContainerd::shared(move || {
        start_with_images_from(&shims)
    }))
}

/// Like [`containerd`], with no other test running until it is dropped.
pub fn containerd_alone(test: &str) -> Option<TestContainerd> {
    if !require_host(test) {
        return None;
    }
    let share = Share::Exclusive(MACHINE.write().unwrap_or_else(|p| p.into_inner()));
    Some(TestContainerd {
        ctd: start_with_images(),
        _share: share,
    })
}

/// The arguments of `ctr run --rm --runtime io.containerd.triage.v1 [flags] IMAGE ID [ARGS]`.
fn run_args<'a>(flags: &[&'a str], image: &'a str, id: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut full = vec!["run", "--rm", "--runtime", TRIAGE_RUNTIME];
    full.extend_from_slice(flags);
    full.push(image);
    full.push(id);
    full.extend_from_slice(args);
    full
}

/// Runs a container to completion through Triage.
pub fn run(
    ctd: &PrivateContainerd,
    flags: &[&str],
    image: &str,
    id: &str,
    args: &[&str],
) -> CtrOutput {
    ctd.ctr(&run_args(flags, image, id, args))
}

/// Starts `ctr run` in the background (its exit code is the container's).
pub fn spawn_run(
    ctd: &PrivateContainerd,
    image: &str,
    id: &str,
    args: &[&str],
    flags: &[&str],
) -> Child {
    ctd.ctr_command(&run_args(flags, image, id, args))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn ctr run")
}

/// The STATUS column `ctr task ls` shows for `id`, if it lists it.
pub fn task_status(ctd: &PrivateContainerd, id: &str) -> Option<String> {
    ctd.ctr(&["task", "ls"])
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .and_then(|l| l.split_whitespace().nth(2).map(str::to_owned))
}

/// The PID column `ctr task ls` shows for `id`.
pub fn task_pid(ctd: &PrivateContainerd, id: &str) -> Option<u32> {
    ctd.ctr(&["task", "ls"])
        .stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(id))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
}

/// Waits until process `pid` has a child (e.g. a shell has forked its command).
pub fn wait_for_child_of(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let has_child = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok())
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            // Field 4 of /proc/PID/stat, after the parenthesised command name.
            .filter_map(|stat| {
                stat.rsplit_once(") ")?
                    .1
                    .split(' ')
                    .nth(1)?
                    .parse::<u32>()
                    .ok()
            })
            .any(|ppid| ppid == pid);
        if has_child {
            return;
        }
        assert!(Instant::now() < deadline, "process {pid} never forked");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `ctr task ls` until `id` has `status` (a readiness check with a deadline).
pub fn wait_for_status(ctd: &PrivateContainerd, id: &str, status: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let now = task_status(ctd, id);
        if now.as_deref() == Some(status) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "task {id} never reached {status} (last: {now:?})\n{}",
            ctd.log()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Reads the first line a background `ctr run` prints (the workload is up).
pub fn first_line(child: &mut Child) -> String {
    use std::io::Read;
    let stdout = child.stdout.as_mut().expect("piped stdout");
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    while stdout.read(&mut byte).map(|n| n == 1).unwrap_or(false) && byte[0] != b'\n' {
        line.push(byte[0]);
    }
    String::from_utf8_lossy(&line).into_owned()
}

/// Waits for a background `ctr run` and returns its output.
pub fn finish(child: Child) -> CtrOutput {
    let out = child.wait_with_output().expect("wait for ctr");
    CtrOutput {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// SIGKILLs the task of a background `ctr run`, which then exits 137, and asserts the
/// container left nothing behind.
pub fn kill_and_check_clean(ctd: &PrivateContainerd, id: &str, child: Child) {
    let out = ctd.ctr(&["task", "kill", "--signal", "SIGKILL", id]);
    assert_eq!(out.code, 0, "{out:?}");
    assert_eq!(finish(child).code, 137);
    assert_clean(ctd, id);
}

/// Asserts the container `id` left nothing behind: no process, mount, cgroup or bundle.
pub fn assert_clean(ctd: &PrivateContainerd, id: &str) {
    assert_clean_in(ctd, triage_testkit::NAMESPACE, id)
}

/// [`assert_clean`] for a task in containerd namespace `namespace`.
pub fn assert_clean_in(ctd: &PrivateContainerd, namespace: &str, id: &str) {
    // The shim exits after containerd's Shutdown; allow it a moment to finish exiting.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let left = leftovers(id, &ctd.bundle_dir_in(namespace, id));
        if left.is_empty() {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "container {id} left:\n{}\ncontainerd log:\n{}",
            left.join("\n"),
            ctd.log()
        );
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// The shim log lines (copied into containerd's log) that mention `id`.
pub fn shim_log(ctd: &PrivateContainerd, id: &str) -> String {
    ctd.log()
        .lines()
        .filter(|l| l.contains(id))
        .collect::<Vec<_>>()
        .join("\n")
}

/// The shim log lines for `id`, once one of them contains `needle`: containerd copies the
/// shim's log FIFO into its own log on its own schedule, so a line the shim wrote just
/// before an exit can reach the file after `ctr` has returned.
pub fn wait_for_log(ctd: &PrivateContainerd, id: &str, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let log = shim_log(ctd, id);
        if log.contains(needle) {
            return log;
        }
        assert!(
            Instant::now() < deadline,
            "no {needle:?} in the log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A directory holding the shim under both names `make install` gives it
/// (`containerd-shim-triage-v1`, `containerd-shim-wasmedge-v1`), for containerd's PATH.
pub fn installed_shim_dir() -> tempfile::TempDir {
    let bin = tempfile::tempdir().expect("temp dir");
    let shim = env!("CARGO_BIN_EXE_containerd-shim-triage-v1");
    for name in ["containerd-shim-triage-v1", "containerd-shim-wasmedge-v1"] {
        std::os::unix::fs::symlink(shim, bin.path().join(name)).expect("link the shim");
    }
    bin
}

/// `ctr events`, subscribed and known to be live.
pub struct EventStream {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl EventStream {
    /// Starts `ctr events` and runs probe containers until one is seen: the
    /// subscription is asynchronous, so only then is it certainly live.
    pub fn subscribe(ctd: &PrivateContainerd) -> Self {
        let (tx, lines) = mpsc::channel::<String>();
        let mut stream = Self {
            child: ctd
                .ctr_command(&["events"])
                .stdout(Stdio::piped())
                .spawn()
                .expect("ctr events"),
            lines,
        };
        let stdout = stream.child.stdout.take().expect("piped stdout");
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let deadline = Instant::now() + Duration::from_secs(20);
        for n in 0.. {
            assert!(
                Instant::now() < deadline,
                "ctr events never reported anything"
            );
            let probe = format!("events-probe-{n}");
            assert_eq!(
                run(ctd, &[], WASM_IMAGE, &probe, &["/exit.wasm", "0"]).code,
                0
            );
            while let Ok(line) = stream.lines.recv_timeout(Duration::from_millis(200)) {
                if line.contains(&probe) {
                    return stream;
                }
            }
        }
        unreachable!("the loop returns or fails its deadline")
    }

    /// The topics of `id`'s events, in order, up to and including `/tasks/delete`.
    pub fn topics_until_delete(&self, ctd: &PrivateContainerd, id: &str) -> Vec<String> {
        let mut topics = Vec::new();
        while topics.last().map(String::as_str) != Some("/tasks/delete") {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(20))
                .unwrap_or_else(|_| panic!("events so far: {topics:?}\n{}", ctd.log()));
            if line.contains(id) {
                topics.extend(
                    line.split_whitespace()
                        .find(|w| w.starts_with("/tasks/"))
                        .map(str::to_owned),
                );
            }
        }
        topics
    }
}

impl Drop for EventStream {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connects to `addr`, waiting while nothing listens there yet (at most 10 s).
pub fn http_connect(addr: std::net::SocketAddr) -> std::net::TcpStream {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(5)) {
            Ok(stream) => {
                stream
                    .set_read_timeout(Some(Duration::from_secs(10)))
                    .unwrap();
                return stream;
            }
            Err(_) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("nothing answers on {addr}: {e}"),
        }
    }
}

/// `GET path` from `addr` over HTTP/1.1 with `Connection: close`: the whole response as
/// it came (head and body).
pub fn http_get_raw(addr: std::net::SocketAddr, path: &str) -> String {
    http_request_raw(addr, "GET", path, &[], b"")
}

/// `method path` with `headers` and `body` to `addr` over HTTP/1.1 with `Connection:
/// close`: the whole response as it came (head and body).
pub fn http_request_raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> String {
    use std::io::{Read, Write};
    let mut stream = http_connect(addr);
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    if method != "GET" {
        head.push_str(&format!("Content-Length: {}\r\n", body.len()));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).unwrap();
    stream.write_all(body).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// `GET path` from `addr` over HTTP/1.1 with `Connection: close`: the status line and
/// the body (de-chunked).
pub fn http_get(addr: std::net::SocketAddr, path: &str) -> (String, String) {
    status_and_body(&http_get_raw(addr, path))
}

/// `POST path` with `body` to `addr` over HTTP/1.1 with `Connection: close`: the status
/// line and the body (de-chunked).
pub fn http_post(addr: std::net::SocketAddr, path: &str, body: &[u8]) -> (String, String) {
    status_and_body(&http_request_raw(addr, "POST", path, &[], body))
}

/// A whole response's status line and body (de-chunked).
pub fn status_and_body(response: &str) -> (String, String) {
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((response, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        unchunk(body)
    } else {
        body.to_owned()
    };
    (status, body)
}

/// The data of a chunked body.
pub fn unchunk(mut body: &str) -> String {
    let mut data = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if size == 0 {
            break;
        }
        data.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    data
}
