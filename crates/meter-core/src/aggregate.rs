//! A project's running state: per-cycle counters, the storage gauge of each
//! of its branches, the
//! dedup windows of the source sessions reporting for it, and the
//! idempotency keys it counted. Everything here is a pure function of the
//! batches applied, in order, so that replaying the same Kafka records from
//! the same checkpoint always gives the same state.

use std::collections::BTreeMap;

use smallvec::SmallVec;

use crate::adjust::{Adjusted, Adjustment, Refusal};
use crate::held::HeldRows;
use crate::keys::{key_hash, KeySet};
use crate::small_map::SmallMap;
use crate::split::{for_each_hour, hour_floor, split_hours};
use crate::{Batch, Cycle, Event, Metric, ProjectId, SeqVerdict, SeqWindow, Span, UnixMs, HOUR_MS};

/// One project's usage of one metric in one hour, from one batch: the row
/// written to ClickHouse. Its key `(project, metric, hour, source, batch_seq)`
/// makes a replayed write replace itself rather than add to the total.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourlyRow {
    pub metric: Metric,
    pub hour_ms: UnixMs,
    /// Gauge only: the branch the readings are of (empty when they name
    /// none). Counters are the project's, whatever branch reported them.
    pub branch: String,
    /// Counters: the sum. Gauge: the maximum reading in the hour.
    pub value: u64,
    /// Gauge only: the latest reading in the hour and its time.
    pub last_value: u64,
    pub last_time_ms: UnixMs,
}

/// The counters of one billing cycle, in `Metric::COUNTERS` order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CycleCounters {
    pub cycle: Cycle,
    pub values: [u64; 4],
}

/// A gauge reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reading {
    pub value: u64,
    pub time_ms: UnixMs,
}

impl Reading {
    /// True when `self` supersedes `other`: later, or as late and larger.
    fn beats(&self, other: &Reading) -> bool {
        (self.time_ms, self.value) > (other.time_ms, other.value)
    }
}

/// The latest storage reading of each branch of a project, by branch id
/// (empty for readings that name no branch). As in Neon, the storage quota
/// applies to each branch; the project's storage is the sum.
pub type BranchSizes = SmallMap<String, Reading>;

/// Where a state written before storage was kept per branch holds the
/// project's one reading: not a valid branch id, never enforced on, and
/// dropped by the first newer reading of any branch.
pub const LEGACY_BRANCH: &str = "*";

/// The sum of the branches' latest readings.
pub fn storage_bytes(branches: &BranchSizes) -> u64 {
    branches.values().fold(0u64, |sum, r| sum.saturating_add(r.value))
}

/// The dedup memory of one source session, for one project.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceEntry {
    pub window: SeqWindow,
    pub last_seen_ms: UnixMs,
}

/// How long state is kept, measured in ingest time of the batches applied.
#[derive(Debug, Clone, Copy)]
pub struct Retention {
    /// A cycle's counters are dropped this long after the cycle ended.
    pub cycle_grace_ms: i64,
    /// A source session's window is dropped after this long without a
    /// batch. It must exceed how old an event ingest accepts (7 days by
    /// default) plus how far in the future: a retry is refused by ingest
    /// before its session could be forgotten. A branch whose latest reading
    /// is 0 (a deleted branch) is forgotten after as long.
    pub source_ttl_ms: i64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention { cycle_grace_ms: 10 * 24 * HOUR_MS, source_ttl_ms: 8 * 24 * HOUR_MS }
    }
}

/// What applying a batch did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectUpdate {
    /// Counted; these rows go to ClickHouse. `duplicate_keys` events were
    /// left out because their idempotency key was counted before.
    /// `byte_hours`: the storage the project held, per hour, over the spans
    /// this batch's readings closed (see `ProjectState::read_storage`).
    /// `closed`: events of a closed cycle (counters counted in the next
    /// open cycle's first hour, storage readings left out: see
    /// `ProjectState::apply_closed`).
    Counted { rows: Vec<HourlyRow>, byte_hours: Vec<(UnixMs, u64)>, duplicate_keys: u64, closed: u64 },
    /// A retry of a batch already counted.
    Duplicate,
    /// Older than the source's dedup window; not counted.
    TooOld,
}

