//! The node-local artifact cache: compiled modules (native code) stored once, verified on
//! every load, shared by every container and kept under a size bound.
//!
//! Only blobs this node wrote are ever returned: each entry carries an HMAC-SHA256 over
//! its name and bytes, keyed by a secret created with the cache (`.key`, mode 0600, in a
//! directory of mode 0700). A tampered, truncated or foreign entry fails verification and
//! is rebuilt, never handed to an engine. Concurrent first uses of one entry build it
//! once (an exclusive `flock` per entry); the least recently used entries are evicted once
//! the cache holds more than its bound. Engines key entries by everything that makes a
//! compiled artifact valid (module digest, engine name and version, engine configuration).

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// Where the cache lives unless configured otherwise.
pub const DEFAULT_DIR: &str = "/var/lib/triage/cache";

/// The environment variable that moves the cache (`off` disables it).
pub const DIR_ENV: &str = "TRIAGE_CACHE_DIR";

/// The cache directory this process uses: `$TRIAGE_CACHE_DIR`, else [`DEFAULT_DIR`];
/// `None` when it is set to `off`.
pub fn configured_dir() -> Option<PathBuf> {
    match std::env::var_os(DIR_ENV) {
        Some(dir) if dir == "off" => None,
        Some(dir) => Some(PathBuf::from(dir)),
        None => Some(PathBuf::from(DEFAULT_DIR)),
    }
}

/// The size bound unless configured otherwise.
pub const DEFAULT_MAX_BYTES: u64 = 1 << 30;

/// The environment variable that sets the size bound, in bytes.
pub const MAX_BYTES_ENV: &str = "TRIAGE_CACHE_MAX_BYTES";

/// Where the cache is and how big it may grow, as a helper process receives them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CacheSettings {
    /// The directory; `None` when the cache is off.
    pub dir: Option<PathBuf>,
    /// The size bound: least recently used entries go beyond it.
    pub max_bytes: u64,
}

impl CacheSettings {
    /// `$TRIAGE_CACHE_DIR` (see [`configured_dir`]) and `$TRIAGE_CACHE_MAX_BYTES`, else
    /// the defaults.
    pub fn from_env() -> Self {
        Self {
            dir: configured_dir(),
            max_bytes: std::env::var(MAX_BYTES_ENV)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(DEFAULT_MAX_BYTES),
        }
    }

    /// The environment that makes [`CacheSettings::from_env`] return these settings.
    pub fn to_env(&self) -> [(&'static str, std::ffi::OsString); 2] {
        [
            (
                DIR_ENV,
                self.dir
                    .as_ref()
                    .map_or_else(|| "off".into(), |d| d.clone().into_os_string()),
            ),
            (MAX_BYTES_ENV, self.max_bytes.to_string().into()),
        ]
    }
}

type HmacSha256 = Hmac<Sha256>;

/// Why the cache could not serve an entry.
#[derive(Debug, thiserror::Error)]
pub enum CacheError {
    /// A file or directory of the cache could not be used.
    #[error("artifact cache {path}: {op}: {source}")]
    Io {
        /// What was being done.
        op: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Building the artifact failed (e.g. the module does not compile).
    #[error("{0}")]
    Build(String),
    /// The cache directory is not one only this node's runtime can write.
    #[error("artifact cache {path}: not used: {reason}")]
    Untrusted {
        /// The directory.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The artifact is larger than the whole cache may be: it is not stored.
    #[error("artifact cache entry {name}: {bytes} bytes is more than the cache's bound of {max_bytes} bytes; not stored")]
    TooLarge {
        /// The entry.
        name: String,
        /// Its size.
        bytes: u64,
        /// The bound.
        max_bytes: u64,
    },
}

/// The most entries the cache keeps, whatever their size: least recently used ones go
/// beyond it (each entry is three small files besides its artifact).
pub const MAX_ENTRIES: usize = 4096;

/// How an entry was served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheOutcome {
    /// A verified entry was already there.
    Hit,
    /// There was none; it was built and stored.
    Built,
    /// There was one that failed verification; it was rebuilt.
    Rebuilt {
        /// What was wrong with it.
        reason: String,
    },
}

/// One stored entry, for `cache ls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// Its name (hex digest of its key).
    pub name: String,
    /// Size of the artifact in bytes.
    pub bytes: u64,
    /// When it was last served.
    pub last_used: SystemTime,
}

/// A cache directory and its secret.
pub struct ArtifactCache {
    dir: PathBuf,
    key: Vec<u8>,
    max_bytes: u64,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CacheError + 'a {
    move |source| CacheError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

impl Drop for ArtifactCache {
    /// Zeroes the key: a container's init is forked from the process that used the cache
    /// and must not find the node's secret in its copy of the heap.
    fn drop(&mut self) {
        for byte in self.key.iter_mut() {
            // SAFETY: a volatile write through a valid reference, so it is not elided.
            unsafe { std::ptr::write_volatile(byte, 0) };
        }
    }
}

impl ArtifactCache {
    /// Opens (creating if needed) the cache in `dir`, bounded to `max_bytes`.
    ///
    /// An existing directory must be this process's user's (root's, on a node), no
    /// symlink, and writable by nobody else: the cache holds native code the node runs.
    pub fn open(dir: &Path, max_bytes: u64) -> Result<Self, CacheError> {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(io_err("create directory", dir))?;
        let meta = std::fs::symlink_metadata(dir).map_err(io_err("inspect", dir))?;
        let untrusted = |reason: String| CacheError::Untrusted {
            path: dir.to_path_buf(),
            reason,
        };
        if !meta.is_dir() {
            return Err(untrusted("it is a symlink or not a directory".to_owned()));
        }
        let me = nix::unistd::geteuid().as_raw();
        if meta.uid() != me {
            return Err(untrusted(format!(
                "it is owned by uid {}, not by uid {me} (this runtime)",
                meta.uid()
            )));
        }
        if meta.mode() & 0o022 != 0 {
            return Err(untrusted(format!(
                "others may write to it (mode {:o})",
                meta.mode() & 0o7777
            )));
        }
        // Whatever the umask or an older directory said: only this node's runtime reads.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(io_err("restrict permissions of", dir))?;
        let key_path = dir.join(".key");
        let key = match std::fs::read(&key_path) {
            Ok(key) if key.len() == 32 => key,
            _ => {
                // The first users of a new cache race to make its key: one makes it.
                let _guard = lock_exclusive(&dir.join(".key.lock"))?;
                match std::fs::read(&key_path) {
                    Ok(key) if key.len() == 32 => key,
                    _ => Self::new_key(&key_path)?,
                }
            }
        };
        Ok(Self {
            dir: dir.to_path_buf(),
            key,
            max_bytes,
        })
    }

