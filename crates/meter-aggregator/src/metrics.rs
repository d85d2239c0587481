//! The aggregator's metric names.

/// Transactions by outcome (`committed`, `aborted`).
pub(crate) const BATCHES: &str = "meter_aggregator_batches_total";
/// Usage counted, per counter metric (`metric`: seconds or bytes): the
/// fleet's consumption rate.
pub(crate) const USAGE: &str = "meter_aggregator_usage_total";
/// Usage events counted into totals.
pub(crate) const EVENTS: &str = "meter_aggregator_events_total";
/// Kafka records not counted, by reason (`duplicate`, `stale_seq`,
/// `undecodable`, `covered_by_state`: a replay of records already counted).
pub(crate) const DISCARDED: &str = "meter_aggregator_discarded_records_total";
/// Events left out because their idempotency key was already counted for
/// the project in that cycle.
pub(crate) const DUPLICATE_KEY_EVENTS: &str = "meter_aggregator_duplicate_key_events_total";
/// Duration of each stage of a batch: `collect` (polling until the batch is
/// full or its linger is over), `apply`, `kafka` (the transaction).
pub(crate) const FLUSH_SECONDS: &str = "meter_aggregator_flush_duration_seconds";
/// Records read again because the group's offsets were ahead of the restored state.
/// Adjustments judged, by outcome (`applied`, `refused`).
pub(crate) const ADJUSTMENTS: &str = "meter_aggregator_adjustments_total";
/// Events of a closed cycle read after its close.
pub(crate) const CLOSED_CYCLE_EVENTS: &str = "meter_aggregator_closed_cycle_events_total";
pub(crate) const REREAD: &str = "meter_aggregator_reread_records_total";
/// Partition states rebuilt from `usage.totals`.
pub(crate) const RESTORES: &str = "meter_aggregator_restores_total";
/// Records written to `usage.totals`, by kind (`packed`: the states a
/// transaction changed in a partition; `own`: one project's state, at a
/// checkpoint;
/// `tombstone`: a packed record no longer needed).
pub(crate) const TOTALS_RECORDS: &str = "meter_aggregator_totals_records_total";
/// Bytes of the packed `usage.totals` records a restore of the partition
/// would read (`partition`): bounded by `totals_packed_max_mib`.
pub(crate) const PACKED_BYTES: &str = "meter_aggregator_packed_totals_bytes";
/// Projects whose state holds hourly rows not yet written for ClickHouse
/// (the aggregator is behind: docs/exactness.md, mechanism 4).
pub(crate) const HELD_PROJECTS: &str = "meter_aggregator_held_projects";
/// Records in `usage.events` not yet committed by this instance.
pub(crate) const LAG: &str = "meter_aggregator_consumer_lag_records";
/// From ingest's acceptance of a batch to the commit of its totals.
pub(crate) const INGEST_TO_COMMIT_SECONDS: &str = "meter_aggregator_ingest_to_commit_seconds";

/// Registers the help text of every metric above (Prometheus `# HELP`) and
/// starts the counters of every known label set at zero, so dashboards and
/// alerts see a series before the first event.
pub(crate) fn describe() {
    metrics::describe_counter!(BATCHES, "Transactions by outcome (`committed`, `aborted`).");
    metrics::describe_counter!(
        USAGE,
        "Usage counted, per counter metric (`metric`: seconds or bytes): the fleet's consumption rate."
    );
    metrics::describe_counter!(EVENTS, "Usage events counted into totals.");
    metrics::describe_counter!(DISCARDED, "Kafka records not counted, by reason (`duplicate`, `stale_seq`, `undecodable`, `covered_by_state`: a replay of records already counted).");
    metrics::describe_counter!(
        DUPLICATE_KEY_EVENTS,
        "Events left out because their idempotency key was already counted for the project in that cycle."
    );
    metrics::describe_histogram!(
        FLUSH_SECONDS,
        "Duration of each stage of a batch: collect (polling until full or lingered), apply, kafka (the transaction)."
    );
    metrics::describe_counter!(
        TOTALS_RECORDS,
        "Records written to usage.totals, by kind (packed: a transaction's states in a partition; own: one project's, at a checkpoint; tombstone)."
    );
    metrics::describe_gauge!(
        PACKED_BYTES,
        "Bytes of the packed usage.totals records a restore of the partition would read."
    );
    metrics::describe_gauge!(
        HELD_PROJECTS,
        "Projects whose state holds hourly rows not yet written for ClickHouse (held while the aggregator is behind)."
    );
    metrics::describe_counter!(
        REREAD,
        "Records read again because the group's offsets were ahead of the restored state."
    );
    metrics::describe_counter!(
        ADJUSTMENTS,
        "Adjustments judged, by outcome (`applied`, `refused`: below zero or a cycle no longer kept)."
    );
    metrics::describe_counter!(
        CLOSED_CYCLE_EVENTS,
        "Events of a closed cycle read after its close: counters counted in the next open cycle's first hour, storage readings left out."
    );
    metrics::describe_counter!(RESTORES, "Partition states rebuilt from `usage.totals`.");
    metrics::describe_gauge!(LAG, "Records in `usage.events` not yet committed by this instance.");
    metrics::describe_histogram!(
        INGEST_TO_COMMIT_SECONDS,
        "From ingest's acceptance of a batch to the commit of its totals."
    );
    for c in [RESTORES, REREAD, EVENTS, DUPLICATE_KEY_EVENTS, CLOSED_CYCLE_EVENTS] {
        metrics::counter!(c).increment(0);
    }
    for outcome in ["committed", "aborted"] {
        metrics::counter!(BATCHES, "outcome" => outcome).increment(0);
    }
    for outcome in ["applied", "refused"] {
        metrics::counter!(ADJUSTMENTS, "outcome" => outcome).increment(0);
    }
    for reason in ["duplicate", "stale_seq", "undecodable", "covered_by_state"] {
        metrics::counter!(DISCARDED, "reason" => reason).increment(0);
    }
    for m in meter_core::Metric::COUNTERS {
        metrics::counter!(USAGE, "metric" => m.name()).increment(0);
    }
}

