//! Helpers shared by the end-to-end tests: the local stack's addresses, and
//! a pipeline (ingest + aggregator, in process) on topics and a ClickHouse
//! database of its own, so tests run side by side.
//!
//! The tests need the real stack (`deploy/local/stack up`); without it they
//! fail loudly, naming what is missing.

pub mod browser;

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use std::sync::Arc;

use meter_aggregator::{AggregatorConfig, LoadConfig};
use meter_core::target::AddressClass;
use meter_core::Totals;
use meter_enforcer::EnforcerConfig;
use meter_ingest::IngestConfig;
use meter_kafka::KafkaConfig;
use meter_proto::v1::ingest_client::IngestClient;
use meter_runtime::Health;
use meter_runtime::ShiftedClock;
use meter_store::{Store, StoreConfig};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::transport::Channel;

/// Addresses of the running local stack, from `deploy/local/stack env`
/// variables or the defaults.
#[derive(Debug, Clone)]
pub struct Stack {
    pub brokers: String,
    pub clickhouse_url: String,
    /// The same server over TLS, and the CA file that signed its certificate.
    pub clickhouse_https_url: String,
    pub clickhouse_ca_file: String,
}

impl Stack {
    /// The stack, checked. When a server does not answer: `None` after a
    /// visible `SKIPPED` line (a contributor's plain `cargo test`), or a
    /// panic naming it when `METER_E2E_REQUIRED` is set (`deploy/local/test`
    /// sets it: there a skipped end-to-end test is a failure).
    pub async fn available() -> Option<Stack> {
        let s = Stack {
            brokers: std::env::var("METER_KAFKA_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".into()),
            clickhouse_url: std::env::var("METER_CLICKHOUSE_URL").unwrap_or_else(|_| "http://127.0.0.1:8123".into()),
            clickhouse_https_url: std::env::var("METER_CLICKHOUSE_HTTPS_URL")
                .unwrap_or_else(|_| "https://127.0.0.1:8443".into()),
            clickhouse_ca_file: std::env::var("METER_CLICKHOUSE_CA_FILE")
                .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../.stack/clickhouse/tls/ca.pem").into()),
        };
        let ch = s.clickhouse_url.trim_start_matches("http://").to_string();
        for (what, addr) in [("kafka", s.brokers.split(',').next().unwrap_or_default().to_string()), ("clickhouse", ch)]
        {
            if tokio::net::TcpStream::connect(&addr).await.is_err() {
                return skip(&format!("{what} is not answering on {addr}"));
            }
        }
        Some(s)
    }
}

/// `target/<profile>/<name>`, a binary of the workspace (`deploy/local/test`
/// builds them before the tests: `cargo test` alone builds no other
/// package's binaries); `None` after a `skip` when it is missing.
pub fn workspace_binary(name: &str, package: &str) -> Option<std::path::PathBuf> {
    let exe = std::env::current_exe().expect("test binary");
    let bin = exe.parent().and_then(|d| d.parent()).expect("target profile dir").join(name);
    if bin.exists() {
        return Some(bin);
    }
    skip(&format!("{} is missing (cargo build --release -p {package})", bin.display()))
}

/// Skips the calling end-to-end test, or fails it when they are required
/// (`METER_E2E_REQUIRED`). The line goes straight to the terminal's stderr,
/// past the test harness's capture, so a skip is never silent.
pub fn skip<T>(why: &str) -> Option<T> {
    let test = std::thread::current().name().unwrap_or("an end-to-end test").to_owned();
    if std::env::var_os("METER_E2E_REQUIRED").is_some() {
        panic!("{why}: start the local stack with `deploy/local/stack up` (deploy/local/test does)");
    }
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "SKIPPED {test}: {why}; end-to-end tests need the local stack (`deploy/local/stack up`, or run deploy/local/test)"
    );
    None
}

/// `name` made unique to this process and moment (topics, groups, databases).
pub fn unique(name: &str) -> String {
    let t = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).expect("clock").as_nanos();
    format!("{name}_{:x}_{:x}", std::process::id(), t % 0xffff_ffff)
}

