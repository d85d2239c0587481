//! Ingest's errors and their one mapping to gRPC status codes.

use meter_core::BatchError;
use meter_kafka::ProduceError;

/// Why a `Report` failed.
#[derive(Debug, thiserror::Error)]
pub enum IngestError {
    /// Bad input: nothing of the batch was written.
    #[error("{0}")]
    Invalid(#[from] BatchError),
    /// Kafka did not confirm the write: retry the same batch.
    #[error("{0}; retry the batch")]
    Unavailable(#[from] ProduceError),
}

impl IngestError {
    /// Bounded label for metrics.
    pub fn outcome(&self) -> &'static str {
        match self {
            IngestError::Invalid(_) => "invalid",
            IngestError::Unavailable(_) => "unavailable",
        }
    }
}

impl From<IngestError> for tonic::Status {
    fn from(e: IngestError) -> Self {
        match &e {
            IngestError::Invalid(_) => tonic::Status::invalid_argument(e.to_string()),
            IngestError::Unavailable(ProduceError::QueueFull) => tonic::Status::resource_exhausted(e.to_string()),
            IngestError::Unavailable(_) => tonic::Status::unavailable(e.to_string()),
        }
    }
}
