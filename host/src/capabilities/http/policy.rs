//! The network policy for connections the host makes on a plugin's behalf: the workflow's
//! `[network] allow` list of `HOST:PORT` patterns, checked on the name *and* on every resolved
//! address. Loopback, link-local (incl. 169.254.169.254), private, shared, multicast and
//! unspecified addresses are denied unless an allow entry names the address (or its network)
//! literally: a name alone never opens them, so a DNS answer cannot point a request at them.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

/// The `[network]` table of a workflow.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Destinations the host may connect to for the plugin: `HOST:PORT`, where HOST is a name,
    /// `*.suffix`, an IP address or a CIDR network (`10.0.0.0/8`), and PORT a number or `*`.
    #[serde(default)]
    pub allow: Vec<String>,
    /// Extra PEM CA files trusted for HTTPS besides the system roots (relative to the config).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ca_files: Vec<String>,
    /// Timeout of one HTTP request, seconds (default 60).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_s: Option<u64>,
    /// Mutual TLS: the GUID of a credential whose secret is a PEM certificate chain followed
    /// by its private key. It is presented only to origins among the credential's
    /// destinations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_cert: Option<String>,
}

/// Why a destination cannot be connected to.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The policy denies the name or every address it resolves to.
    #[error("{0}")]
    Denied(String),
    /// The name has no address (DNS failed or returned nothing).
    #[error("{0}")]
    Unresolvable(String),
}

#[derive(Debug, Clone, PartialEq)]
enum HostPattern {
    Name(String),
    Suffix(String),
    Net(IpAddr, u8),
}

#[derive(Debug, Clone, PartialEq)]
struct AllowRule {
    host: HostPattern,
    port: Option<u16>,
    /// A destination the operator typed for this one connection (`airlock credential test
    /// --destination`): its name may resolve to a loopback or private address.
    operator: bool,
}

impl AllowRule {
    fn port_ok(&self, port: u16) -> bool {
        self.port.is_none_or(|p| p == port)
    }
}

/// The parsed allow list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NetworkPolicy {
    rules: Vec<AllowRule>,
}

impl NetworkPolicy {
    /// Parses `[network] allow`; an unusable entry is an error naming it.
    pub fn parse(allow: &[String]) -> Result<Self, String> {
        let mut rules = Vec::new();
        for entry in allow {
            let bad = |why: &str| format!("network.allow entry `{entry}`: {why}");
            let (host, port) = entry
                .rsplit_once(':')
                .ok_or_else(|| bad("must be HOST:PORT (e.g. glue.us-east-1.amazonaws.com:443)"))?;
            let host = host.trim_start_matches('[').trim_end_matches(']');
            let port = match port {
                "*" => None,
                p => Some(
                    p.parse::<u16>()
                        .map_err(|_| bad("the port is not a number or `*`"))?,
                ),
            };
            let host = host.to_ascii_lowercase();
            let pattern = if let Some((net, bits)) = host.split_once('/') {
                let ip: IpAddr = net.parse().map_err(|_| bad("not an IP network"))?;
                let bits: u8 = bits.parse().map_err(|_| bad("bad prefix length"))?;
                let max = if ip.is_ipv4() { 32 } else { 128 };
                if bits > max {
                    return Err(bad("prefix length too long"));
                }
                HostPattern::Net(ip, bits)
            } else if let Ok(ip) = host.parse::<IpAddr>() {
                HostPattern::Net(ip, if ip.is_ipv4() { 32 } else { 128 })
            } else if let Some(suffix) = host.strip_prefix("*.") {
                if suffix.is_empty() || suffix.contains('*') {
                    return Err(bad("a wildcard must look like `*.example.com`"));
                }
                HostPattern::Suffix(suffix.to_string())
            } else {
                if host.is_empty() || host.contains('*') || host.contains('/') {
                    return Err(bad("not a host name"));
                }
                HostPattern::Name(host)
            };
            rules.push(AllowRule {
                host: pattern,
                port,
                operator: false,
            });
        }
        Ok(NetworkPolicy { rules })
    }

    /// Adds a destination the workflow declares elsewhere (`source.endpoint`, a sink's URL):
    /// connections to it need no `[network] allow` entry. Like an allow entry, an IP address
    /// opens that address, while a name opens only the public addresses it resolves to.
    pub fn declare(&mut self, host: &str, port: u16) {
        self.rules.push(declared_rule(host, port, false));
    }

