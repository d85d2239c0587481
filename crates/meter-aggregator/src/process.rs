//! Applying a batch of Kafka records to the project states: pure, apart
//! from restoring a partition's state on first use.

use std::collections::BTreeMap;
use std::time::Duration;

use meter_core::adjust::{Adjusted, Adjustment, AdjustmentOutcome};
use meter_core::aggregate::{ClosedCycles, Retention};
use meter_core::{ProjectState, ProjectUpdate};
use meter_kafka::{read_range, KafkaConfig};
use meter_proto::events::decode_events;

use crate::collapse::{emits, hold_ms, take_held, Collapsed, PartitionRows, Projects};
use crate::metrics as m;
use crate::state::{Holding, PartitionState, Slot, States};
use crate::AggregatorConfig;

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

/// What a batch produced: rows for ClickHouse (per partition, collapsed
/// per project, metric, hour and branch: `collapse.rs`), the
/// projects whose totals changed, and the oldest ingest time among the
/// counted batches.
#[derive(Debug, Default)]
pub(crate) struct Outcome {
    pub(crate) rows: BTreeMap<i32, PartitionRows>,
    /// Per partition, the adjustments applied and their offsets (for ClickHouse).
    pub(crate) adjusted: BTreeMap<i32, Vec<(Adjustment, u64)>>,
    /// What became of each adjustment judged (for `meter.adjustments`).
    pub(crate) adjustments: Vec<AdjustmentOutcome>,
    /// Per partition, the probes read (passed on to `usage.rows`).
    pub(crate) probes: BTreeMap<i32, Vec<i64>>,
    /// Per partition, the cycles it closed in this batch.
    pub(crate) closes: BTreeMap<i32, Vec<i64>>,
    /// Per partition, the projects counted in (looked up before the id is
    /// copied: a collector's batch touches thousands).
    pub(crate) touched: BTreeMap<i32, Projects>,
    pub(crate) events: u64,
    pub(crate) oldest_ingest_ms: Option<i64>,
}

impl Outcome {
    /// Every (partition, project) counted in.
    pub(crate) fn touched(&self) -> impl Iterator<Item = (i32, &str)> {
        self.touched.iter().flat_map(|(&p, projects)| projects.iter().map(move |id| (p, id.as_str())))
    }
}

/// When a transaction's partitions write the rows their projects hold
/// (`collapse::emits`).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Emission {
    /// How long a partition holds rows before writing them (0: never held;
    /// `collapse::hold_ms`).
    pub(crate) hold_ms: i64,
    pub(crate) now_ms: i64,
}

impl Emission {
    /// The rule of a transaction run at `now_ms` whose batch ended at a
    /// bound (`behind`) or not.
    pub(crate) fn new(cfg: &AggregatorConfig, behind: bool, now_ms: i64) -> Emission {
        let (behind_ms, min_ms) = (cfg.rows_hold_seconds as i64 * 1000, cfg.rows_hold_min_ms as i64);
        Emission { hold_ms: hold_ms(behind, behind_ms, min_ms), now_ms }
    }

    pub(crate) fn emits(&self, holding: &Holding) -> bool {
        emits(holding.since_ms, self.now_ms, self.hold_ms)
    }
}

