//! Applying a batch of Kafka records to the project states: pure, apart
//! from restoring a partition's state on first use.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use meter_core::aggregate::Retention;
use meter_core::{ProjectState, ProjectUpdate};
use meter_kafka::{read_range, KafkaConfig};
use meter_proto::decode_record;
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
    /// Bytes of the records' values.
    pub(crate) bytes: usize,
}

impl Pending {
    pub(crate) fn push(&mut self, r: Record) {
        self.first.entry(r.partition).or_insert(r.offset);
        self.next.insert(r.partition, r.offset + 1);
        self.bytes += r.payload.len();
        self.records.push(r);
    }

    pub(crate) fn len(&self) -> usize {
        self.records.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.records.is_empty()
    }
}

/// What a batch produced: rows for ClickHouse (per partition), the
/// projects whose totals changed, and the oldest ingest time among the
/// counted batches.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) rows: BTreeMap<i32, Vec<UsageRow>>,
    /// Per partition, the projects counted in (looked up before the id is
    /// copied: a collector's batch touches thousands).
    pub(crate) touched: BTreeMap<i32, HashSet<String>>,
    pub(crate) events: u64,
    pub(crate) oldest_ingest_ms: Option<i64>,
}

impl Outcome {
    /// Every (partition, project) counted in.
    pub(crate) fn touched(&self) -> impl Iterator<Item = (i32, &str)> {
        self.touched.iter().flat_map(|(&p, projects)| projects.iter().map(move |id| (p, id.as_str())))
    }
}

/// Applies every record of `pending` to `states`, in order.
///
/// A restored partition state knows the `usage.events` offset it covers.
/// Records before it (a replay from older offsets: a reset group) are
/// skipped. When the batch starts after it (the group's committed offsets
/// are ahead of the state: the last transaction of a killed owner was
/// still open when the state was read, and committed since), the missing
/// records are read again and applied first.
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
    let mut missed = Vec::new();
    for (&p, &first) in &pending.first {
        if let Some(from) = states.resume_offset(p).filter(|&r| r < first) {
            tracing::warn!(partition = p, from, to = first, "aggregator.state_behind_committed_offsets");
            let range = read_range(kafka, &kafka.events_topic, p, from, first, restore_timeout)?;
            metrics::counter!(m::REREAD).increment(range.len() as u64);
            missed.extend(range.into_iter().map(|(offset, payload)| Record { partition: p, offset, payload }));
        }
    }
    let (mut too_old, mut usage, mut duplicate_keys) = (0u64, [0u64; 4], 0u64);
    for rec in missed.iter().chain(&pending.records) {
        if states.resume_offset(rec.partition).is_some_and(|r| rec.offset < r) {
            metrics::counter!(m::DISCARDED, "reason" => "covered_by_state").increment(1);
            continue;
        }
        let batches = match decode_record(&rec.payload) {
            Ok(b) => b,
            Err(e) => {
                // Ingest never writes such a record; skip it, loudly.
                tracing::error!(partition = rec.partition, offset = rec.offset, error = %e, "aggregator.record_undecodable");
                metrics::counter!(m::DISCARDED, "reason" => "undecodable").increment(1);
                continue;
            }
        };
        let part = states.get_mut(rec.partition).expect("restored above");
        for batch in &batches {
            let project = batch.project_id.as_str();
            let state = match part.get_mut(project) {
                Some(s) => s,
                None => part.entry(project.to_owned()).or_insert_with(|| ProjectState::new(batch.project_id.clone())),
            };
            match state.apply(batch, retention) {
                ProjectUpdate::Counted { rows: hourly, duplicate_keys: dups } => {
                    duplicate_keys += dups;
                    for h in &hourly {
                        if let Some(i) = h.metric.counter_index() {
                            usage[i] = usage[i].saturating_add(h.value);
                        }
                    }
                    out.rows.entry(rec.partition).or_default().extend(UsageRow::of_batch(
                        batch,
                        rec.offset as u64,
                        &hourly,
                    ));
                    let touched = out.touched.entry(rec.partition).or_default();
                    if !touched.contains(project) {
                        touched.insert(project.to_owned());
                    }
                    out.events += batch.events.len() as u64;
                    out.oldest_ingest_ms =
                        Some(out.oldest_ingest_ms.map_or(batch.ingested_ms, |t| t.min(batch.ingested_ms)));
                }
                ProjectUpdate::Duplicate => {
                    metrics::counter!(m::DISCARDED, "reason" => "duplicate").increment(1);
                }
                ProjectUpdate::TooOld => {
                    too_old += 1;
                    metrics::counter!(m::DISCARDED, "reason" => "stale_seq").increment(1);
                }
            }
        }
    }
    // Once per batch, not per row: the recorder looks labels up on each call.
    for (metric, v) in meter_core::Metric::COUNTERS.iter().zip(usage) {
        metrics::counter!(m::USAGE, "metric" => metric.name()).increment(v);
    }
    if duplicate_keys > 0 {
        metrics::counter!(m::DUPLICATE_KEY_EVENTS).increment(duplicate_keys);
    }
    if too_old > 0 {
        tracing::warn!(records = too_old, "aggregator.batches_outside_dedup_window");
    }
    // The state now covers the whole batch.
    for (&p, &next) in &pending.next {
        states.set_resume_offset(p, next);
    }
    Ok(out)
}
