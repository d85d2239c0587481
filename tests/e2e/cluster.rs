//! On a replicated Kafka (three KRaft brokers, `deploy/local/cluster-test`):
//! the topics are created with three replicas, `min.insync.replicas` 2 and
//! unclean leader election off; a replication factor the cluster cannot
//! offer is refused by name; and kill -9 of the broker leading the events
//! partitions under load loses and double-counts nothing.
//!
//! Run by `deploy/local/cluster-test` (ignored in the plain suite, which
//! runs on one broker).

use std::collections::BTreeMap;
use std::time::Duration;

use meter_e2e::{eventually, Pipeline};
use meter_proto::v1::Metric;
use rdkafka::admin::{AdminClient, AdminOptions, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer};

use crate::helpers::{inc, kill9, report, report_until_acked, stack_dir, stack_up};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "needs the 3-broker stack: deploy/local/cluster-test runs it"]
async fn replicated_topics_and_a_killed_leader_lose_nothing() {
    stack_dir(); // fails early, naming cluster-test, off the cluster stack
    let Some(p) = Pipeline::start("cluster").await else { return };
    assert_eq!(p.kafka.replication_factor, 3, "METER_KAFKA_REPLICATION_FACTOR=3 (cluster-test sets it)");

    // The topics as created: three replicas, min ISR 2, no unclean election.
    let probe: BaseConsumer = p.kafka.client_config().create().expect("consumer");
    let md = probe.fetch_metadata(Some(&p.kafka.events_topic), Duration::from_secs(10)).expect("metadata");
    assert!(md.topics()[0].partitions().iter().all(|part| part.replicas().len() == 3), "three replicas");
    let admin: AdminClient<DefaultClientContext> = p.kafka.client_config().create().expect("admin");
    let described = admin
        .describe_configs(&[ResourceSpecifier::Topic(&p.kafka.events_topic)], &AdminOptions::new())
        .await
        .expect("describe");
    let config = described.into_iter().next().expect("one").expect("the topic's config");
    let value = |name: &str| config.get(name).and_then(|e| e.value.clone());
    assert_eq!(value("min.insync.replicas").as_deref(), Some("2"));
    assert_eq!(value("unclean.leader.election.enable").as_deref(), Some("false"));

    // More replicas than brokers: refused, naming both numbers.
    let big = meter_kafka::KafkaConfig { replication_factor: 4, ..p.kafka.clone() }
        .with_topic_prefix(&meter_e2e::unique("toobig"));
    let err = meter_kafka::ensure_topics(&big).await.expect_err("refused").to_string();
    assert!(err.contains("replication_factor = 4") && err.contains("3 broker"), "{err}");

    // Load, and kill -9 of the broker leading the most events partitions.
    let leader = meter_kafka::busiest_leader(&p.kafka, &p.kafka.events_topic).expect("a leader");
    let projects: Vec<String> = (0..12).map(|i| format!("cl-p{i:02}")).collect();
    let mut client = p.client().await;
    let mut truth: BTreeMap<String, u64> = BTreeMap::new();
    let (mut refused, mut killed_at) = (0u32, None);
    for seq in 1..=300u64 {
        if seq == 100 {
            kill9(&format!("kafka/node{leader}/kafka.pid"));
            killed_at = Some(seq);
        }
        let events: Vec<_> = projects.iter().map(|id| inc(id, Metric::WrittenDataBytes, seq)).collect();
        refused += report_until_acked(&mut client, &report("cl-src", seq, events)).await;
        for id in &projects {
            *truth.entry(id.clone()).or_default() += seq;
        }
    }
    assert!(killed_at.is_some());
    // The broker comes back (the stack restarts what is not running).
    stack_up();
    eventually(Duration::from_secs(120), "totals equal what was acknowledged", || async {
        let totals = p.totals().await;
        for (id, want) in &truth {
            let got: u64 = totals.get(id).map_or(0, |t| t.cycles.values().map(|c| c.values[2]).sum());
            if got != *want {
                return Err(format!(
                    "{id}: totals {got}, acknowledged {want} ({refused} refusals while the leader moved)"
                ));
            }
        }
        Ok(())
    })
    .await;
    eprintln!(
        "cluster: broker {leader} killed at batch 100 of 300; {refused} refused attempts, all retried; totals exact"
    );
    p.shutdown().await;
}
