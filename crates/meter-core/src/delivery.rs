//! One webhook event on its way to one endpoint: its attempts, when the next
//! is due, and how it ended. Kept per endpoint, so a failing endpoint's
//! schedule never holds another's; stored as records of a compacted topic
//! (key: the delivery id), so a restart neither loses nor restarts a
//! schedule. Pure: the dispatcher makes the calls and supplies the time.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::enforce::Alert;
use crate::retry::Schedule;
use crate::UnixMs;

/// Attempts kept on a delivery record (the oldest are dropped; `attempt_count` keeps counting).
pub const KEPT_ATTEMPTS: usize = 20;

/// Where a delivery stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum DeliveryState {
    /// Waiting for its next attempt.
    Pending,
    /// A 2xx answer.
    Delivered,
    /// Every attempt of the schedule failed, or the endpoint was disabled
    /// or refused as a target: a dead letter (resend or replay it).
    Dead,
    /// The endpoint was deleted.
    Cancelled,
}

/// What one attempt got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Attempt {
    pub at_ms: UnixMs,
    /// The HTTP status, when the receiver answered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why it failed, when it did (a status or a transport error).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    pub duration_ms: u64,
}

impl Attempt {
    /// True for a 2xx answer.
    pub fn succeeded(&self) -> bool {
        self.status.is_some_and(|s| (200..300).contains(&s))
    }
}

/// One event to one endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    /// `<event id>~<endpoint id>` (URL-safe: ids never hold a `~`).
    pub id: String,
    pub endpoint_id: String,
    /// The event, sent with its id as `webhook-id` on every attempt.
    pub alert: Alert,
    pub created_ms: UnixMs,
    pub state: DeliveryState,
    /// Attempts made since the delivery was created or last resent.
    pub attempt_count: u32,
    /// The latest attempts (at most `KEPT_ATTEMPTS`).
    pub attempts: Vec<Attempt>,
    /// When the next attempt is due (pending deliveries only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_attempt_ms: Option<UnixMs>,
    /// Why it is dead or cancelled without a failed attempt to say so.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// When it reached its state.
    pub updated_ms: UnixMs,
}

/// The id of `alert`'s delivery to `endpoint`.
pub fn delivery_id(event_id: &str, endpoint_id: &str) -> String {
    format!("{event_id}~{endpoint_id}")
}

impl Delivery {
    /// A new delivery, its first attempt due after the schedule's first delay.
    pub fn new(alert: &Alert, endpoint_id: &str, now: UnixMs, schedule: &Schedule, unit: f64) -> Delivery {
        let first = schedule.delay(0, unit, None).unwrap_or_default();
        Delivery {
            id: delivery_id(&alert.id, endpoint_id),
            endpoint_id: endpoint_id.to_owned(),
            alert: alert.clone(),
            created_ms: now,
            state: DeliveryState::Pending,
            attempt_count: 0,
            attempts: Vec::new(),
            next_attempt_ms: Some(now + ms(first)),
            reason: None,
            updated_ms: now,
        }
    }

    /// Due for an attempt at `now`.
    pub fn due(&self, now: UnixMs) -> bool {
        self.state == DeliveryState::Pending && self.next_attempt_ms.is_some_and(|t| t <= now)
    }

    /// Records an attempt: delivered on a 2xx; otherwise the next attempt
    /// per `schedule` (a `retry_after` hint is a floor), or dead when the
    /// schedule is exhausted. `unit`: random in `[0, 1)`.
    pub fn record(&mut self, attempt: Attempt, schedule: &Schedule, retry_after: Option<Duration>, unit: f64) {
        let at = attempt.at_ms;
        let ok = attempt.succeeded();
        self.attempts.push(attempt);
        if self.attempts.len() > KEPT_ATTEMPTS {
            self.attempts.remove(0);
        }
        self.attempt_count = self.attempt_count.saturating_add(1);
        self.updated_ms = at;
        if ok {
            self.state = DeliveryState::Delivered;
            self.next_attempt_ms = None;
            return;
        }
        match schedule.delay(self.attempt_count as usize, unit, retry_after) {
            Some(wait) => self.next_attempt_ms = Some(at + ms(wait)),
            None => {
                self.state = DeliveryState::Dead;
                self.next_attempt_ms = None;
            }
        }
    }

    /// Ends it without an attempt: dead (endpoint disabled, target refused)
    /// or cancelled (endpoint deleted).
    pub fn end(&mut self, state: DeliveryState, reason: &str, now: UnixMs) {
        self.state = state;
        self.next_attempt_ms = None;
        self.reason = Some(reason.to_owned());
        self.updated_ms = now;
    }

    /// Sends it again from the start of the schedule, whatever its state
    /// (the attempts so far stay on the record).
    pub fn resend(&mut self, now: UnixMs) {
        self.state = DeliveryState::Pending;
        self.attempt_count = 0;
        self.next_attempt_ms = Some(now);
        self.reason = None;
        self.updated_ms = now;
    }

