//! Who may call the API: a bearer token whose credential holds the scope the
//! call needs (GET: `read`; every other method: `manage`). Answers 401 for a
//! missing, malformed, unknown or revoked token and 403 for a missing scope,
//! with a JSON body. The OpenAPI document is public; the console checks the
//! same tokens from its sign-in cookie.

use axum::extract::{Request, State};
use axum::http::{header, Method};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use meter_core::auth::{bearer, AuthError, Scope};
use meter_runtime::Auth;

use crate::error::ApiError;

/// The scope a request needs.
fn scope_of(method: &Method) -> Scope {
    if matches!(*method, Method::GET | Method::HEAD) {
        Scope::Read
    } else {
        Scope::Manage
    }
}

/// Checks the `authorization` value for `scope` against `auth`; the
/// credential's name ("" without a tokens file).
pub(crate) fn check(auth: &Auth, header: Option<&str>, scope: Scope) -> Result<String, ApiError> {
    let Some(table) = auth.current() else { return Ok(String::new()) };
    let token = bearer(header).map_err(ApiError::unauthenticated)?;
    let credential = table.api(token).ok_or(ApiError::unauthenticated(AuthError::Unknown))?;
    if !credential.allows(scope) {
        return Err(ApiError::forbidden(format!("credential {:?} lacks the {scope} scope", credential.name)));
    }
    Ok(credential.name.clone())
}

tokio::task_local! {
    /// The name of the credential the request being answered came with.
    static ACTOR: String;
}

/// Who makes the change being answered: the credential's name ("" without
/// a tokens file), kept with what it writes (adjustments, quota changes).
pub(crate) fn actor() -> String {
    ACTOR.try_with(Clone::clone).unwrap_or_default()
}

/// Runs `next` with `name` as the actor (the console signs in by cookie).
pub(crate) async fn as_actor(name: String, next: Next, req: Request) -> Response {
    ACTOR.scope(name, next.run(req)).await
}

/// The HTTP middleware.
pub(crate) async fn require(State(auth): State<Auth>, req: Request, next: Next) -> Response {
    // The console signs browsers in itself (crate::console), with the same tokens.
    let path = req.uri().path();
    if path == crate::openapi::PATH || path == crate::console::PREFIX || path.starts_with("/console/") {
        return next.run(req).await;
    }
    let header = req.headers().get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    match check(&auth, header, scope_of(req.method())) {
        Ok(name) => as_actor(name, next, req).await,
        Err(e) => e.into_response(),
    }
}
