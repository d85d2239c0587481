//! API errors: a status and a JSON body that names the problem.

use axum::extract::rejection::JsonRejection;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::model::{ErrorBody, ErrorDetail};
use crate::neon_model::NeonError;

/// An error answer: `{"error": {"code": ..., "message": ...}}`.
#[derive(Debug)]
pub(crate) struct ApiError {
    status: StatusCode,
    code: &'static str,
    message: String,
    /// The query parameter at fault, when one is.
    param: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, code, message: message.into(), param: None }
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }

    /// A 400 naming the query parameter at fault: `{"error": {..., "param": "to"}}`,
    /// the message starting with the parameter's name.
    pub(crate) fn bad_param(param: &str, message: impl Into<String>) -> Self {
        let mut e = Self::bad_request(format!("{param}: {}", message.into()));
        e.param = Some(param.to_owned());
        e
    }

    pub(crate) fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// 401: no usable token.
    pub(crate) fn unauthenticated(e: meter_core::auth::AuthError) -> Self {
        Self::new(StatusCode::UNAUTHORIZED, "unauthenticated", e.to_string())
    }

    /// 403: a token without the scope the call needs.
    pub(crate) fn forbidden(message: impl Into<String>) -> Self {
        Self::new(StatusCode::FORBIDDEN, "permission_denied", message)
    }

    /// 405: the path is served, not with this method.
    pub(crate) fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", message)
    }

    /// 409: the idempotency key was used for a different request.
    pub(crate) fn conflict(message: impl Into<String>) -> Self {
        Self::new(StatusCode::CONFLICT, "conflict", message)
    }

    /// 422: well formed, refused by what the pipeline holds (e.g. an
    /// adjustment that would take a counter below zero).
    pub(crate) fn refused(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(StatusCode::UNPROCESSABLE_ENTITY, code, message)
    }

    pub(crate) fn unavailable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message)
    }

    /// The answer's status (the console shows errors as pages).
    pub(crate) fn status(&self) -> StatusCode {
        self.status
    }

    /// What the error says.
    pub(crate) fn message(&self) -> &str {
        &self.message
    }
}

/// The `limit` query parameter: `default` when absent, else 1 to `max`.
pub(crate) fn limit_param(limit: Option<&str>, default: usize, max: usize) -> Result<usize, ApiError> {
    match limit {
        None => Ok(default),
        Some(l) => l
            .parse()
            .ok()
            .filter(|n| (1..=max).contains(n))
            .ok_or_else(|| ApiError::bad_param("limit", format!("{l:?} is not a number from 1 to {max}"))),
    }
}

impl From<ApiError> for tonic::Status {
    fn from(e: ApiError) -> Self {
        match e.status {
            StatusCode::NOT_FOUND => tonic::Status::not_found(e.message),
            StatusCode::BAD_REQUEST | StatusCode::METHOD_NOT_ALLOWED => tonic::Status::invalid_argument(e.message),
            StatusCode::UNAUTHORIZED => tonic::Status::unauthenticated(e.message),
            StatusCode::FORBIDDEN => tonic::Status::permission_denied(e.message),
            _ => tonic::Status::unavailable(e.message),
        }
    }
}

impl From<JsonRejection> for ApiError {
    fn from(r: JsonRejection) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_json", r.body_text())
    }
}

impl ApiError {
    /// A query string that does not parse, or a parameter given twice
    /// (`crate::query::Query`).
    pub(crate) fn invalid_query(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_query", message)
    }

    /// A 400 for a query parameter given more than once, naming it.
    pub(crate) fn repeated_param(param: &str, message: impl Into<String>) -> Self {
        let mut e = Self::new(StatusCode::BAD_REQUEST, "invalid_query", format!("{param}: {}", message.into()));
        e.param = Some(param.to_owned());
        e
    }
}

impl ApiError {
    /// A 406: a history range longer than its granularity allows (Neon's
    /// status for it on `/api/v2`).
    pub(crate) fn not_acceptable(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_ACCEPTABLE, "range_too_long", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let context = crate::request_id::current();
        let request_id = context.as_ref().map(|c| c.id.clone());
        let mut r = if context.is_some_and(|c| c.neon) {
            let body = NeonError { code: self.code, message: self.message, request_id };
            (self.status, Json(body)).into_response()
        } else {
            let error = ErrorDetail { code: self.code, message: self.message, param: self.param, request_id };
            (self.status, Json(ErrorBody { error })).into_response()
        };
        if self.status == StatusCode::UNAUTHORIZED {
            r.headers_mut()
                .insert(axum::http::header::WWW_AUTHENTICATE, axum::http::HeaderValue::from_static("Bearer"));
        }
        r
    }
}
