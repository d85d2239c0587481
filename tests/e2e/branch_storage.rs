//! Per-branch storage, Neon's semantics, on the real stack: the storage
//! quota applies to each branch; the branch over it is write-blocked (one
//! `block_writes` call on the control-plane double), the other branch and
//! the project's computes are not; alerts name the branch; raising the
//! quota unblocks it; the project's storage is the sum of its branches'.

use std::time::Duration;

use meter_core::enforce::AlertType;
use meter_e2e::{eventually, now_ms, Pipeline};
use meter_proto::v1::{Kind, Metric, UsageEvent};
use meter_sim::receivers::{FailMode, WebhookReceiver};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    api_get, api_put, control_plane_on_loopback, fast_enforcer, inc, receiver_on_loopback, report, usage_of, SECRET,
};

const PROJECT: &str = "brs-p";

fn size(branch: &str, value: u64) -> UsageEvent {
    UsageEvent {
        project_id: PROJECT.into(),
        branch_id: branch.into(),
        metric: Metric::LogicalSizeBytes as i32,
        kind: Kind::Absolute as i32,
        value,
        time_unix_ms: now_ms(),
        ..Default::default()
    }
}

/// `(verb, branch)` of every call the control plane received.
fn calls(cp: &meter_sim::receivers::ControlPlane) -> Vec<(String, Option<String>)> {
    cp.calls_for(PROJECT).into_iter().map(|c| (c.verb, c.branch_id)).collect()
}

