//! How our Kafka clients report librdkafka's error events.

use rdkafka::consumer::ConsumerContext;
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::ClientContext;

/// Reaching the end of a partition (asked for with `enable.partition.eof`)
/// is not an error and is not logged; anything else is a WARN (librdkafka
/// retries on its own; the roles' metrics and alerts say when it lasts).
pub(crate) fn client_error(error: &KafkaError, reason: &str) {
    let eof = matches!(error, KafkaError::PartitionEOF(_) | KafkaError::Global(RDKafkaErrorCode::PartitionEOF));
    if !eof {
        tracing::warn!(%error, reason, "kafka.client_error");
    }
}

/// The context of readers outside any group (restore, follow).
pub(crate) struct QuietEof;

impl ClientContext for QuietEof {
    fn error(&self, error: KafkaError, reason: &str) {
        client_error(&error, reason);
    }
}

impl ConsumerContext for QuietEof {}
