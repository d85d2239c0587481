//! Writing hourly usage rows.

use clickhouse::Row;
use meter_core::event::row_source_id;
use meter_core::{Batch, HourlyRow, Metric};
use serde::Serialize;

use crate::{Result, Store};

/// A row of `usage_hourly`, as sent in RowBinary.
#[derive(Debug, Clone, Row, Serialize)]
pub struct UsageRow {
    pub project_id: String,
    /// Enum8 code: 1..=5 in `Metric::ALL` order.
    pub metric: i8,
    /// Seconds since the epoch (DateTime).
    pub hour: u32,
    pub source_id: String,
    pub batch_seq: u64,
    pub value: u64,
    pub last_value: u64,
    pub last_time_ms: i64,
    /// Kafka offset of the record the row came from.
    pub version: u64,
    /// Storage rows: the branch read (empty when the readings name none).
    /// Counter rows: empty.
    pub branch_id: String,
}

/// The Enum8 code of the byte-hours rows in `usage_hourly`
/// (`logical_size_bytes_hour`: storage held over time, derived from the
/// readings, not a metric sources report).
pub const BYTE_HOURS_CODE: i8 = 6;

/// The Enum8 code of a metric in `usage_hourly`.
pub fn metric_code(m: Metric) -> i8 {
    Metric::ALL.iter().position(|x| *x == m).map_or(0, |i| i as i8 + 1)
}

impl UsageRow {
    /// The ClickHouse rows of the hourly rows of `batch`, read from the
    /// Kafka record at offset `version`. The aggregator and the backfill
    /// both write through here, so their rows replace each other.
    pub fn of_batch<'a>(batch: &'a Batch, version: u64, rows: &'a [HourlyRow]) -> impl Iterator<Item = UsageRow> + 'a {
        let project = batch.project_id.to_string();
        let source = row_source_id(batch.source_id.as_str(), batch.session);
        rows.iter().map(move |r| UsageRow::new(&project, &source, batch.batch_seq, version, r))
    }

    fn new(project_id: &str, source_id: &str, batch_seq: u64, version: u64, r: &HourlyRow) -> Self {
        UsageRow {
            project_id: project_id.to_owned(),
            metric: metric_code(r.metric),
            hour: (r.hour_ms / 1000) as u32,
            source_id: source_id.to_owned(),
            batch_seq,
            value: r.value,
            last_value: r.last_value,
            last_time_ms: r.last_time_ms,
            version,
            branch_id: r.branch.clone(),
        }
    }

    /// The byte-hours rows of `batch` (see `ProjectUpdate::Counted`), keyed
    /// like its other rows, so that a replay replaces them.
    pub fn byte_hours_of(batch: &Batch, version: u64, byte_hours: &[(i64, u64)]) -> Vec<UsageRow> {
        let project = batch.project_id.to_string();
        let source = row_source_id(batch.source_id.as_str(), batch.session);
        byte_hours
            .iter()
            .map(|&(hour_ms, value)| UsageRow {
                project_id: project.clone(),
                metric: BYTE_HOURS_CODE,
                hour: (hour_ms / 1000) as u32,
                source_id: source.clone(),
                batch_seq: batch.batch_seq,
                value,
                last_value: 0,
                last_time_ms: 0,
                version,
                branch_id: String::new(),
            })
            .collect()
    }
}

impl Store {
    /// Inserts rows in one INSERT. Idempotent: rows are keyed by their batch.
    pub async fn write_usage(&self, rows: &[UsageRow]) -> Result<()> {
        self.insert_all("usage_hourly", rows).await
    }

    /// Inserts `rows` into `table` in one INSERT (none: nothing sent).
    pub(crate) async fn insert_all<R: clickhouse::RowOwned + clickhouse::RowWrite>(
        &self,
        table: &str,
        rows: &[R],
    ) -> Result<()> {
        if rows.is_empty() {
            return Ok(());
        }
        let mut ins = self.client.insert::<R>(table).await?;
        for r in rows {
            ins.write(r).await?;
        }
        ins.end().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metric_codes_match_the_enum8() {
        assert_eq!(metric_code(Metric::ActiveTimeSeconds), 1);
        assert_eq!(metric_code(Metric::LogicalSizeBytes), 5);
    }
}
