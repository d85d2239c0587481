//! The aggregator's metric names.

/// Transactions by outcome (`committed`, `aborted`).
pub(crate) const BATCHES: &str = "meter_aggregator_batches_total";
/// Usage events counted into totals.
pub(crate) const EVENTS: &str = "meter_aggregator_events_total";
/// Kafka records not counted, by reason (`duplicate`, `stale_seq`,
/// `undecodable`, `covered_by_state`: a replay of records already counted).
pub(crate) const DISCARDED: &str = "meter_aggregator_discarded_records_total";
/// Duration of each flush stage (`clickhouse`, `kafka`).
pub(crate) const FLUSH_SECONDS: &str = "meter_aggregator_flush_duration_seconds";
/// Rows per ClickHouse insert.
pub(crate) const FLUSH_ROWS: &str = "meter_aggregator_flush_rows";
/// Failed ClickHouse inserts (each is retried).
pub(crate) const CLICKHOUSE_ERRORS: &str = "meter_aggregator_clickhouse_errors_total";
/// Records read again because the group's offsets were ahead of the restored state.
pub(crate) const REREAD: &str = "meter_aggregator_reread_records_total";
/// Partition states rebuilt from `usage.totals`.
pub(crate) const RESTORES: &str = "meter_aggregator_restores_total";
/// Records in `usage.events` not yet committed by this instance.
pub(crate) const LAG: &str = "meter_aggregator_consumer_lag_records";
/// From ingest's acceptance of a batch to the commit of its totals.
pub(crate) const INGEST_TO_COMMIT_SECONDS: &str = "meter_aggregator_ingest_to_commit_seconds";
