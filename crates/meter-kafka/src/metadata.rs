//! Topic metadata read from the cluster.

use std::time::{Duration, Instant};

use rdkafka::client::{Client, ClientContext};

use crate::Result;

/// The partitions of `topic`. A topic created a moment ago may show in the
/// metadata without partitions or with an error for a while: asking again
/// for up to 10 s (following or writing to nothing would hide records).
pub fn topic_partitions<C: ClientContext>(client: &Client<C>, topic: &str) -> Result<Vec<i32>> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let md = client.fetch_metadata(Some(topic), Duration::from_secs(10))?;
        let found: Vec<i32> = md
            .topics()
            .iter()
            .filter(|t| t.name() == topic && t.error().is_none())
            .flat_map(|t| t.partitions().iter().map(|p| p.id()))
            .collect();
        if !found.is_empty() {
            return Ok(found);
        }
        if Instant::now() > deadline {
            return Err(crate::Error::NoPartitions(topic.to_owned()));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// How many partitions `topic` has (see `topic_partitions`), asked off the
/// async runtime.
pub async fn partition_count(cfg: &crate::KafkaConfig, topic: &str) -> Result<u32> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let (cfg, name) = (cfg.clone(), topic.to_owned());
    tokio::task::spawn_blocking(move || {
        let probe: BaseConsumer = cfg.client_config().create()?;
        Ok(topic_partitions(probe.client(), &name)?.len() as u32)
    })
    .await
    .unwrap_or_else(|e| Err(crate::Error::NoPartitions(format!("{topic}: {e}"))))
}

/// The id of the broker leading the most partitions of `topic` (the one
/// whose loss moves the most leadership), from the cluster's metadata.
pub fn busiest_leader(cfg: &crate::KafkaConfig, topic: &str) -> Result<i32> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    let probe: BaseConsumer = cfg.client_config().create()?;
    let md = probe.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let mut led: std::collections::BTreeMap<i32, usize> = std::collections::BTreeMap::new();
    for p in md.topics().iter().filter(|t| t.name() == topic).flat_map(|t| t.partitions()) {
        *led.entry(p.leader()).or_default() += 1;
    }
    led.into_iter()
        .max_by_key(|(_, n)| *n)
        .map(|(id, _)| id)
        .ok_or_else(|| crate::Error::NoPartitions(topic.to_owned()))
}
