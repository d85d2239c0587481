//! Corrections with an audit trail, on the real stack: an adjustment is
//! refused below zero (by the API with the numbers, and by the aggregator
//! when it gets past the API), applied once per key, counted by enforcement
//! like usage (a negative one under the quota resumes a suspended project,
//! a positive one over it suspends), and shown in the totals, the HTTP
//! history and the documented billing SQL.

use std::time::Duration;

use meter_core::adjust::{cycle_name, Adjustment};
use meter_core::{Cycle, Metric as M, ProjectId};
use meter_e2e::{eventually, now_ms, Pipeline};
use meter_proto::adjust::adjustment_record;
use meter_proto::v1::{Metric, UsageEvent};
use meter_sim::receivers::ControlPlane;
use serde_json::{json, Value};
use tokio_util::sync::CancellationToken;

use crate::helpers::{api_get, api_put, control_plane_on_loopback, fast_enforcer, inc, report};
use crate::schema_sql::{ch_time, documented_queries, num, query};

/// POSTs an adjustment with `X-Request-ID: request_id`.
async fn post(url: &str, request_id: &str, body: Value) -> (u16, Value) {
    let r = reqwest::Client::new()
        .post(url)
        .header("x-request-id", request_id)
        .json(&body)
        .send()
        .await
        .expect("api reachable");
    (r.status().as_u16(), r.json().await.expect("json answer"))
}

