//! The aggregator alone against a backlog (`meter-bench --catch-up`): the
//! load is acknowledged by `meterd ingest` with no aggregator running, then
//! one `meterd aggregate` starts and counts it all, with nothing else on
//! the machine but Kafka. Its rate is the most the aggregator keeps up
//! with (the pipeline run shares 2 cores among every role), and its CPU per
//! event compares binaries without the other roles' noise.

use std::path::Path;
use std::time::{Duration, Instant};

use meter_chaos::StackArgs;
use meter_kafka::KafkaConfig;

use crate::baselines::{client, drive_client, Rate};
use crate::ours::{start, usage_of, Usage};
use meter_bench::load::LoadConfig;

/// What the aggregator did with the backlog.
#[derive(Debug)]
pub(crate) struct CatchUp {
    /// Events acknowledged by ingest, over the time from the aggregator's
    /// first counted transaction to its last.
    pub(crate) rate: Rate,
    /// Events in the backlog (all counted).
    pub(crate) backlog: u64,
    /// The aggregator's CPU and peak memory over the whole catch-up.
    pub(crate) usage: Usage,
}

/// Events the aggregator at `admin` has committed.
async fn counted(admin: &str) -> Option<u64> {
    let body = reqwest::get(format!("http://{admin}/metrics")).await.ok()?.text().await.ok()?;
    body.lines().find_map(|l| l.strip_prefix("meter_aggregator_events_total ")).and_then(|v| v.trim().parse().ok())
}

/// Runs the catch-up in topics prefixed `kafka`'s.
pub(crate) async fn catch_up(
    load: &LoadConfig,
    meterd: &Path,
    kafka: &KafkaConfig,
    stack: &StackArgs,
    dir: &Path,
) -> anyhow::Result<CatchUp> {
    let database = crate::ours::database_of(&load.prefix, "catchup");
    let group = format!("{}-catchup.agg", load.prefix);
    let dir = dir.join("catch-up");
    std::fs::create_dir_all(&dir)?;
    let (ports, ingest) = start(&["ingest"], meterd, kafka, stack, &dir, &database, &group).await?;
    let (_, acked): (_, Rate) = drive_client(load, client(&format!("http://127.0.0.1:{}", ports.ingest)).await?).await;
    anyhow::ensure!(acked.events > 0, "ingest acknowledged nothing");
    drop(ingest);
    let (_, aggregator) = start(&["aggregate"], meterd, kafka, stack, &dir, &database, &group).await?;
    let (admin, pid) = (aggregator[0].admin().to_owned(), aggregator[0].pid());
    let before = usage_of(pid);
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut first: Option<(Instant, u64)> = None;
    loop {
        let n = counted(&admin).await.unwrap_or(0);
        if n > 0 && first.is_none() {
            first = Some((Instant::now(), n));
        }
        if n >= acked.events {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "the aggregator counted {n} of {} events in 900 s", acked.events);
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let after = usage_of(pid);
    let (t0, n0) = first.expect("counted before done");
    Ok(CatchUp {
        rate: Rate { events: acked.events - n0, seconds: t0.elapsed().as_secs_f64() },
        backlog: acked.events,
        usage: Usage { cpu_s: after.cpu_s - before.cpu_s, peak_rss_mib: after.peak_rss_mib },
    })
}
