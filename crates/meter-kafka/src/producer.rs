//! The idempotent producer used by ingest: acks=all, and a batch is reported
//! written only when every one of its records is.

use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::future::join_all;
use rdkafka::error::KafkaError;
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};

use meter_proto::report::EventsRecord;

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

/// How often the partition count of the events topic is read again.
const PARTITIONS_REFRESH: Duration = Duration::from_secs(60);

/// Writes records to `events_topic` with idempotence and acks=all.
#[derive(Clone)]
pub struct EventProducer {
    producer: FutureProducer,
    topic: String,
    /// Partitions of the topic (0: not read yet), and when last read.
    partitions: Arc<(AtomicI32, AtomicU64)>,
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
        Ok(EventProducer { producer, topic: cfg.events_topic.clone(), partitions: Arc::default() })
    }

    /// The partition count of the events topic, read from the cluster's
    /// metadata on first use and again every minute in the background
    /// (the last count is kept while a read fails). Ingest places each
    /// project's batches in `partition_of(project, count)`.
    pub async fn partitions(&self) -> Result<i32, ProduceError> {
        let (count, read_at) = &*self.partitions;
        let known = count.load(Ordering::Relaxed);
        let now = Instant::now().duration_since(*EPOCH).as_millis() as u64;
        let stale = now.saturating_sub(read_at.load(Ordering::Relaxed)) > PARTITIONS_REFRESH.as_millis() as u64;
        if known > 0 && !stale {
            return Ok(known);
        }
        // One caller refreshes; while it does, the others use the last count.
        if known > 0 && read_at.swap(now, Ordering::Relaxed) > now.saturating_sub(PARTITIONS_REFRESH.as_millis() as u64)
        {
            return Ok(known);
        }
        let (producer, topic, shared) = (self.producer.clone(), self.topic.clone(), self.partitions.clone());
        let read = tokio::task::spawn_blocking(move || {
            let n = topic_partitions(&producer, &topic)?;
            shared.0.store(n, Ordering::Relaxed);
            shared.1.store(Instant::now().duration_since(*EPOCH).as_millis() as u64, Ordering::Relaxed);
            Ok::<i32, KafkaError>(n)
        });
        if known > 0 {
            return Ok(known); // refreshed in the background
        }
        match read.await {
            Ok(Ok(n)) => Ok(n),
            Ok(Err(e)) => Err(ProduceError::Delivery(e)),
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

static EPOCH: std::sync::LazyLock<Instant> = std::sync::LazyLock::new(Instant::now);

/// The partition count of `topic` from the cluster's metadata; an error
/// when the topic does not exist (or has no partitions).
fn topic_partitions(producer: &FutureProducer, topic: &str) -> Result<i32, KafkaError> {
    let metadata = producer.client().fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let n = metadata.topics().iter().find(|t| t.name() == topic).map_or(0, |t| t.partitions().len());
    if n == 0 {
        return Err(KafkaError::MetadataFetch(rdkafka::types::RDKafkaErrorCode::UnknownTopicOrPartition));
    }
    Ok(n as i32)
}