    /// A policy of one destination the operator named (a vault, a sink, a `credential test`
    /// target): its name may resolve to a loopback or private address, never to a link-local
    /// (cloud metadata), multicast or unspecified one, and no other host is reachable. The
    /// connection goes to the address that was resolved and checked.
    pub fn operator_destination(host: &str, port: u16) -> Self {
        Self::operator_destinations(&[(host, Some(port))])
    }

    /// As [`NetworkPolicy::operator_destination`] for several hosts; a `None` port allows any.
    pub fn operator_destinations(hosts: &[(&str, Option<u16>)]) -> Self {
        NetworkPolicy {
            rules: hosts
                .iter()
                .map(|(host, port)| {
                    let mut rule = declared_rule(host, port.unwrap_or(0), true);
                    rule.port = *port;
                    rule
                })
                .collect(),
        }
    }

    /// Resolves `host` and returns the addresses the policy allows, in the resolver's order;
    /// connecting to one of them (not to the name) keeps a later DNS answer from changing the
    /// destination after the check. An error says which address was refused and why.
    pub async fn resolve(&self, host: &str, port: u16) -> Result<Vec<SocketAddr>, Refusal> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if let Ok(ip) = bare.parse::<IpAddr>() {
            self.check_addr(bare, ip, port).map_err(Refusal::Denied)?;
            return Ok(vec![SocketAddr::new(ip, port)]);
        }
        self.check_name(bare, port).map_err(Refusal::Denied)?;
        let found: Vec<SocketAddr> = tokio::net::lookup_host((bare, port))
            .await
            .map_err(|e| Refusal::Unresolvable(format!("{bare}:{port} cannot be resolved: {e}")))?
            .collect();
        let mut allowed = Vec::new();
        let mut reason = None;
        for addr in found {
            match self.check_addr(bare, addr.ip(), port) {
                Ok(()) => allowed.push(addr),
                Err(why) => reason = Some(why),
            }
        }
        match reason {
            _ if !allowed.is_empty() => Ok(allowed),
            Some(why) => Err(Refusal::Denied(why)),
            None => Err(Refusal::Unresolvable(format!("{bare} has no address"))),
        }
    }

    /// Whether the allow list is empty (then every connection is denied).
    pub fn is_empty(&self) -> bool {
        self.rules.is_empty()
    }

    /// Checks the host of a URL (a name or an IP literal) and its port, before any lookup.
    pub fn check_name(&self, host: &str, port: u16) -> Result<(), String> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        if let Ok(ip) = host.parse::<IpAddr>() {
            return self.check_addr(&host, ip, port);
        }
        if self
            .rules
            .iter()
            .any(|r| r.port_ok(port) && name_matches(&r.host, &host))
        {
            Ok(())
        } else {
            Err(format!(
                "{host}:{port} is not allowed by the workflow's [network] allow list"
            ))
        }
    }

    /// Checks one resolved address of `host` (the name the URL used).
    pub fn check_addr(&self, host: &str, ip: IpAddr, port: u16) -> Result<(), String> {
        let ip = canonical(ip);
        let literal = self.rules.iter().any(|r| {
            r.port_ok(port)
                && matches!(r.host, HostPattern::Net(net, bits) if in_net(ip, canonical(net), bits))
        });
        if literal {
            return Ok(());
        }
        let host = host.to_ascii_lowercase();
        let operator = self
            .rules
            .iter()
            .any(|r| r.operator && r.port_ok(port) && name_matches(&r.host, &host));
        // An operator-named host may be on a loopback or private network, never on a
        // link-local (cloud metadata), multicast or unspecified address.
        if operator
            && matches!(
                special_range(ip),
                None | Some("loopback" | "private" | "private (unique local)" | "shared (CGNAT)")
            )
        {
            return Ok(());
        }
        if let Some(range) = special_range(ip) {
            return Err(format!(
                "{host}:{port} resolves to {ip}, a {range} address; such addresses are denied unless [network] allow names the address itself"
            ));
        }
        if self
            .rules
            .iter()
            .any(|r| r.port_ok(port) && name_matches(&r.host, &host))
        {
            Ok(())
        } else {
            Err(format!(
                "{host}:{port} ({ip}) is not allowed by the workflow's [network] allow list"
            ))
        }
    }
}

