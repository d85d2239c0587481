use super::*;
use crate::{Event, SourceId};
use proptest::prelude::*;

const NOV: i64 = 1_793_491_200_000; // 2026-11-01T00:00Z
const DEC: i64 = 1_796_083_200_000; // 2026-12-01T00:00Z

fn pid() -> ProjectId {
    ProjectId::new("p1").unwrap()
}

fn inc(metric: Metric, start_ms: i64, end_ms: i64, value: u64) -> Event {
    Event {
        project_id: pid(),
        endpoint_id: None,
        branch_id: None,
        metric,
        value,
        span: Span::Interval { start_ms, end_ms },
        idempotency_key: None,
    }
}

fn gauge(time_ms: i64, value: u64) -> Event {
    Event { span: Span::Instant { time_ms }, ..inc(Metric::LogicalSizeBytes, 0, 0, value) }
}

fn batch(source: &str, seq: u64, events: Vec<Event>) -> Batch {
    Batch {
        source_id: SourceId::new(source).unwrap(),
        batch_seq: seq,
        project_id: pid(),
        events,
        ingested_ms: NOV + 10 * HOUR_MS,
    }
}

#[test]
fn counts_once_and_drops_retries() {
    let mut s = ProjectState::new(pid());
    let b = batch("s1", 1, vec![inc(Metric::WrittenDataBytes, NOV, NOV + 1000, 500)]);
    assert!(matches!(s.apply(&b, &Retention::default()), ProjectUpdate::Counted(_)));
    assert_eq!(s.apply(&b, &Retention::default()), ProjectUpdate::Duplicate);
    assert_eq!(s.counters_at(NOV).values, [0, 0, 500, 0]);
    assert_eq!(s.version, 1);
}

#[test]
fn an_interval_across_the_month_boundary_is_split_between_cycles() {
    let mut s = ProjectState::new(pid());
    let b = batch("s1", 1, vec![inc(Metric::ActiveTimeSeconds, DEC - 30_000, DEC + 30_000, 60)]);
    s.apply(&b, &Retention::default());
    assert_eq!(s.counters_at(NOV).values[0], 30);
    assert_eq!(s.counters_at(DEC).values[0], 30);
}

#[test]
fn the_gauge_keeps_the_latest_reading_and_hourly_max() {
    let mut s = ProjectState::new(pid());
    let rows = match s
        .apply(&batch("s1", 1, vec![gauge(NOV + 10, 7), gauge(NOV + 30, 5), gauge(NOV + 20, 9)]), &Retention::default())
    {
        ProjectUpdate::Counted(rows) => rows,
        other => panic!("{other:?}"),
    };
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].value, rows[0].last_value, rows[0].last_time_ms), (9, 5, NOV + 30));
    // An older reading arriving later does not move the gauge back.
    s.apply(&batch("s2", 1, vec![gauge(NOV + 1, 100)]), &Retention::default());
    assert_eq!(s.logical_size, Some(Reading { value: 5, time_ms: NOV + 30 }));
}

#[test]
fn old_cycles_and_silent_sources_expire() {
    let r = Retention { cycle_grace_ms: HOUR_MS, source_ttl_ms: 2 * HOUR_MS };
    let mut s = ProjectState::new(pid());
    s.apply(&batch("old", 1, vec![inc(Metric::ActiveTimeSeconds, NOV - 10, NOV - 5, 1)]), &r);
    assert!(s.cycles.is_empty(), "October ended more than the grace before ingest time");
    let mut late = batch("new", 1, vec![inc(Metric::ActiveTimeSeconds, NOV, NOV + 5, 1)]);
    late.ingested_ms += 3 * HOUR_MS;
    s.apply(&late, &r);
    assert_eq!(s.sources.keys().collect::<Vec<_>>(), ["new"]);
}

proptest! {
    /// Whatever the order of delivery and however often each batch is
    /// redelivered (within the dedup window), the cycle counters equal the
    /// plain sum of the distinct batches, and the hourly rows of the counted
    /// batches add up to the same.
    #[test]
    fn redelivery_never_changes_totals(
        values in proptest::collection::vec((0u64..1_000_000, 0i64..(40 * 24 * HOUR_MS), 0i64..(3 * HOUR_MS)), 1..40),
        deliveries in proptest::collection::vec(0usize..40, 0..120),
    ) {
        let batches: Vec<Batch> = values
            .iter()
            .enumerate()
            .map(|(i, &(v, off, len))| batch("s", i as u64, vec![inc(Metric::ComputeTimeSeconds, NOV + off, NOV + off + len, v)]))
            .collect();
        let mut order: Vec<usize> = (0..batches.len()).collect();
        order.extend(deliveries.into_iter().filter(|&d| d < batches.len()));
        let mut s = ProjectState::new(pid());
        let mut row_sum = 0u64;
        for i in order {
            if let ProjectUpdate::Counted(rows) = s.apply(&batches[i], &Retention::default()) {
                row_sum += rows.iter().map(|r| r.value).sum::<u64>();
            }
        }
        let truth: u64 = values.iter().map(|v| v.0).sum();
        let counted: u64 = s.cycles.values().map(|c| c.values[1]).sum();
        prop_assert_eq!(counted, truth);
        prop_assert_eq!(row_sum, truth);
        prop_assert_eq!(s.version, batches.len() as u64);
    }
}
