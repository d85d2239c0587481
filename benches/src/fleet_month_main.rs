//! `meter-bench-fleet-month`: billing reads over a month of a large fleet,
//! without and with rollups, on the same data in the same run
//! (BENCHMARKS.md). Needs the local ClickHouse.
//!
//! ```text
//! meter-bench-fleet-month --projects 100000 --days 31 --batches-per-hour 12
//! ```
//! Writes October 2026 into a database of its own as the load role would
//! (`usage_hourly`, one row per project, metric, hour, batch and branch),
//! generated inside ClickHouse: every project has 1-3 branches whose sizes a
//! storage collector reads once an hour (a `logical_size_bytes` row per
//! branch and a byte-hours row per project and hour); 70 % of the projects
//! run a compute 1-8 hours a day (the rest only store), reporting the four
//! counters `--batches-per-hour` times an hour. Then it measures one
//! project's 30-day hourly history, a 100-project page of daily history (ids
//! given, and listed by the cursor), the fleet's month, and the documented
//! invoice SQL (docs/schema.md) for the whole fleet; rolls the month up as
//! the load role does (timing each day); measures the same reads again; and
//! prints the disk each table takes per project-month. `--reuse DB
//! --reads-only` measures an earlier run's database as it stands.

use std::time::Instant;

use clap::Parser;
use hdrhistogram::Histogram;
use meter_core::cycle::days_from_civil;
use meter_core::finality::{Finality, DAY_MS};
use meter_core::history::{Granularity, HistoryRange};
use meter_core::Metric;
use meter_store::{RollupRule, Store, StoreConfig};

#[derive(Debug, Parser)]
#[command(name = "meter-bench-fleet-month", about = "Billing reads over a fleet's month, without and with rollups")]
struct Cli {
    #[arg(long, default_value_t = 100_000)]
    projects: u64,
    /// Days of October 2026 written (the month has 31).
    #[arg(long, default_value_t = 31)]
    days: u64,
    /// Reports per hour of a running compute (12: every 5 minutes; 60: every minute).
    #[arg(long, default_value_t = 12)]
    batches_per_hour: u64,
    /// Requests of each per-project read, each run.
    #[arg(long, default_value_t = 20)]
    requests: usize,
    /// Requests of each whole-fleet read, each run.
    #[arg(long, default_value_t = 3)]
    fleet_requests: usize,
    /// Measure an earlier run's database (rolled up or not) instead of writing one.
    #[arg(long)]
    reuse: Option<String>,
    /// Only measure the reads as the database stands (no rollup job).
    #[arg(long)]
    reads_only: bool,
    #[arg(long, env = "METER_CLICKHOUSE_URL", default_value = "http://127.0.0.1:8123")]
    clickhouse: String,
}

const METRICS: &str = "['active_time_seconds', 'compute_time_seconds', 'written_data_bytes', 'data_transfer_bytes']";
const COLUMNS: &str =
    "project_id, metric, hour, source_id, batch_seq, branch_id, value, last_value, last_time_ms, version";

