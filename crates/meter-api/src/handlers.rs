//! The HTTP handlers.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use meter_core::config_history::{Changed, ConfigChange};
use meter_core::config_view::ConfigKey;
use meter_core::cycle::{rfc3339, Cycle};
use meter_core::{Metric, Plan, ProjectId, ProjectQuotaConfig, ProjectQuotaPatch};
use rdkafka::producer::FutureRecord;

use crate::error::ApiError;
use crate::model::{
    BranchView, Check, ControlPlaneCall, DenyReason, ErrorBody, PlanBody, PlanList, ProjectList, ProjectListParams,
    ProjectQuota, ProjectRow, ProjectState, QuotaPatchBody, QuotaPut, Status, SuspensionView, ThresholdReached,
};
use crate::query::Query;
use crate::App;

pub(crate) type Body<T> = Result<Json<T>, JsonRejection>;
pub(crate) type Params<T> = Result<Query<T>, ApiError>;
pub(crate) type Answer<T> = Result<Json<T>, ApiError>;

/// How project ids are described in the document.
pub(crate) const PROJECT_ID: &str = "Project id (1-128 characters: letters, digits, '-', '_', '.', ':').";

pub(crate) fn project_id(id: &str) -> Result<ProjectId, ApiError> {
    ProjectId::new(id).map_err(|e| ApiError::bad_request(format!("project_id: {e}")))
}

pub(crate) async fn produce(app: &App, topic: &str, key: &str, value: Option<&[u8]>) -> Result<(), ApiError> {
    let mut record = FutureRecord::<str, [u8]>::to(topic).key(key);
    if let Some(v) = value {
        record = record.payload(v);
    }
    app.producer
        .send(record, Duration::from_secs(10))
        .await
        .map(|_| ())
        .map_err(|(e, _)| ApiError::unavailable(format!("kafka did not confirm the write: {e}; retry")))
}

/// Writes a config record (and, for quota and plan changes, its entry in
/// the trail, in the same Kafka transaction), then applies it locally
/// (read-your-writes).
pub(crate) async fn write_config(
    app: &App,
    key: ConfigKey,
    value: &impl serde::Serialize,
    change: Option<Changed>,
) -> Result<(), ApiError> {
    let bytes = serde_json::to_vec(value).expect("config serializes");
    store_config(app, key, Some(bytes), change).await
}

/// Writes a config record, `None` a tombstone (deletes the key), through
/// the api's one config writer; then applies it locally.
pub(crate) async fn store_config(
    app: &App,
    key: ConfigKey,
    value: Option<Vec<u8>>,
    change: Option<Changed>,
) -> Result<(), ApiError> {
    let k = key.encode();
    let change = change.map(|changed| ConfigChange {
        changed,
        actor: crate::auth::actor(),
        request_id: crate::request_id::current().map(|c| c.id).unwrap_or_default(),
        changed_ms: app.clock.now_ms(),
    });
    let trail = change.as_ref().map(|c| (c.key(), serde_json::to_vec(c).expect("a change serializes")));
    let (writer, key, v) = (app.config_writer.clone(), k.clone(), value.clone());
    tokio::task::spawn_blocking(move || writer.write(&key, v.as_deref(), trail))
        .await
        .map_err(|e| ApiError::unavailable(format!("the config write did not finish: {e}; retry")))?
        .map_err(|e| ApiError::unavailable(format!("kafka did not commit the write: {e}; retry")))?;
    let mut g = app.views.0.write().expect("views");
    g.config.apply(k.as_bytes(), value.as_deref()).map_err(ApiError::bad_request)?;
    if let Some(c) = change {
        g.record_change(c);
    }
    Ok(())
}

/// Creates or replaces a plan: a named quota with its alert thresholds.
#[utoipa::path(put, path = "/v1/plans/{name}", tag = "quotas",
    params(("name" = String, Path, description = "Plan name (project-id rules).")),
    request_body = PlanBody,
    responses((status = 200, description = "The plan as stored.", body = Plan), (status = 400, body = ErrorBody)))]
