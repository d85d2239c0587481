//! The wire types (generated from `proto/meter/v1`) and their conversions to
//! the domain types of `meter-core`, so prost types stay at the edges.

#![allow(unreachable_pub, missing_debug_implementations)]

/// Generated code for package `meter.v1`.
pub mod v1 {
    #![allow(clippy::all)]
    tonic::include_proto!("meter.v1");
}

/// The Ingest server as ingest runs it: `Report` receives the request's
/// bytes (`report_codec::RawReport`); see build.rs.
pub mod ingest_raw {
    #![allow(clippy::all)]
    include!(concat!(env!("OUT_DIR"), "/meter.v1.Ingest.rs"));
}

/// The response metadata key of a rate-limited `Report`
/// (`RESOURCE_EXHAUSTED`): milliseconds to wait before retrying.
pub const RETRY_AFTER_MS: &str = "retry-after-ms";

pub mod adjust;
mod batch;
pub mod events;
mod events_read;
pub mod neon;
pub mod packed;
pub mod report;
pub mod report_codec;
pub mod report_read;
pub mod rows_write;
#[cfg(test)]
mod test_reports;
mod totals;
mod totals_read;
mod totals_write;
mod wire_read;
pub mod wire_write;

/// HTTP/2 flow-control windows for the Ingest service, on the server and
/// on the clients this repository ships (simulator, benchmark): with the
/// 64 KiB defaults a Report of thousands of events waits on flow-control
/// round trips (measured: ingest at 0.47 of the Kafka baseline before,
/// 0.82 after; BENCHMARKS.md).
pub const STREAM_WINDOW: u32 = 4 << 20;
pub const CONNECTION_WINDOW: u32 = 16 << 20;

pub use batch::{
    decode_batch, decode_record, encode_batch, event_from_wire, event_to_wire, metric_to_wire, set_wire_span,
    wire_measure, DecodeError,
};
pub use totals::{
    closed_record, decode_totals, decode_usage, decode_usage_prost, key_chunk_key, key_chunk_records, key_sets,
    mark_keys_persisted, restore, state_from_wire, state_to_wire, Restored, TotalsDecodeError, TotalsRecord,
};
