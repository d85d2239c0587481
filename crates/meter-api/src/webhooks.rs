//! Webhook endpoints and their deliveries: create, change, disable,
//! delete, test; recent deliveries with every attempt; resend; dead letters
//! and their replay. Requests for the dispatcher (tests, resends, replays)
//! go through the webhooks topic like the enforcer's events.

use axum::extract::{Path, State};
use axum::Json;
use meter_core::config_view::{ConfigKey, WebhookEndpoint};
use meter_core::cycle::rfc3339;
use meter_core::delivery::{delivery_id, Delivery, DeliveryState};
use meter_core::enforce::{Alert, AlertType};
use meter_core::ProjectId;
use meter_enforcer::{sign, WebhookJob};

use crate::error::{limit_param, ApiError};
use crate::handlers::{produce, store_config, write_config, Answer, Body, Params};
use crate::model::{
    AttemptView, DeadLetterList, DeadLetterView, DeliveryList, DeliveryParams, DeliveryView, ErrorBody, Pagination,
    ReplayBody, Replayed, TestSent, Webhook, WebhookBody, WebhookList, WebhookPatch,
};
use crate::query::Query;
use crate::App;

const ENDPOINT_ID: &str = "Endpoint id (project-id rules).";

fn redacted(w: &WebhookEndpoint) -> Webhook {
    Webhook {
        id: w.id.clone(),
        url: w.url.clone(),
        secret: "whsec_…",
        event_types: w.event_types.clone(),
        disabled: w.disabled,
        disabled_reason: w.disabled_reason.clone(),
    }
}

/// Creates or replaces a webhook endpoint.
#[utoipa::path(put, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = "Endpoint id (project-id rules).")),
    request_body = WebhookBody,
    responses((status = 200, body = Webhook), (status = 400, body = ErrorBody)))]
pub(crate) async fn put_webhook(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Body<WebhookBody>,
) -> Answer<Webhook> {
    let Json(b) = body?;
    ProjectId::new(&id).map_err(|e| ApiError::bad_request(format!("webhook id: {e}")))?;
    meter_runtime::check_webhook_url(&b.url, &app.webhook_targets)
        .await
        .map_err(|e| ApiError::bad_request(format!("url: {e}")))?;
    sign::check_secret(&b.secret).map_err(|e| ApiError::bad_request(format!("secret: {e}")))?;
    let w = WebhookEndpoint {
        id: id.clone(),
        url: b.url,
        secret: b.secret,
        event_types: b.event_types,
        disabled: b.disabled,
        disabled_reason: None,
    };
    write_config(&app, ConfigKey::Webhook(id), &w, None).await?;
    Ok(Json(redacted(&w)))
}

/// Every webhook endpoint.
#[utoipa::path(get, path = "/v1/webhooks", tag = "webhooks", responses((status = 200, body = WebhookList)))]
pub(crate) async fn list_webhooks(State(app): State<App>) -> Answer<WebhookList> {
    let g = app.views.0.read().expect("views");
    Ok(Json(WebhookList { webhooks: g.config.webhooks.values().map(redacted).collect() }))
}

/// Deliveries that exhausted their retries.
#[utoipa::path(get, path = "/v1/webhooks/dead-letters", tag = "webhooks",
    responses((status = 200, body = DeadLetterList)))]
pub(crate) async fn list_dead_letters(State(app): State<App>) -> Answer<DeadLetterList> {
    let g = app.views.0.read().expect("views");
    let dead_letters = g
        .dead_letters
        .iter()
        .map(|(k, d)| DeadLetterView {
            key: k.clone(),
            event_id: d.job.alert.id.clone(),
            kind: d.job.alert.kind,
            project_id: d.job.alert.project_id.clone(),
            endpoint_id: d.endpoint_id.clone(),
            attempts: d.attempts,
            last_error: d.last_error.clone(),
            failed_at: rfc3339(d.failed_ms),
        })
        .collect();
    Ok(Json(DeadLetterList { dead_letters }))
}

