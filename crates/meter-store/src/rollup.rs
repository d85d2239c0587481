//! Rollups: final days of `usage_hourly` compacted into one row per
//! (project, metric, hour, branch) and per (project, metric, day, branch).
//!
//! A day is rolled into staging tables of its own, then each staging table
//! replaces the day's partition of its rollup whole (`REPLACE PARTITION`,
//! atomic), and only then is the day recorded in `rollup_days`. Readers read
//! the rollups only before the end of the latest recorded day, so a crash at
//! any point leaves them exact: before the record, the day is still read
//! from `usage_hourly`; rolling it again replaces whatever was there. Two
//! jobs rolling the same day each replace it with the same complete rows.

use clickhouse::Row;
use meter_core::finality::{batches_expired, days_to_roll, Finality, DAY_MS};
use meter_core::UnixMs;
use serde::{Deserialize, Serialize};

use crate::compact::At;
use crate::source::Bounds;
use crate::{Result, Store};

/// Staging tables are named with this prefix, the time and a random suffix.
const STAGE: &str = "rollup_stage_";
/// Staging tables made by this process (names stay unique within it).
static STAGES_MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
/// A staging table older than this was left by a crashed job.
const STALE_STAGE_MS: i64 = 3_600_000;

/// A staging table's name, unique within the process: the prefix, the time
/// (which says when it is stale), the process, a count and `tag`.
pub(crate) fn stage_name(now_ms: UnixMs, tag: &str) -> String {
    let n = STAGES_MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    format!("{STAGE}{now_ms}_{}_{n}_{tag}", std::process::id())
}

/// The layouts of the rollup tables (as migration 6 and 7 made them): a
/// staging table must have its target's to replace one of its partitions.
pub(crate) const HOURLY_DAYS: &str = "PARTITION BY toYYYYMMDD(hour) ORDER BY (project_id, metric, hour, branch_id)";
const DAILY_DAYS: &str = "PARTITION BY toYYYYMMDD(day) ORDER BY (project_id, metric, day, branch_id)";
pub(crate) const HOURLY_MONTHS: &str = "PARTITION BY toYYYYMM(hour) ORDER BY (project_id, metric, hour, branch_id)";

/// A staging table with `like`'s columns and `layout`, on the server the
/// job talks to only: never replicated (`AS` alone would copy a replicated
/// table's engine and ZooKeeper path, making the stage a replica of it).
pub(crate) fn stage_table(stage: &str, like: &str, layout: &str) -> String {
    format!("CREATE TABLE {stage} AS {like} ENGINE = MergeTree {layout}")
}

/// The rollups' rows of one hour or day, from the rows of `usage_hourly`:
/// counters and byte-hours summed; storage: the largest reading, and the
/// latest (by time, then value), with its time. (Aliases other than the
/// columns' names: ClickHouse would put an alias in place of the column
/// inside the other aggregates; INSERT ... SELECT maps by position.)
const ROLLED: &str = "if(metric = 'logical_size_bytes', max(value), sum(value)) AS rolled_value,
    toUInt64(argMax(last_value, (last_time_ms, last_value))) AS rolled_last_value,
    max(last_time_ms) AS rolled_last_time_ms";

/// How many rows, and a time (seconds) of them.
#[derive(Debug, Row, Deserialize)]
struct CountAt {
    rows: u64,
    at: u32,
}

/// The latest day rolled and the end of the latest month copy (seconds), and how many.
#[derive(Debug, Row, Deserialize)]
struct Latest {
    days: u64,
    day: u32,
    months: u64,
    through: u32,
}

/// How far the rollups reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Reach {
    /// The end of the latest day rolled up: hours before it are read from
    /// the rollups. `None` before the first day is rolled.
    pub rolled_through: Option<UnixMs>,
    /// The end of the latest copy of a month's days: rolled hours before it
    /// are read from `usage_hourly_rollup_months`. `None` before the first.
    pub compacted_through: Option<UnixMs>,
}

impl Reach {
    /// In the seconds reads compare (0: nothing).
    pub(crate) fn bounds(&self) -> Bounds {
        let rolled = self.rolled_through.map_or(0, |t| t / 1000);
        Bounds { rolled, compacted: self.compacted_through.map_or(0, |t| t / 1000).min(rolled) }
    }
}

#[derive(Debug, Row, Serialize)]
struct Rolled {
    day: u32,
    rolled_ms: i64,
    hourly_rows: u64,
    daily_rows: u64,
}

/// What rolling one day wrote.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RolledDay {
    pub day_ms: UnixMs,
    pub hourly_rows: u64,
    pub daily_rows: u64,
}

