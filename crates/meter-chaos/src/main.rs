//! `meter-chaos`: runs the fault-injection harness against the local stack.
//!
//! ```text
//! meter-chaos --duration 600 --gap 1-3 --faults-each 50   # the long run (RELIABILITY.md)
//! meter-chaos --duration 120 --gap 2-4 --faults-each 1    # the short run (the test suite)
//! meter-chaos --kinds zookeeper-down,kill-clickhouse-replica ...   # some kinds only
//! ```

use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use meter_chaos::{run, ChaosConfig, FaultKind, LoadShape, StackArgs};

#[derive(Debug, Parser)]
#[command(name = "meter-chaos", about = "Fault injection against the real local stack")]
struct Cli {
    /// Seconds of load.
    #[arg(long, default_value_t = 150)]
    duration: u64,
    /// Seconds between faults, `MIN-MAX`.
    #[arg(long, default_value = "3-6")]
    gap: String,
    /// Keep going past --duration until every fault kind was injected this often.
    #[arg(long, default_value_t = 1)]
    faults_each: usize,
    #[arg(long, default_value_t = 30)]
    projects: usize,
    /// `compute-nodes`: 4 nodes, 2 computes per project, 100 ms ticks;
    /// `collectors`: 4 collectors for every project, 1 s ticks, batches of up
    /// to 2,000 events over hundreds of projects (use with `--projects 2000`).
    #[arg(long, value_enum, default_value = "compute-nodes")]
    shape: LoadShape,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Share of batches before which a compute node restarts without memory.
    #[arg(long, default_value_t = 0.02)]
    restart_rate: f64,
    /// Share of acknowledged batches a second source reports again with the
    /// same idempotency keys (every event then carries a key).
    #[arg(long, default_value_t = 0.05)]
    key_twin_rate: f64,
    /// Seconds a ClickHouse outage lasts (the fault `clickhouse outage`).
    #[arg(long, default_value_t = 60)]
    clickhouse_outage_s: u64,
    /// Only these fault kinds (comma-separated; default: every kind the stack
    /// offers), e.g. the cluster's: `--kinds kill-leader-broker,broker-pause,...`.
    #[arg(long, value_enum, value_delimiter = ',')]
    kinds: Vec<FaultKind>,
    /// Processes of the ingest, load, enforce and api roles (their kill faults
    /// kill one at a time; the simulator's nodes spread over the ingests).
    #[arg(long, default_value_t = 1)]
    instances: usize,
    #[command(flatten)]
    stack: StackArgs,
}

