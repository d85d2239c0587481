//! The aggregator's in-memory state: per assigned partition, the state of
//! each project seen there, rebuilt from `usage.totals` when the partition
//! is (re)assigned.

use std::collections::HashMap;
use std::time::Duration;

use meter_core::aggregate::ClosedCycles;
use meter_core::{ProjectId, ProjectState};
use meter_kafka::{read_partitions_to_end, KafkaConfig};
use meter_proto::packed::Packing;
use meter_proto::restore;

use crate::collapse::SlotMark;
use crate::metrics as m;
use crate::process::Emission;

/// Project states of one partition, by project id.
pub(crate) type PartitionState = HashMap<String, Slot, meter_core::FastHash>;

/// A project's state, and the transaction that last counted it.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) state: ProjectState,
    pub(crate) mark: SlotMark,
}

impl Slot {
    pub(crate) fn new(state: ProjectState) -> Self {
        Slot { state, mark: SlotMark::default() }
    }
}

/// A partition's projects holding rows (docs/exactness.md, mechanism 4):
/// written together, when the partition emits.
#[derive(Debug, Default)]
pub(crate) struct Holding {
    /// The projects whose state holds rows.
    pub(crate) projects: Vec<ProjectId>,
    /// When the oldest of them began holding.
    pub(crate) since_ms: Option<i64>,
    /// The probes read since the partition last emitted: a probe goes out
    /// after every row before it (lost with the partition on an abort or a
    /// rebalance, which only delays the watermark to the next probe).
    pub(crate) probes: Vec<i64>,
    /// The partition has counted a batch since it was restored, so its
    /// state covers the committed offsets: it may write its held rows in a
    /// transaction without records of its own.
    pub(crate) synced: bool,
}

impl Holding {
    /// The projects holding rows, taken out as the partition writes them:
    /// nothing is held afterwards.
    pub(crate) fn take_projects(&mut self) -> Vec<ProjectId> {
        self.since_ms = None;
        std::mem::take(&mut self.projects)
    }

    /// Whether the partition writes its held rows in a transaction without
    /// records of its own: it holds some, they are due, and it has counted
    /// a batch since its restore.
    pub(crate) fn due_alone(&self, emission: &Emission) -> bool {
        !self.projects.is_empty() && self.synced && emission.emits(self)
    }

    /// The projects of a restored state that hold rows.
    pub(crate) fn of(state: &PartitionState) -> Holding {
        let mut out = Holding::default();
        for slot in state.values().filter(|s| !s.state.held.is_empty()) {
            out.projects.push(slot.state.project_id.clone());
            let since = slot.state.held.since_ms;
            out.since_ms = Some(out.since_ms.map_or(since, |s| s.min(since)));
        }
        out
    }
}

/// Project states of every partition this instance has restored.
#[derive(Debug, Default)]
pub(crate) struct States {
    partitions: HashMap<i32, PartitionState>,
    /// Per restored partition, the `usage.events` offset its state covers
    /// (everything before it is counted); absent when no record says.
    resume: HashMap<i32, i64>,
    /// Per restored partition, the cycles whose close it applied.
    closed: HashMap<i32, ClosedCycles>,
    /// Per restored partition, which packed `usage.totals` records hold a
    /// project's latest state.
    packing: HashMap<i32, Packing>,
    /// Per restored partition, its projects holding rows.
    holding: HashMap<i32, Holding>,
}

impl States {
    /// Forgets every partition (after a rebalance).
    pub(crate) fn clear(&mut self) {
        self.partitions.clear();
        self.resume.clear();
        self.closed.clear();
        self.packing.clear();
        self.holding.clear();
    }

    /// Forgets one partition (after an aborted transaction touched it).
    pub(crate) fn forget(&mut self, partition: i32) {
        self.partitions.remove(&partition);
        self.resume.remove(&partition);
        self.closed.remove(&partition);
        self.packing.remove(&partition);
        self.holding.remove(&partition);
    }