/// Applies every record of `pending` to `states`, in order, and takes out
/// the rows the partitions emit (`Emission`), those without records in
/// this batch included.
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
    emission: Emission,
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
    let mut by_partition = by_partition(missed.iter().chain(&pending.records));
    let jobs: Vec<Job<'_>> = states
        .partitions_mut()
        .filter_map(|(partition, resume, closed, state, holding)| {
            let records = by_partition.remove(&partition)?;
            // The version of rows written now: the offset the state will cover.
            let emit = emission.emits(holding).then(|| pending.next[&partition] as u64);
            Some(Job { partition, resume, emit, closed, state, holding, records })
        })
        .collect();
    if let Some(p) = by_partition.keys().next() {
        anyhow::bail!("partition {p} has records but no state (restore_missing skipped it)");
    }
    let done = run_jobs(jobs, pending.bytes, retention);
    let (mut too_old, mut usage, mut duplicate_keys, mut closed_events) = (0u64, [0u64; 4], 0u64, 0u64);
    for (p, part) in done {
        too_old += part.too_old;
        closed_events += part.closed_cycle_events;
        duplicate_keys += part.duplicate_keys;
        for (total, v) in usage.iter_mut().zip(part.usage) {
            *total = total.saturating_add(v);
        }
        out.events += part.events;
        out.oldest_ingest_ms = match (out.oldest_ingest_ms, part.oldest_ingest_ms) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // A counted batch may have no rows (zero values) and still move
        // the state (version, window): touched and rows are kept apart.
        if !part.rows.is_empty() {
            out.rows.insert(p, part.rows);
        }
        if !part.touched.is_empty() {
            out.touched.insert(p, part.touched);
        }
        if !part.adjusted.is_empty() {
            out.adjusted.insert(p, part.adjusted);
        }
        out.adjustments.extend(part.adjustments);
        if !part.probes.is_empty() {
            out.probes.insert(p, part.probes);
        }
        if !part.closes.is_empty() {
            states.add_closed(p, &part.closes);
            out.closes.insert(p, part.closes);
        }
    }
    // Partitions holding rows without records here: a batch of their own
    // since their restore (`synced`) means their state covers the committed
    // offsets, so what they hold may go now.
    for (partition, resume, _, state, holding) in states.partitions_mut() {
        if pending.next.contains_key(&partition) || !holding.due_alone(&emission) {
            continue;
        }
        let version = resume.unwrap_or_default() as u64;
        let touched = out.touched.entry(partition).or_default();
        let rows = take_held(partition, holding.take_projects(), state, version, touched);
        if !rows.is_empty() {
            out.rows.insert(partition, rows);
        }
        let probes = std::mem::take(&mut holding.probes);
        if !probes.is_empty() {
            out.probes.insert(partition, probes);
        }
    }
    metrics::gauge!(m::HELD_PROJECTS).set(states.held_projects() as f64);
    // Once per batch, not per row: the recorder looks labels up on each call.
    for (metric, v) in meter_core::Metric::COUNTERS.iter().zip(usage) {
        metrics::counter!(m::USAGE, "metric" => metric.name()).increment(v);
    }
    if duplicate_keys > 0 {
        metrics::counter!(m::DUPLICATE_KEY_EVENTS).increment(duplicate_keys);
    }
    if closed_events > 0 {
        metrics::counter!(m::CLOSED_CYCLE_EVENTS).increment(closed_events);
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

/// `records` per partition, each partition's in the order given.
pub(crate) fn by_partition<'a>(records: impl IntoIterator<Item = &'a Record>) -> BTreeMap<i32, Vec<&'a Record>> {
    let mut out: BTreeMap<i32, Vec<&Record>> = BTreeMap::new();
    for rec in records {
        out.entry(rec.partition).or_default().push(rec);
    }
    out
}

/// One partition's records of a transaction, and its state.
pub(crate) struct Job<'a> {
    pub(crate) partition: i32,
    pub(crate) resume: Option<i64>,
    /// The version to write the partition's held rows under, when it
    /// emits them in this transaction.
    pub(crate) emit: Option<u64>,
    /// The cycles closed as of the batch's start (grows with its closes).
    pub(crate) closed: ClosedCycles,
    pub(crate) state: &'a mut PartitionState,
    pub(crate) holding: &'a mut Holding,
    pub(crate) records: Vec<&'a Record>,
}

/// What one partition's records did.
#[derive(Default)]
pub(crate) struct PartOutcome {
    pub(crate) rows: PartitionRows,
    adjusted: Vec<(Adjustment, u64)>,
    adjustments: Vec<AdjustmentOutcome>,
    probes: Vec<i64>,
    closes: Vec<i64>,
    /// Events of closed cycles (counters moved on, readings left out).
    closed_cycle_events: u64,
    touched: Projects,
    pub(crate) events: u64,
    oldest_ingest_ms: Option<i64>,
    usage: [u64; 4],
    too_old: u64,
    duplicate_keys: u64,
}

/// Below this many bytes of records a transaction is applied on the
/// calling thread: threads cost more than they save.
const PARALLEL_BYTES: usize = 256 * 1024;