/// Rows of `usage.rows` not yet loaded into ClickHouse by this instance.
pub(crate) const LOAD_LAG: &str = "meter_load_lag_records";
/// Rows inserted into ClickHouse.
pub(crate) const LOAD_ROWS: &str = "meter_load_rows_total";
/// Rows per ClickHouse INSERT.
pub(crate) const LOAD_INSERT_ROWS: &str = "meter_load_insert_rows";
/// Duration of each INSERT, retries included.
pub(crate) const LOAD_SECONDS: &str = "meter_load_insert_duration_seconds";
/// Failed ClickHouse INSERTs (each is retried).
pub(crate) const LOAD_ERRORS: &str = "meter_load_clickhouse_errors_total";
/// `usage.rows` records that could not be decoded (skipped).
pub(crate) const LOAD_UNDECODABLE: &str = "meter_load_undecodable_records_total";
/// The end of the days rolled up (Unix seconds; 0 before the first).
pub(crate) const ROLLED_THROUGH: &str = "meter_rollup_rolled_through_seconds";
/// Days rolled up.
pub(crate) const ROLLED_DAYS: &str = "meter_rollup_rolled_total";
/// Duration of rolling up one day.
pub(crate) const ROLL_SECONDS: &str = "meter_rollup_day_duration_seconds";
/// The end of the latest copy of a month's rolled days (Unix seconds; 0 before the first).
pub(crate) const COPIED_THROUGH: &str = "meter_rollup_copied_through_seconds";
/// Duration of copying a month's rolled days into one partition.
pub(crate) const COPY_SECONDS: &str = "meter_rollup_month_copy_duration_seconds";
/// Rollup passes that failed (tried again at the next interval).
pub(crate) const ROLL_ERRORS: &str = "meter_rollup_errors_total";

/// The load role's metrics, described and started at zero.
pub(crate) fn describe_load() {
    metrics::describe_gauge!(LOAD_LAG, "Records of usage.rows not yet loaded into ClickHouse by this instance.");
    metrics::describe_counter!(LOAD_ROWS, "Rows inserted into ClickHouse.");
    metrics::describe_histogram!(LOAD_INSERT_ROWS, "Rows per ClickHouse INSERT.");
    metrics::describe_histogram!(LOAD_SECONDS, "Duration of each INSERT, retries included.");
    metrics::describe_counter!(LOAD_ERRORS, "Failed ClickHouse INSERTs (each is retried).");
    metrics::describe_counter!(LOAD_UNDECODABLE, "usage.rows records that could not be decoded (skipped).");
    metrics::describe_gauge!(
        ROLLED_THROUGH,
        "End of the days rolled up into usage_hourly_rollup and usage_daily_rollup, Unix seconds (0: none yet)."
    );
    metrics::describe_counter!(ROLLED_DAYS, "Days rolled up (again, after a redo).");
    metrics::describe_histogram!(ROLL_SECONDS, "Duration of rolling up one day.");
    metrics::describe_gauge!(
        COPIED_THROUGH,
        "End of the days copied into usage_hourly_rollup_months, Unix seconds (0: none yet)."
    );
    metrics::describe_histogram!(COPY_SECONDS, "Duration of copying a month's rolled days into one partition.");
    metrics::describe_counter!(ROLL_ERRORS, "Rollup passes that failed (tried again at the next interval).");
    for c in [LOAD_ROWS, LOAD_ERRORS, LOAD_UNDECODABLE, ROLLED_DAYS, ROLL_ERRORS] {
        metrics::counter!(c).increment(0);
    }
    metrics::gauge!(LOAD_LAG).set(0.0);
}
