//! Special IP address ranges: addresses that reach the host itself, its local networks, the
//! cloud metadata service, groups, or nothing routable. The network policy admits an address
//! in such a range only through an allow entry that names the address or a network lying
//! inside the range (`127.0.0.1`, `10.1.0.0/16`); an entry that merely *contains* the range
//! (`0.0.0.0/0`, `::/0`) never does. IPv4-mapped IPv6 addresses are the IPv4 address they
//! carry; IPv4-compatible, 6to4 and NAT64 forms of a special IPv4 address are special too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The special range an address lies in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpecialRange {
    name: String,
    net: IpAddr,
    bits: u8,
    operator_reachable: bool,
}

impl SpecialRange {
    /// What the range is (`loopback`, `link-local`, `6to4 form of private`, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The range as a CIDR network (`127.0.0.0/8`).
    pub fn cidr(&self) -> String {
        format!("{}/{}", self.net, self.bits)
    }

    /// Whether an allow entry's network `net/bits` lies inside this range, so that it may
    /// admit addresses of the range.
    pub fn contains_net(&self, net: IpAddr, bits: u8) -> bool {
        bits >= self.bits && in_net(net, self.net, self.bits)
    }

    /// Whether a host name the operator typed (a vault, a sink) may resolve into this range:
    /// loopback and private networks yes, link-local (cloud metadata), multicast and the rest
    /// never.
    pub fn operator_reachable(&self) -> bool {
        self.operator_reachable
    }
}

/// (network, prefix length, name, reachable by an operator-named host)
type Row<A> = (A, u8, &'static str, bool);

/// Most specific first where ranges nest (broadcast lies inside 240.0.0.0/4).
const V4: &[Row<[u8; 4]>] = &[
    ([0, 0, 0, 0], 8, "unspecified", false),
    ([10, 0, 0, 0], 8, "private", true),
    ([100, 64, 0, 0], 10, "shared (CGNAT)", true),
    ([127, 0, 0, 0], 8, "loopback", true),
    ([169, 254, 0, 0], 16, "link-local", false),
    ([172, 16, 0, 0], 12, "private", true),
    ([192, 0, 0, 0], 24, "IETF protocol assignment", false),
    ([192, 0, 2, 0], 24, "documentation", false),
    ([192, 88, 99, 0], 24, "6to4 relay anycast", false),
    ([192, 168, 0, 0], 16, "private", true),
    ([198, 18, 0, 0], 15, "benchmarking", false),
    ([198, 51, 100, 0], 24, "documentation", false),
    ([203, 0, 113, 0], 24, "documentation", false),
    ([224, 0, 0, 0], 4, "multicast", false),
    ([255, 255, 255, 255], 32, "broadcast", false),
    ([240, 0, 0, 0], 4, "reserved", false),
];

const V6: &[Row<[u16; 8]>] = &[
    ([0, 0, 0, 0, 0, 0, 0, 0], 128, "unspecified", false),
    ([0, 0, 0, 0, 0, 0, 0, 1], 128, "loopback", true),
    (
        [0x64, 0xff9b, 1, 0, 0, 0, 0, 0],
        48,
        "NAT64 (local use)",
        false,
    ),
    ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only", false),
    ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "Teredo", false),
    ([0x2001, 2, 0, 0, 0, 0, 0, 0], 48, "benchmarking", false),
    (
        [0x2001, 0xdb8, 0, 0, 0, 0, 0, 0],
        32,
        "documentation",
        false,
    ),
    ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation", false),
    (
        [0xfc00, 0, 0, 0, 0, 0, 0, 0],
        7,
        "private (unique local)",
        true,
    ),
    ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local", false),
    ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local", false),
    ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast", false),
];

/// The special range `ip` lies in, if any. This is the one place that decides it, for HTTP,
/// SQL logins, sinks and vault connections alike.
pub fn special_range(ip: IpAddr) -> Option<SpecialRange> {
    match canonical(ip) {
        IpAddr::V4(v4) => special_v4(v4),
        IpAddr::V6(v6) => special_v6(v6),
    }
}

