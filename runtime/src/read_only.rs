//! Host files opened through detached read-only mounts, so what a container process holds stays read-only.
//!
//! A descriptor a container's process holds (an open file, a mapping, its own executable)
//! can be reopened by any process allowed to look into that one's `/proc/<pid>`: through
//! `/proc/<pid>/fd/N`, `map_files/…` or `exe`, with new flags, write included
//! (CVE-2019-5736 reopened runc's binary this way). The reopened file is reached through
//! the mount the descriptor was opened on. So every node file that reaches a container's
//! process is opened here, through a private, detached copy of its directory's mount
//! (`open_tree(OPEN_TREE_CLONE)`) made read-only, nosuid and nodev (`mount_setattr`):
//! reopening it for writing fails with `EROFS`, and nothing in a container can change that
//! mount's flags (it is in no mount namespace a container has, and changing them takes
//! `CAP_SYS_ADMIN` on the node's user namespace). The copy goes away with the last
//! descriptor of a file opened through it.

use std::ffi::CString;
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// `open_tree` flag: a detached copy of the mount, not the mount itself.
const OPEN_TREE_CLONE: libc::c_uint = 1;
/// `mount_setattr` attributes set on the copy.
const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

fn c_path(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))
}

/// A detached, read-only, nosuid, nodev copy of the mount holding directory `dir`, rooted
/// at `dir`.
fn read_only_tree(dir: &Path) -> io::Result<OwnedFd> {
    let dir = c_path(dir)?;
    read_only_tree_at(libc::AT_FDCWD, &dir, 0)
}

/// [`read_only_tree`] of `name` relative to `base` (with `AT_EMPTY_PATH` in `flags`: of
/// `base` itself, which may be a file).
fn read_only_tree_at(
    base: libc::c_int,
    name: &std::ffi::CStr,
    flags: libc::c_uint,
) -> io::Result<OwnedFd> {
    // SAFETY: open_tree reads a NUL-terminated path and returns a new descriptor or -1.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            base,
            name.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint | flags,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the syscall returned a new descriptor that nothing else owns.
    let tree = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads the attribute struct of the size given.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            tree.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(tree)
}

/// Opens `path` (resolved first, so its last component is no symlink) through a read-only
/// copy of its directory's mount, with `flags` (`O_CLOEXEC` and `O_NOFOLLOW` are added).
fn open_with(path: &Path, flags: libc::c_int) -> io::Result<OwnedFd> {
    let real = std::fs::canonicalize(path)?;
    let (Some(dir), Some(name)) = (real.parent(), real.file_name()) else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a file in a directory",
        ));
    };
    let tree = match read_only_tree(dir) {
        Ok(tree) => tree,
        Err(e) => {
            warn_unprotected(&e);
            File::open(dir)?.into()
        }
    };
    let name = c_path(Path::new(name))?;
    // SAFETY: openat reads a NUL-terminated name relative to a descriptor we own.
    let fd = unsafe {
        libc::openat(
            tree.as_raw_fd(),
            name.as_ptr(),
            flags | libc::O_CLOEXEC | libc::O_NOFOLLOW,
        )
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// Opens the regular file `path` for reading through a read-only copy of its mount: a
/// process that gets hold of the descriptor can reopen the file, but not for writing.
/// A FIFO, socket or device is refused without blocking.
pub fn open(path: &Path) -> io::Result<File> {
    // O_NONBLOCK: opening a FIFO with no writer would wait; it is refused below instead.
    let file = File::from(open_with(path, libc::O_RDONLY | libc::O_NONBLOCK)?);
    if !file.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(file)
}

/// Reopens the regular `file` for reading through a read-only copy of the mount it was
/// opened on (a detached bind mount of the file alone): a container file the node opened
/// on a writable mount (a volume the container has read-only, say) and hands to the
/// container's init cannot be reopened for writing through it. Without the mount
/// privileges the file is duplicated as it is (see [`open`]).
pub fn reopen(file: &File) -> io::Result<File> {
    let tree = match read_only_tree_at(file.as_raw_fd(), c"", libc::AT_EMPTY_PATH as libc::c_uint) {
        Ok(tree) => tree,
        Err(e) => {
            warn_unprotected(&e);
            return file.try_clone();
        }
    };
    let reopened = triage_oci::container_fs::reopen_for_reading(&tree)?;
    if !reopened.metadata()?.is_file() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a regular file",
        ));
    }
    Ok(reopened)
}

