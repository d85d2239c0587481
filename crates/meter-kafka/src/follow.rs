//! Following topics from the beginning, forever: how roles keep an
//! in-memory view of compacted state topics (config, totals, enforcement).

use std::collections::HashSet;
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

/// A background reader of one topic. `caught_up` turns true once every
/// partition has been read to its end once.
#[derive(Debug)]
pub struct Follower {
    caught_up: Arc<AtomicBool>,
    topic: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// A follower's consumer: committed records only, its end of each
/// partition reported, fetches waiting `follower_fetch_wait_ms`.
fn settings(cfg: &KafkaConfig) -> rdkafka::ClientConfig {
    let mut c = cfg.client_config();
    c.set("group.id", "meter-follower")
        .set("enable.auto.commit", "false")
        .set("enable.partition.eof", "true")
        .set("isolation.level", "read_committed")
        .set("fetch.wait.max.ms", cfg.follower_fetch_wait_ms.to_string());
    c
}

impl Follower {
    /// Starts reading every partition of `topic` (committed records only)
    /// and calls `apply` for each record, in order per partition.
    pub fn start(cfg: &KafkaConfig, topic: &str, mut apply: impl FnMut(Seen<'_>) + Send + 'static) -> Result<Follower> {
        let consumer: BaseConsumer<Quiet> = settings(cfg).create_with_context(Quiet)?;
        let mut tpl = TopicPartitionList::new();
        let mut pending = HashSet::new();
        for p in topic_partitions(consumer.client(), topic)? {
            tpl.add_partition_offset(topic, p, Offset::Beginning)?;
            pending.insert(p);
        }
        consumer.assign(&tpl)?;
        let caught_up = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (caught_up.clone(), stop.clone());
        let thread = std::thread::Builder::new().name("meter-follower".into()).spawn(move || {
            while !s.load(Ordering::SeqCst) {
                match consumer.poll(Duration::from_millis(100)) {
                    None => {}
                    Some(Ok(m)) => {
                        if let Some(key) = m.key() {
                            apply((m.topic(), m.partition(), key, m.payload()));
                        }
                    }
                    Some(Err(KafkaError::PartitionEOF(p))) => {
                        pending.remove(&p);
                        if pending.is_empty() && !c.load(Ordering::SeqCst) {
                            c.store(true, Ordering::SeqCst);
                        }
                    }
                    Some(Err(e)) => crate::context::report("kafka.follow_error", "follower", &e, ""),
                }
            }
        })?;
        Ok(Follower { caught_up, topic: topic.to_owned(), stop, thread: Some(thread) })
    }

    /// The topic followed.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Whether every partition was read to its end once.
    pub fn is_caught_up(&self) -> bool {
        self.caught_up.load(Ordering::SeqCst)
    }

    /// Waits until every partition was read to its end once.
    pub async fn wait_caught_up(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        while !self.is_caught_up() {
            if tokio::time::Instant::now() > deadline {
                return false;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        true
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn followers_wait_longer_than_the_suspend_path_and_read_committed() {
        let cfg = KafkaConfig::default();
        assert!(cfg.follower_fetch_wait_ms > cfg.fetch_wait_max_ms);
        let c = settings(&KafkaConfig { follower_fetch_wait_ms: 333, ..cfg });
        assert_eq!(c.get("fetch.wait.max.ms"), Some("333"));
        assert_eq!(c.get("isolation.level"), Some("read_committed"));
        assert_eq!(c.get("enable.partition.eof"), Some("true"));
    }
}
