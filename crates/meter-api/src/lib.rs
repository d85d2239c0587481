//! The api role (HTTP/JSON): plans and project quotas with Neon's field
//! names, project status, `CheckQuota` for the control plane, webhook
//! endpoints and their dead letters, usage adjustments (written to
//! `usage.events`, judged by the aggregator), consumption history. Reads come from
//! in-memory views of the state topics (history: from ClickHouse); writes go
//! to the compacted config topic (acks=all) before they are answered. The
//! OpenAPI document of all of it, generated from the handlers and the types
//! of `model.rs`, is served at `/v1/openapi.json`.

mod adjustments;
mod auth;
mod config;
mod config_history;
mod config_writer;
mod console;
mod cycles;
mod error;
mod grpc;
mod handlers;
mod history;
mod model;
mod neon;
mod neon_model;
mod neon_project;
mod openapi;
mod query;
mod request_id;
mod views;
mod watermark;
mod webhooks;

pub use config::ApiConfig;

/// The OpenAPI 3.1 document of the HTTP API, as served at `/v1/openapi.json`.
pub fn openapi_document() -> &'static str {
    openapi::json()
}

use std::sync::Arc;

use anyhow::Context;

use axum::routing::{get, post, put};
use axum::Router;
use meter_core::target::AddressClass;
use meter_kafka::KafkaConfig;
use meter_runtime::{Auth, Clock, Health};
use rdkafka::producer::FutureProducer;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// What every handler shares.
#[derive(Clone)]
pub(crate) struct App {
    views: views::Views,
    producer: FutureProducer<meter_kafka::Quiet>,
    /// Writes adjustments to `usage.events`, as ingest writes usage.
    events: meter_kafka::EventProducer,
    /// Writes config changes and their trail in one transaction.
    config_writer: Arc<config_writer::ConfigWriter>,
    /// How far usage is final.
    watermark: Arc<watermark::Watermark>,
    kafka: KafkaConfig,
    store: meter_store::Store,
    clock: Arc<dyn Clock>,
    /// Address classes webhook URLs may point at besides public ones.
    webhook_targets: Vec<AddressClass>,
    /// Held by config writes that read what they change (PATCH), so two
    /// calls to this instance cannot lose one another's change.
    config_writes: Arc<tokio::sync::Mutex<()>>,
    /// Who may call (the console signs browsers in with the same tokens).
    auth: Auth,
    /// Whether the listener serves TLS (the console's cookie is then `Secure`).
    tls: bool,
}

/// Every path the router serves (the OpenAPI document must list each).
#[cfg(test)]
const ROUTES: [&str; 26] = [
    "/v1/projects",
    "/v1/plans",
    "/v1/plans/{name}",
    "/v1/plans/{name}/history",
    "/v1/projects/{id}/quota",
    "/v1/projects/{id}/quota/history",
    "/v1/projects/{id}/status",
    "/v1/projects/{id}/check",
    "/v1/webhooks",
    "/v1/webhooks/{id}",
    "/v1/webhooks/{id}/test",
    "/v1/webhooks/{id}/deliveries",
    "/v1/webhooks/{id}/deliveries/{delivery_id}/resend",
    "/v1/webhooks/dead-letters",
    "/v1/webhooks/dead-letters/replay",
    "/v1/projects/{id}/adjustments",
    "/v1/projects/{id}/consumption_history",
    "/v1/consumption_history/projects",
    "/v1/consumption_history/fleet",
    "/v1/watermark",
    "/v1/cycles/{cycle}",
    "/v1/cycles/{cycle}/close",
    "/v1/openapi.json",
    "/api/v2/consumption_history/projects",
    "/api/v2/consumption_history/account",
    "/api/v2/projects/{project_id}",
];

/// The API's routes over `app` (exposed for the role and for tests).
fn router(app: App) -> Router {
    let auth = app.auth.clone();
    Router::new()
        .route("/v1/plans", get(handlers::list_plans))
        .route("/v1/plans/{name}", put(handlers::put_plan).get(handlers::get_plan))
        .route("/v1/plans/{name}/history", get(config_history::plan_history))
        .route("/v1/projects", get(handlers::list_projects))
        .route(
            "/v1/projects/{id}/quota",
            put(handlers::put_quota).patch(handlers::patch_quota).get(handlers::get_quota),
        )
        .route("/v1/projects/{id}/quota/history", get(config_history::quota_history))
        .route("/v1/projects/{id}/status", get(handlers::status))
        .route("/v1/projects/{id}/check", get(handlers::check))
        .route("/v1/webhooks", get(webhooks::list_webhooks))
        .route(
            "/v1/webhooks/{id}",
            put(webhooks::put_webhook).patch(webhooks::patch_webhook).delete(webhooks::delete_webhook),
        )
        .route("/v1/webhooks/{id}/test", post(webhooks::test_webhook))
        .route("/v1/webhooks/{id}/deliveries", get(webhooks::list_deliveries))
        .route("/v1/webhooks/{id}/deliveries/{delivery_id}/resend", post(webhooks::resend_delivery))
        .route("/v1/webhooks/dead-letters", get(webhooks::list_dead_letters))
        .route("/v1/webhooks/dead-letters/replay", post(webhooks::replay_dead_letters))
        .route("/v1/projects/{id}/adjustments", post(adjustments::post_adjustment).get(adjustments::list_adjustments))
        .route("/v1/projects/{id}/consumption_history", get(history::project))
        .route("/v1/consumption_history/projects", get(history::projects))
        .route("/v1/consumption_history/fleet", get(history::fleet))
        .route("/v1/watermark", get(watermark::watermark))
        .route("/v1/cycles/{cycle}", get(cycles::get_cycle))
        .route("/v1/cycles/{cycle}/close", post(cycles::close_cycle))
        .route("/api/v2/consumption_history/projects", get(neon::projects))
        .route("/api/v2/consumption_history/account", get(neon::account))
        .route("/api/v2/projects/{project_id}", get(neon_project::get).patch(neon_project::patch))
        .route(openapi::PATH, get(openapi::document))
        .merge(console::routes(app.clone()))
        .fallback(handlers::not_found)
        .method_not_allowed_fallback(handlers::method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(auth, auth::require))
        .layer(axum::middleware::from_fn(request_id::layer))
        .with_state(app)
}