/// A pipeline of its own: topics, consumer group and database named after
/// the test.
#[derive(Debug)]
pub struct Pipeline {
    pub kafka: KafkaConfig,
    pub store_cfg: StoreConfig,
    pub store: Store,
    pub aggregator: AggregatorConfig,
    pub ingest_url: String,
    /// Ingest's HTTP endpoint (Neon JSON, `POST /v1/events`).
    pub ingest_http_url: String,
    pub api_url: String,
    pub api_grpc_url: String,
    /// The clock of the enforcer and the api (moved by tests).
    pub clock: Arc<ShiftedClock>,
    ingest: Option<(CancellationToken, JoinHandle<anyhow::Result<()>>)>,
    enforcer: Option<(CancellationToken, JoinHandle<anyhow::Result<()>>)>,
    api: Option<(CancellationToken, JoinHandle<anyhow::Result<()>>)>,
    aggregators: Vec<(CancellationToken, JoinHandle<anyhow::Result<()>>)>,
    load: Option<(CancellationToken, JoinHandle<anyhow::Result<()>>)>,
}

impl Pipeline {
    /// Creates topics and schema, and starts ingest and one aggregator;
    /// `None` when the test is skipped (no stack; see `Stack::available`).
    pub async fn start(name: &str) -> Option<Pipeline> {
        let stack = Stack::available().await?;
        let id = unique(name);
        // 3 on the replicated cluster (deploy/local/cluster-test sets it).
        let replication_factor =
            std::env::var("METER_KAFKA_REPLICATION_FACTOR").ok().and_then(|v| v.parse().ok()).unwrap_or(1);
        let kafka = KafkaConfig {
            brokers: stack.brokers.clone(),
            replication_factor,
            partitions: 4,
            produce_timeout_ms: 5000,
            ..KafkaConfig::default()
        }
        .with_topic_prefix(&id);
        // A replicated ClickHouse's cluster (deploy/local/cluster-test sets it).
        let cluster = std::env::var("METER_CLICKHOUSE_CLUSTER").unwrap_or_default();
        let store_cfg = StoreConfig {
            url: stack.clickhouse_url.clone(),
            database: format!("e2e_{id}"),
            cluster,
            ..StoreConfig::default()
        };
        meter_kafka::ensure_topics(&kafka).await.expect("creating topics");
        meter_store::migrate(&store_cfg).await.expect("migrating clickhouse");
        let aggregator =
            AggregatorConfig { group_id: format!("{id}.agg"), linger_ms: 50, ..AggregatorConfig::default() };
        let mut p = Pipeline {
            store: Store::new(&store_cfg).expect("store"),
            kafka,
            store_cfg,
            aggregator,
            ingest_url: String::new(),
            ingest_http_url: String::new(),
            api_url: String::new(),
            api_grpc_url: String::new(),
            clock: Arc::new(ShiftedClock::default()),
            ingest: None,
            enforcer: None,
            api: None,
            aggregators: Vec::new(),
            load: None,
        };
        p.start_ingest(IngestConfig::default()).await;
        p.start_aggregator();
        p.start_load(&p.store_cfg.clone());
        Some(p)
    }

    /// (Re)starts ingest with `cfg` on a fresh loopback port, without
    /// authentication.
    pub async fn start_ingest(&mut self, cfg: IngestConfig) {
        self.start_ingest_with(cfg, meter_runtime::Auth::open()).await;
    }

    /// (Re)starts ingest with `cfg` and the credentials of `auth`.
    pub async fn start_ingest_with(&mut self, cfg: IngestConfig, auth: meter_runtime::Auth) {
        self.stop_ingest().await;
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        self.start_ingest_on(cfg, auth, listener).await;
    }

    /// (Re)starts ingest serving gRPC on `listener` (HTTP on a fresh port).
    pub async fn start_ingest_on(&mut self, cfg: IngestConfig, auth: meter_runtime::Auth, listener: TcpListener) {
        self.stop_ingest().await;
        self.ingest_url = format!("http://{}", listener.local_addr().expect("addr"));
        let http = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        self.ingest_http_url = format!("http://{}", http.local_addr().expect("addr"));
        let token = CancellationToken::new();
        let (k, t) = (self.kafka.clone(), token.clone());
        let handle =
            tokio::spawn(
                async move { meter_ingest::run(&cfg, &k, auth, listener, Some(http), Health::default(), t).await },
            );
        self.ingest = Some((token, handle));
    }

