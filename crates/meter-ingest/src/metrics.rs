//! Ingest's metric names.

/// Report calls by outcome (`ok`, `invalid`, `unavailable`).
pub(crate) const REQUESTS: &str = "meter_ingest_requests_total";
/// Events by outcome.
pub(crate) const EVENTS: &str = "meter_ingest_events_total";
/// Refused batches by offending field (a fixed set of field names).
pub(crate) const REJECTED: &str = "meter_ingest_rejected_batches_total";
/// Events per accepted batch.
pub(crate) const BATCH_EVENTS: &str = "meter_ingest_batch_events";
/// Time from receiving a batch to Kafka's acknowledgement.
pub(crate) const PRODUCE_SECONDS: &str = "meter_ingest_produce_duration_seconds";