    fn new_key(path: &Path) -> Result<Vec<u8>, CacheError> {
        let mut key = vec![0u8; 32];
        File::open("/dev/urandom")
            .and_then(|mut f| f.read_exact(&mut key))
            .map_err(io_err("read /dev/urandom for", path))?;
        // Entries made under an older key can no longer verify: they are rebuilt.
        write_atomically(path, &key)?;
        Ok(key)
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The entry name for everything that makes an artifact valid, e.g.
    /// `["wasmtime-48.0.8", config fingerprint, module sha256]`.
    pub fn entry_name(parts: &[&[u8]]) -> String {
        let mut hasher = Sha256::new();
        for part in parts {
            hasher.update((part.len() as u64).to_le_bytes());
            hasher.update(part);
        }
        hex(&hasher.finalize())
    }

    fn mac(&self, name: &str, bytes: &[u8]) -> HmacSha256 {
        let mut mac = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(name.as_bytes());
        mac.update(&[0]);
        mac.update(bytes);
        mac
    }

    fn artifact_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.bin"))
    }

    fn mac_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.mac"))
    }

    fn failed_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.failed"))
    }

    /// The seal of an artifact file: a MAC over the identity and change time of the file
    /// that was verified (or written) with these bytes. Any write, truncation, `chmod`,
    /// `utime` or replacement changes the inode or its `ctime`, which user space cannot set
    /// back, so a matching seal means the bytes are still the verified ones.
    fn seal(&self, name: &str, meta: &std::fs::Metadata) -> HmacSha256 {
        use std::os::unix::fs::MetadataExt;
        let mut mac = self.mac(name, b"seal");
        for field in [
            meta.dev(),
            meta.ino(),
            meta.size(),
            meta.ctime() as u64,
            meta.ctime_nsec() as u64,
        ] {
            mac.update(&field.to_le_bytes());
        }
        mac
    }

    /// Writes the `.mac` file of entry `name`: the MAC of its bytes and the seal of the
    /// artifact file as it is now.
    fn write_mac(&self, name: &str, tag: &str) -> Result<(), CacheError> {
        let artifact = self.artifact_path(name);
        let meta = std::fs::metadata(&artifact).map_err(io_err("stat", &artifact))?;
        let seal = hex(&self.seal(name, &meta).finalize().into_bytes());
        let text = format!("{tag}\n{seal}\n");
        write_atomically(&self.mac_path(name), text.as_bytes())
    }

