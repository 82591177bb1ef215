//! One Wasm container through Triage's real path, without containerd: a bundle on disk, the
//! shim's decision and validation, libcontainer's create in this single-threaded process,
//! start, signals, wait, delete; its stdout, stderr, exit status and log come back.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::{
    LinuxBuilder, LinuxMemoryBuilder, LinuxResourcesBuilder, MountBuilder, ProcessBuilder, Spec,
};
use triage_oci::{Bundle, EngineName, ModuleSource, WorkloadKind};
use triage_runtime::engine::cache::CacheSettings;

/// Files every container's rootfs holds beside the workloads.
pub const MOTD: &str = "inside the wasm image\n";

/// The cgroup parent of the containers (`scripts/cgroup-leftovers.sh` checks `/triage-test*`).
const CGROUP_PARENT: &str = "/triage-test-conformance";

/// What one container did.
#[derive(Debug)]
pub struct Outcome {
    /// Its exit status (128+signal for a signal), or the error Create returned.
    pub result: Result<i32, String>,
    /// What the guest wrote to stdout.
    pub stdout: String,
    /// What the guest (and the executor on its behalf) wrote to stderr.
    pub stderr: String,
    /// What the guest answered on its socket ([`Request::exchange`]).
    pub reply: Option<String>,
}

/// A line sent to a guest that serves, once it printed `after`: to `127.0.0.1:port` of the
/// container's network namespace, which is then this process's (no namespace of its own).
pub struct Exchange<'a> {
    pub after: &'a str,
    pub port: u16,
    pub send: &'a str,
}

