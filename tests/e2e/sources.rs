//! The source contract from outside: restarted sources, idempotency keys
//! from several sources and across a restore, Neon JSON over HTTP, and the
//! client library's spool through an ingest outage and a `kill -9`.

use std::time::Duration;

use meter_e2e::{eventually, Pipeline};
use meter_ingest::IngestConfig;
use meter_proto::v1::{Metric, UsageEvent};
use serde_json::json;

use crate::helpers::{await_usage, inc, records_for, report_in, totals_written, usage_of};

fn keyed(project: &str, key: &str, value: u64) -> UsageEvent {
    UsageEvent { idempotency_key: key.into(), ..inc(project, Metric::WrittenDataBytes, value) }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_source_is_counted_in_its_new_session() {
    let Some(p) = Pipeline::start("restart").await else { return };
    let mut client = p.client().await;
    let (old, new) = (0x1111_u64, 0x2222_u64);
    for seq in 1..=80 {
        client
            .report(report_in("restart-node", old, seq, vec![inc("restart-p", Metric::WrittenDataBytes, 1)]))
            .await
            .expect("ack");
    }
    // The node restarts, remembers nothing, and counts from 1 in a new session.
    for seq in 1..=10 {
        client
            .report(report_in("restart-node", new, seq, vec![inc("restart-p", Metric::WrittenDataBytes, 100)]))
            .await
            .expect("ack");
    }
    // Retries of both sessions (a spool replay, a lost answer) are recognised.
    client
        .report(report_in("restart-node", old, 80, vec![inc("restart-p", Metric::WrittenDataBytes, 1)]))
        .await
        .expect("ack");
    client
        .report(report_in("restart-node", new, 3, vec![inc("restart-p", Metric::WrittenDataBytes, 100)]))
        .await
        .expect("ack");
    // Without a session the batch cannot be judged: refused before the ack.
    let err = client
        .report(report_in("restart-node", 0, 1, vec![inc("restart-p", Metric::WrittenDataBytes, 5000)]))
        .await
        .expect_err("session 0 is refused");
    assert_eq!(err.code(), tonic::Code::FailedPrecondition, "{err}");
    assert!(err.message().starts_with("source_session: is 0"), "{}", err.message());
    await_usage(&p.store, "restart-p", |u| u.written_data_bytes, 80 + 1000, "both sessions counted once").await;
    assert_eq!(totals_written(&p, "restart-p").await, Some(1080));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_counts_once_across_sources_restores_and_json() {
    let Some(mut p) = Pipeline::start("idem").await else { return };
    let mut client = p.client().await;
    let batch = |keys: &[u64]| keys.iter().map(|k| keyed("idem-p", &format!("key-{k}"), 1 << k)).collect::<Vec<_>>();
    client.report(report_in("idem-a", 1, 1, batch(&[0, 1, 2, 3]))).await.expect("ack");
    // Another source carries some of the same keys (and one twice).
    client.report(report_in("idem-b", 9, 1, batch(&[2, 3, 4, 4, 5]))).await.expect("ack");
    await_usage(&p.store, "idem-p", |u| u.written_data_bytes, 0b11_1111, "keys 0..=5 once each").await;
    // The aggregator restarts: the keys come back from the totals topic.
    p.stop_aggregator().await;
    p.start_aggregator();
    client.report(report_in("idem-c", 1, 1, batch(&[0, 5, 6]))).await.expect("ack");
    // And the same keys over Neon JSON, twice (a retried request).
    let events: Vec<serde_json::Value> = [0u64, 6, 7]
        .iter()
        .map(|k| {
            json!({"metric": "written_data_bytes", "type": "incremental", "value": 1u64 << k,
                "start_time": "", "stop_time": "", "idempotency_key": format!("key-{k}"), "project_id": "idem-p"})
        })
        .collect();
    let body = fix_times(json!({ "events": events }));
    for _ in 0..2 {
        let (status, answer) = post_events(&p, &body).await;
        assert_eq!(status, 200, "{answer}");
        assert_eq!(answer["accepted_events"], 3);
    }
    await_usage(&p.store, "idem-p", |u| u.written_data_bytes, 0xff, "keys 0..=7 once each").await;
    eventually(Duration::from_secs(30), "totals topic counts each key once", || async {
        match totals_written(&p, "idem-p").await {
            Some(0xff) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    p.shutdown().await;
}

/// Moves the body's times to the last minute (ingest refuses old events).
fn fix_times(mut body: serde_json::Value) -> serde_json::Value {
    let now = meter_e2e::now_ms();
    let t = |ms: i64| meter_core::cycle::rfc3339(ms);
    for e in body["events"].as_array_mut().expect("events") {
        if e.get("start_time").is_some() {
            e["start_time"] = json!(t(now - 60_000));
            e["stop_time"] = json!(t(now - 1_000));
        }
        if e.get("time").is_some() {
            e["time"] = json!(t(now - 1_000));
        }
    }
    body
}

async fn post_events(p: &Pipeline, body: &serde_json::Value) -> (u16, serde_json::Value) {
    let r = reqwest::Client::new()
        .post(format!("{}/v1/events", p.ingest_http_url))
        .body(body.to_string())
        .header("content-type", "application/json")
        .send()
        .await
        .expect("ingest http reachable");
    (r.status().as_u16(), r.json().await.expect("json answer"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn neon_json_with_duplicates_and_retries_is_counted_exactly() {
    let Some(p) = Pipeline::start("neonjson").await else { return };
    // As Neon's proxy and pageserver send them, plus our project_id.
    let body = fix_times(json!({"events": [
        {"metric": "proxy_io_bytes_per_client", "type": "incremental", "start_time": "", "stop_time": "",
         "idempotency_key": "2026-11-30 10:00:00.1 UTC-1-4019", "value": 1000, "endpoint_id": "ep-1",
         "project_id": "nj-a"},
        {"metric": "proxy_io_bytes_per_client", "type": "incremental", "start_time": "", "stop_time": "",
         "idempotency_key": "2026-11-30 10:00:00.1 UTC-1-4019", "value": 1000, "endpoint_id": "ep-1",
         "project_id": "nj-a"},
        {"metric": "timeline_logical_size", "type": "absolute", "time": "", "idempotency_key": "k-size",
         "value": 4096, "tenant_id": "5d07d9ce", "timeline_id": "tl-1", "project_id": "nj-b"},
        {"metric": "compute_time_seconds", "type": "incremental", "start_time": "", "stop_time": "",
         "idempotency_key": "k-cpu", "value": 60, "project_id": "nj-b"}
    ]}));
    for _ in 0..3 {
        let (status, answer) = post_events(&p, &body).await;
        let records = u64::from(records_for(&["nj-a", "nj-b"], p.kafka.partitions));
        assert_eq!((status, answer["kafka_records"].as_u64()), (200, Some(records)), "{answer}");
    }
    let more = fix_times(json!({"events": [
        {"metric": "data_transfer_bytes", "type": "incremental", "start_time": "", "stop_time": "",
         "idempotency_key": "k-more", "value": 5, "project_id": "nj-a"}]}));
    assert_eq!(post_events(&p, &more).await.0, 200);
    await_usage(&p.store, "nj-a", |u| u.data_transfer_bytes, 1005, "nj-a egress once per key").await;
    await_usage(&p.store, "nj-b", |u| u.compute_time_seconds, 60, "nj-b compute once").await;
    await_usage(&p.store, "nj-b", |u| u.logical_size_bytes, 4096, "nj-b storage").await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_gets_400_naming_the_field_and_changes_nothing() {
    let Some(p) = Pipeline::start("badjson").await else { return };
    let good = json!({"metric": "written_data_bytes", "type": "incremental", "start_time": "", "stop_time": "",
        "idempotency_key": "k", "value": 7, "project_id": "bj-p"});
    let with = |field: &str, v: serde_json::Value| {
        let mut body = fix_times(json!({"events": [good.clone(), good.clone()]}));
        body["events"][1][field] = v;
        body
    };
    let without = |field: &str| {
        let mut e = good.clone();
        e.as_object_mut().expect("object").remove(field);
        fix_times(json!({"events": [good.clone(), e]}))
    };
    let cases = [
        (json!("not an object"), "events"),
        (json!({"events": {}}), "events"),
        (with("metric", json!("synthetic_storage_size")), "events[1].metric"),
        (with("value", json!(-3)), "events[1].value"),
        (with("value", json!("7")), "events[1].value"),
        (with("type", json!("delta")), "events[1].type"),
        (with("project_id", json!("no spaces")), "events[1].project_id"),
        (with("start_time", json!("2026-13-01T00:00:00Z")), "events[1].start_time"),
        (without("idempotency_key"), "events[1].idempotency_key"),
        (without("project_id"), "events[1].project_id"),
    ];
    for (body, field) in cases {
        let (status, answer) = post_events(&p, &body).await;
        assert_eq!(status, 400, "{body}: {answer}");
        assert_eq!(answer["error"]["code"], "invalid_argument", "{answer}");
        assert_eq!(answer["error"]["field"], field, "{body}: {answer}");
        assert!(answer["error"]["message"].as_str().expect("message").starts_with(field), "{answer}");
    }
    let r = reqwest::Client::new()
        .post(format!("{}/v1/events", p.ingest_http_url))
        .body("{\"events\": [")
        .send()
        .await
        .expect("reachable");
    assert_eq!(r.status().as_u16(), 400);
    let answer: serde_json::Value = r.json().await.expect("json");
    assert_eq!(answer["error"]["field"], "body", "{answer}");
    // Only the good request after them is counted.
    let marker = fix_times(json!({"events": [good]}));
    assert_eq!(post_events(&p, &marker).await.0, 200);
    await_usage(&p.store, "bj-p", |u| u.written_data_bytes, 7, "only the good request").await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(usage_of(&p.store, "bj-p").await.map(|u| u.written_data_bytes), Some(7));
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_client_spool_survives_an_ingest_outage_and_kill_9() {
    let Some(mut p) = Pipeline::start("spool").await else { return };
    let Some(meter_report) = meter_e2e::workspace_binary("meter-report", "meter-client") else { return };
    p.stop_ingest().await;
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("http://127.0.0.1:{port}");
    let spool = std::env::temp_dir().join(format!("meter-spool-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&spool);
    let run = |events: u64, value: u64| {
        let mut cmd = tokio::process::Command::new(&meter_report);
        cmd.args(["--ingest", &url, "--source", "spool-node", "--project", "spool-p"])
            .args(["--events", &events.to_string(), "--value", &value.to_string(), "--rate", "20"])
            .arg("--spool")
            .arg(&spool)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        cmd.spawn().expect("meter-report starts")
    };
    // Ingest is down: the node spools 600 events over 30 s and keeps retrying.
    let started = std::time::Instant::now();
    let mut first = run(600, 1);
    let stdout = first.stdout.take().expect("stdout");
    let mut lines = tokio::io::AsyncBufReadExt::lines(tokio::io::BufReader::new(stdout));
    let line = tokio::time::timeout(Duration::from_secs(120), lines.next_line()).await.expect("in time");
    assert_eq!(line.expect("read").as_deref(), Some("spooled 600"));
    // 60 s of outage in all, then kill -9 (no chance to flush anything).
    tokio::time::sleep(Duration::from_secs(60).saturating_sub(started.elapsed())).await;
    first.start_kill().expect("kill -9");
    first.wait().await.expect("killed");
    let spooled = std::fs::read_dir(&spool).expect("spool").count();
    assert!(spooled > 0, "the batches are in the spool");
    // Ingest comes back on the same address; the node restarts on its spool.
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", port)).await.expect("rebind");
    p.start_ingest_on(IngestConfig::default(), meter_runtime::Auth::open(), listener).await;
    let second = run(50, 1000).wait_with_output().await.expect("second run");
    assert!(second.status.success());
    assert_eq!(String::from_utf8_lossy(&second.stdout).trim(), "acked 650", "600 replayed and 50 new events");
    assert_eq!(std::fs::read_dir(&spool).expect("spool").count(), 0, "the spool is empty once acknowledged");
    await_usage(&p.store, "spool-p", |u| u.written_data_bytes, 600 + 50 * 1000, "spooled and new usage, exact").await;
    let _ = std::fs::remove_dir_all(&spool);
    p.shutdown().await;
}
