//! The bodies of the Neon-compatible surface (`/api/v2`), named and shaped
//! as in Neon's published OpenAPI document (`tests/neon/`): a client
//! generated from that document reads them unchanged.

use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Neon's `GeneralError`: every error under `/api/v2`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = GeneralError)]
pub(crate) struct NeonError {
    #[schema(value_type = String)]
    pub(crate) code: &'static str,
    pub(crate) message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) request_id: Option<String>,
}

/// The range parameters of both consumption-history operations.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RangeParams {
    /// Start, RFC 3339 (rounded down to the timeframe).
    #[param(required = true, format = DateTime)]
    pub(crate) from: Option<String>,
    /// End, RFC 3339 (rounded up to the timeframe).
    #[param(required = true, format = DateTime)]
    pub(crate) to: Option<String>,
    /// `hourly` (at most 168), `daily` (366) or `monthly` (36 timeframes).
    #[param(required = true, value_type = String)]
    pub(crate) granularity: Option<String>,
    /// Comma-separated or repeated: `active_time_seconds`,
    /// `compute_time_seconds`, `written_data_bytes`,
    /// `synthetic_storage_size_bytes` (always answered), and on request
    /// `logical_size_bytes`, `logical_size_bytes_hour`, `data_transfer_bytes`.
    pub(crate) metrics: Option<String>,
    /// Deprecated in Neon; `true` asks for `data_storage_bytes_hour`.
    /// (`org_id` is accepted and ignored: every project here belongs to one
    /// account.)
    #[param(value_type = Option<bool>)]
    pub(crate) include_v1_metrics: Option<String>,
}

/// The page parameters of `GET /api/v2/consumption_history/projects`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageParams {
    /// Comma-separated or repeated, up to 100; absent: the projects with
    /// usage in the range.
    pub(crate) project_ids: Option<String>,
    /// Projects per page, 1-100 (default 10).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 100)]
    pub(crate) limit: Option<String>,
    /// The `pagination.cursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

/// Neon's `ConsumptionHistoryPerTimeframe`. The four fields Neon requires
/// are always present; the others when `metrics` asks for them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = ConsumptionHistoryPerTimeframe)]
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) logical_size_bytes_hour: Option<u64>,
    /// Not in Neon's history (its project object has it): on request only.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data_transfer_bytes: Option<u64>,
}

/// Neon's `ConsumptionHistoryPerPeriod`: one billing cycle's timeframes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(as = ConsumptionHistoryPerPeriod)]
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
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ConsumptionHistoryPerProject)]
pub(crate) struct ProjectPeriods {
    pub(crate) project_id: String,
    pub(crate) periods: Vec<Period>,
}

/// `GET /api/v2/consumption_history/projects`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ConsumptionHistoryPerProjectResponse)]
pub(crate) struct ProjectsHistory {
    pub(crate) projects: Vec<ProjectPeriods>,
    /// Absent on an empty page: the listing is over.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) pagination: Option<Pagination>,
}

/// Neon's `Pagination`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = NeonPagination)]
pub(crate) struct Pagination {
    pub(crate) cursor: String,
}

/// `GET /api/v2/consumption_history/account`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ConsumptionHistoryPerAccountResponse)]
pub(crate) struct AccountHistory {
    pub(crate) periods: Vec<Period>,
}

/// Neon's `ProjectResponse`: `GET /api/v2/projects/{project_id}`.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ProjectResponse)]
pub(crate) struct ProjectResponse {
    pub(crate) project: Project,
}

/// `PATCH /api/v2/projects/{project_id}`: Neon's `ProjectResponse` and
/// `OperationsResponse` (a quota change starts no operation: always empty).
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ProjectUpdated)]
pub(crate) struct ProjectUpdated {
    pub(crate) project: Project,
    #[schema(value_type = Vec<Object>)]
    pub(crate) operations: Vec<serde_json::Value>,
}

/// Neon's `Project`, as far as a usage pipeline knows it: the current
/// cycle's consumption and `settings.quota` are real; the fields Neon
/// requires that only a control plane knows carry the placeholders
/// `README.md` ("Neon's API") lists.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = NeonProject)]
pub(crate) struct Project {
    pub(crate) id: String,
    pub(crate) name: String,
    #[schema(value_type = String)]
    pub(crate) platform_id: &'static str,
    #[schema(value_type = String)]
    pub(crate) region_id: &'static str,
    #[schema(value_type = String)]
    pub(crate) provisioner: &'static str,
    pub(crate) pg_version: u8,
    #[schema(value_type = String)]
    pub(crate) proxy_host: &'static str,
    pub(crate) store_passwords: bool,
    #[schema(value_type = String)]
    pub(crate) creation_source: &'static str,
    pub(crate) history_retention_seconds: u32,
    #[schema(value_type = String)]
    pub(crate) created_at: &'static str,
    #[schema(value_type = String)]
    pub(crate) updated_at: &'static str,
    #[schema(value_type = String)]
    pub(crate) owner_id: &'static str,
    /// The `logical_size_bytes` quota in MiB (rounded down) and in bytes;
    /// 0: none.
    pub(crate) branch_logical_size_limit: u64,
    pub(crate) branch_logical_size_limit_bytes: u64,
    pub(crate) active_time_seconds: u64,
    pub(crate) compute_time_seconds: u64,
    /// Neon's deprecated name of `compute_time_seconds`.
    pub(crate) cpu_used_sec: u64,
    pub(crate) written_data_bytes: u64,
    pub(crate) data_transfer_bytes: u64,
    /// Neon's storage byte-hours include WAL and history, which no source
    /// reports to us: always 0 (`logical_size_bytes_hour` is in the history).
    pub(crate) data_storage_bytes_hour: u64,
    pub(crate) consumption_period_start: String,
    pub(crate) consumption_period_end: String,
    pub(crate) quota_reset_at: String,
    pub(crate) settings: Settings,
}

/// Neon's `ProjectSettingsData`, its `quota` only: Neon's `ProjectQuota`,
/// the effective limits, a limit absent when there is none.
#[derive(Debug, Serialize, ToSchema)]
#[schema(as = ProjectSettingsData)]
pub(crate) struct Settings {
    pub(crate) quota: meter_core::QuotaOverrides,
}

/// Neon's `ProjectUpdateRequest`, the part this API manages: anything but
/// `project.settings.quota` is refused by name.
#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ProjectUpdateRequest)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProjectUpdateRequest {
    pub(crate) project: ProjectUpdate,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ProjectUpdate)]
#[serde(deny_unknown_fields)]
pub(crate) struct ProjectUpdate {
    pub(crate) settings: Option<SettingsUpdate>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[schema(as = ProjectSettingsUpdate)]
#[serde(deny_unknown_fields)]
pub(crate) struct SettingsUpdate {
    /// Each limit sent replaces the project's own (0: no limit); those not
    /// sent are kept.
    pub(crate) quota: Option<meter_core::QuotaOverrides>,
}
