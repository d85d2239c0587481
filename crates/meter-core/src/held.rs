//! A project's hourly rows the aggregator holds over several transactions
//! before writing them for ClickHouse (docs/exactness.md, mechanism 4): part
//! of the project's state, so a restart or a new owner holds them too.

use crate::UnixMs;

/// The rows one project holds, and the key they will be written under.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeldRows {
    /// Their `batch_seq` in `usage_hourly`: the first `usage.events` offset
    /// that gave rows in the transaction that began holding them.
    pub key: u64,
    /// When that transaction ran (the aggregator's clock).
    pub since_ms: UnixMs,
    /// Summed per (metric, hour, branch): counters and byte-hours added,
    /// storage's largest reading and its latest by (time, value).
    pub rows: Vec<HeldRow>,
}

impl HeldRows {
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }
}

/// One held row of `usage_hourly` (its project is the state's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldRow {
    /// `usage_hourly`'s Enum8 code of the metric.
    pub metric: i8,
    pub hour_unix_s: u32,
    pub branch: String,
    pub value: u64,
    pub last_value: u64,
    pub last_time_ms: i64,
}