/// Runs the api role until `shutdown`: HTTP on `listener`, gRPC
/// (CheckQuota) on `grpc_listener`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    cfg: &ApiConfig,
    kafka: &KafkaConfig,
    clickhouse: &meter_store::StoreConfig,
    security: (Auth, Vec<AddressClass>),
    clock: Arc<dyn Clock>,
    listener: TcpListener,
    grpc_listener: TcpListener,
    health: Health,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let ready = health.part("api");
    let (views, followers) = views::Views::follow(kafka)?;
    // One deadline for all: the followers read side by side.
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
    for f in &followers {
        if !f.wait_caught_up(deadline.saturating_duration_since(tokio::time::Instant::now())).await {
            let behind: Vec<&str> = followers.iter().filter(|f| !f.is_caught_up()).map(|f| f.topic()).collect();
            anyhow::bail!(
                "the api could not read its state topics to the end within 60 s: {} not yet",
                behind.join(", ")
            );
        }
    }
    let producer: FutureProducer<meter_kafka::Quiet> = kafka
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create_with_context(meter_kafka::Quiet)?;
    let events = meter_kafka::EventProducer::new(kafka)?;
    // init_transactions blocks (seconds when a broker loads its coordinator).
    let k = kafka.clone();
    let config_writer = Arc::new(tokio::task::spawn_blocking(move || config_writer::ConfigWriter::new(&k)).await??);
    let store = meter_store::Store::new(clickhouse)?;
    let (auth, webhook_targets) = security;
    let config_writes = Arc::default();
    let tls = cfg.tls()?;
    let app = App {
        views,
        producer,
        events,
        config_writer,
        watermark: watermark::Watermark::new(cfg.late_horizon_seconds * 1000, kafka.produce_timeout_ms as i64),
        kafka: kafka.clone(),
        store,
        clock,
        webhook_targets,
        config_writes,
        auth: auth.clone(),
        tls: tls.is_some(),
    };
    tracing::info!(http = %listener.local_addr()?, grpc = %grpc_listener.local_addr()?, "api.listening");
    let http_tls = tls.as_ref().map(|f| f.server_config()).transpose()?;
    let mut grpc = tonic::transport::Server::builder();
    if let Some(f) = tls {
        let identity = tonic::transport::Identity::from_pem(f.cert, f.key);
        grpc = grpc.tls_config(tonic::transport::ServerTlsConfig::new().identity(identity))?;
    }
    let grpc = grpc.serve_with_incoming_shutdown(
        meter_proto::v1::quota_server::QuotaServer::with_interceptor(grpc::QuotaService(app.clone()), {
            let auth = auth.clone();
            move |req: tonic::Request<()>| {
                let header = req.metadata().get("authorization").and_then(|v| v.to_str().ok());
                auth::check(&auth, header, meter_core::auth::Scope::Read)?;
                Ok(req)
            }
        }),
        tonic::transport::server::TcpIncoming::from(grpc_listener),
        shutdown.clone().cancelled_owned(),
    );
    tokio::spawn(watermark::write_probes(app.clone(), shutdown.clone()));
    ready.store(true, std::sync::atomic::Ordering::SeqCst);
    let routes = router(app);
    let stop = shutdown.clone();
    let http = async move {
        match http_tls {
            None => axum::serve(listener, routes).with_graceful_shutdown(stop.cancelled_owned()).await,
            Some(config) => {
                let tls = meter_runtime::TlsListener::new(listener, config)?;
                axum::serve(tls, routes).with_graceful_shutdown(stop.cancelled_owned()).await
            }
        }
    };
    // Either server ending ends the role: the other is shut down gracefully
    // and the failure returned.
    let (h, g) = tokio::join!(
        meter_runtime::cancel_when_done(http, shutdown.clone()),
        meter_runtime::cancel_when_done(grpc, shutdown.clone())
    );
    h.context("api http")?;
    g?;
    drop(followers);
    tracing::info!("api.stopped");
    Ok(())
}
