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
        session: 1,
        batch_seq: seq,
        keyed_only: false,
        project_id: pid(),
        events,
        ingested_ms: NOV + 10 * HOUR_MS,
    }
}

#[test]
fn counts_once_and_drops_retries() {
    let mut s = ProjectState::new(pid());
    let b = batch("s1", 1, vec![inc(Metric::WrittenDataBytes, NOV, NOV + 1000, 500)]);
    assert!(matches!(s.apply(&b, &Retention::default()), ProjectUpdate::Counted { .. }));
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
        ProjectUpdate::Counted { rows, .. } => rows,
        other => panic!("{other:?}"),
    };
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].value, rows[0].last_value, rows[0].last_time_ms), (9, 5, NOV + 30));
    // An older reading arriving later does not move the gauge back.
    s.apply(&batch("s2", 1, vec![gauge(NOV + 1, 100)]), &Retention::default());
    assert_eq!(s.branches.get(""), Some(&Reading { value: 5, time_ms: NOV + 30 }));
}

fn branch_gauge(branch: &str, time_ms: i64, value: u64) -> Event {
    Event { branch_id: Some(branch.into()), ..gauge(time_ms, value) }
}

#[test]
fn each_branch_keeps_its_own_reading_and_the_project_stores_their_sum() {
    let mut s = ProjectState::new(pid());
    let b = batch("s1", 1, vec![branch_gauge("main", NOV + 10, 7), branch_gauge("dev", NOV + 20, 3)]);
    let rows = match s.apply(&b, &Retention::default()) {
        ProjectUpdate::Counted { rows, .. } => rows,
        other => panic!("{other:?}"),
    };
    let per_branch: Vec<(&str, u64)> = rows.iter().map(|r| (r.branch.as_str(), r.last_value)).collect();
    assert_eq!(per_branch, [("dev", 3), ("main", 7)], "one row per branch in the hour");
    // A newer reading of one branch leaves the other's alone.
    s.apply(&batch("s1", 2, vec![branch_gauge("main", NOV + 40, 2)]), &Retention::default());
    assert_eq!(s.totals().storage_bytes(), 5);
    assert_eq!(s.branches.get("dev").map(|r| r.value), Some(3));
}

