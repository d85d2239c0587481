//! Consumption history over HTTP, modelled on Neon's
//! `consumption_history`: per project, per page of projects, and for the
//! whole fleet, read from ClickHouse.

use std::collections::HashMap;

use axum::extract::{Path, Query, State};
use axum::Json;
use meter_core::cycle::rfc3339;
use meter_core::history::{HistoryError, HistoryRange};
use meter_core::ProjectId;
use meter_store::PeriodUsage;
use serde_json::{json, Map, Value};

use crate::error::{limit_param, ApiError};
use crate::App;

type Answer = Result<Json<Value>, ApiError>;
type Params = Query<HashMap<String, String>>;

/// Default and largest page of `/v1/consumption_history/projects`.
pub(crate) const DEFAULT_LIMIT: usize = 10;
pub(crate) const MAX_LIMIT: usize = 100;

impl From<HistoryError> for ApiError {
    fn from(e: HistoryError) -> Self {
        ApiError::bad_param(e.param, e.message)
    }
}

fn range(p: &HashMap<String, String>) -> Result<HistoryRange, ApiError> {
    let get = |k: &str| p.get(k).map(String::as_str);
    Ok(HistoryRange::parse(get("from"), get("to"), get("granularity"), get("metrics"))?)
}

fn store_error(e: meter_store::Error) -> ApiError {
    tracing::warn!(error = %e, "api.history_query_failed");
    ApiError::unavailable("usage history is unavailable: ClickHouse did not answer; retry later")
}

/// Every timeframe of `range`, with the usage of `rows` (one project's, in
/// time order) where there is some and zeros elsewhere.
fn timeframes(range: &HistoryRange, rows: &[&PeriodUsage]) -> Vec<Value> {
    let by_start: HashMap<i64, &PeriodUsage> = rows.iter().map(|r| (r.start_ms, *r)).collect();
    range
        .timeframes()
        .map(|(start, end)| {
            let mut o = Map::new();
            o.insert("timeframe_start".into(), json!(rfc3339(start)));
            o.insert("timeframe_end".into(), json!(rfc3339(end)));
            for m in &range.metrics {
                o.insert(m.name().into(), json!(by_start.get(&start).map_or(0, |r| r.get(*m))));
            }
            Value::Object(o)
        })
        .collect()
}

fn echo(range: &HistoryRange) -> Value {
    json!({
        "from": rfc3339(range.from_ms),
        "to": rfc3339(range.to_ms),
        "granularity": range.granularity.name(),
        "metrics": range.metrics.iter().map(|m| m.name()).collect::<Vec<_>>(),
    })
}

/// `GET /v1/projects/{id}/consumption_history`
pub(crate) async fn project(State(app): State<App>, Path(id): Path<String>, Query(p): Params) -> Answer {
    ProjectId::new(&id).map_err(|e| ApiError::bad_param("project_id", e.to_string()))?;
    let range = range(&p)?;
    let rows = app.store.history(&range, std::slice::from_ref(&id)).await.map_err(store_error)?;
    let mut body = echo(&range);
    body["project_id"] = json!(id);
    body["consumption"] = json!(timeframes(&range, &rows.iter().collect::<Vec<_>>()));
    Ok(Json(body))
}

/// `GET /v1/consumption_history/projects`: a page of projects (those with
/// usage in the range, in id order), each with its timeframes.
pub(crate) async fn projects(State(app): State<App>, Query(p): Params) -> Answer {
    let range = range(&p)?;
    let limit = limit_param(&p, DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = match p.get("cursor") {
        None => String::new(),
        Some(c) => decode_cursor(c).ok_or_else(|| ApiError::bad_param("cursor", "not a cursor this API returned"))?,
    };
    let only: Vec<String> = p
        .get("project_ids")
        .map(|s| s.split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect())
        .unwrap_or_default();
    if let Some(bad) = only.iter().find(|x| ProjectId::new(x.as_str()).is_err()) {
        return Err(ApiError::bad_param("project_ids", format!("{bad:?} is not a valid project id")));
    }
    let mut page = app.store.history_projects(&range, &after, &only, limit + 1).await.map_err(store_error)?;
    let more = page.len() > limit;
    page.truncate(limit);
    let rows =
        if page.is_empty() { Vec::new() } else { app.store.history(&range, &page).await.map_err(store_error)? };
    let projects: Vec<Value> = page
        .iter()
        .map(|id| {
            let mine: Vec<&PeriodUsage> = rows.iter().filter(|r| &r.project_id == id).collect();
            json!({"project_id": id, "consumption": timeframes(&range, &mine)})
        })
        .collect();
    let next = more.then(|| page.last().map(|l| encode_cursor(l))).flatten();
    let mut body = echo(&range);
    body["projects"] = json!(projects);
    body["pagination"] = json!({"next_cursor": next, "limit": limit});
    Ok(Json(body))
}

/// `GET /v1/consumption_history/fleet`: every project's usage summed per
/// timeframe (storage: the sum of each project's last reading).
pub(crate) async fn fleet(State(app): State<App>, Query(p): Params) -> Answer {
    let range = range(&p)?;
    let rows = app.store.fleet_history(&range).await.map_err(store_error)?;
    let mut body = echo(&range);
    body["consumption"] = json!(timeframes(&range, &rows.iter().collect::<Vec<_>>()));
    Ok(Json(body))
}

/// Cursors are opaque to clients: the hex of the last project id of a page.
fn encode_cursor(last: &str) -> String {
    last.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_cursor(c: &str) -> Option<String> {
    if !c.len().is_multiple_of(2) || c.len() > 512 {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..c.len()).step_by(2).map(|i| u8::from_str_radix(c.get(i..i + 2)?, 16).ok()).collect();
    String::from_utf8(bytes?).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        assert_eq!(decode_cursor(&encode_cursor("acme-p0001")).as_deref(), Some("acme-p0001"));
        assert_eq!(decode_cursor("zz"), None);
        assert_eq!(decode_cursor("abc"), None);
    }
}
