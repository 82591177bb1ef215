//! Host facts for tests: requirements, artefact locations, and what a container left.

use std::path::{Path, PathBuf};

/// Why the end-to-end tests cannot run here, if they cannot.
pub fn missing_requirements() -> Option<String> {
    if !nix::unistd::Uid::effective().is_root() {
        return Some("not running as root".into());
    }
    for tool in ["containerd", "ctr"] {
        let found = std::env::var("PATH")
            .unwrap_or_default()
            .split(':')
            .any(|dir| Path::new(dir).join(tool).is_file());
        if !found {
            return Some(format!(
                "{tool} is not installed (apt-get install containerd)"
            ));
        }
    }
    if !images_dir().join("wasm.tar").is_file() {
        return Some(format!(
            "test images are not built in {} (make test-images)",
            images_dir().display()
        ));
    }
    None
}

/// `true` if the host can run end-to-end tests. Otherwise prints why and returns
/// `false` — unless `CI=true`, where a missing requirement is a failure.
pub fn require_host(test: &str) -> bool {
    match missing_requirements() {
        None => true,
        Some(reason) if std::env::var("CI").as_deref() == Ok("true") => {
            panic!("{test}: CI must be able to run end-to-end tests, but {reason}")
        }
        Some(reason) => {
            eprintln!("SKIPPED {test}: {reason}");
            false
        }
    }
}

/// The workspace root (two levels above this crate).
pub(crate) fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Where `make test-images` writes the archives (`TRIAGE_IMAGES` overrides).
pub fn images_dir() -> PathBuf {
    std::env::var_os("TRIAGE_IMAGES")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("dist/images"))
}

/// The directory holding `containerd-shim-triage-v1`, given the binary's path.
pub fn shim_dir(shim_binary: &str) -> PathBuf {
    Path::new(shim_binary)
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default()
}

/// Everything a container `id` may have left on the host: processes naming it, mounts,
/// cgroup directories, its bundle. Empty means clean.
pub fn leftovers(id: &str, bundle: &Path) -> Vec<String> {
    let mut found = Vec::new();
    for (pid, cmdline) in processes() {
        // As an argument (`-id ID`), or inside a helper's JSON request (`"id":"ID"`).
        if cmdline.split(' ').any(|arg| arg == id) || cmdline.contains(&format!("\"{id}\"")) {
            found.push(format!("process {pid}: {cmdline}"));
        }
    }
    if let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") {
        found.extend(
            mountinfo
                .lines()
                .filter(|l| l.contains(id))
                .map(|l| format!("mount: {l}")),
        );
    }
    found.extend(
        cgroup_dirs_named(id)
            .into_iter()
            .map(|d| format!("cgroup: {}", d.display())),
    );
    if bundle.exists() {
        found.push(format!("bundle: {}", bundle.display()));
    }
    found
}

fn processes() -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&raw).replace('\0', " ");
            (!cmdline.is_empty()).then(|| (pid, cmdline.trim_end().to_owned()))
        })
        .collect()
}

/// Directories named `name` up to three levels below each cgroup hierarchy.
pub fn cgroup_dirs_named(name: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let mut stack: Vec<(PathBuf, usize)> = std::fs::read_dir("/sys/fs/cgroup")
        .map(|d| d.filter_map(|e| e.ok()).map(|e| (e.path(), 0)).collect())
        .unwrap_or_default();
    while let Some((dir, depth)) = stack.pop() {
        if dir.file_name().and_then(|n| n.to_str()) == Some(name) {
            found.push(dir.clone());
        }
        if depth >= 3 {
            continue;
        }
        if let Ok(entries) = std::fs::read_dir(&dir) {
            for entry in entries.filter_map(|e| e.ok()) {
                if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    stack.push((entry.path(), depth + 1));
                }
            }
        }
    }
    found
}

/// SIGKILLs every process whose command line mentions `needle` (leftover shims).
pub(crate) fn kill_processes_mentioning(needle: &str) {
    let me = std::process::id();
    for (pid, cmdline) in processes() {
        if pid != me && cmdline.contains(needle) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid as i32),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

/// Lazily unmounts every mount point under `dir`, deepest first.
pub(crate) fn unmount_under(dir: &Path) {
    let Ok(mountinfo) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return;
    };
    let mut points: Vec<PathBuf> = mountinfo
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(PathBuf::from)
        .filter(|p| p.starts_with(dir))
        .collect();
    points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
    for point in points {
        let _ = nix::mount::umount2(&point, nix::mount::MntFlags::MNT_DETACH);
    }
}