/// The statements writing day `d` (0-based) of the month starting at `month` (seconds).
fn day_statements(cli: &Cli, month: i64, d: u64) -> Vec<String> {
    let (p, b) = (cli.projects, cli.batches_per_hour);
    let day = month + d as i64 * 86_400;
    let step = 60 / b.max(1);
    // Project p runs from hour (7p mod 24) for [0,0,0,1,1,2,2,3,5,8][p mod 10] hours.
    let active = "(h + 24 - (p * 7) % 24) % 24 < [0, 0, 0, 1, 1, 2, 2, 3, 5, 8][p % 10 + 1]";
    let compute = format!(
        "INSERT INTO usage_hourly ({COLUMNS})
         SELECT concat('fleet-p', toString(100000 + p)) AS project_id, arrayJoin({METRICS}) AS m,
            toDateTime({day} + h * 3600), concat('compute-', toString(p), '/0000000000000001'),
            toUInt64(({d} * 24 + h) * 60 + k * {step}), '',
            toUInt64(multiIf(m = 'active_time_seconds', {step} * 60, m = 'compute_time_seconds', {step} * 60 * (1 + p % 4),
                m = 'written_data_bytes', (p * 7919 + n) % 5000000, (p * 104729 + n) % 2000000)),
            toUInt64(0), toInt64(0), n
         FROM (SELECT number AS n, n % {p} AS p, intDiv(n, {p}) % 24 AS h, intDiv(n, {p} * 24) AS k FROM numbers({}))
         WHERE {active}",
        p * 24 * b
    );
    let size = format!("toUInt64(100000000 + p * 1000 + ({d} * 24 + h) * 100 + br)");
    let storage = format!(
        "INSERT INTO usage_hourly ({COLUMNS})
         SELECT concat('fleet-p', toString(100000 + p)), 'logical_size_bytes', toDateTime({day} + h * 3600),
            'storage/0000000000000001', toUInt64({d} * 24 + h), concat('br-', toString(br)),
            {size}, {size}, toInt64(({day} + h * 3600) * 1000 + 1800000), n
         FROM (SELECT number AS n, n % {p} AS p, intDiv(n, {p}) % 24 AS h, intDiv(n, {p} * 24) AS br FROM numbers({}))
         WHERE br < 1 + p % 3",
        p * 24 * 3
    );
    let byte_hours = format!(
        "INSERT INTO usage_hourly ({COLUMNS})
         SELECT concat('fleet-p', toString(100000 + p)), 'logical_size_bytes_hour', toDateTime({day} + h * 3600),
            'storage/0000000000000001', toUInt64({d} * 24 + h), '',
            toUInt64((1 + p % 3) * (100000000 + p * 1000 + ({d} * 24 + h) * 100)), toUInt64(0), toInt64(0), n
         FROM (SELECT number AS n, n % {p} AS p, intDiv(n, {p}) % 24 AS h FROM numbers({}))",
        p * 24
    );
    vec![compute, storage, byte_hours]
}

/// The documented invoice query (docs/schema.md), for October 2026 in `db`.
fn invoice_sql(db: &str) -> String {
    let doc = include_str!("../../docs/schema.md");
    let part = doc.split("<!-- query: invoice_lines -->").nth(1).expect("the invoice query is documented");
    let body = part.split("```sql\n").nth(1).expect("its SQL block");
    body[..body.find("```").expect("block end")]
        .replace("meter.", &format!("{db}."))
        .replace("'2026-11-01 00:00:00'", "'2026-10-01 00:00:00'")
        .replace("'2026-12-01 00:00:00'", "'2026-11-01 00:00:00'")
}

struct Reads<'a> {
    store: &'a Store,
    http: reqwest::Client,
    url: String,
    db: String,
    month: (i64, i64),
    projects: u64,
}

fn range(month: (i64, i64), granularity: Granularity) -> HistoryRange {
    HistoryRange { from_ms: month.0, to_ms: month.1, granularity, metrics: Metric::ALL.to_vec(), byte_hours: true }
}

fn id(i: u64) -> String {
    format!("fleet-p{}", 100_000 + i)
}

