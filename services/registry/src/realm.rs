//! Where a Bearer challenge may send us (and our credentials): the lessons
//! of CVE-2020-15157. A realm on the registry's own origin is followed; a
//! realm on a host of the registry's allow-list too, anywhere but at
//! link-local or cloud-metadata addresses; any other realm only over https,
//! and never to loopback, private, link-local or cloud-metadata addresses.
//! Addresses are checked on the literal host and again on every address a
//! name resolves to when connecting.

use std::net::SocketAddr;

use regsweep_common::address::AddressClass;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::Url;

use crate::Error;

/// Whether the realm is on the registry's own scheme, host and port.
pub fn same_origin(realm: &Url, registry: &Url) -> bool {
    realm.scheme() == registry.scheme()
        && realm.host_str() == registry.host_str()
        && realm.port_or_known_default() == registry.port_or_known_default()
}

/// Whether the realm's host (`host`, or `host:port` for that port only) is
/// on the registry's allow-list.
pub fn allowed(realm: &Url, allow_list: &[String]) -> bool {
    let Some(host) = realm.host_str() else {
        return false;
    };
    let host = host.to_ascii_lowercase();
    let with_port = realm.port_or_known_default().map(|p| format!("{host}:{p}"));
    allow_list.iter().any(|entry| *entry == host || Some(entry) == with_port.as_ref())
}

/// A realm refused for where it is, when connecting: final, not a network
/// hiccup. The resolver hands it to reqwest as the connection error's
/// source, where [`refused`] finds it again.
#[derive(Debug, thiserror::Error)]
#[error("refusing bearer realm {host}: it resolves to {class}")]
pub struct RealmRefused {
    pub host: String,
    pub class: AddressClass,
}

/// The resolver's refusal behind a failed request, if that is why it failed.
pub fn refused<'e>(error: &'e (dyn std::error::Error + 'static)) -> Option<&'e RealmRefused> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(refused) = e.downcast_ref::<RealmRefused>() {
            return Some(refused);
        }
        next = e.source();
    }
    None
}

/// Whether a realm of this class may be contacted: on the allow-list
/// (`inside`) anything but link-local, metadata and non-unicast addresses;
/// otherwise only public ones.
fn permitted(class: AddressClass, inside: bool) -> bool {
    if inside { !class.never_trusted() } else { !class.internal() }
}

/// Checks a realm before anything is sent to it.
pub fn check(realm: &Url, registry: &Url, allow_list: &[String]) -> Result<(), Error> {
    if same_origin(realm, registry) {
        return Ok(());
    }
    let host = realm.host_str().unwrap_or_default();
    let inside = allowed(realm, allow_list);
    if !inside && realm.scheme() != "https" {
        return Err(Error::Unauthorized(format!(
            "refusing bearer realm {}://{host}: not https, not the registry's own origin, \
             and not on its realm allow-list",
            realm.scheme()
        )));
    }
    match realm.host().and_then(AddressClass::of_host) {
        Some(class) if !permitted(class, inside) => {
            Err(Error::Unauthorized(format!("refusing bearer realm {host}: {class}")))
        }
        _ => Ok(()),
    }
}

/// Resolves names for foreign realms, keeping only addresses a realm may
/// have: a name that points inside the network is refused at connection;
/// for allow-listed realms (`inside`), only link-local and metadata ones.
#[derive(Debug, Default)]
pub struct GuardedResolver {
    pub inside: bool,
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let inside = self.inside;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let class = |a: &SocketAddr| AddressClass::of(a.ip());
            let allowed: Vec<SocketAddr> =
                resolved.iter().copied().filter(|a| permitted(class(a), inside)).collect();
            let Some(first) = resolved.first() else {
                return Err(format!("{host} resolves to no address").into());
            };
            if allowed.is_empty() {
                let error: Box<dyn std::error::Error + Send + Sync> =
                    Box::new(RealmRefused { host, class: class(first) });
                return Err(error);
            }
            let addrs: Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).expect("url")
    }

    #[test]
    fn realms() {
        let registry = url("http://127.0.0.1:5000");
        let check = |realm: &Url, registry: &Url| super::check(realm, registry, &[]);
        assert!(check(&url("http://127.0.0.1:5000/token"), &registry).is_ok());
        for refused in [
            "http://127.0.0.1:5001/token",
            "http://auth.example.com/token",
            "https://127.0.0.1/token",
            "https://169.254.169.254/latest/meta-data",
            "https://10.1.2.3/token",
            "https://[::1]/token",
            "https://[fd00:ec2::254]/token",
            "https://[::ffff:192.168.1.1]/token",
        ] {
            assert!(check(&url(refused), &registry).is_err(), "{refused}");
        }
        assert!(check(&url("https://auth.example.com/token"), &registry).is_ok());
        assert!(check(&url("https://8.8.8.8/token"), &registry).is_ok());
    }

    #[test]
    fn allow_listed_realms_may_be_inside_but_never_link_local() {
        let registry = url("https://registry.internal");
        let allow = [
            "auth.internal".to_string(),
            "127.0.0.1:5001".to_string(),
            "169.254.169.254".to_string(),
        ];
        for ok in
            ["http://auth.internal/token", "http://AUTH.internal:8080/t", "http://127.0.0.1:5001/t"]
        {
            assert!(check(&url(ok), &registry, &allow).is_ok(), "{ok}");
        }
        for refused in [
            "http://127.0.0.1:5002/t",
            "http://169.254.169.254/latest/meta-data",
            "http://other.internal/token",
        ] {
            assert!(check(&url(refused), &registry, &allow).is_err(), "{refused}");
        }
    }
}
