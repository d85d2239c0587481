//! The HTTP client under the ClickHouse client: plain `http://`, or
//! `https://` trusting the system's roots or, when `ca_file` is set, the
//! certificates in that PEM file (a private CA, a self-signed server).

use std::sync::Arc;
use std::time::Duration;

use hyper::Uri;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;

use crate::failover::Failover;
use crate::{Error, Result};

/// How long a TCP connection to ClickHouse may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// The roots an `https://` connection trusts.
fn roots(ca_file: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    if ca_file.is_empty() {
        let found = rustls_native_certs::load_native_certs();
        let (added, _) = roots.add_parsable_certificates(found.certs);
        if added == 0 {
            return Err(Error::Tls(format!(
                "no usable certificate among the system's roots ({} errors); set clickhouse.ca_file",
                found.errors.len()
            )));
        }
        return Ok(roots);
    }
    let named = |e: &dyn std::fmt::Display| Error::Tls(format!("clickhouse.ca_file {ca_file}: {e}"));
    for cert in CertificateDer::pem_file_iter(ca_file).map_err(|e| named(&e))? {
        roots.add(cert.map_err(|e| named(&e))?).map_err(|e| named(&e))?;
    }
    if roots.is_empty() {
        return Err(named(&"holds no PEM certificate"));
    }
    Ok(roots)
}

/// A connection pool for `http://` and `https://` URLs, connecting to the
/// first of `replicas` that accepts (`failover.rs`). `B` is the ClickHouse
/// client's request body type (inferred where it is used).
pub(crate) fn http_client<B>(
    ca_file: &str,
    replicas: Vec<Uri>,
) -> Result<Client<Failover<HttpsConnector<HttpConnector>>, B>>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
{
    // Roots are loaded only for https: a plain URL never fails on them
    // (`StoreConfig::urls` refuses a list that mixes the two).
    let https = replicas.first().and_then(Uri::scheme_str) == Some("https");
    let roots = if https { roots(ca_file)? } else { RootCertStore::empty() };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tcp = HttpConnector::new();
    tcp.set_keepalive(Some(Duration::from_secs(60)));
    // An address that drops packets must not hold a connection (and the
    // failover to the next replica) for the system's minutes.
    tcp.set_connect_timeout(Some(CONNECT_TIMEOUT));
    tcp.enforce_http(false);
    let connector = hyper_rustls::HttpsConnectorBuilder::new()
        .with_tls_config(tls)
        .https_or_http()
        .enable_http1()
        .wrap_connector(tcp);
    // ClickHouse closes idle keep-alive connections after 3 s.
    let connector = Failover::new(connector, replicas);
    Ok(Client::builder(TokioExecutor::new()).pool_idle_timeout(Duration::from_secs(2)).build(connector))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let e = roots("/nonexistent/ca.pem").expect_err("missing");
        assert!(e.to_string().contains("clickhouse.ca_file /nonexistent/ca.pem"), "{e}");
        let empty = std::env::temp_dir().join(format!("meter-empty-ca-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").expect("write");
        let e = roots(empty.to_str().expect("utf-8")).expect_err("empty");
        assert!(e.to_string().contains("holds no PEM certificate"), "{e}");
        std::fs::remove_file(&empty).ok();
    }

    #[test]
    fn the_system_roots_are_found() {
        assert!(!roots("").expect("system roots").is_empty());
    }
}
