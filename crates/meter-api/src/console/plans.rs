//! Plans: the list, one plan's quotas and alert thresholds, and editing
//! them (or creating a plan) with a confirmation step.

use std::fmt::Write;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse};
use axum::{Extension, Json};
use meter_core::{Metric, Plan, Quota};
use serde::Deserialize;

use super::html::{document, esc, grouped, limit_text, metric_label, table_head, url_part, Section, Viewer};
use super::project::unit;
use super::{done_notice, parse_amount, see_other, ConsoleError, Form, PageResult};
use crate::handlers::put_plan;
use crate::model::{PlanBody, PlanList};
use crate::query::Query;
use crate::App;

pub(crate) async fn list(State(app): State<App>, Extension(viewer): Extension<Viewer>) -> PageResult {
    let Json(PlanList { plans }) = crate::handlers::list_plans(State(app.clone())).await?;
    let counts = {
        let g = app.views.0.read().expect("views");
        let mut counts = std::collections::HashMap::<String, usize>::new();
        for c in g.config.projects.values() {
            if let Some(p) = &c.plan {
                *counts.entry(p.clone()).or_default() += 1;
            }
        }
        counts
    };
    let mut body = String::new();
    if plans.is_empty() {
        body.push_str("<p class=\"muted\">No plan yet.</p>");
    } else {
        body.push_str("<table><thead><tr><th scope=\"col\">Plan</th><th scope=\"col\" class=\"num\">Projects</th>");
        for m in Metric::ALL {
            let _ = write!(
                body,
                "<th scope=\"col\" class=\"num\">{} <span class=\"hint\">({})</span></th>",
                metric_label(m),
                unit(m)
            );
        }
        body.push_str("<th scope=\"col\">Alert thresholds</th></tr></thead><tbody>");
        for p in &plans {
            let _ = write!(
                body,
                "<tr><th scope=\"row\"><a href=\"/console/plans/{}\">{}</a></th><td class=\"num\">{}</td>",
                url_part(&p.name),
                esc(&p.name),
                grouped(counts.get(&p.name).copied().unwrap_or(0) as u64)
            );
            for m in Metric::ALL {
                let _ = write!(body, "<td class=\"num\">{}</td>", limit_text(&p.quota, m));
            }
            let _ = write!(body, "<td>{}</td></tr>", thresholds_text(&p.thresholds));
        }
        body.push_str("</tbody></table>");
    }
    if viewer.manage {
        body.push_str(
            "<h2>New plan</h2><form method=\"get\" action=\"/console/plans/new\"><label for=\"name\">Name \
             <span class=\"hint\">(opens an empty plan of that name to fill in)</span></label>\
             <input id=\"name\" name=\"name\" required size=\"24\"> <button type=\"submit\">Create</button></form>",
        );
    }
    Ok(Html(document("Plans", Section::Plans, Some(&viewer), &body)).into_response())
}

fn thresholds_text(t: &[u8]) -> String {
    t.iter().map(|x| format!("{x}%")).collect::<Vec<_>>().join(", ")
}

#[derive(Debug, Deserialize)]
pub(crate) struct PlanParams {
    done: Option<String>,
    /// `/console/plans/new?name=x`: the plan to create.
    name: Option<String>,
}

pub(crate) async fn page(
    State(app): State<App>,
    Extension(viewer): Extension<Viewer>,
    Path(name): Path<String>,
    params: Result<Query<PlanParams>, crate::error::ApiError>,
) -> PageResult {
    let Query(p) = params?;
    let name = match (name.as_str(), &p.name) {
        ("new", Some(n)) => n.trim().to_owned(),
        _ => name,
    };
    let found = app.views.0.read().expect("views").config.plans.get(&name).cloned();
    let mut body = done_notice(p.done.as_deref());
    let plan = match found {
        Some(plan) => plan,
        None if viewer.manage => {
            meter_core::ProjectId::new(&name)
                .map_err(|e| ConsoleError::bad_input(format!("plan name: {e}")).with_viewer(&viewer))?;
            body.push_str("<p>This plan does not exist yet: fill it in to create it.</p>");
            Plan { name: name.clone(), quota: Quota::default(), thresholds: meter_core::DEFAULT_THRESHOLDS.to_vec() }
        }
        None => {
            return Err(
                ConsoleError::new(axum::http::StatusCode::NOT_FOUND, format!("no plan {name:?}")).with_viewer(&viewer)
            )
        }
    };
    body.push_str(&table_head(&["Metric", "#Quota"], None));
    for m in Metric::ALL {
        let _ = write!(
            body,
            "<tr><th scope=\"row\">{}</th><td class=\"num\">{}</td></tr>",
            metric_label(m),
            limit_text(&plan.quota, m)
        );
    }
    let _ = write!(body, "</tbody></table><p>Alert thresholds: {}</p>", thresholds_text(&plan.thresholds));
    if viewer.manage {
        let _ = write!(body, "<h2>Edit</h2><form method=\"post\" action=\"/console/plans/{}\">", url_part(&plan.name));
        for m in Metric::ALL {
            let v = plan.quota.limit(m).map(|v| v.to_string()).unwrap_or_default();
            let _ = write!(
                body,
                "<label for=\"q_{n}\">{} <span class=\"hint\">({}; empty or 0: unlimited)</span></label>\
                 <input id=\"q_{n}\" name=\"q_{n}\" inputmode=\"numeric\" value=\"{v}\" size=\"24\">",
                metric_label(m),
                unit(m),
                n = m.name()
            );
        }
        let _ = write!(
            body,
            "<label for=\"thresholds\">Alert thresholds <span class=\"hint\">(percents of each quota, comma-separated, 1-100)</span></label>\
             <input id=\"thresholds\" name=\"thresholds\" value=\"{}\" size=\"24\">\
             <p><button type=\"submit\" class=\"primary\">Review change</button></p></form>",
            plan.thresholds.iter().map(u8::to_string).collect::<Vec<_>>().join(",")
        );
    }
    Ok(Html(document(&format!("Plan {}", plan.name), Section::Plans, Some(&viewer), &body)).into_response())
}

