//! CDI names: a device kind (`vendor.com/class`) and a qualified device name
//! (`vendor.com/class=name`), checked against the CDI spec's character rules.

use std::fmt;

/// A device kind: the vendor (a domain such as `nvidia.com`) and the device class.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DeviceKind {
    /// The vendor, a domain-like name (`nvidia.com`, `example.com`).
    pub vendor: String,
    /// The device class (`gpu`, `device`).
    pub class: String,
}

impl DeviceKind {
    /// Parses `vendor.com/class`; the error says which rule the text breaks.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (vendor, class) = text.split_once('/').ok_or_else(|| {
            format!(
                "kind {} is not of the form vendor.com/class",
                crate::error::excerpt(text)
            )
        })?;
        check_vendor(vendor)?;
        check_class(class)?;
        Ok(Self {
            vendor: vendor.to_owned(),
            class: class.to_owned(),
        })
    }
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.vendor, self.class)
    }
}

/// A fully qualified CDI device name: `vendor.com/class=name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QualifiedName {
    /// The device's kind.
    pub kind: DeviceKind,
    /// The device's name within its kind (`0`, `all`, a UUID, ...).
    pub name: String,
}

impl QualifiedName {
    /// Parses `vendor.com/class=name`; the error says which rule the text breaks.
    pub fn parse(text: &str) -> Result<Self, String> {
        let (kind, name) = text.split_once('=').ok_or_else(|| {
            format!(
                "{} is not of the form vendor.com/class=name",
                crate::error::excerpt(text)
            )
        })?;
        let kind = DeviceKind::parse(kind)?;
        check_device_name(name)?;
        Ok(Self {
            kind,
            name: name.to_owned(),
        })
    }

    /// Whether this asks for every device of its kind (`vendor.com/class=all`).
    pub fn is_all(&self) -> bool {
        self.name == ALL_DEVICES
    }
}

impl fmt::Display for QualifiedName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.kind, self.name)
    }
}

/// The device name that asks for every device of a kind.
pub const ALL_DEVICES: &str = "all";

/// A vendor: starts with a letter, ends with a letter or digit; letters, digits, `-`,
/// `_` and `.` between.
pub fn check_vendor(vendor: &str) -> Result<(), String> {
    check_segment(
        "vendor",
        vendor,
        char::is_ascii_alphabetic,
        &['-', '_', '.'],
    )
}

/// A class: starts with a letter, ends with a letter or digit; letters, digits, `-`
/// and `_` between.
pub fn check_class(class: &str) -> Result<(), String> {
    check_segment("class", class, char::is_ascii_alphabetic, &['-', '_'])
}

/// A device name: starts and ends with a letter or digit; letters, digits, `-`, `_`,
/// `.` and `:` between.
pub fn check_device_name(name: &str) -> Result<(), String> {
    check_segment(
        "device name",
        name,
        char::is_ascii_alphanumeric,
        &['-', '_', '.', ':'],
    )
}

fn check_segment(
    what: &str,
    text: &str,
    first_ok: fn(&char) -> bool,
    extra: &[char],
) -> Result<(), String> {
    let mut chars = text.chars();
    let Some(first) = chars.next() else {
        return Err(format!("empty {what}"));
    };
    if !first_ok(&first) {
        return Err(format!(
            "{what} {} must not start with {first:?}",
            crate::error::excerpt(text)
        ));
    }
    if let Some(bad) = text
        .chars()
        .find(|c| !c.is_ascii_alphanumeric() && !extra.contains(c))
    {
        return Err(format!(
            "{what} {} must not contain {bad:?}",
            crate::error::excerpt(text)
        ));
    }
    let last = text.chars().next_back().unwrap_or(first);
    if !last.is_ascii_alphanumeric() {
        return Err(format!(
            "{what} {} must end with a letter or digit",
            crate::error::excerpt(text)
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_parse_and_print() {
        let name = QualifiedName::parse("nvidia.com/gpu=0").unwrap();
        assert_eq!(name.kind.vendor, "nvidia.com");
        assert_eq!(name.kind.class, "gpu");
        assert_eq!(name.name, "0");
        assert_eq!(name.to_string(), "nvidia.com/gpu=0");
        assert!(!name.is_all());
        assert!(QualifiedName::parse("nvidia.com/gpu=all").unwrap().is_all());
        let mig = QualifiedName::parse("nvidia.com/gpu=MIG-4a2e:1.0_x").unwrap();
        assert_eq!(mig.name, "MIG-4a2e:1.0_x");
    }

    #[test]
    fn names_breaking_the_rules_say_which() {
        let err = |text: &str| QualifiedName::parse(text).unwrap_err();
        assert_eq!(
            err("nvidia.com/gpu"),
            "\"nvidia.com/gpu\" is not of the form vendor.com/class=name"
        );
        assert_eq!(
            err("gpu=0"),
            "kind \"gpu\" is not of the form vendor.com/class"
        );
        assert_eq!(
            err("1vendor.com/gpu=0"),
            "vendor \"1vendor.com\" must not start with '1'"
        );
        assert_eq!(
            err("nvidia.com/g.pu=0"),
            "class \"g.pu\" must not contain '.'"
        );
        assert_eq!(
            err("nvidia.com/gpu=-0"),
            "device name \"-0\" must not start with '-'"
        );
        assert_eq!(
            err("nvidia.com/gpu=0-"),
            "device name \"0-\" must end with a letter or digit"
        );
        assert_eq!(err("nvidia.com/gpu="), "empty device name");
        assert_eq!(
            err("nvidia.com/gpu/x=0"),
            "class \"gpu/x\" must not contain '/'"
        );
    }
}
