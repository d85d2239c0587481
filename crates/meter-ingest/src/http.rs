//! Neon's `consumption_metrics` JSON over HTTP: `POST /v1/events` with
//! `{"events": [...]}`, on `[ingest] http_listen`. Same credentials, limits,
//! rate limit and acknowledgement as the gRPC `Report`; errors are JSON
//! bodies naming the field (`{"error": {"code", "message", "field"}}`).

use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use axum::{Json, Router};
use serde_json::json;

use crate::metrics as m;
use crate::{IngestError, IngestService};

/// The HTTP routes of the ingest role.
pub(crate) fn router(service: IngestService, max_body_bytes: usize) -> Router {
    Router::new().route("/v1/events", post(events)).layer(DefaultBodyLimit::max(max_body_bytes)).with_state(service)
}

async fn events(State(service): State<IngestService>, headers: HeaderMap, body: Bytes) -> Response {
    use tracing::Instrument;
    let authorization = headers.get("authorization").and_then(|v| v.to_str().ok());
    let span = tracing::info_span!("ingest.events", bytes = body.len());
    let result = match service.by_token(authorization) {
        Ok(credential) => service.handle_json(credential, &body).instrument(span).await,
        Err(e) => Err(e),
    };
    match result {
        Ok((events, records)) => {
            metrics::counter!(m::REQUESTS, "outcome" => "ok").increment(1);
            metrics::counter!(m::EVENTS, "outcome" => "ok").increment(events as u64);
            (StatusCode::OK, Json(json!({"accepted_events": events, "kafka_records": records}))).into_response()
        }
        Err(e) => {
            metrics::counter!(m::REQUESTS, "outcome" => e.outcome()).increment(1);
            tracing::debug!(error = %e, "ingest.events_failed");
            error_response(&e)
        }
    }
}

fn error_response(e: &IngestError) -> Response {
    let mut error = json!({"code": e.code(), "message": e.to_string()});
    if let IngestError::Invalid(b) = e {
        error["field"] = json!(match b.index {
            Some(i) => format!("events[{i}].{}", b.field),
            None => b.field.to_owned(),
        });
    }
    let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = (status, Json(json!({ "error": error }))).into_response();
    let h = r.headers_mut();
    if let IngestError::RateLimited { retry_after_ms, .. } = e {
        h.insert(axum::http::header::RETRY_AFTER, retry_after_ms.div_ceil(1000).max(1).into());
    }
    if matches!(e, IngestError::Unauthenticated(_)) {
        h.insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
    }
    r
}
