//! Delivery isolation on the real stack: a receiver that hangs never delays
//! another endpoint's alerts; control-plane answers are classified (a 404
//! for one project holds nobody else, a 503 with `Retry-After` is retried);
//! a call not answered before a restart of the enforce role is made after
//! it; endpoints can be tested, disabled, deleted and resent to, are
//! disabled when they fail for too long, and a delivery's schedule survives
//! a restart of the enforce role.

use std::time::Duration;

use meter_e2e::{eventually, Pipeline};
use meter_proto::v1::Metric;
use meter_sim::receivers::{Answer, ControlPlane, FailMode, WebhookReceiver};
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    api_get, api_post, api_put, control_plane_on_loopback, fast_enforcer, inc, receiver_on_loopback, report, SECRET,
};

/// Sets a plan with a compute quota of 1000 s and puts `projects` on it.
async fn small_plan(api: &str, projects: &[&str]) {
    let (s, b) = api_put(&format!("{api}/v1/plans/small"), json!({"quota": {"compute_time_seconds": 1000}})).await;
    assert_eq!(s, 200, "{b}");
    for p in projects {
        let (s, b) = api_put(&format!("{api}/v1/projects/{p}/quota"), json!({"plan": "small"})).await;
        assert_eq!(s, 200, "{b}");
    }
}

async fn endpoint(api: &str, id: &str, url: &str) {
    let (s, b) = api_put(&format!("{api}/v1/webhooks/{id}"), json!({"url": url, "secret": SECRET})).await;
    assert_eq!(s, 200, "{b}");
}

/// Runs meterctl against the api; its text output.
async fn meterctl(api: &str, args: &[&str]) -> String {
    let mut out = Vec::new();
    let mut all = vec!["meterctl", "--api", api];
    all.extend_from_slice(args);
    meterctl::run(all, &mut out).await.unwrap_or_else(|e| panic!("meterctl {args:?}: {e:#}"));
    String::from_utf8(out).expect("utf-8")
}