async fn calls(cp: &ControlPlane, verb: &str, n: usize) -> Vec<meter_sim::receivers::ControlPlaneCall> {
    eventually(Duration::from_secs(30), &format!("{n} {verb} calls"), || async {
        let got = cp.calls_of(verb);
        if got.len() >= n {
            Ok(got)
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adjustments_are_counted_like_usage_and_shown_everywhere() {
    let Some(mut p) = Pipeline::start("adjust").await else { return };
    let stop = CancellationToken::new();
    let (cp, cp_url) = control_plane_on_loopback(&stop).await;
    p.start_api().await;
    p.start_enforcer(fast_enforcer(&cp_url)).await;
    let api = p.api_url.clone();
    let (s, _) = api_put(&format!("{api}/v1/plans/adj"), json!({"quota": {"compute_time_seconds": 1000}})).await;
    assert_eq!(s, 200);
    let (s, _) = api_put(&format!("{api}/v1/projects/adj-p/quota"), json!({"plan": "adj"})).await;
    assert_eq!(s, 200);
    let mut client = p.client().await;
    // The usage and its correction in one hour, named: a correction booked
    // in the next hour (the test running across an hour's end) would fall
    // in an hour without usage, shown as 0 there (decision 0009), and the
    // hours would not add up below.
    let hour_ms = now_ms() - now_ms() % 3_600_000;
    let in_hour = |mut e: UsageEvent| {
        e.start_unix_ms = e.start_unix_ms.max(hour_ms);
        e.end_unix_ms = e.end_unix_ms.max(e.start_unix_ms + 1);
        e
    };
    let usage = vec![
        in_hour(inc("adj-p", Metric::ComputeTimeSeconds, 1200)),
        in_hour(inc("adj-p", Metric::WrittenDataBytes, 100)),
    ];
    client.report(report("adj-src", 1, usage)).await.expect("ack");
    let suspend = calls(&cp, "suspend", 1).await;
    assert_eq!(suspend[0].project_id, "adj-p");
    let cycle = cycle_name(Cycle::containing(now_ms()));
    let url = format!("{api}/v1/projects/adj-p/adjustments");
    let status_usage = |metric: &'static str| {
        let api = api.clone();
        async move {
            let (_, b) = api_get(&format!("{api}/v1/projects/adj-p/status")).await;
            b["usage"][metric].as_u64()
        }
    };
    eventually(Duration::from_secs(10), "the api sees the usage", || async {
        match status_usage("compute_time_seconds").await {
            Some(1200) => Ok(()),
            got => Err(format!("{got:?}")),
        }
    })
    .await;

    // Below zero: refused before anything is written, with the numbers.
    let body = json!({"metric": "compute_time_seconds", "delta": -5000, "reason": "too much", "idempotency_key": "k0"});
    let (s, b) = post(&url, "adj-req-0", body).await;
    assert_eq!(s, 422, "{b}");
    assert_eq!(b["error"]["code"], "below_zero");
    assert!(b["error"]["message"].as_str().unwrap_or_default().contains("it is 1200"), "{b}");
    // Bad fields are named.
    let (s, b) = post(
        &url,
        "adj-req-x",
        json!({"metric": "logical_size_bytes", "delta": 1, "reason": "r", "idempotency_key": "kx"}),
    )
    .await;
    assert_eq!(s, 400, "{b}");
    assert!(b["error"]["message"].as_str().unwrap_or_default().starts_with("metric:"), "{b}");

    // Take 300 s away: applied, in the totals, and the project resumes.
    let hour = meter_core::cycle::rfc3339(hour_ms);
    let body = json!({"metric": "compute_time_seconds", "hour": hour, "delta": -300, "reason": "double-counted in incident 42", "idempotency_key": "k1"});
    let (s, first) = post(&url, "adj-req-1", body.clone()).await;
    assert_eq!(s, 201, "{first}");
    assert_eq!((first["status"].as_str(), first["counter_after"].as_u64()), (Some("applied"), Some(900)), "{first}");
    assert_eq!((first["request_id"].as_str(), first["cycle"].as_str()), (Some("adj-req-1"), Some(cycle.as_str())));
    let resume = calls(&cp, "resume", 1).await;
    assert_eq!(resume[0].action.as_ref().map(|a| a.reason.as_str()), Some("usage_adjusted"));
    let (_, check) = api_get(&format!("{api}/v1/projects/adj-p/check")).await;
    assert_eq!(check["allowed"], json!(true), "{check}");
    // A retry answers what the first got; the key for another change is a conflict.
    let (s, again) = post(&url, "adj-req-1b", body).await;
    assert_eq!((s, &again), (200, &first));
    let other = json!({"metric": "compute_time_seconds", "delta": -200, "reason": "double-counted in incident 42", "idempotency_key": "k1"});
    let (s, b) = post(&url, "adj-req-1c", other).await;
    assert_eq!((s, b["error"]["code"].as_str()), (409, Some("conflict")), "{b}");

    // A cycle-wide addition to another counter.
    let body = json!({"metric": "written_data_bytes", "cycle": cycle, "delta": 50, "reason": "egress of a migration", "idempotency_key": "k2"});
    let (s, b) = post(&url, "adj-req-2", body).await;
    assert_eq!((s, b["counter_after"].as_u64(), b["cycle_wide"].as_bool()), (201, Some(150), Some(true)), "{b}");

    // The aggregator decides: one written past the API's check is refused there, and listed so.
    let sneaky = Adjustment {
        project_id: ProjectId::new("adj-p").unwrap(),
        metric: M::ComputeTimeSeconds,
        hour_ms: now_ms() - now_ms() % 3_600_000,
        cycle_wide: false,
        delta: -2000,
        reason: "written directly".into(),
        idempotency_key: "k3".into(),
        actor: "test".into(),
        created_ms: now_ms() + 1,
        request_id: "direct".into(),
    };
    let events = meter_kafka::EventProducer::new(&p.kafka).expect("producer");
    let partitions = events.partitions().await.expect("partitions");
    events.send_all(&[adjustment_record(&sneaky, partitions)]).await.expect("written");
    let list = eventually(Duration::from_secs(20), "the refusal listed", || async {
        let (_, b) = api_get(&url).await;
        let items = b["adjustments"].as_array().cloned().unwrap_or_default();
        if items.len() == 3 {
            Ok(items)
        } else {
            Err(b.to_string())
        }
    })
    .await;
    let keys: Vec<_> = list.iter().map(|a| a["idempotency_key"].as_str().unwrap_or_default()).collect();
    assert_eq!(keys, ["k3", "k2", "k1"], "newest first");
    assert_eq!((list[0]["status"].as_str(), list[0]["refusal"].as_str()), (Some("refused"), Some("below_zero")));
    assert_eq!(list[0]["counter_after"].as_u64(), Some(900), "a refusal leaves the counter");
    assert_eq!(list[2]["reason"], "double-counted in incident 42");

    // Totals, as the status (and enforcement) read them.
    assert_eq!(status_usage("compute_time_seconds").await, Some(900));
    assert_eq!(status_usage("written_data_bytes").await, Some(150));
    // History from ClickHouse, once the load role has caught up.
    let month = Cycle::containing(now_ms());
    let (from, to) = (meter_core::cycle::rfc3339(month.start_ms), meter_core::cycle::rfc3339(month.end_ms));
    let monthly = format!("{api}/v1/projects/adj-p/consumption_history?from={from}&to={to}&granularity=monthly");
    let frame = eventually(Duration::from_secs(60), "history with the adjustments", || async {
        let (_, b) = api_get(&monthly).await;
        let f = b["consumption"][0].clone();
        if f["compute_time_seconds"] == json!(900) && f["written_data_bytes"] == json!(150) {
            Ok(f)
        } else {
            Err(b.to_string())
        }
    })
    .await;
    assert_eq!(frame["adjusted"], json!(true), "{frame}");
    let hourly = format!(
        "{api}/v1/projects/adj-p/consumption_history?from={}&to={}&granularity=hourly",
        meter_core::cycle::rfc3339(now_ms() - now_ms() % 3_600_000 - 3_600_000),
        meter_core::cycle::rfc3339(now_ms() - now_ms() % 3_600_000 + 3_600_000),
    );
    let (_, b) = api_get(&hourly).await;
    let hours: u64 =
        b["consumption"].as_array().expect("frames").iter().filter_map(|f| f["compute_time_seconds"].as_u64()).sum();
    assert_eq!(hours, 900, "the hours add up: {b}");
    // The documented billing SQL.
    let sql = documented_queries()["invoice_lines"]
        .replace("meter.", &format!("{}.", p.store_cfg.database))
        .replace("'2026-11-01 00:00:00'", "{month_start}")
        .replace("'2026-12-01 00:00:00'", &ch_time(month.end_ms))
        .replace("{month_start}", &ch_time(month.start_ms));
    let rows = query(&p, &sql).await;
    let line = rows.iter().find(|r| r[0] == json!("adj-p")).expect("an invoice line");
    assert_eq!((num(&line[2]), num(&line[3])), (900, 150), "{line:?}");

    // A positive adjustment over the quota suspends again.
    let body = json!({"metric": "compute_time_seconds", "delta": 200, "reason": "usage lost in incident 43", "idempotency_key": "k4"});
    let (s, b) = post(&url, "adj-req-4", body).await;
    assert_eq!((s, b["counter_after"].as_u64()), (201, Some(1100)), "{b}");
    calls(&cp, "suspend", 2).await;
    stop.cancel();
    p.shutdown().await;
}