/// A project's usage as the readers of `usage.totals` (the enforcer, the
/// API) keep it: the counters and the gauge, without the aggregator's
/// dedup windows and idempotency keys, which grow with the sources
/// reporting for the project and which no reader uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totals {
    pub project_id: ProjectId,
    /// Keyed by cycle start.
    pub cycles: SmallMap<UnixMs, CycleCounters>,
    pub branches: BranchSizes,
    pub version: u64,
    pub last_ingested_ms: UnixMs,
}

impl Totals {
    /// The project's storage: the sum of its branches' latest readings.
    pub fn storage_bytes(&self) -> u64 {
        storage_bytes(&self.branches)
    }

    /// The counters of the cycle containing `t`, zero if none were recorded.
    pub fn counters_at(&self, t: UnixMs) -> CycleCounters {
        counters_at(&self.cycles, t)
    }

    /// The branches the storage quota is judged on, with their latest
    /// readings: every branch but the legacy reading.
    pub fn enforced_branches(&self) -> impl Iterator<Item = (&String, u64)> {
        self.branches.iter().filter(|(b, _)| b.as_str() != LEGACY_BRANCH).map(|(b, r)| (b, r.value))
    }

    /// The largest of `enforced_branches`, 0 when none.
    pub fn largest_branch_bytes(&self) -> u64 {
        self.enforced_branches().map(|(_, v)| v).max().unwrap_or(0)
    }
}

fn counters_at(cycles: &SmallMap<UnixMs, CycleCounters>, t: UnixMs) -> CycleCounters {
    let cycle = Cycle::containing(t);
    cycles.get(&cycle.start_ms).copied().unwrap_or(CycleCounters { cycle, values: [0; 4] })
}

/// The state of one project.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProjectState {
    pub project_id: ProjectId,
    /// Keyed by cycle start.
    pub cycles: SmallMap<UnixMs, CycleCounters>,
    pub branches: BranchSizes,
    /// Source id -> session -> window.
    pub sources: SmallMap<String, SmallMap<u64, SourceEntry>>,
    /// Idempotency keys counted, by the start of the cycle of the event.
    pub keys: BTreeMap<UnixMs, KeySet>,
    /// Key sets forgotten (cycle start, chunk count) whose persisted chunks
    /// are still to be removed: bookkeeping for the writer, not state.
    pub expired_keys: Vec<(UnixMs, u32)>,
    /// Grows by one at each counted batch.
    pub version: u64,
    pub last_ingested_ms: UnixMs,
    /// Hourly rows counted and not yet written for ClickHouse.
    pub held: HeldRows,
}

impl ProjectState {
    /// A project never seen before.
    pub fn new(project_id: ProjectId) -> Self {
        ProjectState {
            project_id,
            cycles: SmallMap::new(),
            branches: SmallMap::new(),
            sources: SmallMap::new(),
            keys: BTreeMap::new(),
            expired_keys: Vec::new(),
            version: 0,
            last_ingested_ms: 0,
            held: HeldRows::default(),
        }
    }

    /// The counters of the cycle containing `t`, zero if none were recorded.
    pub fn counters_at(&self, t: UnixMs) -> CycleCounters {
        counters_at(&self.cycles, t)
    }

    /// What readers of the totals keep of this state.
    pub fn totals(&self) -> Totals {
        Totals {
            project_id: self.project_id.clone(),
            cycles: self.cycles.clone(),
            branches: self.branches.clone(),
            version: self.version,
            last_ingested_ms: self.last_ingested_ms,
        }
    }

    /// Applies one batch of this project: deduplicates it (by its source
    /// session's window, then each event by its idempotency key), adds it
    /// to the cycle counters and the branches' gauges, and returns its
    /// hourly rows.
    pub fn apply(&mut self, batch: &Batch, retention: &Retention) -> ProjectUpdate {
        self.apply_closed(batch, retention, &ClosedCycles::new())
    }

