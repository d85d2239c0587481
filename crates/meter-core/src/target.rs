//! Where webhooks may be sent: public addresses only, unless configuration
//! allows a class of internal ones (server-side request forgery guard).
//!
//! The table follows IANA's IPv4 and IPv6 Special-Purpose Address
//! Registries: every block that is not globally reachable is refused, and
//! addresses that embed an IPv4 address a gateway would connect to
//! (IPv4-mapped, IPv4-compatible, NAT64 `64:ff9b::/96`, 6to4 `2002::/16`)
//! are judged by that IPv4 address.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;

/// A class of addresses that are not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddressClass {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16, 100.64/10 (CGNAT), 198.18/15
    /// (benchmarking), fc00::/7, fec0::/10 (site-local), 64:ff9b:1::/48
    /// (local NAT64).
    Private,
    /// 169.254/16, fe80::/10 (cloud metadata excluded: see `Metadata`).
    LinkLocal,
    /// Cloud instance metadata: 169.254.169.254, fd00:ec2::254.
    Metadata,
    /// Never a web server: 0.0.0.0/8, 192.0.0.0/24 (protocol assignments),
    /// the documentation ranges (192.0.2/24, 198.51.100/24, 203.0.113/24,
    /// 2001:db8::/32, 3fff::/20), 192.88.99/24 (6to4 relays), multicast,
    /// 240/4 and broadcast, ::, 100::/64 (discard), 2001::/32 (Teredo),
    /// 2001:2::/48 (benchmarking), 2001:10::/28 (ORCHID), 5f00::/16 (SRv6).
    Unroutable,
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressClass::Loopback => "loopback",
            AddressClass::Private => "private",
            AddressClass::LinkLocal => "link-local",
            AddressClass::Metadata => "metadata",
            AddressClass::Unroutable => "unroutable",
        })
    }
}

/// The class of a non-public address; `None` for a public one.
pub fn classify(ip: IpAddr) -> Option<AddressClass> {
    match ip {
        IpAddr::V4(v4) => classify_v4(v4),
        IpAddr::V6(v6) => match embedded_v4(v6) {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

/// The IPv4 address an IPv6 address stands for, where a gateway or the
/// stack would connect to it: IPv4-mapped `::ffff:a.b.c.d`, IPv4-compatible
/// `::a.b.c.d` (deprecated; not `::` or `::1`), NAT64 `64:ff9b::a.b.c.d`,
/// and 6to4 `2002:aabb:ccdd::/48`.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let tail = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    if let Some(v4) = ip.to_ipv4_mapped() {
        return Some(v4);
    }
    if s[..6] == [0; 6] && !ip.is_unspecified() && !ip.is_loopback() {
        return Some(tail);
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some(tail);
    }
    if s[0] == 0x2002 {
        return Some(Ipv4Addr::new((s[1] >> 8) as u8, s[1] as u8, (s[2] >> 8) as u8, s[2] as u8));
    }
    None
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], len: u32) -> bool {
    let mask = if len == 0 { 0 } else { u32::MAX << (32 - len) };
    u32::from(ip) & mask == u32::from(Ipv4Addr::from(net)) & mask
}

fn in_v6(ip: Ipv6Addr, net: Ipv6Addr, len: u32) -> bool {
    let mask = if len == 0 { 0 } else { u128::MAX << (128 - len) };
    u128::from(ip) & mask == u128::from(net) & mask
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    use AddressClass::*;
    const TABLE: &[([u8; 4], u32, AddressClass)] = &[
        ([169, 254, 169, 254], 32, Metadata),
        ([127, 0, 0, 0], 8, Loopback),
        ([10, 0, 0, 0], 8, Private),
        ([172, 16, 0, 0], 12, Private),
        ([192, 168, 0, 0], 16, Private),
        ([100, 64, 0, 0], 10, Private),
        ([198, 18, 0, 0], 15, Private),
        ([169, 254, 0, 0], 16, LinkLocal),
        ([0, 0, 0, 0], 8, Unroutable),
        ([192, 0, 0, 0], 24, Unroutable),
        ([192, 0, 2, 0], 24, Unroutable),
        ([198, 51, 100, 0], 24, Unroutable),
        ([203, 0, 113, 0], 24, Unroutable),
        ([192, 88, 99, 0], 24, Unroutable),
        ([224, 0, 0, 0], 3, Unroutable), // multicast, 240/4 reserved, broadcast
    ];
    TABLE.iter().find(|(net, len, _)| in_v4(ip, *net, *len)).map(|&(_, _, class)| class)
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    use AddressClass::*;
    let v6 = |s: [u16; 8]| Ipv6Addr::new(s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7]);
    let table: [(Ipv6Addr, u32, AddressClass); 15] = [
        (v6([0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254]), 128, Metadata),
        (Ipv6Addr::LOCALHOST, 128, Loopback),
        (Ipv6Addr::UNSPECIFIED, 128, Unroutable),
        (v6([0xfc00, 0, 0, 0, 0, 0, 0, 0]), 7, Private),
        (v6([0xfec0, 0, 0, 0, 0, 0, 0, 0]), 10, Private),
        (v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0]), 48, Private),
        (v6([0xfe80, 0, 0, 0, 0, 0, 0, 0]), 10, LinkLocal),
        (v6([0xff00, 0, 0, 0, 0, 0, 0, 0]), 8, Unroutable),
        (v6([0x100, 0, 0, 0, 0, 0, 0, 0]), 64, Unroutable),
        (v6([0x2001, 0, 0, 0, 0, 0, 0, 0]), 32, Unroutable),
        (v6([0x2001, 2, 0, 0, 0, 0, 0, 0]), 48, Unroutable),
        (v6([0x2001, 0x10, 0, 0, 0, 0, 0, 0]), 28, Unroutable),
        (v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0]), 32, Unroutable),
        (v6([0x3fff, 0, 0, 0, 0, 0, 0, 0]), 20, Unroutable),
        (v6([0x5f00, 0, 0, 0, 0, 0, 0, 0]), 16, Unroutable),
    ];
    if let Some(&(_, _, class)) = table.iter().find(|(net, len, _)| in_v6(ip, *net, *len)) {
        return Some(class);
    }
    // Outside 2000::/3 (global unicast) nothing is assigned for the Internet.
    (!in_v6(ip, v6([0x2000, 0, 0, 0, 0, 0, 0, 0]), 3)).then_some(Unroutable)
}

