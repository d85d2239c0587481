//! A client library for compute nodes reporting usage to `meterd ingest`.
//!
//! - **Restart-safe identity**: each start draws a random session
//!   (`SourceIdentity`); batches are `(source_id, session, batch_seq)`, so a
//!   restarted node that remembers nothing is counted exactly once.
//! - **Retries** with the same batch identity, backoff with jitter, and
//!   ingest's `retry-after-ms` hint honoured (`Sender`).
//! - **Batching** by size and time, a **bounded queue** with backpressure
//!   (`record` waits, `try_record` drops and counts), and an optional
//!   **on-disk spool** (`ClientConfig::spool_dir`) so usage survives an
//!   ingest outage and a crash of the node (`MeterClient`).
//!
//! What a node must keep across restarts: nothing, or, to keep usage that
//! was not acknowledged before a crash, its spool directory.

mod client;
mod identity;
mod metrics;
mod send;
mod spool;

pub use client::{ClientConfig, ClientStats, MeterClient, RecordError};
pub use identity::SourceIdentity;
pub use send::{retryable, Delivery, Sender};
pub use spool::Spool;
