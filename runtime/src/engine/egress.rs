//! A Wasm container's egress as its host side checks it: the plan's grants, granted names resolved once by the node at Create, each refused destination logged once.

use std::collections::HashSet;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::sync::{Arc, Mutex};

use triage_oci::{EgressGrant, EgressGrants, GrantedHost};

/// How many refused destinations a container's log names: a guest trying every port or
/// name would otherwise fill the node's log (and this process's memory).
pub const REFUSALS_LOGGED: usize = 64;

/// What one container's guest may reach, shared by all its instances.
#[derive(Debug)]
pub struct Egress {
    id: String,
    grants: EgressGrants,
    /// For each grant (same index), the addresses the node resolved its name to at
    /// Create; empty for a network grant or a name that did not resolve.
    resolved: Vec<Vec<IpAddr>>,
    /// The destinations refused so far, each logged once.
    refused: Mutex<HashSet<String>>,
}

impl Egress {
    /// Container `id` reaches nothing.
    pub fn denied(id: &str) -> Arc<Self> {
        Self::with(id, Vec::new(), Vec::new())
    }

    /// Container `id` reaches what `grants` allow; names are resolved now, by the node's
    /// resolver (called in the create helper, which has the node's view, before the
    /// container exists), and those addresses are all a name grant allows for the
    /// container's life: the guest never drives a lookup, and a name cannot be re-pointed
    /// under it. A name that does not resolve grants nothing (logged).
    pub fn resolve(id: &str, grants: &EgressGrants) -> Arc<Self> {
        let resolved = grants
            .iter()
            .map(|grant| match (&grant.host, grant.port) {
                (GrantedHost::Name(name), Some(port)) => {
                    match (name.as_str(), port).to_socket_addrs() {
                        Ok(addrs) => {
                            let mut ips: Vec<IpAddr> =
                                addrs.map(|a| a.ip().to_canonical()).collect();
                            ips.dedup();
                            tracing::info!(container = %id, "egress grant {grant}: {ips:?}");
                            ips
                        }
                        Err(e) => {
                            tracing::warn!(container = %id, "egress grant {grant} grants nothing: the node cannot resolve {name}: {e}");
                            Vec::new()
                        }
                    }
                }
                _ => Vec::new(),
            })
            .collect();
        Self::with(id, grants.clone(), resolved)
    }

    fn with(id: &str, grants: EgressGrants, resolved: Vec<Vec<IpAddr>>) -> Arc<Self> {
        Arc::new(Self {
            id: id.to_owned(),
            grants,
            resolved,
            refused: Mutex::default(),
        })
    }

    /// The container's grants.
    pub fn grants(&self) -> &[EgressGrant] {
        &self.grants
    }

    /// Whether the guest may connect or send to `addr`.
    pub fn allows(&self, addr: SocketAddr) -> bool {
        self.grants
            .iter()
            .zip(&self.resolved)
            .any(|(grant, resolved)| grant.allows(addr) || grant.allows_resolved(resolved, addr))
    }

    /// The addresses of `name` for a guest's lookup: those the node resolved for a grant
    /// of that name; `None` for a name no grant names. An address written as a name is
    /// itself.
    pub fn lookup(&self, name: &str) -> Option<Vec<IpAddr>> {
        if let Ok(ip) = name
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
        {
            return Some(vec![ip]);
        }
        let mut found: Option<Vec<IpAddr>> = None;
        for (grant, resolved) in self.grants.iter().zip(&self.resolved) {
            if grant.port.is_some_and(|port| grant.names(name, port)) {
                let ips = found.get_or_insert_with(Vec::new);
                ips.extend(
                    resolved
                        .iter()
                        .filter(|ip| !ips.contains(ip))
                        .collect::<Vec<_>>(),
                );
            }
        }
        found
    }

    /// Where an outgoing request to `host:port` may connect: the address itself where
    /// `host` is one and a grant allows it, the node's addresses for a granted name;
    /// `None` where nothing is granted.
    pub fn destinations(&self, host: &str, port: u16) -> Option<Vec<SocketAddr>> {
        let host = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = host.parse::<IpAddr>() {
            let addr = SocketAddr::new(ip, port);
            return self.allows(addr).then(|| vec![addr]);
        }
        let addrs: Vec<SocketAddr> = self
            .grants
            .iter()
            .zip(&self.resolved)
            .filter(|(grant, _)| grant.names(host, port))
            .flat_map(|(_, resolved)| resolved.iter().map(move |ip| SocketAddr::new(*ip, port)))
            .collect();
        (!addrs.is_empty()).then_some(addrs)
    }

