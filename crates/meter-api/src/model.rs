//! The bodies the HTTP API reads and writes, and its query parameters: the
//! Rust types the OpenAPI document is generated from (`openapi.rs`), so the
//! document cannot drift from what the handlers answer.

use meter_core::delivery::DeliveryState;
use meter_core::enforce::AlertType;
use meter_core::history::Granularity;
use meter_core::{Metric, Quota, QuotaOverrides};
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

/// Every error: `{"error": {"code", "message", "param"?, "request_id"}}`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorBody {
    pub(crate) error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ErrorDetail {
    /// `invalid_argument`, `invalid_json`, `invalid_query`, `not_found`,
    /// `unauthenticated`, `permission_denied`, `conflict`, `below_zero`,
    /// `cycle_closed`, `cycle_not_kept` or `unavailable`.
    #[schema(example = "invalid_argument")]
    pub(crate) code: &'static str,
    /// What is wrong, starting with the parameter or field at fault.
    pub(crate) message: String,
    /// The query parameter at fault, when one is.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) param: Option<String>,
    /// The request's id: the caller's `X-Request-ID` when it sent one (1-128
    /// visible ASCII characters), else a UUID made for it; also in the
    /// response's `X-Request-ID` header and the api's log lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) request_id: Option<String>,
}

/// `PUT /v1/plans/{name}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanBody {
    #[serde(default)]
    pub(crate) quota: Quota,
    /// Percent of each quota at which an alert fires (1-100); 50, 80, 90
    /// and 100 when absent.
    pub(crate) thresholds: Option<Vec<u8>>,
}

/// `PUT /v1/projects/{id}/quota`: replaces the plan and every override.
/// `plan` must be sent (`null`: no plan), so that a body without it cannot
/// drop the plan by accident; to change single fields use `PATCH`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct QuotaPut {
    /// The plan's name, or `null` for none.
    #[serde(deserialize_with = "Option::deserialize")]
    #[schema(required = true)]
    pub(crate) plan: Option<String>,
    /// Overrides of the plan's limits (absent: inherit; `0`: no limit).
    #[serde(default)]
    pub(crate) quota: QuotaOverrides,
}

/// `PATCH /v1/projects/{id}/quota`, a JSON merge patch (RFC 7396) read as
/// `meter_core::ProjectQuotaPatch`; this type only describes it in the
/// document. An absent field is kept; `"plan": null` leaves the project
/// without a plan; `"quota": null` drops every override; in a `quota`
/// object, a metric set to `null` drops its override (the plan's limit
/// applies again) and `0` lifts the limit.
#[derive(ToSchema)]
#[allow(dead_code)]
pub(crate) struct QuotaPatchBody {
    plan: Option<String>,
    quota: Option<QuotaOverrides>,
}

/// A project's plan, its overrides and the quota they make.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProjectQuota {
    pub(crate) project_id: String,
    /// The plan it names (null: none; every limit is then its own override).
    pub(crate) plan: Option<String>,
    /// The effective quota: the plan's, with the overrides applied.
    pub(crate) quota: Quota,
    pub(crate) overrides: QuotaOverrides,
    pub(crate) thresholds: Vec<u8>,
}

/// Active or suspended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ProjectState {
    Active,
    Suspended,
}

impl ProjectState {
    pub(crate) fn of(suspended: bool) -> Self {
        if suspended {
            ProjectState::Suspended
        } else {
            ProjectState::Active
        }
    }
}

/// `GET /v1/projects` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct ProjectListParams {
    /// Only projects using at least this percent of some quota.
    #[param(value_type = Option<u64>, minimum = 0)]
    pub(crate) min_percent: Option<String>,
    /// Only projects in this state.
    #[param(value_type = Option<ProjectState>)]
    pub(crate) state: Option<String>,
    /// Projects per answer (1-1000, default 100).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 1000)]
    pub(crate) limit: Option<String>,
}

/// Known projects, most used first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProjectList {
    pub(crate) projects: Vec<ProjectRow>,
    /// How many projects matched (more than `projects` holds when limited).
    pub(crate) total: usize,
}

