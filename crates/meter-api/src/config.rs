//! The `[api]` section of the configuration.

use serde::Deserialize;

/// Where the API listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// HTTP/JSON listen address.
    pub listen: String,
    /// gRPC listen address (CheckQuota).
    pub grpc_listen: String,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig { listen: "127.0.0.1:8080".into(), grpc_listen: "127.0.0.1:50052".into() }
    }
}
