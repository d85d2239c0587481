//! The adjustments the aggregator applied, in `usage_adjustments`: one row
//! per (project, idempotency key), signed, booked in an hour. Refused
//! adjustments are not written (they are listed by the API, from Kafka).

use std::collections::HashMap;

use clickhouse::Row;
use meter_core::adjust::Adjustment;
use meter_core::history::HistoryRange;
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

#[derive(Debug, Row, Deserialize)]
struct Summed {
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

    /// Adds the adjustments booked in each timeframe of `range` to `usage`
    /// (of `projects`, or the fleet's when `projects` is `None`), adding
    /// the timeframes that have adjustments but no usage. A timeframe's
    /// value stays at least 0; the aggregator keeps each cycle's counter so.
    pub(crate) async fn add_adjustments(
        &self,
        range: &HistoryRange,
        projects: Option<&[String]>,
        usage: &mut Vec<PeriodUsage>,
    ) -> Result<()> {
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
        let sums = q.fetch_all::<Summed>().await?;
        if sums.is_empty() {
            return Ok(());
        }
        let mut at: HashMap<(String, i64), usize> =
            usage.iter().enumerate().map(|(i, u)| ((u.project_id.clone(), u.start_ms), i)).collect();
        for s in sums {
            let Some(i) = Metric::COUNTERS.iter().position(|m| metric_code(*m) == s.metric) else { continue };
            let start_ms = crate::history::key_start(range.granularity, s.period);
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
        Ok(())
    }
}
