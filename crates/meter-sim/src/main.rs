//! `meter-sim`: runs a simulated fleet against ingest, shows what happens,
//! and checks ClickHouse against the ground truth.

mod display;
mod enforcement;

use std::sync::Arc;
use std::time::Duration;

use clap::{Parser, Subcommand};
use meter_sim::{run, FleetConfig, RunConfig, SendStats};
use meter_store::StoreConfig;
use tokio_util::sync::CancellationToken;

#[derive(Debug, Parser)]
#[command(name = "meter-sim", version, about = "Fleet simulator for the metering pipeline")]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run a fleet, print progress, then verify ClickHouse against the truth.
    Run(RunArgs),
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Ingest gRPC endpoint.
    #[arg(long, default_value = "http://127.0.0.1:50051")]
    ingest: String,
    /// Bearer token for ingest (when `security.tokens_file` is set).
    #[arg(long, env = "METER_INGEST_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// Number of projects.
    #[arg(long, default_value_t = 200)]
    projects: usize,
    /// Computes per project.
    #[arg(long, default_value_t = 2)]
    computes: usize,
    /// Reporting nodes (sources); computes are spread over them.
    #[arg(long, default_value_t = 8)]
    nodes: usize,
    /// How long to generate load, seconds (Ctrl-C ends it early).
    #[arg(long, default_value_t = 60)]
    duration: u64,
    /// Milliseconds between ticks.
    #[arg(long, default_value_t = 100)]
    tick_ms: u64,
    /// Usage time one tick covers per compute, seconds.
    #[arg(long, default_value_t = 60)]
    span_seconds: i64,
    /// How far back the simulated usage starts, seconds; never before the
    /// current billing cycle (quotas count the current cycle's usage).
    #[arg(long, default_value_t = 24 * 3600)]
    backfill_seconds: i64,
    /// Largest batch sent, events.
    #[arg(long, default_value_t = 2000)]
    max_batch: usize,
    /// Share of acknowledged batches resent once, as a client retry would.
    #[arg(long, default_value_t = 0.02)]
    duplicate_rate: f64,
    /// Project id prefix (default: a fresh one per run).
    #[arg(long)]
    prefix: Option<String>,
    #[arg(long, default_value_t = 42)]
    seed: u64,
    /// Seconds between progress lines; 0 for none.
    #[arg(long, default_value_t = 5)]
    status_every: u64,
    /// ClickHouse HTTP URL (read-back and verification).
    #[arg(long, default_value = "http://127.0.0.1:8123")]
    clickhouse_url: String,
    #[arg(long, default_value = "meter")]
    database: String,
    /// meterd's Prometheus endpoint, for the aggregator's lag.
    #[arg(long, default_value = "http://127.0.0.1:9464/metrics")]
    metrics_url: String,
    /// meterd's HTTP API (quotas, webhooks, status).
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    api: String,
    /// Projects given a small quota (the first N); 0 disables enforcement.
    #[arg(long, default_value_t = 10)]
    quota_projects: usize,
    /// Where the control-plane double listens (meterd's enforcer.control_plane_url).
    #[arg(long, default_value = "127.0.0.1:8091")]
    control_plane_listen: String,
    /// Where the webhook receiver listens.
    #[arg(long, default_value = "127.0.0.1:8092")]
    webhook_listen: String,
    /// Skip the final check against ClickHouse.
    #[arg(long)]
    no_verify: bool,
    /// How long to wait for ClickHouse to converge, seconds.
    #[arg(long, default_value_t = 120)]
    verify_timeout: u64,
}

#[tokio::main]
async fn main() -> anyhow::Result<std::process::ExitCode> {
    tracing_subscriber_init();
    let Cmd::Run(a) = Cli::parse().cmd;
    let prefix = a.prefix.clone().unwrap_or_else(|| {
        let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        format!("sim{:x}", t % 0xff_ffff)
    });
    let cfg = RunConfig {
        ingest_url: a.ingest.clone(),
        token: a.token.clone(),
        fleet: FleetConfig {
            prefix: prefix.clone(),
            projects: a.projects,
            computes_per_project: a.computes,
            nodes: a.nodes,
            span_seconds: a.span_seconds,
            backfill_seconds: a.backfill_seconds,
            seed: a.seed,
        },
        duration: Duration::from_secs(a.duration),
        tick: Duration::from_millis(a.tick_ms),
        max_batch_events: a.max_batch,
        duplicate_rate: a.duplicate_rate,
        restart_rate: 0.0,
        key_twin_rate: 0.0,
    };
    let store = meter_store::Store::new(&StoreConfig {
        url: a.clickhouse_url.clone(),
        database: a.database.clone(),
        ..StoreConfig::default()
    })?;
    let (finish, stop) = (CancellationToken::new(), CancellationToken::new());
    {
        let (finish, stop) = (finish.clone(), stop.clone());
        tokio::spawn(async move {
            let _ = tokio::signal::ctrl_c().await;
            eprintln!("\nmeter-sim: stopping the load; waiting for batches in flight (Ctrl-C again to abort)");
            finish.cancel();
            let _ = tokio::signal::ctrl_c().await;
            stop.cancel();
        });
    }
    println!(
        "meter-sim: {} projects x {} computes on {} nodes, prefix {prefix}, for {} s -> {}",
        a.projects, a.computes, a.nodes, a.duration, a.ingest
    );
    let enforcement = if a.quota_projects > 0 {
        let ids = (0..a.quota_projects.min(a.projects)).map(|i| format!("{prefix}-p{i:04}")).collect();
        // The backfill the fleet will have (it never starts before the
        // cycle), and how much of it the run's ticks reach.
        let backfill = meter_sim::fleet::backfill_in_cycle(meter_runtime::now_ms(), a.backfill_seconds);
        let covered = enforcement::covered_seconds(backfill, a.duration, a.tick_ms, a.span_seconds);
        let quota = enforcement::small_active_seconds(covered, a.computes);
        let e = enforcement::Enforcement::setup(
            &a.api,
            &a.control_plane_listen,
            &a.webhook_listen,
            &prefix,
            ids,
            quota,
            &stop,
        )
        .await?;
        let e = Arc::new(e);
        let printing = CancellationToken::new();
        let printer = tokio::spawn(e.clone().print_live(printing.clone()));
        Some((e, printer, printing))
    } else {
        None
    };
    let stats = Arc::new(SendStats::default());
    let progress = (a.status_every > 0).then(|| {
        let d = display::Progress::new(stats.clone(), store.clone(), prefix.clone(), a.metrics_url.clone());
        tokio::spawn(d.run(Duration::from_secs(a.status_every), finish.clone()))
    });
    let summary = run(cfg, stats.clone(), finish.clone(), stop.clone()).await?;
    finish.cancel();
    if let Some(p) = progress {
        let _ = p.await;
    }
    display::print_sent(&summary, &stats);
    let enforced = match enforcement {
        Some((e, printer, printing)) => {
            e.settle(&summary.truth).await;
            printing.cancel();
            let _ = printer.await;
            e.report(&summary.truth).await?
        }
        None => true,
    };
    if a.no_verify {
        return Ok(if enforced { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE });
    }
    let exact = display::verify(&store, &prefix, &summary.truth, Duration::from_secs(a.verify_timeout), &stop).await?;
    Ok(if exact && enforced { std::process::ExitCode::SUCCESS } else { std::process::ExitCode::FAILURE })
}

fn tracing_subscriber_init() {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_target(false).try_init();
}
