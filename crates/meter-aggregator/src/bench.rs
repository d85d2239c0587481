//! The apply path without Kafka, for the micro-benchmarks
//! (`benches/benches/hot_paths.rs`): not part of the role's API.

use std::collections::HashMap;

use meter_core::aggregate::{ClosedCycles, Retention};

use crate::process::{by_partition, run_jobs, Job, Record};
use crate::rows::encode_rows;
use crate::state::{Holding, PartitionState};

/// Records of `usage.events` to apply as one transaction.
#[derive(Debug)]
pub struct Transaction(Vec<Record>);

impl Transaction {
    /// `(partition, offset, value)` of each record, in the order read.
    pub fn new(records: impl IntoIterator<Item = (i32, i64, Vec<u8>)>) -> Self {
        Transaction(
            records.into_iter().map(|(partition, offset, payload)| Record { partition, offset, payload }).collect(),
        )
    }
}

/// Project states of every partition, as the aggregator holds them.
#[derive(Debug, Default)]
pub struct States(HashMap<i32, (PartitionState, Holding)>);

impl States {
    /// Applies `txn` on the calling thread, as the aggregator applies a
    /// transaction (decode, dedup, count, collapse the rows), and writes its
    /// `usage.rows` records as the transaction's flush does; returns the
    /// events counted, the rows collapsed and the bytes of their records.
    pub fn apply(&mut self, txn: &Transaction) -> (u64, usize, usize) {
        let mut by_partition = by_partition(&txn.0);
        for &p in by_partition.keys() {
            self.0.entry(p).or_default();
        }
        let jobs = self
            .0
            .iter_mut()
            .filter_map(|(&partition, (state, holding))| {
                let records = by_partition.remove(&partition)?;
                let (resume, emit, closed) = (None, Some(0), ClosedCycles::new());
                Some(Job { partition, resume, emit, closed, state, holding, records })
            })
            .collect();
        let done = run_jobs(jobs, 0, &Retention::default());
        done.iter().fold((0, 0, 0), |(events, rows, bytes), (_, o)| {
            let records: usize = encode_rows(o.rows.iter()).iter().map(Vec::len).sum();
            (events + o.events, rows + o.rows.len(), bytes + records)
        })
    }

    /// Projects held.
    pub fn projects(&self) -> usize {
        self.0.values().map(|(state, _)| state.len()).sum()
    }
}
