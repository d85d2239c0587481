//! The trail of quota and plan changes, newest first, from the history
//! topic the api writes in each change's transaction.

use axum::extract::{Path, State};
use axum::Json;
use meter_core::config_history::{Changed, ConfigChange};
use meter_core::cycle::rfc3339;

use crate::error::ApiError;
use crate::handlers::{project_id, Answer, PROJECT_ID};
use crate::model::{ErrorBody, PlanChange, PlanHistory, QuotaChange, QuotaHistory};
use crate::App;

/// The changes under a config key, newest first (by when they were made:
/// several api instances' changes reach the trail in any order).
fn changes(app: &App, key: &str) -> Vec<ConfigChange> {
    let g = app.views.0.read().expect("views");
    let mut v: Vec<ConfigChange> =
        g.config_history.get(key).map(|v| v.iter().rev().cloned().collect()).unwrap_or_default();
    v.sort_by_key(|c| std::cmp::Reverse(c.changed_ms));
    v
}

/// Every change of a project's plan and overrides: before, after, who and when.
#[utoipa::path(get, path = "/v1/projects/{id}/quota/history", tag = "quotas",
    params(("id" = String, Path, description = PROJECT_ID)),
    responses((status = 200, body = QuotaHistory), (status = 400, body = ErrorBody)))]
pub(crate) async fn quota_history(State(app): State<App>, Path(id): Path<String>) -> Answer<QuotaHistory> {
    project_id(&id)?;
    let changes = changes(&app, &format!("project/{id}"))
        .into_iter()
        .filter_map(|c| match c.changed {
            Changed::Project { before, after, .. } => Some(QuotaChange {
                changed_at: rfc3339(c.changed_ms),
                actor: c.actor,
                request_id: c.request_id,
                before,
                after,
            }),
            Changed::Plan { .. } => None,
        })
        .collect();
    Ok(Json(QuotaHistory { project_id: id, changes }))
}

/// Every change of a plan: before, after, who and when.
#[utoipa::path(get, path = "/v1/plans/{name}/history", tag = "quotas",
    params(("name" = String, Path, description = "Plan name.")),
    responses((status = 200, body = PlanHistory), (status = 404, body = ErrorBody)))]
pub(crate) async fn plan_history(State(app): State<App>, Path(name): Path<String>) -> Answer<PlanHistory> {
    let changes: Vec<PlanChange> = changes(&app, &format!("plan/{name}"))
        .into_iter()
        .filter_map(|c| match c.changed {
            Changed::Plan { before, after, .. } => Some(PlanChange {
                changed_at: rfc3339(c.changed_ms),
                actor: c.actor,
                request_id: c.request_id,
                before,
                after,
            }),
            Changed::Project { .. } => None,
        })
        .collect();
    if changes.is_empty() && !app.views.0.read().expect("views").config.plans.contains_key(&name) {
        return Err(ApiError::not_found(format!("no plan {name:?}")));
    }
    Ok(Json(PlanHistory { name, changes }))
}
