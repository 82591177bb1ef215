//! Egress grants: the destinations a Wasm guest may reach (`triage.io/egress`, the node profile's `[network] egress`); none means none.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// What a Wasm guest may reach besides answering the connections it accepts: in the
/// plan, the annotation's grants followed by the node profile's. Empty denies all egress
/// (connections, datagrams, name lookups and outgoing `wasi:http` requests).
pub type EgressGrants = Vec<EgressGrant>;

/// One destination a Wasm guest may reach, written `host:port`, `CIDR` or `CIDR:port`
/// (an IPv6 address or network with a port in brackets: `[fd00::/8]:443`). A bare address
/// is a network of one; a name must carry a port and is resolved by the node, not the guest.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct EgressGrant {
    /// The addresses or the name.
    pub host: GrantedHost,
    /// The one port allowed, or `None` for every port (networks only).
    pub port: Option<u16>,
}

/// Where a grant points.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GrantedHost {
    /// A network (an address is a network of one).
    Net(IpNet),
    /// A DNS name, lower case, without a trailing dot.
    Name(String),
}

/// The forms a grant may take, for error messages.
pub const GRANT_FORMS: &str =
    "host:port, CIDR or CIDR:port (e.g. pacs.hospital.local:443, 10.20.0.0/16, 10.20.0.5:5432, [fd00::/8]:443)";

impl EgressGrant {
    /// Whether this grant lets a guest reach `addr` (a network grant; a name grant matches
    /// the addresses the node resolved for it, which [`Self::allows_resolved`] checks).
    pub fn allows(&self, addr: SocketAddr) -> bool {
        match &self.host {
            GrantedHost::Net(net) => {
                net.contains(&addr.ip().to_canonical())
                    && self.port.is_none_or(|p| p == addr.port())
            }
            GrantedHost::Name(_) => false,
        }
    }

    /// Whether this grant names `name` (any case, a trailing dot ignored) with `port`.
    pub fn names(&self, name: &str, port: u16) -> bool {
        match &self.host {
            GrantedHost::Name(granted) => {
                granted.eq_ignore_ascii_case(name.trim_end_matches('.')) && self.port == Some(port)
            }
            GrantedHost::Net(_) => false,
        }
    }

    /// Whether this name grant lets a guest reach `addr`, one of `resolved` (what the
    /// node resolved the name to).
    pub fn allows_resolved(&self, resolved: &[IpAddr], addr: SocketAddr) -> bool {
        matches!(self.host, GrantedHost::Name(_))
            && self.port == Some(addr.port())
            && resolved.contains(&addr.ip().to_canonical())
    }
}

impl FromStr for EgressGrant {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let text = text.trim();
        let bad = |why: &str| {
            format!(
                "{} {why} (expected {GRANT_FORMS})",
                crate::error::excerpt(text)
            )
        };
        // `[v6 or v6/len]:port` or `[v6]`.
        if let Some(rest) = text.strip_prefix('[') {
            let (inside, after) = rest
                .split_once(']')
                .ok_or_else(|| bad("has no closing ]"))?;
            let port = match after {
                "" => None,
                _ => Some(
                    port_of(
                        after
                            .strip_prefix(':')
                            .ok_or_else(|| bad("has text after ]"))?,
                    )
                    .ok_or_else(|| bad("has no valid port"))?,
                ),
            };
            let net = net_of(inside)
                .filter(|n| matches!(n, IpNet::V6(_)))
                .ok_or_else(|| bad("is no IPv6 address or network"))?;
            return Ok(Self {
                host: GrantedHost::Net(net),
                port,
            });
        }
        if let Some(net) = net_of(text) {
            return Ok(Self {
                host: GrantedHost::Net(net),
                port: None,
            });
        }
        let (host, port) = text.rsplit_once(':').ok_or_else(|| bad("names no port"))?;
        let port = port_of(port).ok_or_else(|| bad("has no valid port"))?;
        if let Some(net) = net_of(host).filter(|n| matches!(n, IpNet::V4(_))) {
            return Ok(Self {
                host: GrantedHost::Net(net),
                port: Some(port),
            });
        }
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        if !is_dns_name(&name) {
            return Err(bad("is neither an address, a network nor a DNS name"));
        }
        Ok(Self {
            host: GrantedHost::Name(name),
            port: Some(port),
        })
    }
}

impl TryFrom<String> for EgressGrant {
    type Error = String;
    fn try_from(text: String) -> Result<Self, String> {
        text.parse()
    }
}

impl From<EgressGrant> for String {
    fn from(grant: EgressGrant) -> String {
        grant.to_string()
    }
}

impl fmt::Display for EgressGrant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let one = |net: &IpNet| net.prefix_len() == net.max_prefix_len();
        match (&self.host, self.port) {
            (GrantedHost::Name(name), Some(port)) => write!(f, "{name}:{port}"),
            (GrantedHost::Name(name), None) => f.write_str(name),
            (GrantedHost::Net(net), None) if one(net) => write!(f, "{}", net.addr()),
            (GrantedHost::Net(net), None) => write!(f, "{net}"),
            (GrantedHost::Net(IpNet::V4(net)), Some(port)) if one(&IpNet::V4(*net)) => {
                write!(f, "{}:{port}", net.addr())
            }
            (GrantedHost::Net(IpNet::V4(net)), Some(port)) => write!(f, "{net}:{port}"),
            (GrantedHost::Net(net), Some(port)) if one(net) => write!(f, "[{}]:{port}", net.addr()),
            (GrantedHost::Net(net), Some(port)) => write!(f, "[{net}]:{port}"),
        }
    }
}

