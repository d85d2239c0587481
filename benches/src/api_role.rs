//! The api role in the benchmark's own process, on a loopback port.

use meter_kafka::KafkaConfig;
use meter_runtime::{Auth, Health, SystemClock};
use meter_store::StoreConfig;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// A running api role: its base URL, and how to stop it and wait for it.
#[derive(Debug)]
pub struct ApiRole {
    pub url: String,
    pub stop: CancellationToken,
    pub task: JoinHandle<anyhow::Result<()>>,
}

/// Starts the api role (no tokens) on `kafka`'s topics and `store`.
pub async fn start(kafka: &KafkaConfig, store: &StoreConfig) -> anyhow::Result<ApiRole> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let grpc = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let stop = CancellationToken::new();
    let (k, s, t) = (kafka.clone(), store.clone(), stop.clone());
    let task = tokio::spawn(async move {
        let cfg = meter_api::ApiConfig::default();
        let clock = std::sync::Arc::new(SystemClock);
        meter_api::run(&cfg, &k, &s, (Auth::open(), vec![]), clock, listener, grpc, Health::default(), t).await
    });
    Ok(ApiRole { url, stop, task })
}

impl ApiRole {
    /// Stops the role and returns how it ended.
    pub async fn stop(self) -> anyhow::Result<()> {
        self.stop.cancel();
        self.task.await?
    }
}
