//! When a timeframe's usage is final (the rule: `meter_core::finality`).
//! The api writes a probe to every partition of `usage.events` every few
//! seconds, which the aggregator and the load role carry to ClickHouse
//! behind the rows before it, so once every partition's probe written at T
//! is queryable, every event acknowledged before T (less the produce timeout
//! and a margin for clocks) is too.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::extract::State;
use axum::Json;
use meter_core::cycle::rfc3339;
use meter_core::finality::Finality;
use meter_core::UnixMs;
use meter_proto::events::probe_records;
use tokio_util::sync::CancellationToken;

use crate::handlers::Answer;
use crate::model::WatermarkView;
use crate::App;

/// How often a probe is written.
const PROBE_EVERY: Duration = Duration::from_secs(5);
/// How long a read of ClickHouse's watermark is reused.
const REUSE: Duration = Duration::from_secs(2);
/// The finality rule and the last watermark read.
#[derive(Debug)]
pub(crate) struct Watermark {
    rule: Finality,
    last: Mutex<Option<(Instant, Option<UnixMs>)>>,
}

impl Watermark {
    pub(crate) fn new(horizon_ms: i64, produce_timeout_ms: i64) -> Arc<Watermark> {
        Arc::new(Watermark { rule: Finality::new(horizon_ms, produce_timeout_ms), last: Mutex::new(None) })
    }

    /// When the oldest partition's latest loaded probe was written (`None`:
    /// not every partition has had one loaded, or ClickHouse did not answer).
    pub(crate) async fn loaded(&self, app: &App) -> Option<UnixMs> {
        if let Some((at, v)) = *self.last.lock().expect("watermark") {
            if at.elapsed() < REUSE {
                return v;
            }
        }
        let partitions = app.events.partitions().await.ok()?;
        let v = app.store.loaded_through(partitions as u32).await.unwrap_or(None);
        *self.last.lock().expect("watermark") = Some((Instant::now(), v));
        v
    }

    /// Timeframes ending at or before this are final (an hour boundary).
    pub(crate) fn final_before(&self, loaded: Option<UnixMs>) -> Option<UnixMs> {
        self.rule.final_before(loaded)
    }

    pub(crate) fn horizon_ms(&self) -> i64 {
        self.rule.horizon_ms
    }
}

/// Seconds from the oldest partition's latest loaded probe to now: how
/// stale "final" is (it grows while the aggregator or the load role is stuck).
pub(crate) const FINAL_LAG: &str = "meter_api_final_lag_seconds";

/// Writes a probe to every partition of the events topic every
/// `PROBE_EVERY` until `shutdown` (a failed write is tried again at the
/// next), and sets `FINAL_LAG` from what has been loaded.
pub(crate) async fn write_probes(app: App, shutdown: CancellationToken) {
    metrics::describe_gauge!(
        FINAL_LAG,
        "Seconds since the oldest usage.events partition's latest probe that reached ClickHouse was written: how far behind the final watermark is."
    );
    loop {
        let written = async {
            let partitions = app.events.partitions().await?;
            app.events.send_all(&probe_records(app.clock.now_ms(), partitions)).await
        };
        if let Err(e) = written.await {
            tracing::info!(error = %e, "api.probe_not_written");
        }
        if let Some(loaded) = app.watermark.loaded(&app).await {
            metrics::gauge!(FINAL_LAG).set((app.clock.now_ms() - loaded).max(0) as f64 / 1000.0);
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(PROBE_EVERY) => {}
        }
    }
}

/// How far usage is final: timeframes ending at or before `final_before`
/// will not change again but by an adjustment.
#[utoipa::path(get, path = "/v1/watermark", tag = "history",
    responses((status = 200, body = WatermarkView)))]
pub(crate) async fn watermark(State(app): State<App>) -> Answer<WatermarkView> {
    let loaded = app.watermark.loaded(&app).await;
    Ok(Json(WatermarkView {
        final_before: app.watermark.final_before(loaded).map(rfc3339),
        loaded_through: loaded.map(rfc3339),
        late_event_horizon_seconds: app.watermark.horizon_ms() / 1000,
    }))
}
