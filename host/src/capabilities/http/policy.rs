//! The network policy for connections the host makes on a plugin's behalf: the workflow's
//! `[network] allow` list of `HOST:PORT` patterns, checked on the name *and* on every resolved
//! address. Addresses in a special range (loopback, link-local incl. 169.254.169.254,
//! private, shared, multicast, unspecified, documentation, ... see [`special_range`]) are
//! denied unless an allow entry names the address or a network lying inside that range: a
//! name alone never opens them, so a DNS answer cannot point a request at them, and a
//! catch-all such as `0.0.0.0/0` does not either. An entry may also restrict the HTTP
//! methods, path prefixes and AWS `X-Amz-Target` operations of requests to its destination.

use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use super::path;
pub use super::special::special_range;
use super::special::{canonical, canonical_net, in_net};

/// The `[network]` table of a workflow.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NetworkConfig {
    /// Destinations the host may connect to for the plugin: `HOST:PORT`, where HOST is a name,
    /// `*.suffix`, an IP address or a CIDR network (`10.0.0.0/8`), and PORT a number or `*`;
    /// or a table `{ dest = "HOST:PORT", methods = [...], paths = [...], aws_targets = [...] }`
    /// that also restricts the HTTP requests sent there.
    #[serde(default)]
    pub allow: Vec<AllowEntry>,
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

/// One `[network] allow` entry: a bare `HOST:PORT` pattern, or a table restricting what may
/// be sent there.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AllowEntry {
    /// `HOST:PORT`: any request to the destination.
    Destination(String),
    /// `{ dest = "HOST:PORT", ... }`: only the listed methods, paths and operations.
    Restricted(RestrictedDestination),
}

impl From<&str> for AllowEntry {
    fn from(entry: &str) -> Self {
        AllowEntry::Destination(entry.to_string())
    }
}

/// The table form of an allow entry. A key left out does not restrict; an empty list is an
/// error (it would refuse everything, which leaving the entry out says more plainly).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RestrictedDestination {
    /// `HOST:PORT`, as in the string form.
    pub dest: String,
    /// HTTP methods allowed (`GET`, `POST`, `PUT`, `PATCH`, `DELETE`, `HEAD`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub methods: Option<Vec<String>>,
    /// Path prefixes allowed, matched on whole segments after normalisation (`/api/v1`
    /// covers `/api/v1` and `/api/v1/x`, not `/api/v10`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paths: Option<Vec<String>>,
    /// AWS JSON API operations allowed (`AWSGlue.GetTables`): every request must carry
    /// exactly one `X-Amz-Target` header with one of them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aws_targets: Option<Vec<String>>,
}

impl<'de> Deserialize<'de> for AllowEntry {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct EntryVisitor;
        impl<'de> serde::de::Visitor<'de> for EntryVisitor {
            type Value = AllowEntry;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a \"HOST:PORT\" string or a table { dest = \"HOST:PORT\", methods, paths, aws_targets }")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<AllowEntry, E> {
                Ok(AllowEntry::Destination(v.to_string()))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<AllowEntry, A::Error> {
                // Deserialized directly (not through an untagged enum) so that an unknown key
                // is reported by name.
                RestrictedDestination::deserialize(serde::de::value::MapAccessDeserializer::new(
                    map,
                ))
                .map(AllowEntry::Restricted)
            }
        }
        d.deserialize_any(EntryVisitor)
    }
}

/// The HTTP methods the capability sends.
pub const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD"];

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
    /// What HTTP requests to the destination may be; `None` in a field allows any.
    http: HttpLimits,
}

/// The restrictions of a table allow entry, normalised at parse time.
#[derive(Debug, Clone, Default, PartialEq)]
struct HttpLimits {
    methods: Option<Vec<String>>,
    paths: Option<Vec<String>>,
    aws_targets: Option<Vec<String>>,
}

/// What the policy needs to know of one HTTP request.
#[derive(Debug, Clone, Copy)]
pub struct RequestShape<'a> {
    /// Upper-case method.
    pub method: &'a str,
    /// The normalised path, without the query.
    pub path: &'a str,
    /// The values of every `X-Amz-Target` header of the request.
    pub aws_targets: &'a [&'a str],
}

