//! The operator and billing console at `/console`: HTML pages rendered on
//! the server from the same handlers the JSON API answers with, on the same
//! listener and with the same tokens. A browser signs in once with an API
//! token (kept in an `HttpOnly`, `SameSite=Strict` cookie); a `read` token
//! sees everything, a `manage` token may also change quotas, plans and
//! webhook endpoints (each change confirmed on a second page). No script and
//! nothing fetched from outside the binary.

mod audit;
mod chart;
mod fleet;
mod html;
mod plans;
mod project;
mod webhooks;

use axum::body::Bytes;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;
use meter_core::auth::Scope;

use crate::error::ApiError;
use crate::history::{hex, unhex};
use crate::App;
use html::{document, esc, notice, Section, Viewer};

/// Where the console lives.
pub(crate) const PREFIX: &str = "/console";

/// The cookie holding the signed-in token (hex, so any token fits).
const COOKIE: &str = "meter_console";

/// How long a sign-in lasts.
const SESSION_SECONDS: u32 = 12 * 3600;

/// The console's routes (sign-in excepted, all behind `session`).
pub(crate) fn routes(app: App) -> Router<App> {
    Router::new()
        .route("/console", get(fleet::page))
        .route("/console/fleet/usage", get(fleet::usage))
        .route("/console/projects", get(project::search))
        .route("/console/projects/{id}", get(project::page))
        .route("/console/projects/{id}/quota", post(project::edit_quota))
        .route("/console/plans", get(plans::list))
        .route("/console/plans/{name}", get(plans::page).post(plans::edit))
        .route("/console/webhooks", get(webhooks::list))
        .route("/console/webhooks/dead-letters/replay", post(webhooks::replay))
        .route("/console/webhooks/{id}", get(webhooks::page).post(webhooks::action))
        .route("/console/webhooks/{id}/deliveries/{delivery_id}/resend", post(webhooks::resend))
        .route("/console/logout", post(logout))
        .layer(axum::middleware::from_fn_with_state(app, session))
        .route("/console/login", get(login_form).post(login))
}

/// Who is signed in, from the cookie; `None` when nobody (or a token no
/// longer valid). Without a tokens file everyone may manage.
fn viewer_of(app: &App, headers: &HeaderMap) -> Option<Viewer> {
    let Some(table) = app.auth.current() else { return Some(Viewer { name: None, manage: true }) };
    let token = cookie(headers, COOKIE).and_then(|h| unhex(&h, 1024))?;
    let credential = table.api(&token).filter(|c| c.allows(Scope::Read))?;
    Some(Viewer { name: Some(credential.name.clone()), manage: credential.allows(Scope::Manage) })
}

/// Signs the browser in or out, and keeps changes to `manage` tokens and to
/// this site: a form posted from another site is refused (the cookie is
/// `SameSite=Strict` as well).
async fn session(State(app): State<App>, mut req: Request, next: Next) -> Response {
    let reading = matches!(*req.method(), Method::GET | Method::HEAD);
    let Some(viewer) = viewer_of(&app, req.headers()) else {
        if reading {
            return Redirect::to("/console/login").into_response();
        }
        return ConsoleError::new(StatusCode::UNAUTHORIZED, "sign in first").into_response();
    };
    if !reading {
        if cross_site(req.headers()) {
            return ConsoleError::new(StatusCode::FORBIDDEN, "a form posted from another site is refused")
                .into_response();
        }
        if !viewer.manage && req.uri().path() != "/console/logout" {
            return ConsoleError::new(
                StatusCode::FORBIDDEN,
                "this token has the read scope: changes need a token with the manage scope",
            )
            .with_viewer(&viewer)
            .into_response();
        }
    }
    let name = viewer.name.clone().unwrap_or_default();
    req.extensions_mut().insert(viewer);
    crate::auth::as_actor(name, next, req).await
}

/// Whether the browser says the request comes from another site.
fn cross_site(headers: &HeaderMap) -> bool {
    let fetch_site = headers.get("sec-fetch-site").and_then(|v| v.to_str().ok());
    if fetch_site.is_some_and(|s| s != "same-origin" && s != "none") {
        return true;
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match (origin, host) {
        (Some(o), Some(h)) => o.split_once("://").map(|(_, rest)| rest) != Some(h),
        _ => false,
    }
}

async fn login_form(State(app): State<App>) -> Response {
    if app.auth.current().is_none() {
        return Redirect::to("/console").into_response();
    }
    Html(login_page("")).into_response()
}

fn login_page(error: &str) -> String {
    let error = if error.is_empty() { String::new() } else { notice("error", error) };
    document(
        "Sign in",
        Section::None,
        None,
        &format!(
            "{error}<p>Sign in with an API token (<code>[security] tokens_file</code>): a token with the \
             <code>read</code> scope sees everything, one with <code>manage</code> may also change quotas, plans \
             and webhook endpoints.</p><form method=\"post\" action=\"/console/login\"><label for=\"token\">API \
             token</label><input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" \
             required size=\"40\"> <button type=\"submit\" class=\"primary\">Sign in</button></form>"
        ),
    )
}

async fn login(State(app): State<App>, body: Bytes) -> Response {
    let form = Form::parse(&body);
    let token = form.get("token").unwrap_or_default().trim();
    let valid = app.auth.current().is_none_or(|t| t.api(token).is_some_and(|c| c.allows(Scope::Read)));
    if !valid || token.is_empty() {
        return (StatusCode::UNAUTHORIZED, Html(login_page("That token is not a valid API token."))).into_response();
    }
    let secure = if app.tls { "; Secure" } else { "" };
    let cookie =
        format!("{COOKIE}={}; Path=/console; HttpOnly; SameSite=Strict; Max-Age={SESSION_SECONDS}{secure}", hex(token));
    see_other("/console", Some(cookie))
}

async fn logout(State(app): State<App>) -> Response {
    let secure = if app.tls { "; Secure" } else { "" };
    see_other("/console/login", Some(format!("{COOKIE}=; Path=/console; HttpOnly; SameSite=Strict; Max-Age=0{secure}")))
}

/// A 303 to `to` (after a form post), setting `cookie` if given.
fn see_other(to: &str, cookie: Option<String>) -> Response {
    let mut r = Redirect::to(to).into_response();
    if let Some(c) = cookie.and_then(|c| HeaderValue::from_str(&c).ok()) {
        r.headers_mut().insert(header::SET_COOKIE, c);
    }
    r
}

/// The value of cookie `name`.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
}

