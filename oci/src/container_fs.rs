//! Opens a file as the container will see it: the kernel resolves every component inside the rootfs and the spec's bind mounts, and the file is used through that one descriptor.
//!
//! The node reads a few of a container's files before the container exists: the
//! entrypoint's first bytes, a Wasm module, wasi-nn models. Those files are tenant input,
//! and so is every symlink on the way to them. Resolving a path as a string and opening
//! it later by name would let a writer on a shared volume swap in a FIFO, a device or a
//! symlink to a node file in between, and a symlink that leads into a mount would reach
//! the image's hidden copy under the mount point rather than what the container sees.
//!
//! So each component is opened with `openat(O_PATH | O_NOFOLLOW)` relative to the
//! descriptor of the directory before it: the kernel resolves exactly one name at a time
//! and a descriptor cannot be swapped. Symlinks are read from their own descriptor and
//! followed as the kernel would follow them after `pivot_root` (an absolute target
//! restarts at the container's root; `..` never climbs above it, nor above a mount's
//! root into the node's directory holding the mount's source). Where the path reaches a
//! mount point of the spec, the walk goes on in that mount: a bind mount's source, as
//! the container will see it; a path on any other mount (`tmpfs`, `proc`, `sysfs`…) is
//! not the image's and is never read by the node. A single `openat2(RESOLVE_IN_ROOT)`
//! would confine the walk to the rootfs as well but cannot see the spec's mounts, which
//! exist only once the container does.
//!
//! The last component must be a regular file: it is checked on its `O_PATH` descriptor
//! before anything opens it for reading, so a FIFO is never waited on and a device is
//! never opened (opening some has effects). The file is then reopened for reading through
//! that descriptor (`/proc/self/fd/N`), which names the same inode whatever the path
//! holds by now.

use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Component, Path, PathBuf};

use crate::bundle::Bundle;

/// Symlinks followed before giving up, as the kernel's `MAXSYMLINKS`.
const MAX_SYMLINKS: usize = 40;

/// The deepest a resolved path may be (each level holds a descriptor while it is walked).
const MAX_DEPTH: usize = 1024;

/// Why a container file could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// Nothing is at the path (as the container will see it).
    #[error("no such file in the container")]
    NotFound,
    /// Something other than a regular file is at the path.
    #[error("not a regular file ({0})")]
    NotRegular(&'static str),
    /// The path lies on a mount that is not the image's (and not a bind mount).
    #[error(
        "it lies on the container's {kind} mount at {destination}, which the node does not read"
    )]
    OnMount {
        /// The mount's type.
        kind: String,
        /// Where the mount is in the container.
        destination: PathBuf,
    },
    /// The file is larger than the node reads.
    #[error("{size} bytes, larger than the {limit} bytes the node profile allows ({key})")]
    TooLarge {
        /// Its size.
        size: u64,
        /// The bound.
        limit: u64,
        /// The node profile key that sets the bound.
        key: &'static str,
    },
    /// Resolving or opening failed otherwise (a symlink loop, permissions, I/O).
    #[error("{0}")]
    Io(#[from] io::Error),
}

impl From<OpenError> for io::Error {
    fn from(error: OpenError) -> Self {
        match error {
            OpenError::Io(source) => source,
            OpenError::NotFound => io::Error::new(io::ErrorKind::NotFound, error.to_string()),
            other => io::Error::new(io::ErrorKind::InvalidInput, other.to_string()),
        }
    }
}

/// A regular file of the container, open for reading.
#[derive(Debug)]
pub struct ContainerFile {
    /// The open file (`O_RDONLY | O_NONBLOCK`, close-on-exec).
    pub file: File,
    /// The path the spec named, as given.
    pub container_path: PathBuf,
    /// Its size when it was opened.
    pub size: u64,
}

impl ContainerFile {
    /// Reads the whole file through its descriptor, from offset 0, at most `limit` bytes:
    /// a file that grew past the bound since it was opened is refused, not read on.
    pub fn read_all(&self, limit: u64, key: &'static str) -> Result<Vec<u8>, OpenError> {
        read_all_bounded(&self.file, limit, key)
    }
}

