//! The runtime handler's `options` table (from containerd's config), checked against
//! what Triage does: every key is honoured or refused with a reason.

use toml_edit::{DocumentMut, Item};

use crate::error::PlanError;

/// The options Triage understands, after validation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// `BinaryName`, as K3s sets it for every runtime; informational for a shim that is
    /// already running.
    pub binary_name: Option<String>,
}

impl RuntimeOptions {
    /// Parses the handler's options (TOML). `source_name` says where they came from,
    /// for error messages.
    pub fn from_toml(id: &str, source_name: &str, text: &str) -> Result<Self, PlanError> {
        let refuse = |reason: String| PlanError::RuntimeOptions {
            id: id.to_owned(),
            source_name: source_name.to_owned(),
            reason,
        };
        let doc: DocumentMut = text
            .parse()
            .map_err(|e| refuse(format!("not valid TOML: {e}")))?;
        let mut options = Self::default();
        for (key, item) in doc.iter() {
            match (key, item) {
                ("SystemdCgroup", item) => match item.as_bool() {
                    Some(false) => {}
                    Some(true) => {
                        return Err(refuse(
                            "SystemdCgroup = true is not supported: Triage creates cgroups \
                             with the cgroupfs driver; use SystemdCgroup = false (and kubelet's \
                             cgroupfs driver) for this handler"
                                .to_owned(),
                        ))
                    }
                    None => return Err(refuse("SystemdCgroup must be true or false".to_owned())),
                },
                ("BinaryName", Item::Value(v)) if v.as_str().is_some() => {
                    options.binary_name = v.as_str().map(str::to_owned);
                }
                // containerd's own keys for locating the options.
                ("TypeUrl" | "ConfigPath", _) => {}
                (other, _) => {
                    return Err(refuse(format!(
                        "unknown option {other:?} (Triage knows SystemdCgroup and BinaryName)"
                    )))
                }
            }
        }
        Ok(options)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cgroupfs_and_binary_name_are_accepted() {
        let options = RuntimeOptions::from_toml(
            "c",
            "config_body",
            "SystemdCgroup = false\nBinaryName = \"/usr/local/bin/containerd-shim-triage-v1\"\n",
        )
        .unwrap();
        assert_eq!(
            options.binary_name.as_deref(),
            Some("/usr/local/bin/containerd-shim-triage-v1")
        );
        assert_eq!(
            RuntimeOptions::from_toml("c", "config_body", "").unwrap(),
            RuntimeOptions::default()
        );
    }

    #[test]
    fn systemd_cgroups_and_unknown_keys_are_refused_with_reasons() {
        let err =
            RuntimeOptions::from_toml("pod-1", "/etc/triage/options.toml", "SystemdCgroup = true")
                .unwrap_err();
        let msg = err.to_string();
        assert!(msg.starts_with("container pod-1: runtime options from /etc/triage/options.toml: SystemdCgroup = true is not supported"), "{msg}");
        let err = RuntimeOptions::from_toml("c", "config_body", "Shiny = 1").unwrap_err();
        assert!(
            err.to_string().contains("unknown option \"Shiny\""),
            "{err}"
        );
        let err =
            RuntimeOptions::from_toml("c", "config_body", "SystemdCgroup = \"yes\"").unwrap_err();
        assert!(err.to_string().contains("must be true or false"), "{err}");
        assert!(RuntimeOptions::from_toml("c", "config_body", "= broken").is_err());
    }
}
