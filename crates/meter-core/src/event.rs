//! Usage events and batches, as the domain sees them once decoded.

use crate::{Metric, ProjectId, SourceId, UnixMs};

/// When the usage happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Span {
    /// INCREMENTAL: a delta over `[start_ms, end_ms)`.
    Interval { start_ms: UnixMs, end_ms: UnixMs },
    /// ABSOLUTE: a gauge reading at `time_ms`.
    Instant { time_ms: UnixMs },
}

impl Span {
    /// When the usage began: the interval's start, or the reading's time.
    /// An event's idempotency key belongs to the cycle containing it.
    pub fn start_ms(&self) -> UnixMs {
        match *self {
            Span::Interval { start_ms, .. } => start_ms,
            Span::Instant { time_ms } => time_ms,
        }
    }
}

/// One usage event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub project_id: ProjectId,
    pub endpoint_id: Option<String>,
    pub branch_id: Option<String>,
    pub metric: Metric,
    /// In the metric's base unit: seconds, CPU-seconds or bytes.
    pub value: u64,
    pub span: Span,
    pub idempotency_key: Option<String>,
}

/// The events of one source batch that belong to one project: the unit that
/// ingest writes to Kafka and the aggregator deduplicates.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub source_id: SourceId,
    /// The source's session (drawn at each start; see the proto's contract).
    pub session: u64,
    pub batch_seq: u64,
    /// No batch identity: only the events' idempotency keys deduplicate
    /// (Neon JSON over HTTP).
    pub keyed_only: bool,
    pub project_id: ProjectId,
    pub events: Vec<Event>,
    /// When ingest accepted the batch; drives retention, never the counts.
    pub ingested_ms: UnixMs,
}

/// The `source_id` column of ClickHouse rows: the source and its session
/// (`node-a/00000000075bcd15`), so that two sessions' batches with the same
/// `batch_seq` are different rows. `/` never occurs in an id.
pub fn row_source_id(source_id: &str, session: u64) -> String {
    format!("{source_id}/{session:016x}")
}

impl Batch {
    /// Groups a source batch into one `Batch` per project, in order of first
    /// appearance, keeping each project's events in their original order.
    pub fn split_by_project(
        source_id: &SourceId,
        session: u64,
        batch_seq: u64,
        events: Vec<Event>,
        ingested_ms: UnixMs,
    ) -> Vec<Batch> {
        let mut out: Vec<Batch> = Vec::new();
        let mut groups = crate::group::Groups::for_items(events.len());
        fn id_of(b: &Batch) -> &str {
            b.project_id.as_str()
        }
        for event in events {
            match groups.find(&out, id_of, event.project_id.as_str()) {
                Some(k) => out[k].events.push(event),
                None => out.push(Batch {
                    source_id: source_id.clone(),
                    session,
                    batch_seq,
                    keyed_only: false,
                    project_id: event.project_id.clone(),
                    events: vec![event],
                    ingested_ms,
                }),
            }
            groups.pushed(&out, |b| id_of(b).to_owned());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(p: &str, v: u64) -> Event {
        Event {
            project_id: ProjectId::new(p).unwrap(),
            endpoint_id: None,
            branch_id: None,
            metric: Metric::WrittenDataBytes,
            value: v,
            span: Span::Interval { start_ms: 0, end_ms: 1 },
            idempotency_key: None,
        }
    }

    #[test]
    fn splits_by_project_keeping_order() {
        let src = SourceId::new("s").unwrap();
        let out = Batch::split_by_project(&src, 1, 7, vec![ev("a", 1), ev("b", 2), ev("a", 3)], 9);
        assert_eq!(out.len(), 2);
        assert_eq!(out[0].project_id.as_str(), "a");
        assert_eq!(out[0].events.iter().map(|e| e.value).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(out[1].events[0].value, 2);
        assert!(out.iter().all(|b| b.batch_seq == 7 && b.ingested_ms == 9));
    }

    proptest::proptest! {
        #[test]
        fn split_keeps_every_event_once_in_order(projects in proptest::collection::vec(0u8..20, 0..200)) {
            let src = SourceId::new("s").unwrap();
            let events: Vec<Event> = projects.iter().enumerate().map(|(i, p)| ev(&format!("p{p}"), i as u64)).collect();
            let out = Batch::split_by_project(&src, 1, 1, events, 0);
            // Batches in order of first appearance, one per project.
            let mut firsts: Vec<String> = Vec::new();
            for p in &projects {
                let id = format!("p{p}");
                if !firsts.contains(&id) {
                    firsts.push(id);
                }
            }
            proptest::prop_assert_eq!(out.iter().map(|b| b.project_id.to_string()).collect::<Vec<_>>(), firsts);
            // Each batch holds its project's events, in their original order.
            for b in &out {
                let want: Vec<u64> = projects.iter().enumerate().filter(|(_, p)| format!("p{p}") == b.project_id.as_str()).map(|(i, _)| i as u64).collect();
                proptest::prop_assert_eq!(b.events.iter().map(|e| e.value).collect::<Vec<_>>(), want);
            }
        }
    }
}