impl Reads<'_> {
    async fn time<F: std::future::Future<Output = anyhow::Result<()>>>(
        &self,
        name: &str,
        n: usize,
        mut f: impl FnMut(usize) -> F,
    ) -> anyhow::Result<(f64, f64)> {
        let mut h = Histogram::<u64>::new(3)?;
        for i in 0..n {
            let t = Instant::now();
            f(i).await?;
            h.record(t.elapsed().as_micros() as u64)?;
        }
        let (p50, p99) = (h.value_at_quantile(0.5) as f64 / 1000.0, h.value_at_quantile(0.99) as f64 / 1000.0);
        println!("  {name:<58} p50 {p50:>9.1} ms  p99 {p99:>9.1} ms  ({n} requests)");
        Ok((p50, p99))
    }

    async fn all(&self, cli: &Cli) -> anyhow::Result<Vec<(f64, f64)>> {
        let pick = |i: usize| (i as u64 * 7919) % self.projects;
        let mut out = Vec::new();
        out.push(
            self.time("one project, 30 days hourly", cli.requests, |i| async move {
                let r = range((self.month.1 - 30 * DAY_MS, self.month.1), Granularity::Hourly);
                let got = self.store.history(&r, &[id(pick(i))]).await?;
                anyhow::ensure!(!got.is_empty(), "no hours");
                Ok(())
            })
            .await?,
        );
        out.push(
            self.time("100 projects (ids given), the month daily", cli.requests, |i| async move {
                let start = pick(i).min(self.projects.saturating_sub(100));
                let ids: Vec<String> = (start..start + 100).map(id).collect();
                let got = self.store.history(&range(self.month, Granularity::Daily), &ids).await?;
                anyhow::ensure!(got.len() >= 100, "{} days", got.len());
                Ok(())
            })
            .await?,
        );
        out.push(
            self.time("100 projects listed by the cursor, the month daily", cli.fleet_requests, |i| async move {
                let after = id(pick(i).min(self.projects.saturating_sub(101)));
                let r = range(self.month, Granularity::Daily);
                let ids = self.store.history_projects(&r, &after, &[], 100).await?;
                anyhow::ensure!(ids.len() == 100, "{} projects listed", ids.len());
                self.store.history(&r, &ids).await?;
                Ok(())
            })
            .await?,
        );
        out.push(
            self.time("the fleet's month (GET .../consumption_history/fleet)", cli.fleet_requests, |_| async move {
                let got = self.store.fleet_history(&range(self.month, Granularity::Monthly)).await?;
                anyhow::ensure!(got.len() == 1, "{} months", got.len());
                Ok(())
            })
            .await?,
        );
        out.push(
            self.time("the fleet's invoice lines (documented SQL)", cli.fleet_requests, |_| async move {
                let r = self.http.post(&self.url).body(format!("{} FORMAT TSV", invoice_sql(&self.db))).send().await?;
                anyhow::ensure!(r.status().is_success(), "{}", r.text().await?);
                let lines = r.text().await?.lines().count() as u64;
                anyhow::ensure!(lines == self.projects, "{lines} invoice lines");
                Ok(())
            })
            .await?,
        );
        Ok(out)
    }
}