#[test]
fn a_branch_whose_last_reading_is_zero_is_forgotten_after_the_source_ttl() {
    let r = Retention { cycle_grace_ms: 100 * HOUR_MS, source_ttl_ms: 2 * HOUR_MS };
    let mut s = ProjectState::new(pid());
    let mut b = batch("s1", 1, vec![branch_gauge("gone", NOV + 10, 0), branch_gauge("kept", NOV + 10, 4)]);
    b.ingested_ms = NOV + 20;
    s.apply(&b, &r);
    assert_eq!(s.branches.len(), 2);
    let mut later = batch("s1", 2, vec![branch_gauge("kept", NOV + 3 * HOUR_MS, 4)]);
    later.ingested_ms = NOV + 3 * HOUR_MS;
    s.apply(&later, &r);
    assert_eq!(s.branches.keys().collect::<Vec<_>>(), ["kept"]);
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

fn keyed(mut e: Event, key: &str) -> Event {
    e.idempotency_key = Some(key.into());
    e
}

fn counted_rows(u: ProjectUpdate) -> (u64, u64) {
    match u {
        ProjectUpdate::Counted { rows, duplicate_keys, .. } => (rows.iter().map(|r| r.value).sum(), duplicate_keys),
        other => panic!("{other:?}"),
    }
}

#[test]
fn a_restarted_source_counts_from_one_again_in_a_new_session() {
    let r = Retention::default();
    let mut s = ProjectState::new(pid());
    for seq in 1..=100 {
        s.apply(&batch("node-a", seq, vec![inc(Metric::WrittenDataBytes, NOV, NOV + 1, 1)]), &r);
    }
    // The restart: same source, a new session, batch_seq from 1 again.
    for seq in 1..=5 {
        let mut b = batch("node-a", seq, vec![inc(Metric::WrittenDataBytes, NOV, NOV + 1, 10)]);
        b.session = 2;
        assert!(matches!(s.apply(&b, &r), ProjectUpdate::Counted { .. }));
        assert_eq!(s.apply(&b, &r), ProjectUpdate::Duplicate, "a retry in the new session");
    }
    // A spooled batch of the old session, resent after the restart.
    assert_eq!(s.apply(&batch("node-a", 100, vec![]), &r), ProjectUpdate::Duplicate);
    assert_eq!(s.counters_at(NOV).values[2], 150);
    assert_eq!(s.sources["node-a"].keys().collect::<Vec<_>>(), [&1, &2]);
}

#[test]
fn an_idempotency_key_counts_once_whichever_source_carries_it() {
    let r = Retention::default();
    let mut s = ProjectState::new(pid());
    let e = |k| keyed(inc(Metric::DataTransferBytes, NOV, NOV + 5, 7), k);
    assert_eq!(counted_rows(s.apply(&batch("a", 1, vec![e("k1"), e("k2")]), &r)), (14, 0));
    // Another source, the same keys (and one new, and one twice in the batch).
    assert_eq!(counted_rows(s.apply(&batch("b", 1, vec![e("k2"), e("k3"), e("k3"), e("k1")]), &r)), (7, 3));
    // Keyed-only batches (Neon JSON): no window, the keys alone decide.
    let mut json = batch("http", 0, vec![e("k3"), e("k4")]);
    json.keyed_only = true;
    assert_eq!(counted_rows(s.apply(&json, &r)), (7, 1));
    assert_eq!(counted_rows(s.apply(&json, &r)), (0, 2));
    assert_eq!(s.counters_at(NOV).values[3], 28);
    assert!(!s.sources.contains_key("http"), "keyed-only batches keep no window");
    // The same key in another cycle is another event.
    let dec = keyed(inc(Metric::DataTransferBytes, DEC, DEC + 5, 1), "k1");
    assert_eq!(counted_rows(s.apply(&batch("a", 2, vec![dec]), &r)), (1, 0));
}

#[test]
fn key_sets_expire_with_their_cycle() {
    let r = Retention { cycle_grace_ms: HOUR_MS, source_ttl_ms: 2 * HOUR_MS };
    let mut s = ProjectState::new(pid());
    let mut b = batch("a", 1, vec![keyed(inc(Metric::DataTransferBytes, DEC - 10, DEC - 5, 1), "k")]);
    b.ingested_ms = DEC - 5;
    s.apply(&b, &r);
    assert_eq!(s.keys.len(), 1);
    let mut later = batch("a", 2, vec![inc(Metric::DataTransferBytes, DEC, DEC + 5, 1)]);
    later.ingested_ms = DEC + 2 * HOUR_MS;
    s.apply(&later, &r);
    assert!(s.keys.is_empty());
    assert_eq!(s.expired_keys, [(NOV, 1)]);
}

proptest! {
    /// Events with keys drawn from a small set, delivered by several
    /// sources in any order: each key is counted once, with the value of
    /// its first delivery.
    #[test]
    fn each_key_counts_once(deliveries in proptest::collection::vec((0u8..4, 0u8..30, 1u64..1000), 1..200)) {
        let r = Retention::default();
        let mut s = ProjectState::new(pid());
        let mut first: std::collections::HashMap<u8, u64> = Default::default();
        for (seq, (source, key, value)) in deliveries.into_iter().enumerate() {
            let e = keyed(inc(Metric::WrittenDataBytes, NOV, NOV + 1, value), &format!("key-{key}"));
            first.entry(key).or_insert(value);
            s.apply(&batch(&format!("s{source}"), seq as u64, vec![e]), &r);
        }
        prop_assert_eq!(s.counters_at(NOV).values[2], first.values().sum::<u64>());
    }

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
            if let ProjectUpdate::Counted { rows, .. } = s.apply(&batches[i], &Retention::default()) {
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

#[test]
fn the_legacy_reading_gives_way_to_the_first_newer_branch_reading() {
    let mut s = ProjectState::new(pid());
    s.branches.insert(LEGACY_BRANCH.into(), Reading { value: 50, time_ms: NOV + 100 });
    s.apply(&batch("s1", 1, vec![branch_gauge("main", NOV + 50, 7)]), &Retention::default());
    assert_eq!(s.totals().storage_bytes(), 57, "an older reading does not replace it");
    s.apply(&batch("s1", 2, vec![branch_gauge("main", NOV + 200, 8)]), &Retention::default());
    assert_eq!(s.branches.keys().collect::<Vec<_>>(), ["main"]);
}

fn byte_hours(u: ProjectUpdate) -> Vec<(i64, u64)> {
    match u {
        ProjectUpdate::Counted { byte_hours, .. } => byte_hours,
        other => panic!("{other:?}"),
    }
}

#[test]
fn storage_held_between_readings_is_counted_in_byte_hours_per_hour() {
    let r = Retention::default();
    let mut s = ProjectState::new(pid());
    let min = 60_000;
    assert_eq!(byte_hours(s.apply(&batch("s1", 1, vec![branch_gauge("main", NOV, 3600)]), &r)), [], "opens the span");
    // 90 minutes at 3600 bytes: 5400 byte-hours, 3600 in the first hour, 1800 in the second.
    let b = batch("s1", 2, vec![branch_gauge("main", NOV + 90 * min, 7200), branch_gauge("dev", NOV + 90 * min, 10)]);
    assert_eq!(byte_hours(s.apply(&b, &r)), [(NOV, 3600), (NOV + HOUR_MS, 1800)]);
    // Two readings of one branch in one batch, out of order in it: taken in time order.
    let b = batch("s1", 3, vec![branch_gauge("main", NOV + 120 * min, 0), branch_gauge("main", NOV + 100 * min, 3600)]);
    // 10 min at 7200 (1200) + 20 min at 3600 (1200).
    assert_eq!(byte_hours(s.apply(&b, &r)), [(NOV + HOUR_MS, 2400)]);
    // An older reading arriving late rewrites nothing; a retry counts nothing.
    assert_eq!(byte_hours(s.apply(&batch("s2", 1, vec![branch_gauge("main", NOV + 110 * min, 99)]), &r)), []);
    assert_eq!(s.apply(&b, &r), ProjectUpdate::Duplicate);
    assert_eq!(s.branches.get("main"), Some(&Reading { value: 0, time_ms: NOV + 120 * min }));
    assert_eq!(held_byte_hours(u64::MAX, 2 * HOUR_MS), u64::MAX, "saturates");
}

#[test]
fn the_largest_branch_is_judged_and_the_legacy_reading_never() {
    let mut t = Totals {
        project_id: ProjectId::new("p").unwrap(),
        cycles: SmallMap::default(),
        branches: BranchSizes::default(),
        version: 1,
        last_ingested_ms: 0,
    };
    assert_eq!(t.largest_branch_bytes(), 0);
    t.branches.insert(LEGACY_BRANCH.to_owned(), Reading { value: 900, time_ms: 1 });
    assert_eq!(t.largest_branch_bytes(), 0, "the legacy reading is never enforced on");
    assert_eq!(t.storage_bytes(), 900, "but counts in the project's storage");
    t.branches.insert("main".to_owned(), Reading { value: 300, time_ms: 2 });
    t.branches.insert("dev".to_owned(), Reading { value: 500, time_ms: 2 });
    assert_eq!(t.largest_branch_bytes(), 500);
}

fn adjustment(key: &str, metric: Metric, hour_ms: i64, delta: i64) -> crate::adjust::Adjustment {
    crate::adjust::Adjustment {
        project_id: pid(),
        metric,
        hour_ms,
        cycle_wide: false,
        delta,
        reason: "correction".into(),
        idempotency_key: key.into(),
        actor: "billing".into(),
        created_ms: NOV + 11 * HOUR_MS,
        request_id: "r".into(),
    }
}

#[test]
fn adjustments_move_the_cycle_counter_once_per_key_and_never_below_zero() {
    use crate::adjust::{Adjusted, Refusal};
    let r = Retention::default();
    let mut s = ProjectState::new(pid());
    s.apply(&batch("s1", 1, vec![inc(Metric::ComputeTimeSeconds, NOV, NOV + 1000, 500)]), &r);
    let minus = adjustment("a1", Metric::ComputeTimeSeconds, NOV + 5 * HOUR_MS, -200);
    assert_eq!(s.adjust(&minus, &r, &ClosedCycles::new()), Adjusted::Applied { counter: 300 });
    assert_eq!(s.adjust(&minus, &r, &ClosedCycles::new()), Adjusted::Duplicate, "same key again");
    let too_much = adjustment("a2", Metric::ComputeTimeSeconds, NOV, -301);
    assert_eq!(
        s.adjust(&too_much, &r, &ClosedCycles::new()),
        Adjusted::Refused { refusal: Refusal::BelowZero, counter: 300 }
    );
    assert_eq!(s.adjust(&too_much, &r, &ClosedCycles::new()), Adjusted::Duplicate, "a refused key is remembered too");
    let plus = adjustment("a3", Metric::WrittenDataBytes, NOV + HOUR_MS, 7);
    assert_eq!(s.adjust(&plus, &r, &ClosedCycles::new()), Adjusted::Applied { counter: 7 });
    assert_eq!(s.counters_at(NOV).values, [0, 300, 7, 0]);
    // Its key does not collide with a usage event's key of the same text.
    let mut keyed = inc(Metric::WrittenDataBytes, NOV, NOV + 1000, 5);
    keyed.idempotency_key = Some("a3".into());
    s.apply(&batch("s1", 2, vec![keyed]), &r);
    assert_eq!(s.counters_at(NOV).values, [0, 300, 12, 0]);
    assert_eq!(s.version, 5);
}

#[test]
fn an_adjustment_of_a_forgotten_cycle_is_refused() {
    use crate::adjust::{Adjusted, Refusal};
    let r = Retention::default();
    let mut s = ProjectState::new(pid());
    let mut late = adjustment("old", Metric::ActiveTimeSeconds, NOV - 40 * 24 * HOUR_MS, 10);
    late.created_ms = NOV + 11 * HOUR_MS;
    assert_eq!(
        s.adjust(&late, &r, &ClosedCycles::new()),
        Adjusted::Refused { refusal: Refusal::CycleNotKept, counter: 0 }
    );
    assert!(s.keys.is_empty(), "nothing remembered for a forgotten cycle");
}

#[test]
fn a_closed_cycle_never_changes_and_its_late_counters_move_on() {
    use crate::adjust::{Adjusted, Refusal};
    let r = Retention::default();
    let closed: ClosedCycles = [NOV].into();
    let mut s = ProjectState::new(pid());
    let mut keyed = inc(Metric::ComputeTimeSeconds, DEC - 60_000, DEC - 1000, 50);
    keyed.idempotency_key = Some("k".into());
    s.apply(&batch("s1", 1, vec![keyed.clone()]), &r);
    // After the close: a retry of the keyed event is still a duplicate (judged in November),
    // a new November counter moves to December's first hour, a November reading is left out.
    let late = vec![keyed, inc(Metric::ComputeTimeSeconds, NOV + HOUR_MS, NOV + 2 * HOUR_MS, 7), gauge(NOV + 5, 99)];
    let ProjectUpdate::Counted { rows, duplicate_keys, closed: moved, .. } =
        s.apply_closed(&batch("s1", 2, late), &r, &closed)
    else {
        panic!("counted")
    };
    assert_eq!((duplicate_keys, moved), (1, 2));
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].metric, rows[0].hour_ms, rows[0].value), (Metric::ComputeTimeSeconds, DEC, 7));
    assert_eq!(s.counters_at(NOV).values, [0, 50, 0, 0]);
    assert_eq!(s.counters_at(DEC).values, [0, 7, 0, 0]);
    assert!(s.branches.is_empty(), "the closed cycle's reading is left out");
    // Adjustments of the closed cycle are refused, without using their key.
    let a = adjustment("late", Metric::ComputeTimeSeconds, NOV, -10);
    assert_eq!(s.adjust(&a, &r, &closed), Adjusted::Refused { refusal: Refusal::CycleClosed, counter: 50 });
    assert_eq!(s.adjust(&a, &r, &ClosedCycles::new()), Adjusted::Applied { counter: 40 }, "the key was not used");
}

