//! Billing cycles: whether a cycle's usage is final, and closing it
//! (`POST /v1/cycles/{cycle}/close`), after which its numbers never change.
//! Closing needs the cycle to be final (its end plus the late-event horizon
//! passed and everything acknowledged until then counted), so no usage of
//! it can still be acknowledged; the close is written to every partition of
//! `usage.events` (each aggregator applies it in order: adjustments of the
//! cycle are refused after it, and a counter event of it that still comes,
//! e.g. after the horizon was lengthened, is counted in the next open
//! cycle), then recorded in the config topic (`cycle/<YYYY-MM>`).

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use meter_core::adjust::{cycle_name, parse_cycle};
use meter_core::config_view::{ConfigKey, CycleClosed};
use meter_core::cycle::rfc3339;
use meter_core::Cycle;
use meter_proto::events::close_records;

use crate::error::ApiError;
use crate::handlers::{write_config, Answer};
use crate::model::{CycleView, ErrorBody};
use crate::App;

fn cycle_param(name: &str) -> Result<Cycle, ApiError> {
    parse_cycle(name).ok_or_else(|| ApiError::bad_request(format!("cycle: {name:?} is not a cycle (YYYY-MM)")))
}

async fn view(app: &App, cycle: Cycle) -> CycleView {
    let final_before = app.watermark.final_before(app.watermark.loaded(app).await);
    let closed = app.views.0.read().expect("views").config.closed_cycles.get(&cycle_name(cycle)).cloned();
    CycleView {
        cycle: cycle_name(cycle),
        start: rfc3339(cycle.start_ms),
        end: rfc3339(cycle.end_ms),
        is_final: final_before.is_some_and(|f| cycle.end_ms <= f),
        closed: closed.is_some(),
        closed_at: closed.as_ref().map(|c| rfc3339(c.closed_ms)),
        closed_by: closed.map(|c| c.actor),
    }
}

/// A billing cycle: whether its usage is final and whether it is closed.
#[utoipa::path(get, path = "/v1/cycles/{cycle}", tag = "history",
    params(("cycle" = String, Path, description = "The cycle, `YYYY-MM`.")),
    responses((status = 200, body = CycleView), (status = 400, body = ErrorBody)))]
pub(crate) async fn get_cycle(State(app): State<App>, Path(name): Path<String>) -> Answer<CycleView> {
    let cycle = cycle_param(&name)?;
    Ok(Json(view(&app, cycle).await))
}

/// Closes a billing cycle once its usage is final: its numbers never change
/// again (adjustments of it are refused). Closing a closed cycle answers 200.
#[utoipa::path(post, path = "/v1/cycles/{cycle}/close", tag = "history",
    params(("cycle" = String, Path, description = "The cycle, `YYYY-MM`.")),
    responses(
        (status = 201, description = "Closed.", body = CycleView),
        (status = 200, description = "It was closed already.", body = CycleView),
        (status = 400, body = ErrorBody),
        (status = 409, description = "Not final yet: the cycle has not ended, or the late-event horizon after its end has not passed, or the pipeline has not counted everything up to it.", body = ErrorBody)))]
pub(crate) async fn close_cycle(
    State(app): State<App>,
    Path(name): Path<String>,
) -> Result<(StatusCode, Json<CycleView>), ApiError> {
    let cycle = cycle_param(&name)?;
    let name = cycle_name(cycle);
    let _serial = app.config_writes.lock().await;
    if app.views.0.read().expect("views").config.closed_cycles.contains_key(&name) {
        return Ok((StatusCode::OK, Json(view(&app, cycle).await)));
    }
    let now = app.clock.now_ms();
    let current = view(&app, cycle).await;
    if !current.is_final {
        let horizon = app.watermark.horizon_ms() / 1000;
        return Err(ApiError::conflict(format!(
            "cycle: {name} is not final yet: late usage is accepted until {horizon} s after it ends ({}), and \
             the pipeline must have counted everything until then (GET /v1/watermark); retry after that",
            rfc3339(cycle.end_ms + horizon * 1000)
        )));
    }
    let partitions = app.events.partitions().await.map_err(crate::adjustments::unwritten)?;
    app.events.send_all(&close_records(cycle.start_ms, partitions)).await.map_err(crate::adjustments::unwritten)?;
    let closed = CycleClosed {
        cycle_start_ms: cycle.start_ms,
        closed_ms: now,
        actor: crate::auth::actor(),
        request_id: crate::request_id::current().map(|c| c.id).unwrap_or_default(),
    };
    write_config(&app, ConfigKey::Cycle(name), &closed, None).await?;
    Ok((StatusCode::CREATED, Json(view(&app, cycle).await)))
}
