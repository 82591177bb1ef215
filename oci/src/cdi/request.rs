//! Reads the `triage.io/gpu` annotation: which CDI devices a container asks for.

use std::collections::HashMap;

use super::error::CdiError;
use super::name::{check_device_name, DeviceKind, QualifiedName};
use crate::annotations::is_cri_sandbox;

/// The annotation that asks for CDI devices (`nvidia.com/gpu=0`, `all`, ...).
pub const GPU_ANNOTATION: &str = "triage.io/gpu";

/// The kind a bare device name in [`GPU_ANNOTATION`] belongs to (`0` = `nvidia.com/gpu=0`).
pub const DEFAULT_GPU_KIND: &str = "nvidia.com/gpu";

/// The prefix of the annotations containerd's CRI plugin leaves for the CDI devices it
/// injected itself (`cdi.k8s.io/<source>: vendor.com/class=name`).
pub const CRI_ANNOTATION_PREFIX: &str = "cdi.k8s.io/";

/// What the annotation may hold, for error messages.
const EXPECTED: &str = "a comma-separated list of CDI device names such as nvidia.com/gpu=0, \
                        nvidia.com/gpu=all, or a bare nvidia.com/gpu device name such as 0 or all";

/// The devices the container asks for through [`GPU_ANNOTATION`], in the order given
/// and without repeats; empty when the annotation is absent, and for a CRI pod's
/// sandbox (pause) container, which gets the pod's annotations but runs no workload.
pub fn requested_devices(
    id: &str,
    annotations: &HashMap<String, String>,
) -> Result<Vec<QualifiedName>, CdiError> {
    if is_cri_sandbox(annotations) {
        return Ok(Vec::new());
    }
    match annotations.get(GPU_ANNOTATION) {
        None => Ok(Vec::new()),
        Some(value) => parse_device_request(id, value),
    }
}

/// Parses the value of [`GPU_ANNOTATION`]: comma-separated qualified names
/// (`vendor.com/class=name`), or bare names of the [`DEFAULT_GPU_KIND`] (`0`, `all`).
pub fn parse_device_request(id: &str, value: &str) -> Result<Vec<QualifiedName>, CdiError> {
    let invalid = |reason: String| CdiError::InvalidRequest {
        id: id.to_owned(),
        key: GPU_ANNOTATION,
        value: value.to_owned(),
        reason,
        expected: EXPECTED,
    };
    if value.trim().is_empty() {
        return Err(invalid("it names no device".to_owned()));
    }
    let mut devices: Vec<QualifiedName> = Vec::new();
    for entry in value.split(',').map(str::trim) {
        let device = if entry.is_empty() {
            return Err(invalid("it has an empty entry".to_owned()));
        } else if entry.contains('=') {
            QualifiedName::parse(entry).map_err(invalid)?
        } else if entry.contains('/') {
            return Err(invalid(format!(
                "{} names a kind but no device (add =name or =all)",
                crate::error::excerpt(entry)
            )));
        } else {
            check_device_name(entry).map_err(invalid)?;
            QualifiedName {
                kind: DeviceKind::parse(DEFAULT_GPU_KIND).map_err(invalid)?,
                name: entry.to_owned(),
            }
        };
        if !devices.contains(&device) {
            devices.push(device);
        }
    }
    Ok(devices)
}

/// Refuses a device the node's `[cdi] annotation_devices` does not allow: each entry is
/// `vendor.com/class=name` (that device) or `vendor.com/class=*` (any device of the
/// kind, `all` included). The default allows none: a pod spec alone grants no device.
pub fn check_consent(
    id: &str,
    requested: &[QualifiedName],
    allowed: &[String],
) -> Result<(), CdiError> {
    let permits = |device: &QualifiedName| {
        allowed.iter().any(|pattern| match pattern.split_once('=') {
            Some((kind, "*")) => kind == device.kind.to_string(),
            Some(_) => *pattern == device.to_string(),
            None => false,
        })
    };
    match requested.iter().find(|device| !permits(device)) {
        None => Ok(()),
        Some(device) => Err(CdiError::NotAllowed {
            id: id.to_owned(),
            key: GPU_ANNOTATION,
            device: device.to_string(),
            allowed: if allowed.is_empty() {
                "none".to_owned()
            } else {
                allowed.join(", ")
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_devices_the_node_allows_may_be_asked_for() {
        let asked =
            parse_device_request("c1", "example.com/device=zero,nvidia.com/gpu=all").unwrap();
        let err = check_consent("c1", &asked, &[]).unwrap_err().to_string();
        assert!(
            err.starts_with("container c1: CDI device example.com/device=zero may not be requested by annotation triage.io/gpu on this node (the node profile's [cdi] annotation_devices allows none)"),
            "{err}"
        );
        let some = vec!["example.com/device=zero".to_owned()];
        let err = check_consent("c1", &asked, &some).unwrap_err().to_string();
        assert!(
            err.contains("CDI device nvidia.com/gpu=all may not"),
            "{err}"
        );
        let kinds = vec![
            "example.com/device=zero".to_owned(),
            "nvidia.com/gpu=*".to_owned(),
        ];
        assert!(check_consent("c1", &asked, &kinds).is_ok());
    }

    fn names(value: &str) -> Vec<String> {
        parse_device_request("c", value)
            .unwrap()
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn qualified_and_short_forms() {
        assert_eq!(names("nvidia.com/gpu=0"), ["nvidia.com/gpu=0"]);
        assert_eq!(names("all"), ["nvidia.com/gpu=all"]);
        assert_eq!(names("0"), ["nvidia.com/gpu=0"]);
        assert_eq!(
            names(" 1, example.com/device=zero ,1,nvidia.com/gpu=1"),
            ["nvidia.com/gpu=1", "example.com/device=zero"]
        );
    }

    #[test]
    fn absent_annotation_and_pod_sandboxes_ask_for_nothing() {
        assert!(requested_devices("c", &HashMap::new()).unwrap().is_empty());
        let mut annotations = HashMap::from([(GPU_ANNOTATION.to_owned(), "all".to_owned())]);
        assert_eq!(requested_devices("c", &annotations).unwrap().len(), 1);
        // A pod's pause container carries the pod's annotations but gets no device.
        annotations.insert(
            crate::annotations::CRI_CONTAINER_TYPE.to_owned(),
            "sandbox".to_owned(),
        );
        assert!(requested_devices("pause", &annotations).unwrap().is_empty());
    }

    #[test]
    fn bad_values_name_the_container_and_the_value() {
        let err = |value: &str| {
            parse_device_request("gpu-job", value)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            err("nvidia.com/gpu"),
            format!(
                "container gpu-job: annotation triage.io/gpu=\"nvidia.com/gpu\" is not valid: \
                 \"nvidia.com/gpu\" names a kind but no device (add =name or =all) (expected {EXPECTED})"
            )
        );
        assert!(err("").contains("it names no device"), "{}", err(""));
        assert!(err("0,,1").contains("it has an empty entry"));
        assert!(
            err("nvidia.com/gpu=0;1").contains("device name \"0;1\" must not contain ';'"),
            "{}",
            err("nvidia.com/gpu=0;1")
        );
        assert!(err("gpu 0").contains("container gpu-job: annotation triage.io/gpu=\"gpu 0\""));
    }
}
