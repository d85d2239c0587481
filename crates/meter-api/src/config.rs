//! The `[api]` section of the configuration.

use std::path::PathBuf;

use meter_runtime::TlsFiles;

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
    /// Ingest's late-event horizon (`ingest.max_past_seconds`, which meterd
    /// copies here): what makes a timeframe final.
    #[serde(skip)]
    pub late_horizon_seconds: i64,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            listen: "127.0.0.1:8080".into(),
            grpc_listen: "127.0.0.1:50052".into(),
            tls_cert_file: None,
            tls_key_file: None,
            late_horizon_seconds: meter_core::Limits::default().max_past_ms / 1000,
        }
    }
}

impl ApiConfig {
    /// The TLS certificate and key, `None` for plaintext; the error names
    /// the key.
    pub fn tls(&self) -> anyhow::Result<Option<TlsFiles>> {
        TlsFiles::load("api", self.tls_cert_file.as_deref(), self.tls_key_file.as_deref())
    }
}
