//! Mounts the rootfs containerd hands to the shim (overlay or bind) and takes it down again.

use std::path::Path;

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::error::RuntimeError;

/// One mount from containerd's `CreateTaskRequest.rootfs`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RootfsMount {
    /// Filesystem type (`overlay`, `bind`, ...).
    pub fs_type: String,
    /// Mount source.
    pub source: String,
    /// Options, flags and data mixed, as containerd sends them.
    pub options: Vec<String>,
}

/// Splits containerd's option list into mount flags and the data string.
pub fn parse_options(fs_type: &str, options: &[String]) -> (MsFlags, String) {
    let mut flags = if fs_type == "bind" {
        MsFlags::MS_BIND
    } else {
        MsFlags::empty()
    };
    let mut data = Vec::new();
    for option in options {
        let (set, clear) = match option.as_str() {
            "ro" => (MsFlags::MS_RDONLY, MsFlags::empty()),
            "rw" => (MsFlags::empty(), MsFlags::MS_RDONLY),
            "nosuid" => (MsFlags::MS_NOSUID, MsFlags::empty()),
            "nodev" => (MsFlags::MS_NODEV, MsFlags::empty()),
            "noexec" => (MsFlags::MS_NOEXEC, MsFlags::empty()),
            "sync" => (MsFlags::MS_SYNCHRONOUS, MsFlags::empty()),
            "dirsync" => (MsFlags::MS_DIRSYNC, MsFlags::empty()),
            "noatime" => (MsFlags::MS_NOATIME, MsFlags::empty()),
            "nodiratime" => (MsFlags::MS_NODIRATIME, MsFlags::empty()),
            "relatime" => (MsFlags::MS_RELATIME, MsFlags::empty()),
            "strictatime" => (MsFlags::MS_STRICTATIME, MsFlags::empty()),
            "bind" => (MsFlags::MS_BIND, MsFlags::empty()),
            "rbind" => (MsFlags::MS_BIND | MsFlags::MS_REC, MsFlags::empty()),
            "suid" | "dev" | "exec" | "async" | "atime" | "diratime" | "defaults" => {
                continue;
            }
            other => {
                data.push(other.to_owned());
                continue;
            }
        };
        flags.insert(set);
        flags.remove(clear);
    }
    (flags, data.join(","))
}

/// Mounts `mounts` in order onto `target` (the bundle's `rootfs` directory).
///
/// On failure, whatever was mounted is taken down again before the error returns.
pub fn mount_rootfs(id: &str, mounts: &[RootfsMount], target: &Path) -> Result<(), RuntimeError> {
    for (done, m) in mounts.iter().enumerate() {
        let (flags, data) = parse_options(&m.fs_type, &m.options);
        let fs_type = (m.fs_type != "bind").then_some(m.fs_type.as_str());
        let data = (!data.is_empty()).then_some(data.as_str());
        if let Err(source) = mount(Some(m.source.as_str()), target, fs_type, flags, data) {
            for _ in 0..done {
                let _ = umount2(target, MntFlags::MNT_DETACH);
            }
            return Err(RuntimeError::Mount {
                id: id.to_owned(),
                op: "mount rootfs on",
                target: target.to_path_buf(),
                source,
            });
        }
        tracing::debug!(fs_type = %m.fs_type, target = %target.display(), "mounted rootfs");
    }
    Ok(())
}

/// Unmounts everything stacked on `target`; a target that is not mounted is fine.
pub fn unmount_rootfs(id: &str, target: &Path) -> Result<(), RuntimeError> {
    loop {
        match umount2(target, MntFlags::MNT_DETACH) {
            Ok(()) => continue,
            Err(nix::Error::EINVAL) | Err(nix::Error::ENOENT) => return Ok(()),
            Err(source) => {
                return Err(RuntimeError::Mount {
                    id: id.to_owned(),
                    op: "unmount rootfs",
                    target: target.to_path_buf(),
                    source,
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn opts(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn overlay_options_become_data() {
        let (flags, data) = parse_options(
            "overlay",
            &opts(&["index=off", "workdir=/w", "upperdir=/u", "lowerdir=/l1:/l2"]),
        );
        assert_eq!(flags, MsFlags::empty());
        assert_eq!(data, "index=off,workdir=/w,upperdir=/u,lowerdir=/l1:/l2");
    }

    #[test]
    fn bind_flags() {
        let (flags, data) = parse_options("bind", &opts(&["rbind", "ro", "nosuid"]));
        assert_eq!(
            flags,
            MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID
        );
        assert_eq!(data, "");
        let (flags, _) = parse_options("bind", &opts(&["ro", "rw"]));
        assert!(!flags.contains(MsFlags::MS_RDONLY));
    }
}
