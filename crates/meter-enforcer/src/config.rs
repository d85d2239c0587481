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
    /// Every project is evaluated at least this often (cycle rollover).
    pub evaluate_interval_ms: u64,
    /// Attempts per webhook delivery before it is dead-lettered.
    pub webhook_max_attempts: u32,
    /// First retry delay; doubles up to `webhook_max_backoff_ms`.
    pub webhook_backoff_ms: u64,
    pub webhook_max_backoff_ms: u64,
    pub webhook_timeout_ms: u64,
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
            evaluate_interval_ms: 1000,
            webhook_max_attempts: 8,
            webhook_backoff_ms: 500,
            webhook_max_backoff_ms: 30_000,
            webhook_timeout_ms: 5000,
        }
    }
}
