//! What makes a batch acceptable. A batch is all-or-nothing: the first bad
//! event refuses the whole batch, and the error names it and its field.

use std::fmt;

use crate::{Event, Metric, Span, UnixMs};

/// Latest time an event may carry (9999-12-31T23:59:59.999Z); with times
/// from 0, hour arithmetic stays far from overflow.
pub const MAX_TIME_MS: UnixMs = 253_402_300_799_999;

/// Longest interval one event may cover, 400 days: its value is split over at
/// most 9,600 hours (an unbounded interval would keep the aggregator busy
/// splitting it for ever; found by fuzzing).
pub const MAX_INTERVAL_MS: i64 = 400 * 24 * crate::HOUR_MS;

/// Checks what any event must satisfy, whatever the configured limits: a
/// counter is INCREMENTAL and a gauge ABSOLUTE; times in `0..=MAX_TIME_MS`;
/// an interval's end not before its start and at most `MAX_INTERVAL_MS`
/// after it. Ingest checks it, and the aggregator checks every record it
/// reads (both found by fuzzing the aggregator's decoder).
pub fn check_measure(index: usize, metric: Metric, span: Span) -> Result<(), BatchError> {
    match (span, metric.is_gauge()) {
        (Span::Interval { .. }, true) => {
            return Err(BatchError::event(index, "kind", format!("{metric} is a gauge and must be ABSOLUTE")))
        }
        (Span::Instant { .. }, false) => {
            return Err(BatchError::event(index, "kind", format!("{metric} is a counter and must be INCREMENTAL")))
        }
        _ => {}
    }
    let in_range = |field: &'static str, t: UnixMs| {
        if (0..=MAX_TIME_MS).contains(&t) {
            Ok(())
        } else {
            Err(BatchError::event(index, field, format!("{t} is outside 0..={MAX_TIME_MS} (Unix ms)")))
        }
    };
    match span {
        Span::Interval { start_ms, end_ms } => {
            in_range("start_unix_ms", start_ms)?;
            in_range("end_unix_ms", end_ms)?;
            if end_ms < start_ms {
                return Err(BatchError::event(
                    index,
                    "end_unix_ms",
                    format!("{end_ms} is before start_unix_ms {start_ms}"),
                ));
            }
            if end_ms - start_ms > MAX_INTERVAL_MS {
                return Err(BatchError::event(
                    index,
                    "end_unix_ms",
                    format!("the interval is longer than {MAX_INTERVAL_MS} ms (400 days)"),
                ));
            }
            Ok(())
        }
        Span::Instant { time_ms } => in_range("time_unix_ms", time_ms),
    }
}

/// Bounds on what ingest accepts.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_events_per_batch: usize,
    /// Oldest accepted timestamp, relative to now.
    pub max_past_ms: i64,
    /// Newest accepted timestamp, relative to now.
    pub max_future_ms: i64,
    /// Largest accepted value of one event (keeps cycle sums far from overflow).
    pub max_value: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_events_per_batch: 10_000,
            max_past_ms: 7 * 24 * crate::HOUR_MS,
            max_future_ms: 5 * 60 * 1000,
            max_value: 1 << 50,
        }
    }
}

/// Checks an event's branch id (empty: none) by the rules of ids: it names
/// the branch in the control plane's `block_writes` path and in alerts.
pub fn check_branch_id(index: usize, branch: &str) -> Result<(), BatchError> {
    if branch.is_empty() {
        return Ok(());
    }
    crate::ProjectId::check(branch).map_err(|e| BatchError::event(index, "branch_id", e.to_string()))
}

/// A refused batch: which event (if any), which field, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchError {
    /// Index of the offending event, `None` for batch-level fields.
    pub index: Option<usize>,
    pub field: &'static str,
    pub reason: String,
    pub kind: Refusal,
}

/// What kind of refusal a `BatchError` is (a metric label).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Refusal {
    /// Malformed or out of bounds.
    #[default]
    Invalid,
    /// An event older than the late-event horizon (`max_past_ms`): its
    /// hour may already be billed.
    Late,
    /// An event further in the future than `max_future_ms`.
    Future,
}

impl Refusal {
    /// The label value: `invalid`, `late` or `future`.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Invalid => "invalid",
            Refusal::Late => "late",
            Refusal::Future => "future",
        }
    }
}