/// What the rollup job keeps to.
#[derive(Debug, Clone, Copy)]
pub struct RollupRule {
    /// Days roll up once final by this rule.
    pub finality: Finality,
    /// `usage.events` partitions (each must have had a probe loaded).
    pub partitions: u32,
    /// The per-batch rows of a month are dropped this long after it ended
    /// (once rolled up); `None`: kept.
    pub keep_batches_ms: Option<i64>,
}

/// What one pass of the rollup job did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RollupPass {
    pub rolled: Vec<RolledDay>,
    /// Months whose per-batch rows were dropped.
    pub dropped_months: Vec<u32>,
    /// Months compacted (again) into `usage_hourly_rollup_months`.
    pub compacted: Vec<crate::CompactedMonth>,
    /// Compacted months whose day partitions of the hourly rollup were dropped.
    pub days_dropped_months: Vec<u32>,
    /// Final days not rolled yet (more than the pass's `max_days`).
    pub days_left: usize,
    pub rolled_through: Option<UnixMs>,
    /// The end of the latest copy of a month's days (see `Reach`).
    pub compacted_through: Option<UnixMs>,
    pub final_before: Option<UnixMs>,
}

impl Store {
    /// One pass of the rollup job: rolls up to `max_days` final days not
    /// rolled yet, oldest first; with none left, copies the months due (see
    /// `compact`); then drops the per-batch rows of months
    /// kept long enough, and the day partitions of months compacted.
    pub async fn roll_up(&self, rule: &RollupRule, max_days: usize, now_ms: UnixMs) -> Result<RollupPass> {
        self.drop_stale_stages(now_ms).await?;
        let mut pass = RollupPass::default();
        let loaded = self.loaded_through(rule.partitions).await?;
        pass.final_before = rule.finality.final_before(loaded);
        if let Some(final_before) = pass.final_before {
            let through = self.rolled_through().await?;
            // The oldest usage is looked for (a scan) only before the first day.
            let first = if through.is_none() { self.first_usage().await? } else { None };
            let days = days_to_roll(through, first, final_before);
            pass.days_left = days.len().saturating_sub(max_days);
            for day in days.into_iter().take(max_days) {
                let rolled = self.roll_day(day, now_ms).await?;
                tracing::info!(day = %meter_core::cycle::rfc3339(day), hourly_rows = rolled.hourly_rows,
                    daily_rows = rolled.daily_rows, "rollup.day_rolled");
                pass.rolled.push(rolled);
            }
        }
        let reach = self.reach().await?;
        (pass.rolled_through, pass.compacted_through) = (reach.rolled_through, reach.compacted_through);
        let (Some(through), Some(loaded)) = (pass.rolled_through, loaded) else { return Ok(pass) };
        if pass.days_left == 0 {
            pass.compacted = self.compact_months(through, At { now_ms, loaded_ms: loaded }).await?;
            pass.compacted_through = pass.compacted_through.max(pass.compacted.iter().map(|c| c.through).max());
        }
        if let Some(keep) = rule.keep_batches_ms {
            for month in self.batch_months().await? {
                if batches_expired(month, through, loaded, keep) {
                    self.drop_batch_month(month).await?;
                    tracing::info!(month, "rollup.batches_dropped");
                    pass.dropped_months.push(month);
                }
            }
        }
        pass.days_dropped_months = self.drop_compacted_days(loaded).await?;
        Ok(pass)
    }

    /// The end of the latest day rolled up (see `Reach`).
    pub async fn rolled_through(&self) -> Result<Option<UnixMs>> {
        Ok(self.reach().await?.rolled_through)
    }

    /// How far the rollups reach (one query).
    pub async fn reach(&self) -> Result<Reach> {
        let l: Latest = self
            .client
            .query(
                "SELECT (SELECT count() FROM rollup_days) AS days, (SELECT toUInt32(max(day)) FROM rollup_days) AS day,
                        (SELECT count() FROM rollup_months) AS months,
                        (SELECT toUInt32(max(through)) FROM rollup_months) AS through",
            )
            .fetch_one()
            .await?;
        Ok(Reach {
            rolled_through: (l.days > 0).then(|| i64::from(l.day) * 1000 + DAY_MS),
            compacted_through: (l.months > 0).then(|| i64::from(l.through) * 1000),
        })
    }

    /// The hour of the oldest usage in `usage_hourly` (`None`: empty).
    pub async fn first_usage(&self) -> Result<Option<UnixMs>> {
        let p: CountAt = self
            .client
            .query("SELECT count() AS rows, toUInt32(min(hour)) AS at FROM usage_hourly")
            .fetch_one()
            .await?;
        Ok((p.rows > 0).then(|| i64::from(p.at) * 1000))
    }

