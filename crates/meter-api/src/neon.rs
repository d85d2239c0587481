//! The Neon-compatible surface under `/api/v2`: consumption history per
//! project and for the account, with Neon's paths, parameters, bodies and
//! error shape (`neon_model.rs`), so a client generated from Neon's OpenAPI
//! document reads it unchanged. Where Neon has something this pipeline
//! cannot know, `README.md` ("Neon's API") says what is answered instead.

use std::collections::HashMap;

use axum::extract::State;
use axum::Json;
use meter_core::cycle::{rfc3339, Cycle};
use meter_core::history::{HistoryError, HistoryRange};
use meter_core::{Metric, UnixMs};
use meter_store::PeriodUsage;

use crate::error::{limit_param, ApiError};
use crate::handlers::{Answer, Params};
use crate::history::{cursor_param, encode_cursor, project_ids_param, store_error, DEFAULT_LIMIT, MAX_LIMIT};
use crate::neon_model::{
    AccountHistory, NeonError, PageParams, Pagination, Period, ProjectPeriods, ProjectsHistory, RangeParams, Timeframe,
};
use crate::query::Query;
use crate::App;

/// Where the surface is served.
pub(crate) const PREFIX: &str = "/api/v2/";

/// `period_plan` of a project without a plan, and of the account.
const NO_PLAN: &str = "none";

/// Neon's metric names this surface answers, besides the four every
/// timeframe carries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Extra {
    logical_size_bytes: bool,
    logical_size_bytes_hour: bool,
    data_transfer_bytes: bool,
}

/// Parses Neon's `metrics` (and the deprecated `include_v1_metrics`).
fn extra_metrics(metrics: Option<&str>, include_v1: Option<&str>) -> Result<Extra, ApiError> {
    let mut extra = Extra::default();
    let v1 = match include_v1 {
        None | Some("false") => false,
        Some("true") => true,
        Some(v) => return Err(ApiError::bad_param("include_v1_metrics", format!("{v:?} is not true or false"))),
    };
    let names: Vec<&str> = match metrics.filter(|m| !m.is_empty()) {
        Some(m) => m.split(',').map(str::trim).collect(),
        None if v1 => vec!["data_storage_bytes_hour"],
        None => Vec::new(),
    };
    for name in names {
        match name {
            "active_time_seconds" | "compute_time_seconds" | "written_data_bytes" | "synthetic_storage_size_bytes" => {}
            "logical_size_bytes" => extra.logical_size_bytes = true,
            "logical_size_bytes_hour" => extra.logical_size_bytes_hour = true,
            "data_transfer_bytes" => extra.data_transfer_bytes = true,
            "data_storage_bytes_hour" => {
                return Err(ApiError::bad_param(
                    "metrics",
                    format!(
                        "{name:?} (storage with WAL, byte-hours) is not kept by this pipeline; \
                         ask for logical_size_bytes_hour"
                    ),
                ))
            }
            other => {
                return Err(ApiError::bad_param(
                    "metrics",
                    format!(
                        "unknown metric {other:?}; known: active_time_seconds, compute_time_seconds, \
                         written_data_bytes, synthetic_storage_size_bytes, logical_size_bytes, \
                         logical_size_bytes_hour, data_transfer_bytes"
                    ),
                ))
            }
        }
    }
    Ok(extra)
}

/// The range, with every metric read (the four Neon requires need all).
fn range(p: &RangeParams) -> Result<(HistoryRange, Extra), ApiError> {
    let extra = extra_metrics(p.metrics.as_deref(), p.include_v1_metrics.as_deref())?;
    let range = HistoryRange::parse(p.from.as_deref(), p.to.as_deref(), p.granularity.as_deref(), None).map_err(
        |e: HistoryError| {
            if e.too_long {
                ApiError::not_acceptable(e.to_string())
            } else {
                ApiError::from(e)
            }
        },
    )?;
    Ok((range, extra))
}