async fn sql(http: &reqwest::Client, url: &str, db: &str, q: &str) -> anyhow::Result<String> {
    let r = http.post(format!("{url}/?database={db}")).body(q.to_owned()).send().await?;
    let ok = r.status().is_success();
    let text = r.text().await?;
    anyhow::ensure!(ok, "{text}\n{q}");
    Ok(text)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    meter_runtime::init_logging_or("error");
    let cli = Cli::parse();
    let db = cli.reuse.clone().unwrap_or_else(|| format!("fleetmonth{:x}", meter_runtime::now_ms() % 0xff_ffff));
    let cfg = StoreConfig { url: cli.clickhouse.clone(), database: db.clone(), ..StoreConfig::default() };
    let store = Store::new(&cfg)?;
    let http = reqwest::Client::new();
    let month_s = days_from_civil(2026, 10, 1) * 86_400;
    // (A reused database gets the migrations since it was written.)
    meter_store::migrate(&cfg).await?;
    if cli.reuse.is_none() {
        let t = Instant::now();
        for d in 0..cli.days.min(31) {
            for q in day_statements(&cli, month_s, d) {
                sql(&http, &cli.clickhouse, &db, &q).await?;
            }
        }
        let rows = sql(&http, &cli.clickhouse, &db, "SELECT count() FROM usage_hourly").await?;
        println!(
            "meter-bench-fleet-month: {} projects, {} days, computes reporting {} times an hour: {} per-batch rows written in {:.0} s (database {db})",
            cli.projects,
            cli.days,
            cli.batches_per_hour,
            rows.trim(),
            t.elapsed().as_secs_f64()
        );
    }
    let reads = Reads {
        store: &store,
        http: http.clone(),
        url: cli.clickhouse.clone(),
        db: db.clone(),
        month: (month_s * 1000, days_from_civil(2026, 11, 1) * DAY_MS),
        projects: cli.projects,
    };
    if cli.reads_only {
        println!(
            "as the database stands (rolled up through {:?}):",
            store.rolled_through().await?.map(meter_core::cycle::rfc3339)
        );
        reads.all(&cli).await?;
        return Ok(());
    }
    {
        if store.rolled_through().await?.is_none() {
            println!("without rollups (usage_hourly FINAL):");
            reads.all(&cli).await?;
        }
        // Everything loaded now (a probe of the one partition): October is final.
        sql(
            &http,
            &cli.clickhouse,
            &db,
            &format!("INSERT INTO pipeline_watermarks VALUES (0, {})", meter_runtime::now_ms()),
        )
        .await?;
        let rule = RollupRule { finality: Finality::new(7 * DAY_MS, 10_000), partitions: 1, keep_batches_ms: None };
        let (t, mut days, mut busy, mut slowest) = (Instant::now(), 0, 0.0f64, 0.0f64);
        loop {
            let day = Instant::now();
            let pass = store.roll_up(&rule, 1, meter_runtime::now_ms()).await?;
            for c in &pass.compacted {
                println!(
                    "month {} copied through {}: {} hourly rows in {:.1} s",
                    c.month,
                    meter_core::cycle::rfc3339(c.through),
                    c.hourly_rows,
                    c.took.as_secs_f64()
                );
            }
            if pass.rolled.first().is_some_and(|r| r.hourly_rows > 0) {
                days += 1;
                // The pass's own day, without the month's compaction after it.
                let compacting: f64 = pass.compacted.iter().map(|c| c.took.as_secs_f64()).sum();
                busy += day.elapsed().as_secs_f64() - compacting;
                slowest = slowest.max(day.elapsed().as_secs_f64() - compacting);
            }
            if pass.days_left == 0 {
                break;
            }
        }
        println!(
            "rollup job: {days} days with usage rolled up in {busy:.0} s ({:.1} s a day on average, slowest {slowest:.1} s; \
             {:.0} s with the empty days after them)",
            busy / f64::from(days.max(1)),
            t.elapsed().as_secs_f64()
        );
    }
    println!(
        "with rollups (days before {}):",
        store.rolled_through().await?.map(meter_core::cycle::rfc3339).unwrap_or_default()
    );
    reads.all(&cli).await?;
    let disk = sql(
        &http,
        &cli.clickhouse,
        &db,
        "SELECT table, sum(rows), sum(bytes_on_disk) FROM system.parts
         WHERE database = currentDatabase() AND active AND table IN ('usage_hourly', 'usage_hourly_rollup', 'usage_hourly_rollup_months', 'usage_daily_rollup')
         GROUP BY table ORDER BY table FORMAT TSV",
    )
    .await?;
    println!("disk (active parts):");
    for line in disk.lines() {
        let f: Vec<&str> = line.split('\t').collect();
        let (rows, bytes): (f64, f64) = (f[1].parse()?, f[2].parse()?);
        println!(
            "  {:<27} {:>12} rows  {:>8.1} MiB  {:>7.0} bytes per project-month  ({:.1} bytes a row)",
            f[0],
            f[1],
            bytes / 1048576.0,
            bytes / cli.projects as f64 * 31.0 / cli.days.max(1) as f64,
            bytes / rows.max(1.0)
        );
    }
    Ok(())
}
