//! Quotas, suspension, CheckQuota, resumption and alerts, on the real stack
//! with real HTTP receivers standing for the control plane and a webhook
//! consumer.

use std::collections::BTreeMap;
use std::time::Duration;

use meter_core::cycle::Cycle;
use meter_core::enforce::AlertType;
use meter_e2e::{eventually, now_ms, Pipeline};
use meter_enforcer::sign;
use meter_proto::v1::{Kind, Metric, UsageEvent};
use meter_sim::receivers::{ControlPlane, FailMode, WebhookReceiver};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::helpers::{api_get, api_put, fast_enforcer, inc, on_loopback, report, SECRET};

/// `(type, threshold)` of every alert accepted, in order.
/// The alerts a receiver accepted, in a fixed order: deliveries of one
/// endpoint run side by side, so events decided together may arrive in any
/// order (each carries its `occurred_at`).
fn alerts(r: &WebhookReceiver) -> Vec<(AlertType, Option<u8>)> {
    let mut v: Vec<_> =
        r.accepted().iter().filter_map(|d| d.payload.as_ref()).map(|p| (p.kind, p.data.threshold)).collect();
    v.sort_by_key(|(k, t)| (AlertType::ALL.iter().position(|x| x == k), *t));
    v
}

async fn wait_alerts(r: &WebhookReceiver, n: usize) {
    eventually(Duration::from_secs(30), "alerts delivered", || async {
        let got = alerts(r);
        if got.len() >= n {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
    // Nothing more arrives behind them.
    tokio::time::sleep(Duration::from_millis(800)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crossings_alert_once_suspend_once_and_resume() {
    let Some(mut p) = Pipeline::start("enforce").await else { return };
    let stop = CancellationToken::new();
    let cp = ControlPlane::default();
    let cp_url = on_loopback({
        let (cp, s) = (cp.clone(), stop.clone());
        move |l| cp.serve(l, s)
    })
    .await;
    let hooks = WebhookReceiver::new(SECRET, FailMode::Never);
    let hook_url = on_loopback({
        let (h, s) = (hooks.clone(), stop.clone());
        move |l| h.serve(l, s)
    })
    .await;
    p.start_api().await;
    p.start_enforcer(fast_enforcer(&cp_url)).await;
    let api = p.api_url.clone();

    let (s, _) = api_put(
        &format!("{api}/v1/plans/small"),
        json!({"quota": {"compute_time_seconds": 1000, "logical_size_bytes": 1_000_000}}),
    )
    .await;
    assert_eq!(s, 200);
    let (s, _) = api_put(&format!("{api}/v1/projects/enf-p/quota"), json!({"plan": "small"})).await;
    assert_eq!(s, 200);
    let (s, body) = api_put(&format!("{api}/v1/webhooks/hook-a"), json!({"url": hook_url, "secret": SECRET})).await;
    assert_eq!(s, 200, "{body}");
    assert!(!body.to_string().contains("MfKQ9r8GKY"), "the secret is echoed: {body}");

    let mut client = p.client().await;
    let mut seq = 0;
    let mut send = |events: Vec<UsageEvent>| {
        seq += 1;
        report("enf-src", seq, events)
    };
    let size = UsageEvent {
        project_id: "enf-p".into(),
        metric: Metric::LogicalSizeBytes as i32,
        kind: Kind::Absolute as i32,
        value: 100,
        time_unix_ms: now_ms(),
        ..Default::default()
    };
    client.report(send(vec![inc("enf-p", Metric::ComputeTimeSeconds, 500), size])).await.expect("ack");
    wait_alerts(&hooks, 1).await;
    assert_eq!(alerts(&hooks), [(AlertType::ThresholdReached, Some(50))]);
    client.report(send(vec![inc("enf-p", Metric::ComputeTimeSeconds, 300)])).await.expect("ack");
    wait_alerts(&hooks, 2).await;
    client.report(send(vec![inc("enf-p", Metric::ComputeTimeSeconds, 100)])).await.expect("ack");
    wait_alerts(&hooks, 3).await;
    assert!(cp.calls_of("suspend").is_empty(), "suspended under quota");
    client.report(send(vec![inc("enf-p", Metric::ComputeTimeSeconds, 150)])).await.expect("ack");
    wait_alerts(&hooks, 6).await;
    assert_eq!(
        alerts(&hooks),
        [
            (AlertType::ThresholdReached, Some(50)),
            (AlertType::ThresholdReached, Some(80)),
            (AlertType::ThresholdReached, Some(90)),
            (AlertType::ThresholdReached, Some(100)),
            (AlertType::QuotaExceeded, None),
            (AlertType::ProjectSuspended, None),
        ]
    );
    eventually(Duration::from_secs(10), "one suspend call", || async {
        if cp.calls_of("suspend").len() == 1 {
            Ok(())
        } else {
            Err(format!("{:?}", cp.calls_of("suspend")))
        }
    })
    .await;
    // Every delivery verifies, and a tampered body does not.
    let d = &hooks.accepted()[0];
    assert!(d.verified);
    let mut tampered = d.body.clone();
    tampered[10] ^= 1;
    assert!(sign::verify(SECRET, &d.id, d.timestamp, &tampered, &d.signature, d.timestamp, 300).is_err());

    eventually(Duration::from_secs(10), "CheckQuota denies", || async {
        let (_, b) = api_get(&format!("{api}/v1/projects/enf-p/check")).await;
        if b["allowed"] == json!(false) {
            Ok(())
        } else {
            Err(b.to_string())
        }
    })
    .await;
    let mut quota_client = meter_proto::v1::quota_client::QuotaClient::new(
        tonic::transport::Endpoint::from_shared(p.api_grpc_url.clone()).expect("url").connect_lazy(),
    );
    let grpc = quota_client
        .check_quota(meter_proto::v1::CheckQuotaRequest { project_id: "enf-p".into() })
        .await
        .expect("grpc CheckQuota")
        .into_inner();
    assert_eq!(
        (grpc.allowed, grpc.reason.as_str(), grpc.metric.as_str()),
        (false, "suspended", "compute_time_seconds")
    );
    let unknown =
        quota_client.check_quota(meter_proto::v1::CheckQuotaRequest { project_id: "never-seen".into() }).await;
    assert_eq!(unknown.expect_err("unknown project").code(), tonic::Code::NotFound);
    let (_, status) = api_get(&format!("{api}/v1/projects/enf-p/status")).await;
    assert_eq!(status["state"], "suspended", "{status}");
    assert_eq!(status["suspension"]["metric"], "compute_time_seconds");
    assert_eq!(status["usage"]["compute_time_seconds"], 1050);

    // Restart the enforcer in the middle, with more usage: no second suspend, no duplicate alert.
    p.stop_enforcer().await;
    client.report(send(vec![inc("enf-p", Metric::ComputeTimeSeconds, 10)])).await.expect("ack");
    p.start_enforcer(fast_enforcer(&cp_url)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(cp.calls_of("suspend").len(), 1, "a second suspend after restart");
    assert_eq!(alerts(&hooks).len(), 6, "alerts after restart: {:?}", alerts(&hooks));

    // Raising the quota resumes once and resolves the thresholds.
    let (s, _) = api_put(
        &format!("{api}/v1/projects/enf-p/quota"),
        json!({"plan": "small", "quota": {"compute_time_seconds": 100000}}),
    )
    .await;
    assert_eq!(s, 200);
    wait_alerts(&hooks, 11).await;
    let after: Vec<_> = alerts(&hooks);
    let resolved: Vec<_> = after.iter().filter(|a| a.0 == AlertType::ThresholdResolved).map(|a| a.1).collect();
    assert_eq!(resolved, [Some(50), Some(80), Some(90), Some(100)]);
    assert!(after.contains(&(AlertType::ProjectResumed, None)));
    eventually(Duration::from_secs(10), "one resume call", || async {
        if cp.calls_of("resume").len() == 1 {
            Ok(())
        } else {
            Err(format!("{:?}", cp.calls_of("resume")))
        }
    })
    .await;
    let (_, b) = api_get(&format!("{api}/v1/projects/enf-p/check")).await;
    assert_eq!(b["allowed"], json!(true), "{b}");

    // Back under the old quota: suspended again; then a new cycle resumes it,
    // resets the counters and keeps logical_size_bytes.
    let (s, _) = api_put(&format!("{api}/v1/projects/enf-p/quota"), json!({"plan": "small"})).await;
    assert_eq!(s, 200);
    eventually(Duration::from_secs(15), "suspended again", || async {
        if cp.calls_of("suspend").len() == 2 {
            Ok(())
        } else {
            Err(format!("{:?}", cp.calls_of("suspend")))
        }
    })
    .await;
    let next_cycle = Cycle::containing(now_ms()).end_ms + 3_600_000;
    p.clock.jump_to(next_cycle);
    eventually(Duration::from_secs(15), "resumed by the new cycle", || async {
        let resumes = cp.calls_of("resume");
        match resumes.get(1).and_then(|c| c.action.as_ref()) {
            Some(a) if a.reason == "new_cycle" => Ok(()),
            _ => Err(format!("{resumes:?}")),
        }
    })
    .await;
    let (_, status) = api_get(&format!("{api}/v1/projects/enf-p/status")).await;
    assert_eq!(status["state"], "active", "{status}");
    assert_eq!(status["usage"]["compute_time_seconds"], 0, "{status}");
    assert_eq!(status["usage"]["logical_size_bytes"], 100, "{status}");
    assert!(
        status["consumption_period_start"].as_str().unwrap_or_default().starts_with("2026-12")
            || next_cycle > 1_796_083_200_000
    );

    // Each idempotency key reached the control plane once; every alert id once.
    let keys: Vec<String> = cp.calls.lock().unwrap().iter().map(|c| c.idempotency_key.clone()).collect();
    let mut unique = keys.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(keys.len(), unique.len(), "{keys:?}");
    let mut per_id: BTreeMap<String, usize> = BTreeMap::new();
    for d in hooks.accepted() {
        *per_id.entry(d.id).or_default() += 1;
    }
    assert!(per_id.values().all(|&n| n == 1), "{per_id:?}");
    stop.cancel();
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_quota_requests_get_4xx_naming_the_problem() {
    let Some(mut p) = Pipeline::start("quota_api").await else { return };
    p.start_api().await;
    let api = p.api_url.clone();
    let cases = [
        ("/v1/projects/q-1/quota", json!({"quota": {"compute_time_seconds": -5}}), "compute_time_seconds"),
        ("/v1/projects/q-1/quota", json!({"quota": {"compute_time_seconds": 1.5}}), "compute_time_seconds"),
        ("/v1/projects/q-1/quota", json!({"quota": {"cpu_seconds": 1}}), "unknown field `cpu_seconds`"),
        ("/v1/projects/q-1/quota", json!({"plan": "nope"}), "plan: unknown plan"),
        ("/v1/projects/bad%20id/quota", json!({"plan": null}), "project_id"),
        ("/v1/projects/q-1/quota", json!({"quota": {"compute_time_seconds": 5}}), "missing field `plan`"),
        ("/v1/plans/p1", json!({"thresholds": [0]}), "thresholds"),
        ("/v1/webhooks/w1", json!({"url": "ftp://x", "secret": SECRET}), "url"),
        ("/v1/webhooks/w1", json!({"url": "http://127.0.0.1:1/", "secret": "plain"}), "secret"),
    ];
    for (path, body, expected) in cases {
        let (s, b) = api_put(&format!("{api}{path}"), body.clone()).await;
        assert_eq!(s, 400, "{path} {body}: {b}");
        let msg = b["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(expected), "{path} {body}: {msg:?} lacks {expected:?}");
    }
    let r = reqwest::Client::new()
        .put(format!("{api}/v1/projects/q-1/quota"))
        .header("content-type", "application/json")
        .body("{\"quota\": ")
        .send()
        .await
        .expect("api");
    assert_eq!(r.status(), 400);
    assert_eq!(r.json::<serde_json::Value>().await.expect("json")["error"]["code"], "invalid_json");
    for path in ["/v1/projects/never-seen/status", "/v1/projects/never-seen/check", "/v1/projects/never-seen/quota"] {
        let (s, b) = api_get(&format!("{api}{path}")).await;
        assert_eq!(s, 404, "{path}: {b}");
        assert!(b["error"]["message"].as_str().unwrap_or_default().contains("never-seen"));
    }
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_patch_merges_and_every_answer_carries_a_request_id() {
    let Some(mut p) = Pipeline::start("quota_patch").await else { return };
    p.start_api().await;
    let api = p.api_url.clone();
    let http = reqwest::Client::new();
    let (s, b) = api_put(
        &format!("{api}/v1/plans/mid"),
        json!({"quota": {"compute_time_seconds": 500, "written_data_bytes": 900}}),
    )
    .await;
    assert_eq!(s, 200, "{b}");
    let url = format!("{api}/v1/projects/pq-1/quota");
    let patch = |body: serde_json::Value| {
        let req = http.patch(&url).header("content-type", "application/merge-patch+json").body(body.to_string());
        async move {
            let r = req.send().await.expect("api");
            (r.status().as_u16(), r.json::<serde_json::Value>().await.expect("json"))
        }
    };
    // Each patch keeps what it does not name.
    let (s, b) = patch(json!({"plan": "mid"})).await;
    assert_eq!((s, &b["plan"], &b["quota"]["compute_time_seconds"]), (200, &json!("mid"), &json!(500)), "{b}");
    let (s, b) = patch(json!({"quota": {"compute_time_seconds": 50, "data_transfer_bytes": 0}})).await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(b["plan"], "mid", "{b}");
    assert_eq!(b["overrides"], json!({"compute_time_seconds": 50, "data_transfer_bytes": 0}), "{b}");
    assert_eq!(b["quota"]["compute_time_seconds"], 50, "{b}");
    assert_eq!(b["quota"]["written_data_bytes"], 900, "the plan's limit stays: {b}");
    // null drops one override: the plan's limit applies again.
    let (_, b) = patch(json!({"quota": {"compute_time_seconds": null}})).await;
    assert_eq!(b["overrides"], json!({"data_transfer_bytes": 0}), "{b}");
    assert_eq!(b["quota"]["compute_time_seconds"], 500, "{b}");
    // What a later GET reads is what the patches made.
    let got: serde_json::Value = http.get(&url).send().await.expect("api").json().await.expect("json");
    assert_eq!((&got["plan"], &got["overrides"]), (&b["plan"], &b["overrides"]), "{got}");
    let (_, b) = patch(json!({"plan": null, "quota": null})).await;
    assert_eq!(
        (&b["plan"], &b["overrides"], &b["quota"]["written_data_bytes"]),
        (&json!(null), &json!({}), &json!(0)),
        "{b}"
    );
    // Refused patches change nothing and name the field.
    for (body, expected) in [
        (json!({"plan": "nope"}), "plan: unknown plan"),
        (json!({"quota": {"cpu": 1}}), "unknown field `cpu`"),
        (json!({"quota": {"written_data_bytes": -1}}), "written_data_bytes"),
    ] {
        let (s, b) = patch(body.clone()).await;
        assert_eq!(s, 400, "{body}: {b}");
        assert!(b["error"]["message"].as_str().unwrap_or_default().contains(expected), "{body}: {b}");
    }

    // Request ids: the caller's is echoed and written into the error body;
    // without one (or with one that is not visible ASCII), a UUID is made.
    let r = http
        .get(format!("{api}/v1/projects/never-seen/status"))
        .header("x-request-id", "trace-42")
        .send()
        .await
        .expect("api");
    assert_eq!(r.headers()["x-request-id"], "trace-42");
    let b: serde_json::Value = r.json().await.expect("json");
    assert_eq!((&b["error"]["code"], &b["error"]["request_id"]), (&json!("not_found"), &json!("trace-42")), "{b}");
    for given in [None, Some("has space")] {
        let mut req = http.put(&url).json(&json!({"quota": {}}));
        if let Some(g) = given {
            req = req.header("x-request-id", g);
        }
        let r = req.send().await.expect("api");
        assert_eq!(r.status(), 400);
        let id = r.headers()["x-request-id"].to_str().expect("ascii").to_owned();
        assert_eq!(id.len(), 36, "{id}");
        let b: serde_json::Value = r.json().await.expect("json");
        assert_eq!(b["error"]["request_id"], id.as_str(), "{b}");
        assert!(b["error"]["message"].as_str().unwrap_or_default().contains("missing field `plan`"), "{b}");
    }
    // A served path with a method it does not take: a JSON 405, with the id.
    let r = http.delete(&url).header("x-request-id", "del-1").send().await.expect("api");
    assert_eq!(r.status(), 405);
    let b: serde_json::Value = r.json().await.expect("json");
    assert_eq!(
        (&b["error"]["code"], &b["error"]["request_id"]),
        (&json!("method_not_allowed"), &json!("del-1")),
        "{b}"
    );
    let ok = http.get(&url).header("x-request-id", "ok-1").send().await.expect("api");
    assert_eq!((ok.status().as_u16(), ok.headers()["x-request-id"].to_str().ok()), (200, Some("ok-1")));
    p.shutdown().await;
}

/// A part of the enforce role (enforcer, actuator, dispatcher) that fails
/// ends the role with its error, the other parts stopped: the role used to
/// wait for all three, so a process whose enforcer had failed lived on
/// deciding nothing (the long cluster chaos run found it). The actuator is
/// made to fail here (no concurrency), the others run fine.
#[tokio::test]
async fn a_failing_part_ends_the_enforce_role_with_its_error() {
    let Some(mut p) = Pipeline::start("enfpart").await else { return };
    let cfg = meter_enforcer::EnforcerConfig { actuator_concurrency: 0, ..fast_enforcer("http://127.0.0.1:9") };
    p.start_enforcer(cfg).await;
    let ended = p.enforcer_ended(Duration::from_secs(60)).await.expect("the role ended, not only its actuator");
    let err = format!("{:#}", ended.expect_err("the actuator's failure"));
    assert!(err.contains("actuator failed") && err.contains("actuator_concurrency"), "{err}");
    p.shutdown().await;
}