    /// `apply`, where the cycles starting at `closed` are closed: their
    /// numbers never change again. A counter event of a closed cycle (one
    /// acknowledged before the close, or with a late-event horizon longer
    /// than the wait for finality) is counted in the first hour of the next
    /// open cycle instead, after its idempotency key was judged in its own
    /// cycle; a storage reading of a closed cycle is older than what the
    /// cycle ended with and is left out (the past is not rewritten).
    pub fn apply_closed(&mut self, batch: &Batch, retention: &Retention, closed: &ClosedCycles) -> ProjectUpdate {
        debug_assert_eq!(batch.project_id, self.project_id);
        if !batch.keyed_only {
            match self.observe_seq(batch) {
                SeqVerdict::Duplicate => return ProjectUpdate::Duplicate,
                SeqVerdict::TooOld => return ProjectUpdate::TooOld,
                SeqVerdict::New => {}
            }
        }
        let keyed = batch.events.iter().any(|e| e.idempotency_key.is_some());
        let kept: Vec<&Event> =
            if keyed { batch.events.iter().filter(|e| self.first_time(e)).collect() } else { Vec::new() };
        let duplicate_keys = if keyed { (batch.events.len() - kept.len()) as u64 } else { 0 };
        let in_closed = |e: &Event| closed.contains(&Cycle::containing(e.span.start_ms()).start_ms);
        let closes = !closed.is_empty() && batch.events.iter().any(in_closed);
        let (rows, byte_hours, moved) = match (keyed, closes) {
            (false, false) => (hourly_rows(batch), self.read_storage(batch.events.iter()), 0),
            (true, false) => (hourly_rows_of(kept.iter().copied()), self.read_storage(kept.iter().copied()), 0),
            (_, true) => {
                let chosen: Vec<&Event> = if keyed { kept } else { batch.events.iter().collect() };
                let moved = chosen.iter().filter(|e| in_closed(e)).count() as u64;
                let open: Vec<Event> = chosen.into_iter().filter_map(|e| rebook(e, closed)).collect();
                (hourly_rows_of(open.iter()), self.read_storage(open.iter()), moved)
            }
        };
        // A batch's rows are mostly of one cycle: its bounds are computed once.
        let mut cycle = Cycle { start_ms: 0, end_ms: 0 };
        for row in &rows {
            if let Some(i) = row.metric.counter_index() {
                if !cycle.contains(row.hour_ms) {
                    // Most rows fall in a cycle the project already counts:
                    // its bounds are at hand, no calendar arithmetic.
                    let held = self.cycles.values().map(|c| c.cycle).find(|c| c.contains(row.hour_ms));
                    cycle = held.unwrap_or_else(|| Cycle::containing(row.hour_ms));
                }
                let c = self.cycles.get_or_insert_with(cycle.start_ms, || CycleCounters { cycle, values: [0; 4] });
                c.values[i] = c.values[i].saturating_add(row.value);
            }
        }
        self.version += 1;
        self.last_ingested_ms = self.last_ingested_ms.max(batch.ingested_ms);
        self.expire(retention);
        ProjectUpdate::Counted { rows, byte_hours, duplicate_keys, closed: moved }
    }

    /// Applies one adjustment (see `crate::adjust`): refused when the
    /// cycle it books into is no longer kept or when its counter would go
    /// below zero, a duplicate when the project has seen its key in that
    /// cycle. A refusal remembers the key too: a retry gets the same answer.
    pub fn adjust(&mut self, a: &Adjustment, retention: &Retention, closed: &ClosedCycles) -> Adjusted {
        debug_assert_eq!(a.project_id, self.project_id);
        let cycle = a.cycle();
        if closed.contains(&cycle.start_ms) {
            let counter = a.metric.counter_index().map_or(0, |i| self.counters_at(a.hour_ms).values[i]);
            return Adjusted::Refused { refusal: Refusal::CycleClosed, counter };
        }
        let now = self.last_ingested_ms.max(a.created_ms);
        let i = a.metric.counter_index().expect("adjustments are checked to be of counters");
        let counter = self.counters_at(a.hour_ms).values[i];
        if cycle.end_ms + retention.cycle_grace_ms <= now {
            // Nothing to remember: the cycle stays forgotten, a retry is refused alike.
            return Adjusted::Refused { refusal: Refusal::CycleNotKept, counter };
        }
        if !self.keys.entry(cycle.start_ms).or_default().insert(key_hash(&a.key_for_dedup())) {
            return Adjusted::Duplicate;
        }
        let outcome = match counter.checked_add_signed(a.delta) {
            None if a.delta < 0 => Adjusted::Refused { refusal: Refusal::BelowZero, counter },
            after => {
                let after = after.unwrap_or(u64::MAX);
                let c = self.cycles.get_or_insert_with(cycle.start_ms, || CycleCounters { cycle, values: [0; 4] });
                c.values[i] = after;
                Adjusted::Applied { counter: after }
            }
        };
        self.version += 1;
        self.last_ingested_ms = now;
        self.expire(retention);
        outcome
    }