    /// Checks entry `name`: by its seal when the file is unchanged since it was last
    /// verified (no read of the artifact), else by the MAC of its bytes, resealing it.
    fn verify(&self, name: &str) -> Result<Verdict, CacheError> {
        let artifact = self.artifact_path(name);
        let meta = match std::fs::metadata(&artifact) {
            Ok(meta) => meta,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Verdict::Absent),
            Err(e) => return Err(io_err("stat", &artifact)(e)),
        };
        let Ok(text) = std::fs::read_to_string(self.mac_path(name)) else {
            return Ok(Verdict::Untrusted(
                "it has no MAC (not written by this node)".into(),
            ));
        };
        let mut lines = text.lines();
        let tag_hex = lines.next().unwrap_or_default().trim();
        let seal = lines.next().map(str::trim);
        // Compared in constant time by the MAC type.
        let sealed = seal
            .and_then(unhex)
            .is_some_and(|seal| self.seal(name, &meta).verify_slice(&seal).is_ok());
        if sealed {
            return Ok(Verdict::Trusted);
        }
        let Some(tag) = unhex(tag_hex) else {
            return Ok(Verdict::Untrusted("its MAC is malformed".into()));
        };
        let bytes = std::fs::read(&artifact).map_err(io_err("read", &artifact))?;
        match self.mac(name, &bytes).verify_slice(&tag) {
            Ok(()) => {
                self.write_mac(name, tag_hex)?;
                Ok(Verdict::Trusted)
            }
            Err(_) => Ok(Verdict::Untrusted(
                "its MAC does not match (tampered, truncated, or written under another key)".into(),
            )),
        }
    }

    /// The path of a verified artifact for entry `name`, building and storing it with
    /// `build` when there is none or the one there fails verification. The path may be
    /// mapped by the caller (e.g. wasmtime's `Module::deserialize_file`).
    pub fn get_or_build(
        &self,
        name: &str,
        build: impl FnOnce() -> Result<Vec<u8>, String>,
    ) -> Result<(PathBuf, CacheOutcome), CacheError> {
        self.get_or_build_with(name, build, false)
    }

    /// [`ArtifactCache::get_or_build`] for a build that runs tenant code (a snapshot's
    /// init): once it has failed, it is not run again for later Creates; the failure's
    /// reason is returned instead, until `cache prune`.
    pub fn get_or_build_once(
        &self,
        name: &str,
        build: impl FnOnce() -> Result<Vec<u8>, String>,
    ) -> Result<(PathBuf, CacheOutcome), CacheError> {
        self.get_or_build_with(name, build, true)
    }

    fn get_or_build_with(
        &self,
        name: &str,
        build: impl FnOnce() -> Result<Vec<u8>, String>,
        remember_failure: bool,
    ) -> Result<(PathBuf, CacheOutcome), CacheError> {
        // Held until this function returns: one builder per entry, readers wait for it.
        let guard = lock_exclusive(&self.lock_path(name))?;
        // Recency for the LRU bound is the lock file's mtime: touching the artifact
        // would change its ctime and break its seal.
        let _ = guard.set_modified(SystemTime::now());
        let artifact = self.artifact_path(name);
        let outcome = match self.verify(name)? {
            Verdict::Trusted => return Ok((artifact, CacheOutcome::Hit)),
            Verdict::Absent => CacheOutcome::Built,
            Verdict::Untrusted(reason) => {
                tracing::warn!(entry = name, "artifact cache entry rebuilt: {reason}");
                CacheOutcome::Rebuilt { reason }
            }
        };
        // A build that failed here before (a snapshot init that traps or never ends) is not
        // run again for every Create: its reason is remembered until `cache prune`.
        let failed = self.failed_path(name);
        if let Some(reason) = remember_failure
            .then(|| std::fs::read_to_string(&failed).ok())
            .flatten()
        {
            return Err(CacheError::Build(format!(
                "{} (remembered from an earlier attempt on this node; `containerd-shim-triage-v1 cache prune` forgets it)",
                reason.trim_end()
            )));
        }
        let bytes = match build() {
            Ok(bytes) => bytes,
            Err(reason) if remember_failure => {
                if let Err(e) = write_atomically(&failed, reason.as_bytes()) {
                    tracing::warn!(entry = name, "cannot remember a failed build: {e}");
                }
                return Err(CacheError::Build(reason));
            }
            Err(reason) => return Err(CacheError::Build(reason)),
        };
        if bytes.len() as u64 > self.max_bytes {
            // Storing it would evict every other entry and then itself.
            return Err(CacheError::TooLarge {
                name: name.to_owned(),
                bytes: bytes.len() as u64,
                max_bytes: self.max_bytes,
            });
        }
        let tag = hex(&self.mac(name, &bytes).finalize().into_bytes());
        // Artifact first, then its MAC, each by rename: a reader never sees a MAC for
        // bytes other than the ones it covers (verification would fail, not pass).
        write_atomically(&artifact, &bytes)?;
        self.write_mac(name, &tag)?;
        self.evict(Some(name))?;
        Ok((artifact, outcome))
    }

    /// The sha256 of `file`'s `bytes`, remembered by the file's identity (filesystem,
    /// inode, size, modification and change times), so a file this node has seen is not
    /// read again: a change to it changes its ctime, which user space cannot set back.
    /// `bytes` is called only when the file is new to the cache.
    ///
    /// A file in an overlay (a container's rootfs) is named by its inode without the
    /// overlay's device: each mount of an overlay gets its own, while its files keep the
    /// inodes of the layer files they show (layers on one filesystem), so every container
    /// of an image finds the digest of that image's file.
    pub fn file_digest<'a>(
        &self,
        file: &File,
        bytes: impl FnOnce() -> Result<&'a [u8], String>,
    ) -> Result<([u8; 32], CacheOutcome), CacheError> {
        use std::os::unix::fs::MetadataExt;
        let unreadable = |e: std::io::Error| CacheError::Build(format!("stat: {e}"));
        let meta = file.metadata().map_err(unreadable)?;
        let in_overlay = nix::sys::statfs::fstatfs(file)
            .map_err(|e| unreadable(e.into()))?
            .filesystem_type()
            == nix::sys::statfs::OVERLAYFS_SUPER_MAGIC;
        let (filesystem, device) = if in_overlay {
            (&b"overlay"[..], 0)
        } else {
            (&b"device"[..], meta.dev())
        };
        let identity: Vec<[u8; 8]> = [
            device,
            meta.ino(),
            meta.size(),
            meta.mtime() as u64,
            meta.mtime_nsec() as u64,
            meta.ctime() as u64,
            meta.ctime_nsec() as u64,
        ]
        .map(u64::to_le_bytes)
        .to_vec();
        let mut parts: Vec<&[u8]> = vec![b"sha256 of a file", filesystem];
        parts.extend(identity.iter().map(|f| &f[..]));
        let name = Self::entry_name(&parts);
        let (path, outcome) = self.get_or_build(&name, || Ok(Sha256::digest(bytes()?).to_vec()))?;
        let stored = std::fs::read(&path).map_err(io_err("read", &path))?;
        let digest = <[u8; 32]>::try_from(stored.as_slice())
            .map_err(|_| CacheError::Build(format!("{}: not a sha256 digest", path.display())))?;
        Ok((digest, outcome))
    }

    fn lock_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.lock"))
    }

    /// The stored entries, most recently used first.
    pub fn entries(&self) -> Result<Vec<CacheEntry>, CacheError> {
        let mut entries = Vec::new();
        let dir = std::fs::read_dir(&self.dir).map_err(io_err("list", &self.dir))?;
        for item in dir.flatten() {
            let path = item.path();
            let (Some(name), Some("bin")) = (
                path.file_stem().and_then(|s| s.to_str()),
                path.extension().and_then(|s| s.to_str()),
            ) else {
                continue;
            };
            if let Ok(meta) = item.metadata() {
                let used = std::fs::metadata(self.lock_path(name))
                    .and_then(|lock| lock.modified())
                    .or_else(|_| meta.modified());
                entries.push(CacheEntry {
                    name: name.to_owned(),
                    bytes: meta.len(),
                    last_used: used.unwrap_or(SystemTime::UNIX_EPOCH),
                });
            }
        }
        entries.sort_by_key(|e| std::cmp::Reverse(e.last_used));
        Ok(entries)
    }

    /// Removes least recently used entries until at most `max_bytes` remain (all of them
    /// for 0). Returns the removed entries.
    /// Remembered failed builds are forgotten too.
    pub fn prune(&self, max_bytes: u64) -> Result<Vec<CacheEntry>, CacheError> {
        self.evict_to(max_bytes, None, 0)
    }

    fn evict(&self, keep: Option<&str>) -> Result<Vec<CacheEntry>, CacheError> {
        self.evict_to(self.max_bytes, keep, MAX_ENTRIES)
    }

    /// Removes least recently used entries beyond `max_bytes` or [`MAX_ENTRIES`], each
    /// under its lock: an entry being built or loaded (its lock held) is skipped. Also
    /// removes what crashed writers left and remembered failures beyond `keep_failures`.
    fn evict_to(
        &self,
        max_bytes: u64,
        keep: Option<&str>,
        keep_failures: usize,
    ) -> Result<Vec<CacheEntry>, CacheError> {
        self.sweep(keep_failures);
        let entries = self.entries()?;
        let mut total: u64 = entries.iter().map(|e| e.bytes).sum();
        let mut count = entries.len();
        let mut removed = Vec::new();
        for entry in entries.into_iter().rev() {
            if total <= max_bytes && count <= MAX_ENTRIES {
                break;
            }
            if Some(entry.name.as_str()) == keep {
                continue;
            }
            let lock_path = self.lock_path(&entry.name);
            let Some(_guard) = try_lock_exclusive(&lock_path)? else {
                continue;
            };
            for path in [self.artifact_path(&entry.name), self.mac_path(&entry.name)] {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                    Err(e) => return Err(io_err("remove", &path)(e)),
                }
            }
            // Unlinked while held: a waiter on the old file finds it gone and retries.
            let _ = std::fs::remove_file(&lock_path);
            total -= entry.bytes;
            count -= 1;
            removed.push(entry);
        }
        Ok(removed)
    }

    /// One pass over the directory for what is not an entry: temporary files (`*.tmp.PID`)
    /// whose writing process no longer exists, and remembered failures (`*.failed`) beyond
    /// the newest `keep_failures`.
    fn sweep(&self, keep_failures: usize) {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return;
        };
        let mut failures: Vec<(SystemTime, PathBuf)> = Vec::new();
        for item in dir.flatten() {
            let path = item.path();
            if path.extension().is_some_and(|e| e == "failed") {
                let when = item.metadata().and_then(|m| m.modified());
                failures.push((when.unwrap_or(SystemTime::UNIX_EPOCH), path));
                continue;
            }
            let name = item.file_name();
            let Some(pid) = name
                .to_str()
                .and_then(|n| n.rsplit_once(".tmp."))
                .and_then(|(_, pid)| pid.parse::<i32>().ok())
            else {
                continue;
            };
            let gone = matches!(
                nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), None),
                Err(nix::errno::Errno::ESRCH)
            );
            if gone && std::fs::remove_file(&path).is_ok() {
                tracing::info!(file = %path.display(), "artifact cache: removed what a crashed writer left");
            }
        }
        if failures.len() > keep_failures {
            failures.sort();
            for (_, path) in &failures[..failures.len() - keep_failures] {
                let _ = std::fs::remove_file(path);
            }
        }
    }
}

