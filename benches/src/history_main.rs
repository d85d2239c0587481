//! `meter-bench-history`: latency of consumption-history reads through the
//! api role, Neon's surface next to ours in the same run (BENCHMARKS.md).
//! Needs the local stack.
//!
//! ```text
//! meter-bench-history --projects 100 --hours 168 --batches-per-hour 12 --requests 40
//! ```
//! Writes `usage_hourly` rows into a database of its own as the load role
//! would (one row per project, metric, hour and batch; `--batches-per-hour`
//! batches per project per hour, e.g. 12 for a source reporting every 5
//! minutes), plus `--fleet-projects` other projects (one batch per hour),
//! then asks the api role (in this process, on loopback) for every project's
//! hourly history over `--hours` hours (and one project's, and every
//! project's daily), and for the account's (the whole fleet's) month,
//! `--requests` times each.

use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use meter_core::cycle::rfc3339;
use meter_core::Metric;
use meter_kafka::KafkaConfig;
use meter_runtime::now_ms;
use meter_store::{metric_code, StoreConfig, UsageRow};

#[derive(Debug, Parser)]
#[command(name = "meter-bench-history", about = "Consumption-history read latency through the api role")]
struct Cli {
    /// Projects asked for (one page).
    #[arg(long, default_value_t = 100)]
    projects: usize,
    /// Hours of history (and the range asked for).
    #[arg(long, default_value_t = 168)]
    hours: u32,
    /// Batches per project per hour (rows per project, metric and hour).
    #[arg(long, default_value_t = 12)]
    batches_per_hour: u64,
    /// Other projects in the table, one batch per hour each.
    #[arg(long, default_value_t = 0)]
    fleet_projects: usize,
    /// Read the rows an earlier run wrote into this database instead of
    /// writing new ones (to compare two builds on the same data).
    #[arg(long)]
    reuse: Option<String>,
    /// Requests per endpoint.
    #[arg(long, default_value_t = 40)]
    requests: usize,
    #[arg(long, env = "METER_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(long, env = "METER_CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123")]
    clickhouse: String,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    meter_runtime::init_logging_or("error");
    let cli = Cli::parse();
    let tag = format!("histbench{:x}", now_ms() % 0xff_ffff);
    let database = cli.reuse.clone().unwrap_or_else(|| tag.clone());
    let store = StoreConfig { url: cli.clickhouse.clone(), database, ..StoreConfig::default() };
    let hour_now = (now_ms() / 3_600_000) as u32;
    let first_hour = hour_now + 1 - cli.hours;
    if cli.reuse.is_none() {
        meter_store::migrate(&store).await?;
        let started = Instant::now();
        let rows = fill(&store, &cli, first_hour).await?;
        println!(
            "meter-bench-history: {rows} rows ({} projects x {} h x 5 metrics x {} batches, + {} fleet projects) \
             written in {:.1} s to database {}",
            cli.projects,
            cli.hours,
            cli.batches_per_hour,
            cli.fleet_projects,
            started.elapsed().as_secs_f64(),
            store.database
        );
    }

