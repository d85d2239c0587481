//! On a replicated ClickHouse (two replicas through ZooKeeper,
//! `deploy/local/cluster-test`): the schema is made on both replicas, every
//! row the load role writes to one reaches the other, and kill -9 of either
//! replica or of ZooKeeper under load loses and double-counts nothing, while
//! a quota crossed meanwhile is enforced on time. The rollup and history
//! tests also run on this cluster (cluster-test runs them there).
//!
//! Ignored in the plain suite, which runs on one ClickHouse server.

use std::collections::BTreeMap;
use std::time::Duration;

use meter_e2e::{eventually, Pipeline};
use meter_proto::v1::Metric;
use meter_store::{Store, StoreConfig};
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::helpers::{
    api_get, api_put, control_plane_on_loopback, fast_enforcer, inc, kill9, report, report_until_acked, stack_up,
    suspended_alone,
};

const PROJECTS: usize = 8;

/// Every project's written bytes on one replica equal what was acknowledged.
async fn exact_on(store: &Store, truth: &BTreeMap<String, u64>, what: &str) {
    eventually(Duration::from_secs(120), what, || async {
        let rows = store.usage_with_prefix("cc-").await.map_err(|e| e.to_string())?;
        let got: BTreeMap<String, u64> =
            rows.iter().map(|u| (u.project_id.clone(), u.get(meter_core::Metric::WrittenDataBytes))).collect();
        if &got == truth {
            Ok(())
        } else {
            Err(format!("stored {got:?}, acknowledged {truth:?}"))
        }
    })
    .await;
}

/// The projects' load: batches of one source, each project's written bytes
/// growing by the batch's number.
struct Fleet {
    client: meter_proto::v1::ingest_client::IngestClient<tonic::transport::Channel>,
    projects: Vec<String>,
    seq: u64,
}

impl Fleet {
    async fn new(p: &Pipeline) -> Self {
        Fleet { client: p.client().await, projects: (0..PROJECTS).map(|i| format!("cc-p{i}")).collect(), seq: 0 }
    }

    async fn load(&mut self, batches: u64, truth: &mut BTreeMap<String, u64>) {
        for _ in 0..batches {
            self.seq += 1;
            let seq = self.seq;
            let events: Vec<_> = self.projects.iter().map(|id| inc(id, Metric::WrittenDataBytes, seq)).collect();
            // Ingest never waits for ClickHouse; a broker may still be electing leaders.
            report_until_acked(&mut self.client, &report("cc-src", seq, events)).await;
            for id in &self.projects {
                *truth.entry(id.clone()).or_default() += seq;
            }
        }
    }
}

