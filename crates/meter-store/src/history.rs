//! Consumption history: usage per project and timeframe, read from the
//! rollups for the days rolled up and from `usage_hourly` with FINAL (exact
//! whatever merges have or have not happened) after them, adjustments
//! included.

use clickhouse::Row;
use meter_core::finality::DAY_MS;
use meter_core::history::{Granularity, HistoryRange};
use meter_core::{Cycle, Metric, UnixMs};
use serde::Deserialize;

use crate::adjustments::add_adjustments;
use crate::source::{Columns, Spans};
use crate::{Result, Store};

/// One project's (or the fleet's) usage in one timeframe, in `Metric::ALL`
/// order: the four counters summed, and storage: each branch's last reading
/// in the timeframe, summed (0 when none; for the fleet, over every project);
/// and the byte-hours of storage held in the timeframe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeriodUsage {
    pub project_id: String,
    pub start_ms: UnixMs,
    pub values: [u64; 5],
    pub logical_size_bytes_hour: u64,
    /// The counters include adjustments booked in this timeframe.
    pub adjusted: bool,
}

impl PeriodUsage {
    /// The value of one metric.
    pub fn get(&self, m: Metric) -> u64 {
        self.values[Metric::ALL.iter().position(|x| *x == m).unwrap_or(0)]
    }
}

#[derive(Debug, Row, Deserialize)]
struct Raw {
    project_id: String,
    period: u32,
    active_time_seconds: u64,
    compute_time_seconds: u64,
    written_data_bytes: u64,
    data_transfer_bytes: u64,
    logical_size_bytes: u64,
    logical_size_bytes_hour: u64,
}

/// The SQL expression of a row's timeframe key.
pub(crate) fn period_key(g: Granularity) -> &'static str {
    match g {
        Granularity::Hourly => "toUInt32(hour)",
        Granularity::Daily => "toUInt32(intDiv(toUInt32(hour), 86400) * 86400)",
        Granularity::Monthly => "toYYYYMM(hour)",
    }
}

/// The timeframe start of a key returned by `period_key`.
pub(crate) fn key_start(g: Granularity, key: u32) -> UnixMs {
    match g {
        Granularity::Hourly | Granularity::Daily => i64::from(key) * 1000,
        Granularity::Monthly => {
            let (y, m) = (i64::from(key / 100), key % 100);
            Cycle::containing(meter_core::cycle::days_from_civil(y, m, 15) * 86_400_000).start_ms
        }
    }
}

/// Usage per group that includes `branch_id`: the counters (whose rows all
/// have branch '') summed, and the branch's latest storage reading.
pub(crate) const PER_BRANCH: &str = "sumIf(value, metric = 'active_time_seconds') AS active_time_seconds,
    sumIf(value, metric = 'compute_time_seconds') AS compute_time_seconds,
    sumIf(value, metric = 'written_data_bytes') AS written_data_bytes,
    sumIf(value, metric = 'data_transfer_bytes') AS data_transfer_bytes,
    toUInt64(argMaxIf(last_value, (last_time_ms, last_value), metric = 'logical_size_bytes')) AS logical_size_bytes,
    sumIf(value, metric = 'logical_size_bytes_hour') AS logical_size_bytes_hour";

/// The `PER_BRANCH` columns added up over the branches (and projects).
pub(crate) const SUMMED: &str = "sum(active_time_seconds) AS active_time_seconds,
    sum(compute_time_seconds) AS compute_time_seconds,
    sum(written_data_bytes) AS written_data_bytes, sum(data_transfer_bytes) AS data_transfer_bytes,
    sum(logical_size_bytes) AS logical_size_bytes, sum(logical_size_bytes_hour) AS logical_size_bytes_hour";

/// Reads of at most this many projects deduplicate the per-batch rows by
/// grouping their key rather than with FINAL (`Columns::ProjectRows`): a
/// page of the API.
const MAX_GROUPED: usize = 100;

/// Restricts a query to the projects of a bound array. An `IN` set, which
/// the primary key (`project_id` first) can serve, unlike `has(?, project_id)`:
/// one project's week of hourly history out of 1 M rows took 0.02 s instead
/// of 0.23 s on ClickHouse 18.16 (BENCHMARKS.md, "History reads").
const PROJECT_IN: &str = "project_id IN (SELECT arrayJoin(?))";

/// Per timeframe (`period`, see `period_key`) and branch, the usage of the
/// rows of `rows` (an SQL source yielding usage rows, see `Spans::sql`).
fn per_branch(g: Granularity, rows: &str) -> String {
    format!(
        "SELECT project_id, {} AS period, branch_id, {PER_BRANCH}
         FROM ({rows})
         GROUP BY project_id, period, branch_id",
        period_key(g)
    )
}

impl Store {
    /// Where the usage of `range` is read from: the rollups before the end
    /// of the days rolled up (the months compacted before the end of the
    /// latest), `usage_hourly` from there on.
    pub(crate) async fn spans(&self, (from_ms, to_ms): (i64, i64), whole_days: bool) -> Result<Spans> {
        let bounds = self.reach().await?.bounds();
        Ok(Spans::new((from_ms / 1000, to_ms / 1000), bounds, whole_days))
    }