pub(crate) async fn put_plan(State(app): State<App>, Path(name): Path<String>, body: Body<PlanBody>) -> Answer<Plan> {
    let Json(body) = body?;
    ProjectId::new(&name).map_err(|e| ApiError::bad_request(format!("plan name: {e}")))?;
    let _serial = app.config_writes.lock().await;
    let plan = Plan {
        name: name.clone(),
        quota: body.quota,
        thresholds: body.thresholds.unwrap_or(meter_core::DEFAULT_THRESHOLDS.to_vec()),
    }
    .normalized()
    .map_err(ApiError::bad_request)?;
    let before = app.views.0.read().expect("views").config.plans.get(&name).cloned();
    let change = Changed::Plan { name: name.clone(), before, after: plan.clone() };
    write_config(&app, ConfigKey::Plan(name), &plan, Some(change)).await?;
    Ok(Json(plan))
}

/// A plan.
#[utoipa::path(get, path = "/v1/plans/{name}", tag = "quotas",
    params(("name" = String, Path, description = "Plan name.")),
    responses((status = 200, body = Plan), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_plan(State(app): State<App>, Path(name): Path<String>) -> Answer<Plan> {
    let g = app.views.0.read().expect("views");
    let plan = g.config.plans.get(&name).ok_or_else(|| ApiError::not_found(format!("no plan {name:?}")))?;
    Ok(Json(plan.clone()))
}

/// Every plan, by name.
#[utoipa::path(get, path = "/v1/plans", tag = "quotas", responses((status = 200, body = PlanList)))]
pub(crate) async fn list_plans(State(app): State<App>) -> Answer<PlanList> {
    let mut plans: Vec<Plan> = app.views.0.read().expect("views").config.plans.values().cloned().collect();
    plans.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(Json(PlanList { plans }))
}

pub(crate) fn known(state: &crate::views::State, id: &str) -> bool {
    state.config.projects.contains_key(id) || state.totals.contains_key(id) || state.enforcement.contains_key(id)
}

fn quota_view(state: &crate::views::State, id: &str) -> ProjectQuota {
    let (quota, thresholds, plan) = state.config.effective(id);
    let overrides = state.config.projects.get(id).map(|c| c.quota).unwrap_or_default();
    ProjectQuota { project_id: id.to_owned(), plan, quota, overrides, thresholds }
}

/// Sets a project's plan and overrides (replacing both; `plan` must be
/// sent, `null` for none).
#[utoipa::path(put, path = "/v1/projects/{id}/quota", tag = "quotas",
    params(("id" = String, Path, description = PROJECT_ID)),
    request_body = QuotaPut,
    responses((status = 200, body = ProjectQuota), (status = 400, body = ErrorBody)))]
pub(crate) async fn put_quota(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Body<QuotaPut>,
) -> Answer<ProjectQuota> {
    let Json(put) = body?;
    project_id(&id)?;
    let _serial = app.config_writes.lock().await;
    write_quota(&app, &id, &ProjectQuotaConfig { plan: put.plan, quota: put.quota }).await?;
    Ok(Json(quota_view(&app.views.0.read().expect("views"), &id)))
}

/// Changes a project's plan or single overrides, keeping what the body does
/// not name (JSON merge patch, RFC 7396: `null` drops a value, so the plan's
/// limit applies again).
#[utoipa::path(patch, path = "/v1/projects/{id}/quota", tag = "quotas",
    params(("id" = String, Path, description = PROJECT_ID)),
    request_body(content = QuotaPatchBody, content_type = "application/merge-patch+json"),
    responses((status = 200, body = ProjectQuota), (status = 400, body = ErrorBody)))]
pub(crate) async fn patch_quota(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Body<ProjectQuotaPatch>,
) -> Answer<ProjectQuota> {
    let Json(patch) = body?;
    project_id(&id)?;
    patch_project(&app, &id, patch).await?;
    Ok(Json(quota_view(&app.views.0.read().expect("views"), &id)))
}