/// The most grants one container's annotation may list: each name among them is resolved
/// by the node at Create.
pub const MAX_GRANTS: usize = 64;

/// A comma-separated list of grants, each once, in order; an empty list, or one of more
/// than [`MAX_GRANTS`], is an error.
pub fn parse_grants(value: &str) -> Result<EgressGrants, String> {
    let mut grants = EgressGrants::new();
    if value.split(',').count() > MAX_GRANTS {
        return Err(format!("more than {MAX_GRANTS} grants"));
    }
    for part in value.split(',').map(str::trim) {
        if part.is_empty() {
            return Err(format!("an empty entry (expected {GRANT_FORMS})"));
        }
        let grant: EgressGrant = part.parse()?;
        if !grants.contains(&grant) {
            grants.push(grant);
        }
    }
    Ok(grants)
}

/// `10.0.0.0/8` or `10.0.0.5` (a network of one), without host bits set.
fn net_of(text: &str) -> Option<IpNet> {
    if let Ok(addr) = text.parse::<IpAddr>() {
        return Some(IpNet::from(addr));
    }
    let net: IpNet = text.parse().ok()?;
    // `10.0.0.5/8` is more likely a mistake than a wish for all of 10/8.
    (net.trunc() == net).then_some(net)
}

fn port_of(text: &str) -> Option<u16> {
    text.parse().ok().filter(|&p| p != 0)
}

/// Letters, digits and hyphens in dot-separated labels of 1–63, 253 at most, not all digits.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
        && !name.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(text: &str) -> EgressGrant {
        text.parse().unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn each_written_form_parses_and_prints_back() {
        for text in [
            "pacs.hospital.local:443",
            "10.20.0.0/16",
            "10.20.0.0/16:5432",
            "10.20.0.5",
            "10.20.0.5:5432",
            "fd00::/8",
            "[fd00::/8]:443",
            "[fd00::5]:443",
            "fd00::5",
        ] {
            assert_eq!(grant(text).to_string(), text);
        }
        assert_eq!(
            grant(" PACS.Hospital.Local.:443 ").to_string(),
            "pacs.hospital.local:443"
        );
    }

    #[test]
    fn what_is_no_grant_is_refused_with_the_forms() {
        for text in [
            "pacs.hospital.local",
            "10.0.0.5/8",
            "10.0.0.0/33",
            "host:0",
            "host:70000",
            "[10.0.0.1]:80",
            "[fd00::1:80",
            "bad_name:80",
            "-x.example:80",
            "*:443",
            "",
        ] {
            let err = text.parse::<EgressGrant>().expect_err(text);
            assert!(
                err.contains("expected host:port, CIDR or CIDR:port"),
                "{err}"
            );
        }
    }

    #[test]
    fn a_network_allows_its_addresses_on_its_port() {
        let net = grant("10.20.0.0/16:5432");
        assert!(net.allows("10.20.3.4:5432".parse().unwrap()));
        assert!(!net.allows("10.20.3.4:5433".parse().unwrap()));
        assert!(!net.allows("10.21.0.1:5432".parse().unwrap()));
        let any_port = grant("192.168.1.10");
        assert!(any_port.allows("192.168.1.10:1".parse().unwrap()));
        assert!(!any_port.allows("192.168.1.11:1".parse().unwrap()));
        // An IPv4 peer seen through an IPv6 socket is the same peer.
        assert!(any_port.allows("[::ffff:192.168.1.10]:80".parse().unwrap()));
        assert!(grant("[fd00::/8]:443").allows("[fd12::1]:443".parse().unwrap()));
    }

    #[test]
    fn a_name_allows_only_itself_on_its_port_and_what_it_resolved_to() {
        let name = grant("pacs.hospital.local:443");
        assert!(name.names("PACS.hospital.local.", 443));
        assert!(!name.names("pacs.hospital.local", 80));
        assert!(!name.names("evil.hospital.local", 443));
        assert!(!name.allows("10.0.0.1:443".parse().unwrap()));
        let resolved = ["10.0.0.1".parse().unwrap()];
        assert!(name.allows_resolved(&resolved, "10.0.0.1:443".parse().unwrap()));
        assert!(!name.allows_resolved(&resolved, "10.0.0.1:80".parse().unwrap()));
        assert!(!name.allows_resolved(&resolved, "10.0.0.2:443".parse().unwrap()));
    }

    #[test]
    fn a_list_keeps_order_drops_repeats_and_refuses_empty_entries() {
        let list = parse_grants("10.0.0.1:80, pacs.local:443,10.0.0.1:80").unwrap();
        let texts: Vec<String> = list.iter().map(ToString::to_string).collect();
        assert_eq!(texts, ["10.0.0.1:80", "pacs.local:443"]);
        assert!(parse_grants("10.0.0.1:80,,pacs.local:443").is_err());
        assert!(parse_grants("").is_err());
        let many: Vec<String> = (0..=MAX_GRANTS)
            .map(|n| format!("h{n}.local:443"))
            .collect();
        assert_eq!(
            parse_grants(&many.join(",")).unwrap_err(),
            "more than 64 grants"
        );
    }

    #[test]
    fn a_grant_travels_in_the_plan_as_its_text() {
        let json = serde_json::to_string(&grant("[fd00::/8]:443")).unwrap();
        assert_eq!(json, "\"[fd00::/8]:443\"");
        let back: EgressGrant = serde_json::from_str(&json).unwrap();
        assert_eq!(back, grant("[fd00::/8]:443"));
        assert!(serde_json::from_str::<EgressGrant>("\"nowhere\"").is_err());
    }
}