impl BatchError {
    /// A problem with a batch-level field.
    pub fn batch(field: &'static str, reason: impl Into<String>) -> Self {
        BatchError { index: None, field, reason: reason.into(), kind: Refusal::Invalid }
    }

    /// A problem with one event's field.
    pub fn event(index: usize, field: &'static str, reason: impl Into<String>) -> Self {
        BatchError { index: Some(index), field, reason: reason.into(), kind: Refusal::Invalid }
    }
}

impl fmt::Display for BatchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.index {
            Some(i) => write!(f, "events[{i}].{}: {}", self.field, self.reason),
            None => write!(f, "{}: {}", self.field, self.reason),
        }
    }
}

impl std::error::Error for BatchError {}

impl Limits {
    /// Checks the size of a batch before its events are decoded.
    pub fn check_batch_len(&self, len: usize) -> Result<(), BatchError> {
        if len > self.max_events_per_batch {
            return Err(BatchError::batch(
                "events",
                format!("batch has {len} events, the limit is {}", self.max_events_per_batch),
            ));
        }
        Ok(())
    }

    /// Checks one decoded event against the limits at time `now_ms`, then
    /// against `check_measure`.
    pub fn check_event(&self, index: usize, e: &Event, now_ms: UnixMs) -> Result<(), BatchError> {
        self.check_usage(index, e.value, e.span, now_ms)?;
        check_measure(index, e.metric, e.span)
    }