/// Applies `patch` to a project's stored configuration, one change at a
/// time per instance (so concurrent patches cannot lose one another).
pub(crate) async fn patch_project(app: &App, id: &str, patch: ProjectQuotaPatch) -> Result<(), ApiError> {
    let _serial = app.config_writes.lock().await;
    let current = app.views.0.read().expect("views").config.projects.get(id).cloned().unwrap_or_default();
    write_quota(app, id, &patch.apply(current)).await
}

/// Writes a project's configuration once its plan is known to exist.
async fn write_quota(app: &App, id: &str, cfg: &ProjectQuotaConfig) -> Result<(), ApiError> {
    if let Some(plan) = &cfg.plan {
        if !app.views.0.read().expect("views").config.plans.contains_key(plan) {
            return Err(ApiError::bad_request(format!(
                "plan: unknown plan {plan:?}; create it with PUT /v1/plans/{plan}"
            )));
        }
    }
    let before = app.views.0.read().expect("views").config.projects.get(id).cloned();
    let change = Changed::Project { project_id: id.to_owned(), before, after: cfg.clone() };
    write_config(app, ConfigKey::Project(id.to_owned()), cfg, Some(change)).await
}

/// A project's plan, overrides and effective quota.
#[utoipa::path(get, path = "/v1/projects/{id}/quota", tag = "quotas",
    params(("id" = String, Path, description = PROJECT_ID)),
    responses((status = 200, body = ProjectQuota), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn get_quota(State(app): State<App>, Path(id): Path<String>) -> Answer<ProjectQuota> {
    project_id(&id)?;
    let g = app.views.0.read().expect("views");
    if !known(&g, &id) {
        return Err(ApiError::not_found(format!("unknown project {id:?}")));
    }
    Ok(Json(quota_view(&g, &id)))
}

/// Known projects with the use of their most used quota, most used first.
#[utoipa::path(get, path = "/v1/projects", tag = "quotas", params(ProjectListParams),
    responses((status = 200, body = ProjectList), (status = 400, body = ErrorBody)))]
pub(crate) async fn list_projects(State(app): State<App>, params: Params<ProjectListParams>) -> Answer<ProjectList> {
    let Query(p) = params?;
    let min_percent: u64 = match &p.min_percent {
        None => 0,
        Some(v) => v.parse().map_err(|_| ApiError::bad_param("min_percent", format!("{v:?} is not a whole number")))?,
    };
    let state_filter = match p.state.as_deref() {
        None => None,
        Some(s @ ("active" | "suspended")) => Some(s == "suspended"),
        Some(s) => return Err(ApiError::bad_param("state", format!("{s:?} is not one of active, suspended"))),
    };
    let limit = crate::error::limit_param(p.limit.as_deref(), 100, 1000)?;
    let now = app.clock.now_ms();
    let g = app.views.0.read().expect("views");
    // Every known project once, without sorting the fleet: those with a
    // configuration, then those only with totals, then only enforcement.
    // Suspended projects all have an enforcement record: only those are read.
    let all: Box<dyn Iterator<Item = &String>> = if state_filter == Some(true) {
        Box::new(g.enforcement.iter().filter(|(_, e)| e.suspended.is_some()).map(|(k, _)| k))
    } else {
        Box::new(
            g.config.projects.keys().chain(g.totals.keys().filter(|k| !g.config.projects.contains_key(*k))).chain(
                g.enforcement.keys().filter(|k| !g.config.projects.contains_key(*k) && !g.totals.contains_key(*k)),
            ),
        )
    };
    let cycle_start = meter_core::Cycle::containing(now).start_ms;
    // (rank, id, suspended, top): the rank is the exact ratio, scaled
    // (usage * 10^6 / quota).
    let mut rows = Vec::new();
    for id in all {
        let suspended = g.enforcement.get(id).is_some_and(|e| e.suspended.is_some());
        if state_filter.is_some_and(|want| want != suspended) {
            continue;
        }
        let (quota, _) = g.config.quota_of(id);
        let top = quota.highest_use(quota_values(&g, id, cycle_start));
        if top.map_or(0, |t| t.3) < min_percent {
            continue;
        }
        let rank = top.map_or(0, |(_, u, q, _)| u128::from(u) * 1_000_000 / u128::from(q));
        rows.push((rank, id, suspended, top));
    }
    let total = rows.len();
    let order = |a: &(u128, &String, bool, _), b: &(u128, &String, bool, _)| b.0.cmp(&a.0).then_with(|| a.1.cmp(b.1));
    if rows.len() > limit {
        rows.select_nth_unstable_by(limit, order);
        rows.truncate(limit);
    }
    rows.sort_unstable_by(order);
    let projects = rows
        .into_iter()
        .map(|(_, id, suspended, top)| ProjectRow {
            project_id: id.clone(),
            plan: g.config.quota_of(id).1.map(str::to_owned),
            state: ProjectState::of(suspended),
            metric: top.map(|t| t.0),
            usage: top.map(|t| t.1),
            quota: top.map(|t| t.2),
            percent: top.map(|t| t.3),
        })
        .collect();
    Ok(Json(ProjectList { projects, total }))
}