/// The plan form posted: a confirmation page, then (`confirm=yes`) the plan
/// written as `PUT /v1/plans/{name}` does.
pub(crate) async fn edit(
    State(app): State<App>,
    Extension(viewer): Extension<Viewer>,
    Path(name): Path<String>,
    body: Bytes,
) -> PageResult {
    let form = Form::parse(&body);
    let mut quota = Quota::default();
    for m in Metric::ALL {
        let field = format!("q_{}", m.name());
        quota.set(m, parse_amount(&field, form.get(&field).unwrap_or_default())?.unwrap_or(0));
    }
    let text = form.get("thresholds").unwrap_or_default();
    let thresholds: Vec<u8> = text
        .split(',')
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .map(|t| t.trim_end_matches('%').parse::<u8>())
        .collect::<Result<_, _>>()
        .map_err(|_| ConsoleError::bad_input(format!("thresholds: {text:?} is not a list of percents 1-100")))?;
    let checked = Plan { name: name.clone(), quota, thresholds: thresholds.clone() }
        .normalized()
        .map_err(|e| ConsoleError::bad_input(format!("thresholds: {e}")).with_viewer(&viewer))?;
    if form.get("confirm") == Some("yes") {
        let _stored = put_plan(
            State(app.clone()),
            Path(name.clone()),
            Ok(Json(PlanBody { quota, thresholds: Some(thresholds) })),
        )
        .await
        .map_err(|e| ConsoleError::from(e).with_viewer(&viewer))?;
        return Ok(see_other(&format!("/console/plans/{}?done=Plan+saved.", url_part(&name)), None));
    }
    let (current, projects) = {
        let g = app.views.0.read().expect("views");
        let n = g.config.projects.values().filter(|c| c.plan.as_deref() == Some(name.as_str())).count();
        (g.config.plans.get(&name).cloned(), n)
    };
    let mut body = format!(
        "<p>Plan <strong>{}</strong> ({} project(s) on it) will have these quotas:</p>{}",
        esc(&name),
        grouped(projects as u64),
        table_head(&["Metric", "#Now", "#After"], None)
    );
    for m in Metric::ALL {
        let now = current.as_ref().map_or_else(|| "(new plan)".to_owned(), |p| limit_text(&p.quota, m));
        let _ = write!(
            body,
            "<tr><th scope=\"row\">{}</th><td class=\"num\">{now}</td><td class=\"num\">{}</td></tr>",
            metric_label(m),
            limit_text(&quota, m)
        );
    }
    let _ = write!(
        body,
        "</tbody></table><p>Alert thresholds: {} &rarr; {}</p><form method=\"post\" action=\"/console/plans/{}\">",
        current.as_ref().map_or_else(|| "(new plan)".to_owned(), |p| thresholds_text(&p.thresholds)),
        thresholds_text(&checked.thresholds),
        url_part(&name)
    );
    for m in Metric::ALL {
        let _ =
            write!(body, "<input type=\"hidden\" name=\"q_{}\" value=\"{}\">", m.name(), quota.limit(m).unwrap_or(0));
    }
    let _ = write!(
        body,
        "<input type=\"hidden\" name=\"thresholds\" value=\"{}\"><button type=\"submit\" name=\"confirm\" value=\"yes\" \
         class=\"primary\">Apply</button> <a href=\"/console/plans/{}\">Cancel</a></form>",
        esc(text),
        url_part(&name)
    );
    Ok(Html(document("Confirm the plan change", Section::Plans, Some(&viewer), &body)).into_response())
}
