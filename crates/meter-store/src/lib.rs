//! ClickHouse: the schema (versioned migrations), the writer of hourly usage
//! rows, and the queries that read exact totals back.
//!
//! Written for every server from 18.16 (Debian's) to current: the client runs
//! with validation off and sends no setting that old servers lack, and
//! exactness never depends on ClickHouse's insert deduplication.

mod adjustments;
mod cluster;
mod compact;
mod config;
mod failover;
mod history;
mod migrate;
mod query;
mod rollup;
mod source;
mod tls;
mod watermark;
mod writer;

pub use adjustments::{AdjustmentRow, AdjustmentSum};
pub use compact::{At, CompactedMonth};
pub use config::StoreConfig;
pub use history::PeriodUsage;
pub use migrate::{migrate, MIGRATIONS};
pub use query::{ProjectUsage, Store};
pub use rollup::{Reach, RolledDay, RollupPass, RollupRule};
pub use writer::{metric_code, UsageRow, BYTE_HOURS_CODE};

/// Errors of this crate.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("clickhouse: {0}")]
    ClickHouse(#[from] clickhouse::error::Error),
    #[error("clickhouse TLS: {0}")]
    Tls(String),
    #[error("clickhouse migration {version} ({name}) failed: {source}")]
    Migration { version: u32, name: &'static str, source: clickhouse::error::Error },
    #[error("clickhouse cluster: {0}")]
    Cluster(String),
    #[error("{0}")]
    Config(String),
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
