//! Months compacted: the rolled days of a month (one partition each in
//! `usage_hourly_rollup`) copied into one partition of
//! `usage_hourly_rollup_months`, merged into one part, and the copy recorded
//! in `rollup_months` with how far it reaches. Reads take every hour before
//! the latest copy's end from there: 30 days of one project's hours open a
//! part or two instead of one per day. When copies are due:
//! `meter_core::compaction`.
//!
//! As with a day: the copy is made in a staging table that replaces the
//! month's partition whole, and only then recorded, so a crash at any point
//! leaves reads exact (the partition always holds at least every hour the
//! latest record says it does). The day partitions of a month copied whole
//! are dropped with the month's per-batch rows (after which a day cannot be
//! rolled again), an hour or more after the copy by the pipeline's clock
//! (the probes loaded, as for finality and retention).

use clickhouse::Row;
use meter_core::compaction::{copied_whole, copies_due, MonthCopy};
use meter_core::finality::month_span;
use meter_core::UnixMs;
use serde::{Deserialize, Serialize};

use crate::rollup::{stage_name, stage_table, HOURLY_MONTHS};
use crate::{Result, Store};

/// A reader holding bounds read before a copy was recorded may still read
/// the days it copied for this long; their partitions are kept that long.
const READ_GRACE_MS: i64 = 3_600_000;

#[derive(Debug, Row, Deserialize)]
struct DayRolls {
    day: u32,
    n: u64,
}

#[derive(Debug, Row, Serialize, Deserialize)]
struct Copy {
    month: u32,
    through: u32,
    compacted_ms: i64,
    loaded_ms: i64,
    day_rolls: u64,
    hourly_rows: u64,
}

/// When a month is copied: the time, and how far ClickHouse is loaded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct At {
    pub now_ms: UnixMs,
    pub loaded_ms: UnixMs,
}

/// What copying one month wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CompactedMonth {
    /// `YYYYMM`.
    pub month: u32,
    /// The end of the days copied.
    pub through: UnixMs,
    pub hourly_rows: u64,
    /// How long the copy and its merge took.
    pub took: std::time::Duration,
}

impl Store {
    /// Makes the copies due with days rolled through `rolled_through`
    /// (`meter_core::compaction::copies_due`), oldest month first.
    pub async fn compact_months(&self, rolled_through: UnixMs, at: At) -> Result<Vec<CompactedMonth>> {
        let (days, copies) = (self.day_rolls().await?, self.copies(None).await?);
        let mut done = Vec::new();
        for due in copies_due(&days, &copies, rolled_through) {
            let c = self.compact_month(due, at).await?;
            tracing::info!(month = c.month, through = %meter_core::cycle::rfc3339(c.through),
                hourly_rows = c.hourly_rows, seconds = c.took.as_secs_f64(), "rollup.month_compacted");
            done.push(c);
        }
        Ok(done)
    }

    /// Copies the days of `copy.month` before `copy.through` from
    /// `usage_hourly_rollup` into the month's partition of
    /// `usage_hourly_rollup_months` and records the copy. `copy.rolls`: the
    /// records of those days in `rollup_days` before the copy began. Safe to
    /// repeat.
    pub async fn compact_month(&self, copy: MonthCopy, at: At) -> Result<CompactedMonth> {
        let (start, through, month) = (month_span(copy.month).0, copy.through, copy.month);
        let stage = stage_name(at.now_ms, "m");
        let started = std::time::Instant::now();
        let run = async {
            self.execute(&stage_table(&stage, "usage_hourly_rollup_months", HOURLY_MONTHS)).await?;
            self.execute(&format!(
                "INSERT INTO {stage} (project_id, metric, hour, branch_id, value, last_value, last_time_ms)
                 SELECT project_id, metric, hour, branch_id, value, last_value, last_time_ms
                 FROM usage_hourly_rollup
                 WHERE hour >= toDateTime({}) AND hour < toDateTime({})",
                start / 1000,
                through / 1000
            ))
            .await?;
            let hourly_rows = self.count(&stage).await?;
            if hourly_rows == 0 {
                // Current servers refuse to replace a partition from an empty one.
                self.execute(&format!("ALTER TABLE usage_hourly_rollup_months DROP PARTITION {month}")).await?;
            } else {
                // One part: what makes a month's read cheap.
                self.execute(&format!("OPTIMIZE TABLE {stage} PARTITION {month} FINAL")).await?;
                self.execute(&format!("ALTER TABLE usage_hourly_rollup_months REPLACE PARTITION {month} FROM {stage}"))
                    .await?;
            }
            let record = Copy {
                month: (start / 1000) as u32,
                through: (through / 1000) as u32,
                compacted_ms: at.now_ms,
                loaded_ms: at.loaded_ms,
                day_rolls: copy.rolls,
                hourly_rows,
            };
            self.insert_all("rollup_months", &[record]).await?;
            Ok(CompactedMonth { month, through, hourly_rows, took: started.elapsed() })
        };
        let result = run.await;
        // Left behind if this fails: `drop_stale_stages` takes it later.
        let _ = self.execute(&format!("DROP TABLE IF EXISTS {stage}")).await;
        result
    }