/// Applies each partition's records to its state: partitions are
/// independent (a project lives in one), so large transactions spread them
/// over up to `available_parallelism` threads, each taking whole
/// partitions in order. Returns the outcome of each partition.
pub(crate) fn run_jobs(jobs: Vec<Job<'_>>, bytes: usize, retention: &Retention) -> Vec<(i32, PartOutcome)> {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()).min(jobs.len());
    if bytes < PARALLEL_BYTES || threads < 2 {
        return jobs.into_iter().map(|j| apply_partition(j, retention)).collect();
    }
    let mut shares: Vec<Vec<Job<'_>>> = (0..threads).map(|_| Vec::new()).collect();
    for (i, job) in jobs.into_iter().enumerate() {
        shares[i % threads].push(job);
    }
    std::thread::scope(|scope| {
        let handles: Vec<_> = shares
            .into_iter()
            .map(|share| {
                scope.spawn(move || share.into_iter().map(|j| apply_partition(j, retention)).collect::<Vec<_>>())
            })
            .collect();
        handles.into_iter().flat_map(|h| h.join().expect("an apply thread panicked")).collect()
    })
}

/// Applies one partition's records, in order, to its state.
fn apply_partition(mut job: Job<'_>, retention: &Retention) -> (i32, PartOutcome) {
    let mut out = PartOutcome::default();
    let mut rows = Collapsed::new(meter_runtime::now_ms());
    let partition = job.partition;
    for rec in std::mem::take(&mut job.records) {
        if job.resume.is_some_and(|r| rec.offset < r) {
            metrics::counter!(m::DISCARDED, "reason" => "covered_by_state").increment(1);
            continue;
        }
        let decoded = match decode_events(&rec.payload) {
            Ok(d) => d,
            Err(e) => {
                // Ingest never writes such a record; skip it, loudly.
                tracing::error!(partition = rec.partition, offset = rec.offset, error = %e, "aggregator.record_undecodable");
                metrics::counter!(m::DISCARDED, "reason" => "undecodable").increment(1);
                continue;
            }
        };
        out.probes.extend(&decoded.probes);
        for &c in &decoded.closes {
            if job.closed.insert(c) {
                tracing::info!(partition, cycle_start_ms = c, "aggregator.cycle_closed");
                out.closes.push(c);
            }
        }
        for a in &decoded.adjustments {
            adjust(&mut job, &mut out, a, rec.offset, retention);
        }
        for batch in &decoded.batches {
            let project = batch.project_id.as_str();
            let slot = match job.state.get_mut(project) {
                Some(s) => s,
                None => job
                    .state
                    .entry(project.to_owned())
                    .or_insert_with(|| Slot::new(ProjectState::new(batch.project_id.clone()))),
            };
            match slot.state.apply_closed(batch, retention, &job.closed) {
                ProjectUpdate::Counted { rows: hourly, byte_hours, duplicate_keys, closed } => {
                    out.duplicate_keys += duplicate_keys;
                    out.closed_cycle_events += closed;
                    for h in &hourly {
                        if let Some(i) = h.metric.counter_index() {
                            out.usage[i] = out.usage[i].saturating_add(h.value);
                        }
                    }
                    rows.add(slot, rec.offset as u64, &hourly, &byte_hours);
                    out.events += batch.events.len() as u64;
                    out.oldest_ingest_ms =
                        Some(out.oldest_ingest_ms.map_or(batch.ingested_ms, |t| t.min(batch.ingested_ms)));
                }
                ProjectUpdate::Duplicate => {
                    metrics::counter!(m::DISCARDED, "reason" => "duplicate").increment(1);
                }
                ProjectUpdate::TooOld => {
                    out.too_old += 1;
                    metrics::counter!(m::DISCARDED, "reason" => "stale_seq").increment(1);
                }
            }
        }
    }
    let (collapsed, touched) = rows.into_parts(partition, job.state, job.emit, job.holding);
    out.rows = collapsed;
    job.holding.synced = true;
    // A probe goes out after every row before it: held with the rows, and
    // sent on at once when the partition holds none.
    if job.emit.is_some() || job.holding.projects.is_empty() {
        let probes = std::mem::take(&mut out.probes);
        out.probes = std::mem::take(&mut job.holding.probes);
        out.probes.extend(probes);
    } else {
        job.holding.probes.append(&mut out.probes);
    }
    // Adjusted projects were touched without rows of their own.
    out.touched.extend(touched);
    (partition, out)
}

