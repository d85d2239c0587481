//! The group consumer of one aggregator.

use rdkafka::consumer::{BaseConsumer, Consumer};

use meter_kafka::{KafkaConfig, RebalanceWatch};

use crate::AggregatorConfig;

pub(crate) type GroupConsumer = BaseConsumer<RebalanceWatch>;

/// The consumer of `usage.events`: read_committed, no auto-commit (offsets
/// are committed inside the producer's transactions), eager rebalancing.
pub(crate) fn group_consumer(kafka: &KafkaConfig, cfg: &AggregatorConfig) -> anyhow::Result<GroupConsumer> {
    let c: GroupConsumer = settings(kafka, cfg).create_with_context(RebalanceWatch::default())?;
    c.subscribe(&[&kafka.events_topic])?;
    Ok(c)
}

/// The consumer's settings: the configured `[kafka]` ones (session
/// timeout, instance id, client properties) plus the aggregator's own.
fn settings(kafka: &KafkaConfig, cfg: &AggregatorConfig) -> rdkafka::ClientConfig {
    let mut c = kafka.consumer_config(&cfg.group_id);
    c.set("partition.assignment.strategy", "range").set("max.poll.interval.ms", "300000");
    c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configured_session_timeout_reaches_the_consumer() {
        let kafka = KafkaConfig { session_timeout_ms: 45_000, instance_id: "agg-1".into(), ..KafkaConfig::default() };
        let c = settings(&kafka, &AggregatorConfig::default());
        assert_eq!(c.get("session.timeout.ms"), Some("45000"));
        assert_eq!(c.get("heartbeat.interval.ms"), Some("4500"));
        assert_eq!(c.get("group.instance.id"), Some("agg-1"));
        assert_eq!(c.get("isolation.level"), Some("read_committed"));
    }
}