/// Why the policy refused a request: a message for the plugin and one for the audit log
/// (which never holds a header value the plugin chose unless it is a plain operation name).
#[derive(Debug, Clone, PartialEq)]
pub struct RequestRefusal {
    /// Names what was refused (method, path, target) and what is allowed.
    pub message: String,
    /// The same without free-form plugin text.
    pub audit: String,
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
    pub fn parse(allow: &[AllowEntry]) -> Result<Self, String> {
        let mut rules = Vec::new();
        for entry in allow {
            let (dest, http) = match entry {
                AllowEntry::Destination(dest) => (dest, HttpLimits::default()),
                AllowEntry::Restricted(r) => (&r.dest, http_limits(r)?),
            };
            let (host, port) = parse_pattern(dest)?;
            rules.push(AllowRule {
                host,
                port,
                operator: false,
                http,
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
                "{} is not allowed by the workflow's [network] allow list",
                address(&host, port)
            ))
        }
    }

    /// Checks one resolved address of `host` (the name the URL used). This is the one check
    /// of special addresses, for HTTP, SQL logins, sinks and vaults alike: an address in a
    /// special range passes only an entry naming it or a network inside that range.
    pub fn check_addr(&self, host: &str, ip: IpAddr, port: u16) -> Result<(), String> {
        let ip = canonical(ip);
        let literal = self.rules.iter().any(|r| {
            r.port_ok(port)
                && matches!(r.host, HostPattern::Net(net, bits) if net_admits(net, bits, ip))
        });
        if literal {
            return Ok(());
        }
        let host = host.to_ascii_lowercase();
        let special = special_range(ip);
        let operator = self
            .rules
            .iter()
            .any(|r| r.operator && r.port_ok(port) && name_matches(&r.host, &host));
        // An operator-named host may be on a loopback or private network, never on a
        // link-local (cloud metadata), multicast or unspecified address.
        if operator && special.as_ref().is_none_or(|r| r.operator_reachable()) {
            return Ok(());
        }
        if let Some(range) = special {
            return Err(format!(
                "{} resolves to {ip}, a {} address; such addresses are denied unless [network] allow names the address itself or a network inside {}",
                address(&host, port),
                range.name(),
                range.cidr()
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
                "{} ({ip}) is not allowed by the workflow's [network] allow list",
                address(&host, port)
            ))
        }
    }

    /// Checks an HTTP request to `host:port` (whose destination already passed) against the
    /// methods, paths and `X-Amz-Target` operations of the entries for that destination: the
    /// entries naming the host (for a name) or holding the address (for an IP address). Some
    /// entry must allow all three.
    pub fn check_request(
        &self,
        host: &str,
        port: u16,
        req: &RequestShape<'_>,
    ) -> Result<(), RequestRefusal> {
        let host = host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_ascii_lowercase();
        let ip = host.parse::<IpAddr>().ok();
        let destination = address(&host, port);
        let refuse = |message: String, audit: String| RequestRefusal { message, audit };
        let entries: Vec<&HttpLimits> = self
            .rules
            .iter()
            .filter(|r| {
                r.port_ok(port)
                    && match (ip, &r.host) {
                        (Some(ip), HostPattern::Net(net, bits)) => net_admits(*net, *bits, ip),
                        (Some(_), _) => false,
                        (None, pattern) => name_matches(pattern, &host),
                    }
            })
            .map(|r| &r.http)
            .collect();
        if entries.is_empty() {
            let m = format!("{destination} is not allowed by the workflow's [network] allow list");
            return Err(refuse(m.clone(), m));
        }
        let by_method: Vec<&HttpLimits> = entries
            .iter()
            .copied()
            .filter(|l| {
                l.methods
                    .as_ref()
                    .is_none_or(|m| m.iter().any(|m| m == req.method))
            })
            .collect();
        if by_method.is_empty() {
            let allowed = listed(entries.iter().map(|l| &l.methods));
            let m = format!(
                "method {} is not allowed for {destination} by [network] allow (allowed: {allowed})",
                req.method
            );
            return Err(refuse(m.clone(), m));
        }
        let by_path: Vec<&HttpLimits> = by_method
            .iter()
            .copied()
            .filter(|l| {
                l.paths
                    .as_ref()
                    .is_none_or(|p| p.iter().any(|p| path::within(req.path, p)))
            })
            .collect();
        if by_path.is_empty() {
            let allowed = listed(by_method.iter().map(|l| &l.paths));
            let shown: String = req.path.chars().take(200).collect();
            let m = format!(
                "path {shown} is outside the path prefixes allowed for {destination} by [network] allow (allowed: {allowed})"
            );
            return Err(refuse(m.clone(), m));
        }
        let target_ok = |l: &&HttpLimits| match &l.aws_targets {
            None => true,
            Some(allowed) => {
                matches!(req.aws_targets, [one] if allowed.iter().any(|a| a == one.trim()))
            }
        };
        if by_path.iter().any(target_ok) {
            return Ok(());
        }
        let allowed = listed(by_path.iter().map(|l| &l.aws_targets));
        let (message, audit) = match req.aws_targets {
            [] => {
                let m = format!(
                    "a request to {destination} needs an X-Amz-Target header naming an allowed operation ({allowed})"
                );
                (m.clone(), m)
            }
            [one] => {
                let one = one.trim();
                let plain = !one.is_empty()
                    && one.len() <= 128
                    && one
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
                let shown: String = one.chars().filter(|c| !c.is_control()).take(128).collect();
                let tail = format!(
                    "is not allowed for {destination} by [network] allow (allowed: {allowed})"
                );
                let audit = if plain {
                    format!("X-Amz-Target {one} {tail}")
                } else {
                    format!("an X-Amz-Target that is not an operation name {tail}")
                };
                (format!("X-Amz-Target {shown} {tail}"), audit)
            }
            _ => {
                let m =
                    format!("a request to {destination} may carry only one X-Amz-Target header");
                (m.clone(), m)
            }
        };
        Err(refuse(message, audit))
    }
}

