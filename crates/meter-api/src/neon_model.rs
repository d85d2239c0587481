//! The bodies of the Neon-compatible surface (`/api/v2`), named and shaped
//! as in Neon's published OpenAPI document (`tests/neon/`): a client
//! generated from that document reads them unchanged.

use serde::{Deserialize, Serialize};

/// Neon's `GeneralError`: every error under `/api/v2`.
#[derive(Debug, Serialize)]
pub(crate) struct NeonError {
    pub(crate) code: &'static str,
    pub(crate) message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) request_id: Option<String>,
}

/// The range parameters of both consumption-history operations.
#[derive(Debug, Deserialize)]
pub(crate) struct RangeParams {
    pub(crate) from: Option<String>,
    pub(crate) to: Option<String>,
    pub(crate) granularity: Option<String>,
    /// Comma-separated or repeated.
    pub(crate) metrics: Option<String>,
    /// Deprecated in Neon; `true` asks for `data_storage_bytes_hour`.
    /// (`org_id` is accepted and ignored: every project here belongs to one
    /// account.)
    pub(crate) include_v1_metrics: Option<String>,
}

/// The page parameters of `GET /api/v2/consumption_history/projects`.
#[derive(Debug, Deserialize)]
pub(crate) struct PageParams {
    /// Comma-separated or repeated.
    pub(crate) project_ids: Option<String>,
    pub(crate) limit: Option<String>,
    pub(crate) cursor: Option<String>,
}

/// Neon's `ConsumptionHistoryPerTimeframe`. The four fields Neon requires
/// are always present; the others when `metrics` asks for them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub(crate) struct Timeframe {
    pub(crate) timeframe_start: String,
    pub(crate) timeframe_end: String,
    pub(crate) active_time_seconds: u64,
    pub(crate) compute_time_seconds: u64,
    pub(crate) written_data_bytes: u64,
    /// Neon's logical size plus WAL and history; here the logical size (the
    /// last reading in the timeframe), the only storage figure reported.
    pub(crate) synthetic_storage_size_bytes: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) logical_size_bytes: Option<u64>,
    /// Not in Neon's history (its project object has it): on request only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data_transfer_bytes: Option<u64>,
}

/// Neon's `ConsumptionHistoryPerPeriod`: one billing cycle's timeframes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub(crate) struct Period {
    pub(crate) period_id: String,
    pub(crate) period_plan: String,
    pub(crate) period_start: String,
    /// Only for cycles that have ended.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) period_end: Option<String>,
    pub(crate) consumption: Vec<Timeframe>,
}

/// Neon's `ConsumptionHistoryPerProject`.
#[derive(Debug, Serialize)]
pub(crate) struct ProjectPeriods {
    pub(crate) project_id: String,
    pub(crate) periods: Vec<Period>,
}

/// `GET /api/v2/consumption_history/projects`.
#[derive(Debug, Serialize)]
pub(crate) struct ProjectsHistory {
    pub(crate) projects: Vec<ProjectPeriods>,
    /// Absent on an empty page: the listing is over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pagination: Option<Pagination>,
}

/// Neon's `Pagination`.
#[derive(Debug, Serialize)]
pub(crate) struct Pagination {
    pub(crate) cursor: String,
}

/// `GET /api/v2/consumption_history/account`.
#[derive(Debug, Serialize)]
pub(crate) struct AccountHistory {
    pub(crate) periods: Vec<Period>,
}
