//! The `[aggregator]` section of the configuration.

use meter_core::aggregate::Retention;
use serde::Deserialize;

/// How the aggregator batches, and how long it keeps state.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AggregatorConfig {
    /// Consumer group shared by every aggregator instance.
    pub group_id: String,
    /// Prefix of this instance's transactional id (a unique suffix is added).
    pub transactional_id_prefix: String,
    /// Most Kafka records per transaction.
    pub max_batch_records: usize,
    /// Most bytes of `usage.events` records per transaction: bounds the
    /// memory of a transaction while catching up on large records.
    pub max_batch_bytes: usize,
    /// Longest wait for records not yet fetched, milliseconds, counted
    /// from when the batch's first record was written (its Kafka
    /// timestamp); records already fetched are taken past it, up to the
    /// bounds above.
    pub linger_ms: u64,
    /// Longest time to rebuild a partition's state from `usage.totals`.
    pub restore_timeout_seconds: u64,
    /// While the aggregator is behind (its batches end at a bound), a
    /// partition holds its projects' hourly rows over transactions, up to
    /// this long, and writes them for ClickHouse together: fewer ClickHouse
    /// rows when it has a backlog. Never less than `rows_hold_min_ms`.
    pub rows_hold_seconds: u64,
    /// While the aggregator keeps up, a partition holds its projects'
    /// hourly rows until the oldest has waited this long, milliseconds
    /// (a transaction with nothing to read writes them when due). 0, with
    /// `rows_hold_seconds` 0: written by every transaction.
    pub rows_hold_min_ms: u64,
    /// A project's state written in a packed `usage.totals` record (the
    /// states a transaction changed in a partition) and not changed since
    /// is written in a record of its own after this long, so the packed
    /// record can go (docs/exactness.md, "Packed totals").
    pub totals_checkpoint_seconds: u64,
    /// Most bytes of packed records holding a latest state per partition
    /// (what a restore reads besides one record per project): past it, the
    /// oldest are checkpointed at once.
    pub totals_packed_max_mib: u64,
    /// Cycle counters are kept this long after the cycle ended (late events).
    pub cycle_grace_hours: i64,
    /// A source's dedup window is forgotten after this long without a batch.
    pub source_ttl_hours: i64,
}

impl Default for AggregatorConfig {
    fn default() -> Self {
        let r = Retention::default();
        AggregatorConfig {
            group_id: "meter-aggregator".into(),
            transactional_id_prefix: "meter-aggregator".into(),
            max_batch_records: 20_000,
            max_batch_bytes: 64 << 20,
            linger_ms: 20,
            restore_timeout_seconds: 120,
            rows_hold_seconds: 10,
            rows_hold_min_ms: 1_000,
            totals_checkpoint_seconds: 60,
            totals_packed_max_mib: 16,
            cycle_grace_hours: r.cycle_grace_ms / 3_600_000,
            source_ttl_hours: r.source_ttl_ms / 3_600_000,
        }
    }
}

impl AggregatorConfig {
    /// The state retention.
    pub fn retention(&self) -> Retention {
        Retention {
            cycle_grace_ms: self.cycle_grace_hours * 3_600_000,
            source_ttl_ms: self.source_ttl_hours * 3_600_000,
        }
    }
}

/// The `[load]` section: how the load role moves `usage.rows` into ClickHouse.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LoadConfig {
    /// Consumer group shared by every load instance.
    pub group_id: String,
    /// Most rows per ClickHouse INSERT.
    pub max_batch_rows: usize,
    /// Longest wait to fill an INSERT, milliseconds.
    pub linger_ms: u64,
    /// How often the rollup job looks for final days to roll up, seconds
    /// (0: never; see docs/schema.md, "Rollups").
    pub rollup_interval_seconds: u64,
    /// The per-batch rows of a month are dropped this many days after it
    /// ended, once every day of it is rolled up (0: kept forever).
    pub keep_batches_days: u64,
    /// The late-event horizon (set from `ingest.max_past_seconds`).
    #[serde(skip)]
    pub late_horizon_seconds: i64,
}

impl Default for LoadConfig {
    fn default() -> Self {
        LoadConfig {
            group_id: "meter-load".into(),
            max_batch_rows: 100_000,
            linger_ms: 500,
            rollup_interval_seconds: 300,
            keep_batches_days: 90,
            late_horizon_seconds: meter_core::Limits::default().max_past_ms / 1000,
        }
    }
}