    /// Takes the storage readings among `events`, each branch's in time
    /// order: a reading later than the branch's latest closes the span since
    /// that one, during which the branch held the latest's size, and
    /// becomes the latest. Returns the byte-hours of the spans closed, per
    /// hour: `floor(size * span_ms / 3,600,000)` per span, split over its
    /// hours by `split_hours` (the pieces add up to it). A reading as late
    /// as the latest and larger replaces it; an older one changes nothing
    /// (the past is not rewritten). The first reading of a branch opens its
    /// first span. Depends on the batch and the branches' latest readings,
    /// which replaying the same records from the same state restores.
    fn read_storage<'a>(&mut self, events: impl Iterator<Item = &'a Event>) -> Vec<(UnixMs, u64)> {
        let mut readings: Vec<(&str, Reading)> = events
            .filter_map(|e| match (e.metric, e.span) {
                (Metric::LogicalSizeBytes, Span::Instant { time_ms }) => {
                    Some((e.branch_id.as_deref().unwrap_or(""), Reading { value: e.value, time_ms }))
                }
                _ => None,
            })
            .collect();
        if readings.is_empty() {
            return Vec::new();
        }
        readings.sort_by_key(|(b, r)| (*b, r.time_ms, r.value));
        let mut hours: BTreeMap<UnixMs, u64> = BTreeMap::new();
        for (branch, r) in readings {
            match self.branches.get_mut(branch) {
                Some(cur) if r.time_ms > cur.time_ms => {
                    let held = held_byte_hours(cur.value, r.time_ms - cur.time_ms);
                    for (hour, v) in split_hours(cur.time_ms, r.time_ms, held) {
                        let h = hours.entry(hour).or_default();
                        *h = h.saturating_add(v);
                    }
                    *cur = r;
                }
                Some(cur) if r.beats(cur) => *cur = r,
                Some(_) => {}
                None => {
                    self.branches.insert(branch.to_owned(), r);
                }
            }
            if self.branches.get(LEGACY_BRANCH).is_some_and(|l| l.time_ms <= r.time_ms) {
                self.branches.remove(LEGACY_BRANCH);
            }
        }
        hours.into_iter().collect()
    }

    /// Judges the batch by its source session's window, recording it when new.
    fn observe_seq(&mut self, batch: &Batch) -> SeqVerdict {
        let sessions = match self.sources.get_mut(batch.source_id.as_str()) {
            Some(s) => s,
            None => self.sources.get_or_insert_with(batch.source_id.as_str().to_owned(), SmallMap::new),
        };
        match sessions.get_mut(&batch.session) {
            Some(entry) => {
                let v = entry.window.observe(batch.batch_seq);
                if v == SeqVerdict::New {
                    entry.last_seen_ms = entry.last_seen_ms.max(batch.ingested_ms);
                }
                v
            }
            None => {
                let entry = SourceEntry { window: SeqWindow::first(batch.batch_seq), last_seen_ms: batch.ingested_ms };
                sessions.insert(batch.session, entry);
                SeqVerdict::New
            }
        }
    }

    /// True for an event without a key, or whose key this project has not
    /// counted in the event's cycle (the key is recorded).
    fn first_time(&mut self, e: &Event) -> bool {
        let Some(key) = &e.idempotency_key else { return true };
        let cycle = Cycle::containing(e.span.start_ms());
        self.keys.entry(cycle.start_ms).or_default().insert(key_hash(key))
    }

    fn expire(&mut self, retention: &Retention) {
        let now = self.last_ingested_ms;
        // A cycle is kept until `cycle_grace_ms` after its end.
        let live = |cycle_end_ms: UnixMs| cycle_end_ms + retention.cycle_grace_ms > now;
        self.cycles.retain(|_, c| live(c.cycle.end_ms));
        let key_set_live = |start: UnixMs| live(Cycle::containing(start).end_ms);
        if self.keys.keys().any(|&start| !key_set_live(start)) {
            let expired: Vec<UnixMs> = self.keys.keys().copied().filter(|&start| !key_set_live(start)).collect();
            for start in expired {
                let set = self.keys.remove(&start).expect("listed above");
                self.expired_keys.push((start, set.chunk_count()));
            }
        }
        // A later reading of a forgotten branch is newer than the 0 was
        // (ingest refuses readings older than the source TTL), so it counts.
        self.branches.retain(|_, r| r.value != 0 || r.time_ms + retention.source_ttl_ms > now);
        self.sources.retain(|_, sessions| {
            sessions.retain(|_, s| s.last_seen_ms + retention.source_ttl_ms > now);
            !sessions.is_empty()
        });
    }
}

