//! The group consumer of one aggregator.

use rdkafka::consumer::{BaseConsumer, Consumer};

use meter_kafka::{KafkaConfig, RebalanceWatch};

use crate::AggregatorConfig;

pub(crate) type GroupConsumer = BaseConsumer<RebalanceWatch>;

/// The consumer of `usage.events`: read_committed, no auto-commit (offsets
/// are committed inside the producer's transactions), eager rebalancing.
pub(crate) fn group_consumer(kafka: &KafkaConfig, cfg: &AggregatorConfig) -> anyhow::Result<GroupConsumer> {
    let c: GroupConsumer = kafka
        .consumer_config(&cfg.group_id)
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("max.poll.interval.ms", "300000")
        .create_with_context(RebalanceWatch::default())?;
    c.subscribe(&[&kafka.events_topic])?;
    Ok(c)
}