/// The replicas' URLs (cluster-test exports them).
fn replica_urls() -> Vec<String> {
    let urls = std::env::var("METER_CLICKHOUSE_REPLICA_URLS").expect("METER_CLICKHOUSE_REPLICA_URLS: cluster-test");
    let urls: Vec<String> = urls.split(',').map(str::to_owned).collect();
    assert_eq!(urls.len(), 2, "two replicas");
    urls
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the replicated ClickHouse: deploy/local/cluster-test runs it"]
async fn a_replica_or_zookeeper_killed_under_load_loses_nothing_and_enforcement_goes_on() {
    let urls = replica_urls();
    let Some(mut p) = Pipeline::start("chcluster").await else { return };
    assert_eq!(p.store_cfg.cluster, "meter", "METER_CLICKHOUSE_CLUSTER=meter (cluster-test sets it)");
    assert_eq!(p.store_cfg.url, urls[0], "the pipeline writes to replica 1");
    let second = StoreConfig { url: urls[1].to_owned(), ..p.store_cfg.clone() };
    let replica2 = Store::new(&second).expect("store");
    let stop = CancellationToken::new();
    let (cp, cp_url) = control_plane_on_loopback(&stop).await;
    // The api reads replica 2: what a reader elsewhere in the cluster sees.
    let first = std::mem::replace(&mut p.store_cfg, second.clone());
    p.start_api().await;
    p.store_cfg = first;
    p.start_enforcer(fast_enforcer(&cp_url)).await;

    // The schema is on both replicas, replicated.
    for url in &urls {
        let sql = format!(
            "SELECT engine FROM system.tables WHERE database = '{}' AND name = 'usage_hourly'",
            p.store_cfg.database
        );
        let engine = reqwest::Client::new().post(url).body(sql).send().await.expect("replica").text().await;
        assert_eq!(engine.expect("body").trim(), "ReplicatedReplacingMergeTree", "{url}");
    }

    // A database of the other shape is refused, naming it: these replicated
    // tables read without the cluster, one server's tables with it.
    let without = StoreConfig { cluster: String::new(), ..p.store_cfg.clone() };
    let err = meter_store::migrate(&without).await.expect_err("refused").to_string();
    assert!(err.contains("set clickhouse.cluster") && err.contains(&p.store_cfg.database), "{err}");
    let single = StoreConfig { database: format!("{}_single", p.store_cfg.database), ..without };
    meter_store::migrate(&single).await.expect("one server's tables, on replica 1");
    let err = meter_store::migrate(&StoreConfig { cluster: "meter".into(), ..single.clone() })
        .await
        .expect_err("refused")
        .to_string();
    assert!(err.contains("made on one server") && err.contains(&single.database), "{err}");

    let mut truth: BTreeMap<String, u64> = BTreeMap::new();
    let mut fleet = Fleet::new(&p).await;

    fleet.load(40, &mut truth).await;
    exact_on(&p.store, &truth, "replica 1 exact").await;
    exact_on(&replica2, &truth, "replica 2 exact (replicated)").await;

    // Replica 2 killed: the load role (on replica 1) goes on; back, it catches up.
    kill9("clickhouse2/clickhouse.pid");
    fleet.load(40, &mut truth).await;
    exact_on(&p.store, &truth, "replica 1 exact with replica 2 down").await;
    stack_up();
    exact_on(&replica2, &truth, "replica 2 caught up after its restart").await;

    // Replica 1 killed: the load role retries; replica 2 still answers reads.
    kill9("clickhouse/clickhouse.pid");
    let before = truth.clone();
    fleet.load(40, &mut truth).await;
    exact_on(&replica2, &before, "replica 2 answers with replica 1 down").await;
    stack_up();
    exact_on(&p.store, &truth, "replica 1 back, every row loaded once").await;
    exact_on(&replica2, &truth, "replica 2 exact").await;

    // ZooKeeper killed: replicated tables refuse inserts (read-only), the
    // load role retries, and a quota crossed meanwhile is enforced.
    kill9("zookeeper/zookeeper.pid");
    let api = p.api_url.clone();
    api_put(&format!("{api}/v1/projects/cc-p0/quota"), json!({"plan": null, "quota": {"written_data_bytes": 1}})).await;
    let before = truth.clone();
    fleet.load(40, &mut truth).await;
    suspended_alone(&cp, "cc-p0", "cc-p0 suspended with ZooKeeper down").await;
    let (_, check) = api_get(&format!("{api}/v1/projects/cc-p0/check")).await;
    assert_eq!(check["allowed"], json!(false), "{check}");
    // Reads still answer (replicated tables are read-only, not gone).
    let stored = p.store.usage_with_prefix("cc-").await.expect("reads while ZooKeeper is down");
    let stored: u64 = stored.iter().map(|u| u.get(meter_core::Metric::WrittenDataBytes)).sum();
    assert!(stored >= before.values().sum::<u64>(), "rows before the fault are still read");
    stack_up();
    exact_on(&p.store, &truth, "replica 1 exact after ZooKeeper's restart").await;
    exact_on(&replica2, &truth, "replica 2 exact after ZooKeeper's restart").await;
    let (_, usage) = api_get(&format!("{api}/v1/projects/cc-p1/status")).await;
    assert_eq!(usage["usage"]["written_data_bytes"], json!(truth["cc-p1"]), "{usage}");
    eprintln!("clickhouse cluster: replica 2, replica 1 and ZooKeeper killed under load; both replicas exact");
    stop.cancel();
    p.shutdown().await;
}

/// With both replicas in `clickhouse.url`, the load role and readers go on
/// with either replica killed: they connect to the other (`failover.rs`),
/// and the one that comes back catches up by replication.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
#[ignore = "needs the replicated ClickHouse: deploy/local/cluster-test runs it"]
async fn with_both_replicas_listed_loading_and_reading_go_on_while_either_is_down() {
    let urls = replica_urls();
    let Some(mut p) = Pipeline::start("chfailover").await else { return };
    let one = |url: &str| Store::new(&StoreConfig { url: url.to_owned(), ..p.store_cfg.clone() }).expect("store");
    let (replica1, replica2) = (one(&urls[0]), one(&urls[1]));
    let both = StoreConfig { url: urls.join(","), ..p.store_cfg.clone() };
    let reader = Store::new(&both).expect("store");
    p.stop_load().await;
    p.start_load(&both);
    let mut truth: BTreeMap<String, u64> = BTreeMap::new();
    let mut fleet = Fleet::new(&p).await;

    fleet.load(20, &mut truth).await;
    exact_on(&replica1, &truth, "replica 1 exact").await;
    exact_on(&replica2, &truth, "replica 2 exact").await;

    // Replica 1 (the first listed, in use) killed: the rows written after
    // reach replica 2, which only the load role's failover can do; a reader
    // given both answers.
    kill9("clickhouse/clickhouse.pid");
    fleet.load(20, &mut truth).await;
    exact_on(&replica2, &truth, "replica 2 has the rows loaded with replica 1 down").await;
    exact_on(&reader, &truth, "a reader given both replicas answers with replica 1 down").await;
    stack_up();
    exact_on(&replica1, &truth, "replica 1 caught up after its restart").await;

    // Replica 2 (now in use) killed: back to replica 1.
    kill9("clickhouse2/clickhouse.pid");
    fleet.load(20, &mut truth).await;
    exact_on(&replica1, &truth, "replica 1 has the rows loaded with replica 2 down").await;
    exact_on(&reader, &truth, "the reader answers with replica 2 down").await;
    stack_up();
    exact_on(&replica2, &truth, "replica 2 caught up after its restart").await;
    eprintln!("clickhouse failover: each replica killed in turn under load; the other took the rows; both exact");
    p.shutdown().await;
}

/// On one server (the plain suite): a cluster the server does not define is
/// refused by name before anything is made.
#[tokio::test]
async fn a_cluster_the_server_does_not_define_is_refused_by_name() {
    let Some(stack) = meter_e2e::Stack::available().await else { return };
    if std::env::var("METER_CLICKHOUSE_CLUSTER").is_ok_and(|c| !c.is_empty()) {
        return; // on the replicated stack, `meter` is defined
    }
    let cfg = StoreConfig {
        url: stack.clickhouse_url.clone(),
        database: format!("e2e_{}", meter_e2e::unique("nocluster")),
        cluster: "meter".into(),
        ..StoreConfig::default()
    };
    let err = meter_store::migrate(&cfg).await.expect_err("refused").to_string();
    assert!(err.contains(r#"clickhouse.cluster = "meter" is not a cluster of this server"#), "{err}");
    let store = meter_store::Store::new(&StoreConfig { cluster: String::new(), ..cfg.clone() }).expect("store");
    assert!(store.usage_with_prefix("x").await.is_err(), "nothing was made: the database does not exist");
}
