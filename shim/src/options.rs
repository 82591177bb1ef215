//! Decodes the runtime handler's options that containerd sends with Create
//! (`runtimeoptions.v1.Options`: `type_url`, `config_path`, `config_body`) and turns them
//! into checked [`RuntimeOptions`].

use containerd_shim_protos::protobuf::well_known_types::any::Any;
use containerd_shim_protos::protobuf::CodedInputStream;
use triage_oci::{PlanError, RuntimeOptions};

/// The message type containerd's CRI uses for runtimes other than runc.
const RUNTIME_OPTIONS_TYPE: &str = "runtimeoptions.v1.Options";

/// The fields of `runtimeoptions.v1.Options`.
#[derive(Debug, Default, PartialEq, Eq)]
struct OptionsMessage {
    config_path: String,
    config_body: String,
}

fn decode(bytes: &[u8]) -> Result<OptionsMessage, String> {
    let mut input = CodedInputStream::from_bytes(bytes);
    let mut message = OptionsMessage::default();
    while let Some(tag) = input.read_raw_tag_or_eof().map_err(|e| e.to_string())? {
        let (field, wire_type) = (tag >> 3, tag & 7);
        match (field, wire_type) {
            (1, 2) => {
                input.read_string().map_err(|e| e.to_string())?;
            }
            (2, 2) => message.config_path = input.read_string().map_err(|e| e.to_string())?,
            (3, 2) => message.config_body = input.read_string().map_err(|e| e.to_string())?,
            (_, wire_type) => {
                let wire_type = containerd_shim_protos::protobuf::rt::WireType::new(wire_type)
                    .ok_or_else(|| format!("bad wire type {wire_type}"))?;
                input.skip_field(wire_type).map_err(|e| e.to_string())?;
            }
        }
    }
    Ok(message)
}

/// The checked options of container `id`; none sent means the defaults.
pub fn runtime_options(id: &str, options: Option<&Any>) -> Result<RuntimeOptions, PlanError> {
    let Some(any) = options.filter(|a| !a.type_url.is_empty()) else {
        return Ok(RuntimeOptions::default());
    };
    let refuse = |reason: String| PlanError::RuntimeOptions {
        id: id.to_owned(),
        source_name: any.type_url.clone(),
        reason,
    };
    if !any.type_url.ends_with(RUNTIME_OPTIONS_TYPE) {
        return Err(refuse(format!(
            "options of type {:?} are not for Triage (expected {RUNTIME_OPTIONS_TYPE})",
            any.type_url
        )));
    }
    let message = decode(&any.value).map_err(|e| refuse(format!("undecodable: {e}")))?;
    if !message.config_body.is_empty() {
        return RuntimeOptions::from_toml(
            id,
            "the handler's options (config_body)",
            &message.config_body,
        );
    }
    if !message.config_path.is_empty() {
        let text = std::fs::read_to_string(&message.config_path).map_err(|e| {
            PlanError::RuntimeOptions {
                id: id.to_owned(),
                source_name: message.config_path.clone(),
                reason: format!("cannot read the options file: {e}"),
            }
        })?;
        return RuntimeOptions::from_toml(id, &message.config_path, &text);
    }
    Ok(RuntimeOptions::default())
}

#[cfg(test)]
mod tests {
    use super::*;
    use containerd_shim_protos::protobuf::CodedOutputStream;

    fn any(type_url: &str, path: &str, body: &str) -> Any {
        let mut value = Vec::new();
        {
            let mut out = CodedOutputStream::vec(&mut value);
            out.write_string(1, "io.containerd.triage.v1.Options")
                .unwrap();
            if !path.is_empty() {
                out.write_string(2, path).unwrap();
            }
            if !body.is_empty() {
                out.write_string(3, body).unwrap();
            }
            out.flush().unwrap();
        }
        let mut any = Any::new();
        any.type_url = type_url.to_owned();
        any.value = value;
        any
    }

    #[test]
    fn body_is_checked() {
        let ok = any("runtimeoptions.v1.Options", "", "SystemdCgroup = false");
        assert_eq!(
            runtime_options("c", Some(&ok)).unwrap(),
            RuntimeOptions::default()
        );
        let systemd = any("runtimeoptions.v1.Options", "", "SystemdCgroup = true");
        let err = runtime_options("c", Some(&systemd)).unwrap_err();
        assert!(
            err.to_string()
                .contains("SystemdCgroup = true is not supported"),
            "{err}"
        );
    }

    #[test]
    fn config_path_is_read() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("options.toml");
        std::fs::write(&file, "BinaryName = \"x\"\n").unwrap();
        let with_path = any("runtimeoptions.v1.Options", &file.display().to_string(), "");
        assert_eq!(
            runtime_options("c", Some(&with_path))
                .unwrap()
                .binary_name
                .as_deref(),
            Some("x")
        );
        let missing = any("runtimeoptions.v1.Options", "/nonexistent/options.toml", "");
        let err = runtime_options("c", Some(&missing)).unwrap_err();
        assert!(
            err.to_string()
                .contains("/nonexistent/options.toml: cannot read"),
            "{err}"
        );
    }

    #[test]
    fn none_and_foreign_types() {
        assert_eq!(
            runtime_options("c", None).unwrap(),
            RuntimeOptions::default()
        );
        let runc = any("containerd.runc.v1.Options", "", "");
        assert!(runtime_options("c", Some(&runc))
            .unwrap_err()
            .to_string()
            .contains("not for Triage"));
    }
}
