//! `triage-install` end to end into a temporary DESTDIR; the generated containerd config
//! is checked by the real `containerd config dump`.

use std::path::Path;
use std::process::Command;

fn triage_install(destdir: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_triage-install"))
        .args(args)
        .arg("--destdir")
        .arg(destdir)
        .output()
        .expect("run triage-install");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "triage-install {args:?} failed: {stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn fake_shim(dir: &Path) -> String {
    let shim = dir.join("containerd-shim-triage-v1.built");
    std::fs::write(&shim, b"#!/bin/sh\necho shim\n").unwrap();
    shim.display().to_string()
}

/// Whether containerd is installed; prints why a test skips, and fails under `CI=true`.
fn have_containerd() -> bool {
    if Command::new("containerd").arg("--version").output().is_ok() {
        return true;
    }
    assert_ne!(
        std::env::var("CI").as_deref(),
        Ok("true"),
        "CI must have containerd"
    );
    eprintln!("SKIPPED: containerd is not installed");
    false
}

/// Everything below `root`, as sorted relative paths.
fn tree(root: &Path) -> Vec<String> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap().flatten() {
            let path = entry.path();
            out.push(path.strip_prefix(root).unwrap().display().to_string());
            if entry.file_type().unwrap().is_dir() {
                stack.push(path);
            }
        }
    }
    out.sort();
    out
}

