//! `meter-bench`: the end-to-end benchmark (BENCHMARKS.md). Needs the local
//! stack (`deploy/local/stack up`) and a release build of `meterd`.
//!
//! ```text
//! meter-bench --duration 15 --sources 64 --batch 1000 --concurrency 32
//! ```

mod baselines;
mod catch_up;
mod neon_json;
mod ours;

use std::time::Duration;

use clap::Parser;
use meter_chaos::StackArgs;
use meter_kafka::KafkaConfig;
use meter_store::Store;

use crate::baselines::Rate;
use crate::ours::{usage_of, Usage};
use meter_bench::load::LoadConfig;

#[derive(Debug, Parser)]
#[command(name = "meter-bench", about = "End-to-end benchmark with same-run baselines")]
struct Cli {
    /// Seconds of load per measurement.
    #[arg(long, default_value_t = 15)]
    duration: u64,
    /// The shape of the load; the options below override its values.
    #[arg(long, value_enum, default_value_t = Shape::Benchmark)]
    shape: Shape,
    /// Reporting sources (compute nodes).
    #[arg(long)]
    sources: Option<usize>,
    /// Projects each source reports for (a batch cycles over them).
    #[arg(long)]
    projects_per_source: Option<usize>,
    /// Events per Report call.
    #[arg(long)]
    batch: Option<usize>,
    /// Requests in flight.
    #[arg(long)]
    concurrency: Option<usize>,
    /// Target events/s (0: as fast as the pipeline acknowledges).
    #[arg(long)]
    rate: Option<u64>,
    /// Quotas are set this many active-time seconds above a project's usage
    /// (1 in 200 projects, while the load runs).
    #[arg(long)]
    quota_margin: Option<u64>,
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Replicas of every topic (3 on the 3-broker stack, `METER_STACK_BROKERS=3`).
    #[arg(long, default_value_t = 1)]
    replication_factor: i32,
    /// Aggregator instances (processes in one consumer group) in the pipeline run.
    #[arg(long, default_value_t = 1)]
    aggregators: usize,
    /// Measure only the pipeline (for profiling runs): no ratios.
    #[arg(long)]
    skip_baselines: bool,
    /// Every event carries a unique idempotency key (the cost of keys).
    #[arg(long)]
    keys: bool,
    /// Also measure the aggregator alone against the load as a backlog
    /// (acknowledged with no aggregator running, then counted by one):
    /// the rate it keeps up with, its CPU per event.
    #[arg(long)]
    catch_up: bool,
    /// Keep the run's Kafka topics and ClickHouse databases (deleted at
    /// the end by default: the broker's work grows with every partition it
    /// holds, and a run's databases are hundreds of MB).
    #[arg(long, alias = "keep-topics")]
    keep_data: bool,
    /// Also measure ingest alone over Neon JSON (`POST /v1/events`), the
    /// same events with keys, next to ingest alone over gRPC.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    stack: StackArgs,
}

/// Load shapes (issue 19): the one every earlier figure used, and the two
/// a production fleet has.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Shape {
    /// 64 sources x 16 projects, 1,000 events per batch (~60 per project),
    /// 32 in flight, as fast as acknowledged.
    Benchmark,
    /// Collectors (a proxy, a storage service): 16 sources over 50,000
    /// projects, 2,000 events per batch, each event another project.
    Collectors,
    /// 100,000 compute nodes, one project each, 5-event batches at 20,000
    /// events/s in all (each node every ~25 s), 256 in flight.
    SmallSources,
}

impl Shape {
    /// sources, projects per source, batch, concurrency, rate, quota margin
    fn values(self) -> (usize, usize, usize, usize, u64, u64) {
        match self {
            Shape::Benchmark => (64, 16, 1000, 32, 0, 50),
            Shape::Collectors => (16, 3125, 2000, 32, 0, 2),
            Shape::SmallSources => (100_000, 1, 5, 256, 20_000, 2),
        }
    }
}

/// The pids of an engine of the stack: `<what>/<what>.pid`, and one per
/// node of a cluster (`<what>/node<i>/<what>.pid`).
fn stack_pids(dir: &std::path::Path, what: &str) -> Vec<u32> {
    let files = (1..=9).map(|i| format!("{what}/node{i}/{what}.pid"));
    pids_in(dir, std::iter::once(format!("{what}/{what}.pid")).chain(files))
}

/// The pids of ClickHouse: the one server, or every replica
/// (`clickhouse/`, `clickhouse2/`, ...).
fn clickhouse_pids(dir: &std::path::Path) -> Vec<u32> {
    let replicas = (2..=9).map(|i| format!("clickhouse{i}/clickhouse.pid"));
    pids_in(dir, std::iter::once("clickhouse/clickhouse.pid".to_owned()).chain(replicas))
}

