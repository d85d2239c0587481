//! The ingest role: compute nodes call `Report` over gRPC (and Neon's
//! emitters `POST /v1/events` with JSON); each batch is validated
//! (all-or-nothing), split into per-project batches packed into one Kafka
//! record per partition, and acknowledged only once Kafka has every record
//! (acks=all, idempotent producer). A valid Report goes from its bytes to
//! its records without prost's structs (`meter_proto::report_read`); any
//! other is decoded by prost and refused by `validate`, which names why.

mod config;
mod error;
mod http;
mod metrics;
mod service;

pub use config::IngestConfig;
pub use error::IngestError;
pub use meter_proto::report::{kafka_records, validate};
pub use meter_proto::RETRY_AFTER_MS;
pub use service::{run, IngestService};
