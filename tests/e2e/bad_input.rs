//! Bad input is refused with INVALID_ARGUMENT naming the field, nothing of
//! the refused batch is counted, and good batches around it are.

use std::time::Duration;

use meter_e2e::{eventually, now_ms, Pipeline};
use meter_proto::v1::{Kind, Metric, UsageEvent};
use tonic::Code;

use crate::helpers::{inc, report, usage_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_are_refused_whole_and_good_ones_still_count() {
    let Some(p) = Pipeline::start("bad").await else { return };
    let mut client = p.client().await;
    let good = || inc("bad-victim", Metric::ActiveTimeSeconds, 1);
    let now = now_ms();
    let cases: Vec<(&str, Vec<UsageEvent>, &str)> = vec![
        ("unknown metric", vec![good(), UsageEvent { metric: 9, ..good() }], "events[1].metric: unknown metric code 9"),
        (
            "end before start",
            vec![UsageEvent { start_unix_ms: now, end_unix_ms: now - 1, ..good() }],
            "events[0].end_unix_ms",
        ),
        (
            "too far in the future",
            vec![good(), UsageEvent { start_unix_ms: now, end_unix_ms: now + 3_600_000, ..good() }],
            "events[1].end_unix_ms",
        ),
        (
            "too far in the past",
            vec![UsageEvent { start_unix_ms: now - 30 * 86_400_000, ..good() }],
            "events[0].start_unix_ms",
        ),
        ("bad project id", vec![UsageEvent { project_id: "a b".into(), ..good() }], "events[0].project_id"),
        (
            "counter sent as a gauge",
            vec![UsageEvent { kind: Kind::Absolute as i32, time_unix_ms: now, ..good() }],
            "events[0].kind",
        ),
        ("value too large", vec![UsageEvent { value: u64::MAX, ..good() }], "events[0].value"),
        ("oversized batch", (0..10_001).map(|_| good()).collect(), "events: batch has 10001 events"),
    ];
    let mut seq = 1;
    for (what, events, expected) in cases {
        // A good batch from another source before each bad one.
        client
            .report(report("bad-good-src", seq, vec![inc("bad-good", Metric::ComputeTimeSeconds, 10)]))
            .await
            .expect("good batch acked");
        let err = client.report(report("bad-src", seq, events)).await.expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(err.message().contains(expected), "{what}: message {:?} lacks {expected:?}", err.message());
        seq += 1;
    }
    let err = client.report(report("", 1, vec![good()])).await.expect_err("empty source");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("source_id: "), "{}", err.message());

    let expected = 10 * (seq - 1);
    eventually(Duration::from_secs(60), "the good batches are counted", || async {
        let got = usage_of(&p.store, "bad-good").await.map(|u| u.compute_time_seconds);
        if got == Some(expected) {
            Ok(())
        } else {
            Err(format!("{got:?} != {expected}"))
        }
    })
    .await;
    assert_eq!(usage_of(&p.store, "bad-victim").await, None, "an event of a refused batch was counted");
    assert!(!p.totals().await.contains_key("bad-victim"));
    p.shutdown().await;
}
