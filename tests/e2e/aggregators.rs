//! Aggregators joining and leaving while load runs (rebalances, state
//! restored from the totals topic) change no total.

use std::sync::Arc;
use std::time::Duration;

use meter_e2e::{eventually, Pipeline};
use meter_proto::v1::Metric;
use meter_sim::{run, SendStats};
use tokio_util::sync::CancellationToken;

use crate::fleet::{assert_exact, fleet_run};
use crate::helpers::{await_usage, inc, report, totals_written, usage_of};

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

/// Rows held while the aggregator keeps up (decision 0022) stay out of
/// ClickHouse until due, and reach it then though nothing more comes to
/// read: this pipeline runs no api, so no probe gives the partition another
/// record, and only the aggregator's own transaction can write them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_held_while_keeping_up_reach_clickhouse_with_nothing_more_to_read() {
    let Some(mut p) = Pipeline::start("heldidle").await else { return };
    p.stop_aggregator().await;
    p.aggregator.rows_hold_min_ms = 8_000;
    p.start_aggregator();
    let project = "heldidle-p";
    let event = inc(project, Metric::WrittenDataBytes, 4242);
    p.client().await.report(report("heldidle-node", 1, vec![event])).await.expect("ack");
    eventually(Duration::from_secs(60), "the totals count the event", || async {
        let written = totals_written(&p, project).await;
        if written == Some(4242) {
            Ok(())
        } else {
            Err(format!("{written:?}"))
        }
    })
    .await;
    let early = usage_of(&p.store, project).await;
    assert!(early.is_none(), "counted, its rows still held; ClickHouse has {early:?}");
    await_usage(&p.store, project, |u| u.written_data_bytes, 4242, "the held rows written when due").await;
    p.shutdown().await;
}
