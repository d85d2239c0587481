//! A simulated fleet's totals, in ClickHouse and in the totals topic, equal
//! the simulator's ground truth exactly.

use std::sync::Arc;
use std::time::Duration;

use meter_core::Metric;
use meter_e2e::{eventually, Pipeline};
use meter_sim::{compare, run, FleetConfig, RunConfig, SendStats, Truth};
use tokio_util::sync::CancellationToken;

pub(crate) fn fleet_run(url: &str, prefix: &str, secs: u64) -> RunConfig {
    RunConfig {
        ingest_url: url.to_string(),
        token: None,
        fleet: FleetConfig {
            prefix: prefix.into(),
            projects: 30,
            computes_per_project: 2,
            nodes: 4,
            span_seconds: 300,
            backfill_seconds: 3 * 24 * 3600,
            seed: 11,
        },
        duration: Duration::from_secs(secs),
        tick: Duration::from_millis(50),
        max_batch_events: 300,
        duplicate_rate: 0.1,
        restart_rate: 0.0,
        key_twin_rate: 0.0,
    }
}

/// Runs the 6-second `fleet_run` of `prefix` against `p`'s ingest and
/// waits until the pipeline counted it exactly; returns its ground truth.
pub(crate) async fn simulated_fleet(p: &Pipeline, prefix: &str) -> Truth {
    let stats = Arc::new(SendStats::default());
    let summary = run(fleet_run(&p.ingest_url, prefix, 6), stats, CancellationToken::new(), CancellationToken::new())
        .await
        .expect("simulation");
    assert_exact(p, prefix, &summary.truth).await;
    summary.truth
}

/// Waits until ClickHouse and the totals topic both equal `truth`.
pub(crate) async fn assert_exact(p: &Pipeline, prefix: &str, truth: &Truth) {
    eventually(Duration::from_secs(90), "clickhouse equals the ground truth", || async {
        let usage = p.store.usage_with_prefix(prefix).await.map_err(|e| e.to_string())?;
        let diff = compare(truth, &usage);
        if diff.is_empty() {
            Ok(())
        } else {
            Err(format!("{} differences, first {:?}", diff.len(), diff[0]))
        }
    })
    .await;
    eventually(Duration::from_secs(60), "the totals topic equals the ground truth", || async {
        let totals = p.totals().await;
        for (id, t) in &truth.projects {
            let s = totals.get(id).ok_or(format!("{id} missing from totals"))?;
            for m in Metric::COUNTERS {
                let i = m.counter_index().expect("counter");
                let sum: u64 = s.cycles.values().map(|c| c.values[i]).sum();
                if sum != t.counters[i] {
                    return Err(format!("{id} {m}: totals {sum} truth {}", t.counters[i]));
                }
            }
            let gauge: std::collections::BTreeMap<String, (i64, u64)> =
                s.branches.iter().map(|(b, r)| (b.clone(), (r.time_ms, r.value))).collect();
            if gauge != t.branches {
                return Err(format!("{id} branches' storage: totals {gauge:?} truth {:?}", t.branches));
            }
        }
        Ok(())
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_simulated_fleet_is_counted_exactly() {
    let Some(p) = Pipeline::start("fleet").await else { return };
    let prefix = "fleet-exact";
    let stats = Arc::new(SendStats::default());
    let summary =
        run(fleet_run(&p.ingest_url, prefix, 8), stats.clone(), CancellationToken::new(), CancellationToken::new())
            .await
            .expect("simulation");
    assert!(summary.truth.events > 2_000, "only {} events sent", summary.truth.events);
    assert!(stats.duplicates_sent.load(std::sync::atomic::Ordering::Relaxed) > 0, "no retries were exercised");
    assert_eq!(stats.rejected.load(std::sync::atomic::Ordering::Relaxed), 0);
    assert_exact(&p, prefix, &summary.truth).await;
    p.shutdown().await;
}