/// The starts of the cycles closed (`meterctl cycle close`).
pub type ClosedCycles = std::collections::BTreeSet<UnixMs>;

/// `e` as counted once its cycle is closed: a counter moved to the first
/// hour of the next open cycle (whole, in that hour); a storage reading
/// left out (`None`). Events of open cycles are unchanged.
fn rebook(e: &Event, closed: &ClosedCycles) -> Option<Event> {
    let mut cycle = Cycle::containing(e.span.start_ms());
    if !closed.contains(&cycle.start_ms) {
        return Some(e.clone());
    }
    if e.metric.is_gauge() {
        return None;
    }
    while closed.contains(&cycle.start_ms) {
        cycle = Cycle::containing(cycle.end_ms);
    }
    Some(Event { span: Span::Interval { start_ms: cycle.start_ms, end_ms: cycle.start_ms + 1 }, ..e.clone() })
}

/// Byte-hours of `size` bytes held for `span_ms`, rounded down.
pub fn held_byte_hours(size: u64, span_ms: i64) -> u64 {
    let v = u128::from(size) * u128::try_from(span_ms.max(0)).unwrap_or(0) / HOUR_MS as u128;
    u64::try_from(v).unwrap_or(u64::MAX)
}

/// The hourly rows of a batch: counters summed per (metric, hour), gauge
/// readings reduced to their maximum and latest per (hour, branch). Depends
/// on the batch alone.
pub fn hourly_rows(batch: &Batch) -> Vec<HourlyRow> {
    hourly_rows_of(batch.events.iter())
}

/// The hourly rows of some events (see `hourly_rows`), ordered by
/// (metric, hour, branch).
pub fn hourly_rows_of<'a>(events: impl Iterator<Item = &'a Event>) -> Vec<HourlyRow> {
    // One piece per event and hour, merged into one of the last few pieces
    // of its (metric, hour, branch) when there is one (the events of a
    // batch mostly share a few rows), then sorted and merged per row: a map
    // per batch cost more than its rows when a batch holds one to five
    // events (a collector's, issue 19). Merging is order-free: sums, maxima
    // and the latest reading by (time, value).
    let mut pieces: SmallVec<[Piece<'a>; 8]> = SmallVec::new();
    let mut add = |p: Piece<'a>| {
        let recent = pieces.len().saturating_sub(16);
        match pieces[recent..].iter_mut().rev().find(|q| q.key() == p.key()) {
            Some(q) => q.merge(&p),
            None => pieces.push(p),
        }
    };
    for e in events {
        match e.span {
            Span::Interval { start_ms, end_ms } => for_each_hour(start_ms, end_ms, e.value, |hour_ms, v| {
                add(Piece { metric: e.metric, hour_ms, branch: "", value: v, last: Reading { value: 0, time_ms: 0 } })
            }),
            Span::Instant { time_ms } => add(Piece {
                metric: e.metric,
                hour_ms: hour_floor(time_ms),
                branch: e.branch_id.as_deref().unwrap_or(""),
                value: e.value,
                last: Reading { value: e.value, time_ms },
            }),
        }
    }
    pieces.sort_unstable_by(|a, b| a.key().cmp(&b.key()));
    pieces.dedup_by(|later, kept| {
        let same = later.key() == kept.key();
        if same {
            kept.merge(later);
        }
        same
    });
    pieces
        .into_iter()
        .map(|p| HourlyRow {
            metric: p.metric,
            hour_ms: p.hour_ms,
            branch: p.branch.to_owned(),
            value: p.value,
            last_value: p.last.value,
            last_time_ms: p.last.time_ms,
        })
        .collect()
}

/// One event's usage in one hour, or the merge of several's.
struct Piece<'a> {
    metric: Metric,
    hour_ms: UnixMs,
    branch: &'a str,
    value: u64,
    last: Reading,
}

impl Piece<'_> {
    fn key(&self) -> (Metric, UnixMs, &str) {
        (self.metric, self.hour_ms, self.branch)
    }

    /// Adds `other`, of the same key, in: counters sum, the gauge keeps
    /// its largest reading and its latest.
    fn merge(&mut self, other: &Piece<'_>) {
        if self.metric.is_gauge() {
            self.value = self.value.max(other.value);
            if other.last.beats(&self.last) {
                self.last = other.last;
            }
        } else {
            self.value = self.value.saturating_add(other.value);
        }
    }
}

#[cfg(test)]
mod tests;
