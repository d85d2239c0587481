//! Project states as the aggregator holds them, for the benchmarks that
//! need a fleet's `usage.totals` without running one.

use meter_core::aggregate::Retention;
use meter_core::{Batch, Event, Metric, ProjectId, ProjectState, SourceId, Span};

/// `project`'s state after one batch of the five metrics (a minute ending
/// at `now`, `active_seconds` of active time) from each of `sources` source
/// sessions.
pub fn project_state(project: &str, sources: usize, now: i64, active_seconds: u64) -> ProjectState {
    let project = ProjectId::new(project).expect("id");
    let mut s = ProjectState::new(project.clone());
    for src in 0..sources {
        let event = |metric, value, span| Event {
            project_id: project.clone(),
            endpoint_id: None,
            branch_id: None,
            metric,
            value,
            span,
            idempotency_key: None,
        };
        let minute = Span::Interval { start_ms: now - 60_000, end_ms: now };
        let batch = Batch {
            source_id: SourceId::new(format!("collector-{src:03}")).expect("id"),
            session: 0x5eed_0000 + src as u64,
            batch_seq: 1,
            keyed_only: false,
            project_id: project.clone(),
            events: vec![
                event(Metric::ActiveTimeSeconds, active_seconds, minute),
                event(Metric::ComputeTimeSeconds, 15, minute),
                event(Metric::WrittenDataBytes, 1 << 20, minute),
                event(Metric::DataTransferBytes, 1 << 22, minute),
                event(Metric::LogicalSizeBytes, 1 << 30, Span::Instant { time_ms: now }),
            ],
            ingested_ms: now,
        };
        let _ = s.apply(&batch, &Retention::default());
    }
    s
}
