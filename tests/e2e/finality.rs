//! Final timeframes: an hour is final once its end plus the late-event
//! horizon has passed and the probes written after that reached ClickHouse
//! behind the rows before them; the history says so per timeframe, and
//! `GET /v1/watermark` says how far.

use std::time::Duration;

use meter_core::cycle::{parse_rfc3339, rfc3339};
use meter_e2e::{eventually, now_ms, Pipeline};
use meter_proto::v1::Metric;
use serde_json::Value;

use crate::helpers::{api_get, inc, report};

const HOUR: i64 = 3_600_000;

/// The `final` flag of every timeframe of one project's hourly history
/// around now (real time), and the range's `final_before`.
async fn flags(api: &str) -> (Vec<bool>, Value) {
    let now = now_ms();
    let (from, to) = (rfc3339(now - now % HOUR - 2 * HOUR), rfc3339(now - now % HOUR + HOUR));
    let url = format!("{api}/v1/projects/fin-p/consumption_history?from={from}&to={to}&granularity=hourly");
    let (s, b) = api_get(&url).await;
    assert_eq!(s, 200, "{b}");
    let frames = b["consumption"].as_array().expect("frames");
    assert!(!frames.is_empty(), "{b}");
    (
        frames.iter().map(|f| f["final"].as_bool().expect("every timeframe says final or not")).collect(),
        b["final_before"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_timeframe_turns_final_once_the_late_event_horizon_has_passed() {
    let Some(mut p) = Pipeline::start("final").await else { return };
    p.start_api().await;
    let api = p.api_url.clone();
    let mut client = p.client().await;
    client.report(report("fin-src", 1, vec![inc("fin-p", Metric::ComputeTimeSeconds, 60)])).await.expect("ack");

    // Probes reach ClickHouse: the watermark is a week and a bit behind them.
    let w = eventually(Duration::from_secs(30), "the watermark", || async {
        let (_, w) = api_get(&format!("{api}/v1/watermark")).await;
        if w["loaded_through"].is_string() {
            Ok(w)
        } else {
            Err(w.to_string())
        }
    })
    .await;
    assert_eq!(w["late_event_horizon_seconds"], 7 * 24 * 3600, "{w}");
    let loaded = parse_rfc3339(w["loaded_through"].as_str().unwrap()).unwrap();
    let final_before = parse_rfc3339(w["final_before"].as_str().expect("final_before")).unwrap();
    assert!(loaded > now_ms() - 60_000 && loaded <= now_ms(), "{w}");
    assert_eq!(final_before % HOUR, 0, "{w}");
    assert!(final_before <= loaded - 7 * 24 * HOUR - 60_000 && final_before > loaded - 7 * 24 * HOUR - 2 * HOUR, "{w}");
    let (now_flags, _) = flags(&api).await;
    assert_eq!(now_flags, [false, false, false], "nothing of the last hours is final yet");

    // Eight days later (the api's clock, which writes the probes): final.
    p.clock.jump_to(now_ms() + 8 * 24 * HOUR);
    let (later, final_before) = eventually(Duration::from_secs(30), "the hours final", || async {
        let (f, before) = flags(&api).await;
        if f.iter().all(|x| *x) {
            Ok((f, before))
        } else {
            Err(format!("{f:?} {before}"))
        }
    })
    .await;
    assert_eq!(later.len(), 3);
    let before = final_before.as_str().and_then(parse_rfc3339).unwrap_or_else(|| panic!("{final_before}"));
    assert!(before > now_ms(), "{final_before}");
    // Usage is unchanged by becoming final.
    let (_, b) = api_get(&format!(
        "{api}/v1/projects/fin-p/consumption_history?from={}&to={}&granularity=monthly&metrics=compute_time_seconds",
        rfc3339(now_ms() - 40 * 24 * HOUR),
        rfc3339(now_ms() + HOUR)
    ))
    .await;
    let total: u64 =
        b["consumption"].as_array().unwrap().iter().filter_map(|f| f["compute_time_seconds"].as_u64()).sum();
    assert_eq!(total, 60, "{b}");
    p.shutdown().await;
}

/// `project`'s counter `i` in the cycle containing `t`, from the totals topic.
async fn counter(p: &Pipeline, project: &str, t: i64, i: usize) -> u64 {
    p.totals().await.get(project).map_or(0, |s| s.counters_at(t).values[i])
}

/// An INCREMENTAL compute event of `value` over the minute starting at `start`.
fn compute_at(start: i64, value: u64) -> meter_proto::v1::UsageEvent {
    meter_proto::v1::UsageEvent {
        project_id: "cl-p".into(),
        metric: Metric::ComputeTimeSeconds as i32,
        kind: meter_proto::v1::Kind::Incremental as i32,
        value,
        start_unix_ms: start,
        end_unix_ms: start + 60_000,
        ..Default::default()
    }
}

/// Waits until cl-p's compute is 100 in `last` and `want` in `this`.
async fn moved(p: &Pipeline, last: meter_core::Cycle, this: meter_core::Cycle, want: u64) {
    eventually(Duration::from_secs(30), "late usage in this month", || async {
        let (l, t) = (counter(p, "cl-p", last.start_ms, 1).await, counter(p, "cl-p", this.start_ms, 1).await);
        if (l, t) == (100, want) {
            Ok(())
        } else {
            Err(format!("last month {l}, this month {t}"))
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_closed_cycle_never_changes_whatever_arrives_after() {
    use meter_core::adjust::{cycle_name, Adjustment};
    use meter_core::{Cycle, ProjectId};

    let Some(mut p) = Pipeline::start("closing").await else { return };
    // A 40-day late-event horizon, so last month's usage is accepted whatever today's date.
    let horizon_s = 40 * 86_400;
    p.start_ingest(meter_ingest::IngestConfig { max_past_seconds: horizon_s, ..Default::default() }).await;
    let api_cfg = meter_api::ApiConfig { late_horizon_seconds: horizon_s, ..Default::default() };
    p.start_api_config(api_cfg.clone(), meter_runtime::Auth::open()).await;
    let api = p.api_url.clone();
    let this = Cycle::containing(now_ms());
    let last = Cycle::containing(this.start_ms - 1);
    let (name, cycle_url) = (cycle_name(last), format!("{api}/v1/cycles/{}", cycle_name(last)));
    let mut client = p.client().await;
    client.report(report("cl-src", 1, vec![compute_at(last.end_ms - 2 * HOUR, 100)])).await.expect("ack");
    eventually(Duration::from_secs(30), "last month counted", || async {
        match counter(&p, "cl-p", last.start_ms, 1).await {
            100 => Ok(()),
            n => Err(n.to_string()),
        }
    })
    .await;

    // Not final yet: not closable (nor is this month).
    let v = eventually(Duration::from_secs(30), "the api", || async {
        let r = reqwest::get(&cycle_url).await.map_err(|e| e.to_string())?;
        r.json::<Value>().await.map_err(|e| e.to_string())
    })
    .await;
    assert_eq!((v["final"].as_bool(), v["closed"].as_bool()), (Some(false), Some(false)), "{v}");
    let http = reqwest::Client::new();
    let close = |url: String| {
        let http = http.clone();
        async move {
            let r = http.post(format!("{url}/close")).send().await.expect("api");
            (r.status().as_u16(), r.json::<Value>().await.expect("json"))
        }
    };
    let (s, b) = close(cycle_url.clone()).await;
    assert_eq!(s, 409, "{b}");
    assert!(b["error"]["message"].as_str().unwrap_or_default().contains("not final yet"), "{b}");
    assert_eq!(close(format!("{api}/v1/cycles/{}", cycle_name(this))).await.0, 409);

    // Past the horizon (the api's clock writes the probes): final, then closed.
    p.clock.jump_to(now_ms() + 45 * 24 * HOUR);
    eventually(Duration::from_secs(30), "last month final", || async {
        let (_, v) = api_get(&cycle_url).await;
        if v["final"] == true {
            Ok(())
        } else {
            Err(v.to_string())
        }
    })
    .await;
    let (s, b) = close(cycle_url.clone()).await;
    assert_eq!((s, b["closed"].as_bool()), (201, Some(true)), "{b}");
    assert_eq!(close(cycle_url.clone()).await.0, 200, "closing again");

    // Adjustments of it are refused: by the api, and by the aggregator for one written past it.
    let adjust_url = format!("{api}/v1/projects/cl-p/adjustments");
    let body = serde_json::json!({"metric": "compute_time_seconds", "cycle": name, "delta": -10, "reason": "r", "idempotency_key": "cl-1"});
    let r = http.post(&adjust_url).json(&body).send().await.expect("api");
    let (s, b) = (r.status().as_u16(), r.json::<Value>().await.expect("json"));
    assert_eq!((s, b["error"]["code"].as_str()), (422, Some("cycle_closed")), "{b}");
    let direct = Adjustment {
        project_id: ProjectId::new("cl-p").unwrap(),
        metric: meter_core::Metric::ComputeTimeSeconds,
        hour_ms: last.start_ms,
        cycle_wide: true,
        delta: 5,
        reason: "written directly".into(),
        idempotency_key: "cl-2".into(),
        actor: "test".into(),
        created_ms: now_ms(),
        request_id: "direct".into(),
    };
    let events = meter_kafka::EventProducer::new(&p.kafka).expect("producer");
    let partitions = events.partitions().await.expect("partitions");
    events.send_all(&[meter_proto::adjust::adjustment_record(&direct, partitions)]).await.expect("written");
    eventually(Duration::from_secs(20), "the aggregator's refusal", || async {
        let (_, b) = api_get(&adjust_url).await;
        let a = &b["adjustments"][0];
        if a["refusal"] == "cycle_closed" {
            Ok(())
        } else {
            Err(b.to_string())
        }
    })
    .await;

    // Late usage of it (accepted by ingest's long horizon) is counted in this month, before
    // and after an aggregator restart (which restores the close from the totals topic).
    client.report(report("cl-src", 2, vec![compute_at(last.end_ms - HOUR, 30)])).await.expect("ack");
    moved(&p, last, this, 30).await;
    p.stop_aggregator().await;
    p.start_aggregator();
    client.report(report("cl-src", 3, vec![compute_at(last.end_ms - HOUR, 12)])).await.expect("ack");
    moved(&p, last, this, 42).await;
    // ClickHouse agrees: last month unchanged, this month's first hour holds the late usage.
    let monthly = format!(
        "{api}/v1/projects/cl-p/consumption_history?from={}&to={}&granularity=monthly&metrics=compute_time_seconds",
        rfc3339(last.start_ms),
        rfc3339(this.end_ms)
    );
    eventually(Duration::from_secs(60), "history of both months", || async {
        let (_, b) = api_get(&monthly).await;
        let got: Vec<_> = b["consumption"]
            .as_array()
            .map(|a| a.iter().map(|f| f["compute_time_seconds"].clone()).collect())
            .unwrap_or_default();
        if got == [serde_json::json!(100), serde_json::json!(42)] {
            Ok(())
        } else {
            Err(b.to_string())
        }
    })
    .await;
    p.shutdown().await;
}
