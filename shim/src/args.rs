//! The command line containerd passes to a v2 shim (Go `flag` syntax).

use anyhow::{bail, Context};

/// Flags and action of one shim invocation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Flags {
    /// containerd namespace.
    pub namespace: String,
    /// Task id.
    pub id: String,
    /// containerd's gRPC socket.
    pub address: String,
    /// The binary containerd wants events published with (unused: we use ttrpc).
    pub publish_binary: String,
    /// The shim's own socket (daemon mode).
    pub socket: String,
    /// Bundle directory (`delete` action).
    pub bundle: String,
    /// Debug logging.
    pub debug: bool,
    /// `start`, `delete`, or empty for the daemon.
    pub action: String,
}

impl Flags {
    /// Parses `-name value`, `-name=value`, `--name value` and the trailing action.
    pub fn parse(args: &[String]) -> anyhow::Result<Self> {
        let mut flags = Flags::default();
        let mut iter = args.iter();
        while let Some(arg) = iter.next() {
            let Some(flag) = arg.strip_prefix("--").or_else(|| arg.strip_prefix('-')) else {
                if !flags.action.is_empty() {
                    bail!(
                        "unexpected argument {arg:?} after action {:?}",
                        flags.action
                    );
                }
                flags.action = arg.clone();
                continue;
            };
            let (name, inline) = match flag.split_once('=') {
                Some((n, v)) => (n, Some(v.to_owned())),
                None => (flag, None),
            };
            if name == "debug" {
                flags.debug = inline.map(|v| v != "false").unwrap_or(true);
                continue;
            }
            let value = match inline {
                Some(v) => v,
                None => iter
                    .next()
                    .cloned()
                    .with_context(|| format!("flag -{name} needs a value"))?,
            };
            match name {
                "namespace" => flags.namespace = value,
                "id" => flags.id = value,
                "address" => flags.address = value,
                "publish-binary" => flags.publish_binary = value,
                "socket" => flags.socket = value,
                "bundle" => flags.bundle = value,
                // Flags of newer containerd versions that this shim does not need.
                _ => {}
            }
        }
        if flags.namespace.is_empty() {
            bail!("flag -namespace is required");
        }
        Ok(flags)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn start_invocation() {
        let flags = Flags::parse(&args(&[
            "-namespace",
            "default",
            "-address",
            "/run/c.sock",
            "-publish-binary",
            "/usr/bin/containerd",
            "-id",
            "c1",
            "-debug",
            "start",
        ]))
        .unwrap();
        assert_eq!(flags.namespace, "default");
        assert_eq!(flags.id, "c1");
        assert_eq!(flags.address, "/run/c.sock");
        assert!(flags.debug);
        assert_eq!(flags.action, "start");
    }

    #[test]
    fn equals_form_and_daemon_mode() {
        let flags = Flags::parse(&args(&[
            "--namespace=k8s.io",
            "-id=x",
            "-socket",
            "unix:///run/s",
            "-debug=false",
        ]))
        .unwrap();
        assert_eq!(flags.namespace, "k8s.io");
        assert_eq!(flags.socket, "unix:///run/s");
        assert!(!flags.debug);
        assert_eq!(flags.action, "");
    }

    #[test]
    fn missing_namespace_and_value() {
        assert!(Flags::parse(&args(&["start"])).is_err());
        let err = Flags::parse(&args(&["-namespace"])).unwrap_err();
        assert!(err.to_string().contains("-namespace needs a value"));
    }
}