/// A project's usage at `now`, in `Metric::ALL` order: the current cycle's
/// counters and its storage (the sum of its branches' latest readings).
pub(crate) fn usage_values(state: &crate::views::State, id: &str, now: i64) -> [u64; 5] {
    let t = state.totals.get(id);
    let c = t.map_or([0; 4], |t| t.counters_at(now).values);
    [c[0], c[1], c[2], c[3], t.map_or(0, |t| t.storage_bytes())]
}

/// What a project's quotas are judged on in the cycle starting at
/// `cycle_start`, in `Metric::ALL` order: the counters, and its largest
/// branch (the storage quota applies to each).
fn quota_values(state: &crate::views::State, id: &str, cycle_start: i64) -> [u64; 5] {
    let Some(t) = state.totals.get(id) else { return [0; 5] };
    let c = t.cycles.get(&cycle_start).map_or([0; 4], |c| c.values);
    [c[0], c[1], c[2], c[3], t.largest_branch_bytes()]
}

/// A project's usage, quota and state in its current billing cycle.
#[utoipa::path(get, path = "/v1/projects/{id}/status", tag = "quotas",
    params(("id" = String, Path, description = PROJECT_ID)),
    responses((status = 200, body = Status), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn status(State(app): State<App>, Path(id): Path<String>) -> Answer<Status> {
    project_id(&id)?;
    let now = app.clock.now_ms();
    let g = app.views.0.read().expect("views");
    if !known(&g, &id) {
        return Err(ApiError::not_found(format!("unknown project {id:?}")));
    }
    let cycle = Cycle::containing(now);
    let usage = usage_values(&g, &id, now).into();
    let (quota, _, plan) = g.config.effective(&id);
    let enf = g.enforcement.get(&id);
    let suspension = enf.and_then(|e| e.suspended.as_ref()).map(|s| SuspensionView {
        reason: DenyReason::QuotaExceeded,
        metric: s.metric,
        usage: s.usage,
        quota: s.quota,
        since: rfc3339(s.since_ms),
    });
    let thresholds_reached = enf
        .map(|e| {
            e.fired
                .iter()
                .filter(|f| f.threshold != 0)
                .map(|f| ThresholdReached {
                    metric: f.metric,
                    branch_id: f.branch.clone(),
                    threshold: f.threshold,
                    quota: f.quota,
                })
                .collect()
        })
        .unwrap_or_default();
    let branches = branch_views(&g, &id);
    let control_plane = g.calls.get(&id).map(|c| ControlPlaneCall {
        kind: c.kind.name().into(),
        branch_id: c.branch_id.clone(),
        idempotency_key: c.idempotency_key.clone(),
        outcome: if c.outcome == meter_enforcer::CallOutcome::Ok { "ok" } else { "failed" }.into(),
        status: c.status,
        error: c.error.clone(),
        attempts: c.attempts,
        at: rfc3339(c.at_ms),
    });
    Ok(Json(Status {
        project_id: id,
        plan,
        consumption_period_start: rfc3339(cycle.start_ms),
        consumption_period_end: rfc3339(cycle.end_ms),
        usage,
        quota,
        state: ProjectState::of(suspension.is_some()),
        suspension,
        branches,
        thresholds_reached,
        control_plane,
    }))
}

/// Each branch's latest storage reading and whether its writes are blocked.
fn branch_views(g: &crate::views::State, id: &str) -> Vec<BranchView> {
    let blocked = g.enforcement.get(id).map_or(&[][..], |e| e.blocked.as_slice());
    let Some(t) = g.totals.get(id) else { return Vec::new() };
    t.branches
        .iter()
        .filter(|(b, _)| b.as_str() != meter_core::aggregate::LEGACY_BRANCH)
        .map(|(b, r)| {
            let block = blocked.iter().find(|x| x.branch == *b);
            BranchView {
                branch_id: b.clone(),
                logical_size_bytes: r.value,
                reading_at: rfc3339(r.time_ms),
                writes_blocked: block.is_some(),
                blocked_since: block.map(|x| rfc3339(x.since_ms)),
            }
        })
        .collect()
}

/// The answer to CheckQuota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckOutcome {
    pub(crate) allowed: bool,
    /// Present when denied.
    pub(crate) reason: Option<DenyReason>,
    pub(crate) metric: Option<Metric>,
}

