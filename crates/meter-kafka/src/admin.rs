//! Creating the pipeline's topics, idempotently.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use crate::{Error, KafkaConfig, Result};

/// Creates `events_topic` and the compacted `totals_topic` when missing, and
/// checks that both have the configured number of partitions.
pub async fn ensure_topics(cfg: &KafkaConfig) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = cfg.client_config().create()?;
    let retention = (cfg.events_retention_hours * 3_600_000).to_string();
    let topics = [
        NewTopic::new(&cfg.events_topic, cfg.partitions, TopicReplication::Fixed(cfg.replication_factor))
            .set("retention.ms", &retention)
            .set("compression.type", "producer"),
        NewTopic::new(&cfg.totals_topic, cfg.partitions, TopicReplication::Fixed(cfg.replication_factor))
            .set("cleanup.policy", "compact")
            .set("min.cleanable.dirty.ratio", "0.1")
            .set("segment.ms", "3600000"),
    ];
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.create_topics(&topics, &opts).await? {
        match result {
            Ok(topic) => tracing::info!(%topic, partitions = cfg.partitions, "kafka.topic_created"),
            Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
            Err((topic, code)) => {
                return Err(Error::Kafka(rdkafka::error::KafkaError::AdminOp(code)))
                    .inspect_err(|_| tracing::error!(%topic, ?code, "kafka.topic_create_failed"))
            }
        }
    }
    let probe: BaseConsumer = cfg.client_config().create()?;
    for topic in [&cfg.events_topic, &cfg.totals_topic] {
        // A topic just created takes a moment to show in the metadata.
        let mut actual = 0;
        for _ in 0..50 {
            let md = probe.fetch_metadata(Some(topic), Duration::from_secs(10))?;
            actual = md.topics().first().map_or(0, |t| t.partitions().len() as i32);
            if actual != 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if actual != cfg.partitions {
            return Err(Error::PartitionMismatch { topic: topic.clone(), expected: cfg.partitions, actual });
        }
    }
    Ok(())
}