    /// Stops ingest (graceful).
    pub async fn stop_ingest(&mut self) {
        if let Some((t, h)) = self.ingest.take() {
            t.cancel();
            h.await.expect("ingest task").expect("ingest stopped cleanly");
        }
    }

    /// (Re)starts the enforce role (enforcer, actuator, dispatcher), in
    /// consumer groups of this pipeline's own: with the default group ids,
    /// the enforcers of every test running at the same time were members of
    /// one group, and each start or stop anywhere revoked and reassigned
    /// everyone's partitions (see `enforcement::crossings_alert_once_...`).
    pub async fn start_enforcer(&mut self, cfg: EnforcerConfig) {
        self.stop_enforcer().await;
        let group = self.aggregator.group_id.trim_end_matches(".agg").to_owned();
        let cfg = EnforcerConfig {
            group_id: format!("{group}.enf"),
            transactional_id_prefix: format!("{group}.enf"),
            actuator_group_id: format!("{group}.act"),
            webhook_group_id: format!("{group}.hooks"),
            ..cfg
        };
        let token = CancellationToken::new();
        let (k, t, clock) = (self.kafka.clone(), token.clone(), self.clock.clone());
        let handle = tokio::spawn(async move {
            meter_enforcer::run(&cfg, &k, &[AddressClass::Loopback], clock, Health::default(), t).await
        });
        self.enforcer = Some((token, handle));
    }

    /// Waits up to `within` for the enforce role to end on its own (not
    /// stopped): its result, or None while it still runs.
    pub async fn enforcer_ended(&mut self, within: Duration) -> Option<anyhow::Result<()>> {
        let (_, handle) = self.enforcer.as_mut()?;
        let ended = tokio::time::timeout(within, handle).await.ok()?;
        self.enforcer = None;
        Some(ended.expect("enforcer task"))
    }

    /// Stops the enforce role, gracefully.
    pub async fn stop_enforcer(&mut self) {
        if let Some((t, h)) = self.enforcer.take() {
            t.cancel();
            h.await.expect("enforcer task").expect("enforcer stopped cleanly");
        }
    }

    /// Stops the api role, gracefully.
    pub async fn stop_api(&mut self) {
        if let Some((t, h)) = self.api.take() {
            t.cancel();
            h.await.expect("api task").expect("api stopped cleanly");
        }
    }

    /// Starts the api role on fresh loopback ports, without authentication,
    /// and waits until it answers. Webhooks may go to loopback (the tests'
    /// receivers).
    pub async fn start_api(&mut self) {
        self.start_api_with(meter_runtime::Auth::open()).await;
    }

    /// Starts the api role with the credentials of `auth`.
    pub async fn start_api_with(&mut self, auth: meter_runtime::Auth) {
        let open = auth.current().is_none();
        self.start_api_config(meter_api::ApiConfig::default(), auth).await;
        let url = format!("{}/v1/{}", self.api_url, if open { "webhooks" } else { "openapi.json" });
        eventually(Duration::from_secs(60), "the api answers", || async {
            reqwest::get(&url).await.map(|_| ()).map_err(|e| e.to_string())
        })
        .await;
    }

    /// Starts the api role with `cfg` (listen addresses replaced by fresh
    /// loopback ports; `https://localhost` URLs when it has TLS) without
    /// waiting for it.
    pub async fn start_api_config(&mut self, cfg: meter_api::ApiConfig, auth: meter_runtime::Auth) {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let grpc = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let (http_port, grpc_port) =
            (listener.local_addr().expect("addr").port(), grpc.local_addr().expect("addr").port());
        let (scheme, host) = if cfg.tls_cert_file.is_some() { ("https", "localhost") } else { ("http", "127.0.0.1") };
        self.api_url = format!("{scheme}://{host}:{http_port}");
        self.api_grpc_url = format!("{scheme}://{host}:{grpc_port}");
        let token = CancellationToken::new();
        let (k, ch, t, clock) = (self.kafka.clone(), self.store_cfg.clone(), token.clone(), self.clock.clone());
        let handle = tokio::spawn(async move {
            let security = (auth, vec![AddressClass::Loopback]);
            meter_api::run(&cfg, &k, &ch, security, clock, listener, grpc, Health::default(), t).await
        });
        self.api = Some((token, handle));
    }

