//! Transactional producers: state, outbox records and consumer offsets
//! committed together.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::types::RDKafkaErrorCode;

use crate::{KafkaConfig, Result};

/// A producer inside Kafka transactions.
pub type TxProducer = ThreadedProducer<crate::Quiet>;

/// A transactional producer with a unique transactional id starting with
/// `prefix`, initialised (which fences nothing: ids are unique; zombies are
/// fenced through the consumer group metadata sent with the offsets).
pub fn transactional_producer(cfg: &KafkaConfig, prefix: &str) -> Result<TxProducer> {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    let id = format!("{prefix}-{}-{nanos}", std::process::id());
    let p: TxProducer = cfg
        .client_config()
        .set("transactional.id", &id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("transaction.timeout.ms", "15000")
        .create_with_context(crate::Quiet)?;
    p.init_transactions(Duration::from_secs(30))?;
    tracing::info!(transactional_id = %id, "kafka.transactional_producer_ready");
    Ok(p)
}

/// Sends one record inside the current transaction, waiting while the
/// producer's queue is full (any other error is the caller's).
pub fn send_in_transaction<P: ToBytes + ?Sized>(
    producer: &TxProducer,
    mut record: BaseRecord<'_, str, P>,
) -> std::result::Result<(), KafkaError> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                std::thread::sleep(Duration::from_millis(5));
            }
            Err((e, _)) => return Err(e),
        }
    }
}

/// Commits the current transaction once every record of it is delivered.
///
/// rdkafka's `commit_transaction` first flushes, and its flush, when the
/// records are not all delivered at once, polls for a fixed 100 ms: every
/// commit lasted 100 ms or more, the largest part of crossing-to-suspend.
/// Waiting here in 1 ms steps (the threaded producer serves the delivery
/// reports) makes that flush return at once.
pub fn commit_transaction(producer: &TxProducer, timeout: Duration) -> std::result::Result<(), KafkaError> {
    let deadline = std::time::Instant::now() + timeout;
    loop {
        match producer.flush(Duration::ZERO) {
            Ok(()) => break,
            Err(KafkaError::Flush(RDKafkaErrorCode::OperationTimedOut)) if std::time::Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1));
            }
            Err(e) => return Err(e),
        }
    }
    producer.commit_transaction(deadline.saturating_duration_since(std::time::Instant::now()))
}
