//! Creating the pipeline's topics, idempotently.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use crate::{Error, KafkaConfig, Result};

/// Creates the pipeline's topics when missing (state topics compacted), and
/// checks that each has the configured number of partitions (partition-aligned
/// state depends on it).
pub async fn ensure_topics<'a>(cfg: &'a KafkaConfig) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = cfg.client_config().create()?;
    let retention = (cfg.events_retention_hours * 3_600_000).to_string();
    let compacted = |name: &'a str| {
        NewTopic::new(name, cfg.partitions, TopicReplication::Fixed(cfg.replication_factor))
            .set("cleanup.policy", "compact")
            .set("min.cleanable.dirty.ratio", "0.1")
            .set("segment.ms", "3600000")
    };
    let plain = |name: &'a str| {
        NewTopic::new(name, cfg.partitions, TopicReplication::Fixed(cfg.replication_factor))
            .set("retention.ms", &retention)
    };
    let topics = [
        plain(&cfg.events_topic),
        compacted(&cfg.totals_topic),
        plain(&cfg.rows_topic),
        compacted(&cfg.config_topic),
        compacted(&cfg.enforcement_topic),
        plain(&cfg.actions_topic),
        plain(&cfg.webhooks_topic),
        compacted(&cfg.dead_letters_topic),
        compacted(&cfg.deliveries_topic),
        compacted(&cfg.calls_topic),
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
    for topic in topics.iter().map(|t| t.name) {
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
            return Err(Error::PartitionMismatch { topic: topic.to_owned(), expected: cfg.partitions, actual });
        }
    }
    Ok(())
}
