//! The records of the outbox topics.

use meter_core::enforce::{Alert, AlertType};
use serde::{Deserialize, Serialize};

/// A webhook event to deliver (`meter.webhooks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookJob {
    pub alert: Alert,
    /// Only this endpoint (a replayed dead letter); all subscribed if `None`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub only_endpoint: Option<String>,
}

/// The JSON body a webhook receiver gets (Standard Webhooks' shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookPayload {
    #[serde(rename = "type")]
    pub kind: AlertType,
    /// When the event happened, RFC 3339 UTC.
    pub timestamp: String,
    pub data: Alert,
}

impl WebhookPayload {
    /// The payload of an alert.
    pub fn of(alert: &Alert) -> Self {
        WebhookPayload {
            kind: alert.kind,
            timestamp: meter_core::cycle::rfc3339(alert.occurred_ms),
            data: alert.clone(),
        }
    }
}

/// A delivery that failed every attempt (`meter.webhooks.dead`, key
/// `<event id>/<endpoint id>`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeadLetter {
    pub job: WebhookJob,
    pub endpoint_id: String,
    pub attempts: u32,
    pub last_error: String,
    pub failed_ms: i64,
}

impl DeadLetter {
    /// Its record key.
    pub fn key(&self) -> String {
        format!("{}/{}", self.job.alert.id, self.endpoint_id)
    }
}