/// `host:port`, with an IPv6 address in brackets.
fn address(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The union of one restriction over the entries, for a refusal message.
fn listed<'a>(lists: impl Iterator<Item = &'a Option<Vec<String>>>) -> String {
    let mut all: Vec<&str> = Vec::new();
    for list in lists.flatten() {
        for item in list {
            if !all.contains(&item.as_str()) {
                all.push(item);
            }
        }
    }
    if all.is_empty() {
        "none".into()
    } else {
        all.join(", ")
    }
}

/// Whether an allow entry's network admits `ip`: the address lies in it and, if the address
/// is special, the network lies inside the address's special range.
fn net_admits(net: IpAddr, bits: u8, ip: IpAddr) -> bool {
    let ip = canonical(ip);
    let (net, bits) = canonical_net(net, bits);
    in_net(ip, net, bits) && special_range(ip).is_none_or(|r| r.contains_net(net, bits))
}

/// `HOST:PORT` of an allow entry.
fn parse_pattern(entry: &str) -> Result<(HostPattern, Option<u16>), String> {
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
    Ok((pattern, port))
}

/// Checks and normalises the restrictions of a table entry.
fn http_limits(r: &RestrictedDestination) -> Result<HttpLimits, String> {
    let bad = |key: &str, why: String| format!("network.allow entry `{}`: {key}: {why}", r.dest);
    let nonempty = |key: &str, list: &Option<Vec<String>>| match list {
        Some(l) if l.is_empty() => Err(bad(
            key,
            "an empty list would refuse every request; leave the key out to allow any".into(),
        )),
        _ => Ok(()),
    };
    nonempty("methods", &r.methods)?;
    nonempty("paths", &r.paths)?;
    nonempty("aws_targets", &r.aws_targets)?;
    let methods = match &r.methods {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|m| {
                    let upper = m.to_ascii_uppercase();
                    if METHODS.contains(&upper.as_str()) {
                        Ok(upper)
                    } else {
                        Err(bad(
                            "methods",
                            format!("`{m}` is not one of {}", METHODS.join(", ")),
                        ))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let paths = match &r.paths {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|p| {
                    // Compared with normalised request paths, so normalised the same way.
                    path::normalize(p).map_err(|e| bad("paths", format!("`{p}`: {e}")))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    let aws_targets = match &r.aws_targets {
        None => None,
        Some(list) => Some(
            list.iter()
                .map(|t| {
                    let ok = t.split_once('.').is_some_and(|(service, op)| {
                        !service.is_empty()
                            && !op.is_empty()
                            && t.bytes()
                                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_'))
                    });
                    if ok {
                        Ok(t.clone())
                    } else {
                        Err(bad(
                            "aws_targets",
                            format!("`{t}` is not an operation like `AWSGlue.GetTables`"),
                        ))
                    }
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(HttpLimits {
        methods,
        paths,
        aws_targets,
    })
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
        http: HttpLimits::default(),
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
        NetworkPolicy::parse(
            &allow
                .iter()
                .map(|s| AllowEntry::from(*s))
                .collect::<Vec<_>>(),
        )
        .unwrap()
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

    #[test]
    fn catch_all_networks_never_admit_special_addresses() {
        for allow in ["0.0.0.0/0:*", "0.0.0.0/1:*", "::/0:*", "::ffff:0:0/96:*"] {
            let p = policy(&[allow]);
            for ip in [
                "127.0.0.1",
                "169.254.169.254",
                "10.1.2.3",
                "100.64.0.1",
                "0.0.0.0",
                "::1",
                "::ffff:127.0.0.1",
                "::ffff:169.254.169.254",
                "fe80::1",
                "fd00::1",
                "2002:7f00:1::",
                "64:ff9b::a9fe:a9fe",
                "::127.0.0.1",
                "192.0.2.1",
                "255.255.255.255",
            ] {
                let e = p
                    .check_addr("x", ip.parse().unwrap(), 80)
                    .expect_err(&format!("{allow} must not admit {ip}"));
                assert!(e.contains("such addresses are denied"), "{e}");
            }
        }
        // A catch-all still admits public addresses of its family.
        assert!(policy(&["0.0.0.0/0:*"])
            .check_addr("x", "93.184.216.34".parse().unwrap(), 443)
            .is_ok());
        assert!(policy(&["::/0:*"])
            .check_addr("x", "2606:4700::1111".parse().unwrap(), 443)
            .is_ok());
        // An entry naming the address, or a network inside the special range, admits it.
        for (allow, ip) in [
            ("127.0.0.1:80", "127.0.0.1"),
            ("127.0.0.0/8:80", "127.9.9.9"),
            ("127.0.0.1:80", "::ffff:127.0.0.1"),
            ("[::ffff:127.0.0.1]:80", "127.0.0.1"),
            ("10.1.0.0/16:80", "10.1.2.3"),
            ("[::1]:80", "::1"),
            ("fd00::/8:80", "fd12::1"),
        ] {
            assert!(
                policy(&[allow])
                    .check_addr("x", ip.parse().unwrap(), 80)
                    .is_ok(),
                "{allow} admits {ip}"
            );
        }
        // A network larger than the special range does not.
        for (allow, ip) in [
            ("8.0.0.0/5:80", "10.1.2.3"),
            ("172.0.0.0/8:80", "172.16.0.1"),
        ] {
            assert!(policy(&[allow])
                .check_addr("x", ip.parse().unwrap(), 80)
                .is_err());
        }
        // IP literals in URLs go through the same check.
        assert!(policy(&["0.0.0.0/0:*"])
            .check_name("127.0.0.1", 80)
            .is_err());
        assert!(policy(&["::/0:*"])
            .check_name("[::ffff:127.0.0.1]", 80)
            .is_err());
    }

    fn table(text: &str) -> Result<NetworkPolicy, String> {
        let cfg: NetworkConfig = toml::from_str(text).map_err(|e| e.to_string())?;
        NetworkPolicy::parse(&cfg.allow)
    }

    fn shape<'a>(method: &'a str, path: &'a str, targets: &'a [&'a str]) -> RequestShape<'a> {
        RequestShape {
            method,
            path,
            aws_targets: targets,
        }
    }

    #[test]
    fn table_entries_restrict_methods_paths_and_operations() {
        let p = table(
            r#"allow = [
                "open.example.com:443",
                { dest = "glue.us-east-1.amazonaws.com:443", methods = ["post"], paths = ["/"], aws_targets = ["AWSGlue.GetDatabases", "AWSGlue.GetTables"] },
                { dest = "api.example.com:443", methods = ["GET"], paths = ["/api/tenant-a"] },
            ]"#,
        )
        .unwrap();
        let glue = "glue.us-east-1.amazonaws.com";
        assert!(p.check_name(glue, 443).is_ok());
        assert!(p
            .check_request(glue, 443, &shape("POST", "/", &["AWSGlue.GetTables"]))
            .is_ok());
        let e = p
            .check_request(glue, 443, &shape("POST", "/", &["AWSGlue.DeleteTable"]))
            .unwrap_err();
        assert!(
            e.message
                .contains("X-Amz-Target AWSGlue.DeleteTable is not allowed"),
            "{e:?}"
        );
        assert!(e.audit.contains("AWSGlue.DeleteTable"), "{e:?}");
        let e = p
            .check_request(glue, 443, &shape("POST", "/", &["x\"; secret=abc"]))
            .unwrap_err();
        assert!(!e.audit.contains("secret"), "{e:?}");
        let e = p
            .check_request(glue, 443, &shape("POST", "/", &[]))
            .unwrap_err();
        assert!(e.message.contains("needs an X-Amz-Target"), "{e:?}");
        let two = ["AWSGlue.GetTables", "AWSGlue.DeleteTable"];
        let e = p
            .check_request(glue, 443, &shape("POST", "/", &two))
            .unwrap_err();
        assert!(e.message.contains("only one X-Amz-Target"), "{e:?}");
        let e = p
            .check_request(glue, 443, &shape("GET", "/", &["AWSGlue.GetTables"]))
            .unwrap_err();
        assert!(e.message.contains("method GET is not allowed"), "{e:?}");
        assert!(e.message.contains("allowed: POST"), "{e:?}");

        let api = "api.example.com";
        assert!(p
            .check_request(api, 443, &shape("GET", "/api/tenant-a", &[]))
            .is_ok());
        assert!(p
            .check_request(api, 443, &shape("GET", "/api/tenant-a/x", &[]))
            .is_ok());
        for bad in ["/api/tenant-ab", "/admin/tenant-b", "/api"] {
            let e = p
                .check_request(api, 443, &shape("GET", bad, &[]))
                .unwrap_err();
            assert!(
                e.message.contains(&format!("path {bad} is outside")),
                "{e:?}"
            );
            assert!(e.message.contains("/api/tenant-a"), "{e:?}");
        }
        // A string entry restricts nothing; another port or host has no entry at all.
        assert!(p
            .check_request("open.example.com", 443, &shape("DELETE", "/x", &[]))
            .is_ok());
        assert!(p
            .check_request(api, 80, &shape("GET", "/api/tenant-a", &[]))
            .is_err());
        // Entries for IP addresses are found by the address.
        let ip = table(r#"allow = [{ dest = "127.0.0.1:8080", methods = ["GET"] }]"#).unwrap();
        assert!(ip
            .check_request("127.0.0.1", 8080, &shape("GET", "/", &[]))
            .is_ok());
        assert!(ip
            .check_request("127.0.0.1", 8080, &shape("PUT", "/", &[]))
            .is_err());
    }

    #[test]
    fn bad_table_entries_are_errors_naming_the_key() {
        let e = table(r#"allow = [{ dest = "h:1", method = ["GET"] }]"#).unwrap_err();
        assert!(e.contains("unknown field `method`"), "{e}");
        let e = table(r#"allow = [{ dest = "h:1", methods = ["FETCH"] }]"#).unwrap_err();
        assert!(e.contains("methods") && e.contains("FETCH"), "{e}");
        let e = table(r#"allow = [{ dest = "h:1", methods = [] }]"#).unwrap_err();
        assert!(e.contains("empty list"), "{e}");
        let e = table(r#"allow = [{ dest = "h:1", paths = ["/a%2fb"] }]"#).unwrap_err();
        assert!(e.contains("paths") && e.contains("encoded slash"), "{e}");
        let e = table(r#"allow = [{ dest = "h:1", aws_targets = ["GetTables"] }]"#).unwrap_err();
        assert!(e.contains("aws_targets"), "{e}");
        let e = table(r#"allow = [{ methods = ["GET"] }]"#).unwrap_err();
        assert!(e.contains("dest"), "{e}");
        assert!(table(r#"allow = [{ dest = "nohost" }]"#).is_err());
        // The string form and the table form round-trip through JSON (the state store).
        let cfg: NetworkConfig =
            toml::from_str(r#"allow = ["a:1", { dest = "b:2", methods = ["GET"] }]"#).unwrap();
        let json = serde_json::to_string(&cfg).unwrap();
        assert_eq!(serde_json::from_str::<NetworkConfig>(&json).unwrap(), cfg);
    }
}
