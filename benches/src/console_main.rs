//! `meter-bench-console`: how fast the console's pages answer on a large
//! fleet, next to the JSON calls they are built from (BENCHMARKS.md). Needs
//! the local stack.
//!
//! ```text
//! meter-bench-console --projects 100000 --requests 20 [--reuse <meter-bench-history database>]
//! ```
//! Writes `--projects` projects' `usage.totals` records (active time spread
//! from 1 % to 100 % of their plan's quota), their configuration (all on one
//! plan), and `--suspended` suspended projects' enforcement records to
//! topics of its own; starts the api role in this process (it reads the
//! topics to the end before it serves), and asks for each page and each
//! baseline `--requests` times, alternating. History comes from ClickHouse:
//! an empty database of its own, or one `meter-bench-history` filled.

use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use meter_core::config_view::ConfigKey;
use meter_core::enforce::{EnforcementState, Suspension};
use meter_core::{Metric, Plan, ProjectQuotaConfig, Quota};
use meter_kafka::KafkaConfig;
use meter_runtime::now_ms;
use meter_store::StoreConfig;
use rdkafka::producer::{FutureProducer, FutureRecord};

#[derive(Debug, Parser)]
#[command(name = "meter-bench-console", about = "Console page latency on a large fleet")]
struct Cli {
    /// Projects in the fleet.
    #[arg(long, default_value_t = 100_000)]
    projects: usize,
    /// Of which suspended.
    #[arg(long, default_value_t = 1_000)]
    suspended: usize,
    /// Requests per page.
    #[arg(long, default_value_t = 20)]
    requests: usize,
    /// A ClickHouse database `meter-bench-history` filled (its projects'
    /// history is then on the project pages, and the fleet's on the fleet page).
    #[arg(long)]
    reuse: Option<String>,
    #[arg(long, env = "METER_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
    #[arg(long, env = "METER_CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123")]
    clickhouse: String,
}

const QUOTA: u64 = 6_000;

