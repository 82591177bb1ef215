//! Resolves a path as the container will see it, without ever leaving its root on the host.
//!
//! Symlinks are followed the way the kernel would follow them after `pivot_root`: an
//! absolute link target restarts at the container's root, and `..` never climbs above it.

use std::ffi::OsString;
use std::io;
use std::path::{Component, Path, PathBuf};

/// Symlinks followed before giving up, as the kernel's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// Resolves `path` (absolute in the container) against `root` (a host directory).
///
/// Returns the host path of the final component, which may not exist. Intermediate
/// components that are symlinks are followed inside `root`; the final component is
/// followed as well.
pub fn resolve_in_root(root: &Path, path: &Path) -> io::Result<PathBuf> {
    let mut pending: Vec<OsString> = components_reversed(path);
    let mut resolved: Vec<OsString> = Vec::new();
    let mut links = 0;

    while let Some(part) = pending.pop() {
        match part.to_str() {
            Some("..") => {
                resolved.pop();
                continue;
            }
            Some(".") | Some("") => continue,
            _ => {}
        }
        let candidate = join(root, &resolved).join(&part);
        match std::fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links resolving {}",
                        path.display()
                    )));
                }
                let target = std::fs::read_link(&candidate)?;
                if target.is_absolute() {
                    resolved.clear();
                }
                pending.extend(components_reversed(&target));
            }
            // Missing components are kept: the caller decides what absence means.
            Ok(_) | Err(_) => resolved.push(part),
        }
    }
    Ok(join(root, &resolved))
}

fn components_reversed(path: &Path) -> Vec<OsString> {
    let mut parts: Vec<OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(p.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    parts.reverse();
    parts
}

fn join(root: &Path, parts: &[OsString]) -> PathBuf {
    let mut out = root.to_path_buf();
    out.extend(parts);
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn plain_path() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("bin")).unwrap();
        std::fs::write(root.path().join("bin/app"), b"x").unwrap();
        assert_eq!(
            resolve_in_root(root.path(), Path::new("/bin/app")).unwrap(),
            root.path().join("bin/app")
        );
    }

    #[test]
    fn absolute_symlink_stays_inside_root() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("bin")).unwrap();
        std::fs::write(root.path().join("bin/busybox"), b"x").unwrap();
        symlink("/bin/busybox", root.path().join("bin/echo")).unwrap();
        symlink("/etc/passwd", root.path().join("escape")).unwrap();
        assert_eq!(
            resolve_in_root(root.path(), Path::new("/bin/echo")).unwrap(),
            root.path().join("bin/busybox")
        );
        // The host's /etc/passwd is never reached.
        assert_eq!(
            resolve_in_root(root.path(), Path::new("/escape")).unwrap(),
            root.path().join("etc/passwd")
        );
    }

    #[test]
    fn dotdot_cannot_climb_out() {
        let root = tempfile::tempdir().unwrap();
        symlink("../../../../etc", root.path().join("up")).unwrap();
        assert_eq!(
            resolve_in_root(root.path(), Path::new("/../../etc/shadow")).unwrap(),
            root.path().join("etc/shadow")
        );
        assert_eq!(
            resolve_in_root(root.path(), Path::new("/up/shadow")).unwrap(),
            root.path().join("etc/shadow")
        );
    }

    #[test]
    fn relative_symlink_and_loop() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("usr/bin")).unwrap();
        symlink("usr/bin", root.path().join("bin")).unwrap();
        assert_eq!(
            resolve_in_root(root.path(), Path::new("/bin/x")).unwrap(),
            root.path().join("usr/bin/x")
        );
        symlink("/loop", root.path().join("loop")).unwrap();
        assert!(resolve_in_root(root.path(), Path::new("/loop")).is_err());
    }
}