/// Reads all of `file` from offset 0 (without moving its offset), at most `limit` bytes.
pub fn read_all_bounded(file: &File, limit: u64, key: &'static str) -> Result<Vec<u8>, OpenError> {
    use std::os::unix::fs::FileExt;
    let size = file.metadata()?.len();
    if size > limit {
        return Err(OpenError::TooLarge { size, limit, key });
    }
    let mut bytes = Vec::with_capacity(size as usize);
    let mut chunk = vec![0u8; 1 << 20];
    loop {
        match file.read_at(&mut chunk, bytes.len() as u64) {
            Ok(0) => return Ok(bytes),
            Ok(n) => {
                // It may have grown since it was opened.
                let size = (bytes.len() + n) as u64;
                if size > limit {
                    return Err(OpenError::TooLarge { size, limit, key });
                }
                bytes.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// A mount of the spec, where it will be in the container.
#[derive(Debug)]
struct SpecMount {
    /// Its destination, resolved as libcontainer will resolve it (symlinks in the rootfs
    /// and earlier mounts followed), as components under the container's root.
    at: Vec<OsString>,
    kind: MountKind,
}

#[derive(Debug)]
enum MountKind {
    /// A bind mount: the walk continues in its source (an `O_PATH` descriptor).
    Bind(OwnedFd),
    /// Anything else: not the image's files, never read by the node.
    Other(String),
}

/// The container's filesystem as the node may read it before the container exists.
#[derive(Debug)]
pub struct ContainerFs {
    root: OwnedFd,
    mounts: Vec<SpecMount>,
}

/// Where a walk ended: the resolved components, and the descriptor of the last one
/// (`None` where a lenient walk went past a missing component or onto another mount).
struct Walked {
    components: Vec<OsString>,
    last: Option<OwnedFd>,
}

impl ContainerFs {
    /// The rootfs of `bundle` and the mounts of its spec. A bind mount whose source the
    /// node cannot open is left out (libcontainer will refuse the container itself).
    pub fn new(bundle: &Bundle) -> io::Result<Self> {
        let root = open_path(libc::AT_FDCWD, bundle.rootfs().as_os_str(), true)?;
        let mut fs = Self {
            root,
            mounts: Vec::new(),
        };
        for mount in bundle.spec.mounts().as_deref().unwrap_or(&[]) {
            let options = mount.options().as_deref().unwrap_or(&[]);
            let is_bind = mount.typ().as_deref() == Some("bind")
                || options.iter().any(|o| o == "bind" || o == "rbind");
            let kind = if is_bind {
                let Some(source) = mount.source() else {
                    continue;
                };
                // The source is the node's path (from containerd or kubelet), followed as
                // mount(2) follows it.
                match open_path(libc::AT_FDCWD, source.as_os_str(), true) {
                    Ok(fd) => MountKind::Bind(fd),
                    Err(_) => continue,
                }
            } else {
                MountKind::Other(mount.typ().clone().unwrap_or_else(|| "unknown".to_owned()))
            };
            // Earlier mounts are in place when libcontainer resolves this destination.
            let at = match fs.walk(mount.destination(), true) {
                Ok(walked) => walked.components,
                Err(_) => continue,
            };
            if at.is_empty() {
                // A mount over `/` itself: not something a bundle's spec does.
                continue;
            }
            fs.mounts.push(SpecMount { at, kind });
        }
        Ok(fs)
    }

    /// Opens the regular file at `path` (absolute in the container) for reading; files
    /// larger than `limit` (with the profile `key` that sets it) are refused.
    pub fn open(
        &self,
        path: &Path,
        limit: Option<(u64, &'static str)>,
    ) -> Result<ContainerFile, OpenError> {
        let walked = self.walk(path, false)?;
        let last = walked.last.ok_or(OpenError::NotFound)?;
        let meta = fstat(&last)?;
        let kind = file_kind(meta.st_mode);
        if kind != "regular file" {
            return Err(OpenError::NotRegular(kind));
        }
        let size = meta.st_size as u64;
        if let Some((limit, key)) = limit {
            if size > limit {
                return Err(OpenError::TooLarge { size, limit, key });
            }
        }
        let file = reopen_for_reading(&last)?;
        Ok(ContainerFile {
            file,
            container_path: path.to_path_buf(),
            size,
        })
    }

    /// The bind mount or other mount whose destination is exactly `components`; the
    /// last one of the spec wins, as it is mounted last.
    fn mount_at(&self, components: &[OsString]) -> Option<&SpecMount> {
        self.mounts.iter().rev().find(|m| m.at == components)
    }

    /// Resolves `path` component by component. A `lenient` walk (for mount destinations,
    /// which libcontainer creates) goes on lexically past a missing component or another
    /// mount; a strict one fails there.
    fn walk(&self, path: &Path, lenient: bool) -> Result<Walked, OpenError> {
        let mut pending = components_reversed(path);
        // Each resolved level and its descriptor; `None` once past what exists.
        let mut levels: Vec<(OsString, Option<OwnedFd>)> = Vec::new();
        let mut links = 0;
        while let Some(part) = pending.pop() {
            if part == ".." {
                levels.pop();
                continue;
            }
            if levels.len() >= MAX_DEPTH {
                return Err(io::Error::other(format!(
                    "{} resolves deeper than {MAX_DEPTH} levels",
                    path.display()
                ))
                .into());
            }
            let parent = match levels.last() {
                None => Some(&self.root),
                Some((_, fd)) => fd.as_ref(),
            };
            let Some(parent) = parent else {
                // Past a missing component: lexical from here (lenient walks only).
                levels.push((part, None));
                continue;
            };
            let mut here: Vec<OsString> = levels.iter().map(|(name, _)| name.clone()).collect();
            here.push(part.clone());
            if let Some(mount) = self.mount_at(&here) {
                match &mount.kind {
                    MountKind::Bind(source) => {
                        levels.push((part, Some(dup(source)?)));
                        continue;
                    }
                    MountKind::Other(_) if lenient => {
                        levels.push((part, None));
                        continue;
                    }
                    MountKind::Other(kind) => {
                        return Err(OpenError::OnMount {
                            kind: kind.clone(),
                            destination: join_components(&here),
                        })
                    }
                }
            }
            let fd = match open_path(parent.as_raw_fd(), &part, false) {
                Ok(fd) => fd,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    if lenient {
                        levels.push((part, None));
                        continue;
                    }
                    return Err(OpenError::NotFound);
                }
                Err(e) if e.raw_os_error() == Some(libc::ENOTDIR) => {
                    return Err(OpenError::NotFound)
                }
                Err(e) => return Err(e.into()),
            };
            let mode = fstat(&fd)?.st_mode;
            if mode & libc::S_IFMT == libc::S_IFLNK {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(io::Error::other(format!(
                        "too many levels of symbolic links resolving {}",
                        path.display()
                    ))
                    .into());
                }
                let target = read_link(&fd)?;
                if target.is_absolute() {
                    levels.clear();
                }
                pending.extend(components_reversed(&target));
                continue;
            }
            if !pending.is_empty() && mode & libc::S_IFMT != libc::S_IFDIR {
                // A file in the middle of the path.
                if lenient {
                    levels.push((part, None));
                    continue;
                }
                return Err(OpenError::NotFound);
            }
            levels.push((part, Some(fd)));
        }
        let last = match levels.last_mut() {
            None => Some(dup(&self.root)?),
            Some((_, fd)) => fd.take(),
        };
        Ok(Walked {
            components: levels.into_iter().map(|(name, _)| name).collect(),
            last,
        })
    }
}

/// `openat(dir, name, O_PATH | O_CLOEXEC)`, not following a final symlink unless `follow`.
fn open_path(dir: libc::c_int, name: &OsStr, follow: bool) -> io::Result<OwnedFd> {
    let name = CString::new(name.as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a path contains a NUL byte"))?;
    let flags = libc::O_PATH | libc::O_CLOEXEC | if follow { 0 } else { libc::O_NOFOLLOW };
    // SAFETY: openat reads a NUL-terminated name and returns a new descriptor or -1.
    let fd = unsafe { libc::openat(dir, name.as_ptr(), flags) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: openat returned a new descriptor that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

fn dup(fd: &OwnedFd) -> io::Result<OwnedFd> {
    fd.try_clone()
}

fn fstat(fd: &OwnedFd) -> io::Result<libc::stat> {
    // SAFETY: a zeroed stat is a valid buffer for fstat to fill.
    let mut stat: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: fstat writes into the buffer we own; the descriptor is open.
    if unsafe { libc::fstat(fd.as_raw_fd(), &mut stat) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(stat)
}

/// The target of the symlink open (`O_PATH | O_NOFOLLOW`) at `fd`.
fn read_link(fd: &OwnedFd) -> io::Result<PathBuf> {
    let mut buf = vec![0u8; libc::PATH_MAX as usize];
    // SAFETY: readlinkat writes at most buf.len() bytes into buf; "" with an O_PATH
    // descriptor of a symlink reads that link.
    let n = unsafe {
        libc::readlinkat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    buf.truncate(n as usize);
    Ok(PathBuf::from(OsString::from_vec(buf)))
}

/// Opens the file behind the `O_PATH` descriptor for reading (non-blocking, close-on-exec,
/// through `/proc/self/fd/N`): the same inode, whatever its path holds now.
pub fn reopen_for_reading(fd: &OwnedFd) -> io::Result<File> {
    let path = CString::new(format!("/proc/self/fd/{}", fd.as_raw_fd()))
        .expect("a descriptor's path has no NUL");
    let flags = libc::O_RDONLY | libc::O_NONBLOCK | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: open reads a NUL-terminated path and returns a new descriptor or -1.
    let new = unsafe { libc::open(path.as_ptr(), flags) };
    if new < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: open returned a new descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(new) })
}

/// What kind of file a mode says, for errors.
fn file_kind(mode: libc::mode_t) -> &'static str {
    match mode & libc::S_IFMT {
        libc::S_IFREG => "regular file",
        libc::S_IFDIR => "a directory",
        libc::S_IFIFO => "a FIFO",
        libc::S_IFCHR => "a character device",
        libc::S_IFBLK => "a block device",
        libc::S_IFSOCK => "a socket",
        libc::S_IFLNK => "a symlink",
        _ => "an unknown kind of file",
    }
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

fn join_components(parts: &[OsString]) -> PathBuf {
    let mut out = PathBuf::from("/");
    out.extend(parts);
    out
}

#[cfg(test)]
mod tests;
