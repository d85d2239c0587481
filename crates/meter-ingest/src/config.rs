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
