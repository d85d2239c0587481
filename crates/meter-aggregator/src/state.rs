//! The aggregator's in-memory state: per assigned partition, the state of
//! each project seen there, rebuilt from `usage.totals` when the partition
//! is (re)assigned.

use std::collections::HashMap;
use std::time::Duration;

use meter_core::aggregate::ClosedCycles;
use meter_core::ProjectState;
use meter_kafka::{read_partitions_to_end, KafkaConfig};
use meter_proto::packed::Packing;
use meter_proto::restore;

use crate::collapse::SlotRows;
use crate::metrics as m;

/// Project states of one partition, by project id.
pub(crate) type PartitionState = HashMap<String, Slot, meter_core::FastHash>;

/// A project's state, and its rows of the transaction being applied.
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) state: ProjectState,
    pub(crate) rows: SlotRows,
}

impl Slot {
    pub(crate) fn new(state: ProjectState) -> Self {
        Slot { state, rows: SlotRows::default() }
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
}

impl States {
    /// Forgets every partition (after a rebalance).
    pub(crate) fn clear(&mut self) {
        self.partitions.clear();
        self.resume.clear();
        self.closed.clear();
        self.packing.clear();
    }

    /// Forgets one partition (after an aborted transaction touched it).
    pub(crate) fn forget(&mut self, partition: i32) {
        self.partitions.remove(&partition);
        self.resume.remove(&partition);
        self.closed.remove(&partition);
        self.packing.remove(&partition);
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
            self.partitions.insert(partition, state.into_iter().map(|(id, s)| (id, Slot::new(s))).collect());
            if resume > 0 {
                self.resume.insert(partition, resume);
            }
        }
        tracing::info!(partitions = ?missing, took_ms = started.elapsed().as_millis() as u64, "aggregator.restore_done");
        Ok(())
    }

    /// Every restored partition: its number, the offset its state covers
    /// (if known), the cycles it closed, its state.
    pub(crate) fn partitions_mut(
        &mut self,
    ) -> impl Iterator<Item = (i32, Option<i64>, ClosedCycles, &mut PartitionState)> {
        let (resume, closed) = (&self.resume, &self.closed);
        self.partitions
            .iter_mut()
            .map(move |(&p, state)| (p, resume.get(&p).copied(), closed.get(&p).cloned().unwrap_or_default(), state))
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
