//! When Kafka cannot take a batch, ingest says UNAVAILABLE, never OK.

use meter_ingest::IngestConfig;
use meter_kafka::KafkaConfig;
use meter_proto::v1::ingest_client::IngestClient;
use meter_proto::v1::Metric;
use meter_runtime::{Auth, Health};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;
use tonic::Code;

use crate::helpers::{inc, report};

/// Ingest with `cfg` whose broker address has no broker (a port nobody
/// listens on), producing with `produce_timeout_ms`; a client, the stop
/// token and the server task.
async fn ingest_without_kafka(
    cfg: IngestConfig,
    produce_timeout_ms: u64,
) -> (IngestClient<Channel>, CancellationToken, JoinHandle<anyhow::Result<()>>) {
    let dead = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = dead.local_addr().expect("addr").port();
    drop(dead);
    let kafka = KafkaConfig { brokers: format!("127.0.0.1:{port}"), produce_timeout_ms, ..KafkaConfig::default() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let token = CancellationToken::new();
    let t = token.clone();
    let server = tokio::spawn(async move {
        meter_ingest::run(&cfg, &kafka, Auth::open(), listener, None, Health::default(), t).await
    });
    let client = IngestClient::new(tonic::transport::Endpoint::from_shared(url).expect("url").connect_lazy());
    (client, token, server)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_unreachable_is_unavailable() {
    let (mut client, token, server) = ingest_without_kafka(IngestConfig::default(), 1500).await;
    let started = std::time::Instant::now();
    let err = client
        .report(report("down-src", 1, vec![inc("down-p", Metric::ActiveTimeSeconds, 1)]))
        .await
        .expect_err("no false OK");
    assert_eq!(err.code(), Code::Unavailable, "{err:?}");
    assert!(err.message().contains("retry"), "{}", err.message());
    assert!(started.elapsed().as_secs() < 30);
    token.cancel();
    server.await.expect("join").expect("ingest stops cleanly");
}

/// With Kafka down, work waiting for it is bounded: at most
/// `max_in_flight_requests` Reports wait (each at most `max_message_bytes`),
/// every other one is answered UNAVAILABLE at once instead of queueing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_down_bounds_the_work_in_flight() {
    let cfg = IngestConfig { max_in_flight_requests: 4, ..IngestConfig::default() };
    let (client, token, server) = ingest_without_kafka(cfg, 4000).await;
    let calls = (0..100u64).map(|i| {
        let mut c = client.clone();
        let events = (0..1000).map(|_| inc("down-p", Metric::ActiveTimeSeconds, 1)).collect();
        tokio::spawn(async move { c.report(report(&format!("down-flood-{i}"), 1, events)).await })
    });
    let (mut shed, mut waited) = (0, 0);
    for call in calls.collect::<Vec<_>>() {
        let err = call.await.expect("join").expect_err("Kafka is down: no OK");
        assert_eq!(err.code(), Code::Unavailable, "{err:?}");
        if err.message().contains("requests in flight") {
            shed += 1;
        } else {
            waited += 1;
        }
    }
    assert!((1..=20).contains(&waited), "{waited} Reports waited for Kafka; the limit is 4 at a time");
    assert_eq!(shed + waited, 100);
    token.cancel();
    server.await.expect("join").expect("ingest stops cleanly");
}
