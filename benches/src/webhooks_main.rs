//! `meter-bench-webhooks`: alert delivery latency (event -> healthy
//! receiver) with every endpoint healthy, next to the same load with one of
//! the endpoints hanging (no answer until the timeout) and one refusing
//! (connection refused), in one run (BENCHMARKS.md). Needs the local stack.
//!
//! ```text
//! meter-bench-webhooks --events 2000 --rate 200 --endpoints 10
//! ```
//! The enforce role runs in this process; events are written to its
//! webhooks topic at `--rate` as the enforcer's outbox would (each stamped
//! with the time it was produced), and every receiver is a real HTTP server
//! on loopback that verifies signatures.

use std::time::{Duration, Instant};

use clap::Parser;
use hdrhistogram::Histogram;
use meter_core::config_view::{ConfigKey, WebhookEndpoint};
use meter_core::enforce::{Alert, AlertType};
use meter_core::target::AddressClass;
use meter_enforcer::{EnforcerConfig, WebhookJob};
use meter_kafka::KafkaConfig;
use meter_runtime::{now_ms, Health, SystemClock};
use meter_sim::receivers::{FailMode, WebhookReceiver};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio_util::sync::CancellationToken;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[derive(Debug, Parser)]
#[command(name = "meter-bench-webhooks", about = "Webhook delivery latency with healthy, hanging and dead endpoints")]
struct Cli {
    /// Events per scenario (each goes to every endpoint).
    #[arg(long, default_value_t = 2000)]
    events: usize,
    /// Events per second written to the webhooks topic.
    #[arg(long, default_value_t = 200)]
    rate: u64,
    /// Endpoints (one of them fails in the failing scenarios).
    #[arg(long, default_value_t = 10)]
    endpoints: usize,
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    #[arg(long, env = "METER_KAFKA_BROKERS", default_value = "127.0.0.1:9092")]
    brokers: String,
}

/// What the failing endpoint does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Failing {
    None,
    Hangs,
    Refuses,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    meter_runtime::init_logging_or("error");
    let cli = Cli::parse();
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    println!(
        "meter-bench-webhooks: {} events at {}/s to {} endpoints, {} partitions",
        cli.events, cli.rate, cli.endpoints, cli.partitions
    );
    let mut base = None;
    for failing in [Failing::None, Failing::Hangs, Failing::Refuses] {
        let prefix = format!("whbench{:x}-{failing:?}", t % 0xff_ffff).to_lowercase();
        let (p50, p99, max) = scenario(&cli, &prefix, failing).await?;
        let ratio = base.map_or(String::new(), |b: f64| format!("  (p99 = {:.2} x all healthy)", p99 / b));
        println!(
            "  {:<36} p50 {p50:>7.1} ms  p99 {p99:>7.1} ms  max {max:>7.1} ms{ratio}",
            describe(failing, cli.endpoints)
        );
        base.get_or_insert(p99);
    }
    Ok(())
}

fn describe(f: Failing, n: usize) -> String {
    match f {
        Failing::None => format!("{n} of {n} endpoints healthy"),
        Failing::Hangs => format!("{} healthy, 1 hanging (5 s timeout)", n - 1),
        Failing::Refuses => format!("{} healthy, 1 refusing connections", n - 1),
    }
}