fn special_v4(v4: Ipv4Addr) -> Option<SpecialRange> {
    V4.iter()
        .find(|(net, bits, ..)| in_net(IpAddr::V4(v4), IpAddr::from(*net), *bits))
        .map(|(net, bits, name, op)| SpecialRange {
            name: (*name).to_string(),
            net: IpAddr::from(*net),
            bits: *bits,
            operator_reachable: *op,
        })
}

fn special_v6(v6: Ipv6Addr) -> Option<SpecialRange> {
    if let Some(found) = V6
        .iter()
        .find(|(net, bits, ..)| in_net(IpAddr::V6(v6), IpAddr::from(*net), *bits))
    {
        let (net, bits, name, op) = found;
        return Some(SpecialRange {
            name: (*name).to_string(),
            net: IpAddr::from(*net),
            bits: *bits,
            operator_reachable: *op,
        });
    }
    let n = u128::from(v6);
    // IPv4-compatible (::a.b.c.d, deprecated): nothing legitimate uses it any more.
    if n >> 32 == 0 {
        let carried = Ipv4Addr::from(n as u32);
        let name = match special_v4(carried) {
            Some(inner) => format!("IPv4-compatible form of {}", inner.name),
            None => "IPv4-compatible (deprecated)".to_string(),
        };
        return Some(SpecialRange {
            name,
            net: IpAddr::V6(Ipv6Addr::UNSPECIFIED),
            bits: 96,
            operator_reachable: false,
        });
    }
    // NAT64 (64:ff9b::/96, the IPv4 address in the last 32 bits) and 6to4 (2002::/16, the
    // IPv4 address in bits 16..48): a gateway turns them into the IPv4 address they carry.
    let embedded = [
        (0x0064_ff9b_u128 << 96, 96u8, 0u32, "NAT64"),
        (0x2002_u128 << 112, 16, 80, "6to4"),
    ];
    for (prefix, plen, shift, form) in embedded {
        let mask = u128::MAX << (128 - plen);
        if n & mask != prefix {
            continue;
        }
        let carried = Ipv4Addr::from((n >> shift) as u32);
        let inner = special_v4(carried)?;
        let inner_net = u128::from(u32::from(match inner.net {
            IpAddr::V4(a) => a,
            IpAddr::V6(_) => return None,
        }));
        return Some(SpecialRange {
            name: format!("{form} form of {}", inner.name),
            net: IpAddr::V6(Ipv6Addr::from(prefix | (inner_net << shift))),
            bits: plen + inner.bits,
            operator_reachable: false,
        });
    }
    None
}

/// IPv4-mapped IPv6 addresses (`::ffff:a.b.c.d`) are the IPv4 address they carry: that is
/// where a socket connects.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6
            .to_ipv4_mapped()
            .map(IpAddr::V4)
            .unwrap_or(IpAddr::V6(v6)),
        v4 => v4,
    }
}

/// An allow entry's network in canonical form: a network inside `::ffff:0:0/96` becomes the
/// IPv4 network it maps (`::ffff:10.0.0.0/104` is `10.0.0.0/8`).
pub fn canonical_net(net: IpAddr, bits: u8) -> (IpAddr, u8) {
    match net {
        IpAddr::V6(v6) if bits >= 96 => match v6.to_ipv4_mapped() {
            Some(v4) => (IpAddr::V4(v4), bits - 96),
            None => (net, bits),
        },
        _ => (net, bits),
    }
}

