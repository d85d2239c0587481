//! The `[ingest]` section of the configuration.

use std::path::PathBuf;

use meter_core::Limits;
use meter_runtime::TlsFiles;
use serde::Deserialize;

/// Where ingest listens and what it accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// gRPC listen address.
    pub listen: String,
    /// HTTP listen address of Neon's `consumption_metrics` JSON
    /// (`POST /v1/events`); empty: no HTTP endpoint.
    pub http_listen: String,
    /// Largest accepted request, bytes.
    pub max_message_bytes: usize,
    pub max_events_per_batch: usize,
    /// Oldest accepted event time, seconds before now.
    pub max_past_seconds: i64,
    /// Newest accepted event time, seconds after now.
    pub max_future_seconds: i64,
    /// Largest accepted value of one event.
    pub max_event_value: u64,
    /// Events per second each source may report; 0: no limit.
    pub rate_limit_events_per_second: u64,
    /// Events a source may send at once above its rate; 0: one second's worth.
    pub rate_limit_burst_events: u64,
    /// Reports being handled at once (waiting for Kafka included); beyond it
    /// a Report is answered UNAVAILABLE at once, so memory stays bounded
    /// when Kafka is slow or down.
    pub max_in_flight_requests: usize,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
    /// TLS: the server's certificate chain and key (PEM). Both or neither.
    pub tls_cert_file: Option<PathBuf>,
    pub tls_key_file: Option<PathBuf>,
    /// mTLS: CA (PEM) that client certificates must chain to; with it, a
    /// client without a valid certificate cannot connect, and a credential
    /// whose `sha256` is the certificate's fingerprint needs no token.
    pub tls_client_ca_file: Option<PathBuf>,
}

impl Default for IngestConfig {
    fn default() -> Self {
        let l = Limits::default();
        IngestConfig {
            listen: "127.0.0.1:50051".into(),
            http_listen: "127.0.0.1:8081".into(),
            max_message_bytes: 4 << 20,
            max_events_per_batch: l.max_events_per_batch,
            max_past_seconds: l.max_past_ms / 1000,
            max_future_seconds: l.max_future_ms / 1000,
            max_event_value: l.max_value,
            rate_limit_events_per_second: 0,
            rate_limit_burst_events: 0,
            max_in_flight_requests: 256,
            max_concurrent_streams: 64,
            tls_cert_file: None,
            tls_key_file: None,
            tls_client_ca_file: None,
        }
    }
}

impl IngestConfig {
    /// The TLS settings, `None` for plaintext; the error names the key.
    pub fn tls(&self) -> anyhow::Result<Option<tonic::transport::ServerTlsConfig>> {
        use anyhow::Context;
        use tonic::transport::{Certificate, Identity, ServerTlsConfig};
        let Some(files) = TlsFiles::load("ingest", self.tls_cert_file.as_deref(), self.tls_key_file.as_deref())? else {
            anyhow::ensure!(
                self.tls_client_ca_file.is_none(),
                "ingest.tls_client_ca_file needs ingest.tls_cert_file and ingest.tls_key_file"
            );
            return Ok(None);
        };
        let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(files.cert, files.key));
        if let Some(ca) = &self.tls_client_ca_file {
            let pem =
                std::fs::read(ca).with_context(|| format!("ingest.tls_client_ca_file: reading {}", ca.display()))?;
            tls = tls.client_ca_root(Certificate::from_pem(pem)).client_auth_optional(false);
        }
        Ok(Some(tls))
    }

    /// The validation limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_events_per_batch: self.max_events_per_batch,
            max_past_ms: self.max_past_seconds * 1000,
            max_future_ms: self.max_future_seconds * 1000,
            max_value: self.max_event_value,
        }
    }
}
