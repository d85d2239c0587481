//! A batch sent again (a client retry) is counted once.

use std::time::Duration;

use meter_e2e::{eventually, Pipeline};
use meter_proto::v1::Metric;

use crate::helpers::{inc, records_for, report, usage_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retried_batch_is_counted_once() {
    let Some(p) = Pipeline::start("retry").await else { return };
    let mut client = p.client().await;
    let first = report(
        "retry-src",
        1,
        vec![inc("retry-a", Metric::WrittenDataBytes, 100), inc("retry-b", Metric::DataTransferBytes, 7)],
    );
    // One record per partition holding any of the Report's projects.
    let records = records_for(&["retry-a", "retry-b"], p.kafka.partitions);
    for _ in 0..3 {
        let ack = client.report(first.clone()).await.expect("ack").into_inner();
        assert_eq!((ack.accepted_events, ack.kafka_records), (2, records));
    }
    client.report(report("retry-src", 2, vec![inc("retry-a", Metric::WrittenDataBytes, 5)])).await.expect("ack");
    // Another source may use the same sequence number: it is a different batch.
    client.report(report("retry-other", 1, vec![inc("retry-a", Metric::WrittenDataBytes, 1000)])).await.expect("ack");

    eventually(Duration::from_secs(60), "clickhouse counts each batch once", || async {
        let a = usage_of(&p.store, "retry-a").await.map(|u| u.written_data_bytes);
        let b = usage_of(&p.store, "retry-b").await.map(|u| u.data_transfer_bytes);
        if (a, b) == (Some(1105), Some(7)) {
            Ok(())
        } else {
            Err(format!("a={a:?} b={b:?}"))
        }
    })
    .await;
    let totals = p.totals().await;
    let a = &totals["retry-a"];
    assert_eq!(a.cycles.values().map(|c| c.values[2]).sum::<u64>(), 1105);
    assert_eq!(a.version, 3, "three distinct batches counted for retry-a");
    assert_eq!(totals["retry-b"].version, 1);
    p.shutdown().await;
}