enum Verdict {
    Absent,
    Trusted,
    Untrusted(String),
}

/// An exclusive `flock` on `path` (created if needed), held until the result is dropped.
fn lock_exclusive(path: &Path) -> Result<nix::fcntl::Flock<File>, CacheError> {
    loop {
        if let Some(lock) = lock_with(path, nix::fcntl::FlockArg::LockExclusive)? {
            return Ok(lock);
        }
    }
}

/// [`lock_exclusive`] without waiting: `None` when someone holds it.
fn try_lock_exclusive(path: &Path) -> Result<Option<nix::fcntl::Flock<File>>, CacheError> {
    loop {
        match lock_with(path, nix::fcntl::FlockArg::LockExclusiveNonblock) {
            Err(CacheError::Io { source, .. })
                if source.raw_os_error() == Some(libc::EWOULDBLOCK) =>
            {
                return Ok(None)
            }
            Ok(None) => continue,
            other => return other,
        }
    }
}

/// Locks `path`; `None` when the file was unlinked (an evicted entry) while we waited,
/// so the caller locks the new one.
fn lock_with(
    path: &Path,
    how: nix::fcntl::FlockArg,
) -> Result<Option<nix::fcntl::Flock<File>>, CacheError> {
    use std::os::unix::fs::MetadataExt;
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(io_err("open lock", path))?;
    let lock =
        nix::fcntl::Flock::lock(file, how).map_err(|(_, e)| io_err("lock", path)(e.into()))?;
    let held = lock.metadata().map_err(io_err("inspect lock", path))?;
    match std::fs::metadata(path) {
        Ok(now) if now.ino() == held.ino() && now.dev() == held.dev() => Ok(Some(lock)),
        _ => Ok(None),
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> Result<(), CacheError> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io_err("create", &tmp))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_err("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(io_err("install", path))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;

    fn built<'a>(
        n: &'a AtomicUsize,
        bytes: &'static [u8],
    ) -> impl FnOnce() -> Result<Vec<u8>, String> + 'a {
        move || {
            n.fetch_add(1, Ordering::SeqCst);
            Ok(bytes.to_vec())
        }
    }

    /// Copies entry `from` (artifact and MAC) of cache `src` to entry `to` of cache `dst`.
    fn plant_entry(src: &Path, from: &str, dst: &Path, to: &str) {
        for ext in ["bin", "mac"] {
            std::fs::copy(
                src.join(format!("{from}.{ext}")),
                dst.join(format!("{to}.{ext}")),
            )
            .unwrap();
        }
    }

    #[test]
    fn a_directory_others_may_write_or_own_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("cache");
        std::fs::create_dir(&cache).unwrap();
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o777)).unwrap();
        let err = ArtifactCache::open(&cache, 1 << 20)
            .err()
            .unwrap()
            .to_string();
        assert!(
            err.ends_with("not used: others may write to it (mode 777)"),
            "{err}"
        );
        std::fs::set_permissions(&cache, std::fs::Permissions::from_mode(0o755)).unwrap();
        assert!(ArtifactCache::open(&cache, 1 << 20).is_ok());
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&cache, &link).unwrap();
        let err = ArtifactCache::open(&link, 1 << 20)
            .err()
            .unwrap()
            .to_string();
        assert!(err.contains("it is a symlink"), "{err}");
        if nix::unistd::geteuid().is_root() {
            std::os::unix::fs::chown(&cache, Some(4321), None).unwrap();
            let err = ArtifactCache::open(&cache, 1 << 20)
                .err()
                .unwrap()
                .to_string();
            assert!(err.contains("owned by uid 4321, not by uid 0"), "{err}");
        }
    }

    #[test]
    fn a_failed_build_is_remembered_until_prune() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(dir.path(), 1 << 20).unwrap();
        let n = AtomicUsize::new(0);
        let failing = |n: &AtomicUsize| {
            n.fetch_add(1, Ordering::SeqCst);
            Err::<Vec<u8>, _>("init did not finish within 2 s".to_owned())
        };
        let first = cache.get_or_build_once("snap", || failing(&n)).unwrap_err();
        assert_eq!(first.to_string(), "init did not finish within 2 s");
        let again = cache.get_or_build_once("snap", || failing(&n)).unwrap_err();
        assert!(
            again
                .to_string()
                .starts_with("init did not finish within 2 s (remembered from an earlier attempt"),
            "{again}"
        );
        assert_eq!(n.load(Ordering::SeqCst), 1, "the build ran again");
        cache.prune(u64::MAX).unwrap();
        assert_eq!(
            cache.get_or_build_once("snap", built(&n, b"ok")).unwrap().1,
            CacheOutcome::Built
        );
    }

    #[test]
    fn an_entry_larger_than_the_bound_is_not_stored() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(dir.path(), 8).unwrap();
        let n = AtomicUsize::new(0);
        let kept = cache.get_or_build("small", built(&n, b"1234")).unwrap();
        assert_eq!(kept.1, CacheOutcome::Built);
        let err = cache
            .get_or_build("big", built(&n, b"0123456789"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("10 bytes is more than the cache's bound of 8 bytes"),
            "{err}"
        );
        // The other entry was not flushed for it.
        assert_eq!(
            cache.get_or_build("small", built(&n, b"1234")).unwrap().1,
            CacheOutcome::Hit
        );
        assert_eq!(cache.entries().unwrap().len(), 1);
    }

    #[test]
    fn eviction_skips_an_entry_in_use_and_clears_crash_leftovers() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(dir.path(), 1 << 20).unwrap();
        let n = AtomicUsize::new(0);
        cache.get_or_build("old", built(&n, b"aaaa")).unwrap();
        cache.get_or_build("new", built(&n, b"bbbb")).unwrap();
        // A writer that died mid-write, and one that is alive (this process).
        let dead = dir.path().join(format!("x.bin.tmp.{}", i32::MAX));
        let alive = dir.path().join(format!("y.bin.tmp.{}", std::process::id()));
        std::fs::write(&dead, b"partial").unwrap();
        std::fs::write(&alive, b"partial").unwrap();
        // "old" is being loaded by someone: prune to nothing leaves it.
        let held = lock_exclusive(&cache.lock_path("old")).unwrap();
        let removed = cache.prune(0).unwrap();
        assert_eq!(
            removed.iter().map(|e| e.name.as_str()).collect::<Vec<_>>(),
            ["new"]
        );
        assert!(!dead.exists() && alive.exists());
        drop(held);
        let removed = cache.prune(0).unwrap();
        assert_eq!(removed.len(), 1);
        assert!(cache.entries().unwrap().is_empty());
        // An evicted entry's lock file went with it; the next builder makes a new one.
        assert_eq!(
            cache.get_or_build("old", built(&n, b"aaaa")).unwrap().1,
            CacheOutcome::Built
        );
    }

    #[test]
    fn settings_travel_through_the_environment() {
        let settings = CacheSettings {
            dir: Some(PathBuf::from("/srv/cache")),
            max_bytes: 5 << 20,
        };
        let env = settings.to_env();
        assert_eq!(env[0], (DIR_ENV, "/srv/cache".into()));
        assert_eq!(env[1], (MAX_BYTES_ENV, "5242880".into()));
        let off = CacheSettings {
            dir: None,
            max_bytes: DEFAULT_MAX_BYTES,
        };
        assert_eq!(off.to_env()[0], (DIR_ENV, "off".into()));
    }

    #[test]
    fn built_once_then_served_verified_also_after_reopening() {
        let dir = tempfile::tempdir().unwrap();
        let builds = AtomicUsize::new(0);
        let name = ArtifactCache::entry_name(&[b"engine-1", b"config", b"module digest"]);
        let cache = ArtifactCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        let (path, outcome) = cache
            .get_or_build(&name, built(&builds, b"native code"))
            .unwrap();
        assert_eq!(outcome, CacheOutcome::Built);
        assert_eq!(std::fs::read(&path).unwrap(), b"native code");
        let (_, outcome) = cache.get_or_build(&name, built(&builds, b"other")).unwrap();
        assert_eq!(outcome, CacheOutcome::Hit);
        // A new process (shim, containerd restart) finds the same key and entry.
        let reopened = ArtifactCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        let (path, outcome) = reopened
            .get_or_build(&name, built(&builds, b"other"))
            .unwrap();
        assert_eq!(outcome, CacheOutcome::Hit);
        assert_eq!(std::fs::read(&path).unwrap(), b"native code");
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        use std::os::unix::fs::PermissionsExt;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(dir.path()), 0o700);
        assert_eq!(mode(&dir.path().join(".key")), 0o600);

        // A metadata change breaks the seal: the bytes are checked again (still good),
        // and the entry is resealed for the file as it is now.
        let mac_text = || std::fs::read_to_string(dir.path().join(format!("{name}.mac"))).unwrap();
        let sealed = mac_text();
        assert_eq!(sealed.lines().count(), 2, "{sealed}");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
        let (_, outcome) = reopened
            .get_or_build(&name, built(&builds, b"other"))
            .unwrap();
        assert_eq!(outcome, CacheOutcome::Hit);
        assert_ne!(mac_text(), sealed);
        assert_eq!(mac_text().lines().next(), sealed.lines().next());
        assert_eq!(builds.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn tampered_truncated_and_foreign_entries_are_rebuilt_never_served() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(dir.path(), DEFAULT_MAX_BYTES).unwrap();
        let builds = AtomicUsize::new(0);
        let name = ArtifactCache::entry_name(&[b"m"]);
        let (path, _) = cache
            .get_or_build(&name, built(&builds, b"genuine code"))
            .unwrap();

        std::fs::write(&path, b"genuine codf").unwrap();
        let (path, outcome) = cache
            .get_or_build(&name, built(&builds, b"genuine code"))
            .unwrap();
        assert!(
            matches!(outcome, CacheOutcome::Rebuilt { ref reason } if reason.contains("does not match")),
            "{outcome:?}"
        );
        assert_eq!(std::fs::read(&path).unwrap(), b"genuine code");

        std::fs::write(&path, b"genuine").unwrap();
        let (_, outcome) = cache
            .get_or_build(&name, built(&builds, b"genuine code"))
            .unwrap();
        assert!(matches!(outcome, CacheOutcome::Rebuilt { .. }));

        // Dropped in by someone else, with no MAC or one made under another key.
        let other = tempfile::tempdir().unwrap();
        let foreign = ArtifactCache::open(other.path(), DEFAULT_MAX_BYTES).unwrap();
        let (foreign_path, _) = foreign
            .get_or_build(&name, built(&builds, b"evil code"))
            .unwrap();
        assert_eq!(foreign_path, other.path().join(format!("{name}.bin")));
        plant_entry(other.path(), &name, dir.path(), &name);
        let (path, outcome) = cache
            .get_or_build(&name, built(&builds, b"genuine code"))
            .unwrap();
        assert!(matches!(outcome, CacheOutcome::Rebuilt { .. }));
        assert_eq!(std::fs::read(&path).unwrap(), b"genuine code");
        std::fs::remove_file(dir.path().join(format!("{name}.mac"))).unwrap();
        let (_, outcome) = cache
            .get_or_build(&name, built(&builds, b"genuine code"))
            .unwrap();
        assert!(
            matches!(outcome, CacheOutcome::Rebuilt { ref reason } if reason.contains("no MAC"))
        );
        // An entry's MAC covers its name: bytes moved to another name do not verify.
        let moved = ArtifactCache::entry_name(&[b"n"]);
        plant_entry(dir.path(), &name, dir.path(), &moved);
        let (_, outcome) = cache
            .get_or_build(&moved, built(&builds, b"n code"))
            .unwrap();
        assert!(matches!(outcome, CacheOutcome::Rebuilt { .. }));
    }

    #[test]
    fn concurrent_first_uses_build_once() {
        let dir = tempfile::tempdir().unwrap();
        let builds = Arc::new(AtomicUsize::new(0));
        let name = ArtifactCache::entry_name(&[b"shared module"]);
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (dir, builds, name) =
                    (dir.path().to_path_buf(), Arc::clone(&builds), name.clone());
                std::thread::spawn(move || {
                    // Each opens its own cache, as separate processes would.
                    let cache = ArtifactCache::open(&dir, DEFAULT_MAX_BYTES).unwrap();
                    cache
                        .get_or_build(&name, || {
                            builds.fetch_add(1, Ordering::SeqCst);
                            std::thread::sleep(std::time::Duration::from_millis(50));
                            Ok(b"compiled".to_vec())
                        })
                        .unwrap()
                        .1
                })
            })
            .collect();
        let outcomes: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
        assert_eq!(builds.load(Ordering::SeqCst), 1);
        assert_eq!(
            outcomes
                .iter()
                .filter(|o| **o == CacheOutcome::Built)
                .count(),
            1
        );
    }

    #[test]
    fn least_recently_used_entries_go_first_and_prune_empties() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(dir.path(), 250).unwrap();
        let builds = AtomicUsize::new(0);
        let hundred: &'static [u8] = &[7u8; 100];
        let names: Vec<String> = (0..3).map(|i| ArtifactCache::entry_name(&[&[i]])).collect();
        let old = SystemTime::now() - std::time::Duration::from_secs(60);
        cache
            .get_or_build(&names[0], built(&builds, hundred))
            .unwrap();
        cache
            .get_or_build(&names[1], built(&builds, hundred))
            .unwrap();
        // names[0] is used again: names[1] is now the least recently used.
        File::options()
            .write(true)
            .open(dir.path().join(format!("{}.bin", names[1])))
            .unwrap()
            .set_modified(old)
            .unwrap();
        cache
            .get_or_build(&names[0], built(&builds, hundred))
            .unwrap();
        cache
            .get_or_build(&names[2], built(&builds, hundred))
            .unwrap();
        let left: Vec<String> = cache
            .entries()
            .unwrap()
            .into_iter()
            .map(|e| e.name)
            .collect();
        assert_eq!(left.len(), 2);
        assert!(
            left.contains(&names[0]) && left.contains(&names[2]),
            "{left:?}"
        );
        assert_eq!(cache.prune(0).unwrap().len(), 2);
        assert!(cache.entries().unwrap().is_empty());
    }

    #[test]
    fn a_file_digest_is_remembered_until_the_file_changes() {
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(&dir.path().join("cache"), DEFAULT_MAX_BYTES).unwrap();
        let model = dir.path().join("model.onnx");
        std::fs::write(&model, b"first model").unwrap();
        let first: [u8; 32] = Sha256::digest(b"first model").into();
        let digest = |cache: &ArtifactCache, reads: &AtomicUsize| {
            let file = File::open(&model).unwrap();
            let bytes = std::fs::read(&model).unwrap();
            cache
                .file_digest(&file, || {
                    reads.fetch_add(1, Ordering::SeqCst);
                    Ok(&bytes[..])
                })
                .unwrap()
        };
        let reads = AtomicUsize::new(0);
        assert_eq!(digest(&cache, &reads), (first, CacheOutcome::Built));
        assert_eq!(digest(&cache, &reads), (first, CacheOutcome::Hit));
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        // Rewritten in place, same size: its change time moved, so it is read again.
        std::fs::write(&model, b"other model").unwrap();
        let other: [u8; 32] = Sha256::digest(b"other model").into();
        assert_eq!(digest(&cache, &reads), (other, CacheOutcome::Built));
        assert_eq!(reads.load(Ordering::SeqCst), 2);
        // A reader that fails leaves nothing remembered.
        std::fs::write(&model, b"third").unwrap();
        let err = cache
            .file_digest(&File::open(&model).unwrap(), || {
                Err("cannot read it".to_owned())
            })
            .unwrap_err();
        assert_eq!(err.to_string(), "cannot read it");
        let third: [u8; 32] = Sha256::digest(b"third").into();
        assert_eq!(digest(&cache, &reads), (third, CacheOutcome::Built));
    }

    /// Unmounts its overlay when dropped.
    struct Overlay(PathBuf);

    impl Overlay {
        /// `lower` as an overlay at `dir/name/merged`, with its own upper layer.
        fn mount(lower: &Path, dir: &Path, name: &str) -> Self {
            let base = dir.join(name);
            for sub in ["upper", "work", "merged"] {
                std::fs::create_dir_all(base.join(sub)).unwrap();
            }
            let options = format!(
                "lowerdir={},upperdir={},workdir={}",
                lower.display(),
                base.join("upper").display(),
                base.join("work").display()
            );
            nix::mount::mount(
                Some("overlay"),
                &base.join("merged"),
                Some("overlay"),
                nix::mount::MsFlags::empty(),
                Some(options.as_str()),
            )
            .expect("mounting an overlay");
            Self(base.join("merged"))
        }
    }

    impl Drop for Overlay {
        fn drop(&mut self) {
            let _ = nix::mount::umount(&self.0);
        }
    }

    #[test]
    fn a_file_of_a_layer_seen_through_another_overlay_is_not_read_again() {
        if !nix::unistd::Uid::effective().is_root() {
            eprintln!("skipping: mounting overlays needs root");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let cache = ArtifactCache::open(&dir.path().join("cache"), DEFAULT_MAX_BYTES).unwrap();
        let layer = dir.path().join("layer");
        std::fs::create_dir(&layer).unwrap();
        std::fs::write(layer.join("model.onnx"), b"layer model").unwrap();
        let expected: [u8; 32] = Sha256::digest(b"layer model").into();
        let reads = AtomicUsize::new(0);
        let digest = |root: &Path| {
            let path = root.join("model.onnx");
            let bytes = std::fs::read(&path).unwrap();
            cache
                .file_digest(&File::open(&path).unwrap(), || {
                    reads.fetch_add(1, Ordering::SeqCst);
                    Ok(&bytes[..])
                })
                .unwrap()
        };
        // Two containers of one image: two overlay mounts, each with its own device.
        let first = Overlay::mount(&layer, dir.path(), "c1");
        let second = Overlay::mount(&layer, dir.path(), "c2");
        use std::os::unix::fs::MetadataExt;
        let dev = |root: &Path| std::fs::metadata(root.join("model.onnx")).unwrap().dev();
        assert_ne!(dev(&first.0), dev(&second.0));
        assert_eq!(digest(&first.0), (expected, CacheOutcome::Built));
        assert_eq!(digest(&second.0), (expected, CacheOutcome::Hit));
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        // A container that rewrites its copy (copied up) has another file.
        std::fs::write(second.0.join("model.onnx"), b"own model").unwrap();
        let own: [u8; 32] = Sha256::digest(b"own model").into();
        assert_eq!(digest(&second.0), (own, CacheOutcome::Built));
        assert_eq!(digest(&first.0), (expected, CacheOutcome::Hit));
    }
}