async fn deliveries(api: &str, endpoint: &str, query: &str) -> Vec<Value> {
    let (s, b) = api_get(&format!("{api}/v1/webhooks/{endpoint}/deliveries?limit=100&{query}")).await;
    assert_eq!(s, 200, "{b}");
    b["deliveries"].as_array().cloned().unwrap_or_default()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_receiver_never_delays_a_healthy_one() {
    let Some(mut p) = Pipeline::start("iso").await else { return };
    let stop = CancellationToken::new();
    let (_cp, cp_url) = control_plane_on_loopback(&stop).await;
    let healthy = WebhookReceiver::new(SECRET, FailMode::Never);
    let hanging = WebhookReceiver::new(SECRET, FailMode::Hang);
    let healthy_url = receiver_on_loopback(&healthy, &stop).await;
    let hanging_url = receiver_on_loopback(&hanging, &stop).await;
    p.start_api().await;
    let api = p.api_url.clone();
    let projects: Vec<String> = (0..6).map(|i| format!("iso-p{i}")).collect();
    small_plan(&api, &projects.iter().map(String::as_str).collect::<Vec<_>>()).await;
    // The hanging endpoint first: a dispatcher working one event at a
    // time would wait for it before every healthy delivery.
    endpoint(&api, "a-hanging", &hanging_url).await;
    endpoint(&api, "b-healthy", &healthy_url).await;
    let cfg = meter_enforcer::EnforcerConfig {
        webhook_timeout_ms: 3000,
        webhook_endpoint_concurrency: 2,
        webhook_schedule_ms: vec![0, 100, 100, 100, 100],
        ..fast_enforcer(&cp_url)
    };
    p.start_enforcer(cfg).await;

    // Each project crosses 50, 80, 90 and 100 % (6 events each: 36 in all).
    let mut client = p.client().await;
    for (i, id) in projects.iter().enumerate() {
        let r = report("iso-src", i as u64 + 1, vec![inc(id, Metric::ComputeTimeSeconds, 1200)]);
        client.report(r).await.expect("ack");
    }
    let want = projects.len() * 6;
    eventually(Duration::from_secs(60), "the healthy receiver has every alert", || async {
        let got = healthy.accepted().len();
        if got >= want {
            Ok(())
        } else {
            Err(format!("{got} of {want}"))
        }
    })
    .await;
    // ...while the hanging endpoint has not even used up its first attempts:
    // its deliveries are still pending, each waiting on its own.
    let pending = deliveries(&api, "a-hanging", "state=pending").await;
    assert!(pending.len() >= want - 2, "the hanging endpoint's deliveries: {} pending of {want}", pending.len());
    let dead = deliveries(&api, "a-hanging", "state=dead").await;
    assert!(dead.is_empty(), "nothing of the hanging endpoint is finished yet: {dead:?}");
    // The api's view of the deliveries follows the receiver's 200s by a
    // Kafka round trip.
    eventually(Duration::from_secs(10), "the api lists every healthy delivery", || async {
        let n = deliveries(&api, "b-healthy", "state=delivered").await.len();
        if n == want {
            Ok(())
        } else {
            Err(format!("{n} of {want}"))
        }
    })
    .await;
    let healthy_list = deliveries(&api, "b-healthy", "state=delivered").await;
    assert_eq!(healthy_list.len(), want);
    assert!(healthy_list.iter().all(|d| d["attempts"][0]["status"] == 200), "{healthy_list:?}");
    stop.cancel();
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_plane_answers_are_classified() {
    let Some(mut p) = Pipeline::start("cpclass").await else { return };
    meter_runtime::metrics_handle(); // the recorder, before the enforcer counts
    let stop = CancellationToken::new();
    let (cp, cp_url): (ControlPlane, String) = control_plane_on_loopback(&stop).await;
    cp.always("cp-unknown", 404);
    cp.script(
        "cp-busy",
        &[
            Answer { status: 503, retry_after_s: Some(1), as_date: false },
            Answer { status: 429, retry_after_s: Some(2), as_date: true },
        ],
    );
    p.start_api().await;
    let api = p.api_url.clone();
    let projects = ["cp-unknown", "cp-busy", "cp-ok-1", "cp-ok-2"];
    small_plan(&api, &projects).await;
    p.start_enforcer(fast_enforcer(&cp_url)).await;
    let mut client = p.client().await;
    for (i, id) in projects.iter().enumerate() {
        let r = report("cp-src", i as u64 + 1, vec![inc(id, Metric::ComputeTimeSeconds, 1500)]);
        client.report(r).await.expect("ack");
    }
    // The others are suspended although one project's call is refused.
    eventually(Duration::from_secs(30), "every project's suspend call answered", || async {
        let done: Vec<&str> = projects
            .iter()
            .copied()
            .filter(|id| cp.calls_for(id).iter().any(|c| c.status != 503 && c.status != 429))
            .collect();
        if done.len() == projects.len() {
            Ok(())
        } else {
            Err(format!("{:?}", cp.calls.lock().expect("calls")))
        }
    })
    .await;
    // 404: made once, not retried, and visible in the project's status.
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(cp.calls_for("cp-unknown").len(), 1, "a 404 is not retried: {:?}", cp.calls_for("cp-unknown"));
    let (_, status) = api_get(&format!("{api}/v1/projects/cp-unknown/status")).await;
    assert_eq!(status["control_plane"]["outcome"], "failed", "{status}");
    assert_eq!(status["control_plane"]["status"], 404, "{status}");
    // 503 with `Retry-After: 1`, then 429 with the HTTP-date 2 s ahead, then
    // 200: three calls, 1 s and then 2 s apart at least (the backoff alone
    // would retry within 100 ms).
    let busy = cp.calls_for("cp-busy");
    assert_eq!(busy.iter().map(|c| c.status).collect::<Vec<_>>(), [503, 429, 200]);
    let gaps: Vec<i64> = busy.windows(2).map(|p| p[1].received_ms - p[0].received_ms).collect();
    assert!(gaps[0] >= 1000 && gaps[1] >= 2000, "Retry-After honoured in both forms: {gaps:?}");
    assert!(busy.iter().all(|c| c.idempotency_key == busy[0].idempotency_key), "same key on every retry");
    let (_, status) = api_get(&format!("{api}/v1/projects/cp-busy/status")).await;
    assert_eq!(
        (status["control_plane"]["outcome"].clone(), status["control_plane"]["attempts"].clone()),
        (json!("ok"), json!(3))
    );
    let metrics = meter_runtime::metrics_handle().render();
    assert!(
        metrics.lines().any(|l| l.starts_with("meter_enforcer_control_plane_failed_total{kind=\"suspend\"}") && !l.ends_with(" 0")),
        "the refused call is counted"
    );
    stop.cancel();
    p.shutdown().await;
}

/// The enforcer hands each committed call to the actuator next to it
/// (in process, not waiting for the actions topic); the call's record is
/// still the durable copy, committed only once the call is done. Stopped
/// while the control plane fails a call, the enforce role makes it again
/// after its restart, with the same key, until it is answered; a call
/// answered before the stop is not made again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_call_not_answered_before_a_restart_is_made_after_it() {
    let Some(mut p) = Pipeline::start("cpagain").await else { return };
    meter_runtime::metrics_handle(); // the recorder, before the actuator counts
    let stop = CancellationToken::new();
    let (cp, cp_url) = control_plane_on_loopback(&stop).await;
    cp.always("again-busy", 503);
    p.start_api().await;
    let api = p.api_url.clone();
    let projects = ["again-busy", "again-done"];
    // In partitions of their own: a partition's offset is committed up to
    // its first call not done, so a call behind the busy one in the same
    // partition would be made again after the restart (allowed, same key).
    let part = |id| meter_core::partition::partition_of(id, p.kafka.partitions);
    assert_ne!(part(projects[0]), part(projects[1]));
    small_plan(&api, &projects).await;
    p.start_enforcer(fast_enforcer(&cp_url)).await;
    let mut client = p.client().await;
    for (i, id) in projects.iter().enumerate() {
        let r = report("again-src", i as u64 + 1, vec![inc(id, Metric::ComputeTimeSeconds, 1500)]);
        client.report(r).await.expect("ack");
    }
    eventually(Duration::from_secs(30), "one call answered, the busy one retried", || async {
        let done = cp.calls_for("again-done").iter().any(|c| c.status == 200);
        let busy = cp.calls_for("again-busy").len();
        if done && busy >= 2 {
            Ok(())
        } else {
            Err(format!("{:?}", cp.calls.lock().expect("calls")))
        }
    })
    .await;
    let handed = meter_runtime::metrics_handle().render();
    assert!(
        handed.lines().any(|l| l.starts_with("meter_enforcer_call_received_seconds_count{via=\"handoff\"}") && !l.ends_with(" 0")),
        "the calls were handed over in process"
    );
    // Long enough for the answered call's offset commit (asynchronous) to land.
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.stop_enforcer().await;
    let done_calls = cp.calls_for("again-done").len();
    cp.answer_ok("again-busy");
    p.start_enforcer(fast_enforcer(&cp_url)).await;
    eventually(Duration::from_secs(30), "the busy call answered after the restart", || async {
        let busy = cp.calls_for("again-busy");
        if busy.iter().any(|c| c.status == 200) {
            Ok(())
        } else {
            Err(format!("{busy:?}"))
        }
    })
    .await;
    let busy = cp.calls_for("again-busy");
    assert!(busy.iter().all(|c| c.idempotency_key == busy[0].idempotency_key), "one call, one key: {busy:?}");
    assert!(busy.iter().all(|c| c.verb == "suspend"), "{busy:?}");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(cp.calls_for("again-done").len(), done_calls, "a call answered before the stop is not made again");
    stop.cancel();
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn endpoints_are_tested_disabled_deleted_and_resent_across_restarts() {
    let Some(mut p) = Pipeline::start("life").await else { return };
    let stop = CancellationToken::new();
    let (_cp, cp_url) = control_plane_on_loopback(&stop).await;
    let main = WebhookReceiver::new(SECRET, FailMode::Never);
    let flaky = WebhookReceiver::new(SECRET, FailMode::Always);
    let doomed = WebhookReceiver::new(SECRET, FailMode::Always);
    let main_url = receiver_on_loopback(&main, &stop).await;
    let flaky_url = receiver_on_loopback(&flaky, &stop).await;
    let doomed_url = receiver_on_loopback(&doomed, &stop).await;
    p.start_api().await;
    let api = p.api_url.clone();
    small_plan(&api, &["life-p1", "life-p2"]).await;
    endpoint(&api, "main", &main_url).await;
    endpoint(&api, "flaky", &flaky_url).await;
    endpoint(&api, "doomed", &doomed_url).await;
    let cfg = |disable_after_ms| meter_enforcer::EnforcerConfig {
        webhook_schedule_ms: vec![0, 2000, 2000, 2000, 2000, 2000, 2000],
        webhook_disable_after_ms: disable_after_ms,
        ..fast_enforcer(&cp_url)
    };
    p.start_enforcer(cfg(3_600_000)).await;

    // Test: a signed webhook.test event reaches the endpoint.
    let (s, sent) = api_post(&format!("{api}/v1/webhooks/main/test"), json!({})).await;
    assert_eq!(s, 202, "{sent}");
    assert!(meterctl(&api, &["webhooks", "test", "main"]).await.starts_with("sent test_"));
    eventually(Duration::from_secs(20), "the test event arrives", || async {
        let got = main.accepted().iter().any(|d| d.id == sent["event_id"].as_str().unwrap_or_default());
        got.then_some(()).ok_or("not yet".to_string())
    })
    .await;

    // A failing endpoint's delivery keeps its schedule across a restart.
    let mut client = p.client().await;
    client.report(report("life-src", 1, vec![inc("life-p1", Metric::ComputeTimeSeconds, 600)])).await.expect("ack");
    eventually(Duration::from_secs(20), "a first failed attempt to flaky", || async {
        let d = deliveries(&api, "flaky", "state=pending").await;
        (d.len() == 1 && d[0]["attempt_count"] == 1).then_some(()).ok_or(format!("{d:?}"))
    })
    .await;
    p.stop_enforcer().await;
    flaky.set_mode(FailMode::Never);
    p.start_enforcer(cfg(3_600_000)).await;
    eventually(Duration::from_secs(20), "delivered on its second attempt", || async {
        let d = deliveries(&api, "flaky", "").await;
        let ok = d.len() == 1 && d[0]["state"] == "delivered" && d[0]["attempt_count"] == 2;
        ok.then_some(()).ok_or(format!("{d:?}"))
    })
    .await;
    let event = deliveries(&api, "flaky", "").await[0]["event_id"].clone();
    assert!(flaky.all().iter().all(|d| json!(d.id) == event), "one webhook-id on every attempt");

    // Disabled (with meterctl): gets nothing; its delivery is a dead letter;
    // resent once enabled.
    let shown = meterctl(&api, &["webhooks", "disable", "main"]).await;
    assert!(shown.contains("main") && shown.contains("true"), "{shown}");
    let before = main.accepted().len();
    client.report(report("life-src", 2, vec![inc("life-p2", Metric::ComputeTimeSeconds, 600)])).await.expect("ack");
    let dead = eventually(Duration::from_secs(20), "a dead letter for the disabled endpoint", || async {
        let d = deliveries(&api, "main", "state=dead&project_id=life-p2").await;
        d.first().cloned().ok_or(format!("{d:?}"))
    })
    .await;
    assert_eq!(dead["reason"], "endpoint disabled", "{dead}");
    assert_eq!(main.accepted().len(), before, "a disabled endpoint gets nothing");
    p.stop_enforcer().await;
    p.start_enforcer(cfg(3_600_000)).await;
    meterctl(&api, &["webhooks", "enable", "main"]).await;
    let id = dead["id"].as_str().expect("id");
    let listed = meterctl(&api, &["webhooks", "deliveries", "main", "--state", "dead"]).await;
    assert!(listed.contains(id), "{listed}");
    let resent = meterctl(&api, &["webhooks", "resend", "main", id]).await;
    assert!(resent.contains(id), "{resent}");
    eventually(Duration::from_secs(20), "the resent delivery arrives", || async {
        let got = main.accepted().iter().any(|d| json!(d.id) == dead["event_id"]);
        got.then_some(()).ok_or("not yet".to_string())
    })
    .await;
    let (_, letters) = api_get(&format!("{api}/v1/webhooks/dead-letters")).await;
    assert!(!letters.to_string().contains(id), "a resent dead letter leaves the list: {letters}");

    // Failing continuously for longer than allowed: disabled by the dispatcher.
    p.stop_enforcer().await;
    p.start_enforcer(cfg(1500)).await;
    eventually(Duration::from_secs(30), "the failing endpoint is disabled", || async {
        let (_, b) = api_get(&format!("{api}/v1/webhooks")).await;
        let w = b["webhooks"].as_array().and_then(|a| a.iter().find(|w| w["id"] == "doomed").cloned());
        match w {
            Some(w) if w["disabled"] == true && w["disabled_reason"].is_string() => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let (_, b) = api_get(&format!("{api}/v1/webhooks")).await;
    assert!(
        b["webhooks"].as_array().expect("list").iter().all(|w| w["id"] == "doomed" || w["disabled"] == false),
        "{b}"
    );

    // Deleted: gone from the list, its deliveries no longer listed.
    meterctl(&api, &["webhooks", "delete", "doomed"]).await;
    let (s, _) = api_get(&format!("{api}/v1/webhooks/doomed/deliveries")).await;
    assert_eq!(s, 404);
    p.stop_enforcer().await;
    p.start_enforcer(cfg(3_600_000)).await;
    let (_, b) = api_get(&format!("{api}/v1/webhooks")).await;
    let ids: Vec<&str> = b["webhooks"].as_array().expect("list").iter().filter_map(|w| w["id"].as_str()).collect();
    assert_eq!(ids, ["flaky", "main"], "deleted for good");
    stop.cancel();
    p.shutdown().await;
}
