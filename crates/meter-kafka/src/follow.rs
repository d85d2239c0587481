//! Following topics from the beginning, forever: how roles keep an
//! in-memory view of compacted state topics (config, totals, enforcement).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

use crate::context::Quiet;
use crate::metadata::topic_partitions;
use crate::{KafkaConfig, Result};

/// A record seen by a follower: topic, partition, key, value (`None`: tombstone).
pub type Seen<'a> = (&'a str, i32, &'a [u8], Option<&'a [u8]>);

/// What a follower does with each record of one topic.
pub type Apply = Box<dyn FnMut(Seen<'_>) + Send>;

/// `apply` as an `Apply` (the closure's argument typed for every record).
pub fn on_record(apply: impl FnMut(Seen<'_>) + Send + 'static) -> Apply {
    Box::new(apply)
}

/// A background reader of one or more topics. `caught_up` turns true once
/// every partition has been read up to where it ended when the follower
/// started.
#[derive(Debug)]
pub struct Follower {
    pub caught_up: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    /// Starts reading every partition of `topic` (committed records only)
    /// and calls `apply` for each record, in order per partition.
    pub fn start(cfg: &KafkaConfig, topic: &str, apply: impl FnMut(Seen<'_>) + Send + 'static) -> Result<Follower> {
        Self::start_topics(cfg, vec![(topic.to_owned(), Box::new(apply))])
    }

    /// `start` for several topics through one consumer: one fetch request
    /// every `fetch.wait.max.ms` covers them all. A consumer per topic
    /// multiplied the broker's idle fetches: the api's eight followers cost
    /// the broker ~9 % of a core with nothing to read (issue 19).
    pub fn start_topics(cfg: &KafkaConfig, topics: Vec<(String, Apply)>) -> Result<Follower> {
        let consumer: BaseConsumer<Quiet> = cfg
            .client_config()
            .set("group.id", "meter-follower")
            .set("enable.auto.commit", "false")
            .set("enable.partition.eof", "true")
            .set("isolation.level", "read_committed")
            .set("fetch.wait.max.ms", "50")
            .create_with_context(Quiet)?;
        let mut tpl = TopicPartitionList::new();
        // Where each partition ends now: reading past it is being caught up.
        let mut pending: HashMap<(String, i32), i64> = HashMap::new();
        let mut applies: HashMap<String, Apply> = HashMap::new();
        for (topic, apply) in topics {
            for p in topic_partitions(consumer.client(), &topic)? {
                tpl.add_partition_offset(&topic, p, Offset::Beginning)?;
                let (low, high) = consumer.fetch_watermarks(&topic, p, WATERMARK_TIMEOUT)?;
                if high > low {
                    pending.insert((topic.clone(), p), high);
                }
            }
            applies.insert(topic, apply);
        }
        consumer.assign(&tpl)?;
        let caught_up = Arc::new(AtomicBool::new(pending.is_empty()));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (caught_up.clone(), stop.clone());
        let thread = std::thread::Builder::new().name("meter-follower".into()).spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match consumer.poll(Duration::from_millis(100)) {
                    None => {}
                    Some(Ok(m)) => {
                        if let (Some(key), Some(apply)) = (m.key(), applies.get_mut(m.topic())) {
                            apply((m.topic(), m.partition(), key, m.payload()));
                        }
                    }
                    // The end of some partition (the error does not say of
                    // which topic): check them all.
                    Some(Err(KafkaError::PartitionEOF(_))) if !pending.is_empty() => {
                        reached(&consumer, &mut pending);
                        if pending.is_empty() {
                            c.store(true, Ordering::SeqCst);
                        }
                    }
                    Some(Err(KafkaError::PartitionEOF(_))) => {}
                    Some(Err(e)) => crate::context::report("kafka.follow_error", "follower", &e, ""),
                }
            }
        })?;
        Ok(Follower { caught_up, stop, thread: Some(thread) })
    }

    /// Waits until every partition was read to its end once.
    pub async fn wait_caught_up(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.caught_up.load(Ordering::SeqCst) {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
    }
}

/// How long asking the broker where a partition ends may take.
const WATERMARK_TIMEOUT: Duration = Duration::from_secs(10);

/// Forgets the partitions of `pending` the consumer has read up to their
/// end (its position passes commit markers too).
fn reached(consumer: &BaseConsumer<Quiet>, pending: &mut HashMap<(String, i32), i64>) {
    let Ok(positions) = consumer.position() else { return };
    for e in positions.elements() {
        if let Offset::Offset(at) = e.offset() {
            let key = (e.topic().to_owned(), e.partition());
            if pending.get(&key).is_some_and(|&end| at >= end) {
                pending.remove(&key);
            }
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
