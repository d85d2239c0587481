//! Creating the pipeline's topics, idempotently.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use crate::{Error, KafkaConfig, Result};

/// Creates the pipeline's topics when missing (state topics compacted;
/// every topic with the configured replication factor, `min.insync.replicas`
/// and unclean leader election off), and checks that each has the configured
/// number of partitions (partition-aligned state depends on it). Refuses a
/// replication factor the cluster cannot offer; warns about an existing
/// topic with fewer replicas than configured.
pub async fn ensure_topics<'a>(cfg: &'a KafkaConfig) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = cfg.client_config().create()?;
    let retention = (cfg.events_retention_hours * 3_600_000).to_string();
    let min_isr = cfg.min_insync();
    if !(1..=cfg.replication_factor).contains(&min_isr) {
        return Err(Error::BadMinInsync { min_isr, rf: cfg.replication_factor });
    }
    let probe: BaseConsumer = cfg.client_config().create()?;
    let brokers = probe.fetch_metadata(None, Duration::from_secs(10))?.brokers().len();
    if brokers < cfg.replication_factor as usize {
        return Err(Error::ClusterTooSmall { wanted: cfg.replication_factor, brokers });
    }
    let min_isr = min_isr.to_string();
    let safe = |t: NewTopic<'a>| t.set("min.insync.replicas", &min_isr).set("unclean.leader.election.enable", "false");
    let compacted = |name: &'a str| {
        safe(NewTopic::new(name, cfg.partitions, TopicReplication::Fixed(cfg.replication_factor)))
            .set("cleanup.policy", "compact")
            .set("min.cleanable.dirty.ratio", "0.1")
            .set("segment.ms", "3600000")
    };
    let plain = |name: &'a str| {
        safe(NewTopic::new(name, cfg.partitions, TopicReplication::Fixed(cfg.replication_factor)))
            .set("retention.ms", &retention)
    };
    // Kept forever, never compacted: an audit trail.
    let forever = |name: &'a str| {
        safe(NewTopic::new(name, cfg.partitions, TopicReplication::Fixed(cfg.replication_factor)))
            .set("retention.ms", "-1")
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
        compacted(&cfg.adjustments_topic),
        forever(&cfg.config_history_topic),
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
    assert_eq!(topics.map(|t| t.name), cfg.topic_names(), "delete_topics deletes what this creates");
    for topic in cfg.topic_names() {
        // A topic just created takes a moment to show in the metadata.
        let (mut actual, mut replicas) = (0, 0);
        for _ in 0..50 {
            let md = probe.fetch_metadata(Some(topic), Duration::from_secs(10))?;
            let t = md.topics().first();
            actual = t.map_or(0, |t| t.partitions().len() as i32);
            replicas = t.and_then(|t| t.partitions().iter().map(|p| p.replicas().len()).min()).unwrap_or(0);
            if actual != 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        if actual != 0 && replicas < cfg.replication_factor as usize {
            tracing::warn!(%topic, replicas, configured = cfg.replication_factor,
                "kafka.topic_has_fewer_replicas_than_configured: created before; raise it with kafka-reassign-partitions");
        }
        if actual != cfg.partitions {
            return Err(Error::PartitionMismatch { topic: topic.to_owned(), expected: cfg.partitions, actual });
        }
    }
    Ok(())
}

/// Deletes the pipeline's topics named by `cfg` (those `ensure_topics`
/// creates); a topic already missing is no error. For throwaway runs
/// (benchmarks): the broker's work grows with the partitions it holds, and
/// every run's topics would otherwise stay.
pub async fn delete_topics(cfg: &KafkaConfig) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> = cfg.client_config().create()?;
    let names = cfg.topic_names();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_secs(30)));
    for result in admin.delete_topics(&names, &opts).await? {
        match result {
            Ok(_) | Err((_, RDKafkaErrorCode::UnknownTopicOrPartition)) => {}
            Err((topic, code)) => {
                tracing::warn!(%topic, ?code, "kafka.topic_delete_failed");
                return Err(Error::Kafka(rdkafka::error::KafkaError::AdminOp(code)));
            }
        }
    }
    Ok(())
}
