//! Reading partitions of a topic from the beginning to its end, committed
//! records only (read_committed): how the aggregator rebuilds its state.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use rdkafka::types::RDKafkaErrorCode;

use crate::context::Quiet;
use crate::{Error, KafkaConfig, Result};

/// A consumer outside any group's membership that reads committed records
/// of the partitions it is assigned, reporting their ends.
fn reader(cfg: &KafkaConfig) -> Result<BaseConsumer<Quiet>> {
    Ok(cfg
        .client_config()
        .set("group.id", "meter-restore")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "20")
        .create_with_context(Quiet)?)
}

/// A record's key and value.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// Every committed `(key, value)` of each of `partitions` of `topic`, in
/// offset order per partition. In a compacted topic the last value of each
/// key is the current one. One consumer reads all the partitions at once;
/// it waits for open transactions of earlier owners to end, and gives up
/// after `timeout`.
pub fn read_partitions_to_end(
    cfg: &KafkaConfig,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> Result<HashMap<i32, Vec<KeyValue>>> {
    let mut out: HashMap<i32, Vec<KeyValue>> = partitions.iter().map(|&p| (p, Vec::new())).collect();
    scan_to_end(cfg, topic, partitions, timeout, |p, k, v| {
        if let (Some(v), Some(part)) = (v, out.get_mut(&p)) {
            part.push((k.to_vec(), v.to_vec()));
        }
    })?;
    Ok(out)
}

/// A partition's current value per key.
pub type Latest = HashMap<Vec<u8>, Vec<u8>>;

/// The current value of every key of `partitions` of a compacted `topic`:
/// the last record of each key, keys whose last record is a tombstone left
/// out. Same reading as `read_partitions_to_end`.
pub fn read_latest(
    cfg: &KafkaConfig,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
) -> Result<HashMap<i32, Latest>> {
    let mut out: HashMap<i32, Latest> = partitions.iter().map(|&p| (p, HashMap::new())).collect();
    scan_to_end(cfg, topic, partitions, timeout, |p, k, v| {
        if let Some(part) = out.get_mut(&p) {
            match v {
                Some(v) => drop(part.insert(k.to_vec(), v.to_vec())),
                None => drop(part.remove(k)),
            }
        }
    })?;
    Ok(out)
}

/// Calls `seen(partition, key, value)` for every keyed record of
/// `partitions`, in offset order per partition, until each one's end.
fn scan_to_end(
    cfg: &KafkaConfig,
    topic: &str,
    partitions: &[i32],
    timeout: Duration,
    mut seen: impl FnMut(i32, &[u8], Option<&[u8]>),
) -> Result<()> {
    if partitions.is_empty() {
        return Ok(());
    }
    let consumer = reader(cfg)?;
    let mut tpl = TopicPartitionList::new();
    for &p in partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)?;
    }
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    let mut open: HashSet<i32> = partitions.iter().copied().collect();
    while !open.is_empty() {
        if Instant::now() > deadline {
            return Err(Error::RestoreTimeout(timeout, format!("{topic} partitions {open:?}")));
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) => {
                if let Some(k) = m.key() {
                    seen(m.partition(), k, m.payload());
                }
            }
            Some(Err(KafkaError::PartitionEOF(p))) => {
                open.remove(&p);
            }
            Some(Err(e @ KafkaError::MessageConsumption(RDKafkaErrorCode::UnknownTopicOrPartition))) => {
                return Err(Error::Kafka(e))
            }
            Some(Err(e)) => tracing::warn!(error = %e, topic, "kafka.restore_poll_error"),
        }
    }
    Ok(())
}

/// The committed records of `partition` of `topic` with offsets in
/// `from..to`, as `(offset, value)`, in order: a range the caller's group
/// consumer has already passed (its committed offsets are ahead of its
/// state) and must apply again. Gives up after `timeout`.
pub fn read_range(
    cfg: &KafkaConfig,
    topic: &str,
    partition: i32,
    from: i64,
    to: i64,
    timeout: Duration,
) -> Result<Vec<(i64, Vec<u8>)>> {
    let mut out = Vec::new();
    if from >= to {
        return Ok(out);
    }
    let consumer = reader(cfg)?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(from))?;
    consumer.assign(&tpl)?;
    let deadline = Instant::now() + timeout;
    loop {
        if Instant::now() > deadline {
            return Err(Error::RestoreTimeout(timeout, format!("{topic} partition {partition} offsets {from}..{to}")));
        }
        match consumer.poll(Duration::from_millis(100)) {
            None => {}
            Some(Ok(m)) if m.offset() >= to => return Ok(out),
            Some(Ok(m)) => out.push((m.offset(), m.payload().unwrap_or_default().to_vec())),
            Some(Err(KafkaError::PartitionEOF(_))) => return Ok(out),
            Some(Err(e)) => tracing::warn!(error = %e, topic, "kafka.read_range_poll_error"),
        }
    }
}
