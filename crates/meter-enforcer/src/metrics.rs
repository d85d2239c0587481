//! The enforce role's metric names.

/// Control-plane decisions, by `kind` (suspend, resume, block_writes, unblock_writes).
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
pub(crate) const CROSSING_TO_SUSPEND_Q: &str = "meter_enforcer_crossing_to_suspend_percentile_seconds";
/// The enforcer's transaction (decisions, calls and alerts), from its
/// begin to its commit.
pub(crate) const TRANSACTION: &str = "meter_enforcer_transaction_seconds";
/// From a decision to the actuator's receipt of its call, by `via`:
/// `handoff` (in process, once the enforcer's transaction committed) or
/// `topic` (read from the actions topic: another instance's decision, or
/// one read again after a restart).
pub(crate) const CALL_RECEIVED: &str = "meter_enforcer_call_received_seconds";
/// One control-plane call attempt, from its send to its answer.
pub(crate) const CALL_SECONDS: &str = "meter_enforcer_control_plane_call_seconds";
/// Webhook delivery attempts by `outcome` (delivered, retry, dead_letter,
/// refused: the target address is not allowed).
pub(crate) const WEBHOOKS: &str = "meter_webhook_deliveries_total";
/// Deliveries that failed every attempt.
pub(crate) const DEAD_LETTERS: &str = "meter_webhook_dead_letters_total";
/// From the event to its delivery (2xx), per delivered attempt.
pub(crate) const WEBHOOK_LATENCY: &str = "meter_webhook_delivery_seconds";
/// Deliveries waiting for an attempt, by `endpoint`.
pub(crate) const WEBHOOK_PENDING: &str = "meter_webhook_pending";
/// Endpoints disabled for failing continuously.
pub(crate) const ENDPOINTS_DISABLED: &str = "meter_webhook_endpoints_disabled_total";
/// Control-plane calls that ended failed (a 4xx other than 429), by `kind`.
pub(crate) const CALLS_FAILED: &str = "meter_enforcer_control_plane_failed_total";

/// Registers the help text of every metric above (Prometheus `# HELP`) and
/// starts the counters of every known label set at zero, so dashboards and
/// alerts see a series before the first event.
pub(crate) fn describe() {
    use meter_core::enforce::ActionKind;
    metrics::describe_counter!(
        DECISIONS,
        "Control-plane decisions, by `kind` (suspend, resume, block_writes, unblock_writes)."
    );
    metrics::describe_counter!(ALERTS, "Alerts decided, by `type`.");
    metrics::describe_counter!(COMMITS, "Evaluation transactions by outcome.");
    metrics::describe_counter!(CALLS, "Control-plane calls by `kind` and `outcome` (ok, retry).");
    metrics::describe_histogram!(
        CROSSING_TO_SUSPEND,
        "From the ingest of the batch that crossed the quota to the suspend call."
    );
    metrics::describe_histogram!(
        TRANSACTION,
        "The enforcer's transaction (decisions, calls and alerts), from its begin to its commit, seconds."
    );
    metrics::describe_histogram!(
        CALL_RECEIVED,
        "From a decision to the actuator's receipt of its call, seconds, by `via` (handoff: in process; topic: read from the actions topic)."
    );
    metrics::describe_histogram!(CALL_SECONDS, "One control-plane call attempt, from its send to its answer, seconds.");
    metrics::describe_gauge!(CROSSING_TO_SUSPEND_Q, "Crossing-to-suspend latency percentiles since start, from an HDR histogram (`percentile` label: 50, 99, 99.9).");
    metrics::describe_counter!(WEBHOOKS, "Webhook delivery attempts by `outcome` (delivered, retry, dead_letter, refused: the target address is not allowed).");
    metrics::describe_counter!(DEAD_LETTERS, "Deliveries that failed every attempt.");
    metrics::describe_histogram!(WEBHOOK_LATENCY, "From an event to its delivery (2xx), seconds.");
    metrics::describe_gauge!(WEBHOOK_PENDING, "Webhook deliveries waiting for an attempt, by `endpoint`.");
    metrics::describe_counter!(ENDPOINTS_DISABLED, "Webhook endpoints disabled for failing continuously.");
    metrics::describe_counter!(CALLS_FAILED, "Control-plane calls refused for good (a 4xx other than 429), by `kind`.");
    for kind in ActionKind::ALL.map(ActionKind::name) {
        metrics::counter!(DECISIONS, "kind" => kind).increment(0);
        for outcome in ["ok", "retry", "failed"] {
            metrics::counter!(CALLS, "kind" => kind, "outcome" => outcome).increment(0);
        }
        metrics::counter!(CALLS_FAILED, "kind" => kind).increment(0);
    }
    for outcome in ["committed", "aborted"] {
        metrics::counter!(COMMITS, "outcome" => outcome).increment(0);
    }
    for outcome in ["delivered", "retry", "dead_letter", "refused"] {
        metrics::counter!(WEBHOOKS, "outcome" => outcome).increment(0);
    }
    metrics::counter!(DEAD_LETTERS).increment(0);
    metrics::counter!(ENDPOINTS_DISABLED).increment(0);
}