/// Whether `ip` lies in `net/bits` (both of one family; a prefix longer than the family's is
/// treated as the full length).
pub fn in_net(ip: IpAddr, net: IpAddr, bits: u8) -> bool {
    match (ip, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => {
            let bits = u32::from(bits.min(32));
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(a) & mask == u32::from(n) & mask
        }
        (IpAddr::V6(a), IpAddr::V6(n)) => {
            let bits = u32::from(bits.min(128));
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(a) & mask == u128::from(n) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(ip: &str) -> Option<String> {
        special_range(ip.parse().unwrap()).map(|r| r.name().to_string())
    }

    #[test]
    fn every_special_range_is_named() {
        for (ip, name) in [
            ("127.0.0.1", "loopback"),
            ("127.255.1.2", "loopback"),
            ("::1", "loopback"),
            ("169.254.169.254", "link-local"),
            ("fe80::1", "link-local"),
            ("febf::1", "link-local"),
            ("10.1.2.3", "private"),
            ("172.31.0.1", "private"),
            ("192.168.1.1", "private"),
            ("fd00::1", "private (unique local)"),
            ("100.64.0.1", "shared (CGNAT)"),
            ("224.0.0.1", "multicast"),
            ("ff02::1", "multicast"),
            ("0.0.0.0", "unspecified"),
            ("0.1.2.3", "unspecified"),
            ("::", "unspecified"),
            ("255.255.255.255", "broadcast"),
            ("240.0.0.1", "reserved"),
            ("192.0.2.1", "documentation"),
            ("198.51.100.1", "documentation"),
            ("203.0.113.1", "documentation"),
            ("2001:db8::1", "documentation"),
            ("198.18.0.1", "benchmarking"),
            ("198.19.255.255", "benchmarking"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local"),
            ("::127.0.0.1", "IPv4-compatible form of loopback"),
            ("::8.8.8.8", "IPv4-compatible (deprecated)"),
            ("64:ff9b::a9fe:a9fe", "NAT64 form of link-local"),
            ("64:ff9b::127.0.0.1", "NAT64 form of loopback"),
            ("2002:a9fe:a9fe::1", "6to4 form of link-local"),
            ("2002:7f00:1::", "6to4 form of loopback"),
            ("2001::1", "Teredo"),
        ] {
            assert_eq!(range(ip).as_deref(), Some(name), "{ip}");
        }
        for public in [
            "93.184.216.34",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2606:4700::1111",
            "64:ff9b::808:808",
            "2002:808:808::1",
            "::ffff:8.8.8.8",
        ] {
            assert_eq!(range(public), None, "{public}");
        }
    }

    #[test]
    fn embedded_ranges_are_the_embedding_of_the_ipv4_range() {
        let r = special_range("2002:7f00:1::".parse().unwrap()).unwrap();
        assert_eq!(r.cidr(), "2002:7f00::/24");
        let r = special_range("64:ff9b::a9fe:a9fe".parse().unwrap()).unwrap();
        assert_eq!(r.cidr(), "64:ff9b::a9fe:0/112");
        let lo = special_range("127.0.0.1".parse().unwrap()).unwrap();
        assert!(lo.contains_net("127.0.0.1".parse().unwrap(), 32));
        assert!(lo.contains_net("127.0.0.0".parse().unwrap(), 8));
        assert!(!lo.contains_net("0.0.0.0".parse().unwrap(), 0));
        assert!(!lo.contains_net("0.0.0.0".parse().unwrap(), 1));
        assert!(!lo.contains_net("::".parse().unwrap(), 0));
    }

    #[test]
    fn mapped_networks_are_canonical_and_prefixes_never_overflow() {
        let (net, bits) = canonical_net("::ffff:10.0.0.0".parse().unwrap(), 104);
        assert_eq!((net.to_string(), bits), ("10.0.0.0".to_string(), 8));
        assert!(!in_net(
            "10.1.1.1".parse().unwrap(),
            "10.0.0.0".parse().unwrap(),
            200
        ));
        assert!(in_net(
            "10.0.0.0".parse().unwrap(),
            "10.0.0.0".parse().unwrap(),
            200
        ));
        assert!(in_net(
            "1.2.3.4".parse().unwrap(),
            "0.0.0.0".parse().unwrap(),
            0
        ));
    }
}
