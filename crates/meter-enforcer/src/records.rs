//! The records of the outbox topics.

use meter_core::cycle::rfc3339;
use meter_core::enforce::{Alert, AlertType};
use meter_core::Metric;
use serde::{Deserialize, Serialize};

/// A webhook event to deliver (`meter.webhooks`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookJob {
    pub alert: Alert,
    /// A request for one endpoint (a test event, a resend, a replayed dead
    /// letter): delivered to it from the start of the schedule even if it
    /// was delivered before. `None`: every subscribed endpoint, once.
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
    pub data: AlertData,
}

/// The event in a payload, times in RFC 3339 (UTC) like the REST API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AlertData {
    /// Also the `webhook-id` header: the same on every attempt and resend.
    pub id: String,
    #[serde(rename = "type")]
    pub kind: AlertType,
    pub project_id: String,
    /// The branch, for the storage quota (which applies to each branch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metric: Option<Metric>,
    /// Percent, for threshold events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u8>,
    pub usage: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<u64>,
    /// The billing cycle the event belongs to.
    pub cycle_start: String,
    pub cycle_end: String,
    pub occurred_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl WebhookPayload {
    /// The payload of an alert.
    pub fn of(alert: &Alert) -> Self {
        WebhookPayload {
            kind: alert.kind,
            timestamp: rfc3339(alert.occurred_ms),
            data: AlertData {
                id: alert.id.clone(),
                kind: alert.kind,
                project_id: alert.project_id.clone(),
                branch_id: alert.branch_id.clone(),
                metric: alert.metric,
                threshold: alert.threshold,
                usage: alert.usage,
                quota: alert.quota,
                cycle_start: rfc3339(alert.cycle_start_ms),
                cycle_end: rfc3339(alert.cycle_end_ms),
                occurred_at: rfc3339(alert.occurred_ms),
                reason: alert.reason.clone(),
            },
        }
    }
}

/// A delivery that failed every attempt (`meter.webhooks.dead`, key: the
/// delivery id, `<event id>~<endpoint id>`).
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
        meter_core::delivery::delivery_id(&self.job.alert.id, &self.endpoint_id)
    }
}

/// How a project's latest control-plane call ended (`meter.actions.calls`,
/// compacted, key: the project id).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CallRecord {
    pub project_id: String,
    pub kind: meter_core::enforce::ActionKind,
    /// The branch, for `block_writes` and `unblock_writes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_id: Option<String>,
    pub idempotency_key: String,
    /// `ok` (2xx) or `failed` (an answer retrying cannot change).
    pub outcome: CallOutcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Attempts it took.
    pub attempts: u32,
    pub at_ms: i64,
}

/// How a control-plane call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CallOutcome {
    Ok,
    Failed,
}
