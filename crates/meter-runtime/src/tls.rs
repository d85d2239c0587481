//! TLS: the certificate and key files of a config section, read once and
//! checked (ingest and the api), and for the HTTP API a listener that
//! completes handshakes concurrently (a slow or silent client cannot hold up
//! the others) and hands axum finished TLS streams.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// How long a client has to complete its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// A certificate chain and its private key (PEM), read from the files a
/// config section names: `{section}.tls_cert_file`, `{section}.tls_key_file`.
#[derive(Clone)]
pub struct TlsFiles {
    section: String,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl std::fmt::Debug for TlsFiles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFiles").field("section", &self.section).field("key", &"<redacted>").finish()
    }
}

impl TlsFiles {
    /// Reads both files; `None` when neither is set. The error names the
    /// key at fault.
    pub fn load(section: &str, cert: Option<&Path>, key: Option<&Path>) -> anyhow::Result<Option<TlsFiles>> {
        let read = |p: &Path, what: &str| {
            std::fs::read(p).with_context(|| format!("{section}.{what}: reading {}", p.display()))
        };
        match (cert, key) {
            (None, None) => Ok(None),
            (Some(c), Some(k)) => Ok(Some(TlsFiles {
                section: section.to_owned(),
                cert: read(c, "tls_cert_file")?,
                key: read(k, "tls_key_file")?,
            })),
            _ => anyhow::bail!("{section}.tls_cert_file and {section}.tls_key_file go together"),
        }
    }

    /// A rustls server configuration (HTTP/1.1) of the chain and key.
    pub fn server_config(&self) -> anyhow::Result<Arc<ServerConfig>> {
        let section = &self.section;
        let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&self.cert)
            .collect::<Result<_, _>>()
            .with_context(|| format!("{section}.tls_cert_file is not PEM certificates"))?;
        anyhow::ensure!(!certs.is_empty(), "{section}.tls_cert_file holds no certificate");
        let key = PrivateKeyDer::from_pem_slice(&self.key)
            .with_context(|| format!("{section}.tls_key_file holds no PEM private key"))?;
        let mut config = ServerConfig::builder()
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .with_context(|| format!("{section}.tls_cert_file and tls_key_file do not match"))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

/// Accepts TCP connections, runs each TLS handshake in its own task, and
/// yields the finished streams.
#[derive(Debug)]
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Serves TLS with `config` on `tcp`; the accept task ends with the
    /// listener (when axum drops it).
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<Self> {
        let local = tcp.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        tokio::spawn(async move {
            loop {
                let (stream, peer) = match tcp.accept().await {
                    Ok(s) => s,
                    Err(e) => {
                        tracing::debug!(error = %e, "tls.accept_failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                if tx.is_closed() {
                    return;
                }
                tokio::spawn(async move {
                    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                        Ok(Ok(tls)) => {
                            let _ = tx.send((tls, peer)).await;
                        }
                        Ok(Err(e)) => tracing::debug!(%peer, error = %e, "tls.handshake_failed"),
                        Err(_) => tracing::debug!(%peer, "tls.handshake_timed_out"),
                    }
                });
            }
        });
        Ok(TlsListener { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(conn) => conn,
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        Ok(self.local)
    }
}
