//! Consumption history over HTTP, modelled on Neon's
//! `consumption_history`: per project, per page of projects, and for the
//! whole fleet, read from ClickHouse.

use std::collections::HashMap;

use axum::extract::{Path, State};
use axum::Json;
use meter_core::cycle::rfc3339;
use meter_core::history::{HistoryError, HistoryRange};
use meter_core::ProjectId;
use meter_store::PeriodUsage;

use crate::error::{limit_param, ApiError};
use crate::handlers::{Answer, Params, PROJECT_ID};
use crate::model::{
    ErrorBody, FleetHistory, PageParams, Pagination, ProjectConsumption, ProjectHistory, ProjectsHistory, RangeEcho,
    RangeParams, Timeframe,
};
use crate::query::Query;
use crate::App;

/// Default and largest page of `/v1/consumption_history/projects`.
pub(crate) const DEFAULT_LIMIT: usize = 10;
pub(crate) const MAX_LIMIT: usize = 100;

impl From<HistoryError> for ApiError {
    fn from(e: HistoryError) -> Self {
        ApiError::bad_param(e.param, e.message)
    }
}

fn range(p: &RangeParams) -> Result<HistoryRange, ApiError> {
    Ok(HistoryRange::parse(p.from.as_deref(), p.to.as_deref(), p.granularity.as_deref(), p.metrics.as_deref())?)
}

pub(crate) fn store_error(e: meter_store::Error) -> ApiError {
    tracing::warn!(error = %e, "api.history_query_failed");
    ApiError::unavailable("usage history is unavailable: ClickHouse did not answer; retry later")
}

/// Every timeframe of `range`, with the usage of `rows` (one project's, in
/// time order) where there is some and zeros elsewhere.
fn timeframes(range: &HistoryRange, rows: &[&PeriodUsage], final_before: Option<i64>) -> Vec<Timeframe> {
    let by_start: HashMap<i64, &PeriodUsage> = rows.iter().map(|r| (r.start_ms, *r)).collect();
    range
        .timeframes()
        .map(|(start, end)| {
            let mut t =
                Timeframe { timeframe_start: rfc3339(start), timeframe_end: rfc3339(end), ..Timeframe::default() };
            let row = by_start.get(&start);
            for m in &range.metrics {
                t.set(*m, row.map_or(0, |r| r.get(*m)));
            }
            if range.byte_hours {
                t.logical_size_bytes_hour = Some(row.map_or(0, |r| r.logical_size_bytes_hour));
            }
            t.adjusted = row.is_some_and(|r| r.adjusted);
            t.is_final = final_before.is_some_and(|f| end <= f);
            t
        })
        .collect()
}

async fn final_before(app: &App) -> Option<i64> {
    app.watermark.final_before(app.watermark.loaded(app).await)
}

fn echo(range: &HistoryRange, final_before: Option<i64>) -> RangeEcho {
    RangeEcho {
        final_before: final_before.map(rfc3339),
        from: rfc3339(range.from_ms),
        to: rfc3339(range.to_ms),
        granularity: range.granularity,
        metrics: range
            .metrics
            .iter()
            .map(|m| m.name())
            .chain(range.byte_hours.then_some(meter_core::history::BYTE_HOURS))
            .map(str::to_owned)
            .collect(),
    }
}

/// One project's usage per timeframe.
#[utoipa::path(get, path = "/v1/projects/{id}/consumption_history", tag = "history",
    params(("id" = String, Path, description = PROJECT_ID), RangeParams),
    responses((status = 200, body = ProjectHistory), (status = 400, body = ErrorBody),
        (status = 503, description = "ClickHouse did not answer; retry later.", body = ErrorBody)))]
pub(crate) async fn project(
    State(app): State<App>,
    Path(id): Path<String>,
    params: Params<RangeParams>,
) -> Answer<ProjectHistory> {
    let Query(p) = params?;
    ProjectId::new(&id).map_err(|e| ApiError::bad_param("project_id", e.to_string()))?;
    let range = range(&p)?;
    let rows = app.store.history(&range, std::slice::from_ref(&id)).await.map_err(store_error)?;
    let f = final_before(&app).await;
    let consumption = timeframes(&range, &rows.iter().collect::<Vec<_>>(), f);
    Ok(Json(ProjectHistory { range: echo(&range, f), project_id: id, consumption }))
}