/// `containerd config dump` of `config`, or `None` (with the reason printed) when
/// containerd is not installed and this is not CI.
fn containerd_dump(config: &Path) -> Option<String> {
    let out = match Command::new("containerd")
        .arg("--config")
        .arg(config)
        .args(["config", "dump"])
        .output()
    {
        Ok(out) => out,
        Err(e) if std::env::var("CI").as_deref() != Ok("true") => {
            eprintln!("SKIPPED containerd validation: cannot run containerd: {e}");
            return None;
        }
        Err(e) => panic!("CI must have containerd: {e}"),
    };
    assert!(
        out.status.success(),
        "containerd rejects {}: {}",
        config.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    Some(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[test]
fn fresh_install_is_idempotent_and_uninstall_leaves_nothing() {
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("dest");
    let shim = fake_shim(work.path());
    let args = ["install", "--shim", &shim, "--containerd-version", "1"];
    triage_install(&dest, &args);

    let bin = dest.join("usr/local/bin");
    assert_eq!(
        std::fs::read(bin.join("containerd-shim-triage-v1")).unwrap(),
        b"#!/bin/sh\necho shim\n"
    );
    assert_eq!(
        std::fs::read_link(bin.join("containerd-shim-wasmedge-v1")).unwrap(),
        Path::new("containerd-shim-triage-v1")
    );
    let config = dest.join("etc/containerd/config.toml");
    let written = std::fs::read_to_string(&config).unwrap();
    if let Some(dump) = containerd_dump(&config) {
        // containerd's own default runtime survives the edit.
        assert!(dump.contains("runtimes.runc]"), "{dump}");
        for handler in ["triage", "wasmedge"] {
            assert!(
                dump.contains(&format!(
                    "[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.{handler}]"
                )),
                "{dump}"
            );
            assert!(
                dump.contains(&format!("runtime_type = \"io.containerd.{handler}.v1\"")),
                "{dump}"
            );
        }
    }

    let before = tree(&dest);
    let again = triage_install(&dest, &args);
    assert!(again.contains("already has the handlers"), "{again}");
    assert_eq!(std::fs::read_to_string(&config).unwrap(), written);
    assert_eq!(
        tree(&dest),
        before,
        "a second install writes nothing new (no backup)"
    );

    triage_install(&dest, &["uninstall"]);
    assert_eq!(
        tree(&dest),
        vec!["etc", "etc/containerd", "usr", "usr/local", "usr/local/bin"],
        "only empty directories remain"
    );
}

#[test]
fn existing_config_is_edited_with_a_backup_and_restored_by_uninstall() {
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("dest");
    let config = dest.join("etc/containerd/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    let original = "# site config\nversion = 2\n\n[plugins.\"io.containerd.grpc.v1.cri\"]\n  sandbox_image = \"registry.local/pause:3.9\"\n";
    std::fs::write(&config, original).unwrap();

    let shim = fake_shim(work.path());
    let out = triage_install(
        &dest,
        &["install", "--shim", &shim, "--containerd-version", "1"],
    );
    assert!(out.contains("backed up"), "{out}");
    let backup = dest.join("etc/containerd/config.toml.triage-backup");
    assert_eq!(std::fs::read_to_string(&backup).unwrap(), original);
    let edited = std::fs::read_to_string(&config).unwrap();
    assert!(edited.starts_with(original), "{edited}");
    if let Some(dump) = containerd_dump(&config) {
        assert!(dump.contains("registry.local/pause:3.9"), "{dump}");
        assert!(
            dump.contains("runtime_type = \"io.containerd.triage.v1\""),
            "{dump}"
        );
    }

    triage_install(&dest, &["uninstall"]);
    assert_eq!(std::fs::read_to_string(&config).unwrap(), original);
    assert!(!backup.exists());
}

#[test]
fn a_private_symlinked_config_keeps_its_mode_owner_and_link() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    if !nix::unistd::geteuid().is_root() {
        eprintln!("skipped: giving the config another owner needs root");
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("dest");
    let etc = dest.join("etc/containerd");
    std::fs::create_dir_all(&etc).unwrap();
    // The real file lives elsewhere (a config-management checkout), 0600, not root's.
    let managed = work.path().join("managed");
    std::fs::create_dir_all(&managed).unwrap();
    let real = managed.join("containerd.toml");
    std::fs::write(&real, "version = 2\n").unwrap();
    std::fs::set_permissions(&real, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&real, Some(1234), Some(1234)).unwrap();
    let config = etc.join("config.toml");
    std::os::unix::fs::symlink(&real, &config).unwrap();
    // A shim built under a tight umask.
    let shim = fake_shim(work.path());
    std::fs::set_permissions(&shim, std::fs::Permissions::from_mode(0o700)).unwrap();

    triage_install(
        &dest,
        &["install", "--shim", &shim, "--containerd-version", "1"],
    );
    let link = std::fs::symlink_metadata(&config).unwrap();
    assert!(
        link.file_type().is_symlink(),
        "the link was replaced by a file"
    );
    let edited = std::fs::metadata(&real).unwrap();
    assert_eq!(edited.mode() & 0o7777, 0o600);
    assert_eq!((edited.uid(), edited.gid()), (1234, 1234));
    assert!(std::fs::read_to_string(&real)
        .unwrap()
        .contains("io.containerd.triage.v1"));
    let binary = dest.join("usr/local/bin/containerd-shim-triage-v1");
    assert_eq!(
        std::fs::metadata(&binary).unwrap().mode() & 0o7777,
        0o755,
        "{}",
        binary.display()
    );

    triage_install(&dest, &["uninstall"]);
    assert!(std::fs::symlink_metadata(&config)
        .unwrap()
        .file_type()
        .is_symlink());
    assert_eq!(std::fs::read_to_string(&real).unwrap(), "version = 2\n");
    assert_eq!(std::fs::metadata(&real).unwrap().mode() & 0o7777, 0o600);
}

#[test]
fn k3s_template_gets_the_triage_handler_and_loses_it_again() {
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("dest");
    let k3s = dest.join("var/lib/rancher/k3s/agent/etc/containerd");
    std::fs::create_dir_all(&k3s).unwrap();
    std::fs::write(k3s.join("config.toml"), "version = 3\n").unwrap();

    let shim = fake_shim(work.path());
    let out = triage_install(
        &dest,
        &["install", "--shim", &shim, "--containerd-version", "2"],
    );
    let template = std::fs::read_to_string(k3s.join("config.toml.tmpl")).unwrap();
    assert!(out.contains("restart k3s"), "{out}");
    assert!(
        template.starts_with("{{ template \"base\" . }}\n"),
        "{template}"
    );
    assert!(
        template.contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.triage]"),
        "{template}"
    );
    triage_install(&dest, &["uninstall"]);
    assert!(!k3s.join("config.toml.tmpl").exists());
    assert_eq!(
        std::fs::read_to_string(k3s.join("config.toml")).unwrap(),
        "version = 3\n"
    );
}

#[test]
fn the_installed_containerd_version_is_detected() {
    if !have_containerd() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let dest = work.path().join("dest");
    let out = triage_install(&dest, &["install"]);
    let version = String::from_utf8_lossy(
        &Command::new("containerd")
            .arg("--version")
            .output()
            .unwrap()
            .stdout,
    )
    .split_whitespace()
    .nth(2)
    .unwrap_or_default()
    .trim_start_matches('v')
    .chars()
    .next()
    .unwrap_or('?');
    assert!(out.contains(&format!("(containerd {version}.x)")), "{out}");
}

/// This crate's directory as `cargo test` says when it runs the test (a binary built
/// from another checkout sharing the target directory would carry that checkout's path).
fn crate_dir() -> std::path::PathBuf {
    std::env::var_os("CARGO_MANIFEST_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")))
}

#[test]
fn runtimeclass_manifest_names_every_handler() {
    let path = crate_dir().join("kubernetes/runtimeclass.yaml");
    let manifest =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let handlers: Vec<&str> = manifest
        .lines()
        .filter_map(|l| l.strip_prefix("handler: "))
        .collect();
    let expected: Vec<&str> = triage_install::HANDLERS.iter().map(|(h, _)| *h).collect();
    assert_eq!(handlers, expected);
    for snippet in ["containerd-1.x.toml", "containerd-2.x.toml"] {
        let path = crate_dir().join(snippet);
        let text = std::fs::read_to_string(&path).unwrap();
        for (handler, runtime_type) in triage_install::HANDLERS {
            assert!(
                text.contains(&format!(
                    "runtimes.{handler}]\n  runtime_type = \"{runtime_type}\""
                )),
                "{}",
                path.display()
            );
        }
    }
}

/// Starts containerd on `config` (which names its own sockets under `dir`), returns the
/// STATUS of its CRI plugin in `ctr plugins ls` (`ok` or `error`), and stops it.
fn cri_plugin_status(dir: &Path, config: &Path) -> String {
    let socket = dir.join("containerd.sock");
    let log = std::fs::File::create(dir.join("containerd.log")).unwrap();
    let mut daemon = Command::new("containerd")
        .arg("--config")
        .arg(config)
        .stdout(log.try_clone().unwrap())
        .stderr(log)
        .spawn()
        .expect("start containerd");
    let ctr = |args: &[&str]| {
        Command::new("ctr")
            .arg("--address")
            .arg(&socket)
            .args(args)
            .output()
            .expect("run ctr")
    };
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !ctr(&["version"]).status.success() {
        assert!(
            std::time::Instant::now() < deadline,
            "containerd did not start"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let plugins = String::from_utf8_lossy(&ctr(&["plugins", "ls"]).stdout).into_owned();
    let _ = daemon.kill();
    let _ = daemon.wait();
    plugins
        .lines()
        .find(|l| l.contains("io.containerd.grpc.v1") && l.split_whitespace().nth(1) == Some("cri"))
        .and_then(|l| l.split_whitespace().nth(3))
        .unwrap_or("missing")
        .to_owned()
}

#[test]
fn containerds_cri_plugin_loads_with_the_edited_config() {
    if !have_containerd() {
        return;
    }
    let work = tempfile::tempdir().unwrap();
    let d = work.path();
    let dest = d.join("dest");
    let config = dest.join("etc/containerd/config.toml");
    std::fs::create_dir_all(config.parent().unwrap()).unwrap();
    // A site config that lists no runtimes, relying on containerd's built-in runc.
    std::fs::write(
        &config,
        format!(
            "version = 2\nroot = \"{d}/root\"\nstate = \"{d}/state\"\n\n[grpc]\n  address = \"{d}/containerd.sock\"\n\n\
             [ttrpc]\n  address = \"{d}/containerd.sock.ttrpc\"\n\n[debug]\n  address = \"{d}/debug.sock\"\n\n\
             [plugins.\"io.containerd.grpc.v1.cri\"]\n  restrict_oom_score_adj = true\n  stream_server_port = \"0\"\n",
            d = d.display()
        ),
    )
    .unwrap();
    let before = cri_plugin_status(d, &config);
    assert_eq!(before, "ok", "the CRI plugin should load before the edit");
    triage_install(&dest, &["install", "--containerd-version", "1"]);
    let after = cri_plugin_status(d, &config);
    assert_eq!(
        after,
        "ok",
        "the CRI plugin must still load after the edit:\n{}",
        std::fs::read_to_string(d.join("containerd.log")).unwrap_or_default()
    );
}
