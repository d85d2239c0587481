//! The aggregator's in-memory state: per assigned partition, the state of
//! each project seen there, rebuilt from `usage.totals` when the partition
//! is (re)assigned.

use std::collections::HashMap;
use std::time::Duration;

use meter_core::ProjectState;
use meter_kafka::{read_partition_to_end, KafkaConfig};
use meter_proto::{state_from_wire, v1::ProjectTotals};
use prost::Message;

use crate::metrics as m;

/// Project states of one partition, by project id.
pub(crate) type PartitionState = HashMap<String, ProjectState>;

/// Project states of every partition this instance has restored.
#[derive(Debug, Default)]
pub(crate) struct States {
    partitions: HashMap<i32, PartitionState>,
}

impl States {
    /// Forgets every partition (after a rebalance).
    pub(crate) fn clear(&mut self) {
        self.partitions.clear();
    }

    /// Forgets one partition (after an aborted transaction touched it).
    pub(crate) fn forget(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// The state of `partition`, rebuilt from `usage.totals` if needed.
    pub(crate) fn partition(
        &mut self,
        kafka: &KafkaConfig,
        partition: i32,
        timeout: Duration,
    ) -> anyhow::Result<&mut PartitionState> {
        if !self.partitions.contains_key(&partition) {
            let restored = restore(kafka, partition, timeout)?;
            self.partitions.insert(partition, restored);
        }
        Ok(self.partitions.get_mut(&partition).expect("just inserted"))
    }

    /// A restored partition's state, if any.
    pub(crate) fn get(&self, partition: i32) -> Option<&PartitionState> {
        self.partitions.get(&partition)
    }
}

fn restore(kafka: &KafkaConfig, partition: i32, timeout: Duration) -> anyhow::Result<PartitionState> {
    let started = std::time::Instant::now();
    let records = read_partition_to_end(kafka, &kafka.totals_topic, partition, timeout)?;
    let n = records.len();
    let mut out = PartitionState::new();
    for (key, value) in records {
        let wire = ProjectTotals::decode(value.as_slice())
            .map_err(|e| anyhow::anyhow!("undecodable usage.totals record (key {:?}): {e}", String::from_utf8_lossy(&key)))?;
        let state = state_from_wire(wire)?;
        out.insert(state.project_id.to_string(), state);
    }
    metrics::counter!(m::RESTORES).increment(1);
    tracing::info!(partition, records = n, projects = out.len(), took_ms = started.elapsed().as_millis() as u64, "aggregator.partition_restored");
    Ok(out)
}
