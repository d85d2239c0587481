//! Aggregators joining and leaving while load runs (rebalances, state
//! restored from the totals topic) change no total.

use std::sync::Arc;
use std::time::Duration;

use meter_e2e::Pipeline;
use meter_sim::{run, SendStats};
use tokio_util::sync::CancellationToken;

use crate::fleet::{assert_exact, fleet_run};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rebalances_and_restarts_lose_and_double_nothing() {
    let Some(mut p) = Pipeline::start("rebalance").await else { return };
    let prefix = "rebal";
    let cfg = fleet_run(&p.ingest_url, prefix, 12);
    let load =
        tokio::spawn(run(cfg, Arc::new(SendStats::default()), CancellationToken::new(), CancellationToken::new()));
    tokio::time::sleep(Duration::from_secs(3)).await;
    p.start_aggregator(); // two in the group: partitions split
    tokio::time::sleep(Duration::from_secs(4)).await;
    p.stop_aggregator().await; // the first leaves: the second restores its partitions
    tokio::time::sleep(Duration::from_secs(2)).await;
    p.start_aggregator(); // and a third joins
    let summary = load.await.expect("join").expect("simulation");
    assert!(summary.truth.events > 2_000);
    assert_exact(&p, prefix, &summary.truth).await;
    p.shutdown().await;
}
