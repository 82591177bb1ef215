//! Finds and reads the node profile: `$TRIAGE_CONFIG`, else `/etc/triage/config.toml`.

use std::path::PathBuf;

use triage_oci::{CacheLocation, NodeProfile, ProfileError};
use triage_runtime::engine::cache::CacheSettings;

/// Where the node profile lives unless `TRIAGE_CONFIG` says otherwise.
pub const DEFAULT_PATH: &str = "/etc/triage/config.toml";

/// The profile file this shim reads.
pub fn path() -> PathBuf {
    std::env::var_os("TRIAGE_CONFIG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(DEFAULT_PATH))
}

/// Reads the node profile; the built-in edge profile (4 CPU / 8 GiB) when there is no
/// file. Read at each Create, so an edited profile applies to the next container.
pub fn load() -> Result<NodeProfile, ProfileError> {
    let path = path();
    match std::fs::read_to_string(&path) {
        Ok(text) => NodeProfile::from_toml(&path.display().to_string(), &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            tracing::debug!(path = %path.display(), "no node profile file; using the built-in one");
            Ok(NodeProfile::default())
        }
        Err(e) => Err(ProfileError {
            source_name: path.display().to_string(),
            reason: format!("cannot read: {e}"),
        }),
    }
}

/// The artifact cache the profile's `[wasm]` section asks for; what it leaves out comes
/// from `$TRIAGE_CACHE_DIR` / `$TRIAGE_CACHE_MAX_BYTES`, else the defaults.
pub fn cache_settings(profile: &NodeProfile) -> CacheSettings {
    let from_env = CacheSettings::from_env();
    CacheSettings {
        dir: match &profile.wasm.cache {
            Some(CacheLocation::Off) => None,
            Some(CacheLocation::Dir(dir)) => Some(dir.clone()),
            None => from_env.dir,
        },
        max_bytes: profile.wasm.cache_max_bytes.unwrap_or(from_env.max_bytes),
    }
}