/// What `hourly_rows_of` computed before its pieces were sorted and merged
/// (one map entry per row): the reference it is held to.
fn hourly_rows_by_map(events: &[Event]) -> Vec<HourlyRow> {
    let mut acc: BTreeMap<(Metric, UnixMs, String), HourlyRow> = BTreeMap::new();
    for e in events {
        match e.span {
            Span::Interval { start_ms, end_ms } => {
                for (hour_ms, v) in split_hours(start_ms, end_ms, e.value) {
                    let row = acc.entry((e.metric, hour_ms, String::new())).or_insert(HourlyRow {
                        metric: e.metric,
                        hour_ms,
                        branch: String::new(),
                        value: 0,
                        last_value: 0,
                        last_time_ms: 0,
                    });
                    row.value = row.value.saturating_add(v);
                }
            }
            Span::Instant { time_ms } => {
                let branch = e.branch_id.clone().unwrap_or_default();
                let (hour_ms, r) = (hour_floor(time_ms), Reading { value: e.value, time_ms });
                let row = acc.entry((e.metric, hour_ms, branch.clone())).or_insert(HourlyRow {
                    metric: e.metric,
                    hour_ms,
                    branch,
                    value: e.value,
                    last_value: e.value,
                    last_time_ms: time_ms,
                });
                row.value = row.value.max(e.value);
                if r.beats(&Reading { value: row.last_value, time_ms: row.last_time_ms }) {
                    (row.last_value, row.last_time_ms) = (e.value, time_ms);
                }
            }
        }
    }
    acc.into_values().collect()
}

proptest! {
    /// Counters over spans of up to three hours and branches' readings, in
    /// any order, with repeated hours, times and values: the same rows, in
    /// the same order, as one map entry per row gives.
    #[test]
    fn hourly_rows_are_the_merged_pieces_of_the_events(
        events in proptest::collection::vec(
            (0usize..5, 0i64..(6 * HOUR_MS), 0i64..(3 * HOUR_MS), 0u64..1_000, 0u8..3),
            0..40,
        ),
    ) {
        let events: Vec<Event> = events
            .into_iter()
            .map(|(m, off, len, value, branch)| {
                // Coarse times, so that readings share hours, times and values.
                let t = NOV + off / 600_000 * 600_000;
                match Metric::ALL[m] {
                    Metric::LogicalSizeBytes => {
                        Event { branch_id: (branch > 0).then(|| format!("br-{branch}")), ..gauge(t, value % 4) }
                    }
                    metric => inc(metric, t, t + len, value),
                }
            })
            .collect();
        prop_assert_eq!(hourly_rows_of(events.iter()), hourly_rows_by_map(&events));
    }
}