    /// Drops the day partitions of `usage_hourly_rollup` of the months
    /// copied whole an hour or more before `loaded_ms` (by the pipeline's
    /// clock) whose per-batch rows are gone. Returns those months.
    pub async fn drop_compacted_days(&self, loaded_ms: UnixMs) -> Result<Vec<u32>> {
        let (days, copies) = (self.day_rolls().await?, self.copies(Some(loaded_ms - READ_GRACE_MS)).await?);
        let (whole, batches) = (copied_whole(&days, &copies), self.batch_months().await?);
        let day_parts = self.partitions("usage_hourly_rollup").await?;
        let mut dropped = Vec::new();
        for month in whole.into_iter().filter(|m| !batches.contains(m)) {
            let parts: Vec<u32> = day_parts.iter().copied().filter(|d| d / 100 == month).collect();
            if parts.is_empty() {
                continue;
            }
            for day in parts {
                self.execute(&format!("ALTER TABLE usage_hourly_rollup DROP PARTITION {day}")).await?;
            }
            tracing::info!(month, "rollup.compacted_days_dropped");
            dropped.push(month);
        }
        Ok(dropped)
    }

    /// The months (`YYYYMM`) copied whole with rows whose day partitions
    /// were dropped: a day of them cannot be rolled again.
    pub async fn months_without_days(&self) -> Result<Vec<u32>> {
        let kept: Vec<u32> = self.partitions("usage_hourly_rollup").await?.into_iter().map(|d| d / 100).collect();
        let mut months: Vec<u32> = self
            .copy_records(None)
            .await?
            .iter()
            .filter(|r| r.hourly_rows > 0)
            .map(Copy::month_copy)
            .filter(|c| c.through == month_span(c.month).1 && !kept.contains(&c.month))
            .map(|c| c.month)
            .collect();
        months.sort_unstable();
        months.dedup();
        Ok(months)
    }

    /// Per day rolled (its start), its records in `rollup_days`.
    async fn day_rolls(&self) -> Result<Vec<(UnixMs, u64)>> {
        let rows: Vec<DayRolls> = self
            .client
            .query("SELECT toUInt32(day) AS day, count() AS n FROM rollup_days GROUP BY day ORDER BY day")
            .fetch_all()
            .await?;
        Ok(rows.into_iter().map(|r| (i64::from(r.day) * 1000, r.n)).collect())
    }

    /// The copies recorded (only those loaded by `loaded_by`, if given).
    async fn copies(&self, loaded_by: Option<UnixMs>) -> Result<Vec<MonthCopy>> {
        Ok(self.copy_records(loaded_by).await?.iter().map(Copy::month_copy).collect())
    }

    async fn copy_records(&self, loaded_by: Option<UnixMs>) -> Result<Vec<Copy>> {
        Ok(self
            .client
            .query(
                "SELECT toUInt32(month) AS month, toUInt32(through) AS through, compacted_ms, loaded_ms, day_rolls,
                        hourly_rows
                 FROM rollup_months WHERE loaded_ms <= ?",
            )
            .bind(loaded_by.unwrap_or(i64::MAX))
            .fetch_all()
            .await?)
    }
}

impl Copy {
    fn month_copy(&self) -> MonthCopy {
        MonthCopy {
            month: meter_core::finality::month_of(i64::from(self.month) * 1000),
            through: i64::from(self.through) * 1000,
            rolls: self.day_rolls,
        }
    }
}