fn declared_rule(host: &str, port: u16, operator: bool) -> AllowRule {
    let host = host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_ascii_lowercase();
    let pattern = match host.parse::<IpAddr>() {
        Ok(ip) => HostPattern::Net(ip, if ip.is_ipv4() { 32 } else { 128 }),
        Err(_) => HostPattern::Name(host),
    };
    AllowRule {
        host: pattern,
        port: Some(port),
        operator,
    }
}

fn name_matches(pattern: &HostPattern, host: &str) -> bool {
    match pattern {
        HostPattern::Name(n) => n == host,
        HostPattern::Suffix(s) => host
            .strip_suffix(s.as_str())
            .is_some_and(|rest| rest.ends_with('.') && rest.len() > 1),
        HostPattern::Net(..) => false,
    }
}

/// IPv4-mapped IPv6 addresses are checked as the IPv4 address they carry.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u32::MAX << (32 - bits)
            };
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let mask = if bits == 0 {
                0
            } else {
                u128::MAX << (128 - bits)
            };
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

/// The name of the special range `ip` is in, if any.
pub fn special_range(ip: IpAddr) -> Option<&'static str> {
    match canonical(ip) {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            if v4.is_loopback() {
                Some("loopback")
            } else if v4.is_link_local() {
                Some("link-local")
            } else if v4.is_private() {
                Some("private")
            } else if o[0] == 100 && (o[1] & 0xc0) == 64 {
                Some("shared (CGNAT)")
            } else if v4.is_multicast() {
                Some("multicast")
            } else if v4.is_unspecified() || o[0] == 0 {
                Some("unspecified")
            } else if v4.is_broadcast() || o[0] >= 240 {
                Some("reserved")
            } else {
                None
            }
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            if v6.is_loopback() {
                Some("loopback")
            } else if v6.is_unspecified() {
                Some("unspecified")
            } else if (s[0] & 0xffc0) == 0xfe80 {
                Some("link-local")
            } else if (s[0] & 0xfe00) == 0xfc00 {
                Some("private (unique local)")
            } else if v6.is_multicast() {
                Some("multicast")
            } else {
                None
            }
        }
    }
}

/// A client builder for the host's own connections to hosts an operator configured (sinks,
/// vaults): no proxy from the environment, no redirects (a key must not follow one), and a
/// resolver that resolves only `hosts` (any port), checks each address with
/// [`NetworkPolicy::operator_destinations`] and hands out only the checked ones.
pub(crate) fn operator_client(hosts: &[&str]) -> reqwest::ClientBuilder {
    let hosts: Vec<(&str, Option<u16>)> = hosts.iter().map(|h| (*h, None)).collect();
    reqwest::Client::builder()
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(PolicyResolver {
            policy: Arc::new(NetworkPolicy::operator_destinations(&hosts)),
            port: 0,
            denied: Arc::default(),
        }))
}

/// A DNS resolver for one origin: it resolves the name, checks every address against the
/// policy and hands reqwest only the allowed ones, so the connection goes to a checked
/// address whatever a later DNS answer says. The reason of a denial is kept for the caller.
#[derive(Clone)]
pub(crate) struct PolicyResolver {
    pub(crate) policy: Arc<NetworkPolicy>,
    pub(crate) port: u16,
    pub(crate) denied: Arc<Mutex<Option<String>>>,
}