/// A posted form (`application/x-www-form-urlencoded`).
#[derive(Debug, Default)]
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub(crate) fn parse(body: &[u8]) -> Form {
        Form(form_urlencoded::parse(body).into_owned().collect())
    }

    /// The first value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == key).map(|(_, v)| v.as_str())
    }
}

/// A whole number typed into a form field: digits, with `,`, `_` or spaces
/// between them allowed; empty is `None`. The error names the field.
pub(crate) fn parse_amount(field: &str, text: &str) -> Result<Option<u64>, ConsoleError> {
    let digits: String = text.chars().filter(|c| !matches!(c, ',' | '_' | ' ')).collect();
    if digits.is_empty() {
        return Ok(None);
    }
    digits
        .parse()
        .map(Some)
        .map_err(|_| ConsoleError::bad_input(format!("{field}: {text:?} is not a whole number of 0 or more")))
}

/// An error shown as a page.
#[derive(Debug)]
pub(crate) struct ConsoleError {
    status: StatusCode,
    message: String,
    viewer: Option<Viewer>,
}

impl ConsoleError {
    pub(crate) fn new(status: StatusCode, message: impl Into<String>) -> Self {
        ConsoleError { status, message: message.into(), viewer: None }
    }

    pub(crate) fn bad_input(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    pub(crate) fn with_viewer(mut self, v: &Viewer) -> Self {
        self.viewer = Some(v.clone());
        self
    }
}

impl From<ApiError> for ConsoleError {
    fn from(e: ApiError) -> Self {
        ConsoleError::new(e.status(), e.message())
    }
}

impl IntoResponse for ConsoleError {
    fn into_response(self) -> Response {
        let title = self.status.canonical_reason().unwrap_or("Error");
        let body = format!("{}<p><a href=\"/console\">Back to the fleet</a></p>", notice("error", &self.message));
        (self.status, Html(document(title, Section::None, self.viewer.as_ref(), &body))).into_response()
    }
}

/// What every page handler answers.
pub(crate) type PageResult = Result<Response, ConsoleError>;

/// A `done` notice after a change (the `?done=` of the redirect).
pub(crate) fn done_notice(done: Option<&str>) -> String {
    done.map(|d| notice("done", d)).unwrap_or_default()
}

/// The link to a project's page.
pub(crate) fn project_link(id: &str) -> String {
    format!("<a class=\"nowrap\" href=\"/console/projects/{}\">{}</a>", html::url_part(id), esc(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_survive_the_cookie_round_trip() {
        assert_eq!(unhex(&hex("tok; en=1 ✓"), 1024).as_deref(), Some("tok; en=1 ✓"));
        assert_eq!(unhex("zz", 1024), None);
        let mut h = HeaderMap::new();
        h.insert(header::COOKIE, HeaderValue::from_static("a=1; meter_console=6869; b=2"));
        assert_eq!(cookie(&h, COOKIE).as_deref(), Some("6869"));
        assert_eq!(cookie(&h, "c"), None);
    }

    #[test]
    fn forms_from_other_sites_are_recognised() {
        let mut h = HeaderMap::new();
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        assert!(!cross_site(&h), "no origin: a non-browser client");
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(!cross_site(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(cross_site(&h));
        let mut h = HeaderMap::new();
        h.insert("sec-fetch-site", HeaderValue::from_static("cross-site"));
        assert!(cross_site(&h));
    }

    #[test]
    fn amounts_accept_separators_and_name_the_field_at_fault() {
        assert_eq!(parse_amount("q", "").unwrap(), None);
        assert_eq!(parse_amount("q", " 1,000_000 ").unwrap(), Some(1_000_000));
        let e = parse_amount("q_active_time_seconds", "-5").unwrap_err();
        assert!(e.message.starts_with("q_active_time_seconds: \"-5\""), "{}", e.message);
        assert!(parse_amount("q", "1.5").is_err());
    }

    #[test]
    fn forms_parse_percent_encoding() {
        let f = Form::parse(b"plan=pro&q_active_time_seconds=1%2C000&x=a+b");
        assert_eq!(f.get("plan"), Some("pro"));
        assert_eq!(f.get("q_active_time_seconds"), Some("1,000"));
        assert_eq!(f.get("x"), Some("a b"));
        assert_eq!(f.get("y"), None);
    }
}