/// A page of projects (those with usage in the range, in id order), each
/// with its usage per timeframe.
#[utoipa::path(get, path = "/v1/consumption_history/projects", tag = "history",
    params(RangeParams, PageParams),
    responses((status = 200, body = ProjectsHistory), (status = 400, body = ErrorBody),
        (status = 503, description = "ClickHouse did not answer; retry later.", body = ErrorBody)))]
pub(crate) async fn projects(
    State(app): State<App>,
    params: Params<RangeParams>,
    page: Params<PageParams>,
) -> Answer<ProjectsHistory> {
    let (Query(p), Query(page_params)) = (params?, page?);
    let range = range(&p)?;
    let limit = limit_param(page_params.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = cursor_param(page_params.cursor.as_deref())?;
    let only = project_ids_param(page_params.project_ids.as_deref())?;
    let mut page = app.store.history_projects(&range, &after, &only, limit + 1).await.map_err(store_error)?;
    let more = page.len() > limit;
    page.truncate(limit);
    let rows =
        if page.is_empty() { Vec::new() } else { app.store.history(&range, &page).await.map_err(store_error)? };
    let f = final_before(&app).await;
    let projects = page
        .iter()
        .map(|id| {
            let mine: Vec<&PeriodUsage> = rows.iter().filter(|r| &r.project_id == id).collect();
            ProjectConsumption { project_id: id.clone(), consumption: timeframes(&range, &mine, f) }
        })
        .collect();
    let next_cursor = more.then(|| page.last().map(|l| encode_cursor(l))).flatten();
    Ok(Json(ProjectsHistory { range: echo(&range, f), projects, pagination: Pagination { next_cursor, limit } }))
}

/// Every project's usage summed per timeframe (storage: the sum of each
/// project's last reading).
#[utoipa::path(get, path = "/v1/consumption_history/fleet", tag = "history",
    params(RangeParams),
    responses((status = 200, body = FleetHistory), (status = 400, body = ErrorBody),
        (status = 503, description = "ClickHouse did not answer; retry later.", body = ErrorBody)))]
pub(crate) async fn fleet(State(app): State<App>, params: Params<RangeParams>) -> Answer<FleetHistory> {
    let Query(p) = params?;
    let range = range(&p)?;
    let rows = app.store.fleet_history(&range).await.map_err(store_error)?;
    let f = final_before(&app).await;
    let consumption = timeframes(&range, &rows.iter().collect::<Vec<_>>(), f);
    Ok(Json(FleetHistory { range: echo(&range, f), consumption }))
}

/// The `cursor` parameter: the last project id of the previous page, or
/// empty for the first page.
pub(crate) fn cursor_param(cursor: Option<&str>) -> Result<String, ApiError> {
    match cursor {
        None => Ok(String::new()),
        Some(c) => decode_cursor(c).ok_or_else(|| ApiError::bad_param("cursor", "not a cursor this API returned")),
    }
}

/// The `project_ids` parameter (already joined by commas, `crate::query`):
/// the ids, each valid; empty when absent.
pub(crate) fn project_ids_param(list: Option<&str>) -> Result<Vec<String>, ApiError> {
    let ids: Vec<String> =
        list.unwrap_or_default().split(',').map(|x| x.trim().to_owned()).filter(|x| !x.is_empty()).collect();
    if let Some(bad) = ids.iter().find(|x| ProjectId::new(x.as_str()).is_err()) {
        return Err(ApiError::bad_param("project_ids", format!("{bad:?} is not a valid project id")));
    }
    Ok(ids)
}

/// Cursors are opaque to clients: the hex of the last project id of a page.
pub(crate) fn encode_cursor(last: &str) -> String {
    hex(last)
}

pub(crate) fn decode_cursor(c: &str) -> Option<String> {
    unhex(c, 512)
}

/// `s`'s bytes in hex (cursors, the console's cookie: opaque and safe in a
/// URL or a cookie whatever `s` holds).
pub(crate) fn hex(s: &str) -> String {
    s.bytes().map(|b| format!("{b:02x}")).collect()
}

/// The text `hex` made, if `h` is one of at most `max` hex digits.
pub(crate) fn unhex(h: &str, max: usize) -> Option<String> {
    if !h.len().is_multiple_of(2) || h.len() > max {
        return None;
    }
    let bytes: Option<Vec<u8>> =
        (0..h.len()).step_by(2).map(|i| u8::from_str_radix(h.get(i..i + 2)?, 16).ok()).collect();
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
