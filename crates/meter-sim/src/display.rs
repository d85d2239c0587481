//! What the quickstart shows: progress lines while the load runs, and the
//! final table of ClickHouse totals next to the ground truth.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meter_core::Metric;
use meter_sim::{compare, RunSummary, SendStats, Truth};
use meter_store::{ProjectUsage, Store};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_util::sync::CancellationToken;

pub(crate) struct Progress {
    stats: Arc<SendStats>,
    store: Store,
    prefix: String,
    metrics_url: String,
}

impl Progress {
    pub(crate) fn new(stats: Arc<SendStats>, store: Store, prefix: String, metrics_url: String) -> Self {
        Progress { stats, store, prefix, metrics_url }
    }

    pub(crate) async fn run(self, every: Duration, finish: CancellationToken) {
        let started = Instant::now();
        let mut last = (0u64, Instant::now());
        loop {
            tokio::select! {
                _ = finish.cancelled() => return,
                _ = tokio::time::sleep(every) => {}
            }
            let acked = self.stats.events_acked.load(Ordering::Relaxed);
            let rate = (acked - last.0) as f64 / last.1.elapsed().as_secs_f64();
            last = (acked, Instant::now());
            let scraped = scrape(&self.metrics_url).await.unwrap_or_default();
            let lag = metric_value(&scraped, "meter_aggregator_consumer_lag_records");
            let counted = metric_value(&scraped, "meter_aggregator_events_total");
            println!(
                "[{:>4}s] acked {acked} events ({rate:.0}/s), {} batches, {} retries, {} duplicates sent | aggregator: counted {} events, lag {} records",
                started.elapsed().as_secs(),
                self.stats.batches_acked.load(Ordering::Relaxed),
                self.stats.retries.load(Ordering::Relaxed),
                self.stats.duplicates_sent.load(Ordering::Relaxed),
                counted.map_or("?".into(), |v| format!("{v:.0}")),
                lag.map_or("?".into(), |v| format!("{v:.0}")),
            );
            if let Ok(usage) = self.store.usage_with_prefix(&self.prefix).await {
                for m in Metric::ALL {
                    let mut top: Vec<&ProjectUsage> = usage.iter().collect();
                    top.sort_by_key(|u| std::cmp::Reverse(u.get(m)));
                    let line: Vec<String> =
                        top.iter().take(3).map(|u| format!("{}={}", short(&u.project_id), u.get(m))).collect();
                    println!("         top {:<22} {}", m.name(), line.join("  "));
                }
            }
        }
    }
}

fn short(id: &str) -> &str {
    id.rsplit('-').next().unwrap_or(id)
}

/// A plain HTTP/1.0 GET of a `http://host:port/path` URL.
async fn scrape(url: &str) -> Option<String> {
    let rest = url.strip_prefix("http://")?;
    let (host, path) = rest.split_once('/').map_or((rest, "/".to_string()), |(h, p)| (h, format!("/{p}")));
    let mut s = tokio::time::timeout(Duration::from_secs(2), tokio::net::TcpStream::connect(host)).await.ok()?.ok()?;
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {host}\r\n\r\n").as_bytes()).await.ok()?;
    let mut body = String::new();
    tokio::time::timeout(Duration::from_secs(2), s.read_to_string(&mut body)).await.ok()?.ok()?;
    Some(body)
}

/// Sum of every series of a metric in a Prometheus text exposition.
fn metric_value(text: &str, name: &str) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| l.starts_with(name) && matches!(l.as_bytes().get(name.len()), Some(b' ' | b'{')))
        .filter_map(|l| l.rsplit(' ').next()?.parse().ok())
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

pub(crate) fn print_sent(summary: &RunSummary, stats: &SendStats) {
    let secs = summary.elapsed.as_secs_f64();
    println!(
        "\nsent {} events in {} acknowledged batches over {secs:.1} s ({:.0} events/s); {} retries, {} duplicate batches resent, {} rejected",
        summary.truth.events,
        stats.batches_acked.load(Ordering::Relaxed),
        summary.truth.events as f64 / secs,
        stats.retries.load(Ordering::Relaxed),
        stats.duplicates_sent.load(Ordering::Relaxed),
        stats.rejected.load(Ordering::Relaxed),
    );
}

/// Waits until ClickHouse equals the truth (or `timeout`), then prints the
/// per-project table. True when every value is exact.
pub(crate) async fn verify(
    store: &Store,
    prefix: &str,
    truth: &Truth,
    timeout: Duration,
    stop: &CancellationToken,
) -> anyhow::Result<bool> {
    let started = Instant::now();
    let (usage, mismatches) = loop {
        let usage = store.usage_with_prefix(prefix).await?;
        let mismatches = compare(truth, &usage);
        if mismatches.is_empty() || started.elapsed() > timeout || stop.is_cancelled() {
            break (usage, mismatches);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    };
    println!(
        "\nper-project totals, read back from ClickHouse (the rollups, then usage_hourly FINAL) next to the simulator's ground truth:\n"
    );
    print!("{:<18} {:<13}", "project", "source");
    for m in Metric::ALL {
        print!(" {:>22}", m.name());
    }
    println!();
    for (id, t) in &truth.projects {
        let u = usage.iter().find(|u| &u.project_id == id);
        print!("{:<18} {:<13}", id, "clickhouse");
        for m in Metric::ALL {
            print!(" {:>22}", u.map_or("-".into(), |u| u.get(m).to_string()));
        }
        println!();
        print!("{:<18} {:<13}", "", "ground truth");
        for m in Metric::ALL {
            print!(" {:>22}", t.get(m));
        }
        let exact = !mismatches.iter().any(|x| &x.project_id == id);
        println!("  {}", if exact { "exact" } else { "MISMATCH" });
    }
    if mismatches.is_empty() {
        println!(
            "\nall {} projects x 5 metrics in ClickHouse equal the ground truth exactly (converged {:.1} s after the load stopped)",
            truth.projects.len(),
            started.elapsed().as_secs_f64()
        );
        Ok(true)
    } else {
        println!(
            "\n{} values differ from the ground truth after {:.0} s:",
            mismatches.len(),
            started.elapsed().as_secs_f64()
        );
        for m in mismatches.iter().take(20) {
            println!("  {} {}: clickhouse {} truth {}", m.project_id, m.metric, m.stored, m.truth);
        }
        Ok(false)
    }
}
