//! The aggregator role: consumes `usage.events`, drops retried batches,
//! keeps per-project cycle totals, writes hourly rows to ClickHouse and the
//! totals to the compacted `usage.totals` topic. State and consumer offsets
//! advance together in one Kafka transaction, so a crash or a rebalance at
//! any point neither loses nor double-counts (see docs/exactness.md).

mod config;
mod consumer;
mod metrics;
mod process;
mod run;
mod state;

pub use config::AggregatorConfig;
pub use run::run;
