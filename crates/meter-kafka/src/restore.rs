//! Reading one partition of a topic from the beginning to its end, committed
//! records only (read_committed): how the aggregator rebuilds its state.

use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

use crate::{Error, KafkaConfig, Result};

/// Every committed `(key, value)` of `topic[partition]`, in offset order. In
/// a compacted topic the last value of each key is the current one. Waits
/// for open transactions of earlier owners to end; gives up after `timeout`.
pub fn read_partition_to_end(
    cfg: &KafkaConfig,
    topic: &str,
    partition: i32,
    timeout: Duration,
) -> Result<Vec<(Vec<u8>, Vec<u8>)>> {
    let consumer: BaseConsumer = cfg
        .client_config()
        .set("group.id", "meter-restore")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .create()?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Beginning)?;
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    let mut out = Vec::new();
    loop {
        if Instant::now() > deadline {
            return Err(Error::RestoreTimeout(timeout, format!("{topic}[{partition}]")));
        }
        match consumer.poll(Duration::from_millis(200)) {
            None => continue,
            Some(Ok(m)) => {
                if let (Some(k), Some(v)) = (m.key(), m.payload()) {
                    out.push((k.to_vec(), v.to_vec()));
                }
            }
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(out),
            Some(Err(KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition))) => {
                return Err(Error::Kafka(KafkaError::MessageConsumption(
                    RDKafkaErrorCode::UnknownTopicOrPartition,
                )))
            }
            Some(Err(e)) => tracing::warn!(error = %e, topic, partition, "kafka.restore_poll_error"),
        }
    }
}
