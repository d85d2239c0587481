//! Where webhooks may go: a URL is checked when it is registered and again
//! at every delivery, and the delivering client resolves names through
//! `GuardedResolver`, which drops refused addresses, so a name re-pointed
//! at an internal address after registration is refused too.

use std::net::SocketAddr;
use std::sync::Arc;

use meter_core::target::{check_target, AddressClass};
use reqwest::Url;

/// Checks a webhook URL: http(s), a host, and every address it resolves to
/// public or of an allowed class. The error names the problem.
pub async fn check_webhook_url(url: &str, allowed: &[AddressClass]) -> Result<(), String> {
    let u = Url::parse(url).map_err(|e| format!("{url:?} is not a URL: {e}"))?;
    if !matches!(u.scheme(), "http" | "https") {
        return Err(format!("{url:?} must start with http:// or https://"));
    }
    let port = u.port_or_known_default().unwrap_or(443);
    match u.host() {
        None => Err(format!("{url:?} has no host")),
        Some(url::Host::Ipv4(ip)) => check_target(ip.into(), allowed).map_err(|e| e.to_string()),
        Some(url::Host::Ipv6(ip)) => check_target(ip.into(), allowed).map_err(|e| e.to_string()),
        Some(url::Host::Domain(d)) => {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((d, port))
                .await
                .map_err(|e| format!("host {d:?} does not resolve: {e}"))?
                .collect();
            for a in &addrs {
                check_target(a.ip(), allowed).map_err(|e| format!("host {d:?} resolves to {e}"))?;
            }
            if addrs.is_empty() {
                return Err(format!("host {d:?} resolves to no address"));
            }
            Ok(())
        }
    }
}

/// A reqwest resolver that keeps only the addresses webhooks may go to.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    allowed: Arc<Vec<AddressClass>>,
}

impl GuardedResolver {
    /// Public addresses, and those of the `allowed` classes.
    pub fn new(allowed: &[AddressClass]) -> Self {
        GuardedResolver { allowed: Arc::new(allowed.to_vec()) }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allowed = self.allowed.clone();
        Box::pin(async move {
            let host = name.as_str().to_owned();
            let (mut kept, mut refused) = (Vec::new(), None);
            for a in tokio::net::lookup_host((host.as_str(), 0)).await? {
                match check_target(a.ip(), &allowed) {
                    Ok(()) => kept.push(a),
                    Err(e) => refused = refused.or(Some(e)),
                }
            }
            match (kept.is_empty(), refused) {
                (true, Some(e)) => Err(format!("{host} resolves to {e}").into()),
                (true, None) => Err(format!("{host} resolves to no address").into()),
                (false, _) => Ok(Box::new(kept.into_iter()) as reqwest::dns::Addrs),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_internal_targets_unless_allowed() {
        for (url, want) in [
            ("http://127.0.0.1:9/hook", Some("loopback")),
            ("http://localhost:9/hook", Some("loopback")),
            ("http://[::1]/hook", Some("loopback")),
            ("http://10.0.0.8/hook", Some("private")),
            ("http://169.254.169.254/latest/meta-data/", Some("metadata")),
            ("http://[fe80::1]/x", Some("link-local")),
            ("ftp://example.com/x", Some("http:// or https://")),
            ("not a url", Some("is not a URL")),
            ("https://8.8.8.8/hook", None),
        ] {
            let got = check_webhook_url(url, &[]).await;
            match want {
                Some(text) => assert!(got.as_ref().is_err_and(|e| e.contains(text)), "{url}: {got:?}"),
                None => assert_eq!(got, Ok(()), "{url}"),
            }
        }
        assert_eq!(check_webhook_url("http://localhost:9/hook", &[AddressClass::Loopback]).await, Ok(()));
    }

    #[tokio::test]
    async fn the_delivering_client_cannot_reach_refused_names() {
        // A server on loopback, reached by name: refused by the resolver.
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = l.local_addr().unwrap().port();
        let client = reqwest::Client::builder().dns_resolver(Arc::new(GuardedResolver::new(&[]))).build().unwrap();
        let err = client.get(format!("http://localhost:{port}/")).send().await.unwrap_err();
        assert!(format!("{err:?}").contains("loopback"), "{err:?}");
    }
}