async fn wait_calls(cp: &meter_sim::receivers::ControlPlane, n: usize) {
    eventually(Duration::from_secs(30), "control-plane calls", || async {
        let got = calls(cp);
        if got.len() >= n {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_over_the_storage_quota_is_write_blocked_and_nothing_else() {
    let Some(mut p) = Pipeline::start("branches").await else { return };
    let stop = CancellationToken::new();
    let (cp, cp_url) = control_plane_on_loopback(&stop).await;
    let hooks = WebhookReceiver::new(SECRET, FailMode::Never);
    let hook_url = receiver_on_loopback(&hooks, &stop).await;
    p.start_api().await;
    p.start_enforcer(fast_enforcer(&cp_url)).await;
    let api = p.api_url.clone();
    let (s, body) = api_put(
        &format!("{api}/v1/projects/{PROJECT}/quota"),
        json!({"plan": null, "quota": {"logical_size_bytes": 1000, "compute_time_seconds": 1000}}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let (s, body) = api_put(&format!("{api}/v1/webhooks/brs-hook"), json!({"url": hook_url, "secret": SECRET})).await;
    assert_eq!(s, 200, "{body}");

    let mut client = p.client().await;
    let events = vec![size("br-main", 1200), size("br-dev", 300), inc(PROJECT, Metric::ComputeTimeSeconds, 10)];
    client.report(report("brs-src", 1, events)).await.expect("ack");
    wait_calls(&cp, 1).await;
    let blocked = cp.calls_for(PROJECT);
    assert_eq!(calls(&cp), [("block_writes".to_owned(), Some("br-main".to_owned()))]);
    let key = blocked[0].idempotency_key.clone();
    assert!(key.starts_with("block_writes.brs-p.") && key.contains("br-main"), "{key}");

    // The project runs on: CheckQuota allows computes; its status shows each branch.
    let (_, check) = api_get(&format!("{api}/v1/projects/{PROJECT}/check")).await;
    assert_eq!(check["allowed"], json!(true), "{check}");
    let (_, status) = api_get(&format!("{api}/v1/projects/{PROJECT}/status")).await;
    assert_eq!(status["state"], json!("active"), "{status}");
    assert_eq!(status["usage"]["logical_size_bytes"], json!(1500), "the project's storage is the sum: {status}");
    let branches: Vec<(String, u64, bool)> = status["branches"]
        .as_array()
        .expect("branches")
        .iter()
        .map(|b| {
            let id = b["branch_id"].as_str().expect("id").to_owned();
            (id, b["logical_size_bytes"].as_u64().expect("size"), b["writes_blocked"].as_bool().expect("flag"))
        })
        .collect();
    assert_eq!(branches, [("br-dev".to_owned(), 300, false), ("br-main".to_owned(), 1200, true)]);

    // Alerts name the branch.
    eventually(Duration::from_secs(30), "the block's webhook", || async {
        let named: Vec<(AlertType, Option<String>)> = hooks
            .accepted()
            .iter()
            .filter_map(|d| d.payload.as_ref())
            .map(|w| (w.kind, w.data.branch_id.clone()))
            .collect();
        if named.contains(&(AlertType::BranchWritesBlocked, Some("br-main".into())))
            && named.contains(&(AlertType::QuotaExceeded, Some("br-main".into())))
            && !named.iter().any(|(_, b)| b.as_deref() == Some("br-dev"))
        {
            Ok(())
        } else {
            Err(format!("{named:?}"))
        }
    })
    .await;

    // Exactly once: the branch growing further, and the other branch
    // growing under the quota, call nothing.
    client.report(report("brs-src", 2, vec![size("br-main", 1300), size("br-dev", 400)])).await.expect("ack");
    eventually(Duration::from_secs(30), "the new readings counted", || async {
        let (_, s) = api_get(&format!("{api}/v1/projects/{PROJECT}/status")).await;
        if s["usage"]["logical_size_bytes"] == json!(1700) {
            Ok(())
        } else {
            Err(s["usage"].to_string())
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(calls(&cp).len(), 1, "one block per crossing: {:?}", calls(&cp));

    // Raising the quota unblocks the branch, once, with the derived key.
    let url = format!("{api}/v1/projects/{PROJECT}/quota");
    let res = reqwest::Client::new()
        .patch(&url)
        .header("content-type", "application/merge-patch+json")
        .body(json!({"quota": {"logical_size_bytes": 5000}}).to_string())
        .send()
        .await
        .expect("api");
    assert_eq!(res.status(), 200);
    wait_calls(&cp, 2).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let all = cp.calls_for(PROJECT);
    assert_eq!(calls(&cp)[1], ("unblock_writes".to_owned(), Some("br-main".to_owned())));
    assert_eq!(all.len(), 2, "{:?}", calls(&cp));
    assert_eq!(all[1].idempotency_key, key.replacen("block_writes.", "unblock_writes.", 1));
    let (_, status) = api_get(&format!("{api}/v1/projects/{PROJECT}/status")).await;
    assert!(status["branches"].as_array().expect("branches").iter().all(|b| b["writes_blocked"] == json!(false)));

    // ClickHouse: the project's storage is the sum of each branch's latest reading.
    eventually(Duration::from_secs(30), "ClickHouse has both branches", || async {
        match usage_of(&p.store, PROJECT).await {
            Some(u) if u.logical_size_bytes == 1700 => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    stop.cancel();
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_branch_id_that_is_not_an_id_is_refused_by_name() {
    let Some(p) = Pipeline::start("branchids").await else { return };
    let mut client = p.client().await;
    let bad = UsageEvent { project_id: "brs-bad".into(), ..size("br/../x", 5) };
    let err = client.report(report("brs-src", 1, vec![bad])).await.expect_err("refused");
    assert_eq!(err.code(), tonic::Code::InvalidArgument);
    assert!(err.message().contains("events[0].branch_id"), "{}", err.message());
    p.shutdown().await;
}

/// The byte-hours of `readings` (branch, time, size) in the hour starting
/// at `hour`, computed directly: each branch holds a reading's size until
/// its next reading; byte-milliseconds in the hour over 3,600,000.
fn held_in_hour(readings: &[(&str, i64, u64)], hour: i64) -> u64 {
    let mut byte_ms: u128 = 0;
    for branch in ["br-main", "br-dev"] {
        let mine: Vec<_> = readings.iter().filter(|r| r.0 == branch).collect();
        for pair in mine.windows(2) {
            let (from, to) = (pair[0].1.max(hour), pair[1].1.min(hour + 3_600_000));
            if to > from {
                byte_ms += u128::from(pair[0].2) * (to - from) as u128;
            }
        }
    }
    (byte_ms / 3_600_000) as u64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn storage_held_is_counted_in_byte_hours_exactly_from_the_readings() {
    let Some(mut p) = Pipeline::start("bytehours").await else { return };
    p.start_api().await;
    let api = p.api_url.clone();
    let (min, hour) = (60_000, 3_600_000);
    let h = now_ms() / hour * hour - 3 * hour;
    let readings = [
        ("br-main", h, 3600),
        ("br-dev", h + 30 * min, 1200),
        ("br-main", h + 90 * min, 7200),
        ("br-main", h + 120 * min, 0),
        ("br-dev", h + 150 * min, 1200),
    ];
    let mut client = p.client().await;
    for (seq, (branch, t, v)) in readings.iter().enumerate() {
        let e = UsageEvent { project_id: "brs-bh".into(), time_unix_ms: *t, ..size(branch, *v) };
        client.report(report("brs-bh-src", seq as u64 + 1, vec![e])).await.expect("ack");
    }
    let want: Vec<u64> = (0..3).map(|i| held_in_hour(&readings, h + i * hour)).collect();
    assert_eq!(want, [4200, 6600, 600], "the readings as chosen");
    let (from, to) = (meter_core::cycle::rfc3339(h), meter_core::cycle::rfc3339(h + 3 * hour));
    let q = format!("from={from}&to={to}&granularity=hourly&metrics=logical_size_bytes_hour");
    eventually(Duration::from_secs(30), "byte-hours in /v1 history", || async {
        let (_, b) = api_get(&format!("{api}/v1/projects/brs-bh/consumption_history?{q}")).await;
        let got: Vec<u64> = b["consumption"]
            .as_array()
            .map(|a| a.iter().filter_map(|f| f["logical_size_bytes_hour"].as_u64()).collect())
            .unwrap_or_default();
        if got == want {
            Ok(())
        } else {
            Err(format!("got {got:?}, want {want:?}: {b}"))
        }
    })
    .await;
    // Neon's surface answers the same under Neon's name.
    let (status, b) = api_get(&format!("{api}/api/v2/consumption_history/projects?project_ids=brs-bh&{q}")).await;
    assert_eq!(status, 200, "{b}");
    let got: Vec<u64> = b["projects"][0]["periods"]
        .as_array()
        .expect("periods")
        .iter()
        .flat_map(|period| period["consumption"].as_array().expect("consumption").clone())
        .map(|f| f["logical_size_bytes_hour"].as_u64().expect("asked for"))
        .collect();
    assert_eq!(got, want, "{b}");
    // ClickHouse: the project's byte-hours over all time.
    let u = usage_of(&p.store, "brs-bh").await.expect("rows");
    assert_eq!(u.logical_size_bytes_hour, want.iter().sum::<u64>());
    p.shutdown().await;
}