/// The pids written in those of `files` (relative to `dir`) that exist.
fn pids_in(dir: &std::path::Path, files: impl Iterator<Item = String>) -> Vec<u32> {
    files.filter_map(|f| std::fs::read_to_string(dir.join(f)).ok()?.trim().parse().ok()).collect()
}

/// CPU and peak memory of all of `pids` (CPU added up, memory too).
fn usage_of_all(pids: &[u32]) -> Usage {
    pids.iter().map(|p| usage_of(*p)).fold(Usage::default(), |a, b| Usage {
        cpu_s: a.cpu_s + b.cpu_s,
        peak_rss_mib: a.peak_rss_mib + b.peak_rss_mib,
    })
}

fn line(name: &str, r: &Rate, base: Option<(&str, f64)>) {
    let ratio = base
        .filter(|(_, v)| v.is_finite() && *v > 0.0)
        .map_or(String::new(), |(b, v)| format!("  = {:.2} x {b}", r.per_second() / v));
    println!("  {name:<46} {:>12.0} events/s  ({} events in {:.1} s){ratio}", r.per_second(), r.events, r.seconds);
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    meter_runtime::init_logging_or("warn");
    let cli = Cli::parse();
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH)?.as_secs();
    let prefix = format!("bench{:x}", t % 0xff_ffff);
    let dir = std::fs::canonicalize(&cli.stack.stack_dir)?.join("bench").join(&prefix);
    std::fs::create_dir_all(&dir)?;
    let (sources, per_source, batch, concurrency, rate, margin) = cli.shape.values();
    let load = LoadConfig {
        prefix: prefix.clone(),
        sources: cli.sources.unwrap_or(sources),
        projects_per_source: cli.projects_per_source.unwrap_or(per_source),
        batch: cli.batch.unwrap_or(batch),
        concurrency: cli.concurrency.unwrap_or(concurrency),
        rate: cli.rate.unwrap_or(rate),
        duration: Duration::from_secs(cli.duration),
        keys: cli.keys,
    };
    let quota_margin = cli.quota_margin.unwrap_or(margin);
    println!(
        "meter-bench {prefix}: shape {:?}: {} sources x {} projects, {} events per batch, {} in flight, rate {} (0: as acknowledged), {} s per measurement, {} partitions",
        cli.shape, load.sources, load.projects_per_source, load.batch, load.concurrency, load.rate, cli.duration, cli.partitions
    );
    let base_kafka = KafkaConfig {
        brokers: cli.stack.brokers.clone(),
        partitions: cli.partitions,
        replication_factor: cli.replication_factor,
        ..KafkaConfig::default()
    };

    let none = Rate { events: 0, seconds: 1.0 };
    let meterd = std::fs::canonicalize(&cli.stack.meterd)?;
    let (transport, kafka, alone) = if cli.skip_baselines {
        (none, none, None)
    } else {
        let kcfg = base_kafka.clone().with_topic_prefix(&format!("{prefix}-kbase"));
        meter_kafka::ensure_topics(&kcfg).await?;
        let transport = baselines::transport(&load).await?;
        let kafka = baselines::kafka(&load, &kcfg, &kcfg.events_topic).await?;
        let icfg = base_kafka.clone().with_topic_prefix(&format!("{prefix}-ingest"));
        let alone = ours::ingest_alone(&load, &meterd, &icfg, &cli.stack, &dir).await?;
        (transport, kafka, Some(alone))
    };
    let json = if cli.json {
        let jcfg = base_kafka.clone().with_topic_prefix(&format!("{prefix}-json"));
        Some(neon_json::ingest_alone_json(&load, &meterd, &jcfg, &cli.stack, &dir).await?)
    } else {
        None
    };
    println!("pipeline run starting");

    let ours_kafka = base_kafka.clone().with_topic_prefix(&prefix);
    let engines = [stack_pids(&cli.stack.stack_dir, "kafka"), clickhouse_pids(&cli.stack.stack_dir)];
    let engines_before: Vec<Usage> = engines.iter().map(|p| usage_of_all(p)).collect();
    let broker_jit = || engines[0].iter().map(|&p| ours::thread_cpu_s(p, ours::is_jit_thread)).sum::<f64>();
    let jit_before = broker_jit();
    // This process drives the load (and checks it): its CPU is taken from the pipeline's machine.
    let bench_before = ours::usage_of(std::process::id());
    let ours = ours::run(&load, quota_margin, cli.aggregators, &meterd, &ours_kafka, &cli.stack, &dir).await?;
    let engines_after: Vec<Usage> = engines.iter().map(|p| usage_of_all(p)).collect();
    let jit = broker_jit() - jit_before;
    let bench_cpu = ours::usage_of(std::process::id()).cpu_s - bench_before.cpu_s;

    let ch_cfg = cli.stack.store(&ours::database_of(&prefix, "chbase"));
    meter_store::migrate(&ch_cfg).await?;
    let events = ours.ingest.map_or(1_000_000, |r| r.events);
    let (ch, ch_rows) = if cli.skip_baselines {
        (none, 0.0)
    } else {
        baselines::clickhouse(&load, &Store::new(&ch_cfg)?, events, 200_000).await?
    };

    println!("\nthroughput (same load, same broker and server, this run):");
    line("transport baseline (tonic, does nothing)", &transport, None);
    line("Kafka baseline (rdkafka, ingest's records)", &kafka, None);
    line("ClickHouse baseline (RowBinary, aggregator's rows)", &ch, None);
    println!("  {:<46} {:>12.0} rows/s", "  (rows)", ch_rows);
    let k = if cli.skip_baselines { f64::NAN } else { kafka.per_second() };
    if let Some((r, u)) = &alone {
        line("ingest alone (no other role running)", r, Some(("Kafka baseline", k)));
        println!(
            "  {:<46} {:>12}  = {:.2} x transport baseline; {:.2} us CPU per event, {:.1} MiB peak RSS",
            "",
            "",
            r.per_second() / transport.per_second(),
            u.cpu_s * 1e6 / r.events.max(1) as f64,
            u.peak_rss_mib
        );
    }
    if let Some((r, u)) = &json {
        let grpc = alone.as_ref().map_or(f64::NAN, |(g, _)| g.per_second());
        line("ingest alone over Neon JSON (POST /v1/events)", r, Some(("ingest alone (gRPC)", grpc)));
        println!(
            "  {:<46} {:>12}  {:.2} us CPU per event, {:.1} MiB peak RSS",
            "",
            "",
            u.cpu_s * 1e6 / r.events.max(1) as f64,
            u.peak_rss_mib
        );
    }
    if let Some(r) = &ours.ingest {
        line("ingest in the pipeline: acknowledged", r, Some(("Kafka baseline", k)));
        println!("  {:<46} {:>12}  = {:.2} x transport baseline", "", "", r.per_second() / transport.per_second());
    }
    let store_limit = k.min(ch.per_second());
    match &ours.to_clickhouse {
        Some(r) => {
            line("end to end: ack -> ClickHouse (exact)", r, Some(("min(Kafka, ClickHouse) baseline", store_limit)));
            // Before 2026-12-04 the figure counted the checking read itself.
            let read = ours.exact_read_s.unwrap_or(0.0);
            let with_read = Rate { events: r.events, seconds: r.seconds + read };
            println!(
                "  {:<46} {:>12.0} events/s  (counting the read that checked it, {read:.2} s)",
                "",
                with_read.per_second()
            );
        }
        None => println!("  end to end: ClickHouse never showed every acknowledged event (10 min)"),
    }
    match &ours.to_totals {
        Some(r) => line("end to end: ack -> totals topic (exact)", r, Some(("Kafka baseline", k))),
        None => println!("  end to end: the totals topic never showed every acknowledged event"),
    }
    println!(
        "\naggregator lag (records) by second: {}",
        ours.lag.iter().map(|(t, l)| format!("{t}:{l:.0}")).collect::<Vec<_>>().join(" ")
    );
    let steady = format!("after the first {} s of load", ours::WARM_UP.as_secs());
    let hops = [
        ("all", &ours.suspend_latency),
        (steady.as_str(), &ours.suspend_latency_steady),
        ("after warm-up, crossing -> enforcer's decision", &ours.to_decision_steady),
        ("after warm-up, decision -> control plane", &ours.decision_to_call_steady),
    ];
    for (what, h) in hops {
        match h {
            Some(h) if !h.is_empty() => println!(
                "crossing-to-suspend under load ({what}): p50 {} ms, p99 {} ms, p99.9 {} ms, max {} ms over {} suspensions",
                h.value_at_quantile(0.5),
                h.value_at_quantile(0.99),
                h.value_at_quantile(0.999),
                h.max(),
                h.len()
            ),
            _ => println!("crossing-to-suspend ({what}): no suspension happened"),
        }
    }
    if ours.crossed_by_quota > 0 {
        println!(
            "  ({} suspensions crossed when their quota was set below the usage: measured from the quota's request)",
            ours.crossed_by_quota
        );
    }
    if let Some(s) = &ours.slowest {
        println!("slowest crossing after warm-up: {s}");
    }
    println!(
        "\nCPU seconds and peak memory during the pipeline run ({:.1} s of load + catch-up):",
        ours.to_totals.map_or(0.0, |r| r.seconds)
    );
    for (role, u) in &ours.roles {
        println!("  meterd {role:<10} {:>7.1} CPU s  {:>7.1} MiB peak RSS", u.cpu_s, u.peak_rss_mib);
    }
    for (name, (b, a)) in ["kafka", "clickhouse"].iter().zip(engines_before.iter().zip(&engines_after)) {
        println!("  {name:<17} {:>7.1} CPU s  {:>7.1} MiB peak RSS (since start)", a.cpu_s - b.cpu_s, a.peak_rss_mib);
    }
    let broker_cpu = engines_after[0].cpu_s - engines_before[0].cpu_s;
    println!("    of the broker's, its JIT compiler (C1, C2 threads) {jit:.1} CPU s");
    println!("  load generator    {bench_cpu:>7.1} CPU s  (meter-bench: building, sending and checking the load)");
    if jit > 0.2 * broker_cpu {
        // After a start the broker compiles its hot paths over several runs
        // (BENCHMARKS.md, twenty-third session): figures are low until then.
        println!(
            "    note: the broker was still warming up ({:.0} % of its CPU compiling): run again for steady-state figures",
            100.0 * jit / broker_cpu.max(f64::EPSILON)
        );
    }
    if let Some(r) = &ours.restore {
        println!(
            "\nrestore of the whole state (usage.totals read to its end, states and keys rebuilt): {:.2} s for {} records ({:.1} MiB), {} projects, {} idempotency keys in {:.1} MiB of key chunks ({:.1} B per key)",
            r.seconds,
            r.records,
            r.bytes as f64 / (1 << 20) as f64,
            r.projects,
            r.keys,
            r.key_bytes as f64 / (1 << 20) as f64,
            if r.keys > 0 { r.key_bytes as f64 / r.keys as f64 } else { 0.0 }
        );
    }
    println!(
        "\nexact: {}",
        if ours.exact { "yes (ClickHouse and the totals topic equal every acknowledged event)" } else { "NO" }
    );
    if cli.catch_up {
        let kcfg = base_kafka.clone().with_topic_prefix(&format!("{prefix}-catchup"));
        let c = catch_up::catch_up(&load, &meterd, &kcfg, &cli.stack, &dir).await?;
        println!(
            "\naggregator alone against the same load as a backlog: {:.0} events/s ({} events in {:.1} s), \
             {:.1} CPU s = {:.2} us per event, {:.1} MiB peak RSS",
            c.rate.per_second(),
            c.rate.events,
            c.rate.seconds,
            c.usage.cpu_s,
            c.usage.cpu_s * 1e6 / c.backlog.max(1) as f64,
            c.usage.peak_rss_mib
        );
    }
    if !cli.keep_data {
        // Every run's topics kept would leave thousands of partitions on the
        // broker, each adding to its work in later runs.
        for suffix in ["", "-kbase", "-ingest", "-json", "-catchup"] {
            meter_kafka::delete_topics(&base_kafka.clone().with_topic_prefix(&format!("{prefix}{suffix}"))).await?;
        }
        drop_databases(&cli.stack, &ours::database_of(&prefix, "")).await?;
    }
    Ok(())
}

/// Drops the run's ClickHouse databases: `stem` and every `stem_*`
/// (`ours::database_of`: the pipeline's, the baselines', the catch-up's),
/// on every replica of a replicated stack.
async fn drop_databases(stack: &StackArgs, stem: &str) -> anyhow::Result<()> {
    let http = reqwest::Client::new();
    let sql = |q: String| http.post(&stack.clickhouse_url).body(q).send();
    let listed = sql(format!(
        "SELECT name FROM system.databases WHERE name = '{stem}' OR startsWith(name, '{stem}_') FORMAT TabSeparated"
    ))
    .await?
    .error_for_status()?
    .text()
    .await?;
    let on_cluster = match stack.clickhouse_cluster.as_str() {
        "" => String::new(),
        c => format!(" ON CLUSTER {c}"),
    };
    for db in listed.lines().filter(|l| !l.is_empty()) {
        let r = sql(format!("DROP DATABASE IF EXISTS {db}{on_cluster}")).await?;
        if let Err(e) = r.error_for_status_ref() {
            anyhow::bail!("cannot drop the run's database {db}: {e}: {}", r.text().await.unwrap_or_default());
        }
    }
    Ok(())
}