/// A container to run.
pub struct Request<'a> {
    /// The engine that runs it.
    pub engine: EngineName,
    /// `process.args`, the module first (`/reactor.wasm#greet` calls an export).
    pub args: &'a [&'a str],
    /// `process.env`.
    pub env: &'a [&'a str],
    /// `linux.resources.memory.limit`, bytes.
    pub memory_limit: Option<i64>,
    /// Host directories bind-mounted read-only: (host dir, container path).
    pub binds: Vec<(PathBuf, &'a str)>,
    /// Once the guest printed this line, send it this signal.
    pub signal_after: Option<(&'a str, i32)>,
    /// Talk to the guest over TCP.
    pub exchange: Option<Exchange<'a>>,
    /// Another artifact cache than the node's.
    pub cache: Option<&'a CacheSettings>,
}

/// The test's node: workloads, cache, log, and a directory for bundles.
pub struct Node {
    /// The built Wasm workloads (`*.wasm`).
    pub wasm_dir: PathBuf,
    /// Bundles, the artifact cache, the log.
    pub dir: tempfile::TempDir,
    /// The artifact cache of this node.
    pub cache: CacheSettings,
    /// The log all containers write to (the harness's tracing output).
    log: PathBuf,
    next: std::cell::Cell<u32>,
}

impl Node {
    /// A node over the workloads in `wasm_dir`.
    pub fn new(wasm_dir: PathBuf) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let cache = CacheSettings {
            dir: Some(dir.path().join("cache")),
            max_bytes: 1 << 30,
        };
        Self {
            wasm_dir,
            log: dir.path().join("triage.log"),
            dir,
            cache,
            next: std::cell::Cell::new(0),
        }
    }

    /// A node over the workloads in `wasm_dir` whose containers log where `other`'s do
    /// (one harness, one log).
    pub fn logging_with(wasm_dir: PathBuf, other: &Node) -> Self {
        Self {
            log: other.log_path(),
            ..Self::new(wasm_dir)
        }
    }

    /// The log all containers write to (the harness's tracing output).
    pub fn log_path(&self) -> PathBuf {
        self.log.clone()
    }

    /// The log lines of container `id`.
    pub fn log_of(&self, id: &str) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let needle = format!("container={id}");
        log.lines()
            .filter(|l| l.contains(&needle) || l.contains(&format!("container {id}:")))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Runs one container to its end; its id is `name` with a number.
    pub fn run(&self, name: &str, request: &Request) -> (String, Outcome) {
        let n = self.next.get() + 1;
        self.next.set(n);
        let id = format!("{name}-{n}");
        let bundle = self.dir.path().join(&id);
        self.write_bundle(&id, &bundle, request);
        let stdout = bundle.join("stdout");
        let stderr = bundle.join("stderr");
        let result = with_stdio(&stdout, &stderr, || create(&id, &bundle, request, self));
        // The shim's helper forks the init after loading: nothing may leave a thread behind
        // (WasmEdge's compiler does, so it compiles in a child process).
        let threads = std::fs::read_dir("/proc/self/task").unwrap().count();
        assert_eq!(threads, 1, "{id}: threads left in the creating process");
        let reply = std::cell::RefCell::new(None);
        let result = result.and_then(|pid| finish(&id, &bundle, pid, request, &stdout, &reply));
        if let Err(e) = triage_runtime::container::delete(&id, &bundle) {
            panic!("{id}: delete: {e}");
        }
        let left = left_behind(&id, &bundle);
        assert!(left.is_empty(), "{id} left behind: {left:?}");
        let outcome = Outcome {
            result,
            stdout: std::fs::read_to_string(&stdout).unwrap_or_default(),
            stderr: std::fs::read_to_string(&stderr).unwrap_or_default(),
            reply: reply.into_inner(),
        };
        (id, outcome)
    }

    fn write_bundle(&self, id: &str, bundle: &Path, request: &Request) {
        let rootfs = bundle.join("rootfs");
        std::fs::create_dir_all(rootfs.join("etc")).unwrap();
        std::fs::write(rootfs.join("etc/motd"), MOTD).unwrap();
        std::fs::write(rootfs.join("bad.wasm"), b"\0asm\x01\0\0\0\xff\xff").unwrap();
        for entry in std::fs::read_dir(&self.wasm_dir).unwrap() {
            let path = entry.unwrap().path();
            if path.extension().is_some_and(|e| e == "wasm") {
                std::fs::copy(&path, rootfs.join(path.file_name().unwrap())).unwrap();
            }
        }
        let mut spec = Spec::default();
        let mut mounts = spec.mounts().clone().unwrap_or_default();
        for (host, dest) in &request.binds {
            mounts.push(
                MountBuilder::default()
                    .destination(dest)
                    .typ("bind")
                    .source(host)
                    .options(vec!["rbind".into(), "ro".into()])
                    .build()
                    .unwrap(),
            );
        }
        spec.set_mounts(Some(mounts));
        let process = ProcessBuilder::default()
            .terminal(false)
            .args(
                request
                    .args
                    .iter()
                    .map(|a| a.to_string())
                    .collect::<Vec<_>>(),
            )
            .env(
                request
                    .env
                    .iter()
                    .map(|e| e.to_string())
                    .collect::<Vec<_>>(),
            )
            .cwd("/")
            .build()
            .unwrap();
        spec.set_process(Some(process));
        let mut root = spec.root().clone().unwrap();
        root.set_path(rootfs);
        root.set_readonly(Some(false));
        spec.set_root(Some(root));
        let mut annotations = std::collections::HashMap::new();
        annotations.insert(
            triage_oci::annotations::ENGINE.to_owned(),
            request.engine.as_str().to_owned(),
        );
        spec.set_annotations(Some(annotations));
        let default_linux = spec.linux().clone().unwrap();
        let mut resources = LinuxResourcesBuilder::default();
        if let Some(limit) = request.memory_limit {
            resources =
                resources.memory(LinuxMemoryBuilder::default().limit(limit).build().unwrap());
        }
        let mut namespaces = default_linux.namespaces().clone().unwrap_or_default();
        if request.exchange.is_some() {
            namespaces.retain(|ns| ns.typ() != oci_spec::runtime::LinuxNamespaceType::Network);
        }
        let linux = LinuxBuilder::default()
            .namespaces(namespaces)
            .masked_paths(default_linux.masked_paths().clone().unwrap_or_default())
            .readonly_paths(default_linux.readonly_paths().clone().unwrap_or_default())
            .cgroups_path(PathBuf::from(format!("{CGROUP_PARENT}/{id}")))
            .resources(resources.build().unwrap())
            .build()
            .unwrap();
        spec.set_linux(Some(linux));
        // As the shim's Create does for every Wasm container: the guest's /proc/self
        // is not its engine's.
        triage_oci::guest_view::hide_engine_process(&mut spec);
        spec.save(bundle.join("config.json")).unwrap();
    }
}

/// What the shim's Create does before its helper: plan (settled with the node), validate the
/// module; then the helper's part, libcontainer's create. Returns the init's pid.
fn create(id: &str, bundle: &Path, request: &Request, node: &Node) -> Result<i32, String> {
    let spec = Bundle::load(id, bundle).map_err(|e| e.to_string())?;
    let cache = request.cache.unwrap_or(&node.cache);
    let context = triage_oci::NodeContext {
        cache: cache.dir.is_some(),
        build_default: triage_runtime::engine::build_default(),
        ..Default::default()
    };
    let limits = context.files;
    let triage_oci::Decision { plan, files } =
        triage_oci::decide(&spec, None, &context).map_err(|e| e.to_string())?;
    let WorkloadKind::Wasm(wasm) = &plan.kind else {
        return Err(format!("container {id}: planned as {}", plan.kind_name()));
    };
    assert_eq!(wasm.engine.engine, request.engine);
    if let (ModuleSource::File { container_path, .. }, Some(module)) = (&wasm.module, &files.module)
    {
        let bytes = module
            .read_all(limits.module_bytes, "files.max_module_size")
            .map_err(|e| e.to_string())?;
        triage_runtime::engine::validate_module(id, wasm, container_path, &bytes, None)
            .map_err(|e| e.to_string())?;
    }
    triage_runtime::container::create(
        &plan,
        bundle,
        None,
        None,
        &triage_runtime::container::NodeSettings {
            cache,
            nn: &triage_oci::NnSettings::default(),
            files: &limits,
        },
        files,
    )
    .map_err(|e| e.to_string())
}

