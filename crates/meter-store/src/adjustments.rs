//! The adjustments the aggregator applied, in `usage_adjustments`: one row
//! per (project, idempotency key), signed, booked in an hour. Refused
//! adjustments are not written (they are listed by the API, from Kafka).

use std::collections::HashMap;

use clickhouse::Row;
use meter_core::adjust::Adjustment;
use meter_core::history::{Granularity, HistoryRange};
use meter_core::Metric;
use serde::{Deserialize, Serialize};

use crate::history::{period_key, PeriodUsage};
use crate::writer::metric_code;
use crate::{Result, Store};

/// A row of `usage_adjustments`, as sent in RowBinary.
#[derive(Debug, Clone, PartialEq, Eq, Row, Serialize)]
pub struct AdjustmentRow {
    pub project_id: String,
    /// Enum8 code of the counter, as in `usage_hourly`.
    pub metric: i8,
    /// The hour it is booked in, seconds since the epoch.
    pub hour: u32,
    pub idempotency_key: String,
    pub delta: i64,
    /// 1 when asked for a whole cycle (booked at its first hour).
    pub cycle_wide: u8,
    pub reason: String,
    pub actor: String,
    pub created_ms: i64,
    pub request_id: String,
    /// The `usage.events` offset it was applied from.
    pub version: u64,
}

impl AdjustmentRow {
    /// The row of an applied adjustment read at offset `version`.
    pub fn of(a: &Adjustment, version: u64) -> Self {
        AdjustmentRow {
            project_id: a.project_id.to_string(),
            metric: metric_code(a.metric),
            hour: (a.hour_ms / 1000) as u32,
            idempotency_key: a.idempotency_key.clone(),
            delta: a.delta,
            cycle_wide: u8::from(a.cycle_wide),
            reason: a.reason.clone(),
            actor: a.actor.clone(),
            created_ms: a.created_ms,
            request_id: a.request_id.clone(),
            version,
        }
    }
}

/// The adjustments of one project (or the fleet), timeframe and counter.
#[derive(Debug, Row, Deserialize)]
pub(crate) struct PeriodSum {
    project_id: String,
    period: u32,
    metric: i8,
    delta: i64,
}

#[derive(Debug, Row, Deserialize)]
struct ProjectSum {
    project_id: String,
    metric: i8,
    delta: i64,
}

/// The adjustments of one project and counter, summed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdjustmentSum {
    pub project_id: String,
    pub metric: Metric,
    pub delta: i64,
}

impl Store {
    /// The applied adjustments of the projects whose id starts with
    /// `prefix`, summed per project and counter.
    pub async fn adjustment_sums(&self, prefix: &str) -> Result<Vec<AdjustmentSum>> {
        let rows: Vec<ProjectSum> = self
            .client
            .query(
                "SELECT project_id, toInt8(metric) AS metric, sum(delta) AS delta
                 FROM usage_adjustments FINAL WHERE project_id LIKE ? GROUP BY project_id, metric
                 ORDER BY project_id, metric",
            )
            .bind(crate::query::like_prefix(prefix))
            .fetch_all()
            .await?;
        Ok(rows
            .into_iter()
            .filter_map(|r| {
                let metric = Metric::COUNTERS.into_iter().find(|m| metric_code(*m) == r.metric)?;
                Some(AdjustmentSum { project_id: r.project_id, metric, delta: r.delta })
            })
            .collect())
    }

    /// Inserts applied adjustments. Idempotent: keyed by (project, key).
    pub async fn write_adjustments(&self, rows: &[AdjustmentRow]) -> Result<()> {
        self.insert_all("usage_adjustments", rows).await
    }

