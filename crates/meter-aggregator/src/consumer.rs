//! The group consumer and the transactional producer of one aggregator.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance};
use rdkafka::producer::{DefaultProducerContext, Producer, ThreadedProducer};
use rdkafka::ClientContext;

use meter_kafka::KafkaConfig;

use crate::AggregatorConfig;

/// Counts rebalances so the loop can tell that its in-flight batch belongs
/// to an assignment that no longer holds.
#[derive(Debug, Default)]
pub(crate) struct RebalanceWatch {
    generation: AtomicU64,
}

impl RebalanceWatch {
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::SeqCst)
    }
}

impl ClientContext for RebalanceWatch {}

impl ConsumerContext for RebalanceWatch {
    fn pre_rebalance(&self, _: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Rebalance::Revoke(tpl) = r {
            tracing::info!(partitions = tpl.count(), "aggregator.partitions_revoked");
        }
    }

    fn post_rebalance(&self, _: &BaseConsumer<Self>, r: &Rebalance<'_>) {
        self.generation.fetch_add(1, Ordering::SeqCst);
        if let Rebalance::Assign(tpl) = r {
            let parts: Vec<i32> = tpl.elements().iter().map(|e| e.partition()).collect();
            tracing::info!(?parts, "aggregator.partitions_assigned");
        }
    }
}

pub(crate) type GroupConsumer = BaseConsumer<RebalanceWatch>;
pub(crate) type TxProducer = ThreadedProducer<DefaultProducerContext>;

/// The consumer of `usage.events`: read_committed, no auto-commit (offsets
/// are committed inside the producer's transactions), eager rebalancing.
pub(crate) fn group_consumer(kafka: &KafkaConfig, cfg: &AggregatorConfig) -> anyhow::Result<GroupConsumer> {
    let c: GroupConsumer = kafka
        .client_config()
        .set("group.id", &cfg.group_id)
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("isolation.level", "read_committed")
        .set("auto.offset.reset", "earliest")
        .set("partition.assignment.strategy", "range")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000")
        .set("max.poll.interval.ms", "300000")
        .create_with_context(RebalanceWatch::default())?;
    c.subscribe(&[&kafka.events_topic])?;
    Ok(c)
}

/// A transactional producer with a unique transactional id, initialised.
pub(crate) fn tx_producer(kafka: &KafkaConfig, cfg: &AggregatorConfig) -> anyhow::Result<TxProducer> {
    let id = format!(
        "{}-{}-{}",
        cfg.transactional_id_prefix,
        std::process::id(),
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_nanos()
    );
    let p: TxProducer = kafka
        .client_config()
        .set("transactional.id", &id)
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "5")
        .set("compression.type", "lz4")
        .set("transaction.timeout.ms", "15000")
        .create()?;
    p.init_transactions(Duration::from_secs(30))?;
    tracing::info!(transactional_id = %id, "aggregator.producer_ready");
    Ok(p)
}
