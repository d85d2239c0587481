//! The domain of the metering pipeline, free of I/O so that it can be tested
//! exhaustively: what a metric is, what a valid event is, how usage splits into
//! hours and billing cycles, how retried batches are recognised, and how a
//! project's totals advance.

pub mod adjust;
pub mod aggregate;
pub mod auth;
pub mod compaction;
pub mod config_history;
pub mod config_view;
pub mod cycle;
pub mod dedup;
pub mod delivery;
pub mod enforce;
pub mod event;
pub mod finality;
pub mod group;
pub mod held;
pub mod history;
pub mod ids;
pub mod keys;
pub mod metric;
pub mod partition;
pub mod quota;
pub mod rate;
pub mod retry;
pub mod small_map;
pub mod split;
pub mod target;
pub mod validate;

pub use aggregate::{HourlyRow, ProjectState, ProjectUpdate, Totals};
pub use cycle::Cycle;
pub use dedup::{SeqVerdict, SeqWindow};
pub use event::{Batch, Event, Span};
pub use ids::{IdError, ProjectId, SourceId};
pub use keys::KeySet;
pub use metric::Metric;
pub use quota::{
    Patch, Plan, ProjectQuotaConfig, ProjectQuotaPatch, Quota, QuotaOverrides, QuotaOverridesPatch, DEFAULT_THRESHOLDS,
};
pub use validate::{check_measure, BatchError, Limits, MAX_INTERVAL_MS, MAX_TIME_MS};

/// The hasher of maps keyed by project or source id on hot paths (ingest's
/// grouping, the aggregator's states, the enforcer's views): foldhash,
/// several times faster than SipHash on short ids, seeded per process (the
/// ids come from clients: not a fixed seed).
pub type FastHash = foldhash::fast::RandomState;

/// Milliseconds since the Unix epoch, UTC. All times in the domain are this.
pub type UnixMs = i64;

/// Milliseconds in one hour.
pub const HOUR_MS: i64 = 3_600_000;
