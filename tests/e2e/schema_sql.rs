//! The SQL documented in docs/schema.md, run as written (example values
//! replaced) against the real ClickHouse: each result equals the ground
//! truth, read from `usage_hourly` and again once the days are rolled up.

use std::collections::BTreeMap;
use std::sync::Arc;

use meter_aggregator::LoadConfig;
use meter_core::{Cycle, Metric};
use meter_e2e::Pipeline;
use meter_sim::{run, SendStats, Truth};
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::fleet::{assert_exact, fleet_run};

/// The `<!-- query: NAME -->` blocks of docs/schema.md.
pub(crate) fn documented_queries() -> BTreeMap<String, String> {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/schema.md")).expect("docs/schema.md");
    let mut out = BTreeMap::new();
    for part in doc.split("<!-- query: ").skip(1) {
        let name = part[..part.find(" -->").expect("marker end")].to_owned();
        let body = part.split("```sql\n").nth(1).expect("a sql block after the marker");
        out.insert(name, body[..body.find("```").expect("block end")].to_owned());
    }
    out
}

pub(crate) fn ch_time(ms: i64) -> String {
    let s = meter_core::cycle::rfc3339(ms);
    format!("'{} {}'", &s[..10], &s[11..19])
}

/// Runs `sql` and returns its rows as JSON arrays (64-bit integers come back quoted).
pub(crate) async fn query(p: &Pipeline, sql: &str) -> Vec<Vec<Value>> {
    let r = reqwest::Client::new()
        .post(&p.store_cfg.url)
        .body(format!("{sql} FORMAT JSONCompact"))
        .send()
        .await
        .expect("clickhouse reachable");
    let status = r.status();
    let text = r.text().await.expect("body");
    assert!(status.is_success(), "the documented query failed: {text}\n{sql}");
    let v: Value = serde_json::from_str(&text).expect("JSON");
    v["data"].as_array().expect("data").iter().map(|r| r.as_array().expect("row").clone()).collect()
}

pub(crate) fn num(v: &Value) -> u64 {
    v.as_u64().or_else(|| v.as_str().and_then(|s| s.parse().ok())).unwrap_or_else(|| panic!("not a number: {v}"))
}

/// The five metrics and the byte-hours, as the documented queries' columns.
fn values(truth: &Truth, id: &str, start: i64, end: i64) -> Vec<u64> {
    let metrics = Metric::ALL.iter().map(|m| truth.in_timeframe(id, *m, start, end));
    metrics.chain([truth.byte_hours_in(id, start, end)]).collect()
}

fn month_values(truth: &Truth, id: &str, c: &Cycle) -> Vec<u64> {
    values(truth, id, c.start_ms, c.end_ms)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn documented_billing_queries_return_exact_numbers() {
    let Some(mut p) = Pipeline::start("schema_sql").await else { return };
    let prefix = "sql";
    let stats = Arc::new(SendStats::default());
    let summary = run(fleet_run(&p.ingest_url, prefix, 5), stats, CancellationToken::new(), CancellationToken::new())
        .await
        .expect("simulation");
    let truth = summary.truth;
    assert_exact(&p, prefix, &truth).await;
    check_documented_queries(&p, &truth, "read from usage_hourly").await;

    // Eight days later (the api's clock writes the probes) every day with
    // usage is final and rolled up: the same queries read the rollups.
    p.start_api().await;
    let load = LoadConfig { linger_ms: 50, rollup_interval_seconds: 1, ..LoadConfig::default() };
    p.start_load_config(&p.store_cfg.clone(), load);
    let tomorrow = meter_core::finality::day_floor(meter_runtime::now_ms()) + meter_core::finality::DAY_MS;
    p.clock.jump_to(meter_runtime::now_ms() + 8 * meter_core::finality::DAY_MS);
    meter_e2e::eventually(std::time::Duration::from_secs(60), "every day rolled up", || async {
        match p.store.rolled_through().await.map_err(|e| e.to_string())? {
            Some(t) if t >= tomorrow => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    check_documented_queries(&p, &truth, "read from the rollups").await;
    p.shutdown().await;
}

/// The three documented queries over this month equal the ground truth.
async fn check_documented_queries(p: &Pipeline, truth: &Truth, when: &str) {
    let month = Cycle::containing(meter_runtime::now_ms());
    // A project with two branches: its storage is the sum of theirs.
    let project =
        truth.projects.iter().find(|(_, t)| t.branches.len() == 2).map(|(id, _)| id.clone()).expect("two branches");
    let queries = documented_queries();
    assert_eq!(queries.len(), 3, "docs/schema.md documents three queries: {:?}", queries.keys());
    let prepare = |sql: &str| {
        sql.replace("meter.", &format!("{}.", p.store_cfg.database))
            // Through a placeholder: in December 2026 the documented end is
            // the month's start.
            .replace("'2026-11-01 00:00:00'", "{month_start}")
            .replace("'2026-12-01 00:00:00'", &ch_time(month.end_ms))
            .replace("{month_start}", &ch_time(month.start_ms))
            .replace("'acme-prod'", &format!("'{project}'"))
    };

    // Invoice lines: every project with usage this month, every metric exact.
    let rows = query(p, &prepare(&queries["invoice_lines"])).await;
    let want: Vec<(String, Vec<u64>)> = truth
        .projects
        .keys()
        .map(|id| (id.clone(), month_values(truth, id, &month)))
        .filter(|(_, v)| v.iter().any(|x| *x > 0))
        .collect();
    let got: Vec<(String, Vec<u64>)> =
        rows.iter().map(|r| (r[0].as_str().expect("id").to_owned(), r[1..].iter().map(num).collect())).collect();
    assert!(want.iter().any(|(_, v)| v[5] > 0), "the fleet held storage over time (byte-hours)");
    assert_eq!(got, want, "invoice lines, {when}");

    // Top consumers by compute time.
    let rows = query(p, &prepare(&queries["top_consumers"])).await;
    let mut want: Vec<(String, u64)> = truth
        .projects
        .keys()
        .map(|id| (id.clone(), truth.in_timeframe(id, Metric::ComputeTimeSeconds, month.start_ms, month.end_ms)))
        .filter(|(_, v)| *v > 0)
        .collect();
    want.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
    want.truncate(10);
    let got: Vec<(String, u64)> = rows.iter().map(|r| (r[0].as_str().expect("id").to_owned(), num(&r[1]))).collect();
    assert_eq!(got, want, "top consumers, {when}");

    // One project by day.
    let rows = query(p, &prepare(&queries["project_by_day"])).await;
    assert!(!rows.is_empty(), "the project has usage on some day");
    let mut days_total = [0u64; 4];
    for r in &rows {
        let day =
            meter_core::cycle::parse_rfc3339(&format!("{}T00:00:00Z", r[0].as_str().expect("day"))).expect("date");
        let want = values(truth, &project, day, day + 86_400_000);
        let got: Vec<u64> = r[1..].iter().map(num).collect();
        assert_eq!(got, want, "{project} on {}, {when}", r[0]);
        for (t, g) in days_total.iter_mut().zip(&got) {
            *t += g;
        }
    }
    assert_eq!(&days_total[..], &month_values(truth, &project, &month)[..4], "the days add up to the month, {when}");
}