/// A project and the use of its most used quota (nulls: no limited metric).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProjectRow {
    pub(crate) project_id: String,
    pub(crate) plan: Option<String>,
    pub(crate) state: ProjectState,
    pub(crate) metric: Option<Metric>,
    pub(crate) usage: Option<u64>,
    pub(crate) quota: Option<u64>,
    pub(crate) percent: Option<u64>,
}

/// Usage with Neon's field names: the current cycle's counters and the
/// project's storage (the sum of its branches' latest readings).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Usage {
    pub(crate) active_time_seconds: u64,
    pub(crate) compute_time_seconds: u64,
    pub(crate) written_data_bytes: u64,
    pub(crate) data_transfer_bytes: u64,
    pub(crate) logical_size_bytes: u64,
}

impl From<[u64; 5]> for Usage {
    /// From values in `Metric::ALL` order.
    fn from(v: [u64; 5]) -> Self {
        Usage {
            active_time_seconds: v[0],
            compute_time_seconds: v[1],
            written_data_bytes: v[2],
            data_transfer_bytes: v[3],
            logical_size_bytes: v[4],
        }
    }
}

impl Usage {
    /// The values in `Metric::ALL` order.
    pub(crate) fn values(&self) -> [u64; 5] {
        [
            self.active_time_seconds,
            self.compute_time_seconds,
            self.written_data_bytes,
            self.data_transfer_bytes,
            self.logical_size_bytes,
        ]
    }
}

/// A project's state in its current billing cycle.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Status {
    pub(crate) project_id: String,
    pub(crate) plan: Option<String>,
    #[schema(format = DateTime)]
    pub(crate) consumption_period_start: String,
    #[schema(format = DateTime)]
    pub(crate) consumption_period_end: String,
    pub(crate) usage: Usage,
    pub(crate) quota: Quota,
    pub(crate) state: ProjectState,
    /// Why it is suspended (null when active).
    pub(crate) suspension: Option<SuspensionView>,
    /// Each branch's storage (the storage quota applies to each branch) and
    /// whether its writes are blocked.
    pub(crate) branches: Vec<BranchView>,
    /// Alert thresholds reached this cycle.
    pub(crate) thresholds_reached: Vec<ThresholdReached>,
    /// The latest suspend/resume call made for it (null: none yet).
    pub(crate) control_plane: Option<ControlPlaneCall>,
}

/// Why a project was suspended.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct SuspensionView {
    pub(crate) reason: DenyReason,
    pub(crate) metric: Metric,
    pub(crate) usage: u64,
    pub(crate) quota: u64,
    #[schema(format = DateTime)]
    pub(crate) since: String,
}

/// One branch's storage.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct BranchView {
    /// Empty for readings that named no branch.
    pub(crate) branch_id: String,
    /// The latest reading.
    pub(crate) logical_size_bytes: u64,
    #[schema(format = DateTime)]
    pub(crate) reading_at: String,
    /// Over the storage quota: `block_writes` was called for it.
    pub(crate) writes_blocked: bool,
    #[schema(format = DateTime)]
    pub(crate) blocked_since: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ThresholdReached {
    pub(crate) metric: Metric,
    /// The branch, for the storage quota (absent for the counters).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) branch_id: Option<String>,
    /// Percent of the quota.
    pub(crate) threshold: u8,
    pub(crate) quota: u64,
}

/// Why a compute may not start.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum DenyReason {
    /// The project is suspended.
    Suspended,
    /// A metric is at or over its quota.
    QuotaExceeded,
}

impl DenyReason {
    /// The wire name (also CheckQuota's gRPC `reason`).
    pub(crate) fn name(self) -> &'static str {
        match self {
            DenyReason::Suspended => "suspended",
            DenyReason::QuotaExceeded => "quota_exceeded",
        }
    }
}

/// CheckQuota's answer: may this project start a compute?
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Check {
    pub(crate) project_id: String,
    pub(crate) allowed: bool,
    /// Present when denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) reason: Option<DenyReason>,
    /// The metric at fault, present when denied.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) metric: Option<Metric>,
}

