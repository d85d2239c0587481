//! The trail of quota and plan changes (who, when, before and after), kept
//! in Kafka across api restarts, and the actor kept with an adjustment.

use meter_core::auth::TokenHash;
use meter_e2e::Pipeline;
use meter_proto::v1::Metric;
use meter_runtime::Auth;
use serde_json::{json, Value};

use crate::helpers::{inc, report};

fn credentials() -> meter_core::auth::Credentials {
    serde_json::from_value(json!({"api": [
        {"name": "reader", "sha256": TokenHash::of("r-tok").to_hex(), "scopes": ["read"]},
        {"name": "ops", "sha256": TokenHash::of("ops-tok").to_hex(), "scopes": ["manage"]},
        {"name": "billing", "sha256": TokenHash::of("bill-tok").to_hex(), "scopes": ["manage"]},
    ]}))
    .expect("credentials")
}

/// Sends `method` with a token and a request id; the status and JSON body.
async fn call(method: &str, url: &str, token: &str, request_id: &str, body: Option<Value>) -> (u16, Value) {
    let http = reqwest::Client::new();
    let mut req =
        http.request(method.parse().expect("method"), url).bearer_auth(token).header("x-request-id", request_id);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.expect("api reachable");
    (r.status().as_u16(), r.json().await.expect("json"))
}

/// The trail as the api answers it (after a restart too).
async fn check_trail(api: &str, restarted: bool) {
    let (s, h) = call("GET", &format!("{api}/v1/projects/trail-p/quota/history"), "r-tok", "t-6", None).await;
    assert_eq!(s, 200, "{h}");
    let changes = h["changes"].as_array().expect("changes");
    assert_eq!(changes.len(), 2, "restarted {restarted}: {h}");
    assert_eq!((changes[0]["actor"].as_str(), changes[0]["request_id"].as_str()), (Some("billing"), Some("t-4")));
    assert_eq!(changes[0]["before"], json!({"plan": "trail-small", "quota": {}}), "{h}");
    assert_eq!(changes[0]["after"]["quota"]["written_data_bytes"], json!(5000), "{h}");
    assert_eq!((changes[1]["actor"].as_str(), &changes[1]["before"]), (Some("ops"), &Value::Null), "{h}");
    let (s, h) = call("GET", &format!("{api}/v1/plans/trail-small/history"), "r-tok", "t-7", None).await;
    assert_eq!(s, 200, "{h}");
    let changes = h["changes"].as_array().expect("changes");
    let quotas: Vec<_> = changes.iter().map(|c| c["after"]["quota"]["compute_time_seconds"].clone()).collect();
    assert_eq!(quotas, [json!(200), json!(100)], "{h}");
    assert_eq!(changes[0]["before"]["quota"]["compute_time_seconds"], json!(100), "{h}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quota_and_plan_changes_leave_a_trail_that_survives_a_restart() {
    let Some(mut p) = Pipeline::start("trail").await else { return };
    p.start_api_with(Auth::fixed(credentials())).await;
    let api = p.api_url.clone();
    let plan = format!("{api}/v1/plans/trail-small");
    let quota = format!("{api}/v1/projects/trail-p/quota");
    let (s, _) = call("PUT", &plan, "ops-tok", "t-1", Some(json!({"quota": {"compute_time_seconds": 100}}))).await;
    assert_eq!(s, 200);
    let (s, _) = call("PUT", &plan, "bill-tok", "t-2", Some(json!({"quota": {"compute_time_seconds": 200}}))).await;
    assert_eq!(s, 200);
    let (s, _) = call("PUT", &quota, "ops-tok", "t-3", Some(json!({"plan": "trail-small"}))).await;
    assert_eq!(s, 200);
    let patch = Some(json!({"quota": {"written_data_bytes": 5000}}));
    let (s, _) = call("PATCH", &quota, "bill-tok", "t-4", patch).await;
    assert_eq!(s, 200);
    // A refused change leaves nothing.
    let (s, _) = call("PUT", &quota, "ops-tok", "t-5", Some(json!({"plan": "no-such-plan"}))).await;
    assert_eq!(s, 400);

    check_trail(&p.api_url, false).await;
    p.stop_api().await;
    p.start_api_with(Auth::fixed(credentials())).await;
    check_trail(&p.api_url, true).await;
    let (s, _) = call("GET", &format!("{}/v1/plans/nope/history", p.api_url), "r-tok", "t-8", None).await;
    assert_eq!(s, 404);

    // An adjustment keeps the name of the credential that made it.
    let mut client = p.client().await;
    client.report(report("trail-src", 1, vec![inc("trail-p", Metric::ActiveTimeSeconds, 60)])).await.expect("ack");
    let url = format!("{}/v1/projects/trail-p/adjustments", p.api_url);
    let body =
        json!({"metric": "active_time_seconds", "delta": 30, "reason": "missed report", "idempotency_key": "t-k"});
    // The usage is in Kafka before the adjustment, in the same partition: applied first.
    let (s, b) = call("POST", &url, "bill-tok", "t-9", Some(body.clone())).await;
    assert_eq!(s, 201, "{b}");
    assert_eq!((b["actor"].as_str(), b["counter_after"].as_u64()), (Some("billing"), Some(90)), "{b}");
    let (s, _) = call("POST", &url, "r-tok", "t-10", Some(body)).await;
    assert_eq!(s, 403, "a read token cannot adjust");
    p.shutdown().await;
}
