//! Ingest's metric names.

/// Report calls by outcome (`ok`, `invalid`, `unavailable`, `unauthenticated`,
/// `permission_denied`, `rate_limited`).
pub(crate) const REQUESTS: &str = "meter_ingest_requests_total";
/// Events by outcome.
pub(crate) const EVENTS: &str = "meter_ingest_events_total";
/// Refused batches by offending field (a fixed set of field names) and
/// reason (`invalid`; `late`: an event older than `max_past_seconds`, the
/// late-event horizon; `future`: one past `max_future_seconds`).
pub(crate) const REJECTED: &str = "meter_ingest_rejected_batches_total";
/// Events per accepted batch.
pub(crate) const BATCH_EVENTS: &str = "meter_ingest_batch_events";
/// Time from receiving a batch to Kafka's acknowledgement.
pub(crate) const PRODUCE_SECONDS: &str = "meter_ingest_produce_duration_seconds";

/// Registers the help text of every metric above (Prometheus `# HELP`) and
/// starts the counters of every known label set at zero, so dashboards and
/// alerts see a series before the first event.
pub(crate) fn describe() {
    metrics::describe_counter!(
        REQUESTS,
        "Report calls by outcome (`ok`, `invalid`, `unavailable`, `unauthenticated`, `permission_denied`, `rate_limited`)."
    );
    metrics::describe_counter!(EVENTS, "Events by outcome.");
    metrics::describe_counter!(
        REJECTED,
        "Refused batches by offending field and reason (invalid; late: an event older than the late-event horizon; future)."
    );
    metrics::describe_histogram!(BATCH_EVENTS, "Events per accepted batch.");
    metrics::describe_histogram!(PRODUCE_SECONDS, "Time from receiving a batch to Kafka's acknowledgement.");
    for outcome in ["ok", "invalid", "unavailable", "unauthenticated", "permission_denied", "rate_limited"] {
        metrics::counter!(REQUESTS, "outcome" => outcome).increment(0);
        metrics::counter!(EVENTS, "outcome" => outcome).increment(0);
    }
}
