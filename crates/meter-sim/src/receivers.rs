//! Stand-ins for the systems a platform owns, as real HTTP servers on
//! loopback: the control plane (receives suspend/resume of projects and
//! block_writes/unblock_writes of branches) and a webhook
//! consumer (verifies Standard Webhooks signatures). Used by the quickstart
//! and the end-to-end tests; each records what it received.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::routing::post;
use axum::Router;
use meter_core::enforce::Action;
use meter_enforcer::{sign, WebhookPayload};
use meter_runtime::now_ms;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// One call the control plane received.
#[derive(Debug, Clone)]
pub struct ControlPlaneCall {
    /// `suspend`, `resume`, `block_writes` or `unblock_writes`.
    pub verb: String,
    pub project_id: String,
    /// The branch, for calls on `/projects/{id}/branches/{branch}/{verb}`.
    pub branch_id: Option<String>,
    pub idempotency_key: String,
    pub action: Option<Action>,
    pub received_ms: i64,
    /// What the control plane answered.
    pub status: u16,
}

/// An answer the control plane gives: a status and, optionally, a
/// `Retry-After` of that many seconds, sent as delay-seconds or, with
/// `as_date`, as the HTTP-date that far ahead (both forms of RFC 9110).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Answer {
    pub status: u16,
    pub retry_after_s: Option<u64>,
    pub as_date: bool,
}

/// The control-plane double: answers 200 to every call and records it,
/// unless told otherwise per project (a script of answers, then 200; or one
/// answer for ever, like a 404 for a project it does not know).
#[derive(Debug, Clone, Default)]
pub struct ControlPlane {
    pub calls: Arc<Mutex<Vec<ControlPlaneCall>>>,
    scripts: Arc<Mutex<HashMap<String, std::collections::VecDeque<Answer>>>>,
    always: Arc<Mutex<HashMap<String, u16>>>,
}

impl ControlPlane {
    /// Serves `POST /projects/{id}/{verb}` and
    /// `POST /projects/{id}/branches/{branch}/{verb}` on `listener` until `shutdown`.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) -> std::io::Result<()> {
        let app = Router::new()
            .route("/projects/{id}/{verb}", post(control_plane_call))
            .route("/projects/{id}/branches/{branch}/{verb}", post(branch_call))
            .with_state(self);
        axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
    }

    /// Calls with `verb`, in arrival order.
    pub fn calls_of(&self, verb: &str) -> Vec<ControlPlaneCall> {
        self.calls.lock().expect("calls").iter().filter(|c| c.verb == verb).cloned().collect()
    }

    /// Calls for `project`, in arrival order.
    pub fn calls_for(&self, project: &str) -> Vec<ControlPlaneCall> {
        self.calls.lock().expect("calls").iter().filter(|c| c.project_id == project).cloned().collect()
    }

    /// The next calls for `project` get `answers`, one each, then 200.
    pub fn script(&self, project: &str, answers: &[Answer]) {
        self.scripts.lock().expect("scripts").insert(project.to_owned(), answers.iter().copied().collect());
    }

    /// Every call for `project` gets `status`.
    pub fn always(&self, project: &str, status: u16) {
        self.always.lock().expect("always").insert(project.to_owned(), status);
    }

    /// Calls for `project` get 200 again (its script and `always` dropped).
    pub fn answer_ok(&self, project: &str) {
        self.always.lock().expect("always").remove(project);
        self.scripts.lock().expect("scripts").remove(project);
    }

    fn answer(&self, project: &str) -> Answer {
        if let Some(&status) = self.always.lock().expect("always").get(project) {
            return Answer { status, ..Answer::default() };
        }
        let next = self.scripts.lock().expect("scripts").get_mut(project).and_then(|q| q.pop_front());
        next.unwrap_or(Answer { status: 200, ..Answer::default() })
    }
}

