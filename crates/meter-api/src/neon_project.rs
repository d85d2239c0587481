//! Neon's project object under `/api/v2/projects/{project_id}`: the
//! current cycle's consumption and `settings.quota` (read, and merged by
//! `PATCH` as Neon does: limits not sent are kept).

use axum::extract::{Path, State};
use axum::Json;
use meter_core::cycle::{rfc3339, Cycle};
use meter_core::{Metric, Patch, ProjectQuotaPatch, Quota, QuotaOverrides};

use crate::error::ApiError;
use crate::handlers::{known, patch_project, project_id, usage_values, Answer, Body};
use crate::neon_model::{NeonError, Project, ProjectResponse, ProjectUpdateRequest, ProjectUpdated, Settings};
use crate::App;

/// What a project's required fields say when only a control plane could
/// know them (README.md, "Neon's API").
const UNKNOWN_TIME: &str = "1970-01-01T00:00:00Z";

/// Neon's `ProjectQuota`: the effective limits, absent where there is none.
fn neon_quota(q: &Quota) -> QuotaOverrides {
    QuotaOverrides {
        active_time_seconds: q.limit(Metric::ActiveTimeSeconds),
        compute_time_seconds: q.limit(Metric::ComputeTimeSeconds),
        written_data_bytes: q.limit(Metric::WrittenDataBytes),
        data_transfer_bytes: q.limit(Metric::DataTransferBytes),
        logical_size_bytes: q.limit(Metric::LogicalSizeBytes),
    }
}

/// The project as Neon's `Project`, from the views at `now`.
fn project(app: &App, id: &str) -> Result<Project, ApiError> {
    let now = app.clock.now_ms();
    let g = app.views.0.read().expect("views");
    if !known(&g, id) {
        return Err(ApiError::not_found(format!("unknown project {id:?}")));
    }
    let [active, compute, written, transfer, _size] = usage_values(&g, id, now);
    let (quota, _, _) = g.config.effective(id);
    let cycle = Cycle::containing(now);
    Ok(Project {
        id: id.to_owned(),
        name: id.to_owned(),
        platform_id: "",
        region_id: "",
        provisioner: "k8s-neonvm",
        pg_version: 17,
        proxy_host: "",
        store_passwords: true,
        creation_source: "meter",
        history_retention_seconds: 0,
        created_at: UNKNOWN_TIME,
        updated_at: UNKNOWN_TIME,
        owner_id: "",
        branch_logical_size_limit: quota.logical_size_bytes >> 20,
        branch_logical_size_limit_bytes: quota.logical_size_bytes,
        active_time_seconds: active,
        compute_time_seconds: compute,
        cpu_used_sec: compute,
        written_data_bytes: written,
        data_transfer_bytes: transfer,
        data_storage_bytes_hour: 0,
        consumption_period_start: rfc3339(cycle.start_ms),
        consumption_period_end: rfc3339(cycle.end_ms),
        quota_reset_at: rfc3339(cycle.end_ms),
        settings: Settings { quota: neon_quota(&quota) },
    })
}

/// Neon's `getProject`.
#[utoipa::path(get, path = "/api/v2/projects/{project_id}", tag = "neon", operation_id = "getProject",
    params(("project_id" = String, Path, description = crate::handlers::PROJECT_ID)),
    responses((status = 200, body = ProjectResponse), (status = 400, body = NeonError), (status = 404, body = NeonError)))]
pub(crate) async fn get(State(app): State<App>, Path(id): Path<String>) -> Answer<ProjectResponse> {
    project_id(&id)?;
    Ok(Json(ProjectResponse { project: project(&app, &id)? }))
}

/// Neon's `updateProject`, for `settings.quota`: each limit sent becomes
/// the project's own (0: no limit), the others and the plan are kept.
#[utoipa::path(patch, path = "/api/v2/projects/{project_id}", tag = "neon", operation_id = "updateProject",
    params(("project_id" = String, Path, description = crate::handlers::PROJECT_ID)),
    request_body = ProjectUpdateRequest,
    responses((status = 200, body = ProjectUpdated), (status = 400, body = NeonError)))]
pub(crate) async fn patch(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Body<ProjectUpdateRequest>,
) -> Answer<ProjectUpdated> {
    let Json(req) = body?;
    project_id(&id)?;
    let sent = req.project.settings.and_then(|s| s.quota).unwrap_or_default();
    let patch = ProjectQuotaPatch { quota: Patch::Set(sent.into()), ..Default::default() };
    patch_project(&app, &id, patch).await?;
    Ok(Json(ProjectUpdated { project: project(&app, &id)?, operations: Vec::new() }))
}
