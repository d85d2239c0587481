//! Reading exact usage back.

use clickhouse::Row;
use meter_core::Metric;
use serde::Deserialize;

use crate::history::{PER_BRANCH, SUMMED};
use crate::source::{Columns, ALL_TIME};
use crate::{Result, StoreConfig};

/// A handle on the pipeline's ClickHouse database.
#[derive(Clone)]
pub struct Store {
    pub(crate) client: clickhouse::Client,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Store")
    }
}

/// A project's usage over a time range: the four counters summed, and
/// storage: each branch's latest reading in the range, summed; and the
/// byte-hours of storage held in the range.
#[derive(Debug, Clone, PartialEq, Eq, Row, Deserialize)]
pub struct ProjectUsage {
    pub project_id: String,
    pub active_time_seconds: u64,
    pub compute_time_seconds: u64,
    pub written_data_bytes: u64,
    pub data_transfer_bytes: u64,
    pub logical_size_bytes: u64,
    pub logical_size_bytes_hour: u64,
}

impl ProjectUsage {
    /// The value of one metric.
    pub fn get(&self, m: Metric) -> u64 {
        match m {
            Metric::ActiveTimeSeconds => self.active_time_seconds,
            Metric::ComputeTimeSeconds => self.compute_time_seconds,
            Metric::WrittenDataBytes => self.written_data_bytes,
            Metric::DataTransferBytes => self.data_transfer_bytes,
            Metric::LogicalSizeBytes => self.logical_size_bytes,
        }
    }
}

/// A LIKE pattern matching ids that start with `prefix`, taken literally.
pub(crate) fn like_prefix(prefix: &str) -> String {
    format!("{}%", prefix.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_"))
}

impl Store {
    /// A store for the configured database; fails only on TLS settings
    /// (an unreadable `ca_file`), never on a server that is down.
    pub fn new(cfg: &StoreConfig) -> Result<Self> {
        Ok(Store { client: cfg.client()? })
    }

    /// All-time usage of the projects whose id starts with `prefix` (the
    /// rollups and the per-batch rows after them).
    pub async fn usage_with_prefix(&self, prefix: &str) -> Result<Vec<ProjectUsage>> {
        let pattern = like_prefix(prefix);
        let parts =
            self.spans((ALL_TIME.0 * 1000, ALL_TIME.1 * 1000), true).await?.sql(Columns::Rows, "project_id LIKE ?");
        let sql = format!(
            "SELECT project_id, {SUMMED}
             FROM (
                SELECT project_id, branch_id, {PER_BRANCH}
                FROM ({})
                GROUP BY project_id, branch_id
             )
             GROUP BY project_id
             ORDER BY project_id",
            parts.sql
        );
        let mut q = self.client.query(&sql);
        for _ in 0..parts.parts {
            q = q.bind(pattern.as_str());
        }
        Ok(q.fetch_all().await?)
    }
}
