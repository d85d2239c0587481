//! The HTTP handlers.

use std::time::Duration;

use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::Json;
use meter_core::config_view::{ConfigKey, WebhookEndpoint};
use meter_core::cycle::{rfc3339, Cycle};
use meter_core::enforce::AlertType;
use meter_core::{Metric, Plan, ProjectId, ProjectQuotaConfig, Quota};
use meter_enforcer::{sign, WebhookJob};
use rdkafka::producer::FutureRecord;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::error::ApiError;
use crate::App;

type Body<T> = Result<Json<T>, JsonRejection>;
type Answer = Result<Json<Value>, ApiError>;

fn project_id(id: &str) -> Result<ProjectId, ApiError> {
    ProjectId::new(id).map_err(|e| ApiError::bad_request(format!("project_id: {e}")))
}

async fn produce(app: &App, topic: &str, key: &str, value: Option<&[u8]>) -> Result<(), ApiError> {
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

/// Writes a config record, then applies it locally (read-your-writes).
async fn write_config(app: &App, key: ConfigKey, value: &impl serde::Serialize) -> Result<(), ApiError> {
    let bytes = serde_json::to_vec(value).expect("config serializes");
    let k = key.encode();
    produce(app, &app.kafka.config_topic, &k, Some(&bytes)).await?;
    app.views.0.write().expect("views").config.apply(k.as_bytes(), Some(&bytes)).map_err(ApiError::bad_request)?;
    Ok(())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct PlanBody {
    #[serde(default)]
    quota: Quota,
    thresholds: Option<Vec<u8>>,
}

pub(crate) async fn put_plan(State(app): State<App>, Path(name): Path<String>, body: Body<PlanBody>) -> Answer {
    let Json(body) = body?;
    ProjectId::new(&name).map_err(|e| ApiError::bad_request(format!("plan name: {e}")))?;
    let plan = Plan {
        name: name.clone(),
        quota: body.quota,
        thresholds: body.thresholds.unwrap_or(meter_core::DEFAULT_THRESHOLDS.to_vec()),
    }
    .normalized()
    .map_err(ApiError::bad_request)?;
    write_config(&app, ConfigKey::Plan(name), &plan).await?;
    Ok(Json(json!(plan)))
}

pub(crate) async fn get_plan(State(app): State<App>, Path(name): Path<String>) -> Answer {
    let g = app.views.0.read().expect("views");
    let plan = g.config.plans.get(&name).ok_or_else(|| ApiError::not_found(format!("no plan {name:?}")))?;
    Ok(Json(json!(plan)))
}

fn known(state: &crate::views::State, id: &str) -> bool {
    state.config.projects.contains_key(id) || state.totals.contains_key(id) || state.enforcement.contains_key(id)
}

fn quota_view(state: &crate::views::State, id: &str) -> Value {
    let (quota, thresholds, plan) = state.config.effective(id);
    let overrides = state.config.projects.get(id).map(|c| c.quota).unwrap_or_default();
    json!({"project_id": id, "plan": plan, "quota": quota, "overrides": overrides, "thresholds": thresholds})
}

pub(crate) async fn put_quota(
    State(app): State<App>,
    Path(id): Path<String>,
    body: Body<ProjectQuotaConfig>,
) -> Answer {
    let Json(cfg) = body?;
    project_id(&id)?;
    if let Some(plan) = &cfg.plan {
        if !app.views.0.read().expect("views").config.plans.contains_key(plan) {
            return Err(ApiError::bad_request(format!(
                "plan: unknown plan {plan:?}; create it with PUT /v1/plans/{plan}"
            )));
        }
    }
    write_config(&app, ConfigKey::Project(id.clone()), &cfg).await?;
    Ok(Json(quota_view(&app.views.0.read().expect("views"), &id)))
}

pub(crate) async fn get_quota(State(app): State<App>, Path(id): Path<String>) -> Answer {
    project_id(&id)?;
    let g = app.views.0.read().expect("views");
    if !known(&g, &id) {
        return Err(ApiError::not_found(format!("unknown project {id:?}")));
    }
    Ok(Json(quota_view(&g, &id)))
}

/// `GET /v1/projects?min_percent=80&state=suspended&limit=100`: known
/// projects with the use of their most used quota, most used first.
pub(crate) async fn list_projects(
    State(app): State<App>,
    axum::extract::Query(p): axum::extract::Query<std::collections::HashMap<String, String>>,
) -> Answer {
    let min_percent: u64 = match p.get("min_percent") {
        None => 0,
        Some(v) => v.parse().map_err(|_| ApiError::bad_param("min_percent", format!("{v:?} is not a whole number")))?,
    };
    let state_filter = match p.get("state").map(String::as_str) {
        None => None,
        Some(s @ ("active" | "suspended")) => Some(s == "suspended"),
        Some(s) => return Err(ApiError::bad_param("state", format!("{s:?} is not one of active, suspended"))),
    };
    let limit = crate::error::limit_param(&p, 100, 1000)?;
    let now = app.clock.now_ms();
    let g = app.views.0.read().expect("views");
    let mut ids: Vec<&String> = g.config.projects.keys().chain(g.totals.keys()).chain(g.enforcement.keys()).collect();
    ids.sort();
    ids.dedup();
    let mut rows: Vec<(u128, Value)> = Vec::new();
    for id in ids {
        let suspended = g.enforcement.get(id).is_some_and(|e| e.suspended.is_some());
        if state_filter.is_some_and(|want| want != suspended) {
            continue;
        }
        let (quota, _, plan) = g.config.effective(id);
        let top = quota.highest_use(usage_values(&g, id, now));
        let pct = top.map_or(0, |t| t.3);
        if pct < min_percent {
            continue;
        }
        // Sort by the exact ratio, scaled: usage * 10^6 / quota.
        let rank = top.map_or(0, |(_, u, q, _)| u128::from(u) * 1_000_000 / u128::from(q));
        rows.push((
            rank,
            json!({
                "project_id": id, "plan": plan, "state": if suspended { "suspended" } else { "active" },
                "metric": top.map(|t| t.0), "usage": top.map(|t| t.1), "quota": top.map(|t| t.2), "percent": top.map(|t| t.3),
            }),
        ));
    }
    rows.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1["project_id"].as_str().cmp(&b.1["project_id"].as_str())));
    let total = rows.len();
    let projects: Vec<Value> = rows.into_iter().take(limit).map(|(_, v)| v).collect();
    Ok(Json(json!({"projects": projects, "total": total})))
}