    /// Checks an event's value and times against the configured limits at
    /// time `now_ms`. Ingest calls it on wire events that already passed
    /// `check_measure` (in `meter_proto::wire_measure`).
    pub fn check_usage(&self, index: usize, value: u64, span: Span, now_ms: UnixMs) -> Result<(), BatchError> {
        if value > self.max_value {
            return Err(BatchError::event(index, "value", format!("{value} exceeds the limit {}", self.max_value)));
        }
        let check_time = |field: &'static str, t: UnixMs| {
            if t < now_ms.saturating_sub(self.max_past_ms) {
                let reason = format!("{t} is more than {} ms in the past", self.max_past_ms);
                Err(BatchError { kind: Refusal::Late, ..BatchError::event(index, field, reason) })
            } else if t > now_ms.saturating_add(self.max_future_ms) {
                let reason = format!("{t} is more than {} ms in the future", self.max_future_ms);
                Err(BatchError { kind: Refusal::Future, ..BatchError::event(index, field, reason) })
            } else {
                Ok(())
            }
        };
        match span {
            Span::Interval { start_ms, end_ms } => {
                check_time("start_unix_ms", start_ms)?;
                check_time("end_unix_ms", end_ms)
            }
            Span::Instant { time_ms } => check_time("time_unix_ms", time_ms),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProjectId;

    const NOW: i64 = 1_760_000_000_000;

    fn ev(metric: Metric, span: Span, value: u64) -> Event {
        Event {
            project_id: ProjectId::new("p").unwrap(),
            endpoint_id: None,
            branch_id: None,
            metric,
            value,
            span,
            idempotency_key: None,
        }
    }

    #[test]
    fn accepts_good_events() {
        let l = Limits::default();
        let inc = ev(Metric::ComputeTimeSeconds, Span::Interval { start_ms: NOW - 60_000, end_ms: NOW }, 5);
        assert_eq!(l.check_event(0, &inc, NOW), Ok(()));
        let abs = ev(Metric::LogicalSizeBytes, Span::Instant { time_ms: NOW }, 5);
        assert_eq!(l.check_event(0, &abs, NOW), Ok(()));
    }

    #[test]
    fn a_branch_id_follows_the_rules_of_ids() {
        assert!(check_branch_id(0, "").is_ok() && check_branch_id(0, "br-cold-snow-123456").is_ok());
        let err = check_branch_id(4, "br/../x").unwrap_err();
        assert_eq!((err.index, err.field), (Some(4), "branch_id"));
    }

    #[test]
    fn names_the_field_of_each_problem() {
        let l = Limits::default();
        let cases = [
            (ev(Metric::ActiveTimeSeconds, Span::Interval { start_ms: NOW, end_ms: NOW - 1 }, 1), "end_unix_ms"),
            (ev(Metric::ActiveTimeSeconds, Span::Interval { start_ms: 0, end_ms: NOW }, 1), "start_unix_ms"),
            (
                ev(Metric::ActiveTimeSeconds, Span::Interval { start_ms: NOW, end_ms: NOW + 3_600_000 }, 1),
                "end_unix_ms",
            ),
            (ev(Metric::ActiveTimeSeconds, Span::Instant { time_ms: NOW }, 1), "kind"),
            (ev(Metric::LogicalSizeBytes, Span::Interval { start_ms: NOW, end_ms: NOW }, 1), "kind"),
            (ev(Metric::LogicalSizeBytes, Span::Instant { time_ms: NOW }, u64::MAX), "value"),
        ];
        for (e, field) in cases {
            let err = l.check_event(3, &e, NOW).unwrap_err();
            assert_eq!((err.index, err.field), (Some(3), field), "{err}");
            assert!(err.to_string().starts_with(&format!("events[3].{field}: ")));
        }
    }

    #[test]
    fn spans_are_bounded_whatever_the_limits() {
        let day = 24 * crate::HOUR_MS;
        let ok = Span::Interval { start_ms: NOW - 400 * day, end_ms: NOW };
        assert_eq!(check_measure(0, Metric::ActiveTimeSeconds, ok), Ok(()));
        for (span, field) in [
            (Span::Interval { start_ms: NOW - 400 * day - 1, end_ms: NOW }, "end_unix_ms"),
            (Span::Interval { start_ms: i64::MIN, end_ms: i64::MAX }, "start_unix_ms"),
            (Span::Interval { start_ms: 0, end_ms: i64::MAX }, "end_unix_ms"),
            (Span::Interval { start_ms: 5, end_ms: 4 }, "end_unix_ms"),
            (Span::Instant { time_ms: 5 }, "kind"),
        ] {
            assert_eq!(check_measure(2, Metric::ActiveTimeSeconds, span).unwrap_err().field, field, "{span:?}");
        }
        for (span, field) in
            [(Span::Instant { time_ms: -1 }, "time_unix_ms"), (Span::Interval { start_ms: 0, end_ms: 1 }, "kind")]
        {
            assert_eq!(check_measure(0, Metric::LogicalSizeBytes, span).unwrap_err().field, field, "{span:?}");
        }
        assert_eq!(
            check_measure(0, Metric::LogicalSizeBytes, Span::Instant { time_ms: MAX_TIME_MS + 1 }).unwrap_err().field,
            "time_unix_ms"
        );
        // Limits configured wider than the bound still refuse a longer interval.
        let wide = Limits { max_past_ms: 1000 * day, ..Limits::default() };
        let e = ev(Metric::ActiveTimeSeconds, Span::Interval { start_ms: NOW - 500 * day, end_ms: NOW }, 1);
        assert_eq!(wide.check_event(0, &e, NOW).unwrap_err().field, "end_unix_ms");
    }

    #[test]
    fn late_and_future_events_are_told_apart_from_invalid_ones() {
        let l = Limits::default();
        let at = |t: i64| ev(Metric::LogicalSizeBytes, Span::Instant { time_ms: t }, 1);
        let kind = |t: i64| l.check_event(0, &at(t), NOW).unwrap_err().kind;
        assert_eq!(kind(NOW - l.max_past_ms - 1), Refusal::Late);
        assert_eq!(kind(NOW + l.max_future_ms + 1), Refusal::Future);
        assert!(l.check_event(0, &at(NOW - l.max_past_ms), NOW).is_ok(), "the horizon itself is accepted");
        let huge = ev(Metric::ActiveTimeSeconds, Span::Interval { start_ms: NOW - 1, end_ms: NOW }, 1 << 60);
        assert_eq!(l.check_event(0, &huge, NOW).unwrap_err().kind, Refusal::Invalid);
        assert_eq!(
            [Refusal::Invalid, Refusal::Late, Refusal::Future].map(Refusal::label),
            ["invalid", "late", "future"]
        );
    }

    #[test]
    fn refuses_oversized_batches() {
        let l = Limits { max_events_per_batch: 2, ..Limits::default() };
        assert!(l.check_batch_len(2).is_ok());
        assert_eq!(l.check_batch_len(3).unwrap_err().field, "events");
    }
}
