//! The fleet page: projects near or over their quota, suspended projects
//! with why and since when, a search by project id, and the fleet's usage
//! per day in the current billing cycle.

use std::fmt::Write;

use axum::extract::State;
use axum::response::{Html, IntoResponse};
use axum::Extension;
use meter_core::cycle::{rfc3339, Cycle};
use meter_core::Metric;
use serde::Deserialize;

use super::chart::{bar_chart, Bar};
use super::html::{amount, document, esc, grouped, metric_label, table_head, usage_bar, when, Section, Viewer};
use super::{project_link, PageResult};
use crate::handlers::list_projects;
use crate::model::{ProjectListParams, RangeParams};
use crate::query::Query;
use crate::App;

/// Rows per table unless asked for more (`?limit=`, at most 1,000: the
/// listing's own bound).
const ROWS: usize = 50;

#[derive(Debug, Deserialize)]
pub(crate) struct FleetParams {
    limit: Option<String>,
}

pub(crate) async fn page(
    State(app): State<App>,
    Extension(viewer): Extension<Viewer>,
    params: Result<Query<FleetParams>, crate::error::ApiError>,
) -> PageResult {
    let Query(p) = params?;
    let limit = crate::error::limit_param(p.limit.as_deref(), ROWS, 1000)?.to_string();
    let mut body = String::from(
        "<form method=\"get\" action=\"/console/projects\" role=\"search\"><label for=\"id\">Find a project</label>\
         <input id=\"id\" name=\"id\" required placeholder=\"project id\" size=\"32\"> \
         <button type=\"submit\">Open</button></form>",
    );

    let near = listing(&app, Some("80"), None, &limit).await?;
    let _ = write!(
        body,
        "<h2 id=\"near\">Near or over quota <span class=\"muted\">({} of {} at 80% or more)</span></h2>",
        near.projects.len(),
        near.total
    );
    if near.projects.is_empty() {
        body.push_str("<p class=\"muted\">No project has used 80% of a quota.</p>");
    } else {
        body.push_str("<p class=\"muted\">Each project's most used quota, most used first.</p>");
        body.push_str(&table_head(&["Project", "Plan", "State", "Metric", "Use of quota"], None));
        for r in &near.projects {
            let state = if matches!(r.state, crate::model::ProjectState::Suspended) { "suspended" } else { "active" };
            let metric = r.metric.unwrap_or(Metric::ActiveTimeSeconds);
            let _ = write!(
                body,
                "<tr><td>{}</td><td>{}</td><td class=\"state-{state}\">{state}</td><td>{}</td><td>{}</td></tr>",
                project_link(&r.project_id),
                esc(r.plan.as_deref().unwrap_or("—")),
                metric_label(metric),
                usage_bar(metric, r.usage.unwrap_or(0), r.quota)
            );
        }
        body.push_str("</tbody></table>");
        more_link(&mut body, near.projects.len(), near.total, &limit);
    }

    let suspended = listing(&app, None, Some("suspended"), &limit).await?;
    let _ = write!(body, "<h2 id=\"suspended\">Suspended <span class=\"muted\">({})</span></h2>", suspended.total);
    if suspended.projects.is_empty() {
        body.push_str("<p class=\"muted\">No project is suspended.</p>");
    } else {
        body.push_str(&table_head(&["Project", "Why", "#Usage", "#Quota", "Since"], None));
        let g = app.views.0.read().expect("views");
        for r in &suspended.projects {
            let Some(s) = g.enforcement.get(&r.project_id).and_then(|e| e.suspended.as_ref()) else { continue };
            let _ = write!(
                body,
                "<tr><td>{}</td><td>over its {} quota</td><td class=\"num\">{}</td><td class=\"num\">{}</td>\
                 <td class=\"nowrap\">{}</td></tr>",
                project_link(&r.project_id),
                metric_label(s.metric),
                esc(&amount(s.metric, s.usage)),
                esc(&amount(s.metric, s.quota)),
                when(&rfc3339(s.since_ms))
            );
        }
        drop(g);
        body.push_str("</tbody></table>");
        more_link(&mut body, suspended.projects.len(), suspended.total, &limit);
    }

    // A frame of its own: ClickHouse's answer (seconds on a large fleet late
    // in a month) never holds up the lists above.
    body.push_str(
        "<h2 id=\"usage\">Fleet usage per day, this billing cycle</h2><iframe src=\"/console/fleet/usage\" \
         title=\"Fleet usage per day, this billing cycle\" class=\"charts-frame\"></iframe>",
    );
    Ok(Html(document("Fleet", Section::Fleet, Some(&viewer), &body)).into_response())
}

/// The fleet's usage charts, the frame of the fleet page.
pub(crate) async fn usage(State(app): State<App>) -> PageResult {
    Ok(Html(super::html::frame("Fleet usage per day", &fleet_charts(&app).await)).into_response())
}

async fn listing(
    app: &App,
    min_percent: Option<&str>,
    state: Option<&str>,
    limit: &str,
) -> Result<crate::model::ProjectList, crate::error::ApiError> {
    let params = ProjectListParams {
        min_percent: min_percent.map(str::to_owned),
        state: state.map(str::to_owned),
        limit: Some(limit.to_owned()),
    };
    Ok(list_projects(State(app.clone()), Ok(Query(params))).await?.0)
}

fn more_link(body: &mut String, shown: usize, total: usize, limit: &str) {
    if shown < total {
        let next = (limit.parse::<usize>().unwrap_or(ROWS) * 4).min(1000);
        let _ = write!(
            body,
            "<p class=\"muted\">{} more not shown. <a href=\"/console?limit={next}\">Show up to {next}</a></p>",
            grouped((total - shown) as u64)
        );
    }
}

/// The fleet's daily usage from the cycle's first day to today, one chart
/// per metric (or a notice when ClickHouse does not answer).
async fn fleet_charts(app: &App) -> String {
    let now = app.clock.now_ms();
    let cycle = Cycle::containing(now);
    let range = RangeParams {
        from: Some(rfc3339(cycle.start_ms)),
        to: Some(rfc3339(now.max(cycle.start_ms + 1))),
        granularity: Some("daily".into()),
        metrics: None,
    };
    match crate::history::fleet(State(app.clone()), Ok(Query(range))).await {
        Ok(h) => charts(&h.0.consumption, true),
        Err(e) => super::html::notice("error", e.message()),
    }
}

/// One chart per metric over `frames`; `daily` labels days, else hours.
pub(crate) fn charts(frames: &[crate::model::Timeframe], daily: bool) -> String {
    let mut out = String::from("<div class=\"charts\">");
    for m in Metric::ALL {
        let bars: Vec<Bar> = frames
            .iter()
            .map(|t| Bar {
                label: if daily {
                    t.timeframe_start.get(..10).unwrap_or_default().to_owned()
                } else {
                    t.timeframe_start.get(5..16).unwrap_or_default().replace('T', " ")
                },
                value: t.get(m).unwrap_or(0),
            })
            .collect();
        out.push_str(&bar_chart(m, &bars));
    }
    out.push_str("</div>");
    out
}