/// Every timeframe of `range`, grouped by billing cycle, with the usage of
/// `rows` (one scope's: a project's or the account's) where there is some
/// and zeros elsewhere. A cycle that has ended at `now` has its
/// `period_end`.
fn periods(
    scope: &str,
    plan: &str,
    range: &HistoryRange,
    extra: Extra,
    rows: &[&PeriodUsage],
    now: UnixMs,
) -> Vec<Period> {
    let by_start: HashMap<UnixMs, &PeriodUsage> = rows.iter().map(|r| (r.start_ms, *r)).collect();
    let mut out: Vec<(Cycle, Period)> = Vec::new();
    for (start, end) in range.timeframes() {
        let get = |m: Metric| by_start.get(&start).map_or(0, |r| r.get(m));
        let size = get(Metric::LogicalSizeBytes);
        let frame = Timeframe {
            timeframe_start: rfc3339(start),
            timeframe_end: rfc3339(end),
            active_time_seconds: get(Metric::ActiveTimeSeconds),
            compute_time_seconds: get(Metric::ComputeTimeSeconds),
            written_data_bytes: get(Metric::WrittenDataBytes),
            synthetic_storage_size_bytes: size,
            logical_size_bytes: extra.logical_size_bytes.then_some(size),
            logical_size_bytes_hour: extra
                .logical_size_bytes_hour
                .then(|| by_start.get(&start).map_or(0, |r| r.logical_size_bytes_hour)),
            data_transfer_bytes: extra.data_transfer_bytes.then(|| get(Metric::DataTransferBytes)),
        };
        let cycle = Cycle::containing(start);
        match out.last_mut() {
            Some((c, period)) if *c == cycle => period.consumption.push(frame),
            _ => out.push((
                cycle,
                Period {
                    period_id: cycle.period_id(scope),
                    period_plan: plan.to_owned(),
                    period_start: rfc3339(cycle.start_ms),
                    period_end: (cycle.end_ms <= now).then(|| rfc3339(cycle.end_ms)),
                    consumption: vec![frame],
                },
            )),
        }
    }
    out.into_iter().map(|(_, p)| p).collect()
}

/// Neon's `getConsumptionHistoryPerProject`: a page of projects (those
/// named by `project_ids`, else those with usage in the range), in id
/// order, each with its periods. Every non-empty page carries a cursor; the
/// page after the last is empty and carries none.
#[utoipa::path(get, path = "/api/v2/consumption_history/projects", tag = "neon",
    operation_id = "getConsumptionHistoryPerProject", params(RangeParams, PageParams),
    responses((status = 200, body = ProjectsHistory), (status = 400, body = NeonError),
        (status = 406, description = "More timeframes than the granularity allows.", body = NeonError),
        (status = 503, description = "ClickHouse did not answer; retry later.", body = NeonError)))]
pub(crate) async fn projects(
    State(app): State<App>,
    params: Params<RangeParams>,
    page: Params<PageParams>,
) -> Answer<ProjectsHistory> {
    let (Query(p), Query(page_params)) = (params?, page?);
    let (range, extra) = range(&p)?;
    let limit = limit_param(page_params.limit.as_deref(), DEFAULT_LIMIT, MAX_LIMIT)?;
    let after = cursor_param(page_params.cursor.as_deref())?;
    let named = project_ids_param(page_params.project_ids.as_deref())?;
    let page = if named.is_empty() {
        app.store.history_projects(&range, &after, &[], limit).await.map_err(store_error)?
    } else {
        named_page(named, &after, limit)?
    };
    let rows =
        if page.is_empty() { Vec::new() } else { app.store.history(&range, &page).await.map_err(store_error)? };
    let now = app.clock.now_ms();
    let g = app.views.0.read().expect("views");
    let projects = page
        .iter()
        .map(|id| {
            let mine: Vec<&PeriodUsage> = rows.iter().filter(|r| &r.project_id == id).collect();
            let plan = g.config.projects.get(id).and_then(|c| c.plan.clone()).unwrap_or_else(|| NO_PLAN.into());
            ProjectPeriods { project_id: id.clone(), periods: periods(id, &plan, &range, extra, &mine, now) }
        })
        .collect();
    let pagination = page.last().map(|last| Pagination { cursor: encode_cursor(last) });
    Ok(Json(ProjectsHistory { projects, pagination }))
}

/// The page of an explicit `project_ids` list: at most 100 ids, sorted,
/// those after `after`, at most `limit`.
fn named_page(mut ids: Vec<String>, after: &str, limit: usize) -> Result<Vec<String>, ApiError> {
    ids.sort();
    ids.dedup();
    if ids.len() > MAX_LIMIT {
        return Err(ApiError::bad_param("project_ids", format!("{} ids; at most {MAX_LIMIT}", ids.len())));
    }
    Ok(ids.into_iter().filter(|id| id.as_str() > after).take(limit).collect())
}

/// Neon's `getConsumptionHistoryPerAccount`: every project's usage summed
/// per timeframe (storage: the sum of each project's last reading), grouped
/// by billing cycle.
#[utoipa::path(get, path = "/api/v2/consumption_history/account", tag = "neon",
    operation_id = "getConsumptionHistoryPerAccount", params(RangeParams),
    responses((status = 200, body = AccountHistory), (status = 400, body = NeonError),
        (status = 406, description = "More timeframes than the granularity allows.", body = NeonError),
        (status = 503, description = "ClickHouse did not answer; retry later.", body = NeonError)))]
