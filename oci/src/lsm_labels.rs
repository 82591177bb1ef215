//! The spec's AppArmor profile and SELinux label against the kernel's security modules: kept, dropped where the kernel has no such module, or refused for Wasm.
//!
//! A label is applied to a process where it execs: libcontainer asks AppArmor for
//! `process.apparmorProfile` at the init's `execve`. On a kernel without AppArmor that
//! request fails the container's Create with a bare "No such file or directory"; runc
//! skips it there, and so does Triage, by dropping the profile from the spec (logged).
//! A Wasm init never execs, and by the time its engine runs its own `/proc/<pid>` is
//! masked (see [`crate::guest_view`]), so it cannot take a label itself: a label the
//! kernel would enforce is refused for a Wasm container rather than silently not
//! applied.

use oci_spec::runtime::Spec;

use crate::error::PlanError;

/// Settles the labels of `spec` for a container that runs in Wasm (`wasm`) or natively,
/// given the kernel's active LSMs (`active_lsms`, comma-separated as
/// `/sys/kernel/security/lsm` lists them). Returns the labels dropped from the spec
/// because the kernel lacks their module (to be logged; the spec changed if any).
pub fn settle(
    id: &str,
    spec: &mut Spec,
    wasm: bool,
    active_lsms: &str,
) -> Result<Vec<String>, PlanError> {
    let active = |name: &str| active_lsms.trim().split(',').any(|lsm| lsm == name);
    let Some(mut process) = spec.process().clone() else {
        return Ok(Vec::new());
    };
    let mut dropped = Vec::new();
    let asked = [
        (
            "apparmor",
            "AppArmor profile",
            process.apparmor_profile().clone(),
        ),
        ("selinux", "SELinux label", process.selinux_label().clone()),
    ];
    for (lsm, what, value) in asked {
        let Some(value) = value.filter(|v| !v.is_empty()) else {
            continue;
        };
        let label = format!("{what} {value}");
        match (active(lsm), wasm) {
            (true, true) => {
                return Err(PlanError::LsmLabel {
                    id: id.to_owned(),
                    label,
                })
            }
            (true, false) => {}
            (false, _) => {
                match lsm {
                    "apparmor" => process.set_apparmor_profile(None),
                    _ => process.set_selinux_label(None),
                };
                dropped.push(label);
            }
        }
    }
    if !dropped.is_empty() {
        spec.set_process(Some(process));
    }
    Ok(dropped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec_with(apparmor: Option<&str>, selinux: Option<&str>) -> Spec {
        let mut spec = Spec::default();
        let mut process = spec.process().clone().unwrap_or_default();
        process.set_apparmor_profile(apparmor.map(str::to_owned));
        process.set_selinux_label(selinux.map(str::to_owned));
        spec.set_process(Some(process));
        spec
    }

    fn labels(spec: &Spec) -> (Option<String>, Option<String>) {
        let process = spec.process().as_ref().unwrap();
        (
            process.apparmor_profile().clone(),
            process.selinux_label().clone(),
        )
    }

    #[test]
    fn labels_the_kernel_enforces_are_refused_for_wasm_and_kept_for_native() {
        let mut spec = spec_with(Some("tenant-a"), None);
        let err = settle("c1", &mut spec, true, "capability,apparmor\n")
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "container c1: the spec asks for AppArmor profile tenant-a, which this kernel enforces, but a Wasm container's init never execs (where a label is applied) and cannot take it itself; refused rather than run unconfined (run it as a native container, or drop the label)"
        );
        let mut spec = spec_with(None, Some("system_u:system_r:container_t:s0"));
        assert!(settle("c1", &mut spec, true, "selinux").is_err());
        let mut spec = spec_with(Some("tenant-a"), None);
        assert!(settle("c1", &mut spec, false, "apparmor")
            .unwrap()
            .is_empty());
        assert_eq!(labels(&spec), (Some("tenant-a".into()), None));
    }

    #[test]
    fn labels_for_a_module_the_kernel_lacks_are_dropped_and_said() {
        // This machine's kernel: Landlock and BPF, neither AppArmor nor SELinux.
        let lsms = "capability,landlock,lockdown,yama,bpf";
        for wasm in [true, false] {
            let mut spec = spec_with(Some("tenant-a"), Some("system_u:system_r:container_t:s0"));
            assert_eq!(
                settle("c1", &mut spec, wasm, lsms).unwrap(),
                vec![
                    "AppArmor profile tenant-a".to_owned(),
                    "SELinux label system_u:system_r:container_t:s0".to_owned()
                ]
            );
            assert_eq!(labels(&spec), (None, None));
        }
        let mut spec = spec_with(None, Some(""));
        assert!(settle("c1", &mut spec, true, "selinux").unwrap().is_empty());
    }
}