/// Queues dead letters for delivery again (all, or those named).
#[utoipa::path(post, path = "/v1/webhooks/dead-letters/replay", tag = "webhooks",
    request_body = ReplayBody,
    responses((status = 200, body = Replayed), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn replay_dead_letters(State(app): State<App>, body: Body<ReplayBody>) -> Answer<Replayed> {
    let Json(b) = body?;
    let chosen: Vec<(String, WebhookJob)> = {
        let g = app.views.0.read().expect("views");
        match &b.keys {
            None => g.dead_letters.iter().map(|(k, d)| (k.clone(), d.job.clone())).collect(),
            Some(keys) => keys
                .iter()
                .map(|k| {
                    g.dead_letters
                        .get(k)
                        .map(|d| (k.clone(), d.job.clone()))
                        .ok_or_else(|| ApiError::not_found(format!("keys: no dead letter {k:?}")))
                })
                .collect::<Result<_, _>>()?,
        }
    };
    for (key, job) in &chosen {
        let bytes = serde_json::to_vec(job).expect("job serializes");
        produce(&app, &app.kafka.webhooks_topic, &job.alert.project_id, Some(&bytes)).await?;
        produce(&app, &app.kafka.dead_letters_topic, key, None).await?;
        app.views.0.write().expect("views").dead_letters.remove(key);
    }
    Ok(Json(Replayed { replayed: chosen.len() }))
}

/// Changes some fields of an endpoint (e.g. `{"disabled": true}`), keeping
/// the others, its secret included.
#[utoipa::path(patch, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = ENDPOINT_ID)),
    request_body = WebhookPatch,
    responses((status = 200, body = Webhook), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn patch_webhook(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Body<WebhookPatch>,
) -> Answer<Webhook> {
    let Json(b) = body?;
    let _serial = app.config_writes.lock().await;
    let mut w = endpoint(&app, &id)?;
    if let Some(url) = b.url {
        meter_runtime::check_webhook_url(&url, &app.webhook_targets)
            .await
            .map_err(|e| ApiError::bad_request(format!("url: {e}")))?;
        w.url = url;
    }
    if let Some(secret) = b.secret {
        sign::check_secret(&secret).map_err(|e| ApiError::bad_request(format!("secret: {e}")))?;
        w.secret = secret;
    }
    if let Some(types) = b.event_types {
        w.event_types = types;
    }
    if let Some(disabled) = b.disabled {
        w.disabled = disabled;
        if !disabled {
            w.disabled_reason = None;
        }
    }
    write_config(&app, ConfigKey::Webhook(id), &w, None).await?;
    Ok(Json(redacted(&w)))
}

fn endpoint(app: &App, id: &str) -> Result<WebhookEndpoint, ApiError> {
    let g = app.views.0.read().expect("views");
    g.config.webhooks.get(id).cloned().ok_or_else(|| ApiError::not_found(format!("no webhook endpoint {id:?}")))
}

/// Deletes an endpoint; its pending deliveries are cancelled.
#[utoipa::path(delete, path = "/v1/webhooks/{id}", tag = "webhooks",
    params(("id" = String, Path, description = ENDPOINT_ID)),
    responses((status = 200, description = "The endpoint as it was.", body = Webhook), (status = 404, body = ErrorBody)))]
pub(crate) async fn delete_webhook(State(app): State<App>, Path(id): Path<String>) -> Answer<Webhook> {
    let w = endpoint(&app, &id)?;
    store_config(&app, ConfigKey::Webhook(id), None, None).await?;
    Ok(Json(redacted(&w)))
}

/// Sends a signed `webhook.test` event to one endpoint (through the
/// dispatcher, like any event: follow it in its deliveries).
#[utoipa::path(post, path = "/v1/webhooks/{id}/test", tag = "webhooks",
    params(("id" = String, Path, description = ENDPOINT_ID)),
    responses((status = 202, body = TestSent), (status = 404, body = ErrorBody)))]
pub(crate) async fn test_webhook(
    State(app): State<App>,
    Path(id): Path<String>,
) -> Result<(axum::http::StatusCode, Json<TestSent>), ApiError> {
    endpoint(&app, &id)?;
    let now = app.clock.now_ms();
    let cycle = meter_core::Cycle::containing(now);
    let alert = Alert {
        id: format!("test_{:016x}", rand::random::<u64>()),
        kind: AlertType::WebhookTest,
        project_id: String::new(),
        branch_id: None,
        metric: None,
        threshold: None,
        usage: 0,
        quota: None,
        cycle_start_ms: cycle.start_ms,
        cycle_end_ms: cycle.end_ms,
        occurred_ms: now,
        reason: Some("requested with POST /v1/webhooks/{id}/test".into()),
    };
    let sent = TestSent { event_id: alert.id.clone(), delivery_id: delivery_id(&alert.id, &id) };
    let job = WebhookJob { alert, only_endpoint: Some(id.clone()) };
    let bytes = serde_json::to_vec(&job).expect("job serializes");
    produce(&app, &app.kafka.webhooks_topic, &id, Some(&bytes)).await?;
    Ok((axum::http::StatusCode::ACCEPTED, Json(sent)))
}

fn delivery_view(d: &Delivery) -> DeliveryView {
    DeliveryView {
        id: d.id.clone(),
        event_id: d.alert.id.clone(),
        kind: d.alert.kind,
        project_id: d.alert.project_id.clone(),
        endpoint_id: d.endpoint_id.clone(),
        state: d.state,
        created_at: rfc3339(d.created_ms),
        updated_at: rfc3339(d.updated_ms),
        attempt_count: d.attempt_count,
        next_attempt_at: d.next_attempt_ms.map(rfc3339),
        reason: d.reason.clone(),
        attempts: d
            .attempts
            .iter()
            .map(|a| AttemptView {
                at: rfc3339(a.at_ms),
                status: a.status,
                error: a.error.clone(),
                duration_ms: a.duration_ms,
            })
            .collect(),
    }
}

