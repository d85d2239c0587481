//! Checks: samples while the faults run, and the exact comparison at the end.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use meter_core::Metric;
use meter_kafka::KafkaConfig;
use meter_sim::{compare, SendStats, Truth};
use meter_store::Store;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::adjust::Ledger;
use crate::harness::ChaosReport;

/// Samples ClickHouse every second: no counter may go down, or above what
/// was sent so far (acknowledged or not).
pub(crate) struct Sampler {
    stop: CancellationToken,
    task: JoinHandle<(Vec<String>, usize)>,
}

impl Sampler {
    pub(crate) fn start(store: Store, prefix: String, stats: Arc<SendStats>) -> Sampler {
        let stop = CancellationToken::new();
        let s = stop.clone();
        let task = tokio::spawn(async move {
            let mut last: BTreeMap<(String, Metric), u64> = BTreeMap::new();
            let (mut violations, mut samples) = (Vec::new(), 0);
            while !s.is_cancelled() {
                tokio::time::sleep(Duration::from_secs(1)).await;
                // Read the upper bound first: anything stored was sent before.
                let sent = stats.attempted.lock().expect("attempted").clone();
                let Ok(usage) = store.usage_with_prefix(&prefix).await else { continue }; // ClickHouse down
                samples += 1;
                for u in &usage {
                    let bound = sent.projects.get(&u.project_id).cloned().unwrap_or_default();
                    for m in Metric::COUNTERS {
                        let v = u.get(m);
                        let prev = last.insert((u.project_id.clone(), m), v).unwrap_or(0);
                        if v < prev {
                            violations.push(format!("{} {m} went down: {prev} -> {v}", u.project_id));
                        }
                        if v > bound.get(m) {
                            violations.push(format!(
                                "{} {m} = {v} exceeds what was sent ({})",
                                u.project_id,
                                bound.get(m)
                            ));
                        }
                    }
                }
            }
            (violations, samples)
        });
        Sampler { stop, task }
    }

    pub(crate) async fn stop(self) -> (Vec<String>, usize) {
        self.stop.cancel();
        self.task.await.unwrap_or_default()
    }
}

/// Waits for ClickHouse and the totals topic to equal the ledger, then
/// fills in the report.
pub(crate) async fn final_check(
    report: &mut ChaosReport,
    store: &Store,
    kafka: &KafkaConfig,
    prefix: &str,
    truth: &Truth,
    ledger: &Ledger,
) -> anyhow::Result<()> {
    report.adjustments_applied = ledger.made;
    report.adjustment_retries = ledger.retries;
    let started = Instant::now();
    let mut diff = Vec::new();
    while started.elapsed() < Duration::from_secs(180) {
        match store.usage_with_prefix(prefix).await {
            Ok(usage) => {
                diff = compare(truth, &usage);
                if diff.is_empty() {
                    report.converged_after = Some(started.elapsed());
                    break;
                }
            }
            Err(e) => tracing::warn!(error = %e, "chaos.clickhouse_query_failed"),
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    for m in &diff {
        if m.stored > m.truth {
            report.over_counted_value += m.stored - m.truth;
        } else {
            report.under_counted_value += m.truth - m.stored;
        }
    }
    // The totals topic is committed after ClickHouse is written: give it
    // its own time to converge.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        report.totals_topic_exact = totals_match(kafka, truth, &ledger.applied).await?;
        if report.totals_topic_exact || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    if report.totals_topic_exact {
        report.converged_after = report.converged_after.map(|_| started.elapsed());
    }
    // ClickHouse's adjustments: exactly the ledger.
    let want: Vec<(String, i64)> = ledger.applied.iter().map(|(p, d)| (p.clone(), *d as i64)).collect();
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        if let Ok(sums) = store.adjustment_sums(prefix).await {
            let got: Vec<(String, i64)> = sums.into_iter().map(|s| (s.project_id, s.delta)).collect();
            report.adjustments_exact = got == want;
        }
        if report.adjustments_exact || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    Ok(())
}

/// Waits (up to 120 s) for another replica's usage to equal the truth.
pub(crate) async fn replica_exact(replica: &Store, prefix: &str, truth: &Truth) -> bool {
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        match replica.usage_with_prefix(prefix).await {
            Ok(usage) if compare(truth, &usage).is_empty() => return true,
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "chaos.replica_query_failed"),
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// True when every project's counters in the totals topic are its usage
/// plus the adjustments applied to it (`written_data_bytes`).
async fn totals_match(kafka: &KafkaConfig, truth: &Truth, adjusted: &BTreeMap<String, u64>) -> anyhow::Result<bool> {
    let kafka = kafka.clone();
    let states = tokio::task::spawn_blocking(move || {
        let all: Vec<i32> = (0..kafka.partitions).collect();
        meter_kafka::read_partitions_to_end(&kafka, &kafka.totals_topic, &all, Duration::from_secs(60))
    })
    .await??;
    let mut latest: BTreeMap<String, meter_core::Totals> = BTreeMap::new();
    for (_, v) in states.into_values().flatten() {
        for s in meter_proto::decode_usage(&v)? {
            latest.insert(s.project_id.to_string(), s);
        }
    }
    let written = Metric::WrittenDataBytes.counter_index().expect("a counter");
    let ids: std::collections::BTreeSet<&String> = truth.projects.keys().chain(adjusted.keys()).collect();
    for id in ids {
        let Some(s) = latest.get(id) else { return Ok(false) };
        let usage = truth.projects.get(id).map(|t| t.counters).unwrap_or_default();
        for (i, used) in usage.iter().enumerate() {
            let want = used + if i == written { adjusted.get(id).copied().unwrap_or(0) } else { 0 };
            if s.cycles.values().map(|c| c.values[i]).sum::<u64>() != want {
                return Ok(false);
            }
        }
    }
    Ok(true)
}
