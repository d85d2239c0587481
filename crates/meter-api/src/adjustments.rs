//! Corrections with an audit trail: `POST /v1/projects/{id}/adjustments`
//! writes an adjustment to `usage.events` (the project's partition), where
//! the aggregator applies it in order with usage, in the transaction that
//! commits the totals enforcement reads; the answer waits (up to
//! `VERDICT_WAIT`) for its verdict on `meter.adjustments`, which the list
//! is read from too.

use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use meter_core::adjust::{cycle_name, parse_cycle, Adjustment, AdjustmentOutcome, AdjustmentRequest};
use meter_core::aggregate::Retention;
use meter_core::cycle::rfc3339;
use meter_proto::adjust::adjustment_record;

use crate::error::ApiError;
use crate::handlers::{known, project_id, Body, Params, PROJECT_ID};
use crate::model::{AdjustmentBody, AdjustmentList, AdjustmentListParams, AdjustmentStatus, AdjustmentView, ErrorBody};
use crate::query::Query;
use crate::App;

/// How long a POST waits for the aggregator's verdict before answering 202.
const VERDICT_WAIT: Duration = Duration::from_secs(10);

fn view(a: &Adjustment, judged: Option<&AdjustmentOutcome>) -> AdjustmentView {
    let status = match judged {
        None => AdjustmentStatus::Pending,
        Some(o) if o.refusal.is_some() => AdjustmentStatus::Refused,
        Some(_) => AdjustmentStatus::Applied,
    };
    AdjustmentView {
        project_id: a.project_id.to_string(),
        metric: a.metric,
        hour: rfc3339(a.hour_ms),
        cycle: cycle_name(a.cycle()),
        cycle_wide: a.cycle_wide,
        delta: a.delta,
        reason: a.reason.clone(),
        idempotency_key: a.idempotency_key.clone(),
        actor: a.actor.clone(),
        created_at: rfc3339(a.created_ms),
        request_id: a.request_id.clone(),
        status,
        refusal: judged.and_then(|o| o.refusal),
        counter_after: judged.map(|o| o.counter_after),
    }
}

fn judged(app: &App, project: &str, key: &str) -> Option<AdjustmentOutcome> {
    app.views.0.read().expect("views").adjustments.get(project)?.get(key).cloned()
}

/// The answer to `asked` once its key has a verdict: 201 when this request
/// made it, 200 for a retry of the same change, 409 for a different change
/// under the same key, 422 when refused.
/// `any_hour`: the request named neither an hour nor a cycle (booked in the
/// hour it arrived in), so a retry in a later hour is the same change.
fn answer(
    asked: &Adjustment,
    o: &AdjustmentOutcome,
    any_hour: bool,
) -> Result<(StatusCode, Json<AdjustmentView>), ApiError> {
    let made = &o.adjustment;
    let same = if any_hour { made.same_change_in_any_hour(asked) } else { made.same_change(asked) };
    if !same {
        return Err(ApiError::conflict(format!(
            "idempotency_key: {:?} was used for another adjustment (request {}, {})",
            made.idempotency_key,
            made.request_id,
            rfc3339(made.created_ms)
        )));
    }
    if let Some(r) = o.refusal {
        return Err(ApiError::refused(
            r.code(),
            format!(
                "delta: {}; the {} counter of {} is {}",
                r.message(),
                made.metric.name(),
                cycle_name(made.cycle()),
                o.counter_after
            ),
        ));
    }
    let mine = made.request_id == asked.request_id && made.created_ms == asked.created_ms;
    Ok((if mine { StatusCode::CREATED } else { StatusCode::OK }, Json(view(made, Some(o)))))
}

/// Adds `delta` to one counter of a project: usage taken away (negative)
/// or added (positive), with why, counted by enforcement like usage and in
/// consumption history. Idempotent by `idempotency_key`.
#[utoipa::path(post, path = "/v1/projects/{id}/adjustments", tag = "adjustments",
    params(("id" = String, Path, description = PROJECT_ID)),
    request_body = AdjustmentBody,
    responses(
        (status = 201, description = "Applied: the cycle's counter is now `counter_after`.", body = AdjustmentView),
        (status = 200, description = "A retry of an adjustment already applied: what it got.", body = AdjustmentView),
        (status = 202, description = "Written, not yet judged (the aggregator is behind); see the list.", body = AdjustmentView),
        (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "The key was used for a different adjustment.", body = ErrorBody),
        (status = 422, description = "Refused: `below_zero`, `cycle_closed` or `cycle_not_kept`.", body = ErrorBody)))]