/// A project's usage at `now`, in `Metric::ALL` order: the current cycle's
/// counters and the latest storage reading.
fn usage_values(state: &crate::views::State, id: &str, now: i64) -> [u64; 5] {
    let t = state.totals.get(id);
    let counters = t.map_or([0; 4], |t| t.counters_at(now).values);
    let size = t.and_then(|t| t.logical_size).map_or(0, |r| r.value);
    [counters[0], counters[1], counters[2], counters[3], size]
}

/// The same, as an object with Neon's field names.
fn usage_json(values: [u64; 5]) -> Value {
    Value::Object(Metric::ALL.into_iter().zip(values).map(|(m, v)| (m.name().to_owned(), json!(v))).collect())
}

pub(crate) async fn status(State(app): State<App>, Path(id): Path<String>) -> Answer {
    project_id(&id)?;
    let now = app.clock.now_ms();
    let g = app.views.0.read().expect("views");
    if !known(&g, &id) {
        return Err(ApiError::not_found(format!("unknown project {id:?}")));
    }
    let cycle = Cycle::containing(now);
    let usage = usage_json(usage_values(&g, &id, now));
    let (quota, _, plan) = g.config.effective(&id);
    let enf = g.enforcement.get(&id);
    let suspension = enf.and_then(|e| e.suspended.as_ref()).map(|s| {
        json!({"reason": "quota_exceeded", "metric": s.metric, "usage": s.usage, "quota": s.quota, "since": rfc3339(s.since_ms)})
    });
    let fired: Vec<Value> = enf
        .map(|e| {
            e.fired
                .iter()
                .filter(|f| f.threshold != 0)
                .map(|f| json!({"metric": f.metric, "threshold": f.threshold, "quota": f.quota}))
                .collect()
        })
        .unwrap_or_default();
    Ok(Json(json!({
        "project_id": id,
        "plan": plan,
        "consumption_period_start": rfc3339(cycle.start_ms),
        "consumption_period_end": rfc3339(cycle.end_ms),
        "usage": usage,
        "quota": quota,
        "state": if suspension.is_some() { "suspended" } else { "active" },
        "suspension": suspension,
        "thresholds_reached": fired,
    })))
}

/// The answer to CheckQuota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CheckOutcome {
    pub(crate) allowed: bool,
    /// `suspended` or `quota_exceeded` when denied.
    pub(crate) reason: Option<&'static str>,
    pub(crate) metric: Option<Metric>,
}

