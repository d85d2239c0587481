//! The `[kafka]` section of the configuration.

use std::collections::BTreeMap;

use rdkafka::ClientConfig;
use serde::Deserialize;

/// Where Kafka is and how the pipeline's topics are named and laid out.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// Bootstrap servers, comma-separated.
    pub brokers: String,
    /// Usage events, one record per (batch, project), keyed by project.
    pub events_topic: String,
    /// Compacted per-project totals and aggregator state, partition for
    /// partition aligned with `events_topic`.
    pub totals_topic: String,
    /// Hourly usage rows for ClickHouse, written by the aggregator in the
    /// transaction that counts them, loaded by the load role; aligned with
    /// `events_topic`, kept as long as it.
    pub rows_topic: String,
    /// Quotas, plans and webhook endpoints (compacted; JSON values).
    pub config_topic: String,
    /// Enforcement state per project (compacted), aligned with `totals_topic`.
    pub enforcement_topic: String,
    /// Suspend/resume calls to make (outbox of the enforcer), keyed by project.
    pub actions_topic: String,
    /// Webhook events to deliver (outbox of the enforcer).
    pub webhooks_topic: String,
    /// Webhook deliveries that failed every attempt (compacted).
    pub dead_letters_topic: String,
    /// Every webhook delivery's state and attempts (compacted, key
    /// `<event id>/<endpoint id>`), aligned with `webhooks_topic`.
    pub deliveries_topic: String,
    /// The latest control-plane call per project and how it ended
    /// (compacted; written by the actuator, shown in project status).
    pub calls_topic: String,
    /// Every adjustment and what became of it (compacted, key
    /// `<project>#<idempotency key>`, kept forever; written by the
    /// aggregator in the transaction that applies it).
    pub adjustments_topic: String,
    /// Every quota and plan change, who made it and when (kept forever;
    /// written by the api in the transaction of the change).
    pub config_history_topic: String,
    /// Partitions of every topic when it is created.
    pub partitions: i32,
    /// Replicas of every topic when it is created (3 on a replicated cluster).
    pub replication_factor: i32,
    /// The topics' `min.insync.replicas`: how many replicas must have a
    /// write before it is acknowledged (producers use `acks=all`). 0: the
    /// default for the replication factor, 2 from 3 replicas up, else 1.
    pub min_insync_replicas: i32,
    /// Retention of `events_topic` (the replay horizon), hours.
    pub events_retention_hours: u64,
    /// How long a produce may take before the ingest call fails.
    pub produce_timeout_ms: u64,
    /// How long a consumer-group member may be silent before the group
    /// gives its partitions to another (a crashed aggregator or enforcer
    /// holds its work this long). librdkafka's own default is 45 s.
    pub session_timeout_ms: u64,
    /// How long a group consumer's fetch may wait at the broker for data.
    /// Every hop after the aggregator reads transactional (read_committed)
    /// topics, whose commit markers do not reliably wake a waiting fetch:
    /// each hop can add up to this much to the crossing-to-suspend latency,
    /// and a reader kept waiting reads less per second (librdkafka's default
    /// is 500 ms).
    pub fetch_wait_max_ms: u64,
    /// The same wait for the followers of state topics (the api's views of
    /// totals, enforcement, config, deliveries...; the enforcer's config):
    /// how stale a view may be past a commit marker. Every fetch that
    /// returns empty is a request the broker serves, and the api alone
    /// follows eight topics, so short waits there cost CPU all the time,
    /// idle or not.
    pub follower_fetch_wait_ms: u64,
    /// Static group membership (KIP-345): a stable name per instance (the
    /// pod or host name). A restarted instance with the same name takes its
    /// partitions back at once instead of waiting for a rebalance. Must be
    /// unique among the instances of one role; empty = dynamic membership.
    pub instance_id: String,
    /// Extra librdkafka properties applied to every client (e.g. security).
    pub client: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            events_topic: "usage.events".into(),
            totals_topic: "usage.totals".into(),
            rows_topic: "usage.rows".into(),
            config_topic: "meter.config".into(),
            enforcement_topic: "meter.enforcement".into(),
            actions_topic: "meter.actions".into(),
            webhooks_topic: "meter.webhooks".into(),
            dead_letters_topic: "meter.webhooks.dead".into(),
            deliveries_topic: "meter.webhooks.deliveries".into(),
            calls_topic: "meter.actions.calls".into(),
            adjustments_topic: "meter.adjustments".into(),
            config_history_topic: "meter.config.history".into(),
            partitions: 8,
            replication_factor: 1,
            min_insync_replicas: 0,
            events_retention_hours: 24 * 30,
            produce_timeout_ms: 10_000,
            session_timeout_ms: 10_000,
            fetch_wait_max_ms: 20,
            follower_fetch_wait_ms: 200,
            instance_id: String::new(),
            client: BTreeMap::new(),
        }
    }
}

