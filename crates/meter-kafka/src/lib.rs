//! Kafka plumbing shared by the roles: client configuration, topic admin, the
//! idempotent producer used by ingest, and reading a partition to its end
//! (how the aggregator restores its state).

mod admin;
mod config;
mod context;
mod follow;
mod metadata;
mod poll;
mod producer;
mod rebalance;
mod restore;
mod throttle;
mod transactional;

pub use admin::{delete_topics, ensure_topics};
pub use config::KafkaConfig;
pub use context::Quiet;
pub use follow::{Follower, Seen};
pub use metadata::{busiest_leader, partition_count, topic_partitions};
pub use poll::poll_error;
pub use producer::{EventProducer, ProduceError};
pub use rebalance::RebalanceWatch;
pub use restore::{read_latest, read_partitions_to_end, read_range, KeyValue, Latest};
pub use transactional::{commit_transaction, send_in_transaction, transactional_producer, TxProducer};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(
        "topic {topic} has {actual} partitions but {expected} are configured; state topics must mirror the events topic"
    )]
    PartitionMismatch { topic: String, expected: i32, actual: i32 },
    #[error("starting a thread: {0}")]
    Thread(#[from] std::io::Error),
    #[error("timed out after {0:?} reading {1} to its end")]
    RestoreTimeout(std::time::Duration, String),
    #[error("topic {0} has no partitions in the cluster's metadata: does it exist? (`meterd migrate` creates it)")]
    NoPartitions(String),
    #[error(
        "kafka.replication_factor = {wanted} but the cluster has {brokers} broker(s); \
         lower it or add brokers (topics cannot be created with more replicas than brokers)"
    )]
    ClusterTooSmall { wanted: i32, brokers: usize },
    #[error(
        "kafka.min_insync_replicas = {min_isr} is not within 1..=replication_factor ({rf}); \
         with acks=all no write could ever be acknowledged"
    )]
    BadMinInsync { min_isr: i32, rf: i32 },
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