/// `PUT /v1/webhooks/{id}`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookBody {
    /// Where alerts are POSTed (https, or a loopback/private address the
    /// operator allowed).
    pub(crate) url: String,
    /// `whsec_` followed by the base64 of 24-64 random bytes (Standard Webhooks).
    pub(crate) secret: String,
    /// Event types wanted; all when empty or absent.
    #[serde(default)]
    pub(crate) event_types: Vec<AlertType>,
    /// A disabled endpoint gets nothing; its pending deliveries become dead
    /// letters (resend them once it is enabled again).
    #[serde(default)]
    pub(crate) disabled: bool,
}

/// `PATCH /v1/webhooks/{id}`: the fields to change; the others stay.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookPatch {
    pub(crate) url: Option<String>,
    pub(crate) secret: Option<String>,
    pub(crate) event_types: Option<Vec<AlertType>>,
    /// `false` also clears the reason the dispatcher disabled it for.
    pub(crate) disabled: Option<bool>,
}

/// A webhook endpoint; its secret is never shown.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Webhook {
    pub(crate) id: String,
    pub(crate) url: String,
    /// Always `whsec_…` (redacted).
    pub(crate) secret: &'static str,
    pub(crate) event_types: Vec<AlertType>,
    pub(crate) disabled: bool,
    /// Why the dispatcher disabled it (failing continuously), when it did.
    pub(crate) disabled_reason: Option<String>,
}

/// A test event queued for one endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct TestSent {
    /// Its `webhook-id`.
    pub(crate) event_id: String,
    /// Follow it in `GET /v1/webhooks/{id}/deliveries`.
    pub(crate) delivery_id: String,
}

/// `GET /v1/webhooks/{id}/deliveries` query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct DeliveryParams {
    /// Only events of this type.
    #[param(value_type = Option<AlertType>)]
    pub(crate) event_type: Option<String>,
    /// Only events of this project.
    pub(crate) project_id: Option<String>,
    /// Only deliveries in this state.
    #[param(value_type = Option<DeliveryState>)]
    pub(crate) state: Option<String>,
    /// Deliveries per page (1-100, default 20).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 100)]
    pub(crate) limit: Option<String>,
    /// `pagination.next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

/// Recent deliveries to one endpoint, newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryList {
    pub(crate) deliveries: Vec<DeliveryView>,
    pub(crate) pagination: Pagination,
}

/// One event's delivery to one endpoint.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeliveryView {
    /// `<event id>~<endpoint id>`; resend it with
    /// `POST /v1/webhooks/{id}/deliveries/{delivery_id}/resend`.
    pub(crate) id: String,
    /// The `webhook-id` of every attempt.
    pub(crate) event_id: String,
    #[serde(rename = "type")]
    pub(crate) kind: AlertType,
    pub(crate) project_id: String,
    pub(crate) endpoint_id: String,
    pub(crate) state: DeliveryState,
    #[schema(format = DateTime)]
    pub(crate) created_at: String,
    #[schema(format = DateTime)]
    pub(crate) updated_at: String,
    /// Attempts since it was created or last resent.
    pub(crate) attempt_count: u32,
    /// When the next attempt is due (pending only).
    #[schema(format = DateTime)]
    pub(crate) next_attempt_at: Option<String>,
    /// Why it ended without a failed attempt saying so (disabled, deleted,
    /// target refused).
    pub(crate) reason: Option<String>,
    /// The latest attempts, oldest first.
    pub(crate) attempts: Vec<AttemptView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AttemptView {
    #[schema(format = DateTime)]
    pub(crate) at: String,
    /// The receiver's HTTP status (null: no answer).
    pub(crate) status: Option<u16>,
    /// Why it failed (null: it did not).
    pub(crate) error: Option<String>,
    pub(crate) duration_ms: u64,
}