    /// Starts one more aggregator instance in the same consumer group.
    pub fn start_aggregator(&mut self) {
        let token = CancellationToken::new();
        let (c, k, t) = (self.aggregator.clone(), self.kafka.clone(), token.clone());
        let handle = tokio::spawn(async move { meter_aggregator::run(&c, &k, Health::default(), t).await });
        self.aggregators.push((token, handle));
    }

    /// (Re)starts the load role (usage.rows -> ClickHouse) against `store`.
    pub fn start_load(&mut self, store: &StoreConfig) {
        let cfg = LoadConfig { linger_ms: 50, ..LoadConfig::default() };
        self.start_load_config(store, cfg);
    }

    /// (Re)starts the load role with `cfg` (its group id set to this pipeline's).
    pub fn start_load_config(&mut self, store: &StoreConfig, cfg: LoadConfig) {
        let token = CancellationToken::new();
        let cfg = LoadConfig { group_id: format!("{}.load", self.aggregator.group_id), ..cfg };
        let (k, s, t) = (self.kafka.clone(), store.clone(), token.clone());
        let handle = tokio::spawn(async move { meter_aggregator::run_load(&cfg, &k, &s, Health::default(), t).await });
        if let Some((old, _)) = self.load.replace((token, handle)) {
            old.cancel();
        }
    }

    /// Stops the load role (graceful).
    pub async fn stop_load(&mut self) {
        if let Some((t, h)) = self.load.take() {
            t.cancel();
            h.await.expect("load task").expect("load stopped cleanly");
        }
    }

    /// Stops the oldest running aggregator (graceful).
    pub async fn stop_aggregator(&mut self) {
        let (t, h) = self.aggregators.remove(0);
        t.cancel();
        h.await.expect("aggregator task").expect("aggregator stopped cleanly");
    }

    /// A gRPC client of this pipeline's ingest.
    pub async fn client(&self) -> IngestClient<Channel> {
        let channel = tonic::transport::Endpoint::from_shared(self.ingest_url.clone()).expect("url").connect_lazy();
        IngestClient::new(channel)
    }

    /// The latest state of every project in the totals topic.
    pub async fn totals(&self) -> BTreeMap<String, Totals> {
        let kafka = self.kafka.clone();
        tokio::task::spawn_blocking(move || {
            let mut out = BTreeMap::new();
            let all: Vec<i32> = (0..kafka.partitions).collect();
            let parts = meter_kafka::read_partitions_to_end(&kafka, &kafka.totals_topic, &all, Duration::from_secs(60))
                .expect("reading totals");
            for (_, v) in parts.into_values().flatten() {
                for s in meter_proto::decode_usage(&v).expect("totals record") {
                    out.insert(s.project_id.to_string(), s);
                }
            }
            out
        })
        .await
        .expect("totals task")
    }

    /// Stops ingest and every aggregator, gracefully. Topics and the
    /// database stay, for inspection after a failure.
    pub async fn shutdown(mut self) {
        self.stop_ingest().await;
        self.stop_enforcer().await;
        self.stop_api().await;
        while !self.aggregators.is_empty() {
            self.stop_aggregator().await;
        }
        self.stop_load().await;
    }
}

impl Drop for Pipeline {
    /// A failed test unwinds through here: stop every role so that the
    /// runtime can shut down (blocking loops run until cancelled) and the
    /// failure is reported instead of hanging.
    fn drop(&mut self) {
        let tokens =
            self.ingest.iter().chain(&self.enforcer).chain(&self.api).chain(&self.aggregators).chain(&self.load);
        for (t, _) in tokens {
            t.cancel();
        }
    }
}

/// Polls `check` every 200 ms until it returns `Some`, or panics after
/// `timeout` with the last value `describe` gives.
pub async fn eventually<T, F, Fut>(timeout: Duration, what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match check().await {
            Ok(v) => return v,
            Err(last) if tokio::time::Instant::now() > deadline => {
                panic!("{what}: not reached in {timeout:?}; last: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

pub use meter_runtime::now_ms;
