//! Adds and removes Triage's runtime handlers in containerd's `config.toml`, keeping
//! everything else in the file (comments, order, other runtimes) as it was.

use std::path::Path;

use toml_edit::{value, DocumentMut, Item, Table};

use crate::{InstallError, FORWARDED_ANNOTATIONS, HANDLERS};

/// Marks the default runtime entry Triage adds: once a config lists any runtime,
/// containerd no longer supplies its built-in `runc` entry, and CRI refuses to start.
const DEFAULT_RUNTIME_MARK: &str =
    "# added by triage-install: listing runtimes replaces containerd's built-in runc entry\n";

/// The CRI plugin's key for each containerd generation.
pub fn cri_plugin(containerd_major: u32) -> &'static str {
    if containerd_major >= 2 {
        "io.containerd.cri.v1.runtime"
    } else {
        "io.containerd.grpc.v1.cri"
    }
}

/// The config schema version each containerd generation writes.
pub fn config_version(containerd_major: u32) -> i64 {
    if containerd_major >= 2 {
        3
    } else {
        2
    }
}

fn parse(path: &Path, text: &str) -> Result<DocumentMut, InstallError> {
    text.parse::<DocumentMut>()
        .map_err(|e| InstallError::Parse {
            path: path.to_path_buf(),
            reason: e.to_string(),
        })
}

/// Returns `text` with the `triage` and `wasmedge` handlers set for containerd
/// `containerd_major`; an empty `text` becomes a minimal config.
pub fn add_handlers(
    path: &Path,
    text: &str,
    containerd_major: u32,
) -> Result<String, InstallError> {
    let mut doc = parse(path, text)?;
    let wanted = config_version(containerd_major);
    match doc.get("version").and_then(Item::as_integer) {
        None if text.trim().is_empty() => {
            doc["version"] = value(wanted);
        }
        Some(v) if v >= 2 => {}
        other => {
            return Err(InstallError::Unsupported {
                path: path.to_path_buf(),
                reason: format!(
                    "config version {} is not supported; convert it with `containerd config migrate` first",
                    other.unwrap_or(1)
                ),
            })
        }
    }
    let runtimes = runtimes_table(&mut doc, containerd_major);
    for (handler, runtime_type) in HANDLERS {
        let entry = runtimes
            .entry(handler)
            .or_insert_with(|| Item::Table(Table::new()));
        let Some(table) = entry.as_table_like_mut() else {
            return Err(InstallError::Unsupported {
                path: path.to_path_buf(),
                reason: format!("runtimes.{handler} is not a table"),
            });
        };
        table.insert("runtime_type", value(*runtime_type));
        for key in ["pod_annotations", "container_annotations"] {
            table.insert(
                key,
                value(toml_edit::Array::from_iter(
                    FORWARDED_ANNOTATIONS.iter().copied(),
                )),
            );
        }
    }
    let default = lookup(&mut doc, cri_plugin(containerd_major), &["containerd"])
        .and_then(|c| c.get("default_runtime_name"))
        .and_then(Item::as_str)
        .unwrap_or("runc")
        .to_owned();
    let runtimes = runtimes_table(&mut doc, containerd_major);
    if default == "runc" && !runtimes.contains_key("runc") {
        let mut runc = Table::new();
        runc.insert("runtime_type", value("io.containerd.runc.v2"));
        runc.decor_mut().set_prefix(DEFAULT_RUNTIME_MARK);
        runtimes.insert("runc", Item::Table(runc));
    }
    Ok(doc.to_string())
}

/// `item.key`, without creating it (toml_edit's `Item::get_mut` inserts).
fn child<'a>(item: &'a mut Item, key: &str) -> Option<&'a mut Item> {
    item.as_table_like_mut()?.get_mut(key)
}

/// `plugins.<plugin>.<rest...>` of `doc`, without creating anything.
fn lookup<'a>(doc: &'a mut DocumentMut, plugin: &str, rest: &[&str]) -> Option<&'a mut Item> {
    let mut item = child(doc.as_table_mut().get_mut("plugins")?, plugin)?;
    for key in rest {
        item = child(item, key)?;
    }
    Some(item)
}

/// Returns `text` without the handlers `add_handlers` wrote (only where their
/// `runtime_type` is still Triage's), pruning tables left empty.
pub fn remove_handlers(path: &Path, text: &str) -> Result<String, InstallError> {
    let mut doc = parse(path, text)?;
    for major in [1, 2] {
        let plugin = cri_plugin(major);
        let Some(runtimes) =
            lookup(&mut doc, plugin, &["containerd", "runtimes"]).and_then(Item::as_table_like_mut)
        else {
            continue;
        };
        for (handler, runtime_type) in HANDLERS {
            let ours = runtimes
                .get(handler)
                .and_then(|h| h.get("runtime_type"))
                .and_then(Item::as_str)
                == Some(runtime_type);
            if ours {
                runtimes.remove(handler);
            }
        }
        let added_runc = runtimes
            .get("runc")
            .and_then(Item::as_table)
            .and_then(|t| t.decor().prefix())
            .and_then(|p| p.as_str())
            .is_some_and(|p| p.contains(DEFAULT_RUNTIME_MARK.trim_end()));
        if added_runc {
            runtimes.remove("runc");
        }
        prune_empty(&mut doc, plugin);
    }
    Ok(doc.to_string())
}