/// One scenario: latency percentiles (ms) at the healthy receivers.
async fn scenario(cli: &Cli, prefix: &str, failing: Failing) -> anyhow::Result<(f64, f64, f64)> {
    let kafka = KafkaConfig { brokers: cli.brokers.clone(), partitions: cli.partitions, ..KafkaConfig::default() }
        .with_topic_prefix(prefix);
    meter_kafka::ensure_topics(&kafka).await?;
    let stop = CancellationToken::new();
    let producer: FutureProducer = kafka.client_config().set("linger.ms", "1").create()?;
    let mut healthy = Vec::new();
    for i in 0..cli.endpoints {
        let mode = match (i, failing) {
            (0, Failing::Hangs) => FailMode::Hang,
            _ => FailMode::Never,
        };
        let r = WebhookReceiver::new(SECRET, mode);
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/", listener.local_addr()?);
        if i == 0 && failing == Failing::Refuses {
            drop(listener); // nobody listens there any more
        } else {
            tokio::spawn(r.clone().serve(listener, stop.clone()));
        }
        if i > 0 || failing == Failing::None {
            healthy.push(r);
        }
        let w = WebhookEndpoint {
            id: format!("ep{i:02}"),
            url,
            secret: SECRET.into(),
            event_types: vec![],
            disabled: false,
            disabled_reason: None,
        };
        let key = ConfigKey::Webhook(w.id.clone()).encode();
        let value = serde_json::to_vec(&w)?;
        producer
            .send(FutureRecord::to(&kafka.config_topic).key(&key).payload(&value), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)?;
    }
    let cfg = EnforcerConfig {
        group_id: format!("{prefix}.enf"),
        transactional_id_prefix: format!("{prefix}.enf"),
        actuator_group_id: format!("{prefix}.act"),
        webhook_group_id: format!("{prefix}.hooks"),
        ..EnforcerConfig::default()
    };
    let role = {
        let (k, s) = (kafka.clone(), stop.clone());
        tokio::spawn(async move {
            meter_enforcer::run(
                &cfg,
                &k,
                &[AddressClass::Loopback],
                std::sync::Arc::new(SystemClock),
                Health::default(),
                s,
            )
            .await
        })
    };
    // Warm-up: one event delivered everywhere healthy (the dispatcher has
    // joined its group and has its partitions); not measured.
    send(&producer, &kafka, &format!("{prefix}-warmup"), "p000").await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !healthy.iter().all(|r| !r.accepted().is_empty()) {
        anyhow::ensure!(Instant::now() < deadline, "the warm-up event was not delivered in 60 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let started = Instant::now();
    let interval = Duration::from_secs_f64(1.0 / cli.rate.max(1) as f64);
    for n in 0..cli.events {
        let due = started + interval * n as u32;
        tokio::time::sleep_until(due.into()).await;
        send(&producer, &kafka, &format!("{prefix}-evt-{n}"), &format!("p{:03}", n % 100)).await?;
    }
    let want = (cli.events + 1) * healthy.len();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let got: usize = healthy.iter().map(|r| r.accepted().len()).sum();
        if got >= want {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "only {got} of {want} deliveries arrived in 120 s");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut h = Histogram::<u64>::new_with_bounds(1, 3_600_000, 3)?;
    for d in healthy.iter().flat_map(|r| r.accepted()).filter(|d| !d.id.ends_with("-warmup")) {
        let occurred = d.payload.as_ref().and_then(|p| meter_core::cycle::parse_rfc3339(&p.data.occurred_at));
        if let Some(o) = occurred {
            h.record((d.received_ms - o).max(1) as u64)?;
        }
    }
    stop.cancel();
    role.await??;
    Ok((h.value_at_quantile(0.5) as f64, h.value_at_quantile(0.99) as f64, h.max() as f64))
}

/// Writes one event to the webhooks topic, stamped now.
async fn send(producer: &FutureProducer, kafka: &KafkaConfig, id: &str, project: &str) -> anyhow::Result<()> {
    {
        let now = now_ms();
        let alert = Alert {
            id: id.to_owned(),
            kind: AlertType::ThresholdReached,
            project_id: project.to_owned(),
            branch_id: None,
            metric: Some(meter_core::Metric::ComputeTimeSeconds),
            threshold: Some(80),
            usage: 800,
            quota: Some(1000),
            cycle_start_ms: now,
            cycle_end_ms: now + 1,
            occurred_ms: now,
            reason: None,
        };
        let value = serde_json::to_vec(&WebhookJob { alert, only_endpoint: None })?;
        producer
            .send(FutureRecord::to(&kafka.webhooks_topic).key(project).payload(&value), Duration::from_secs(10))
            .await
            .map_err(|(e, _)| e)?;
    }
    Ok(())
}
