//! `install` and `uninstall`: binaries, containerd's config, and K3s's template.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::{binaries, containerd_config, k3s, InstallError};

/// Suffix of the copy of containerd's config taken before Triage first edits it.
pub const BACKUP_SUFFIX: &str = "triage-backup";

/// Where things go. Every absolute path is taken below `destdir`.
#[derive(Debug, Clone)]
pub struct InstallOptions {
    /// Staging root for packaging (`DESTDIR`); `/` for a live install.
    pub destdir: PathBuf,
    /// Installation prefix (`PREFIX`), e.g. `/usr/local`; binaries go to `PREFIX/bin`.
    pub prefix: PathBuf,
    /// The built shim binary (install only).
    pub shim: Option<PathBuf>,
    /// containerd's config file, e.g. `/etc/containerd/config.toml`.
    pub containerd_config: PathBuf,
    /// containerd's major version; detected from `containerd --version` when `None`.
    pub containerd_major: Option<u32>,
    /// K3s's data directory; its template is edited only if the directory exists.
    pub k3s_root: PathBuf,
}

impl InstallOptions {
    fn staged(&self, path: &Path) -> PathBuf {
        self.destdir.join(path.strip_prefix("/").unwrap_or(path))
    }
}

/// What was done, one line per change, for the user.
#[derive(Debug, Default)]
pub struct Report {
    /// Human-readable lines.
    pub lines: Vec<String>,
}

fn read_or_empty(path: &Path) -> Result<String, InstallError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(String::new()),
        Err(source) => Err(InstallError::Io {
            op: "read",
            path: path.to_path_buf(),
            source,
        }),
    }
}

fn write_atomically(path: &Path, text: &str) -> Result<(), InstallError> {
    let io = |op, source| InstallError::Io {
        op,
        path: path.to_path_buf(),
        source,
    };
    // A symlinked config (a config-management tool's, or /etc pointing elsewhere) is
    // edited where it points: replacing the link with a file would cut it loose.
    let resolved;
    let path = match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => {
            resolved = std::fs::canonicalize(path).map_err(|e| io("resolve the symlink", e))?;
            resolved.as_path()
        }
        _ => path,
    };
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| io("create directory for", e))?;
    }
    // The edited file keeps the mode and owner the old one had (a 0600 config stays
    // 0600); a new one is 0644, as containerd's own.
    let existing = std::fs::metadata(path).ok();
    let staging = path.with_extension("triage-new");
    let _ = std::fs::remove_file(&staging);
    {
        use std::io::Write;
        use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
        let mode = existing.as_ref().map_or(0o644, |m| m.mode() & 0o7777);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&staging)
            .map_err(|e| io("write", e))?;
        if let Some(meta) = &existing {
            std::os::unix::fs::fchown(&file, Some(meta.uid()), Some(meta.gid()))
                .map_err(|e| io("keep the owner of", e))?;
        }
        file.set_permissions(std::fs::Permissions::from_mode(mode))
            .map_err(|e| io("keep the mode of", e))?;
        file.write_all(text.as_bytes())
            .map_err(|e| io("write", e))?;
    }
    std::fs::rename(&staging, path).map_err(|e| io("replace", e))
}

fn remove_file(path: &Path) -> Result<(), InstallError> {
    std::fs::remove_file(path).map_err(|source| InstallError::Io {
        op: "remove",
        path: path.to_path_buf(),
        source,
    })
}

/// containerd's major version from `containerd --version`
/// (`containerd github.com/containerd/containerd 1.6.20~ds1 ...`, or `v2.0.0`).
pub fn parse_containerd_version(output: &str) -> Option<u32> {
    output
        .split_whitespace()
        .skip(2)
        .map(|w| w.trim_start_matches('v'))
        .find_map(|w| w.split('.').next()?.parse().ok())
}

fn detect_containerd_major() -> Result<u32, InstallError> {
    let unsupported = |reason: String| InstallError::Unsupported {
        path: PathBuf::from("containerd"),
        reason,
    };
    let output = Command::new("containerd")
        .arg("--version")
        .output()
        .map_err(|e| {
            unsupported(format!(
                "cannot run `containerd --version` ({e}); pass --containerd-version"
            ))
        })?;
    let text = String::from_utf8_lossy(&output.stdout);
    parse_containerd_version(&text).ok_or_else(|| {
        unsupported(format!(
            "cannot read a version from {text:?}; pass --containerd-version"
        ))
    })
}