    /// Up to `limit` ids of projects with usage in `range`, in id order,
    /// after `after` (the cursor), restricted to `only` when it is not empty.
    pub async fn history_projects(
        &self,
        range: &HistoryRange,
        after: &str,
        only: &[String],
        limit: usize,
    ) -> Result<Vec<String>> {
        let bounds = self.reach().await?.bounds();
        let (from, to) = (range.from_ms / 1000, range.to_ms / 1000);
        let upto = self.listing_bound((from, to), bounds.rolled, after, only, limit).await?;
        let mut filter = "project_id > ?".to_owned();
        if upto.is_some() {
            filter.push_str(" AND project_id <= ?");
        }
        if !only.is_empty() {
            filter = format!("{filter} AND {PROJECT_IN}");
        }
        let parts = Spans::new((from, to), bounds, true).sql(Columns::Projects, &filter);
        let sql = format!("SELECT DISTINCT project_id FROM ({}) ORDER BY project_id LIMIT ?", parts.sql);
        let mut q = self.client.query(&sql);
        for _ in 0..parts.parts {
            q = q.bind(after);
            if let Some(upto) = &upto {
                q = q.bind(upto);
            }
            if !only.is_empty() {
                q = q.bind(only);
            }
        }
        Ok(q.bind(limit as u64).fetch_all::<String>().await?)
    }

    /// An id at or before which the first `limit` projects after `after`
    /// are (`None`: not known): the `limit`-th such id in the daily rollup of
    /// the range's last whole day rolled up. That day's projects are projects
    /// of the range, so the page's ids are at or before it, and the listing
    /// reads the key range up to it only, not every id of the range (a month
    /// at 100,000 projects: ~0.6 s, BENCHMARKS.md).
    async fn listing_bound(
        &self,
        (from, to): (i64, i64),
        rolled: i64,
        after: &str,
        only: &[String],
        limit: usize,
    ) -> Result<Option<String>> {
        const DAY_S: i64 = DAY_MS / 1000;
        let day = to.min(rolled).div_euclid(DAY_S) * DAY_S - DAY_S;
        if day < from || limit == 0 {
            return Ok(None);
        }
        let only_filter = if only.is_empty() { String::new() } else { format!(" AND {PROJECT_IN}") };
        let sql = format!(
            "SELECT project_id FROM usage_daily_rollup
             WHERE day = toDateTime({day}) AND project_id > ?{only_filter}
             GROUP BY project_id ORDER BY project_id LIMIT 1 OFFSET {}",
            limit - 1
        );
        let mut q = self.client.query(&sql).bind(after);
        if !only.is_empty() {
            q = q.bind(only);
        }
        Ok(q.fetch_all::<String>().await?.into_iter().next())
    }

    /// The usage of each of `projects` per timeframe of `range`: only
    /// timeframes with usage; ordered by project, then time.
    /// (Where to read from and the adjustments are asked for at once: one
    /// round trip less on a read a billing system makes per project.)
    pub async fn history(&self, range: &HistoryRange, projects: &[String]) -> Result<Vec<PeriodUsage>> {
        let (spans, adjustments) = tokio::try_join!(
            self.spans((range.from_ms, range.to_ms), range.granularity != Granularity::Hourly),
            self.period_adjustments(range, Some(projects))
        )?;
        let parts =
            spans.sql(if projects.len() <= MAX_GROUPED { Columns::ProjectRows } else { Columns::Rows }, PROJECT_IN);
        let sql = format!(
            "SELECT project_id, period, {SUMMED}
             FROM ({})
             GROUP BY project_id, period ORDER BY project_id, period",
            per_branch(range.granularity, &parts.sql)
        );
        let mut q = self.client.query(&sql);
        for _ in 0..parts.parts {
            q = q.bind(projects);
        }
        let mut usage: Vec<PeriodUsage> =
            q.fetch_all::<Raw>().await?.into_iter().map(|r| from_raw(range.granularity, r)).collect();
        add_adjustments(range.granularity, adjustments, &mut usage);
        Ok(usage)
    }

    /// The whole fleet's usage per timeframe of `range` (project id empty).
    pub async fn fleet_history(&self, range: &HistoryRange) -> Result<Vec<PeriodUsage>> {
        let (spans, adjustments) = tokio::try_join!(
            self.spans((range.from_ms, range.to_ms), range.granularity != Granularity::Hourly),
            self.period_adjustments(range, None)
        )?;
        let sql = format!(
            "SELECT '' AS project_id, period, {SUMMED}
             FROM ({})
             GROUP BY period ORDER BY period",
            per_branch(range.granularity, &spans.sql(Columns::Rows, "").sql)
        );
        let mut usage: Vec<PeriodUsage> = self
            .client
            .query(&sql)
            .fetch_all::<Raw>()
            .await?
            .into_iter()
            .map(|r| from_raw(range.granularity, r))
            .collect();
        add_adjustments(range.granularity, adjustments, &mut usage);
        Ok(usage)
    }
}

fn from_raw(g: Granularity, r: Raw) -> PeriodUsage {
    PeriodUsage {
        start_ms: key_start(g, r.period),
        values: [
            r.active_time_seconds,
            r.compute_time_seconds,
            r.written_data_bytes,
            r.data_transfer_bytes,
            r.logical_size_bytes,
        ],
        logical_size_bytes_hour: r.logical_size_bytes_hour,
        project_id: r.project_id,
        adjusted: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_map_to_timeframe_starts() {
        let nov = meter_core::cycle::parse_rfc3339("2026-11-01T00:00:00Z").unwrap();
        assert_eq!(key_start(Granularity::Monthly, 202611), nov);
        assert_eq!(key_start(Granularity::Daily, 1_793_491_200), nov);
        assert_eq!(key_start(Granularity::Hourly, 1_793_491_200 + 3600), nov + 3_600_000);
    }
}
