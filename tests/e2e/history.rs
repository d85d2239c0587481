//! Consumption history over HTTP: every timeframe of every project equals
//! the simulator's ground truth (hourly, daily, monthly, per project, by
//! page and fleet-wide), also with per-batch rows written twice and in an
//! older version, and bad parameters get a 400 naming them.

use std::time::Duration;

use meter_core::cycle::{parse_rfc3339, rfc3339};
use meter_core::Metric;
use meter_e2e::{eventually, Pipeline};
use meter_sim::Truth;
use serde_json::Value;

use crate::fleet::simulated_fleet;
use crate::helpers::api_get;

/// Checks every timeframe of one project's `consumption` against the truth.
fn check_project(truth: &Truth, project: &str, consumption: &Value, metrics: &[Metric]) -> Result<(), String> {
    let frames = consumption.as_array().ok_or("consumption is not an array")?;
    for f in frames {
        let start = parse_rfc3339(f["timeframe_start"].as_str().ok_or("no timeframe_start")?).ok_or("bad start")?;
        let end = parse_rfc3339(f["timeframe_end"].as_str().ok_or("no timeframe_end")?).ok_or("bad end")?;
        for m in Metric::ALL {
            let got = f.get(m.name()).and_then(Value::as_u64);
            if !metrics.contains(&m) {
                if got.is_some() {
                    return Err(format!("{m} returned but not asked for"));
                }
                continue;
            }
            let want = truth.in_timeframe(project, m, start, end);
            if got != Some(want) {
                return Err(format!("{project} {m} [{}, {}): got {got:?}, truth {want}", rfc3339(start), rfc3339(end)));
            }
        }
        let byte_hours = f.get("logical_size_bytes_hour").and_then(Value::as_u64);
        let want = truth.byte_hours_in(project, start, end);
        if metrics == Metric::ALL && byte_hours != Some(want) {
            return Err(format!(
                "{project} byte-hours [{}, {}): got {byte_hours:?}, truth {want}",
                rfc3339(start),
                rfc3339(end)
            ));
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_is_exact_for_every_timeframe_and_paginates() {
    let Some(mut p) = Pipeline::start("history").await else { return };
    p.start_api().await;
    let prefix = "hist";
    let truth = simulated_fleet(&p, prefix).await;
    let now = meter_runtime::now_ms();
    let (from, to) = (rfc3339(now - 4 * 86_400_000), rfc3339(now + 3_600_000));
    let api = p.api_url.clone();

    // Per project, every granularity, all metrics: exact in every timeframe.
    let first = truth.projects.keys().next().expect("a project").clone();
    for g in ["hourly", "daily", "monthly"] {
        let (status, body) =
            api_get(&format!("{api}/v1/projects/{first}/consumption_history?from={from}&to={to}&granularity={g}"))
                .await;
        assert_eq!(status, 200, "{body}");
        check_project(&truth, &first, &body["consumption"], &Metric::ALL).unwrap_or_else(|e| panic!("{g}: {e}"));
        let frames = body["consumption"].as_array().expect("frames");
        let sum: u64 = frames.iter().map(|f| f["active_time_seconds"].as_u64().unwrap_or(0)).sum();
        assert_eq!(sum, truth.projects[&first].counters[0], "{g}: timeframes sum to the total");
    }

    // A chosen set of metrics, every project by pages of 7.
    let metrics = [Metric::WrittenDataBytes, Metric::LogicalSizeBytes];
    let mut cursor = String::new();
    let mut seen = Vec::new();
    loop {
        let url = format!(
            "{api}/v1/consumption_history/projects?from={from}&to={to}&granularity=daily&limit=7&metrics=written_data_bytes,logical_size_bytes{cursor}"
        );
        let (status, body) = api_get(&url).await;
        assert_eq!(status, 200, "{body}");
        let page = body["projects"].as_array().expect("projects");
        assert!(page.len() <= 7);
        for proj in page {
            let id = proj["project_id"].as_str().expect("id").to_owned();
            check_project(&truth, &id, &proj["consumption"], &metrics).unwrap_or_else(|e| panic!("page: {e}"));
            seen.push(id);
        }
        match body["pagination"]["next_cursor"].as_str() {
            Some(c) => cursor = format!("&cursor={c}"),
            None => break,
        }
    }
    // The list parameters in both forms Neon documents, and mixed: the same answer.
    let two: Vec<&String> = seen.iter().filter(|id| id.starts_with(prefix)).take(3).collect();
    let base = format!("{api}/v1/consumption_history/projects?from={from}&to={to}&granularity=daily");
    let forms = [
        format!("{base}&project_ids={},{},{}&metrics=written_data_bytes,logical_size_bytes", two[0], two[1], two[2]),
        format!(
            "{base}&project_ids={}&project_ids={}&project_ids={}&metrics=written_data_bytes&metrics=logical_size_bytes",
            two[0], two[1], two[2]
        ),
        format!(
            "{base}&project_ids={},{}&metrics=written_data_bytes,logical_size_bytes&project_ids={}",
            two[0], two[1], two[2]
        ),
    ];
    let mut answers = Vec::new();
    for url in &forms {
        let (status, body) = api_get(url).await;
        assert_eq!(status, 200, "{url}: {body}");
        let ids: Vec<&str> =
            body["projects"].as_array().expect("projects").iter().filter_map(|p| p["project_id"].as_str()).collect();
        assert_eq!(ids, [two[0], two[1], two[2]], "{url}: every project asked for, none dropped");
        answers.push(body);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]), "repeated and comma-separated lists answer the same");

    let mine: Vec<&String> = seen.iter().filter(|id| id.starts_with(prefix)).collect();
    assert_eq!(mine.len(), truth.projects.len(), "every project exactly once across the pages");
    assert!(seen.windows(2).all(|w| w[0] < w[1]), "pages in id order, no repeats");

    // Every per-batch row of the first project written again (a load
    // replayed after a crash), and an older version of each with other
    // values: a project's read (its rows grouped by key) and the fleet's
    // (FINAL) still count each batch once, at its latest version.
    let db = &p.store_cfg.database;
    let columns = "project_id, metric, hour, source_id, batch_seq, branch_id, value, last_value, last_time_ms, version";
    for sql in [
        format!("INSERT INTO {db}.usage_hourly ({columns}) SELECT {columns} FROM {db}.usage_hourly WHERE project_id = '{first}'"),
        format!(
            "INSERT INTO {db}.usage_hourly ({columns}) SELECT project_id, metric, hour, source_id, batch_seq, branch_id, \
             value + 1000, last_value + 1000, last_time_ms + 1000, version - 1 \
             FROM {db}.usage_hourly WHERE project_id = '{first}' AND version > 0"
        ),
    ] {
        let r = reqwest::Client::new().post(&p.store_cfg.url).body(sql.clone()).send().await.expect("clickhouse");
        assert!(r.status().is_success(), "{sql}: {}", r.text().await.unwrap_or_default());
    }
    for g in ["hourly", "daily", "monthly"] {
        let (status, body) =
            api_get(&format!("{api}/v1/projects/{first}/consumption_history?from={from}&to={to}&granularity={g}"))
                .await;
        assert_eq!(status, 200, "{body}");
        check_project(&truth, &first, &body["consumption"], &Metric::ALL)
            .unwrap_or_else(|e| panic!("{g}, rows written again: {e}"));
    }

    // Fleet-wide: the sum over projects, timeframe by timeframe.
    eventually(Duration::from_secs(10), "fleet history equals the sum of the truth", || async {
        let (status, body) =
            api_get(&format!("{api}/v1/consumption_history/fleet?from={from}&to={to}&granularity=hourly")).await;
        if status != 200 {
            return Err(format!("{status} {body}"));
        }
        for f in body["consumption"].as_array().ok_or("frames")? {
            let start = parse_rfc3339(f["timeframe_start"].as_str().unwrap_or_default()).ok_or("start")?;
            for m in Metric::ALL {
                let want: u64 =
                    truth.projects.keys().map(|id| truth.in_timeframe(id, m, start, start + 3_600_000)).sum();
                if f[m.name()].as_u64() != Some(want) {
                    return Err(format!("fleet {m} at {}: got {}, truth {want}", rfc3339(start), f[m.name()]));
                }
            }
        }
        Ok(())
    })
    .await;
    p.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_history_parameters_get_a_400_naming_them() {
    let Some(mut p) = Pipeline::start("history_bad").await else { return };
    p.start_api().await;
    let api = p.api_url.clone();
    let ok = "from=2026-11-01T00:00:00Z&to=2026-11-02T00:00:00Z";
    let cases = [
        (format!("/v1/projects/x/consumption_history?{ok}&granularity=weekly"), "granularity"),
        (format!("/v1/projects/x/consumption_history?{ok}"), "granularity"),
        ("/v1/projects/x/consumption_history?from=yesterday&to=2026-11-02T00:00:00Z&granularity=daily".into(), "from"),
        (
            "/v1/projects/x/consumption_history?from=2026-11-02T00:00:00Z&to=2026-11-01T00:00:00Z&granularity=daily"
                .into(),
            "to",
        ),
        (
            "/v1/projects/x/consumption_history?from=2026-01-01T00:00:00Z&to=2026-03-01T00:00:00Z&granularity=hourly"
                .into(),
            "to",
        ),
        (format!("/v1/projects/x/consumption_history?{ok}&granularity=daily&metrics=cpu"), "metrics"),
        (format!("/v1/projects/bad%20id/consumption_history?{ok}&granularity=daily"), "project_id"),
        (format!("/v1/consumption_history/projects?{ok}&granularity=daily&limit=0"), "limit"),
        (format!("/v1/consumption_history/projects?{ok}&granularity=daily&limit=101"), "limit"),
        (format!("/v1/consumption_history/projects?{ok}&granularity=daily&cursor=zz"), "cursor"),
        (format!("/v1/consumption_history/fleet?{ok}&granularity=yearly"), "granularity"),
        // Given twice, where one value is expected: refused, never one silently dropped.
        (format!("/v1/consumption_history/fleet?{ok}&granularity=daily&granularity=hourly"), "granularity"),
        (format!("/v1/consumption_history/projects?{ok}&granularity=daily&limit=5&limit=50"), "limit"),
    ];
    for (path, param) in cases {
        let (status, body) = api_get(&format!("{api}{path}")).await;
        assert_eq!(status, 400, "{path}: {body}");
        assert_eq!(body["error"]["param"], param, "{path}: {body}");
        let msg = body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.starts_with(param), "{path}: the message names {param}: {msg}");
    }
    let (status, doc) = api_get(&format!("{api}/v1/openapi.json")).await;
    assert_eq!(status, 200);
    assert!(doc["paths"]["/v1/consumption_history/projects"]["get"].is_object(), "the OpenAPI document is served");
    p.shutdown().await;
}