/// CheckQuota: may this project start a compute? Denied while it is
/// suspended, or when any counter is at or over its quota (even before the
/// enforcer has acted). Storage is not a reason: a branch over the storage
/// quota has its writes blocked, and computes still start (as in Neon).
/// Shared by the HTTP and gRPC APIs.
pub(crate) fn check_quota(app: &App, id: &str) -> Result<CheckOutcome, ApiError> {
    project_id(id)?;
    let now = app.clock.now_ms();
    let g = app.views.0.read().expect("views");
    if !known(&g, id) {
        return Err(ApiError::not_found(format!("unknown project {id:?}")));
    }
    if let Some(s) = g.enforcement.get(id).and_then(|e| e.suspended.as_ref()) {
        return Ok(CheckOutcome { allowed: false, reason: Some(DenyReason::Suspended), metric: Some(s.metric) });
    }
    let (quota, _, _) = g.config.effective(id);
    let values = usage_values(&g, id, now);
    let over = Metric::COUNTERS.into_iter().zip(values).find(|(m, v)| quota.limit(*m).is_some_and(|q| *v >= q));
    Ok(match over {
        Some((m, _)) => CheckOutcome { allowed: false, reason: Some(DenyReason::QuotaExceeded), metric: Some(m) },
        None => CheckOutcome { allowed: true, reason: None, metric: None },
    })
}

/// CheckQuota: may this project start a compute? Denied while it is
/// suspended, or when any counter is at or over its quota (storage blocks a
/// branch's writes, not computes).
#[utoipa::path(get, path = "/v1/projects/{id}/check", tag = "quotas",
    params(("id" = String, Path, description = PROJECT_ID)),
    responses((status = 200, body = Check), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(crate) async fn check(State(app): State<App>, Path(id): Path<String>) -> Answer<Check> {
    let c = check_quota(&app, &id)?;
    Ok(Json(Check { project_id: id, allowed: c.allowed, reason: c.reason, metric: c.metric }))
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see the README for the API")
}

/// A path served, with a method it is not served with.
pub(crate) async fn method_not_allowed(method: axum::http::Method) -> ApiError {
    ApiError::method_not_allowed(format!("{method} is not served on this path; see the README for the API"))
}
