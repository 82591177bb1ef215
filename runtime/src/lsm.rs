//! The kernel's active Linux security modules, as the node sees them.

/// The active LSMs, comma-separated as `/sys/kernel/security/lsm` lists them. Where
/// securityfs is not mounted, AppArmor and SELinux are found by their own files.
pub fn active() -> String {
    if let Ok(list) = std::fs::read_to_string("/sys/kernel/security/lsm") {
        return list.trim().to_owned();
    }
    let apparmor = std::fs::read_to_string("/sys/module/apparmor/parameters/enabled")
        .is_ok_and(|enabled| enabled.starts_with('Y'));
    let selinux = std::path::Path::new("/sys/fs/selinux/enforce").exists();
    [(apparmor, "apparmor"), (selinux, "selinux")]
        .into_iter()
        .filter_map(|(on, name)| on.then_some(name))
        .collect::<Vec<_>>()
        .join(",")
}