    /// Logs that `what` (e.g. "connection to") `destination` was refused, the first time
    /// for that destination; past [`REFUSALS_LOGGED`] destinations, once that no more are.
    pub fn refused(&self, what: &str, destination: &str) {
        let mut refused = self.refused.lock().unwrap_or_else(|p| p.into_inner());
        if refused.len() > REFUSALS_LOGGED {
            return;
        }
        if refused.len() == REFUSALS_LOGGED {
            refused.insert(String::new());
            tracing::warn!(
                container = %self.id,
                "{REFUSALS_LOGGED} refused destinations logged: further refusals are not"
            );
            return;
        }
        if refused.insert(format!("{what} {destination}")) {
            tracing::warn!(
                container = %self.id,
                "{what} {destination} refused: no egress grant allows it ({})",
                self.described()
            );
        }
    }

    /// The grants, as a log line shows them.
    pub fn described(&self) -> String {
        if self.grants.is_empty() {
            format!(
                "the container has none; grant with annotation {} or the node profile's [network] egress",
                triage_oci::annotations::EGRESS
            )
        } else {
            let list: Vec<String> = self.grants.iter().map(ToString::to_string).collect();
            format!("granted: {}", list.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn egress(grants: &str) -> Arc<Egress> {
        Egress::resolve("c1", &triage_oci::egress::parse_grants(grants).unwrap())
    }

    #[test]
    fn nothing_is_reachable_without_a_grant() {
        let none = Egress::denied("c1");
        assert!(!none.allows("127.0.0.1:80".parse().unwrap()));
        assert_eq!(none.lookup("localhost"), None);
        assert_eq!(none.destinations("127.0.0.1", 80), None);
        assert_eq!(none.destinations("localhost", 80), None);
    }

    #[test]
    fn a_granted_name_reaches_what_the_node_resolved_on_its_port_only() {
        // As if the node had resolved the name to 10.1.1.7 at Create.
        let grants = triage_oci::egress::parse_grants("PACS.local:8080,10.0.0.0/8:5432").unwrap();
        let resolved = vec![vec!["10.1.1.7".parse().unwrap()], Vec::new()];
        let egress = Egress::with("c1", grants, resolved);
        assert_eq!(
            egress.lookup("pacs.LOCAL"),
            Some(vec!["10.1.1.7".parse().unwrap()])
        );
        assert!(egress.allows("10.1.1.7:8080".parse().unwrap()));
        assert!(!egress.allows("10.1.1.7:8081".parse().unwrap()));
        assert!(egress.allows("10.9.9.9:5432".parse().unwrap()));
        assert_eq!(egress.lookup("example.org"), None);
        assert_eq!(
            egress.destinations("pacs.local", 8080),
            Some(vec!["10.1.1.7:8080".parse().unwrap()])
        );
        assert_eq!(egress.destinations("pacs.local", 80), None);
        assert_eq!(
            egress.destinations("10.1.1.1", 5432),
            Some(vec!["10.1.1.1:5432".parse().unwrap()])
        );
        // An address written as a name is itself, and a lookup of it is no DNS.
        assert_eq!(
            egress.lookup("10.1.1.1"),
            Some(vec!["10.1.1.1".parse().unwrap()])
        );
    }

    #[test]
    fn refusals_are_remembered_up_to_a_bound() {
        let egress = Egress::denied("c1");
        for port in 0..10 * REFUSALS_LOGGED {
            egress.refused("connection to", &format!("10.0.0.1:{port}"));
            egress.refused("connection to", &format!("10.0.0.1:{port}"));
        }
        let remembered = egress.refused.lock().unwrap().len();
        assert_eq!(remembered, REFUSALS_LOGGED + 1);
    }

    #[test]
    fn a_name_the_node_cannot_resolve_grants_nothing() {
        let egress = egress("no-such-host.invalid:443");
        assert_eq!(egress.lookup("no-such-host.invalid"), Some(Vec::new()));
        assert_eq!(egress.destinations("no-such-host.invalid", 443), None);
    }
}
