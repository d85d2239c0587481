//! Records of `usage.events` in each layout ingest has written: one
//! `ProjectBatch` per record, keyed by project and placed by librdkafka's
//! partitioner (before 2026-12-01); a Report's batches packed per
//! partition, each with its own source fields (until 2026-12-04); and
//! today's, the shared fields once in the record's head. All counted, and a
//! batch retried across an upgrade counted once, which holds only if ingest
//! puts each project in the partition librdkafka did and the head gives
//! each batch the fields it had.

use std::time::Duration;

use meter_core::partition::partition_of;
use meter_core::Limits;
use meter_e2e::{eventually, Pipeline};
use meter_proto::v1::Metric;
use prost::Message as _;
use rdkafka::producer::{FutureProducer, FutureRecord};

use crate::helpers::{inc, report};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_of_the_old_layout_and_the_new_count_once() {
    let Some(p) = Pipeline::start("upgrade").await else { return };
    let projects: Vec<String> = (0..40).map(|i| format!("upg-{i}")).collect();
    let events = |base: u64| -> Vec<_> {
        projects.iter().zip(base..).map(|(id, v)| inc(id, Metric::WrittenDataBytes, v)).collect()
    };
    let first = report("upg-src", 1, events(100));

    // As ingest wrote it before: one record per project, keyed by it.
    let batches = meter_proto::report::validate(&Limits::default(), first.clone(), meter_e2e::now_ms()).expect("valid");
    let producer: FutureProducer = p.kafka.events_producer_config().create().expect("producer");
    for b in &batches {
        let value = b.encode_to_vec();
        let record = FutureRecord::to(&p.kafka.events_topic).key(&b.project_id).payload(&value);
        let delivery = producer.send(record, Duration::from_secs(10)).await.expect("written");
        assert_eq!(delivery.partition, partition_of(&b.project_id, p.kafka.partitions), "{}", b.project_id);
    }

    // As ingest wrote it until 2026-12-04: per partition, every batch with
    // its own source fields, no head.
    let second = report("upg-src", 2, events(1_000));
    let batches =
        meter_proto::report::validate(&Limits::default(), second.clone(), meter_e2e::now_ms()).expect("valid");
    for r in meter_proto::report::records_without_head(batches, p.kafka.partitions) {
        let record = FutureRecord::to(&p.kafka.events_topic).key(&r.key).partition(r.partition).payload(&r.value);
        producer.send(record, Duration::from_secs(10)).await.expect("written");
    }

    // Through today's ingest: the same two batches again for half the
    // projects (client retries across the upgrades; the other half is
    // counted only if the older layouts are read), then the next one.
    let mut client = p.client().await;
    let half = |mut r: meter_proto::v1::ReportRequest| {
        r.events.truncate(20);
        r
    };
    for req in [half(first), half(second), report("upg-src", 3, events(10_000))] {
        let distinct: std::collections::BTreeSet<i32> =
            req.events.iter().map(|e| partition_of(&e.project_id, p.kafka.partitions)).collect();
        let n = req.events.len() as u32;
        let ack = client.report(req).await.expect("ack").into_inner();
        assert_eq!((ack.accepted_events, ack.kafka_records as usize), (n, distinct.len()));
    }

    eventually(Duration::from_secs(60), "every project counted once per batch", || async {
        let totals = p.totals().await;
        let wrong: Vec<String> = projects
            .iter()
            .zip(0u64..)
            .filter_map(|(id, i)| {
                let got = totals.get(id).map(|t| (t.cycles.values().map(|c| c.values[2]).sum::<u64>(), t.version));
                (got != Some((11_100 + 3 * i, 3))).then(|| format!("{id}: {got:?}"))
            })
            .collect();
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(wrong.join(", "))
        }
    })
    .await;
    p.shutdown().await;
}
