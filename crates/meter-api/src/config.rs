//! The `[api]` section of the configuration.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Where the API listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// HTTP/JSON listen address.
    pub listen: String,
    /// gRPC listen address (CheckQuota).
    pub grpc_listen: String,
    /// TLS for HTTP and gRPC: the certificate chain and key (PEM); both or
    /// neither.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:8080".into(),
            grpc_listen: "127.0.0.1:50052".into(),
            tls_cert_file: None,
            tls_key_file: None,
        }
    }
}

impl ApiConfig {
    /// The TLS certificate and key files, `None` for plaintext.
    pub fn tls_files(&self) -> anyhow::Result<Option<(&Path, &Path)>> {
        match (&self.tls_cert_file, &self.tls_key_file) {
            (None, None) => Ok(None),
            (Some(c), Some(k)) => Ok(Some((c, k))),
            _ => anyhow::bail!("api.tls_cert_file and api.tls_key_file go together"),
        }
    }
}