    /// Rolls up the day starting at `day_ms` (a UTC midnight) and records it.
    /// Safe to repeat, and to run next to another job rolling the same day.
    pub async fn roll_day(&self, day_ms: UnixMs, now_ms: UnixMs) -> Result<RolledDay> {
        let day = day_ms / 1000;
        let partition = meter_core::cycle::civil_from_days(day_ms.div_euclid(DAY_MS));
        let partition = format!("{:04}{:02}{:02}", partition.0, partition.1, partition.2);
        let (hourly, daily) = (stage_name(now_ms, "h"), stage_name(now_ms, "d"));
        let run = async {
            self.execute(&stage_table(&hourly, "usage_hourly_rollup", HOURLY_DAYS)).await?;
            self.execute(&stage_table(&daily, "usage_daily_rollup", DAILY_DAYS)).await?;
            self.execute(&format!(
                "INSERT INTO {hourly} (project_id, metric, hour, branch_id, value, last_value, last_time_ms)
                 SELECT project_id, metric, hour, branch_id, {ROLLED}
                 FROM usage_hourly FINAL
                 WHERE hour >= toDateTime({day}) AND hour < toDateTime({})
                 GROUP BY project_id, metric, hour, branch_id",
                day + DAY_MS / 1000
            ))
            .await?;
            self.execute(&format!(
                "INSERT INTO {daily} (project_id, metric, day, branch_id, value, last_value, last_time_ms)
                 SELECT project_id, metric, toDateTime({day}) AS day, branch_id, {ROLLED}
                 FROM {hourly}
                 GROUP BY project_id, metric, branch_id"
            ))
            .await?;
            let rolled =
                RolledDay { day_ms, hourly_rows: self.count(&hourly).await?, daily_rows: self.count(&daily).await? };
            for (table, stage) in [("usage_hourly_rollup", &hourly), ("usage_daily_rollup", &daily)] {
                // Current servers refuse to replace a partition from an empty one.
                if rolled.hourly_rows == 0 {
                    self.execute(&format!("ALTER TABLE {table} DROP PARTITION {partition}")).await?;
                } else {
                    self.execute(&format!("ALTER TABLE {table} REPLACE PARTITION {partition} FROM {stage}")).await?;
                }
            }
            let record = Rolled {
                day: day as u32,
                rolled_ms: now_ms,
                hourly_rows: rolled.hourly_rows,
                daily_rows: rolled.daily_rows,
            };
            self.insert_all("rollup_days", &[record]).await?;
            Ok(rolled)
        };
        let result = run.await;
        for stage in [&hourly, &daily] {
            // Left behind if this fails: `drop_stale_stages` takes it later.
            let _ = self.execute(&format!("DROP TABLE IF EXISTS {stage}")).await;
        }
        result
    }

    /// Drops the staging tables crashed jobs left (older than an hour).
    pub async fn drop_stale_stages(&self, now_ms: UnixMs) -> Result<usize> {
        let names: Vec<String> = self
            .client
            .query("SELECT name FROM system.tables WHERE database = currentDatabase() AND startsWith(name, ?)")
            .bind(STAGE)
            .fetch_all()
            .await?;
        let mut dropped = 0;
        for name in names {
            let made = name[STAGE.len()..].split('_').next().and_then(|t| t.parse::<i64>().ok()).unwrap_or(0);
            if now_ms - made > STALE_STAGE_MS {
                self.execute(&format!("DROP TABLE IF EXISTS {name}")).await?;
                dropped += 1;
            }
        }
        Ok(dropped)
    }

    /// The months (`YYYYMM`) `usage_hourly` holds rows of, oldest first.
    pub async fn batch_months(&self) -> Result<Vec<u32>> {
        self.partitions("usage_hourly").await
    }

    /// The partitions of `table` (numbers: `YYYYMM`, `YYYYMMDD`), oldest first.
    pub(crate) async fn partitions(&self, table: &str) -> Result<Vec<u32>> {
        Ok(self
            .client
            .query(
                "SELECT DISTINCT toUInt32(partition) FROM system.parts
                 WHERE database = currentDatabase() AND table = ? AND active ORDER BY 1",
            )
            .bind(table)
            .fetch_all()
            .await?)
    }

    /// Drops the per-batch rows of a month (`YYYYMM`) whose days are all
    /// rolled up; the rollups keep its usage.
    pub async fn drop_batch_month(&self, month: u32) -> Result<()> {
        self.execute(&format!("ALTER TABLE usage_hourly DROP PARTITION {month}")).await
    }

    pub(crate) async fn execute(&self, sql: &str) -> Result<()> {
        Ok(self.client.query(sql).execute().await?)
    }

    pub(crate) async fn count(&self, table: &str) -> Result<u64> {
        Ok(self.client.query(&format!("SELECT count() FROM {table}")).fetch_one().await?)
    }
}
