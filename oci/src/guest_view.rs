//! What a Wasm guest must not see of the process that runs it: the spec edit that hides it.
//!
//! A Wasm guest's `/` is its container's root, `/proc` included, and its process is the
//! engine: `/proc/self` would show the engine's environment, command line, memory
//! (`mem`), descriptors and mappings. The engine's own `/proc/<pid>` directory (what
//! `/proc/self` and `/proc/thread-self` lead to) is therefore added to the spec's
//! `maskedPaths`, which libcontainer covers, in the init's own mount namespace and
//! before the guest's preopens are made, with an empty read-only tmpfs.

use oci_spec::runtime::Spec;

/// The paths masked for a Wasm guest, besides the spec's own.
pub const ENGINE_PATHS: &[&str] = &["/proc/self"];

/// Adds [`ENGINE_PATHS`] to `spec`'s masked paths; whether the spec changed.
pub fn hide_engine_process(spec: &mut Spec) -> bool {
    let Some(linux) = spec.linux_mut() else {
        return false;
    };
    let mut masked = linux.masked_paths().clone().unwrap_or_default();
    let before = masked.len();
    for path in ENGINE_PATHS {
        if !masked.iter().any(|m| m == path) {
            masked.push((*path).to_owned());
        }
    }
    let changed = masked.len() != before;
    linux.set_masked_paths(Some(masked));
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_engine_process_is_masked_once() {
        let mut spec = Spec::default();
        let kept = spec
            .linux()
            .as_ref()
            .and_then(|l| l.masked_paths().clone())
            .unwrap_or_default();
        assert!(hide_engine_process(&mut spec));
        assert!(!hide_engine_process(&mut spec));
        let masked = spec
            .linux()
            .as_ref()
            .unwrap()
            .masked_paths()
            .clone()
            .unwrap();
        assert_eq!(masked.len(), kept.len() + 1);
        assert!(kept.iter().all(|k| masked.contains(k)));
        assert_eq!(masked.last().map(String::as_str), Some("/proc/self"));
    }
}
