//! The `[ingest]` section of the configuration.

use meter_core::Limits;
use serde::Deserialize;

/// Where ingest listens and what it accepts.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct IngestConfig {
    /// gRPC listen address.
    pub listen: String,
    /// Largest accepted request, bytes.
    pub max_message_bytes: usize,
    pub max_events_per_batch: usize,
    /// Oldest accepted event time, seconds before now.
    pub max_past_seconds: i64,
    /// Newest accepted event time, seconds after now.
    pub max_future_seconds: i64,
    /// Largest accepted value of one event.
    pub max_event_value: u64,
    /// Events per second each source may report; 0: no limit.
    pub rate_limit_events_per_second: u64,
    /// Events a source may send at once above its rate; 0: one second's worth.
    pub rate_limit_burst_events: u64,
    /// Reports being handled at once (waiting for Kafka included); beyond it
    /// a Report is answered UNAVAILABLE at once, so memory stays bounded
    /// when Kafka is slow or down.
    pub max_in_flight_requests: usize,
    /// HTTP/2 streams per connection.
    pub max_concurrent_streams: u32,
}

impl Default for IngestConfig {
    fn default() -> Self {
        let l = Limits::default();
        IngestConfig {
            listen: "127.0.0.1:50051".into(),
            max_message_bytes: 4 << 20,
            max_events_per_batch: l.max_events_per_batch,
            max_past_seconds: l.max_past_ms / 1000,
            max_future_seconds: l.max_future_ms / 1000,
            max_event_value: l.max_value,
            rate_limit_events_per_second: 0,
            rate_limit_burst_events: 0,
            max_in_flight_requests: 256,
            max_concurrent_streams: 64,
        }
    }
}

impl IngestConfig {
    /// The validation limits.
    pub fn limits(&self) -> Limits {
        Limits {
            max_events_per_batch: self.max_events_per_batch,
            max_past_ms: self.max_past_seconds * 1000,
            max_future_ms: self.max_future_seconds * 1000,
            max_value: self.max_event_value,
        }
    }
}
