//! The enforce role's metric names.

/// Suspend/resume decisions, by `kind`.
pub(crate) const DECISIONS: &str = "meter_enforcer_decisions_total";
/// Alerts decided, by `type`.
pub(crate) const ALERTS: &str = "meter_enforcer_alerts_total";
/// Evaluation transactions by outcome.
pub(crate) const COMMITS: &str = "meter_enforcer_commits_total";
/// Control-plane calls by `kind` and `outcome` (ok, retry).
pub(crate) const CALLS: &str = "meter_enforcer_control_plane_calls_total";
/// From the ingest of the batch that crossed the quota to the suspend call.
pub(crate) const CROSSING_TO_SUSPEND: &str = "meter_enforcer_crossing_to_suspend_seconds";
/// Percentiles of the same, from an HDR histogram (`quantile` label).
pub(crate) const CROSSING_TO_SUSPEND_Q: &str = "meter_enforcer_crossing_to_suspend_quantile_seconds";
/// Webhook delivery attempts by `outcome` (delivered, retry, dead_letter).
pub(crate) const WEBHOOKS: &str = "meter_webhook_deliveries_total";
/// Deliveries that failed every attempt.
pub(crate) const DEAD_LETTERS: &str = "meter_webhook_dead_letters_total";