/// Why an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ip} is a {class} address; webhooks go to public addresses unless `security.webhook_allowed_targets` lists \"{class}\"")]
pub struct TargetRefused {
    pub ip: IpAddr,
    pub class: AddressClass,
}

/// Checks `ip` against the classes configuration allows.
pub fn check_target(ip: IpAddr, allowed: &[AddressClass]) -> Result<(), TargetRefused> {
    match classify(ip) {
        Some(class) if !allowed.contains(&class) => Err(TargetRefused { ip, class }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn class(s: &str) -> Option<AddressClass> {
        classify(s.parse().unwrap())
    }

    #[test]
    fn classifies_addresses() {
        use AddressClass::*;
        for (ip, want) in [
            ("127.0.0.1", Some(Loopback)),
            ("127.8.9.1", Some(Loopback)),
            ("::1", Some(Loopback)),
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("10.1.2.3", Some(Private)),
            ("172.16.0.1", Some(Private)),
            ("172.31.255.255", Some(Private)),
            ("192.168.1.1", Some(Private)),
            ("100.64.0.1", Some(Private)),
            ("fd12::1", Some(Private)),
            ("169.254.1.1", Some(LinkLocal)),
            ("fe80::1", Some(LinkLocal)),
            ("169.254.169.254", Some(Metadata)),
            ("::ffff:169.254.169.254", Some(Metadata)),
            ("fd00:ec2::254", Some(Metadata)),
            ("0.0.0.0", Some(Unroutable)),
            ("::", Some(Unroutable)),
            ("224.0.0.1", Some(Unroutable)),
            ("255.255.255.255", Some(Unroutable)),
            ("8.8.8.8", None),
            ("172.32.0.1", None),
            ("100.128.0.1", None),
            ("2606:4700::1111", None),
            // IANA special-purpose blocks (the gaps found in review).
            ("192.0.0.8", Some(Unroutable)),
            ("192.0.2.10", Some(Unroutable)),
            ("198.51.100.7", Some(Unroutable)),
            ("203.0.113.200", Some(Unroutable)),
            ("192.88.99.1", Some(Unroutable)),
            ("198.18.0.1", Some(Private)),
            ("198.19.255.255", Some(Private)),
            ("198.20.0.1", None),
            ("240.0.0.1", Some(Unroutable)),
            ("192.0.1.1", None),
            // Addresses embedding IPv4: judged by the IPv4 address.
            ("64:ff9b::7f00:1", Some(Loopback)),
            ("64:ff9b::a9fe:a9fe", Some(Metadata)),
            ("64:ff9b::808:808", None),
            ("64:ff9b:1::1", Some(Private)),
            ("2002:7f00:1::", Some(Loopback)),
            ("2002:0a00:0001::1", Some(Private)),
            ("2002:0808:0808::1", None),
            ("::127.0.0.1", Some(Loopback)),
            ("::10.0.0.1", Some(Private)),
            ("::8.8.8.8", None),
            // IPv6 special-purpose blocks.
            ("fec0::1", Some(Private)),
            ("100::1", Some(Unroutable)),
            ("2001::1", Some(Unroutable)),
            ("2001:2::1", Some(Unroutable)),
            ("2001:10::1", Some(Unroutable)),
            ("2001:db8::1", Some(Unroutable)),
            ("3fff::1", Some(Unroutable)),
            ("5f00::1", Some(Unroutable)),
            ("ff02::1", Some(Unroutable)),
            ("4000::1", Some(Unroutable)),
            ("2001:4860:4860::8888", None),
        ] {
            assert_eq!(class(ip), want, "{ip}");
        }
    }

    #[test]
    fn allows_only_what_configuration_lists() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let err = check_target(lo, &[]).unwrap_err();
        assert!(err.to_string().contains("loopback") && err.to_string().contains("webhook_allowed_targets"), "{err}");
        assert!(check_target(lo, &[AddressClass::Loopback]).is_ok());
        let md: IpAddr = "169.254.169.254".parse().unwrap();
        assert!(check_target(md, &[AddressClass::LinkLocal]).is_err(), "link-local does not allow metadata");
        assert!(check_target("8.8.8.8".parse().unwrap(), &[]).is_ok());
    }
}
