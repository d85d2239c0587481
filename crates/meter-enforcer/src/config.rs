//! The `[enforcer]` section of the configuration.

use serde::Deserialize;

/// Where the control plane is and how calls and webhooks are retried.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EnforcerConfig {
    /// Consumer group of the enforcers (partitions of `usage.totals`).
    pub group_id: String,
    pub transactional_id_prefix: String,
    /// Consumer group of the actuators (`meter.actions`).
    pub actuator_group_id: String,
    /// Consumer group of the webhook dispatchers (`meter.webhooks`).
    pub webhook_group_id: String,
    /// The control plane: POST `{url}/projects/{id}/suspend` and `/resume`.
    pub control_plane_url: String,
    pub control_plane_timeout_ms: u64,
    /// Every project is evaluated at least this often, a safety net: a new
    /// cycle, new totals and configuration changes re-evaluate at once.
    pub evaluate_interval_ms: u64,
    /// Control-plane calls in flight at once (for different projects; one
    /// project's calls are made in order, one at a time).
    pub actuator_concurrency: usize,
    /// Webhook retry schedule: attempt `i` is made this long after attempt
    /// `i - 1` failed (jittered by a tenth); after the last, the delivery is
    /// dead-lettered. Default: at once, 5 s, 5 min, 30 min, 2 h, 5 h, 10 h, 10 h.
    pub webhook_schedule_ms: Vec<u64>,
    pub webhook_timeout_ms: u64,
    /// Delivery attempts in flight at once, in all and per endpoint.
    pub webhook_concurrency: usize,
    pub webhook_endpoint_concurrency: usize,
    /// An endpoint whose every attempt failed for this long is disabled.
    pub webhook_disable_after_ms: u64,
    /// Finished deliveries are listed this long, then forgotten.
    pub webhook_delivery_retention_hours: u64,
}

impl EnforcerConfig {
    /// The webhook retry schedule.
    pub fn webhook_schedule(&self) -> meter_core::retry::Schedule {
        meter_core::retry::Schedule {
            delays: self.webhook_schedule_ms.iter().map(|&ms| std::time::Duration::from_millis(ms)).collect(),
        }
    }
}

impl Default for EnforcerConfig {
    fn default() -> Self {
        EnforcerConfig {
            group_id: "meter-enforcer".into(),
            transactional_id_prefix: "meter-enforcer".into(),
            actuator_group_id: "meter-actuator".into(),
            webhook_group_id: "meter-webhooks".into(),
            control_plane_url: "http://127.0.0.1:8091".into(),
            control_plane_timeout_ms: 5000,
            evaluate_interval_ms: 30_000,
            actuator_concurrency: 16,
            webhook_schedule_ms: vec![0, 5_000, 300_000, 1_800_000, 7_200_000, 18_000_000, 36_000_000, 36_000_000],
            webhook_timeout_ms: 5000,
            webhook_concurrency: 64,
            webhook_endpoint_concurrency: 4,
            webhook_disable_after_ms: 5 * 24 * 3_600_000,
            webhook_delivery_retention_hours: 72,
        }
    }
}
