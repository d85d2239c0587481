//! Usage events and batches: wire <-> domain.

use meter_core::{Batch, BatchError, Event, Metric, ProjectId, SourceId, Span};
use prost::Message;

use crate::v1;

/// A Kafka record that cannot be decoded as a `ProjectBatch`.
#[derive(Debug)]
pub enum DecodeError {
    /// Not protobuf, or not this message.
    Protobuf(prost::DecodeError),
    /// Decoded, but a field is not valid.
    Invalid(BatchError),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::Protobuf(e) => write!(f, "undecodable record: {e}"),
            DecodeError::Invalid(e) => write!(f, "invalid record: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

pub(crate) fn metric_from_wire(code: i32) -> Option<Metric> {
    match v1::Metric::try_from(code).ok()? {
        v1::Metric::Unspecified => None,
        v1::Metric::ActiveTimeSeconds => Some(Metric::ActiveTimeSeconds),
        v1::Metric::ComputeTimeSeconds => Some(Metric::ComputeTimeSeconds),
        v1::Metric::WrittenDataBytes => Some(Metric::WrittenDataBytes),
        v1::Metric::DataTransferBytes => Some(Metric::DataTransferBytes),
        v1::Metric::LogicalSizeBytes => Some(Metric::LogicalSizeBytes),
    }
}

/// The wire code of a metric.
pub fn metric_to_wire(m: Metric) -> v1::Metric {
    match m {
        Metric::ActiveTimeSeconds => v1::Metric::ActiveTimeSeconds,
        Metric::ComputeTimeSeconds => v1::Metric::ComputeTimeSeconds,
        Metric::WrittenDataBytes => v1::Metric::WrittenDataBytes,
        Metric::DataTransferBytes => v1::Metric::DataTransferBytes,
        Metric::LogicalSizeBytes => v1::Metric::LogicalSizeBytes,
    }
}

fn optional(s: String) -> Option<String> {
    (!s.is_empty()).then_some(s)
}

/// What a wire event measures, checked: its metric and span (see
/// `meter_core::check_measure`).
pub fn wire_measure(index: usize, e: &v1::UsageEvent) -> Result<(Metric, Span), BatchError> {
    measure_of(index, e.metric, e.kind, (e.start_unix_ms, e.end_unix_ms, e.time_unix_ms))
}

/// `wire_measure` of an event's metric and kind codes and its start, end
/// and time fields.
pub(crate) fn measure_of(
    index: usize,
    metric: i32,
    kind: i32,
    (start_ms, end_ms, time_ms): (i64, i64, i64),
) -> Result<(Metric, Span), BatchError> {
    let metric = metric_from_wire(metric)
        .ok_or_else(|| BatchError::event(index, "metric", format!("unknown metric code {metric}")))?;
    let span = match v1::Kind::try_from(kind) {
        Ok(v1::Kind::Incremental) => Span::Interval { start_ms, end_ms },
        Ok(v1::Kind::Absolute) => Span::Instant { time_ms },
        _ => {
            return Err(BatchError::event(
                index,
                "kind",
                format!("unknown kind code {kind}; expected INCREMENTAL or ABSOLUTE"),
            ))
        }
    };
    meter_core::check_measure(index, metric, span)?;
    Ok((metric, span))
}

/// Keeps only the time fields of `span` in a wire event (the others read 0),
/// as `event_to_wire` writes them.
pub fn set_wire_span(w: &mut v1::UsageEvent, span: Span) {
    let (kind, start, end, time) = match span {
        Span::Interval { start_ms, end_ms } => (v1::Kind::Incremental, start_ms, end_ms, 0),
        Span::Instant { time_ms } => (v1::Kind::Absolute, 0, 0, time_ms),
    };
    w.kind = kind as i32;
    (w.start_unix_ms, w.end_unix_ms, w.time_unix_ms) = (start, end, time);
}

/// Decodes one wire event; `project` overrides an empty `project_id` (the
/// events inside a `ProjectBatch` carry theirs once, above them).
/// Its strings are moved, not copied: decoding is most of the aggregator's
/// work per event.
pub fn event_from_wire(index: usize, mut e: v1::UsageEvent, project: Option<&ProjectId>) -> Result<Event, BatchError> {
    let project_id = match (project, e.project_id.is_empty()) {
        (Some(p), true) => p.clone(),
        _ => ProjectId::new(std::mem::take(&mut e.project_id))
            .map_err(|err| BatchError::event(index, "project_id", err.to_string()))?,
    };
    let (metric, span) = wire_measure(index, &e)?;
    Ok(Event {
        project_id,
        endpoint_id: optional(e.endpoint_id),
        branch_id: optional(e.branch_id),
        metric,
        value: e.value,
        span,
        idempotency_key: optional(e.idempotency_key),
    })
}

/// The wire form of a domain event; `with_project` false leaves the project
/// id out (inside a `ProjectBatch`).
pub fn event_to_wire(e: &Event, with_project: bool) -> v1::UsageEvent {
    let mut w = v1::UsageEvent {
        project_id: if with_project { e.project_id.as_str().to_owned() } else { String::new() },
        endpoint_id: e.endpoint_id.clone().unwrap_or_default(),
        branch_id: e.branch_id.clone().unwrap_or_default(),
        metric: metric_to_wire(e.metric) as i32,
        value: e.value,
        idempotency_key: e.idempotency_key.clone().unwrap_or_default(),
        ..Default::default()
    };
    set_wire_span(&mut w, e.span);
    w
}

/// Encodes a project batch as the Kafka record value.
pub fn encode_batch(b: &Batch) -> Vec<u8> {
    v1::ProjectBatch {
        source_id: b.source_id.as_str().to_owned(),
        batch_seq: b.batch_seq,
        project_id: b.project_id.as_str().to_owned(),
        events: b.events.iter().map(|e| event_to_wire(e, false)).collect(),
        ingested_unix_ms: b.ingested_ms,
        source_session: b.session,
        keyed_only: b.keyed_only,
    }
    .encode_to_vec()
}

/// The batches of a record of `usage.events` (see `decode_events`; its
/// adjustments are left out). All or nothing.
pub fn decode_record(bytes: &[u8]) -> Result<Vec<Batch>, DecodeError> {
    Ok(crate::events::decode_events(bytes)?.batches)
}

/// Decodes one `ProjectBatch` written by `encode_batch`.
pub fn decode_batch(bytes: &[u8]) -> Result<Batch, DecodeError> {
    batch_from_wire(v1::ProjectBatch::decode(bytes).map_err(DecodeError::Protobuf)?)
}

pub(crate) fn batch_from_wire(w: v1::ProjectBatch) -> Result<Batch, DecodeError> {
    batch_from_wire_after(w, None)
}

/// `batch_from_wire`, where `previous` is the batch decoded before it from
/// the same record: the batches of a record are one report's, so their
/// source id is shared (checked and allocated once per record, not per
/// project: a collector's record holds thousands).
pub(crate) fn batch_from_wire_after(w: v1::ProjectBatch, previous: Option<&Batch>) -> Result<Batch, DecodeError> {
    let invalid = |field, e: meter_core::IdError| DecodeError::Invalid(BatchError::batch(field, e.to_string()));
    let project_id = ProjectId::new(w.project_id).map_err(|e| invalid("project_id", e))?;
    let source_id = match previous {
        Some(b) if b.source_id.as_str() == w.source_id => b.source_id.clone(),
        _ => SourceId::new(w.source_id).map_err(|e| invalid("source_id", e))?,
    };
    let events = w
        .events
        .into_iter()
        .enumerate()
        .map(|(i, e)| event_from_wire(i, e, Some(&project_id)))
        .collect::<Result<Vec<_>, _>>()
        .map_err(DecodeError::Invalid)?;
    Ok(Batch {
        source_id,
        session: w.source_session,
        batch_seq: w.batch_seq,
        keyed_only: w.keyed_only,
        project_id,
        events,
        ingested_ms: w.ingested_unix_ms,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_round_trips() {
        let p = ProjectId::new("p").unwrap();
        let b = Batch {
            source_id: SourceId::new("s").unwrap(),
            session: 0xfeed,
            batch_seq: 42,
            keyed_only: true,
            project_id: p.clone(),
            events: vec![
                Event {
                    project_id: p.clone(),
                    endpoint_id: Some("ep".into()),
                    branch_id: None,
                    metric: Metric::DataTransferBytes,
                    value: 9,
                    span: Span::Interval { start_ms: 1, end_ms: 2 },
                    idempotency_key: Some("k".into()),
                },
                Event {
                    project_id: p,
                    endpoint_id: None,
                    branch_id: Some("br".into()),
                    metric: Metric::LogicalSizeBytes,
                    value: 10,
                    span: Span::Instant { time_ms: 3 },
                    idempotency_key: None,
                },
            ],
            ingested_ms: 77,
        };
        assert_eq!(decode_batch(&encode_batch(&b)).unwrap(), b);
    }

    #[test]
    fn names_unknown_codes() {
        let e = v1::UsageEvent { project_id: "p".into(), metric: 9, kind: 1, ..Default::default() };
        assert_eq!(
            event_from_wire(2, e.clone(), None).unwrap_err().to_string(),
            "events[2].metric: unknown metric code 9"
        );
        let e = v1::UsageEvent { project_id: "p".into(), metric: 1, kind: 0, ..Default::default() };
        assert_eq!(event_from_wire(0, e.clone(), None).unwrap_err().field, "kind");
        let e = v1::UsageEvent { project_id: "".into(), metric: 1, kind: 1, ..Default::default() };
        assert_eq!(event_from_wire(0, e.clone(), None).unwrap_err().to_string(), "events[0].project_id: is empty");
    }

    #[test]
    fn unbounded_intervals_are_refused_not_split() {
        // Found by fuzzing the aggregator's decoder: an interval from i64::MIN
        // to i64::MAX would be split hour by hour for ever.
        let w = v1::ProjectBatch {
            source_id: "s".into(),
            batch_seq: 1,
            project_id: "p".into(),
            events: vec![v1::UsageEvent {
                metric: v1::Metric::ActiveTimeSeconds as i32,
                kind: v1::Kind::Incremental as i32,
                value: 1,
                start_unix_ms: i64::MIN,
                end_unix_ms: i64::MAX,
                ..Default::default()
            }],
            ..Default::default()
        };
        match decode_batch(&w.encode_to_vec()) {
            Err(DecodeError::Invalid(e)) => assert_eq!(e.field, "start_unix_ms", "{e}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_counter_sent_as_absolute_is_refused() {
        // Found by fuzzing: the aggregator took the larger of two ABSOLUTE
        // counter readings in an hour instead of their sum. Ingest never
        // writes one; a record that does is now undecodable (skipped, loudly).
        let e = v1::UsageEvent {
            metric: v1::Metric::ActiveTimeSeconds as i32,
            kind: v1::Kind::Absolute as i32,
            value: 5,
            time_unix_ms: 1_760_000_000_000,
            ..Default::default()
        };
        let p = ProjectId::new("p").unwrap();
        assert_eq!(event_from_wire(0, e.clone(), Some(&p)).unwrap_err().field, "kind");
    }

    #[test]
    fn garbage_is_a_decode_error() {
        assert!(matches!(decode_batch(&[0xff, 0xff, 0xff]), Err(DecodeError::Protobuf(_))));
    }
}
