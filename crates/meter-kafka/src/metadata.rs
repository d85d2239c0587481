//! Topic metadata read from the cluster.

use std::time::{Duration, Instant};

use rdkafka::client::{Client, ClientContext};

use crate::Result;

/// The partitions of `topic`. A topic created a moment ago may show in the
/// metadata without partitions or with an error for a while: asking again
/// for up to 10 s (following or writing to nothing would hide records).
pub(crate) fn topic_partitions<C: ClientContext>(client: &Client<C>, topic: &str) -> Result<Vec<i32>> {
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