#[tokio::main]
async fn main() -> anyhow::Result<ExitCode> {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into());
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
    let cli = Cli::parse();
    let (lo, hi) = cli.gap.split_once('-').ok_or_else(|| anyhow::anyhow!("--gap: expected MIN-MAX, e.g. 3-6"))?;
    let repo = std::env::current_dir()?;
    // On a replicated Kafka (more than one broker named): topics with three
    // replicas, and the cluster's fault kinds too.
    let cluster = cli.stack.brokers.split(',').count() > 1;
    // On a replicated ClickHouse (`--clickhouse-cluster`): its fault kinds.
    let replicated = !cli.stack.clickhouse_cluster.is_empty();
    let replicas: Vec<String> =
        cli.stack.clickhouse_replica_urls.split(',').filter(|u| !u.is_empty()).map(str::to_owned).collect();
    anyhow::ensure!(
        !replicated || replicas.first() == Some(&cli.stack.clickhouse_url),
        "--clickhouse-replica-urls must list every replica, --clickhouse-url first (deploy/local/stack env prints both)"
    );
    let kinds: Vec<FaultKind> = FaultKind::ALL
        .into_iter()
        .chain(if cluster { FaultKind::CLUSTER.to_vec() } else { Vec::new() })
        .chain(if replicated { FaultKind::CLICKHOUSE_CLUSTER.to_vec() } else { Vec::new() })
        .filter(|k| cli.kinds.is_empty() || cli.kinds.contains(k))
        .collect();
    if let Some(k) = cli.kinds.iter().find(|k| !kinds.contains(k)) {
        anyhow::bail!("--kinds: {} needs a replicated Kafka or ClickHouse, which this stack is not", k.name());
    }
    let cfg = ChaosConfig {
        meterd: cli.stack.meterd,
        stack_dir: std::fs::canonicalize(&cli.stack.stack_dir)?,
        repo,
        brokers: cli.stack.brokers,
        replication_factor: if cluster { 3 } else { 1 },
        clickhouse_url: cli.stack.clickhouse_url,
        clickhouse_cluster: cli.stack.clickhouse_cluster,
        clickhouse_replicas: if replicated { replicas } else { Vec::new() },
        duration: Duration::from_secs(cli.duration),
        fault_gap_s: (lo.parse()?, hi.parse()?),
        kinds: kinds.clone(),
        faults_each: cli.faults_each,
        projects: cli.projects,
        shape: cli.shape,
        seed: cli.seed,
        restart_rate: cli.restart_rate,
        clickhouse_outage: Duration::from_secs(cli.clickhouse_outage_s),
        key_twin_rate: cli.key_twin_rate,
        instances: cli.instances,
    };
    let r = run(cfg).await?;
    println!("\nfaults injected:");
    for (k, n) in &r.faults {
        println!("  {:<28} {n}", k.name());
    }
    println!("  {:<28} {}", "client resends (1-5 each)", r.duplicates_sent);
    println!("  {:<28} {}", "compute node restarts", r.node_restarts);
    println!("  {:<28} {}", "same keys from a 2nd source", r.key_twins_sent);
    println!("  {:<28} {}", "roles that died on their own", r.crashes_restarted);
    println!(
        "events acked {} in {} batches; over-counted value {}; under-counted (lost) value {}",
        r.events_acked, r.batches_acked, r.over_counted_value, r.under_counted_value
    );
    println!(
        "samples {} with {} violations{}; converged {}; totals topic exact: {}",
        r.samples,
        r.violations.len(),
        r.violations.first().map_or(String::new(), |v| format!(" (first: {v})")),
        r.converged_after.map_or("NEVER".into(), |d| format!("{:.1} s after the load stopped", d.as_secs_f64())),
        r.totals_topic_exact
    );
    println!(
        "adjustments: {} applied through the api ({} requests retried with the same key); ClickHouse's adjustments exact: {}",
        r.adjustments_applied, r.adjustment_retries, r.adjustments_exact
    );
    let e = &r.enforcement;
    let quantile = |l: &[f64], p: f64| {
        l.get(((l.len() as f64 * p).ceil() as usize).saturating_sub(1)).map_or("-".into(), |v| format!("{v:.2} s"))
    };
    let q = |p: f64| quantile(&e.suspend_latency_s, p);
    println!(
        "enforcement: {} quotas set ({} changes), {} projects over quota at the end; control plane: {} suspend and {} resume calls ({} repeated an idempotency key); {} alerts delivered; crossing-to-suspend p50 {} p99 {} max {}; {} mismatches{}",
        e.quotas_set,
        e.quota_changes,
        e.over_quota,
        e.suspend_calls,
        e.resume_calls,
        e.repeated_keys,
        e.alerts_delivered,
        q(0.5),
        q(0.99),
        q(1.0),
        e.mismatches.len(),
        e.mismatches.first().map_or(String::new(), |m| format!(" (first: {m})")),
    );
    if let Some((project, times)) = &e.slowest {
        let [crossed, decided, called] = times.map(|t| format!("{:.1} s", (t - r.started_ms) as f64 / 1000.0));
        println!(
            "slowest crossing: {project}, its newest batch ingested at {crossed}, decided at {decided}, called at {called} (seconds as the fault lines count them)"
        );
    }
    let o = &e.suspend_latency_in_outage_s;
    println!(
        "while ClickHouse was down: {} crossings suspended, crossing-to-suspend p50 {} p99 {} max {}",
        o.len(),
        quantile(o, 0.5),
        quantile(o, 0.99),
        quantile(o, 1.0)
    );
    if !r.replicas_not_exact.is_empty() {
        println!("replicas not exact: {}", r.replicas_not_exact.join(", "));
    }
    let missing: Vec<&str> =
        kinds.iter().filter(|k| r.faults.get(k).copied().unwrap_or(0) < cli.faults_each).map(|k| k.name()).collect();
    if !missing.is_empty() {
        println!("fault kinds injected fewer than {} times: {}", cli.faults_each, missing.join(", "));
    }
    let ok = r.exact() && missing.is_empty();
    println!("{}", if ok { "RESULT: exact" } else { "RESULT: NOT EXACT" });
    Ok(if ok { ExitCode::SUCCESS } else { ExitCode::FAILURE })
}