/// How the project's latest control-plane call ended.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ControlPlaneCall {
    /// `suspend`, `resume`, `block_writes` or `unblock_writes`.
    pub(crate) kind: String,
    /// The branch of a `block_writes` or `unblock_writes` call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) branch_id: Option<String>,
    pub(crate) idempotency_key: String,
    /// `ok`, or `failed`: the control plane refused it for good (a 4xx
    /// other than 408/429); the call is not retried.
    pub(crate) outcome: String,
    pub(crate) status: Option<u16>,
    pub(crate) error: Option<String>,
    pub(crate) attempts: u32,
    #[schema(format = DateTime)]
    pub(crate) at: String,
}

/// `GET /v1/plans`: every plan, by name.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PlanList {
    pub(crate) plans: Vec<meter_core::Plan>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WebhookList {
    pub(crate) webhooks: Vec<Webhook>,
}

/// A delivery that exhausted its retries.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetterView {
    /// Names it for a replay.
    pub(crate) key: String,
    /// The `webhook-id` it was sent with.
    pub(crate) event_id: String,
    #[serde(rename = "type")]
    pub(crate) kind: AlertType,
    pub(crate) project_id: String,
    pub(crate) endpoint_id: String,
    pub(crate) attempts: u32,
    pub(crate) last_error: String,
    #[schema(format = DateTime)]
    pub(crate) failed_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct DeadLetterList {
    pub(crate) dead_letters: Vec<DeadLetterView>,
}

/// `POST /v1/webhooks/dead-letters/replay`.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayBody {
    /// Keys to replay; every dead letter when absent.
    pub(crate) keys: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Replayed {
    /// How many dead letters were queued for delivery again.
    pub(crate) replayed: usize,
}

/// The range of every consumption-history query.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct RangeParams {
    /// RFC 3339; rounded down to a whole timeframe (UTC).
    #[param(required = true, value_type = String, format = DateTime)]
    pub(crate) from: Option<String>,
    /// RFC 3339, after `from`; rounded up to a whole timeframe (UTC).
    #[param(required = true, value_type = String, format = DateTime)]
    pub(crate) to: Option<String>,
    /// At most 168 hourly, 366 daily or 36 monthly timeframes.
    #[param(required = true, value_type = Granularity)]
    pub(crate) granularity: Option<String>,
    /// Metric names, comma-separated or the parameter repeated (both as
    /// Neon documents them); all five when absent.
    #[param(example = "active_time_seconds,written_data_bytes")]
    pub(crate) metrics: Option<String>,
}

/// The page of `GET /v1/consumption_history/projects`.
#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct PageParams {
    /// Project ids to restrict to, comma-separated or the parameter
    /// repeated (both as Neon documents them).
    pub(crate) project_ids: Option<String>,
    /// Projects per page (1-100, default 10).
    #[param(value_type = Option<u64>, minimum = 1, maximum = 100)]
    pub(crate) limit: Option<String>,
    /// `pagination.next_cursor` of the previous page.
    pub(crate) cursor: Option<String>,
}

/// The range a history answer covers, as it was understood.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct RangeEcho {
    #[schema(format = DateTime)]
    pub(crate) from: String,
    #[schema(format = DateTime)]
    pub(crate) to: String,
    pub(crate) granularity: Granularity,
    /// The metric names answered: the five metrics and
    /// `logical_size_bytes_hour` (storage held, byte-hours).
    pub(crate) metrics: Vec<String>,
    /// Timeframes ending at or before this are final (see `GET
    /// /v1/watermark`); null until the pipeline has reported how far it is.
    #[schema(format = DateTime)]
    pub(crate) final_before: Option<String>,
}

/// One timeframe's usage: for counters the sum over it, for
/// `logical_size_bytes` each branch's last reading in it, summed (0 when
/// none), for `logical_size_bytes_hour` the storage held over it in
/// byte-hours. A metric is present when it was asked for.
#[derive(Debug, Default, Serialize, ToSchema)]
pub(crate) struct Timeframe {
    #[schema(format = DateTime)]
    pub(crate) timeframe_start: String,
    #[schema(format = DateTime)]
    pub(crate) timeframe_end: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) active_time_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) compute_time_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) written_data_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) data_transfer_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) logical_size_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) logical_size_bytes_hour: Option<u64>,
    /// True when the counters include adjustments booked in this timeframe
    /// (`GET /v1/projects/{id}/adjustments` lists them); absent otherwise.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub(crate) adjusted: bool,
    /// True when no more usage can arrive for it: its end plus the
    /// late-event horizon has passed and everything acknowledged until then
    /// is counted here. Only an adjustment can still change it.
    #[serde(rename = "final")]
    pub(crate) is_final: bool,
}

