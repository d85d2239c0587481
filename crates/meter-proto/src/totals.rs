//! Project state: domain <-> the `ProjectTotals` record of `usage.totals`.

use std::collections::BTreeMap;

use meter_core::aggregate::{CycleCounters, Reading, SourceEntry};
use meter_core::{Cycle, IdError, ProjectId, ProjectState, SeqWindow};

use crate::v1;

/// The record written to `usage.totals` for a project.
pub fn state_to_wire(s: &ProjectState, now_ms: i64) -> v1::ProjectTotals {
    v1::ProjectTotals {
        project_id: s.project_id.to_string(),
        cycles: s
            .cycles
            .values()
            .map(|c| v1::CycleTotals {
                cycle_start_unix_s: c.cycle.start_ms / 1000,
                cycle_end_unix_s: c.cycle.end_ms / 1000,
                active_time_seconds: c.values[0],
                compute_time_seconds: c.values[1],
                written_data_bytes: c.values[2],
                data_transfer_bytes: c.values[3],
            })
            .collect(),
        logical_size_bytes: s.logical_size.map_or(0, |r| r.value),
        logical_size_time_unix_ms: s.logical_size.map_or(0, |r| r.time_ms),
        sources: s
            .sources
            .iter()
            .map(|(id, e)| v1::SourceWindow {
                source_id: id.clone(),
                high_seq: e.window.high,
                seen_mask: e.window.mask,
                last_seen_unix_ms: e.last_seen_ms,
            })
            .collect(),
        version: s.version,
        updated_unix_ms: now_ms,
        last_ingested_unix_ms: s.last_ingested_ms,
        events_next_offset: 0,
    }
}

/// Why a `usage.totals` record could not be read.
#[derive(Debug)]
pub enum TotalsDecodeError {
    /// Not a `ProjectTotals` message.
    Protobuf(prost::DecodeError),
    /// Decoded, but the project id is not valid.
    Invalid(IdError),
}

impl std::fmt::Display for TotalsDecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TotalsDecodeError::Protobuf(e) => write!(f, "undecodable totals record: {e}"),
            TotalsDecodeError::Invalid(e) => write!(f, "invalid totals record: project_id {e}"),
        }
    }
}

impl std::error::Error for TotalsDecodeError {}

/// Decodes the value of a `usage.totals` record into the project's state.
pub fn decode_state(bytes: &[u8]) -> Result<ProjectState, TotalsDecodeError> {
    decode_totals(bytes).map(|(s, _)| s)
}

/// Decodes a `usage.totals` record into the project's state and the
/// `usage.events` offset its transaction committed (0 when unknown).
pub fn decode_totals(bytes: &[u8]) -> Result<(ProjectState, i64), TotalsDecodeError> {
    let wire = <v1::ProjectTotals as prost::Message>::decode(bytes).map_err(TotalsDecodeError::Protobuf)?;
    let offset = wire.events_next_offset;
    Ok((state_from_wire(wire).map_err(TotalsDecodeError::Invalid)?, offset))
}

/// Restores a project's state from its `usage.totals` record.
pub fn state_from_wire(w: v1::ProjectTotals) -> Result<ProjectState, IdError> {
    let cycles: BTreeMap<i64, CycleCounters> = w
        .cycles
        .iter()
        .map(|c| {
            let cycle = Cycle { start_ms: c.cycle_start_unix_s * 1000, end_ms: c.cycle_end_unix_s * 1000 };
            let values = [c.active_time_seconds, c.compute_time_seconds, c.written_data_bytes, c.data_transfer_bytes];
            (cycle.start_ms, CycleCounters { cycle, values })
        })
        .collect();
    let logical_size = (w.logical_size_time_unix_ms != 0 || w.logical_size_bytes != 0)
        .then_some(Reading { value: w.logical_size_bytes, time_ms: w.logical_size_time_unix_ms });
    Ok(ProjectState {
        project_id: ProjectId::new(w.project_id)?,
        cycles,
        logical_size,
        sources: w
            .sources
            .into_iter()
            .map(|s| {
                let entry = SourceEntry {
                    window: SeqWindow { high: s.high_seq, mask: s.seen_mask },
                    last_seen_ms: s.last_seen_unix_ms,
                };
                (s.source_id, entry)
            })
            .collect(),
        version: w.version,
        last_ingested_ms: w.last_ingested_unix_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use meter_core::aggregate::Retention;
    use meter_core::{Batch, Event, Metric, SourceId, Span};

    #[test]
    fn state_round_trips() {
        let p = ProjectId::new("p").unwrap();
        let mut s = ProjectState::new(p.clone());
        let t = 1_795_635_480_000;
        let ev = |metric, span, value| Event {
            project_id: p.clone(),
            endpoint_id: None,
            branch_id: None,
            metric,
            value,
            span,
            idempotency_key: None,
        };
        let b = Batch {
            source_id: SourceId::new("s").unwrap(),
            batch_seq: 3,
            project_id: p.clone(),
            events: vec![
                ev(Metric::ComputeTimeSeconds, Span::Interval { start_ms: t, end_ms: t + 5 }, 11),
                ev(Metric::LogicalSizeBytes, Span::Instant { time_ms: t }, 99),
            ],
            ingested_ms: t,
        };
        s.apply(&b, &Retention::default());
        let back = state_from_wire(state_to_wire(&s, t)).unwrap();
        assert_eq!(back, s);
    }
}