    /// The last attempt's error, or the reason it ended without one.
    pub fn last_error(&self) -> String {
        self.attempts.last().and_then(|a| a.error.clone()).or_else(|| self.reason.clone()).unwrap_or_default()
    }
}

fn ms(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

/// How an endpoint has been doing: failing continuously since the first
/// failure after its last success. An endpoint failing longer than the
/// configured time is disabled.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EndpointHealth {
    pub failing_since_ms: Option<UnixMs>,
    pub last_success_ms: Option<UnixMs>,
}

impl EndpointHealth {
    /// Takes one attempt into account.
    pub fn observe(&mut self, attempt: &Attempt) {
        if attempt.succeeded() {
            self.failing_since_ms = None;
            self.last_success_ms = Some(self.last_success_ms.map_or(attempt.at_ms, |t| t.max(attempt.at_ms)));
        } else if self.last_success_ms.is_none_or(|s| s < attempt.at_ms) {
            self.failing_since_ms = Some(self.failing_since_ms.map_or(attempt.at_ms, |t| t.min(attempt.at_ms)));
        }
    }

    /// True when it has been failing for at least `limit` at `now`.
    pub fn failing_for(&self, limit: Duration, now: UnixMs) -> bool {
        self.failing_since_ms.is_some_and(|since| now - since >= ms(limit))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::enforce::AlertType;

    fn alert() -> Alert {
        Alert {
            id: "evt_1".into(),
            kind: AlertType::QuotaExceeded,
            project_id: "p".into(),
            branch_id: None,
            metric: None,
            threshold: None,
            usage: 1,
            quota: None,
            cycle_start_ms: 0,
            cycle_end_ms: 1,
            occurred_ms: 0,
            reason: None,
        }
    }

    fn attempt(at_ms: i64, status: Option<u16>) -> Attempt {
        Attempt { at_ms, status, error: status.is_none().then(|| "connection refused".into()), duration_ms: 3 }
    }

    fn schedule() -> Schedule {
        Schedule { delays: [0, 5, 300].map(Duration::from_secs).to_vec() }
    }

    #[test]
    fn a_delivery_walks_its_schedule_then_dies() {
        let s = schedule();
        let mut d = Delivery::new(&alert(), "hook", 1000, &s, 0.5);
        assert_eq!((d.id.as_str(), d.next_attempt_ms), ("evt_1~hook", Some(1000)));
        assert!(d.due(1000) && !d.due(999));
        d.record(attempt(1000, Some(500)), &s, None, 0.5);
        assert_eq!((d.state, d.next_attempt_ms), (DeliveryState::Pending, Some(6000)));
        d.record(attempt(6000, None), &s, Some(Duration::from_secs(600)), 0.5);
        assert_eq!(d.next_attempt_ms, Some(606_000), "retry-after is a floor");
        d.record(attempt(606_000, Some(503)), &s, None, 0.5);
        assert_eq!((d.state, d.next_attempt_ms, d.attempt_count), (DeliveryState::Dead, None, 3));
        assert_eq!(d.last_error(), "");
        d.resend(700_000);
        assert!(d.due(700_000));
        assert_eq!((d.attempt_count, d.attempts.len()), (0, 3), "a resend keeps the history");
        d.record(attempt(700_000, Some(204)), &s, None, 0.5);
        assert_eq!(d.state, DeliveryState::Delivered);
    }

    #[test]
    fn records_keep_the_latest_attempts() {
        let s = Schedule { delays: vec![Duration::ZERO; 50] };
        let mut d = Delivery::new(&alert(), "hook", 0, &s, 0.5);
        for i in 0..30 {
            d.record(attempt(i, None), &s, None, 0.5);
        }
        assert_eq!((d.attempts.len(), d.attempt_count), (KEPT_ATTEMPTS, 30));
        assert_eq!(d.attempts[0].at_ms, 10);
        assert_eq!(d.last_error(), "connection refused");
    }

    #[test]
    fn ending_without_an_attempt_says_why() {
        let mut d = Delivery::new(&alert(), "hook", 0, &schedule(), 0.5);
        d.end(DeliveryState::Dead, "endpoint disabled", 5);
        assert_eq!((d.state, d.last_error().as_str(), d.due(10)), (DeliveryState::Dead, "endpoint disabled", false));
    }

    #[test]
    fn an_endpoint_fails_continuously_until_a_success() {
        let mut h = EndpointHealth::default();
        h.observe(&attempt(100, Some(500)));
        h.observe(&attempt(50, None));
        assert_eq!(h.failing_since_ms, Some(50));
        assert!(h.failing_for(Duration::from_millis(60), 110) && !h.failing_for(Duration::from_millis(61), 110));
        h.observe(&attempt(200, Some(200)));
        assert_eq!(h.failing_since_ms, None);
        h.observe(&attempt(150, Some(500)));
        assert_eq!(h.failing_since_ms, None, "a failure older than the last success does not count");
        h.observe(&attempt(300, Some(500)));
        assert_eq!(h.failing_since_ms, Some(300));
    }
}