fn project(i: usize) -> String {
    format!("bench-p{i:04}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    meter_runtime::init_logging_or("error");
    let cli = Cli::parse();
    let tag = format!("consolebench{:x}", now_ms() % 0xff_ffff);
    let store = StoreConfig {
        url: cli.clickhouse.clone(),
        database: cli.reuse.clone().unwrap_or_else(|| tag.clone()),
        ..StoreConfig::default()
    };
    if cli.reuse.is_none() {
        meter_store::migrate(&store).await?;
    }
    let kafka = KafkaConfig { brokers: cli.brokers.clone(), ..KafkaConfig::default() }.with_topic_prefix(&tag);
    meter_kafka::ensure_topics(&kafka).await?;
    let started = Instant::now();
    write_fleet(&kafka, &cli).await?;
    println!(
        "meter-bench-console: {} projects ({} suspended) written in {:.1} s",
        cli.projects,
        cli.suspended,
        started.elapsed().as_secs_f64()
    );

    let role = meter_bench::api_role::start(&kafka, &store).await?;
    let api = role.url.clone();
    let http = reqwest::Client::new();
    let started = Instant::now();
    loop {
        let ready = http.get(format!("{api}/v1/projects?limit=1")).send().await;
        if ready.is_ok_and(|r| r.status().is_success()) {
            break;
        }
        anyhow::ensure!(started.elapsed() < Duration::from_secs(300), "the api did not answer within 300 s");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    println!("  the api read the topics and answered after {:.1} s", started.elapsed().as_secs_f64());
    let one = project(1);
    let pages = [
        ("GET /v1/projects?min_percent=80&limit=50 (baseline)", format!("{api}/v1/projects?min_percent=80&limit=50")),
        ("GET /console (fleet page)", format!("{api}/console")),
        ("GET /console/fleet/usage (its charts' frame)", format!("{api}/console/fleet/usage")),
        ("GET /v1/projects/{id}/status (baseline)", format!("{api}/v1/projects/{one}/status")),
        ("GET /console/projects/{id} (hourly, 48 h)", format!("{api}/console/projects/{one}")),
        ("GET /console/projects/{id}?granularity=daily", format!("{api}/console/projects/{one}?granularity=daily")),
        ("GET /console/plans", format!("{api}/console/plans")),
        ("GET /console/webhooks", format!("{api}/console/webhooks")),
    ];
    let mut hists = vec![Histogram::<u64>::new(3)?; pages.len()];
    let mut sizes = vec![0usize; pages.len()];
    for _ in 0..cli.requests {
        for (i, (name, url)) in pages.iter().enumerate() {
            let t = Instant::now();
            let r = http.get(url).send().await?;
            anyhow::ensure!(r.status().is_success(), "{name}: {}", r.status());
            let body = r.bytes().await?;
            hists[i].record(t.elapsed().as_micros() as u64)?;
            sizes[i] = body.len();
            anyhow::ensure!(
                !String::from_utf8_lossy(&body).contains("did not answer"),
                "{name}: ClickHouse did not answer"
            );
        }
    }
    for (i, (name, _)) in pages.iter().enumerate() {
        let h = &hists[i];
        let (p50, p99) = (h.value_at_quantile(0.5) as f64 / 1000.0, h.value_at_quantile(0.99) as f64 / 1000.0);
        println!("  {name:<50} p50 {p50:>8.1} ms  p99 {p99:>8.1} ms  {:>7} bytes", sizes[i]);
    }
    role.stop().await?;
    Ok(())
}

/// The fleet's records: one plan, every project on it with totals from 1 %
/// to 100 % of its active-time quota, the first `suspended` suspended.
async fn write_fleet(kafka: &KafkaConfig, cli: &Cli) -> anyhow::Result<()> {
    let producer: FutureProducer =
        kafka.client_config().set("linger.ms", "20").set("queue.buffering.max.messages", "1000000").create()?;
    let now = now_ms();
    let plan = Plan {
        name: "bench".into(),
        quota: Quota { active_time_seconds: QUOTA, ..Quota::default() },
        thresholds: meter_core::DEFAULT_THRESHOLDS.to_vec(),
    };
    let mut pending = Vec::new();
    let mut send = |topic: &str, key: String, value: Vec<u8>| {
        let producer = producer.clone();
        let topic = topic.to_owned();
        pending.push(tokio::spawn(async move {
            producer
                .send(FutureRecord::to(&topic).key(&key).payload(&value), Duration::from_secs(30))
                .await
                .map(|_| ())
                .map_err(|(e, _)| anyhow::anyhow!("{e}"))
        }));
    };
    send(&kafka.config_topic, ConfigKey::Plan("bench".into()).encode(), serde_json::to_vec(&plan)?);
    let cycle = meter_core::Cycle::containing(now);
    for i in 0..cli.projects {
        let id = project(i);
        let active = QUOTA * (1 + (i as u64 % 100)) / 100;
        let state = meter_bench::fixtures::project_state(&id, 1, now, active);
        send(&kafka.totals_topic, id.clone(), meter_proto::packed::own_record(&state, 0, now));
        let cfg = ProjectQuotaConfig { plan: Some("bench".into()), ..ProjectQuotaConfig::default() };
        send(&kafka.config_topic, ConfigKey::Project(id.clone()).encode(), serde_json::to_vec(&cfg)?);
        if i < cli.suspended {
            let mut e = EnforcementState::new(&id, cycle.start_ms);
            e.suspended = Some(Suspension {
                metric: Metric::ActiveTimeSeconds,
                usage: active,
                quota: QUOTA,
                since_ms: now,
                key: format!("suspend.{id}.{}.1", cycle.start_ms / 1000),
            });
            send(&kafka.enforcement_topic, id.clone(), serde_json::to_vec(&e)?);
        }
    }
    for p in pending {
        p.await??;
    }
    Ok(())
}
