//! Puts the shim binary in place under both names containerd looks for.

use std::path::{Path, PathBuf};

use crate::{InstallError, SHIM_NAMES};

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> InstallError + 'a {
    move |source| InstallError::Io {
        op,
        path: path.to_path_buf(),
        source,
    }
}

/// Copies `shim` to `bindir/containerd-shim-triage-v1` (atomically) and links
/// `containerd-shim-wasmedge-v1` to it. Returns the paths written.
pub fn install(shim: &Path, bindir: &Path) -> Result<Vec<PathBuf>, InstallError> {
    std::fs::create_dir_all(bindir).map_err(io("create directory", bindir))?;
    let main = bindir.join(SHIM_NAMES[0]);
    let staging = bindir.join(format!(".{}.new", SHIM_NAMES[0]));
    std::fs::copy(shim, &staging).map_err(io("copy shim to", &staging))?;
    // 0755 whatever the build's umask made of the source: containerd (root) runs it,
    // nobody else may change it.
    std::fs::set_permissions(
        &staging,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .map_err(io("set the mode of", &staging))?;
    std::fs::rename(&staging, &main).map_err(io("move shim into", &main))?;
    let mut written = vec![main];
    for alias in &SHIM_NAMES[1..] {
        let link = bindir.join(alias);
        match std::fs::symlink_metadata(&link) {
            Ok(_) => std::fs::remove_file(&link).map_err(io("replace", &link))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(io("inspect", &link)(e)),
        }
        std::os::unix::fs::symlink(SHIM_NAMES[0], &link).map_err(io("link", &link))?;
        written.push(link);
    }
    Ok(written)
}

/// Removes what [`install`] wrote; an alias is removed only if it still points to
/// Triage's binary. Returns the paths removed.
pub fn uninstall(bindir: &Path) -> Result<Vec<PathBuf>, InstallError> {
    let mut removed = Vec::new();
    for alias in &SHIM_NAMES[1..] {
        let link = bindir.join(alias);
        if std::fs::read_link(&link).is_ok_and(|t| t == Path::new(SHIM_NAMES[0])) {
            std::fs::remove_file(&link).map_err(io("remove", &link))?;
            removed.push(link);
        }
    }
    let main = bindir.join(SHIM_NAMES[0]);
    if main.exists() {
        std::fs::remove_file(&main).map_err(io("remove", &main))?;
        removed.push(main);
    }
    Ok(removed)
}