/// Applies one adjustment read at `offset` to its project's state.
fn adjust(job: &mut Job<'_>, out: &mut PartOutcome, a: &Adjustment, offset: i64, retention: &Retention) {
    let project = a.project_id.as_str();
    let state = &mut job
        .state
        .entry(project.to_owned())
        .or_insert_with(|| Slot::new(ProjectState::new(a.project_id.clone())))
        .state;
    let version = state.version;
    let (refusal, counter_after) = match state.adjust(a, retention, &job.closed) {
        Adjusted::Duplicate => {
            metrics::counter!(m::DISCARDED, "reason" => "duplicate").increment(1);
            return;
        }
        Adjusted::Applied { counter } => {
            out.adjusted.push((a.clone(), offset as u64));
            (None, counter)
        }
        Adjusted::Refused { refusal, counter } => (Some(refusal), counter),
    };
    let outcome = if refusal.is_none() { "applied" } else { "refused" };
    metrics::counter!(m::ADJUSTMENTS, "outcome" => outcome).increment(1);
    if state.version != version {
        out.touched.insert(a.project_id.clone());
    }
    out.adjustments.push(AdjustmentOutcome {
        adjustment: a.clone(),
        refusal,
        counter_after,
        decided_ms: meter_runtime::now_ms(),
        events_offset: offset as u64,
    });
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeSet, HashMap};

    use meter_core::Limits;
    use meter_proto::report::{kafka_records, validate};
    use meter_proto::v1::{Kind, Metric, ReportRequest, UsageEvent};

    use super::*;

    const NOW: i64 = 1_764_547_200_000;

    /// Reports of two collectors over 300 projects in 4 partitions, each
    /// sent twice (a retry), as `usage.events` records in offset order.
    fn records() -> Vec<Record> {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        let mut out = Vec::new();
        for seq in 1..=6u64 {
            for source in ["collector-a", "collector-b"] {
                let events = (0..600)
                    .map(|i| UsageEvent {
                        project_id: format!("p{}", (i * 7 + seq as usize) % 300),
                        metric: Metric::WrittenDataBytes as i32,
                        kind: Kind::Incremental as i32,
                        value: 1 + i as u64,
                        start_unix_ms: NOW - 60_000,
                        end_unix_ms: NOW,
                        ..Default::default()
                    })
                    .collect();
                let req = ReportRequest { source_id: source.into(), source_session: 9, batch_seq: seq, events };
                let batches = validate(&Limits::default(), req, NOW).expect("valid");
                for _ in 0..2 {
                    for r in kafka_records(batches.clone(), 4) {
                        let offset = next.entry(r.partition).or_default();
                        out.push(Record { partition: r.partition, offset: *offset, payload: r.value });
                        *offset += 1;
                    }
                }
            }
        }
        out
    }

    /// Per partition: rows, the sum of their values, projects touched,
    /// events, usage; and the states.
    type Summary =
        (BTreeMap<i32, (usize, u64, BTreeSet<String>, u64, [u64; 4])>, BTreeMap<i32, BTreeMap<String, ProjectState>>);

    /// Applies `records` through `run_jobs` as if they were `bytes` long,
    /// every partition emitting; the second partition's state already
    /// covers its first 5 records.
    fn run(records: &[Record], bytes: usize) -> Summary {
        let mut states: HashMap<i32, (PartitionState, Holding)> = (0..4).map(|p| (p, Default::default())).collect();
        let jobs = states
            .iter_mut()
            .map(|(&partition, (state, holding))| Job {
                partition,
                resume: (partition == 1).then_some(5),
                emit: Some(1),
                closed: ClosedCycles::new(),
                state,
                holding,
                records: records.iter().filter(|r| r.partition == partition).collect(),
            })
            .collect();
        let outcomes = run_jobs(jobs, bytes, &Retention::default())
            .into_iter()
            .map(|(p, o)| {
                let value = o.rows.iter().map(|r| r.value).sum();
                let touched = o.touched.iter().map(|id| id.as_str().to_owned()).collect();
                (p, (o.rows.len(), value, touched, o.events, o.usage))
            })
            .collect();
        let states =
            states.into_iter().map(|(p, (s, _))| (p, s.into_iter().map(|(id, s)| (id, s.state)).collect())).collect();
        (outcomes, states)
    }

    #[test]
    fn partitions_applied_in_parallel_give_what_one_thread_gives() {
        let records = records();
        let one = run(&records, 0);
        assert_eq!(one, run(&records, usize::MAX), "threads changed the outcome");
        let (outcomes, states) = one;
        assert_eq!(outcomes.len(), 4);
        assert_eq!(states.values().map(BTreeMap::len).sum::<usize>(), 300);
        // Each batch once: retries are duplicates; partition 1 skipped what its state covered.
        let counted: u64 = outcomes.values().map(|o| o.3).sum();
        assert!(counted < 12 * 600 && counted > 11 * 600, "{counted}");
        // Collapsed: one row per (project, metric, hour) of a partition, not one per batch.
        let rows: usize = outcomes.values().map(|o| o.0).sum();
        assert_eq!(rows, 300, "every batch's events are of one metric and hour");
    }

    /// `usage_hourly` as ClickHouse reads it with FINAL: per key
    /// (project, metric, hour, source, batch_seq, branch), the row of the
    /// highest version.
    /// A row's key: project, metric, hour, source, batch_seq, branch.
    type RowKey = (String, i8, u32, String, u64, String);

    #[derive(Default)]
    struct ClickHouse(BTreeMap<RowKey, (u64, u64)>);

    impl ClickHouse {
        fn load(&mut self, rows: &PartitionRows) {
            for r in rows.iter() {
                let key = (
                    r.project_id.to_owned(),
                    r.metric,
                    r.hour_unix_s,
                    r.source_id.to_owned(),
                    r.batch_seq,
                    r.branch_id.to_owned(),
                );
                let row = self.0.entry(key).or_insert((r.version, r.value));
                if r.version >= row.0 {
                    *row = (r.version, r.value);
                }
            }
        }

        /// Per project, the sum of its (counter) rows.
        fn usage(&self) -> BTreeMap<String, u64> {
            let mut out = BTreeMap::new();
            for (key, (_, value)) in &self.0 {
                *out.entry(key.0.clone()).or_default() += value;
            }
            out
        }
    }

    /// One owner of partition 2: its state, and the transactions it ran.
    #[derive(Default)]
    struct Owner {
        state: PartitionState,
        holding: Holding,
        /// The offset after the last record counted.
        next: u64,
    }

    impl Owner {
        /// A new owner restored from `states` (an older owner's, as
        /// `usage.totals` held them).
        fn restored(states: &BTreeMap<String, ProjectState>) -> Owner {
            let state: PartitionState = states.iter().map(|(id, s)| (id.clone(), Slot::new(s.clone()))).collect();
            let holding = Holding::of(&state);
            Owner { state, holding, next: 0 }
        }

        /// One transaction of `records` (none: the partition only emits),
        /// emitting or not; its rows go to `ch`. Returns what it did.
        fn transaction(&mut self, records: &[&Record], emit: bool, ch: &mut ClickHouse) -> PartOutcome {
            self.next = records.last().map_or(self.next, |r| r.offset as u64 + 1);
            let next = self.next;
            let job = Job {
                partition: 2,
                resume: None,
                emit: emit.then_some(next),
                closed: ClosedCycles::new(),
                state: &mut self.state,
                holding: &mut self.holding,
                records: records.to_vec(),
            };
            let (_, out) = run_jobs(vec![job], 0, &Retention::default()).pop().expect("one partition");
            ch.load(&out.rows);
            out
        }

        fn states(&self) -> BTreeMap<String, ProjectState> {
            self.state.iter().map(|(id, s)| (id.clone(), s.state.clone())).collect()
        }
    }

    /// Partition 2's records, and what ClickHouse reads when one
    /// transaction counts them all.
    fn partition_2() -> (Vec<Record>, BTreeMap<String, u64>) {
        let records: Vec<Record> = records().into_iter().filter(|r| r.partition == 2).collect();
        let mut ch = ClickHouse::default();
        Owner::default().transaction(&records.iter().collect::<Vec<_>>(), true, &mut ch);
        (records, ch.usage())
    }

    #[test]
    fn rows_held_over_transactions_read_as_rows_written_by_each() {
        let (records, truth) = partition_2();
        assert!(records.len() >= 9, "{}", records.len());
        let all: Vec<&Record> = records.iter().collect();
        let (mut owner, mut ch) = (Owner::default(), ClickHouse::default());
        for (i, txn) in all.chunks(3).enumerate() {
            // Behind for two transactions in three (and the last one emits).
            let emit = i % 3 == 2 || (i + 1) * 3 >= all.len();
            owner.transaction(txn, emit, &mut ch);
            if !emit {
                assert!(!owner.holding.projects.is_empty(), "rows held after transaction {i}");
            }
        }
        assert_eq!(ch.usage(), truth);
        assert!(owner.holding.projects.is_empty() && owner.state.values().all(|s| s.state.held.is_empty()));
        let (mut every, mut each) = (Owner::default(), ClickHouse::default());
        for txn in all.chunks(3) {
            every.transaction(txn, true, &mut each);
        }
        assert!(ch.0.len() < each.0.len(), "held: fewer rows ({} against {})", ch.0.len(), each.0.len());
    }

    /// A restore race (docs/exactness.md): the new owner restores the state
    /// as it was before the old owner's last transaction, which committed
    /// after all, and reads that transaction's records again. Whether the
    /// old owner's last transaction or the new owner's first one emitted,
    /// the rows written twice are under the same keys, the later ones with
    /// every row of the earlier and a higher version: FINAL reads each
    /// record once.
    #[test]
    fn re_read_records_write_their_rows_again_under_the_same_keys() {
        let (records, truth) = partition_2();
        let all: Vec<&Record> = records.iter().collect();
        let (early, rest) = all.split_at(all.len() / 3);
        let (last, after) = rest.split_at(rest.len() / 2);
        for (early_emits, last_emits, new_emits) in
            [(false, true, true), (false, false, true), (true, true, true), (false, true, false), (true, false, false)]
        {
            let case = format!("emits: early {early_emits}, last {last_emits}, new owner {new_emits}");
            let (mut old, mut ch) = (Owner::default(), ClickHouse::default());
            old.transaction(early, early_emits, &mut ch);
            let before_last = old.states();
            old.transaction(last, last_emits, &mut ch);
            let mut new = Owner::restored(&before_last);
            let again: Vec<&Record> = last.iter().chain(after).copied().collect();
            new.transaction(&again, new_emits, &mut ch);
            // What is still held goes out later, once the new owner keeps up.
            new.transaction(&[], true, &mut ch);
            assert_eq!(ch.usage(), truth, "{case}");
            let mut one = Owner::default();
            one.transaction(&all, true, &mut ClickHouse::default());
            assert_eq!(new.states(), one.states(), "{case}: the state counts every record once");
        }
    }

    #[test]
    fn a_partition_emits_once_its_oldest_row_is_due() {
        assert_eq!(hold_ms(false, 10_000, 1_000), 1_000, "keeping up: the minimum");
        assert_eq!(hold_ms(true, 10_000, 1_000), 10_000, "behind: the longer bound");
        assert_eq!(hold_ms(true, 0, 1_000), 1_000, "behind: never less than the minimum");
        assert_eq!(hold_ms(false, 10_000, 0), 0, "keeping up, no minimum: every transaction");
        assert!(!emits(None, 1_000, 1_000), "nothing held: begin holding");
        assert!(!emits(Some(0), 999, 1_000), "held less than the bound");
        assert!(emits(Some(0), 1_000, 1_000), "held the bound");
        assert!(emits(None, 1_000, 0), "0: never held");
    }

    /// A probe says every record before it is on its way to ClickHouse: it
    /// waits for the rows its partition holds, and only for them.
    #[test]
    fn a_probe_waits_only_for_held_rows() {
        let probe = |offset: i64| {
            let record = meter_proto::events::probe_records(NOW, 4).swap_remove(2);
            Record { partition: 2, offset, payload: record.value }
        };
        let (records, _) = partition_2();
        let mut owner = Owner::default();
        let alone = probe(0);
        let out = owner.transaction(&[&alone], false, &mut ClickHouse::default());
        assert_eq!(out.probes, vec![NOW], "nothing held: the probe goes on in its own transaction");
        let (usage, probed) = (&records[0], probe(records[0].offset + 1));
        let out = owner.transaction(&[usage, &probed], false, &mut ClickHouse::default());
        assert!(out.probes.is_empty() && !owner.holding.projects.is_empty(), "rows held: the probe with them");
        let mut ch = ClickHouse::default();
        let out = owner.transaction(&[], true, &mut ch);
        assert_eq!(out.probes, vec![NOW], "written after the held rows");
        assert!(!ch.0.is_empty());
    }
}