/// Says once in the node's log that files handed to containers are not write-protected.
fn warn_unprotected(e: &io::Error) {
    // Without CAP_SYS_ADMIN or on a kernel before 5.12.
    static WARNED: std::sync::Once = std::sync::Once::new();
    WARNED.call_once(|| {
        tracing::warn!(
            "no read-only mount for files handed to containers ({e}); they are opened as they are"
        )
    });
}

/// An `O_PATH` descriptor of the executable `path` through a read-only copy of its mount,
/// for `execveat(fd, "", AT_EMPTY_PATH)` (or `/proc/self/fd/N`): the process's
/// `/proc/<pid>/exe` then reopens only read-only.
pub fn executable(path: &Path) -> io::Result<OwnedFd> {
    open_with(path, libc::O_PATH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    /// `file`'s `/proc/self/fd` path, and the error of reopening it there for writing
    /// (as a process that may look into this one's `/proc/<pid>` would).
    fn reopened_for_writing(file: &File) -> (String, std::io::Error) {
        let again = format!("/proc/self/fd/{}", file.as_raw_fd());
        let err = std::fs::OpenOptions::new()
            .append(true)
            .open(&again)
            .expect_err("reopened for writing");
        (again, err)
    }

    /// Detached mounts need `CAP_SYS_ADMIN`: these run where the tests run as root.
    fn can_mount() -> bool {
        nix::unistd::geteuid().is_root()
    }

    #[test]
    fn a_reopened_descriptor_cannot_write() {
        if !can_mount() {
            eprintln!("skipped: detached mounts need root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("entry.bin");
        std::fs::write(&path, b"native code").unwrap();
        let file = open(&path).unwrap();
        let (again, err) = reopened_for_writing(&file);
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
        // Read-only reopening still works, and the file as the node sees it is writable.
        assert_eq!(std::fs::read(&again).unwrap(), b"native code");
        std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"!")
            .unwrap();
    }

    #[test]
    fn a_file_reopened_read_only_cannot_be_written_through() {
        if !can_mount() {
            eprintln!("skipped: detached mounts need root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("model.onnx");
        std::fs::write(&path, b"weights").unwrap();
        let writable_mount = File::open(&path).unwrap();
        let file = reopen(&writable_mount).unwrap();
        let (again, err) = reopened_for_writing(&file);
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
        assert_eq!(std::fs::read(&again).unwrap(), b"weights");
    }

    #[test]
    fn only_regular_files_open() {
        if !can_mount() {
            eprintln!("skipped: detached mounts need root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        // A FIFO with no writer would block an ordinary read-only open.
        assert_eq!(
            open(&fifo).unwrap_err().kind(),
            std::io::ErrorKind::InvalidInput
        );
        let nested = dir.path().join("sub");
        std::fs::create_dir(&nested).unwrap();
        assert!(open(&nested).is_err());
        assert!(open(&dir.path().join("missing")).is_err());
    }

    #[test]
    fn an_executable_reopens_read_only() {
        if !can_mount() {
            eprintln!("skipped: detached mounts need root");
            return;
        }
        // A copy nothing runs: a running one refuses writers anyway (ETXTBSY), but only
        // while it runs.
        let dir = tempfile::tempdir().unwrap();
        let copy = dir.path().join("shim");
        std::fs::copy("/proc/self/exe", &copy).unwrap();
        let exe = executable(&copy).unwrap();
        let again = format!("/proc/self/fd/{}", exe.as_raw_fd());
        let err = std::fs::OpenOptions::new()
            .write(true)
            .open(&again)
            .unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
        assert!(std::fs::metadata(&again).unwrap().is_file());
    }
}
