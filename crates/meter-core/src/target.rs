//! Where webhooks may be sent: public addresses only, unless configuration
//! allows a class of internal ones (server-side request forgery guard).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde::Deserialize;

/// A class of addresses that are not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum AddressClass {
    /// 127.0.0.0/8, ::1.
    Loopback,
    /// 10/8, 172.16/12, 192.168/16, 100.64/10 (CGNAT), fc00::/7.
    Private,
    /// 169.254/16, fe80::/10 (cloud metadata excluded: see `Metadata`).
    LinkLocal,
    /// Cloud instance metadata: 169.254.169.254, fd00:ec2::254.
    Metadata,
    /// 0.0.0.0/8, ::, multicast, broadcast, 240/4: never a web server.
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
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => classify_v4(v4),
            None => classify_v6(v6),
        },
    }
}

fn classify_v4(ip: Ipv4Addr) -> Option<AddressClass> {
    let [a, b, ..] = ip.octets();
    if ip == Ipv4Addr::new(169, 254, 169, 254) {
        Some(AddressClass::Metadata)
    } else if ip.is_loopback() {
        Some(AddressClass::Loopback)
    } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
        Some(AddressClass::Private)
    } else if ip.is_link_local() {
        Some(AddressClass::LinkLocal)
    } else if a == 0 || a >= 224 {
        Some(AddressClass::Unroutable)
    } else {
        None
    }
}

fn classify_v6(ip: Ipv6Addr) -> Option<AddressClass> {
    let first = ip.segments()[0];
    if ip == Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254) {
        Some(AddressClass::Metadata)
    } else if ip.is_loopback() {
        Some(AddressClass::Loopback)
    } else if first & 0xfe00 == 0xfc00 {
        Some(AddressClass::Private)
    } else if first & 0xffc0 == 0xfe80 {
        Some(AddressClass::LinkLocal)
    } else if ip.is_unspecified() || ip.is_multicast() {
        Some(AddressClass::Unroutable)
    } else {
        None
    }
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