impl Timeframe {
    /// Sets `m`'s value.
    pub(crate) fn set(&mut self, m: Metric, v: u64) {
        let slot = match m {
            Metric::ActiveTimeSeconds => &mut self.active_time_seconds,
            Metric::ComputeTimeSeconds => &mut self.compute_time_seconds,
            Metric::WrittenDataBytes => &mut self.written_data_bytes,
            Metric::DataTransferBytes => &mut self.data_transfer_bytes,
            Metric::LogicalSizeBytes => &mut self.logical_size_bytes,
        };
        *slot = Some(v);
    }

    /// `m`'s value, when it was asked for.
    pub(crate) fn get(&self, m: Metric) -> Option<u64> {
        match m {
            Metric::ActiveTimeSeconds => self.active_time_seconds,
            Metric::ComputeTimeSeconds => self.compute_time_seconds,
            Metric::WrittenDataBytes => self.written_data_bytes,
            Metric::DataTransferBytes => self.data_transfer_bytes,
            Metric::LogicalSizeBytes => self.logical_size_bytes,
        }
    }
}

/// `GET /v1/projects/{id}/consumption_history`.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProjectHistory {
    #[serde(flatten)]
    pub(crate) range: RangeEcho,
    pub(crate) project_id: String,
    pub(crate) consumption: Vec<Timeframe>,
}

/// `GET /v1/consumption_history/projects`: projects with usage in the
/// range, in id order.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProjectsHistory {
    #[serde(flatten)]
    pub(crate) range: RangeEcho,
    pub(crate) projects: Vec<ProjectConsumption>,
    pub(crate) pagination: Pagination,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct ProjectConsumption {
    pub(crate) project_id: String,
    pub(crate) consumption: Vec<Timeframe>,
}

#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct Pagination {
    /// Pass as `cursor` for the next page; null on the last page.
    pub(crate) next_cursor: Option<String>,
    pub(crate) limit: usize,
}

/// `GET /v1/consumption_history/fleet`: every project's usage summed per
/// timeframe (storage: the sum of each project's last reading).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct FleetHistory {
    #[serde(flatten)]
    pub(crate) range: RangeEcho,
    pub(crate) consumption: Vec<Timeframe>,
}

/// `POST /v1/projects/{id}/adjustments`: a correction of one counter.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct AdjustmentBody {
    /// A counter: `active_time_seconds`, `compute_time_seconds`,
    /// `written_data_bytes` or `data_transfer_bytes`.
    pub(crate) metric: String,
    /// The hour it is booked in (RFC 3339, on the hour, begun). Give `hour`
    /// or `cycle`; neither: the current hour.
    #[schema(format = DateTime, example = "2026-11-30T10:00:00Z")]
    pub(crate) hour: Option<String>,
    /// A whole billing cycle, `YYYY-MM` (booked at its first hour).
    #[schema(example = "2026-11")]
    pub(crate) cycle: Option<String>,
    /// Added to the counter; negative to take usage away. Refused (422)
    /// when it would take the cycle's counter below zero.
    pub(crate) delta: i64,
    /// Why (1-500 characters), kept with it.
    pub(crate) reason: String,
    /// 1-128 visible ASCII characters: one adjustment per project and key,
    /// ever. Sending the same request again answers what the first got.
    pub(crate) idempotency_key: String,
}

