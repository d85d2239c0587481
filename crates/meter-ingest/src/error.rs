//! Ingest's errors and their one mapping to gRPC status codes.

use meter_core::auth::AuthError;
use meter_core::BatchError;
use meter_kafka::ProduceError;
use meter_proto::RETRY_AFTER_MS;

/// Why a `Report` failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Bad input: nothing of the batch was written.
    #[error("{0}")]
    Invalid(#[from] BatchError),
    /// Kafka did not confirm the write: retry the same batch.
    #[error("{0}; retry the batch")]
    Unavailable(#[from] ProduceError),
    /// No token, or one that is unknown or revoked.
    #[error("{0}")]
    Unauthenticated(#[from] AuthError),
    /// The credential may not report as this source or for this project.
    #[error("{0}")]
    PermissionDenied(String),
    /// The source exceeds its rate: retry after `retry_after_ms`.
    #[error("source {source_id:?} exceeds {rate} events/s; retry after {retry_after_ms} ms")]
    RateLimited { source_id: String, rate: u64, retry_after_ms: u64 },
    /// Too many requests in flight (Kafka slow or down): retry with backoff.
    #[error("ingest has {0} requests in flight, its limit (ingest.max_in_flight_requests); retry with backoff")]
    Overloaded(usize),
}

impl IngestError {
    /// True for a batch the pipeline could not judge (no source session):
    /// refused before the ack with FAILED_PRECONDITION (HTTP 412).
    fn is_precondition(&self) -> bool {
        matches!(self, IngestError::Invalid(b) if b.field == "source_session")
    }

    /// The error code in JSON bodies (gRPC's name, lowercase).
    pub fn code(&self) -> &'static str {
        match self {
            _ if self.is_precondition() => "failed_precondition",
            IngestError::Invalid(_) => "invalid_argument",
            IngestError::Unavailable(ProduceError::QueueFull) | IngestError::RateLimited { .. } => "resource_exhausted",
            IngestError::Unavailable(_) | IngestError::Overloaded(_) => "unavailable",
            IngestError::Unauthenticated(_) => "unauthenticated",
            IngestError::PermissionDenied(_) => "permission_denied",
        }
    }

    /// The HTTP status of the JSON endpoint.
    pub fn http_status(&self) -> u16 {
        match self.code() {
            "failed_precondition" => 412,
            "invalid_argument" => 400,
            "resource_exhausted" => 429,
            "unauthenticated" => 401,
            "permission_denied" => 403,
            _ => 503,
        }
    }

    /// Bounded label for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            IngestError::Invalid(_) => "invalid",
            IngestError::Unavailable(_) | IngestError::Overloaded(_) => "unavailable",
            IngestError::Unauthenticated(_) => "unauthenticated",
            IngestError::PermissionDenied(_) => "permission_denied",
            IngestError::RateLimited { .. } => "rate_limited",
        }
    }
}

impl From<IngestError> for tonic::Status {
    fn from(e: IngestError) -> Self {
        match &e {
            _ if e.is_precondition() => tonic::Status::failed_precondition(e.to_string()),
            IngestError::Invalid(_) => tonic::Status::invalid_argument(e.to_string()),
            IngestError::Unavailable(ProduceError::QueueFull) => tonic::Status::resource_exhausted(e.to_string()),
            IngestError::Unavailable(_) | IngestError::Overloaded(_) => tonic::Status::unavailable(e.to_string()),
            IngestError::Unauthenticated(_) => tonic::Status::unauthenticated(e.to_string()),
            IngestError::PermissionDenied(_) => tonic::Status::permission_denied(e.to_string()),
            IngestError::RateLimited { retry_after_ms, .. } => {
                let mut s = tonic::Status::resource_exhausted(e.to_string());
                s.metadata_mut().insert(RETRY_AFTER_MS, (*retry_after_ms).into());
                s
            }
        }
    }
}