impl reqwest::dns::Resolve for PolicyResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_string();
        let this = self.clone();
        Box::pin(async move {
            match this.policy.resolve(&host, this.port).await {
                Ok(allowed) => Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs),
                Err(refusal) => {
                    let kind = match &refusal {
                        Refusal::Denied(why) => {
                            if let Ok(mut slot) = this.denied.lock() {
                                *slot = Some(why.clone());
                            }
                            std::io::ErrorKind::PermissionDenied
                        }
                        Refusal::Unresolvable(_) => std::io::ErrorKind::NotFound,
                    };
                    Err(Box::new(std::io::Error::new(kind, refusal.to_string()))
                        as Box<dyn std::error::Error + Send + Sync>)
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy(allow: &[&str]) -> NetworkPolicy {
        NetworkPolicy::parse(&allow.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn names_ports_and_special_ranges() {
        let p = policy(&[
            "glue.us-east-1.amazonaws.com:443",
            "*.example.com:*",
            "127.0.0.1:*",
        ]);
        assert!(p.check_name("glue.us-east-1.amazonaws.com", 443).is_ok());
        assert!(p.check_name("glue.us-east-1.amazonaws.com", 80).is_err());
        assert!(p.check_name("a.example.com", 8443).is_ok());
        assert!(p.check_name("example.com", 8443).is_err());
        assert!(p.check_name("a.example.com.evil.net", 1).is_err());
        assert!(p.check_name("127.0.0.1", 5000).is_ok());
        assert!(p.check_name("127.0.0.2", 5000).is_err());
        let e = p.check_name("169.254.169.254", 80).unwrap_err();
        assert!(e.contains("link-local"), "{e}");
        // A permitted name resolving to a special address is denied.
        let e = p
            .check_addr("a.example.com", "10.1.2.3".parse().unwrap(), 443)
            .unwrap_err();
        assert!(e.contains("private"), "{e}");
        assert!(p
            .check_addr("a.example.com", "93.184.216.34".parse().unwrap(), 443)
            .is_ok());
        assert!(p
            .check_addr("x", "::ffff:127.0.0.1".parse().unwrap(), 1)
            .is_ok());
        assert!(p.check_addr("x", "::1".parse().unwrap(), 1).is_err());
        let net = policy(&["10.0.0.0/8:443"]);
        assert!(net
            .check_addr("db", "10.9.9.9".parse().unwrap(), 443)
            .is_ok());
        assert!(net
            .check_addr("db", "10.9.9.9".parse().unwrap(), 80)
            .is_err());
        assert!(NetworkPolicy::parse(&["nohost".into()]).is_err());
        assert!(NetworkPolicy::parse(&["h:99999".into()]).is_err());
        assert!(policy(&[]).check_name("a.example.com", 1).is_err());
    }

    #[tokio::test]
    async fn declared_destinations_and_checked_resolution() {
        // A declared IP opens that address; a declared name opens only public addresses.
        let mut p = policy(&[]);
        p.declare("127.0.0.1", 5432);
        p.declare("localhost", 5433);
        let addrs = p.resolve("127.0.0.1", 5432).await.unwrap();
        assert_eq!(addrs, vec!["127.0.0.1:5432".parse().unwrap()]);
        assert!(matches!(
            p.resolve("127.0.0.1", 5433).await,
            Err(Refusal::Denied(_))
        ));
        match p.resolve("localhost", 5433).await {
            Err(Refusal::Denied(why)) => assert!(why.contains("loopback"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            p.resolve("other.invalid", 5433).await,
            Err(Refusal::Denied(_))
        ));
        // Naming the address opens it for the name too, and only the checked addresses are
        // handed out.
        p = policy(&["127.0.0.1:5433"]);
        p.declare("localhost", 5433);
        let addrs = p.resolve("localhost", 5433).await.unwrap();
        assert!(!addrs.is_empty());
        assert!(
            addrs.iter().all(|a| a.ip().to_string() == "127.0.0.1"),
            "{addrs:?}"
        );
        // An operator-typed destination may be private, but nothing else is opened.
        let op = NetworkPolicy::operator_destination("localhost", 5432);
        assert!(op.resolve("localhost", 5432).await.is_ok());
        assert!(op.resolve("localhost", 5433).await.is_err());
        assert!(op.resolve("127.0.0.1", 5432).await.is_err());
        // A name that does not resolve is not a denial.
        assert!(matches!(
            op.resolve("no-such-host.invalid", 5432).await,
            Err(Refusal::Denied(_))
        ));
        // A name the operator gave may point at a private network, never at the metadata
        // service or a multicast group.
        let named = NetworkPolicy::operator_destination("vault.corp", 8200);
        assert!(named
            .check_addr("vault.corp", "10.1.2.3".parse().unwrap(), 8200)
            .is_ok());
        for bad in ["169.254.169.254", "224.0.0.1", "0.0.0.0"] {
            assert!(named
                .check_addr("vault.corp", bad.parse().unwrap(), 8200)
                .is_err());
        }
        assert!(named
            .check_addr("vault.corp", "10.1.2.3".parse().unwrap(), 8201)
            .is_err());
        let any_port = NetworkPolicy::operator_destinations(&[("127.0.0.1", None)]);
        assert!(any_port.resolve("127.0.0.1", 8200).await.is_ok());
        assert!(any_port.resolve("127.0.0.2", 8200).await.is_err());
        let open = NetworkPolicy::operator_destination("no-such-host.invalid", 5432);
        assert!(matches!(
            open.resolve("no-such-host.invalid", 5432).await,
            Err(Refusal::Unresolvable(_))
        ));
    }
}