/// Recent deliveries to one endpoint, newest first, with every attempt
/// (finished ones for `webhook_delivery_retention_hours`).
#[utoipa::path(get, path = "/v1/webhooks/{id}/deliveries", tag = "webhooks",
    params(("id" = String, Path, description = ENDPOINT_ID), DeliveryParams),
    responses((status = 200, body = DeliveryList), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn list_deliveries(
    State(app): State<App>,
    Path(id): Path<String>,
    params: Params<DeliveryParams>,
) -> Answer<DeliveryList> {
    let Query(p) = params?;
    endpoint(&app, &id)?;
    let kind = match p.event_type.as_deref() {
        None => None,
        Some(t) => Some(
            AlertType::ALL
                .into_iter()
                .find(|k| k.name() == t)
                .ok_or_else(|| ApiError::bad_param("event_type", format!("{t:?} is not an event type")))?,
        ),
    };
    let state = match p.state.as_deref() {
        None => None,
        Some(s) => Some(serde_json::from_value::<DeliveryState>(serde_json::json!(s)).map_err(|_| {
            ApiError::bad_param("state", format!("{s:?} is not one of pending, delivered, dead, cancelled"))
        })?),
    };
    let limit = limit_param(p.limit.as_deref(), 20, 100)?;
    let after = match &p.cursor {
        None => None,
        Some(c) => {
            Some(decode_cursor(c).ok_or_else(|| ApiError::bad_param("cursor", "not a cursor this API returned"))?)
        }
    };
    let g = app.views.0.read().expect("views");
    let mut mine: Vec<&Delivery> = g
        .deliveries
        .values()
        .filter(|d| d.endpoint_id == id)
        .filter(|d| kind.is_none_or(|k| d.alert.kind == k))
        .filter(|d| p.project_id.as_ref().is_none_or(|pid| &d.alert.project_id == pid))
        .filter(|d| state.is_none_or(|s| d.state == s))
        .filter(|d| after.as_ref().is_none_or(|(ms, did)| (d.created_ms, &d.id) < (*ms, did)))
        .collect();
    mine.sort_by(|a, b| (b.created_ms, &b.id).cmp(&(a.created_ms, &a.id)));
    let more = mine.len() > limit;
    mine.truncate(limit);
    let next_cursor = more.then(|| mine.last().map(|d| encode_cursor(d.created_ms, &d.id))).flatten();
    Ok(Json(DeliveryList {
        deliveries: mine.into_iter().map(delivery_view).collect(),
        pagination: Pagination { next_cursor, limit },
    }))
}

/// Cursors: the hex of `<created ms>/<delivery id>` of a page's last delivery.
fn encode_cursor(created_ms: i64, id: &str) -> String {
    crate::history::encode_cursor(&format!("{created_ms}/{id}"))
}

fn decode_cursor(c: &str) -> Option<(i64, String)> {
    let text = crate::history::decode_cursor(c)?;
    let (ms, id) = text.split_once('/')?;
    Some((ms.parse().ok()?, id.to_owned()))
}

/// Sends a delivery again from the start of the schedule, whatever its state
/// (same `webhook-id`; its attempts so far stay listed).
#[utoipa::path(post, path = "/v1/webhooks/{id}/deliveries/{delivery_id}/resend", tag = "webhooks",
    params(("id" = String, Path, description = ENDPOINT_ID), ("delivery_id" = String, Path, description = "A delivery id from the list.")),
    responses((status = 202, body = DeliveryView), (status = 404, body = ErrorBody)))]
pub(crate) async fn resend_delivery(
    State(app): State<App>,
    Path((id, delivery)): Path<(String, String)>,
) -> Result<(axum::http::StatusCode, Json<DeliveryView>), ApiError> {
    endpoint(&app, &id)?;
    let d = {
        let g = app.views.0.read().expect("views");
        g.deliveries
            .get(&delivery)
            .filter(|d| d.endpoint_id == id)
            .cloned()
            .ok_or_else(|| ApiError::not_found(format!("no delivery {delivery:?} to endpoint {id:?}")))?
    };
    let key = if d.alert.project_id.is_empty() { id.clone() } else { d.alert.project_id.clone() };
    let job = WebhookJob { alert: d.alert.clone(), only_endpoint: Some(id) };
    let bytes = serde_json::to_vec(&job).expect("job serializes");
    produce(&app, &app.kafka.webhooks_topic, &key, Some(&bytes)).await?;
    Ok((axum::http::StatusCode::ACCEPTED, Json(delivery_view(&d))))
}