    /// Records that `partition` applied the close of `cycles`.
    pub(crate) fn add_closed(&mut self, partition: i32, cycles: &[i64]) {
        self.closed.entry(partition).or_default().extend(cycles);
    }

    /// Records that the state of `partition` now covers every record before `offset`.
    pub(crate) fn set_resume_offset(&mut self, partition: i32, offset: i64) {
        self.resume.insert(partition, offset);
    }

    /// The offset the state of `partition` covers, if known.
    pub(crate) fn resume_offset(&self, partition: i32) -> Option<i64> {
        self.resume.get(&partition).copied()
    }

    /// Rebuilds, from `usage.totals`, the state of each of `partitions`
    /// not restored yet.
    pub(crate) fn restore_missing(
        &mut self,
        kafka: &KafkaConfig,
        partitions: &[i32],
        timeout: Duration,
    ) -> anyhow::Result<()> {
        let missing: Vec<i32> = partitions.iter().copied().filter(|p| !self.partitions.contains_key(p)).collect();
        if missing.is_empty() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        for (partition, records) in read_partitions_to_end(kafka, &kafka.totals_topic, &missing, timeout)? {
            let n = records.len();
            let restored =
                restore(records).map_err(|(key, e)| anyhow::anyhow!("usage.totals record (key {key:?}): {e}"))?;
            let (state, resume, keys) = (restored.states, restored.resume_offset, restored.keys);
            self.closed.insert(partition, restored.closed);
            let mut packing = restored.packing;
            packing.restamp(meter_runtime::now_ms());
            metrics::gauge!(m::PACKED_BYTES, "partition" => partition.to_string()).set(packing.bytes() as f64);
            metrics::counter!(m::RESTORES).increment(1);
            tracing::info!(
                partition,
                records = n,
                projects = state.len(),
                idempotency_keys = keys,
                resume_offset = resume,
                packed_records = packing.live_records(),
                "aggregator.partition_restored"
            );
            self.packing.insert(partition, packing);
            let state: PartitionState = state.into_iter().map(|(id, s)| (id, Slot::new(s))).collect();
            self.holding.insert(partition, Holding::of(&state));
            self.partitions.insert(partition, state);
            if resume > 0 {
                self.resume.insert(partition, resume);
            }
        }
        tracing::info!(partitions = ?missing, took_ms = started.elapsed().as_millis() as u64, "aggregator.restore_done");
        Ok(())
    }

    /// Every restored partition: its number, the offset its state covers
    /// (if known), the cycles it closed, its state, its projects holding rows.
    pub(crate) fn partitions_mut(
        &mut self,
    ) -> impl Iterator<Item = (i32, Option<i64>, ClosedCycles, &mut PartitionState, &mut Holding)> {
        let (resume, closed, holding) = (&self.resume, &self.closed, &mut self.holding);
        let mut holding: HashMap<i32, &mut Holding> = holding.iter_mut().map(|(&p, h)| (p, h)).collect();
        self.partitions.iter_mut().filter_map(move |(&p, state)| {
            let h = holding.remove(&p)?;
            Some((p, resume.get(&p).copied(), closed.get(&p).cloned().unwrap_or_default(), state, h))
        })
    }

    /// Whether a partition would write its held rows in a transaction
    /// without records (`Holding::due_alone`): an idle aggregator runs one.
    pub(crate) fn holding_due(&self, emission: &Emission) -> bool {
        self.holding.values().any(|h| h.due_alone(emission))
    }

    /// Projects holding rows, over every restored partition.
    pub(crate) fn held_projects(&self) -> usize {
        self.holding.values().map(|h| h.projects.len()).sum()
    }

    /// A restored partition's state, mutable.
    pub(crate) fn get_mut(&mut self, partition: i32) -> Option<&mut PartitionState> {
        self.partitions.get_mut(&partition)
    }

    /// A restored partition's state and its packed records' books.
    pub(crate) fn with_packing(&mut self, partition: i32) -> Option<(&PartitionState, &mut Packing)> {
        let state = self.partitions.get(&partition)?;
        Some((state, self.packing.entry(partition).or_default()))
    }
}