/// CheckQuota: may this project start a compute? Denied while it is
/// suspended, or when any metric is at or over its quota (even before the
/// enforcer has acted). Shared by the HTTP and gRPC APIs.
pub(crate) fn check_quota(app: &App, id: &str) -> Result<CheckOutcome, ApiError> {
    project_id(id)?;
    let now = app.clock.now_ms();
    let g = app.views.0.read().expect("views");
    if !known(&g, id) {
        return Err(ApiError::not_found(format!("unknown project {id:?}")));
    }
    if let Some(s) = g.enforcement.get(id).and_then(|e| e.suspended.as_ref()) {
        return Ok(CheckOutcome { allowed: false, reason: Some("suspended"), metric: Some(s.metric) });
    }
    let (quota, _, _) = g.config.effective(id);
    let values = usage_values(&g, id, now);
    let over = Metric::ALL.into_iter().zip(values).find(|(m, v)| quota.limit(*m).is_some_and(|q| *v >= q));
    Ok(match over {
        Some((m, _)) => CheckOutcome { allowed: false, reason: Some("quota_exceeded"), metric: Some(m) },
        None => CheckOutcome { allowed: true, reason: None, metric: None },
    })
}

pub(crate) async fn check(State(app): State<App>, Path(id): Path<String>) -> Answer {
    let c = check_quota(&app, &id)?;
    let mut body = json!({"project_id": id, "allowed": c.allowed});
    if let Some(r) = c.reason {
        body["reason"] = json!(r);
        body["metric"] = json!(c.metric);
    }
    Ok(Json(body))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct WebhookBody {
    url: String,
    secret: String,
    #[serde(default)]
    event_types: Vec<AlertType>,
}

fn redacted(w: &WebhookEndpoint) -> Value {
    json!({"id": w.id, "url": w.url, "secret": "whsec_…", "event_types": w.event_types})
}

pub(crate) async fn put_webhook(State(app): State<App>, Path(id): Path<String>, body: Body<WebhookBody>) -> Answer {
    let Json(b) = body?;
    ProjectId::new(&id).map_err(|e| ApiError::bad_request(format!("webhook id: {e}")))?;
    meter_runtime::check_webhook_url(&b.url, &app.webhook_targets)
        .await
        .map_err(|e| ApiError::bad_request(format!("url: {e}")))?;
    sign::check_secret(&b.secret).map_err(|e| ApiError::bad_request(format!("secret: {e}")))?;
    let w = WebhookEndpoint { id: id.clone(), url: b.url, secret: b.secret, event_types: b.event_types };
    write_config(&app, ConfigKey::Webhook(id), &w).await?;
    Ok(Json(redacted(&w)))
}

pub(crate) async fn list_webhooks(State(app): State<App>) -> Answer {
    let g = app.views.0.read().expect("views");
    Ok(Json(json!({"webhooks": g.config.webhooks.values().map(redacted).collect::<Vec<_>>()})))
}

pub(crate) async fn list_dead_letters(State(app): State<App>) -> Answer {
    let g = app.views.0.read().expect("views");
    let items: Vec<Value> = g
        .dead_letters
        .iter()
        .map(|(k, d)| {
            json!({
                "key": k, "event_id": d.job.alert.id, "type": d.job.alert.kind, "project_id": d.job.alert.project_id,
                "endpoint_id": d.endpoint_id, "attempts": d.attempts, "last_error": d.last_error, "failed_at": rfc3339(d.failed_ms),
            })
        })
        .collect();
    Ok(Json(json!({"dead_letters": items})))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayBody {
    /// Keys to replay; all when absent.
    keys: Option<Vec<String>>,
}

pub(crate) async fn replay_dead_letters(State(app): State<App>, body: Body<ReplayBody>) -> Answer {
    let Json(b) = body?;
    let chosen: Vec<(String, WebhookJob)> = {
        let g = app.views.0.read().expect("views");
        match &b.keys {
            None => g.dead_letters.iter().map(|(k, d)| (k.clone(), d.job.clone())).collect(),
            Some(keys) => keys
                .iter()
                .map(|k| {
                    g.dead_letters
                        .get(k)
                        .map(|d| (k.clone(), d.job.clone()))
                        .ok_or_else(|| ApiError::not_found(format!("keys: no dead letter {k:?}")))
                })
                .collect::<Result<_, _>>()?,
        }
    };
    for (key, job) in &chosen {
        let bytes = serde_json::to_vec(job).expect("job serializes");
        produce(&app, &app.kafka.webhooks_topic, &job.alert.project_id, Some(&bytes)).await?;
        produce(&app, &app.kafka.dead_letters_topic, key, None).await?;
        app.views.0.write().expect("views").dead_letters.remove(key);
    }
    Ok(Json(json!({"replayed": chosen.len()})))
}

pub(crate) async fn not_found() -> ApiError {
    ApiError::not_found("no such endpoint; see the README for the API")
}