    let kafka = KafkaConfig { brokers: cli.brokers.clone(), ..KafkaConfig::default() }.with_topic_prefix(&tag);
    meter_kafka::ensure_topics(&kafka).await?;
    let role = meter_bench::api_role::start(&kafka, &store).await?;
    let api = role.url.clone();
    let http = reqwest::Client::new();
    let ids: Vec<String> = (0..cli.projects).map(|i| format!("bench-p{i:04}")).collect();
    let span = |g: &str| {
        format!(
            "from={}&to={}&granularity={g}",
            rfc3339(i64::from(first_hour) * 3_600_000),
            rfc3339(i64::from(hour_now + 1) * 3_600_000)
        )
    };
    let page = |g: &str, ids: &[String]| format!("{}&limit=100&project_ids={}", span(g), ids.join(","));
    wait_ready(&http, &api).await?;
    let (v1, v2) = (format!("{api}/v1/consumption_history"), format!("{api}/api/v2/consumption_history"));
    let endpoints = [
        ("GET /v1/consumption_history/projects, hourly", format!("{v1}/projects?{}", page("hourly", &ids)), ids.len()),
        (
            "GET /api/v2/consumption_history/projects, hourly",
            format!("{v2}/projects?{}", page("hourly", &ids)),
            ids.len(),
        ),
        ("  the same, one project", format!("{v2}/projects?{}", page("hourly", &ids[..1])), 1),
        ("  the same, daily", format!("{v2}/projects?{}", page("daily", &ids)), ids.len()),
        ("GET /api/v2/consumption_history/account, monthly", format!("{v2}/account?{}", span("monthly")), 0),
    ];
    let mut hists = vec![Histogram::<u64>::new(3)?; endpoints.len()];
    // Alternating, so background merges and caches weigh on both alike.
    for _ in 0..cli.requests {
        for ((name, url, len), h) in endpoints.iter().zip(&mut hists) {
            let t = Instant::now();
            let r = http.get(url).send().await?;
            anyhow::ensure!(r.status().is_success(), "{name}: {}", r.status());
            let body: serde_json::Value = r.json().await?;
            h.record(t.elapsed().as_micros() as u64)?;
            let got = body["projects"].as_array().map_or(0, Vec::len);
            anyhow::ensure!(got == *len, "{name}: {got} projects, not {len}");
        }
    }
    let mut base = None;
    for ((name, _, _), h) in endpoints.iter().zip(&hists) {
        let (p50, p99) = (h.value_at_quantile(0.5) as f64 / 1000.0, h.value_at_quantile(0.99) as f64 / 1000.0);
        let ratio = base.map_or(String::new(), |b: f64| format!("  (p50 = {:.2} x ours)", p50 / b));
        println!("  {name:<50} p50 {p50:>8.1} ms  p99 {p99:>8.1} ms{ratio}");
        base.get_or_insert(p50);
    }
    role.stop().await?;
    Ok(())
}

/// Writes the rows; returns how many.
async fn fill(store: &StoreConfig, cli: &Cli, first_hour: u32) -> anyhow::Result<usize> {
    let writer = meter_store::Store::new(store)?;
    let mut rows = Vec::new();
    let mut total = 0;
    let projects = (0..cli.projects).map(|i| (format!("bench-p{i:04}"), cli.batches_per_hour));
    let fleet = (0..cli.fleet_projects).map(|i| (format!("fleet-p{i:06}"), 1));
    for (project, batches) in projects.chain(fleet) {
        for hour in first_hour..first_hour + cli.hours {
            for batch in 0..batches {
                for m in Metric::ALL {
                    let value = 1 + (u64::from(hour) + batch) % 97;
                    rows.push(UsageRow {
                        project_id: project.clone(),
                        metric: metric_code(m),
                        hour: hour * 3600,
                        source_id: "bench-src".into(),
                        batch_seq: u64::from(hour) * 1000 + batch,
                        value: if m == Metric::LogicalSizeBytes { 0 } else { value },
                        last_value: value << 20,
                        last_time_ms: i64::from(hour) * 3_600_000 + batch as i64,
                        version: batch,
                        branch_id: if m == Metric::LogicalSizeBytes { "br-main".into() } else { String::new() },
                    });
                }
                // The byte-hours the batch's storage reading closed, as the aggregator writes them.
                rows.push(UsageRow {
                    project_id: project.clone(),
                    metric: meter_store::BYTE_HOURS_CODE,
                    hour: hour * 3600,
                    source_id: "bench-src".into(),
                    batch_seq: u64::from(hour) * 1000 + batch,
                    value: (1 + (u64::from(hour) + batch) % 97) << 18,
                    last_value: 0,
                    last_time_ms: 0,
                    version: batch,
                    branch_id: String::new(),
                });
            }
            if rows.len() >= 200_000 {
                total += rows.len();
                writer.write_usage(&std::mem::take(&mut rows)).await?;
            }
        }
    }
    total += rows.len();
    writer.write_usage(&rows).await?;
    Ok(total)
}

async fn wait_ready(http: &reqwest::Client, api: &str) -> anyhow::Result<()> {
    for _ in 0..600 {
        if http.get(format!("{api}/v1/openapi.json")).send().await.is_ok_and(|r| r.status().is_success()) {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    anyhow::bail!("the api role did not start within 60 s")
}
