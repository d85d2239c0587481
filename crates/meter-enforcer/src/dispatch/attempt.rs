//! One delivery attempt: the signed POST (Standard Webhooks) and what came
//! of it.

use std::time::{Duration, Instant};

use meter_core::config_view::WebhookEndpoint;
use meter_core::delivery::{Attempt, Delivery};
use meter_core::target::AddressClass;
use meter_runtime::{check_webhook_url, now_ms};

use crate::{sign, WebhookPayload};

/// What an attempt came to.
pub(crate) enum Outcome {
    /// The receiver answered, or the transport failed; `retry_after`: the
    /// receiver's `Retry-After` (seconds or an HTTP-date), a floor for the next attempt.
    Tried { attempt: Attempt, retry_after: Option<Duration> },
    /// The endpoint's address is not an allowed target (nothing was sent).
    Refused(String),
}

/// POSTs `delivery`'s event to `endpoint`, signed with a fresh timestamp
/// and the event id as `webhook-id`.
pub(crate) async fn attempt(
    client: &reqwest::Client,
    targets: &[AddressClass],
    endpoint: &WebhookEndpoint,
    delivery: &Delivery,
) -> Outcome {
    if let Err(e) = check_webhook_url(&endpoint.url, targets).await {
        return Outcome::Refused(format!("target refused: {e}"));
    }
    let body = match serde_json::to_vec(&WebhookPayload::of(&delivery.alert)) {
        Ok(b) => b,
        Err(e) => return Outcome::Refused(format!("payload: {e}")),
    };
    let at_ms = now_ms();
    let ts = at_ms / 1000;
    let signature = match sign::sign(&endpoint.secret, &delivery.alert.id, ts, &body) {
        Ok(s) => s,
        Err(e) => return Outcome::Refused(format!("secret: {e}")),
    };
    let started = Instant::now();
    let sent = client
        .post(&endpoint.url)
        .header("content-type", "application/json")
        .header("webhook-id", &delivery.alert.id)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", signature)
        .body(body)
        .send()
        .await;
    let duration_ms = started.elapsed().as_millis() as u64;
    match sent {
        Ok(r) => {
            let status = r.status();
            let retry_after = crate::actuator::retry_after(&r);
            let error = (!status.is_success()).then(|| format!("status {status}"));
            Outcome::Tried {
                attempt: Attempt { at_ms, status: Some(status.as_u16()), error, duration_ms },
                retry_after,
            }
        }
        Err(e) => {
            let error = if e.is_timeout() { format!("timed out: {e}") } else { e.to_string() };
            Outcome::Tried {
                attempt: Attempt { at_ms, status: None, error: Some(error), duration_ms },
                retry_after: None,
            }
        }
    }
}
