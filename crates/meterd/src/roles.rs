//! Starting roles under one shutdown token: the first role to fail stops
//! the others; SIGINT/SIGTERM stops them all, draining in order.

use std::time::Duration;

use anyhow::Context;
use meter_runtime::{cancel_on_signal, serve_admin, Health};
use tokio::net::TcpListener;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::Role;

/// Prepares Kafka topics and the ClickHouse schema, retrying while the
/// servers come up.
async fn migrate(cfg: &Config) -> anyhow::Result<()> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    let policy = meter_core::retry::RetryPolicy { initial: Duration::from_millis(500), max: Duration::from_secs(5) };
    let mut backoff = meter_core::retry::Backoff::new(policy);
    loop {
        let attempt = async {
            meter_kafka::ensure_topics(&cfg.kafka).await.context("creating kafka topics")?;
            let version = meter_store::migrate(&cfg.clickhouse).await.context("migrating clickhouse")?;
            anyhow::Ok(version)
        };
        match attempt.await {
            Ok(version) => {
                tracing::info!(clickhouse_version = %version, kafka = %cfg.kafka.brokers, "meterd.migrated");
                return Ok(());
            }
            Err(e) if tokio::time::Instant::now() < deadline => {
                let wait = backoff.next(rand::random(), None);
                tracing::warn!(error = format!("{e:#}"), retry_in_ms = wait.as_millis() as u64, "meterd.migrate_retry");
                tokio::time::sleep(wait).await;
            }
            Err(e) => return Err(e),
        }
    }
}

pub(crate) async fn run(role: Role, cfg: Config) -> anyhow::Result<()> {
    migrate(&cfg).await?;
    if role == Role::Migrate {
        return Ok(());
    }
    let shutdown = CancellationToken::new();
    let health = Health::default();
    let mut tasks: JoinSet<(&'static str, anyhow::Result<()>)> = JoinSet::new();
    tokio::spawn(cancel_on_signal(shutdown.clone()));

    let admin =
        TcpListener::bind(&cfg.admin.listen).await.with_context(|| format!("binding admin {}", cfg.admin.listen))?;
    tracing::info!(addr = %cfg.admin.listen, "meterd.admin_listening");
    {
        let (h, s) = (health.clone(), shutdown.clone());
        tasks.spawn(async move { ("admin", serve_admin(admin, h, s).await.map_err(Into::into)) });
    }
    if matches!(role, Role::Ingest | Role::All) {
        let listener = TcpListener::bind(&cfg.ingest.listen)
            .await
            .with_context(|| format!("binding ingest {}", cfg.ingest.listen))?;
        let http = match cfg.ingest.http_listen.as_str() {
            "" => None,
            addr => {
                meter_runtime::check_exposure(&cfg.security, "ingest (HTTP)", addr)?;
                Some(TcpListener::bind(addr).await.with_context(|| format!("binding ingest.http_listen {addr}"))?)
            }
        };
        let auth = meter_runtime::Auth::start(&cfg.security, "ingest", &cfg.ingest.listen, shutdown.clone())?;
        let (c, k, h, s) = (cfg.ingest.clone(), cfg.kafka.clone(), health.clone(), shutdown.clone());
        tasks.spawn(async move { ("ingest", meter_ingest::run(&c, &k, auth, listener, http, h, s).await) });
    }
    if matches!(role, Role::Aggregate | Role::All) {
        let (c, k, h, s) = (cfg.aggregator.clone(), cfg.kafka.clone(), health.clone(), shutdown.clone());
        tasks.spawn(async move { ("aggregator", meter_aggregator::run(&c, &k, h, s).await) });
    }
    if matches!(role, Role::Load | Role::All) {
        let mut load_cfg = cfg.load.clone();
        load_cfg.late_horizon_seconds = cfg.ingest.max_past_seconds;
        let (c, k, st, h, s) = (load_cfg, cfg.kafka.clone(), cfg.clickhouse.clone(), health.clone(), shutdown.clone());
        tasks.spawn(async move { ("load", meter_aggregator::run_load(&c, &k, &st, h, s).await) });
    }

    let clock: std::sync::Arc<dyn meter_runtime::Clock> = std::sync::Arc::new(meter_runtime::SystemClock);
    if matches!(role, Role::Enforce | Role::All) {
        let (c, k, h, s, cl) =
            (cfg.enforcer.clone(), cfg.kafka.clone(), health.clone(), shutdown.clone(), clock.clone());
        let targets = cfg.security.webhook_allowed_targets.clone();
        tasks.spawn(async move { ("enforcer", meter_enforcer::run(&c, &k, &targets, cl, h, s).await) });
    }
    if matches!(role, Role::Api | Role::All) {
        let listener =
            TcpListener::bind(&cfg.api.listen).await.with_context(|| format!("binding api {}", cfg.api.listen))?;
        let grpc = TcpListener::bind(&cfg.api.grpc_listen)
            .await
            .with_context(|| format!("binding api grpc {}", cfg.api.grpc_listen))?;
        let mut api_cfg = cfg.api.clone();
        api_cfg.late_horizon_seconds = cfg.ingest.max_past_seconds;
        let (c, k, ch, h, s, cl) =
            (api_cfg, cfg.kafka.clone(), cfg.clickhouse.clone(), health.clone(), shutdown.clone(), clock.clone());
        let auth = meter_runtime::Auth::start(&cfg.security, "api", &cfg.api.listen, shutdown.clone())?;
        let security = (auth, cfg.security.webhook_allowed_targets.clone());
        tasks.spawn(async move { ("api", meter_api::run(&c, &k, &ch, security, cl, listener, grpc, h, s).await) });
    }

    let mut failure = None;
    while let Some(joined) = tasks.join_next().await {
        let (name, result) = joined.context("a role panicked")?;
        health.drain();
        match result {
            Ok(()) => tracing::info!(role = name, "meterd.role_stopped"),
            Err(e) => {
                tracing::error!(role = name, error = format!("{e:#}"), "meterd.role_failed");
                failure.get_or_insert(e.context(format!("role {name} failed")));
            }
        }
        shutdown.cancel();
    }
    failure.map_or(Ok(()), Err)
}
