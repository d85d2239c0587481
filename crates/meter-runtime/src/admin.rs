//! The admin HTTP server of every role: `/metrics` (Prometheus text),
//! `/livez`, `/readyz`.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::Router;
use serde::Deserialize;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

use crate::Health;

/// The `[admin]` section: where the admin server listens.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdminConfig {
    pub listen: String,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig { listen: "127.0.0.1:9464".into() }
    }
}

/// Serves the admin endpoints on `listener` until `shutdown`.
pub async fn serve_admin(listener: TcpListener, health: Health, shutdown: CancellationToken) -> std::io::Result<()> {
    let handle = crate::metrics_handle();
    let upkeep = shutdown.clone();
    tokio::spawn(async move {
        // Drains histogram buffers so memory stays flat between scrapes.
        while !upkeep.is_cancelled() {
            tokio::time::sleep(std::time::Duration::from_secs(5)).await;
            handle.run_upkeep();
        }
    });
    let app = Router::new()
        .route("/metrics", get(metrics))
        .route("/livez", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(health);
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

async fn metrics() -> String {
    crate::metrics_handle().render()
}

async fn readyz(State(health): State<Health>) -> (StatusCode, String) {
    match health.check() {
        Ok(()) => (StatusCode::OK, "ready\n".into()),
        Err(missing) => (StatusCode::SERVICE_UNAVAILABLE, format!("not ready: {}\n", missing.join(", "))),
    }
}