    /// The adjustments booked in each timeframe of `range`, per project
    /// (of `projects`), or the fleet's when `projects` is `None`.
    pub(crate) async fn period_adjustments(
        &self,
        range: &HistoryRange,
        projects: Option<&[String]>,
    ) -> Result<Vec<PeriodSum>> {
        let (select, filter, group) = match projects {
            Some(_) => ("project_id", "AND project_id IN (SELECT arrayJoin(?))", "project_id, "),
            None => ("'' AS project_id", "", ""),
        };
        let sql = format!(
            "SELECT {select}, {} AS period, toInt8(metric) AS metric, sum(delta) AS delta
             FROM usage_adjustments FINAL
             WHERE hour >= toDateTime(?) AND hour < toDateTime(?) {filter}
             GROUP BY {group}period, metric",
            period_key(range.granularity)
        );
        let mut q = self.client.query(&sql).bind(range.from_ms / 1000).bind(range.to_ms / 1000);
        if let Some(p) = projects {
            q = q.bind(p);
        }
        Ok(q.fetch_all::<PeriodSum>().await?)
    }
}

/// Adds adjustments (`Store::period_adjustments`) to the usage of the same
/// timeframes, adding the timeframes that have adjustments but no usage. A
/// timeframe's value stays at least 0; the aggregator keeps each cycle's
/// counter so.
pub(crate) fn add_adjustments(g: Granularity, sums: Vec<PeriodSum>, usage: &mut Vec<PeriodUsage>) {
    if sums.is_empty() {
        return;
    }
    let mut at: HashMap<(String, i64), usize> =
        usage.iter().enumerate().map(|(i, u)| ((u.project_id.clone(), u.start_ms), i)).collect();
    for s in sums {
        let Some(i) = Metric::COUNTERS.iter().position(|m| metric_code(*m) == s.metric) else { continue };
        let start_ms = crate::history::key_start(g, s.period);
        let idx = *at.entry((s.project_id.clone(), start_ms)).or_insert_with(|| {
            usage.push(PeriodUsage {
                project_id: s.project_id.clone(),
                start_ms,
                values: [0; 5],
                logical_size_bytes_hour: 0,
                adjusted: false,
            });
            usage.len() - 1
        });
        let u = &mut usage[idx];
        u.values[i] = u.values[i].saturating_add_signed(s.delta);
        u.adjusted = true;
    }
    usage.sort_by(|a, b| (&a.project_id, a.start_ms).cmp(&(&b.project_id, b.start_ms)));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(project: &str, start_ms: i64, values: [u64; 5]) -> PeriodUsage {
        PeriodUsage { project_id: project.into(), start_ms, values, logical_size_bytes_hour: 0, adjusted: false }
    }

    fn sum(project: &str, period: u32, m: Metric, delta: i64) -> PeriodSum {
        PeriodSum { project_id: project.into(), period, metric: metric_code(m), delta }
    }

    #[test]
    fn adjustments_add_to_their_timeframe_and_make_the_missing_ones() {
        let mut u = vec![usage("b", 7_200_000, [10, 20, 30, 40, 50]), usage("a", 3_600_000, [1, 2, 3, 4, 5])];
        let sums = vec![
            sum("b", 7200, Metric::ComputeTimeSeconds, -5),
            sum("a", 0, Metric::WrittenDataBytes, 100),
            // Never below zero, even if the rows are not yet all there.
            sum("a", 3600, Metric::ActiveTimeSeconds, -9),
        ];
        add_adjustments(Granularity::Hourly, sums, &mut u);
        assert_eq!(
            u,
            [
                PeriodUsage { adjusted: true, ..usage("a", 0, [0, 0, 100, 0, 0]) },
                PeriodUsage { adjusted: true, ..usage("a", 3_600_000, [0, 2, 3, 4, 5]) },
                PeriodUsage { adjusted: true, ..usage("b", 7_200_000, [10, 15, 30, 40, 50]) },
            ]
        );
        // No adjustments: untouched, unsorted as it came.
        let mut v = vec![usage("b", 0, [1; 5]), usage("a", 0, [1; 5])];
        add_adjustments(Granularity::Hourly, Vec::new(), &mut v);
        assert_eq!(v[0].project_id, "b");
    }
}
