//! Adds and removes Triage's block in K3s's containerd template (`config.toml.tmpl`).
//!
//! The template is Go text/template, not TOML, so Triage manages one marked block in it.
//! K3s renders `{{ template "base" . }}` (its own config, including the Wasm runtimes it
//! detects on `PATH`, such as `wasmedge` from `containerd-shim-wasmedge-v1`) and appends
//! the rest. The block therefore adds only the `triage` handler: a second `wasmedge`
//! table would make the rendered file invalid.

use crate::containerd_config::cri_plugin;

/// The template, relative to the K3s data directory.
pub const TEMPLATE: &str = "agent/etc/containerd/config.toml.tmpl";
/// The config K3s rendered last time, relative to the K3s data directory.
pub const RENDERED: &str = "agent/etc/containerd/config.toml";

const BEGIN: &str = "# BEGIN triage runtime handler (managed by triage-install)";
const END: &str = "# END triage runtime handler";
const BASE: &str = "{{ template \"base\" . }}";

/// The containerd generation K3s runs, from the config it rendered (`version = 3` is
/// containerd 2.x); current K3s when there is none yet.
pub fn containerd_major(rendered: Option<&str>) -> u32 {
    match rendered {
        Some(text) if text.lines().any(|l| l.trim() == "version = 2") => 1,
        _ => 2,
    }
}

/// `template` with Triage's block (re)written at its end; an empty template starts
/// from K3s's base.
pub fn add_block(template: &str, containerd_major: u32) -> String {
    let mut text = strip_block(template);
    if text.trim().is_empty() {
        text = format!("{BASE}\n");
    }
    if !text.ends_with('\n') {
        text.push('\n');
    }
    text.push_str(&format!(
        "{BEGIN}\n[plugins.\"{}\".containerd.runtimes.triage]\n  runtime_type = \"io.containerd.triage.v1\"\n  pod_annotations = {annotations}\n  container_annotations = {annotations}\n{END}\n",
        cri_plugin(containerd_major),
        annotations = toml_edit::Array::from_iter(crate::FORWARDED_ANNOTATIONS.iter().copied()),
    ));
    text
}

/// `template` without Triage's block; `None` when nothing but K3s's base would remain
/// (the file was ours and should go).
pub fn remove_block(template: &str) -> Option<String> {
    let text = strip_block(template);
    (text.trim() != BASE && !text.trim().is_empty()).then_some(text)
}

fn strip_block(template: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in template.split_inclusive('\n') {
        match line.trim_end() {
            BEGIN => inside = true,
            END => inside = false,
            _ if !inside => out.push_str(line),
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_template_gets_base_and_block() {
        let text = add_block("", 2);
        assert!(text.starts_with("{{ template \"base\" . }}\n"), "{text}");
        assert!(
            text.contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.triage]")
        );
        assert!(
            !text.contains("wasmedge]"),
            "K3s configures wasmedge itself: {text}"
        );
        assert_eq!(remove_block(&text), None);
    }

    #[test]
    fn user_template_is_kept_and_block_replaced_not_duplicated() {
        let user = "{{ template \"base\" . }}\n[plugins.\"io.containerd.grpc.v1.cri\".registry]\n  config_path = \"/etc/certs\"\n";
        let once = add_block(user, 1);
        let twice = add_block(&once, 1);
        assert_eq!(once, twice);
        assert!(once.starts_with(user));
        assert!(once.contains("io.containerd.grpc.v1.cri\".containerd.runtimes.triage"));
        assert_eq!(remove_block(&once).as_deref(), Some(user));
    }

    #[test]
    fn generation_from_rendered_config() {
        assert_eq!(containerd_major(Some("version = 2\nroot = \"/x\"\n")), 1);
        assert_eq!(containerd_major(Some("version = 3\n")), 2);
        assert_eq!(containerd_major(None), 2);
    }
}
