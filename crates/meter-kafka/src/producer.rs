//! The idempotent producer used by ingest: acks=all, and a batch is reported
//! written only when every one of its records is.

use std::time::Duration;

use futures::future::join_all;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use crate::{KafkaConfig, Result};

/// Why a batch was not written. Ingest answers `UNAVAILABLE`; the client
/// retries the same batch and the aggregator's dedup absorbs what did land.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("kafka did not confirm the write: {0}")]
    Delivery(KafkaError),
    #[error("kafka producer queue is full")]
    QueueFull,
}

/// Writes records to `events_topic` with idempotence and acks=all.
#[derive(Clone)]
pub struct EventProducer {
    producer: FutureProducer,
    topic: String,
}

impl std::fmt::Debug for EventProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventProducer").field("topic", &self.topic).finish()
    }
}

impl EventProducer {
    /// A producer for the configured events topic.
    pub fn new(cfg: &KafkaConfig) -> Result<Self> {
        let producer: FutureProducer = cfg.events_producer_config().create()?;
        Ok(EventProducer { producer, topic: cfg.events_topic.clone() })
    }

    /// Writes every `(key, value)` and waits for all acknowledgements. Fails
    /// if any record failed; the others may have been written (the retry
    /// will be deduplicated downstream).
    pub async fn send_all(&self, records: &[(String, Vec<u8>)]) -> Result<(), ProduceError> {
        let mut pending = Vec::with_capacity(records.len());
        for (key, value) in records {
            let rec = FutureRecord::to(&self.topic).key(key.as_str()).payload(value.as_slice());
            match self.producer.send_result(rec) {
                Ok(f) => pending.push(f),
                Err((KafkaError::MessageProduction(rdkafka::types::RDKafkaErrorCode::QueueFull), _)) => {
                    return Err(ProduceError::QueueFull)
                }
                Err((e, _)) => return Err(ProduceError::Delivery(e)),
            }
        }
        for r in join_all(pending).await {
            match r {
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) => return Err(ProduceError::Delivery(e)),
                Err(_canceled) => return Err(ProduceError::Delivery(KafkaError::Canceled)),
            }
        }
        Ok(())
    }

    /// Waits for every record in flight (shutdown).
    pub fn flush(&self, timeout: Duration) {
        if let Err(e) = self.producer.flush(timeout) {
            tracing::warn!(error = %e, "kafka.flush_incomplete");
        }
    }
}