/// An adjustment, who made it and what became of it.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AdjustmentView {
    pub(crate) project_id: String,
    pub(crate) metric: Metric,
    /// The hour it is booked in.
    #[schema(format = DateTime)]
    pub(crate) hour: String,
    /// The cycle whose counter it changes, `YYYY-MM`.
    pub(crate) cycle: String,
    /// Asked for the whole cycle rather than an hour.
    pub(crate) cycle_wide: bool,
    pub(crate) delta: i64,
    pub(crate) reason: String,
    pub(crate) idempotency_key: String,
    /// The name of the API credential that made it (empty without a tokens file).
    pub(crate) actor: String,
    #[schema(format = DateTime)]
    pub(crate) created_at: String,
    /// The `X-Request-ID` of the request that made it.
    pub(crate) request_id: String,
    /// `applied`, `refused` or `pending` (written, not yet judged).
    pub(crate) status: AdjustmentStatus,
    /// Why it was refused: `below_zero` or `cycle_not_kept`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) refusal: Option<meter_core::adjust::Refusal>,
    /// The cycle's counter once it was applied (or, refused, as it stayed).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) counter_after: Option<u64>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum AdjustmentStatus {
    Applied,
    Refused,
    Pending,
}

/// `GET /v1/projects/{id}/adjustments`: newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct AdjustmentList {
    pub(crate) adjustments: Vec<AdjustmentView>,
}

/// `GET /v1/projects/{id}/adjustments` parameters.
#[derive(Debug, Default, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub(crate) struct AdjustmentListParams {
    /// Only the adjustments of this cycle, `YYYY-MM`.
    pub(crate) cycle: Option<String>,
}

/// One change of a project's plan or overrides.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QuotaChange {
    #[schema(format = DateTime)]
    pub(crate) changed_at: String,
    /// The name of the API credential that made it (empty without a tokens file).
    pub(crate) actor: String,
    /// The `X-Request-ID` of the request that made it.
    pub(crate) request_id: String,
    /// The plan and overrides before (null: none were set).
    pub(crate) before: Option<meter_core::ProjectQuotaConfig>,
    pub(crate) after: meter_core::ProjectQuotaConfig,
}

/// `GET /v1/projects/{id}/quota/history`: newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct QuotaHistory {
    pub(crate) project_id: String,
    pub(crate) changes: Vec<QuotaChange>,
}

/// One change of a plan.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PlanChange {
    #[schema(format = DateTime)]
    pub(crate) changed_at: String,
    pub(crate) actor: String,
    pub(crate) request_id: String,
    /// The plan before (null: it was created by this change).
    pub(crate) before: Option<meter_core::Plan>,
    pub(crate) after: meter_core::Plan,
}

/// `GET /v1/plans/{name}/history`: newest first.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct PlanHistory {
    pub(crate) name: String,
    pub(crate) changes: Vec<PlanChange>,
}

/// `GET /v1/watermark`: how far usage is final.
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct WatermarkView {
    /// Timeframes ending at or before this are final: no event for them can
    /// still be acknowledged (the late-event horizon has passed) and every
    /// event acknowledged is counted. Null until every partition has
    /// reported.
    #[schema(format = DateTime)]
    pub(crate) final_before: Option<String>,
    /// Every event acknowledged before this (less the produce timeout and a
    /// minute for clocks) is in ClickHouse.
    #[schema(format = DateTime)]
    pub(crate) loaded_through: Option<String>,
    /// How old an event ingest still accepts (`ingest.max_past_seconds`).
    pub(crate) late_event_horizon_seconds: i64,
}

/// A billing cycle (a calendar month, UTC).
#[derive(Debug, Serialize, ToSchema)]
pub(crate) struct CycleView {
    /// `YYYY-MM`.
    pub(crate) cycle: String,
    #[schema(format = DateTime)]
    pub(crate) start: String,
    #[schema(format = DateTime)]
    pub(crate) end: String,
    /// No more usage can arrive for it (see `GET /v1/watermark`).
    #[serde(rename = "final")]
    pub(crate) is_final: bool,
    /// Closed: its numbers never change again.
    pub(crate) closed: bool,
    #[schema(format = DateTime)]
    pub(crate) closed_at: Option<String>,
    /// The name of the API credential that closed it.
    pub(crate) closed_by: Option<String>,
}