fn runtimes_table(doc: &mut DocumentMut, containerd_major: u32) -> &mut Table {
    let mut table = doc.as_table_mut();
    for key in [
        "plugins",
        cri_plugin(containerd_major),
        "containerd",
        "runtimes",
    ] {
        let item = table.entry(key).or_insert_with(|| {
            let mut t = Table::new();
            t.set_implicit(true);
            Item::Table(t)
        });
        table = item
            .as_table_mut()
            .expect("a table we created or found as one");
    }
    table
}

/// Removes `plugins.<plugin>.containerd.runtimes`, `.containerd`, `.<plugin>` and
/// `plugins` where each became empty, innermost first.
fn prune_empty(doc: &mut DocumentMut, plugin: &str) {
    fn is_empty(item: Option<&Item>) -> bool {
        item.and_then(Item::as_table_like)
            .is_some_and(|t| t.is_empty())
    }
    if let Some(containerd) = lookup(doc, plugin, &["containerd"]).and_then(Item::as_table_like_mut)
    {
        if is_empty(containerd.get("runtimes")) {
            containerd.remove("runtimes");
        }
    }
    if let Some(cri) = lookup(doc, plugin, &[]).and_then(Item::as_table_like_mut) {
        if is_empty(cri.get("containerd")) {
            cri.remove("containerd");
        }
    }
    if let Some(plugins) = doc
        .as_table_mut()
        .get_mut("plugins")
        .and_then(Item::as_table_like_mut)
    {
        if is_empty(plugins.get(plugin)) {
            plugins.remove(plugin);
        }
    }
    if is_empty(doc.get("plugins")) {
        doc.remove("plugins");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PATH: &str = "/etc/containerd/config.toml";

    fn add(text: &str, major: u32) -> String {
        add_handlers(Path::new(PATH), text, major).unwrap()
    }

    #[test]
    fn fresh_config_for_each_generation() {
        let v1 = add("", 1);
        assert!(v1.starts_with("version = 2\n"), "{v1}");
        assert!(v1.contains("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.triage]\nruntime_type = \"io.containerd.triage.v1\"\npod_annotations = [\"triage.io/*\", \"module.wasm.image/*\", \"run.oci.handler\"]"), "{v1}");
        assert!(v1.contains("[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wasmedge]\nruntime_type = \"io.containerd.wasmedge.v1\""), "{v1}");
        assert!(
            v1.contains("runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\""),
            "{v1}"
        );
        let v2 = add("", 2);
        assert!(v2.starts_with("version = 3\n"), "{v2}");
        assert!(
            v2.contains("[plugins.\"io.containerd.cri.v1.runtime\".containerd.runtimes.triage]"),
            "{v2}"
        );
    }

    #[test]
    fn existing_config_is_edited_not_rewritten_and_edit_is_idempotent() {
        let existing = "# node config, keep me\nversion = 2\nroot = \"/var/lib/containerd\"\n\n\
            [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\n  runtime_type = \"io.containerd.runc.v2\"\n  \
            [plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc.options]\n    SystemdCgroup = true\n";
        let once = add(existing, 1);
        assert!(
            once.starts_with(existing),
            "user content must stay first and intact:\n{once}"
        );
        assert!(once.contains("runtimes.triage]"));
        assert_eq!(add(&once, 1), once, "a second install changes nothing");
        let removed = remove_handlers(Path::new(PATH), &once).unwrap();
        assert_eq!(removed, existing);
    }

    #[test]
    fn a_listed_or_other_default_runtime_is_left_alone() {
        let own_runc = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.runc]\nruntime_type = \"io.containerd.runc.v2\"\n";
        let once = add(own_runc, 1);
        assert!(!once.contains("added by triage-install"), "{once}");
        assert_eq!(remove_handlers(Path::new(PATH), &once).unwrap(), own_runc);
        let crun = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd]\ndefault_runtime_name = \"crun\"\n";
        assert!(!add(crun, 1).contains("runtimes.runc]"));
    }

    #[test]
    fn uninstall_keeps_foreign_handlers_of_the_same_name() {
        let text = "version = 2\n[plugins.\"io.containerd.grpc.v1.cri\".containerd.runtimes.wasmedge]\nruntime_type = \"io.containerd.wasmedge.v1.other\"\n";
        assert_eq!(remove_handlers(Path::new(PATH), text).unwrap(), text);
    }

    #[test]
    fn fresh_install_then_uninstall_leaves_only_the_version() {
        let removed = remove_handlers(Path::new(PATH), &add("", 2)).unwrap();
        assert_eq!(removed, "version = 3\n");
    }

    #[test]
    fn version_1_and_broken_configs_are_refused_with_the_path() {
        let err = add_handlers(Path::new(PATH), "[plugins.cri]\nx = 1\n", 1).unwrap_err();
        assert!(err.to_string().starts_with(PATH), "{err}");
        assert!(
            err.to_string().contains("containerd config migrate"),
            "{err}"
        );
        let err = add_handlers(Path::new(PATH), "version = [", 1).unwrap_err();
        assert!(err.to_string().contains("not valid TOML"), "{err}");
    }
}