async fn control_plane_call(
    State(cp): State<ControlPlane>,
    Path((id, verb)): Path<(String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap) {
    record_call(cp, id, None, verb, headers, body)
}

async fn branch_call(
    State(cp): State<ControlPlane>,
    Path((id, branch, verb)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap) {
    record_call(cp, id, Some(branch), verb, headers, body)
}

fn record_call(
    cp: ControlPlane,
    id: String,
    branch_id: Option<String>,
    verb: String,
    headers: HeaderMap,
    body: Bytes,
) -> (StatusCode, HeaderMap) {
    let key = headers.get("idempotency-key").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let action = serde_json::from_slice(&body).ok();
    let answer = cp.answer(&id);
    cp.calls.lock().expect("calls").push(ControlPlaneCall {
        verb,
        project_id: id,
        branch_id,
        idempotency_key: key,
        action,
        received_ms: now_ms(),
        status: answer.status,
    });
    let mut out = HeaderMap::new();
    match (answer.retry_after_s, answer.as_date) {
        (Some(s), false) => {
            out.insert(axum::http::header::RETRY_AFTER, s.into());
        }
        (Some(s), true) => {
            // Whole seconds: the date is rounded up so the wait is at least `s`.
            let at = meter_core::cycle::format_http_date(meter_runtime::now_ms() + s as i64 * 1000 + 999);
            out.insert(axum::http::header::RETRY_AFTER, at.parse().expect("an HTTP-date is a valid header"));
        }
        (None, _) => {}
    }
    (StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR), out)
}

/// A fresh `whsec_...` signing secret for a test endpoint (not for
/// production: derived from the clock).
pub fn new_secret() -> String {
    use base64::Engine;
    let seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(7, |d| d.as_nanos());
    let bytes: Vec<u8> = (0..24).map(|i| (seed >> (i % 16 * 8)) as u8 ^ (i as u8).wrapping_mul(37)).collect();
    format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(bytes))
}

/// How a webhook receiver answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailMode {
    /// 200 to every delivery.
    Never,
    /// 500 to the first attempt of each event, 200 to the next: half fail.
    FirstAttempt,
    /// 500 to everything.
    Always,
    /// No answer at all: the request hangs until the sender gives up.
    Hang,
}

/// One delivery attempt a receiver got.
#[derive(Debug, Clone)]
pub struct Delivery {
    pub id: String,
    pub timestamp: i64,
    pub signature: String,
    pub body: Vec<u8>,
    /// The signature verified against the secret.
    pub verified: bool,
    pub payload: Option<WebhookPayload>,
    /// What the receiver answered.
    pub status: u16,
    /// When it arrived.
    pub received_ms: i64,
}

/// A webhook consumer that verifies signatures and records every attempt.
#[derive(Debug, Clone)]
pub struct WebhookReceiver {
    pub secret: String,
    pub mode: Arc<Mutex<FailMode>>,
    pub deliveries: Arc<Mutex<Vec<Delivery>>>,
    attempts: Arc<Mutex<HashMap<String, u32>>>,
}

impl WebhookReceiver {
    /// A receiver for endpoints signed with `secret`.
    pub fn new(secret: &str, mode: FailMode) -> Self {
        WebhookReceiver {
            secret: secret.to_owned(),
            mode: Arc::new(Mutex::new(mode)),
            deliveries: Arc::default(),
            attempts: Arc::default(),
        }
    }

    /// Serves `POST /` on `listener` until `shutdown`.
    pub async fn serve(self, listener: TcpListener, shutdown: CancellationToken) -> std::io::Result<()> {
        let app = Router::new().route("/", post(webhook_delivery)).with_state(self);
        axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
    }

    /// Verified deliveries that were answered 200, in order.
    pub fn accepted(&self) -> Vec<Delivery> {
        self.deliveries.lock().expect("deliveries").iter().filter(|d| d.verified && d.status == 200).cloned().collect()
    }

    /// Every attempt, in order.
    pub fn all(&self) -> Vec<Delivery> {
        self.deliveries.lock().expect("deliveries").clone()
    }

    /// Changes how the receiver answers from now on.
    pub fn set_mode(&self, mode: FailMode) {
        *self.mode.lock().expect("mode") = mode;
    }
}

async fn webhook_delivery(State(r): State<WebhookReceiver>, headers: HeaderMap, body: Bytes) -> StatusCode {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let (id, signature) = (h("webhook-id"), h("webhook-signature"));
    let timestamp: i64 = h("webhook-timestamp").parse().unwrap_or(0);
    let verified = sign::verify(&r.secret, &id, timestamp, &body, &signature, now_ms() / 1000, 300).is_ok();
    let attempt = {
        let mut a = r.attempts.lock().expect("attempts");
        let n = a.entry(id.clone()).or_insert(0);
        *n += 1;
        *n
    };
    let mode = *r.mode.lock().expect("mode");
    if mode == FailMode::Hang {
        std::future::pending::<()>().await;
    }
    let status = match (mode, verified) {
        (_, false) => StatusCode::UNAUTHORIZED,
        (FailMode::Always, _) => StatusCode::INTERNAL_SERVER_ERROR,
        (FailMode::FirstAttempt, _) if attempt == 1 => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::OK,
    };
    r.deliveries.lock().expect("deliveries").push(Delivery {
        id,
        timestamp,
        signature,
        payload: serde_json::from_slice(&body).ok(),
        body: body.to_vec(),
        verified,
        status: status.as_u16(),
        received_ms: now_ms(),
    });
    status
}
