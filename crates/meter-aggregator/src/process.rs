//! Applying a batch of Kafka records to the project states: pure, apart
//! from restoring a partition's state on first use.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use meter_core::aggregate::Retention;
use meter_core::{ProjectState, ProjectUpdate};
use meter_kafka::KafkaConfig;
use meter_proto::decode_batch;
use meter_store::UsageRow;

use crate::metrics as m;
use crate::state::States;

/// One record of `usage.events`.
#[derive(Debug)]
pub(crate) struct Record {
    pub(crate) partition: i32,
    pub(crate) offset: i64,
    pub(crate) payload: Vec<u8>,
}

/// The records of one transaction, and where each partition starts and ends.
#[derive(Debug, Default)]
pub(crate) struct Pending {
    pub(crate) records: Vec<Record>,
    /// Offset of the first record per partition: where to rewind on abort.
    pub(crate) first: BTreeMap<i32, i64>,
    /// Offset after the last record per partition: what the commit stores.
    pub(crate) next: BTreeMap<i32, i64>,
}

impl Pending {
    pub(crate) fn push(&mut self, r: Record) {
        self.first.entry(r.partition).or_insert(r.offset);
        self.next.insert(r.partition, r.offset + 1);
        self.records.push(r);
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// What a batch produced: rows for ClickHouse, the projects whose totals
/// changed, and the oldest ingest time among the counted batches.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) rows: Vec<UsageRow>,
    pub(crate) touched: BTreeSet<(i32, String)>,
    pub(crate) events: u64,
    pub(crate) oldest_ingest_ms: Option<i64>,
}

/// Applies every record of `pending` to `states`, in order.
pub(crate) fn apply(
    pending: &Pending,
    states: &mut States,
    kafka: &KafkaConfig,
    retention: &Retention,
    restore_timeout: Duration,
) -> anyhow::Result<Outcome> {
    let mut out = Outcome::default();
    let partitions: Vec<i32> = pending.next.keys().copied().collect();
    states.restore_missing(kafka, &partitions, restore_timeout)?;
    for rec in &pending.records {
        let batch = match decode_batch(&rec.payload) {
            Ok(b) => b,
            Err(e) => {
                // Ingest never writes such a record; skip it, loudly.
                tracing::error!(partition = rec.partition, offset = rec.offset, error = %e, "aggregator.record_undecodable");
                metrics::counter!(m::DISCARDED, "reason" => "undecodable").increment(1);
                continue;
            }
        };
        let part = states.get_mut(rec.partition).expect("restored above");
        let project = batch.project_id.as_str();
        let state = match part.get_mut(project) {
            Some(s) => s,
            None => part.entry(project.to_owned()).or_insert_with(|| ProjectState::new(batch.project_id.clone())),
        };
        match state.apply(&batch, retention) {
            ProjectUpdate::Counted(hourly) => {
                out.rows.extend(
                    hourly.iter().map(|h| {
                        UsageRow::new(project, batch.source_id.as_str(), batch.batch_seq, rec.offset as u64, h)
                    }),
                );
                out.touched.insert((rec.partition, project.to_owned()));
                out.events += batch.events.len() as u64;
                out.oldest_ingest_ms =
                    Some(out.oldest_ingest_ms.map_or(batch.ingested_ms, |t| t.min(batch.ingested_ms)));
            }
            ProjectUpdate::Duplicate => {
                metrics::counter!(m::DISCARDED, "reason" => "duplicate").increment(1);
            }
            ProjectUpdate::TooOld => {
                tracing::warn!(source = %batch.source_id, seq = batch.batch_seq, project, "aggregator.batch_outside_dedup_window");
                metrics::counter!(m::DISCARDED, "reason" => "stale_seq").increment(1);
            }
        }
    }
    Ok(out)
}
