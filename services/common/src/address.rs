//! What kind of address a host is, for deciding where regsweep may send
//! credentials. One classification for registry URLs, realm allow-lists
//! and bearer realms, whose literal hosts are classified when a request is
//! made and whose names are classified on every address they resolve to.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// An address's kind, from most to least trusted with credentials.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AddressClass {
    Public,
    /// RFC 1918, carrier-grade NAT (100.64/10) and IPv6 unique local.
    Private,
    Loopback,
    /// Link-local, where cloud metadata services answer (169.254.169.254,
    /// fd00:ec2::254, `metadata.google.internal`), and which no registry
    /// or token server lives on.
    LinkLocalOrMetadata,
    /// Unspecified, broadcast or multicast: nothing to send a request to.
    NotUnicast,
}

/// Names of cloud metadata services, which resolve to link-local addresses
/// only inside the cloud: refused by name so that outside it they are too.
const METADATA_NAMES: &[&str] = &["metadata.google.internal", "metadata"];

impl AddressClass {
    pub fn of(ip: IpAddr) -> Self {
        match ip {
            IpAddr::V4(v4) => Self::of_v4(v4),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => Self::of_v4(v4),
                None => Self::of_v6(v6),
            },
        }
    }

    /// A URL's host: an address literal's class, a metadata service's
    /// name's; `None` for any other name, known only once resolved.
    pub fn of_host(host: url::Host<&str>) -> Option<Self> {
        match host {
            url::Host::Ipv4(v4) => Some(Self::of(IpAddr::V4(v4))),
            url::Host::Ipv6(v6) => Some(Self::of(IpAddr::V6(v6))),
            url::Host::Domain(name) => {
                let name = name.trim_end_matches('.').to_ascii_lowercase();
                METADATA_NAMES.contains(&name.as_str()).then_some(Self::LinkLocalOrMetadata)
            }
        }
    }

    /// Never a registry's or a token server's, whoever vouches for it.
    pub fn never_trusted(self) -> bool {
        matches!(self, Self::LinkLocalOrMetadata | Self::NotUnicast)
    }

    /// Inside the network: a foreign realm's only if allow-listed.
    pub fn internal(self) -> bool {
        self != Self::Public
    }

    fn of_v4(ip: Ipv4Addr) -> Self {
        let [a, b, ..] = ip.octets();
        if ip.is_link_local() {
            Self::LinkLocalOrMetadata
        } else if ip.is_loopback() {
            Self::Loopback
        } else if ip.is_private() || (a == 100 && (64..128).contains(&b)) {
            Self::Private
        } else if ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast() {
            Self::NotUnicast
        } else {
            Self::Public
        }
    }

    fn of_v6(ip: Ipv6Addr) -> Self {
        const AWS_METADATA: Ipv6Addr = Ipv6Addr::new(0xfd00, 0xec2, 0, 0, 0, 0, 0, 0x254);
        let first = ip.segments()[0];
        if ip.is_loopback() {
            Self::Loopback
        } else if first & 0xffc0 == 0xfe80 || ip == AWS_METADATA {
            Self::LinkLocalOrMetadata
        } else if first & 0xfe00 == 0xfc00 {
            Self::Private
        } else if ip.is_unspecified() || ip.is_multicast() {
            Self::NotUnicast
        } else {
            Self::Public
        }
    }
}

impl fmt::Display for AddressClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Public => "a public address",
            Self::Private => "a private address",
            Self::Loopback => "a loopback address",
            Self::LinkLocalOrMetadata => "a link-local or cloud metadata address",
            Self::NotUnicast => "a non-unicast address",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::AddressClass::{self, *};

    fn host(text: &str) -> Option<AddressClass> {
        let url = url::Url::parse(&format!("http://{text}/")).expect("url");
        AddressClass::of_host(url.host().expect("host"))
    }

    #[test]
    fn hosts_are_classified_once_for_every_use() {
        for (text, class) in [
            ("8.8.8.8", Some(Public)),
            ("[2001:4860::8888]", Some(Public)),
            ("10.1.2.3", Some(Private)),
            ("100.64.0.1", Some(Private)),
            ("[fd12::1]", Some(Private)),
            ("[::ffff:192.168.1.1]", Some(Private)),
            ("127.0.0.1", Some(Loopback)),
            ("[::1]", Some(Loopback)),
            ("169.254.169.254", Some(LinkLocalOrMetadata)),
            ("[fe80::1]", Some(LinkLocalOrMetadata)),
            ("[fd00:ec2::254]", Some(LinkLocalOrMetadata)),
            ("[::ffff:169.254.1.1]", Some(LinkLocalOrMetadata)),
            ("metadata.google.internal.", Some(LinkLocalOrMetadata)),
            ("Metadata", Some(LinkLocalOrMetadata)),
            ("0.0.0.0", Some(NotUnicast)),
            ("224.0.0.1", Some(NotUnicast)),
            ("[ff02::1]", Some(NotUnicast)),
            ("registry.example.com", None),
        ] {
            assert_eq!(host(text), class, "{text}");
        }
    }

    #[test]
    fn only_link_local_metadata_and_non_unicast_are_never_trusted() {
        let never: Vec<AddressClass> = [Public, Private, Loopback, LinkLocalOrMetadata, NotUnicast]
            .into_iter()
            .filter(|c| c.never_trusted())
            .collect();
        assert_eq!(never, [LinkLocalOrMetadata, NotUnicast]);
        assert!(!Public.internal() && Private.internal() && Loopback.internal());
    }
}