/// Starts the container, signals it or talks to it when asked (the reply in `reply`), and
/// waits for its init's status.
fn finish(
    id: &str,
    bundle: &Path,
    pid: i32,
    request: &Request,
    stdout: &Path,
    reply: &std::cell::RefCell<Option<String>>,
) -> Result<i32, String> {
    if !triage_runtime::container::release(id, bundle).map_err(|e| e.to_string())? {
        triage_runtime::container::start(id, bundle).map_err(|e| e.to_string())?;
    }
    if let Some(exchange) = &request.exchange {
        use std::io::{Read, Write};
        wait_for_line(stdout, exchange.after)?;
        let mut stream = std::net::TcpStream::connect(("127.0.0.1", exchange.port))
            .map_err(|e| format!("connecting to the guest on {}: {e}", exchange.port))?;
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        writeln!(stream, "{}", exchange.send).map_err(|e| e.to_string())?;
        let mut answer = String::new();
        stream
            .read_to_string(&mut answer)
            .map_err(|e| format!("reading the guest's reply: {e}"))?;
        *reply.borrow_mut() = Some(answer);
    }
    if let Some((line, signal)) = request.signal_after {
        wait_for_line(stdout, line)?;
        triage_runtime::container::kill_all(id, bundle, signal).map_err(|e| e.to_string())?;
    }
    wait(pid)
}

/// Waits until `path` holds the line `line` (the guest printed it), at most 30 s.
fn wait_for_line(path: &Path, line: &str) -> Result<(), String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().any(|l| l == line) {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(format!(
                "the guest did not print {line:?} in 30 s: {text:?}"
            ));
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The init's exit status (this process is a subreaper: the init is reparented here). A
/// guest still running after 60 s is killed and reported.
fn wait(pid: i32) -> Result<i32, String> {
    use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
    let pid = nix::unistd::Pid::from_raw(pid);
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        match waitpid(pid, Some(WaitPidFlag::WNOHANG)) {
            Ok(WaitStatus::Exited(_, code)) => return Ok(code),
            Ok(WaitStatus::Signaled(_, signal, _)) => return Ok(128 + signal as i32),
            Ok(_) if Instant::now() > deadline => {
                let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
                let _ = waitpid(pid, None);
                return Err("the guest was still running after 60 s".to_owned());
            }
            Ok(_) => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => return Err(format!("waitpid {pid}: {e}")),
        }
    }
}

/// The container's cgroups (in every v1 hierarchy and the unified one) and libcontainer
/// state that still exist.
fn left_behind(id: &str, bundle: &Path) -> Vec<PathBuf> {
    let mut left: Vec<PathBuf> = std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .map(|hierarchy| {
            hierarchy
                .unwrap()
                .path()
                .join(CGROUP_PARENT.trim_start_matches('/'))
                .join(id)
        })
        .filter(|cgroup| cgroup.exists())
        .collect();
    let state = triage_runtime::container::state_root(bundle);
    if state.exists() {
        left.push(state);
    }
    left
}

/// Runs `f` with fds 1 and 2 on the given files (the container inherits them), then puts
/// this process's own back.
fn with_stdio<T>(stdout: &Path, stderr: &Path, f: impl FnOnce() -> T) -> T {
    use std::io::Write;
    let _ = std::io::stdout().flush();
    let out = std::fs::File::create(stdout).unwrap();
    let err = std::fs::File::create(stderr).unwrap();
    let saved_out = nix::unistd::dup(1).unwrap();
    let saved_err = nix::unistd::dup(2).unwrap();
    nix::unistd::dup2(out.as_raw_fd(), 1).unwrap();
    nix::unistd::dup2(err.as_raw_fd(), 2).unwrap();
    let result = f();
    nix::unistd::dup2(saved_out, 1).unwrap();
    nix::unistd::dup2(saved_err, 2).unwrap();
    let _ = nix::unistd::close(saved_out);
    let _ = nix::unistd::close(saved_err);
    result
}