impl std::fmt::Debug for KafkaConfig {
    /// Every field, with the values of secret-looking client properties
    /// (`*password*`, `*secret*`, `*key*`) redacted.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let client: BTreeMap<&str, &str> = self
            .client
            .iter()
            .map(|(k, v)| {
                let secret = ["password", "secret", "key"].iter().any(|w| k.to_ascii_lowercase().contains(w));
                (k.as_str(), if secret { "<redacted>" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("events_topic", &self.events_topic)
            .field("totals_topic", &self.totals_topic)
            .field("rows_topic", &self.rows_topic)
            .field("config_topic", &self.config_topic)
            .field("enforcement_topic", &self.enforcement_topic)
            .field("actions_topic", &self.actions_topic)
            .field("webhooks_topic", &self.webhooks_topic)
            .field("dead_letters_topic", &self.dead_letters_topic)
            .field("deliveries_topic", &self.deliveries_topic)
            .field("calls_topic", &self.calls_topic)
            .field("adjustments_topic", &self.adjustments_topic)
            .field("config_history_topic", &self.config_history_topic)
            .field("partitions", &self.partitions)
            .field("replication_factor", &self.replication_factor)
            .field("min_insync_replicas", &self.min_insync_replicas)
            .field("events_retention_hours", &self.events_retention_hours)
            .field("produce_timeout_ms", &self.produce_timeout_ms)
            .field("session_timeout_ms", &self.session_timeout_ms)
            .field("fetch_wait_max_ms", &self.fetch_wait_max_ms)
            .field("follower_fetch_wait_ms", &self.follower_fetch_wait_ms)
            .field("instance_id", &self.instance_id)
            .field("client", &client)
            .finish()
    }
}

impl KafkaConfig {
    /// The topics' `min.insync.replicas`: the configured value, else 2
    /// from 3 replicas up and 1 below (one broker lost never stops writes;
    /// an acknowledged write is on two brokers).
    pub fn min_insync(&self) -> i32 {
        match self.min_insync_replicas {
            0 if self.replication_factor >= 3 => 2,
            0 => 1,
            n => n,
        }
    }

    /// The pipeline's topics, as `ensure_topics` creates them.
    pub fn topic_names(&self) -> [&str; 12] {
        [
            &self.events_topic,
            &self.totals_topic,
            &self.rows_topic,
            &self.config_topic,
            &self.enforcement_topic,
            &self.actions_topic,
            &self.webhooks_topic,
            &self.dead_letters_topic,
            &self.deliveries_topic,
            &self.calls_topic,
            &self.adjustments_topic,
            &self.config_history_topic,
        ]
    }

    /// Every topic named `<prefix>.<role>`: isolated pipelines side by side
    /// on one broker (tests, tenants).
    pub fn with_topic_prefix(mut self, prefix: &str) -> Self {
        self.events_topic = format!("{prefix}.events");
        self.totals_topic = format!("{prefix}.totals");
        self.rows_topic = format!("{prefix}.rows");
        self.config_topic = format!("{prefix}.config");
        self.enforcement_topic = format!("{prefix}.enforcement");
        self.actions_topic = format!("{prefix}.actions");
        self.webhooks_topic = format!("{prefix}.webhooks");
        self.dead_letters_topic = format!("{prefix}.webhooks.dead");
        self.deliveries_topic = format!("{prefix}.webhooks.deliveries");
        self.calls_topic = format!("{prefix}.actions.calls");
        self.adjustments_topic = format!("{prefix}.adjustments");
        self.config_history_topic = format!("{prefix}.config.history");
        self
    }

    /// A consumer in group `group_id` that reads committed records only,
    /// starts from the earliest offset when the group has none, and commits
    /// nothing by itself (the caller commits when the work is safe).
    pub fn consumer_config(&self, group_id: &str) -> ClientConfig {
        let mut c = self.client_config();
        c.set("group.id", group_id)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("auto.offset.reset", "earliest")
            .set("isolation.level", "read_committed")
            .set("session.timeout.ms", self.session_timeout_ms.to_string())
            .set("fetch.wait.max.ms", self.fetch_wait_max_ms.to_string())
            .set("heartbeat.interval.ms", (self.session_timeout_ms / 10).max(500).to_string());
        if !self.instance_id.is_empty() {
            c.set("group.instance.id", &self.instance_id);
        }
        c
    }

    /// The producer settings of ingest's writes to `events_topic`:
    /// idempotent, acks=all, lz4, batched (the benchmark's Kafka baseline
    /// uses the same).
    pub fn events_producer_config(&self) -> ClientConfig {
        let mut c = self.client_config();
        c.set("enable.idempotence", "true")
            .set("acks", "all")
            .set("linger.ms", "5")
            .set("batch.size", "1000000")
            .set("compression.type", "lz4")
            .set("message.timeout.ms", self.produce_timeout_ms.to_string())
            .set("queue.buffering.max.kbytes", "262144");
        c
    }

    /// A librdkafka configuration with the brokers and the extra properties.
    pub fn client_config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        for (k, v) in &self.client {
            c.set(k, v);
        }
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_in_debug() {
        let mut c = KafkaConfig::default();
        c.client.insert("sasl.password".into(), "hunter2".into());
        c.client.insert("security.protocol".into(), "SASL_SSL".into());
        let shown = format!("{c:?}");
        assert!(!shown.contains("hunter2") && shown.contains("SASL_SSL"), "{shown}");
    }

    #[test]
    fn min_insync_follows_the_replication_factor_unless_set() {
        let with = |rf, min| KafkaConfig { replication_factor: rf, min_insync_replicas: min, ..KafkaConfig::default() };
        assert_eq!([1, 2, 3, 5].map(|rf| with(rf, 0).min_insync()), [1, 1, 2, 2]);
        assert_eq!(with(5, 3).min_insync(), 3);
    }
}