pub(crate) async fn post_adjustment(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Body<AdjustmentBody>,
) -> Result<(StatusCode, Json<AdjustmentView>), ApiError> {
    let Json(b) = body?;
    let project = project_id(&id)?;
    let actor = crate::auth::actor();
    let request_id = crate::request_id::current().map(|c| c.id).unwrap_or_default();
    let request = AdjustmentRequest {
        metric: &b.metric,
        hour: b.hour.as_deref(),
        cycle: b.cycle.as_deref(),
        delta: b.delta,
        reason: &b.reason,
        idempotency_key: &b.idempotency_key,
    };
    let now = app.clock.now_ms();
    let a = request
        .check(project, &actor, &request_id, now)
        .map_err(|e| ApiError::bad_request(format!("{}: {}", e.field, e.message)))?;
    let any_hour = b.hour.is_none() && b.cycle.is_none();
    if let Some(o) = judged(&app, &id, &a.idempotency_key) {
        return answer(&a, &o, any_hour);
    }
    precheck(&app, &a, now)?;
    let partitions = app.events.partitions().await.map_err(unwritten)?;
    app.events.send_all(&[adjustment_record(&a, partitions)]).await.map_err(unwritten)?;
    let deadline = tokio::time::Instant::now() + VERDICT_WAIT;
    while tokio::time::Instant::now() < deadline {
        if let Some(o) = judged(&app, &id, &a.idempotency_key) {
            return answer(&a, &o, any_hour);
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok((StatusCode::ACCEPTED, Json(view(&a, None))))
}

pub(crate) fn unwritten(e: meter_kafka::ProduceError) -> ApiError {
    ApiError::unavailable(format!("kafka did not confirm the write: {e}; retry with the same idempotency_key"))
}

/// Refuses early, with the numbers, what the aggregator would refuse as
/// the API sees the project now (the aggregator still decides: usage only
/// grows the counter in between).
fn precheck(app: &App, a: &Adjustment, now: i64) -> Result<(), ApiError> {
    let g = app.views.0.read().expect("views");
    if !known(&g, a.project_id.as_str()) {
        return Err(ApiError::not_found(format!("unknown project {:?}", a.project_id.as_str())));
    }
    let cycle = a.cycle();
    if g.config.closed_cycles.contains_key(&cycle_name(cycle)) {
        return Err(ApiError::refused(
            "cycle_closed",
            format!("hour: the cycle {} is closed: its numbers never change; adjust a later cycle", cycle_name(cycle)),
        ));
    }
    if cycle.end_ms + Retention::default().cycle_grace_ms <= now {
        return Err(ApiError::refused(
            "cycle_not_kept",
            format!("hour: the cycle {} is no longer kept; adjust a later cycle", cycle_name(cycle)),
        ));
    }
    let i = a.metric.counter_index().expect("checked to be a counter");
    let counter = g.totals.get(a.project_id.as_str()).map_or(0, |t| t.counters_at(a.hour_ms).values[i]);
    if a.delta < 0 && counter.checked_add_signed(a.delta).is_none() {
        return Err(ApiError::refused(
            "below_zero",
            format!(
                "delta: {} would take the {} counter of {} below zero: it is {counter}",
                a.delta,
                a.metric.name(),
                cycle_name(cycle)
            ),
        ));
    }
    Ok(())
}

/// A project's adjustments, newest first, with who made each, why, and
/// whether it was applied.
#[utoipa::path(get, path = "/v1/projects/{id}/adjustments", tag = "adjustments",
    params(("id" = String, Path, description = PROJECT_ID), AdjustmentListParams),
    responses((status = 200, body = AdjustmentList), (status = 400, body = ErrorBody)))]
pub(crate) async fn list_adjustments(
    State(app): State<App>,
    Path(id): Path<String>,
    params: Params<AdjustmentListParams>,
) -> Result<Json<AdjustmentList>, ApiError> {
    let Query(p) = params?;
    project_id(&id)?;
    let cycle = match p.cycle.as_deref() {
        None => None,
        Some(c) => Some(parse_cycle(c).ok_or_else(|| ApiError::bad_param("cycle", format!("{c:?} is not YYYY-MM")))?),
    };
    let g = app.views.0.read().expect("views");
    let mut adjustments: Vec<&AdjustmentOutcome> = g
        .adjustments
        .get(&id)
        .into_iter()
        .flat_map(|m| m.values())
        .filter(|o| cycle.is_none_or(|c| c.contains(o.adjustment.hour_ms)))
        .collect();
    adjustments.sort_by_key(|o| std::cmp::Reverse((o.adjustment.created_ms, o.adjustment.idempotency_key.clone())));
    Ok(Json(AdjustmentList { adjustments: adjustments.into_iter().map(|o| view(&o.adjustment, Some(o))).collect() }))
}
