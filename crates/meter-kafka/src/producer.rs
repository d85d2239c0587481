//! The idempotent producer used by ingest: acks=all, and a batch is reported
//! written only when every one of its records is.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use meter_proto::report::EventsRecord;

use crate::metadata::topic_partitions;
use crate::{KafkaConfig, Result};

/// Why a batch was not written. Ingest answers `UNAVAILABLE`; the client
/// retries the same batch and the aggregator's dedup absorbs what did land.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("kafka did not confirm the write: {0}")]
    Delivery(KafkaError),
    #[error("kafka producer queue is full")]
    QueueFull,
    #[error("{0}")]
    Metadata(crate::Error),
}

/// The partition count of the events topic as last read (0: not yet),
/// and when it was last asked for.
#[derive(Debug)]
struct PartitionCount {
    count: i32,
    asked: Instant,
}

/// How often the partition count of the events topic is read again.
const PARTITIONS_REFRESH: Duration = Duration::from_secs(60);

/// Writes records to `events_topic` with idempotence and acks=all.
#[derive(Clone)]
pub struct EventProducer {
    producer: FutureProducer<crate::Quiet>,
    topic: String,
    partitions: Arc<Mutex<PartitionCount>>,
}

impl std::fmt::Debug for EventProducer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventProducer").field("topic", &self.topic).finish()
    }
}

impl EventProducer {
    /// A producer for the configured events topic.
    pub fn new(cfg: &KafkaConfig) -> Result<Self> {
        let producer: FutureProducer<crate::Quiet> = cfg.events_producer_config().create_with_context(crate::Quiet)?;
        let partitions = Arc::new(Mutex::new(PartitionCount { count: 0, asked: Instant::now() }));
        Ok(EventProducer { producer, topic: cfg.events_topic.clone(), partitions })
    }

    /// The partition count of the events topic, read from the cluster's
    /// metadata on first use and again every minute in the background
    /// (the last count is kept while a read fails). Ingest places each
    /// project's batches in `partition_of(project, count)`.
    pub async fn partitions(&self) -> Result<i32, ProduceError> {
        let known = {
            let mut cached = self.partitions.lock().expect("partitions lock");
            if cached.count > 0 && cached.asked.elapsed() < PARTITIONS_REFRESH {
                return Ok(cached.count);
            }
            // This caller reads; until it has, the others keep the last count.
            cached.asked = Instant::now();
            cached.count
        };
        let (producer, topic, shared) = (self.producer.clone(), self.topic.clone(), self.partitions.clone());
        let read = tokio::task::spawn_blocking(move || {
            let n = topic_partitions(producer.client(), &topic)?.len() as i32;
            shared.lock().expect("partitions lock").count = n;
            Ok::<i32, crate::Error>(n)
        });
        if known > 0 {
            return Ok(known); // refreshed in the background
        }
        match read.await {
            Ok(r) => r.map_err(ProduceError::Metadata),
            Err(_) => Err(ProduceError::Delivery(KafkaError::Canceled)),
        }
    }

    /// Writes every record to its partition and waits for all
    /// acknowledgements. Fails if any record failed; the others may have
    /// been written (the retry will be deduplicated downstream).
    pub async fn send_all(&self, records: &[EventsRecord]) -> Result<(), ProduceError> {
        let mut pending = Vec::with_capacity(records.len());
        for r in records {
            let rec =
                FutureRecord::to(&self.topic).partition(r.partition).key(r.key.as_str()).payload(r.value.as_slice());
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