/// Installs the binaries and the runtime handlers. Idempotent.
pub fn install(options: &InstallOptions) -> Result<Report, InstallError> {
    let mut report = Report::default();
    if let Some(shim) = &options.shim {
        let bindir = options.staged(&options.prefix.join("bin"));
        for path in binaries::install(shim, &bindir)? {
            report.lines.push(format!("installed {}", path.display()));
        }
    }

    let major = match options.containerd_major {
        Some(major) => major,
        None => detect_containerd_major()?,
    };
    let config = options.staged(&options.containerd_config);
    let before = read_or_empty(&config)?;
    let after = containerd_config::add_handlers(&config, &before, major)?;
    if after != before {
        let backup = backup_path(&config);
        if config.exists() && !backup.exists() {
            std::fs::copy(&config, &backup).map_err(|source| InstallError::Io {
                op: "back up",
                path: config.clone(),
                source,
            })?;
            report.lines.push(format!(
                "backed up {} to {}",
                config.display(),
                backup.display()
            ));
        }
        write_atomically(&config, &after)?;
        report.lines.push(format!(
            "added runtime handlers triage and wasmedge to {} (containerd {major}.x); restart containerd",
            config.display()
        ));
    } else {
        report
            .lines
            .push(format!("{} already has the handlers", config.display()));
    }

    let k3s_root = options.staged(&options.k3s_root);
    if k3s_root.is_dir() {
        let template = k3s_root.join(k3s::TEMPLATE);
        let rendered = std::fs::read_to_string(k3s_root.join(k3s::RENDERED)).ok();
        let before = read_or_empty(&template)?;
        let after = k3s::add_block(&before, k3s::containerd_major(rendered.as_deref()));
        if after != before {
            write_atomically(&template, &after)?;
            report.lines.push(format!(
                "added the triage handler to {} (K3s configures wasmedge itself); restart k3s",
                template.display()
            ));
        }
    }
    Ok(report)
}

/// Reverses [`install`]: removes the binaries, Triage's handlers and K3s block, and
/// files that only Triage had created.
pub fn uninstall(options: &InstallOptions) -> Result<Report, InstallError> {
    let mut report = Report::default();
    let bindir = options.staged(&options.prefix.join("bin"));
    for path in binaries::uninstall(&bindir)? {
        report.lines.push(format!("removed {}", path.display()));
    }

    let config = options.staged(&options.containerd_config);
    let backup = backup_path(&config);
    if config.exists() {
        let before = read_or_empty(&config)?;
        let after = containerd_config::remove_handlers(&config, &before)?;
        let created_by_us = !backup.exists()
            && after
                .lines()
                .all(|l| l.trim().is_empty() || l.starts_with("version = "));
        if created_by_us {
            remove_file(&config)?;
            report.lines.push(format!(
                "removed {} (Triage had created it)",
                config.display()
            ));
        } else if after != before {
            write_atomically(&config, &after)?;
            report.lines.push(format!(
                "removed the runtime handlers from {}",
                config.display()
            ));
        }
        if backup.exists() && read_or_empty(&backup)? == read_or_empty(&config)? {
            remove_file(&backup)?;
            report.lines.push(format!(
                "removed {} (same as the config again)",
                backup.display()
            ));
        }
    }

    let template = options.staged(&options.k3s_root).join(k3s::TEMPLATE);
    if template.exists() {
        match k3s::remove_block(&read_or_empty(&template)?) {
            None => {
                remove_file(&template)?;
                report.lines.push(format!("removed {}", template.display()));
            }
            Some(text) => {
                write_atomically(&template, &text)?;
                report.lines.push(format!(
                    "removed the triage block from {}",
                    template.display()
                ));
            }
        }
    }
    Ok(report)
}

fn backup_path(config: &Path) -> PathBuf {
    let mut name = config.file_name().unwrap_or_default().to_os_string();
    name.push(format!(".{BACKUP_SUFFIX}"));
    config.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions() {
        assert_eq!(
            parse_containerd_version(
                "containerd github.com/containerd/containerd 1.6.20~ds1 1.6.20~ds1-1+deb12u3"
            ),
            Some(1)
        );
        assert_eq!(
            parse_containerd_version("containerd github.com/containerd/containerd/v2 v2.0.4 abc"),
            Some(2)
        );
        assert_eq!(parse_containerd_version("nonsense"), None);
    }
}