pub(crate) async fn account(State(app): State<App>, params: Params<RangeParams>) -> Answer<AccountHistory> {
    let Query(p) = params?;
    let (range, extra) = range(&p)?;
    let rows = app.store.fleet_history(&range).await.map_err(store_error)?;
    let rows: Vec<&PeriodUsage> = rows.iter().collect();
    Ok(Json(AccountHistory { periods: periods("account", NO_PLAN, &range, extra, &rows, app.clock.now_ms()) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meter_core::cycle::parse_rfc3339;

    fn t(s: &str) -> UnixMs {
        parse_rfc3339(s).unwrap()
    }

    #[test]
    fn timeframes_are_grouped_by_cycle_with_zeros_where_nothing_was_used() {
        let range =
            HistoryRange::parse(Some("2026-10-30T00:00:00Z"), Some("2026-11-02T00:00:00Z"), Some("daily"), None)
                .unwrap();
        let used = PeriodUsage {
            project_id: "p".into(),
            start_ms: t("2026-11-01T00:00:00Z"),
            values: [1, 2, 3, 4, 5],
            logical_size_bytes_hour: 6,
            adjusted: false,
        };
        let all = Extra { logical_size_bytes: true, logical_size_bytes_hour: true, data_transfer_bytes: true };
        let ps = periods("p", "pro", &range, all, &[&used], t("2026-11-15T00:00:00Z"));
        assert_eq!(ps.len(), 2);
        assert_eq!(
            (ps[0].period_start.as_str(), ps[0].period_end.as_deref()),
            ("2026-10-01T00:00:00.000Z", Some("2026-11-01T00:00:00.000Z"))
        );
        assert_eq!((ps[1].period_start.as_str(), ps[1].period_end.as_deref()), ("2026-11-01T00:00:00.000Z", None));
        assert_eq!(ps[0].consumption.len(), 2);
        assert_eq!(ps[0].consumption[1].active_time_seconds, 0);
        let nov = &ps[1].consumption[0];
        assert_eq!(
            (nov.active_time_seconds, nov.compute_time_seconds, nov.written_data_bytes, nov.data_transfer_bytes),
            (1, 2, 3, Some(4))
        );
        assert_eq!((nov.synthetic_storage_size_bytes, nov.logical_size_bytes), (5, Some(5)));
        assert_eq!(nov.logical_size_bytes_hour, Some(6));
        assert_eq!(ps[1].period_plan, "pro");
        assert_ne!(ps[0].period_id, ps[1].period_id);
        let plain = periods("p", "pro", &range, Extra::default(), &[&used], 0);
        assert_eq!(
            (plain[1].consumption[0].logical_size_bytes, plain[1].consumption[0].data_transfer_bytes),
            (None, None)
        );
    }

    #[test]
    fn neon_metric_names_are_understood_or_refused_by_name() {
        assert_eq!(extra_metrics(None, None).unwrap(), Extra::default());
        let e =
            extra_metrics(Some("active_time_seconds,logical_size_bytes,data_transfer_bytes"), Some("false")).unwrap();
        assert_eq!(e, Extra { logical_size_bytes: true, data_transfer_bytes: true, ..Extra::default() });
        assert!(extra_metrics(Some("logical_size_bytes_hour"), None).unwrap().logical_size_bytes_hour);
        for (m, v1) in [
            (Some("cpu_seconds"), None),
            (Some("data_storage_bytes_hour"), None),
            (None, Some("true")),
            (None, Some("yes")),
        ] {
            assert!(extra_metrics(m, v1).is_err(), "{m:?} {v1:?}");
        }
    }

    #[test]
    fn named_pages_are_sorted_deduplicated_and_follow_the_cursor() {
        let named = |list: &str, after: &str, limit: usize| named_page(project_ids_param(Some(list))?, after, limit);
        assert_eq!(named("c,a,b,a", "", 2).unwrap(), ["a", "b"]);
        assert_eq!(named("c,a,b", "b", 2).unwrap(), ["c"]);
        assert!(named("c", "c", 2).unwrap().is_empty());
        assert!(named("a,b d", "", 2).is_err());
        let many: Vec<String> = (0..101).map(|i| format!("p{i}")).collect();
        assert!(named(&many.join(","), "", 10).is_err());
    }
}
