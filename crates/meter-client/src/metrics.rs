//! The client's metric names (recorded through the `metrics` facade: the
//! embedding process chooses the exporter).

/// Events by outcome: `queued`, `acked`, `dropped` (queue full),
/// `rejected` (ingest refused their batch as invalid).
pub(crate) const EVENTS: &str = "meter_client_events_total";
/// Batches written to the spool.
pub(crate) const SPOOLED: &str = "meter_client_spooled_batches_total";
/// Batches waiting for an acknowledgement.
pub(crate) const PENDING: &str = "meter_client_pending_batches";

pub(crate) fn describe() {
    metrics::describe_counter!(
        EVENTS,
        "Events by outcome: queued, acked, dropped (queue full), rejected (invalid batch)."
    );
    metrics::describe_counter!(SPOOLED, "Batches written to the spool.");
    metrics::describe_gauge!(PENDING, "Batches waiting for an acknowledgement.");
}
