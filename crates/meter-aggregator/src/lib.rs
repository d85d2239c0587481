//! The aggregator role: consumes `usage.events`, drops retried batches,
//! keeps per-project cycle totals, writes the totals to the compacted
//! `usage.totals` topic and the hourly rows to `usage.rows`. State, rows and
//! consumer offsets advance together in one Kafka transaction, so a crash
//! or a rebalance at any point neither loses nor double-counts (see
//! docs/exactness.md). The load role (`run_load`) moves the rows into
//! ClickHouse, so ClickHouse is never on the path to enforcement, and rolls
//! final days up.

#[doc(hidden)]
pub mod bench;
mod collapse;
mod collect;
mod config;
mod consumer;
mod load;
mod metrics;
mod process;
mod rollup;
mod rows;
mod run;
mod state;

pub use config::{AggregatorConfig, LoadConfig};
pub use load::run_load;
pub use rows::{decode_rows, Loadable};
pub use run::run;
