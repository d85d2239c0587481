//! A project's page: state and why, this cycle's usage against each quota,
//! thresholds reached, branches, the last control-plane call, its plan and
//! overrides (editable, with a confirmation step) and their changes, its
//! adjustments, and its history as charts.

use std::fmt::Write;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{Html, IntoResponse, Redirect};
use axum::{Extension, Json};
use meter_core::cycle::{rfc3339, Cycle};
use meter_core::{Metric, ProjectQuotaConfig, QuotaOverrides};
use serde::Deserialize;

use super::html::{
    amount, call_outcome, document, esc, limit_text, metric_label, notice, table_head, url_part, usage_bar, when,
    Section, Viewer,
};
use super::{done_notice, parse_amount, see_other, ConsoleError, Form, PageResult};
use crate::handlers::{get_quota, put_quota, status};
use crate::model::{ProjectQuota, QuotaPut, RangeParams, Status};
use crate::query::Query;
use crate::App;

#[derive(Debug, Deserialize)]
pub(crate) struct SearchParams {
    id: Option<String>,
}

/// `?id=` of the fleet page's search box: that project's page.
pub(crate) async fn search(params: Result<Query<SearchParams>, crate::error::ApiError>) -> PageResult {
    let Query(p) = params?;
    let id = p.id.unwrap_or_default();
    let id = id.trim();
    crate::handlers::project_id(id)?;
    Ok(Redirect::to(&format!("/console/projects/{}", url_part(id))).into_response())
}

#[derive(Debug, Deserialize)]
pub(crate) struct PageParams {
    granularity: Option<String>,
    done: Option<String>,
}

pub(crate) async fn page(
    State(app): State<App>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    params: Result<Query<PageParams>, crate::error::ApiError>,
) -> PageResult {
    let Query(p) = params?;
    let daily = match p.granularity.as_deref() {
        None | Some("hourly") => false,
        Some("daily") => true,
        Some(g) => return Err(ConsoleError::bad_input(format!("granularity: {g:?} is not hourly or daily"))),
    };
    let Json(s) =
        status(State(app.clone()), Path(id.clone())).await.map_err(|e| ConsoleError::from(e).with_viewer(&viewer))?;
    let Json(q) = get_quota(State(app.clone()), Path(id.clone())).await?;
    let mut body = done_notice(p.done.as_deref());
    summary(&mut body, &s);
    usage_table(&mut body, &s, &q);
    thresholds(&mut body, &s);
    branches(&mut body, &s);
    control_plane(&mut body, &s);
    body.push_str("<h2 id=\"quota\">Plan and overrides</h2>");
    if viewer.manage {
        let mut plans: Vec<String> = app.views.0.read().expect("views").config.plans.keys().cloned().collect();
        plans.sort();
        quota_form(&mut body, &q, &plans);
    } else {
        body.push_str(
            "<p class=\"muted\">Read only: changing the plan or overrides needs a token with the manage scope.</p>",
        );
    }
    super::audit::quota_changes(&mut body, &app, &id).await;
    super::audit::adjustments(&mut body, &app, &id).await;
    history(&mut body, &app, &id, daily).await;
    Ok(Html(document(&format!("Project {id}"), Section::Fleet, Some(&viewer), &body)).into_response())
}

fn summary(body: &mut String, s: &Status) {
    match &s.suspension {
        Some(x) => {
            let _ = write!(
                body,
                "<p>State: <span class=\"state-suspended\">suspended</span> since {} &mdash; over its {} quota \
                 ({} of {}).</p>",
                when(&x.since),
                metric_label(x.metric),
                esc(&amount(x.metric, x.usage)),
                esc(&amount(x.metric, x.quota))
            );
        }
        None => body.push_str("<p>State: <span class=\"state-active\">active</span></p>"),
    }
    let _ = write!(
        body,
        "<dl><dt>Plan</dt><dd>{}</dd><dt>Billing cycle</dt><dd>{} to {} (UTC)</dd></dl>",
        s.plan.as_deref().map_or_else(
            || "none".to_owned(),
            |p| format!("<a href=\"/console/plans/{}\">{}</a>", url_part(p), esc(p))
        ),
        esc(s.consumption_period_start.get(..10).unwrap_or_default()),
        esc(s.consumption_period_end.get(..10).unwrap_or_default())
    );
}

fn usage_table(body: &mut String, s: &Status, q: &ProjectQuota) {
    body.push_str("<h2 id=\"usage\">Usage this cycle</h2>");
    body.push_str(&table_head(&["Metric", "#Usage", "#Quota", "From", "Use of quota"], None));
    let usage = s.usage.values();
    for (m, used) in Metric::ALL.into_iter().zip(usage) {
        let limit = s.quota.limit(m);
        let from = match (q.overrides.get(m), &q.plan) {
            (Some(_), _) => "override",
            (None, Some(_)) if limit.is_some() => "plan",
            _ => "—",
        };
        // The storage quota applies to each branch: the bar shows the largest.
        let judged =
            if m.is_gauge() { s.branches.iter().map(|b| b.logical_size_bytes).max().unwrap_or(used) } else { used };
        let note =
            if m.is_gauge() && s.branches.len() > 1 { " <span class=\"muted\">(largest branch)</span>" } else { "" };
        let _ = write!(
            body,
            "<tr><th scope=\"row\">{}</th><td class=\"num\">{}</td><td class=\"num\">{}</td><td>{from}</td>\
             <td>{}{note}</td></tr>",
            metric_label(m),
            esc(&amount(m, used)),
            limit.map_or_else(|| "unlimited".to_owned(), |l| esc(&amount(m, l))),
            usage_bar(m, judged, limit)
        );
    }
    body.push_str("</tbody></table>");
}

fn thresholds(body: &mut String, s: &Status) {
    body.push_str("<h2 id=\"thresholds\">Alert thresholds reached this cycle</h2>");
    if s.thresholds_reached.is_empty() {
        body.push_str("<p class=\"muted\">None.</p>");
        return;
    }
    body.push_str("<ul>");
    for t in &s.thresholds_reached {
        let branch = t.branch_id.as_deref().map(|b| format!(" on branch {}", esc(b))).unwrap_or_default();
        let _ = write!(
            body,
            "<li>{}% of the {} quota ({}){branch}</li>",
            t.threshold,
            metric_label(t.metric),
            esc(&amount(t.metric, t.quota))
        );
    }
    body.push_str("</ul>");
}

fn branches(body: &mut String, s: &Status) {
    body.push_str("<h2 id=\"branches\">Branches</h2>");
    if s.branches.is_empty() {
        body.push_str("<p class=\"muted\">No storage reading yet.</p>");
        return;
    }
    body.push_str(&table_head(&["Branch", "#Logical size", "Reading at", "Writes"], None));
    for b in &s.branches {
        let writes = match &b.blocked_since {
            Some(since) => format!("<span class=\"state-suspended\">blocked</span> since {}", when(since)),
            None => "allowed".to_owned(),
        };
        let name = if b.branch_id.is_empty() { "(unnamed)".to_owned() } else { esc(&b.branch_id) };
        let _ = write!(
            body,
            "<tr><td>{name}</td><td class=\"num\">{}</td><td>{}</td><td>{writes}</td></tr>",
            esc(&amount(Metric::LogicalSizeBytes, b.logical_size_bytes)),
            when(&b.reading_at)
        );
    }
    body.push_str("</tbody></table>");
}

fn control_plane(body: &mut String, s: &Status) {
    body.push_str("<h2 id=\"control-plane\">Last control-plane call</h2>");
    let Some(c) = &s.control_plane else {
        body.push_str("<p class=\"muted\">None.</p>");
        return;
    };
    let answer = call_outcome(c.status, c.error.as_deref());
    let _ = write!(
        body,
        "<p><strong>{}</strong>{} at {}: {} after {} attempt(s), {}</p>",
        esc(&c.kind),
        c.branch_id.as_deref().map(|b| format!(" (branch {})", esc(b))).unwrap_or_default(),
        when(&c.at),
        esc(&c.outcome),
        c.attempts,
        answer
    );
}

fn quota_form(body: &mut String, q: &ProjectQuota, plans: &[String]) {
    let _ = write!(body, "<form method=\"post\" action=\"/console/projects/{}/quota\">", url_part(&q.project_id));
    body.push_str(
        "<label for=\"plan\">Plan</label><select id=\"plan\" name=\"plan\"><option value=\"\">(no plan)</option>",
    );
    for p in plans {
        let selected = if q.plan.as_deref() == Some(p) { " selected" } else { "" };
        let _ = write!(body, "<option value=\"{}\"{selected}>{}</option>", esc(p), esc(p));
    }
    body.push_str("</select><div class=\"fields\">");
    for m in Metric::ALL {
        let current = q.overrides.get(m).map(|v| v.to_string()).unwrap_or_default();
        let _ = write!(
            body,
            "<label for=\"q_{name}\">{} override <span class=\"hint\">(empty: the plan's; 0: unlimited; {})</span></label>\
             <input id=\"q_{name}\" name=\"q_{name}\" inputmode=\"numeric\" value=\"{}\" size=\"24\">",
            metric_label(m),
            unit(m),
            esc(&current),
            name = m.name()
        );
    }
    body.push_str("</div><p><button type=\"submit\" class=\"primary\">Review change</button></p></form>");
}

/// The unit a quota field is entered in.
pub(crate) fn unit(m: Metric) -> &'static str {
    match m {
        Metric::ActiveTimeSeconds | Metric::ComputeTimeSeconds => "seconds",
        _ => "bytes",
    }
}

async fn history(body: &mut String, app: &App, id: &str, daily: bool) {
    let now = app.clock.now_ms();
    let (from, label) = if daily {
        (Cycle::containing(now).start_ms, "per day, this billing cycle")
    } else {
        (now - 48 * 3_600_000, "per hour, last 48 hours")
    };
    let _ = write!(
        body,
        "<h2 id=\"history\">History <span class=\"muted\">{label}</span></h2><p><a href=\"/console/projects/{u}?granularity=hourly#history\"{}>Hourly</a> \
         &middot; <a href=\"/console/projects/{u}?granularity=daily#history\"{}>Daily</a></p>",
        if daily { "" } else { " aria-current=\"true\"" },
        if daily { " aria-current=\"true\"" } else { "" },
        u = url_part(id)
    );
    let range = RangeParams {
        from: Some(rfc3339(from)),
        to: Some(rfc3339(now.max(from + 1))),
        granularity: Some(if daily { "daily" } else { "hourly" }.into()),
        metrics: None,
    };
    match crate::history::project(State(app.clone()), Path(id.to_owned()), Ok(Query(range))).await {
        Ok(h) => body.push_str(&super::fleet::charts(&h.0.consumption, daily)),
        Err(e) => body.push_str(&notice("error", e.message())),
    }
}

/// The quota form posted: without `confirm=yes`, a page showing what
/// changes; with it, the change written (as `PUT /v1/projects/{id}/quota`).
pub(crate) async fn edit_quota(
    State(app): State<App>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    body: Bytes,
) -> PageResult {
    let form = Form::parse(&body);
    crate::handlers::project_id(&id)?;
    let plan = form.get("plan").map(str::trim).filter(|p| !p.is_empty()).map(str::to_owned);
    let mut overrides = QuotaOverrides::default();
    for m in Metric::ALL {
        let field = format!("q_{}", m.name());
        overrides.set(m, parse_amount(&field, form.get(&field).unwrap_or_default())?);
    }
    let new = ProjectQuotaConfig { plan: plan.clone(), quota: overrides };
    if form.get("confirm") == Some("yes") {
        let _stored = put_quota(State(app.clone()), Path(id.clone()), Ok(Json(QuotaPut { plan, quota: overrides })))
            .await
            .map_err(|e| ConsoleError::from(e).with_viewer(&viewer))?;
        return Ok(see_other(&format!("/console/projects/{}?done=Quota+saved.", url_part(&id)), None));
    }
    let (current, after) = {
        let g = app.views.0.read().expect("views");
        let plan_def =
            match &plan {
                None => None,
                Some(p) => Some(g.config.plans.get(p).cloned().ok_or_else(|| {
                    ConsoleError::bad_input(format!("plan: unknown plan {p:?}")).with_viewer(&viewer)
                })?),
            };
        (g.config.effective(&id), new.effective(plan_def.as_ref()).0)
    };
    let ((current, _, old_plan), name) = (current, |p: &Option<String>| esc(p.as_deref().unwrap_or("(none)")));
    let plan_text = if old_plan == plan {
        format!("stays on plan <strong>{}</strong>", name(&plan))
    } else {
        format!("moves from plan <strong>{}</strong> to plan <strong>{}</strong>", name(&old_plan), name(&plan))
    };
    let mut page_body = format!("<p>Project {} {plan_text}; its quotas:</p>", esc(&id));
    page_body.push_str(&table_head(&["Metric", "#Now", "#After"], None));
    for m in Metric::ALL {
        let changed = if current.limit(m) != after.limit(m) { " <strong>(changes)</strong>" } else { "" };
        let _ = write!(
            page_body,
            "<tr><th scope=\"row\">{}</th><td class=\"num\">{}</td><td class=\"num\">{}{changed}</td></tr>",
            metric_label(m),
            limit_text(&current, m),
            limit_text(&after, m)
        );
    }
    let _ = write!(
        page_body,
        "</tbody></table><form method=\"post\" action=\"/console/projects/{}/quota\">",
        url_part(&id)
    );
    let _ = write!(page_body, "<input type=\"hidden\" name=\"plan\" value=\"{}\">", esc(plan.as_deref().unwrap_or("")));
    for m in Metric::ALL {
        let v = overrides.get(m).map(|v| v.to_string()).unwrap_or_default();
        let _ = write!(page_body, "<input type=\"hidden\" name=\"q_{}\" value=\"{v}\">", m.name());
    }
    let _ = write!(
        page_body,
        "<p>The enforcer acts on the new quotas at once: a project over a lowered quota is suspended, one under a \
         raised quota is resumed.</p><button type=\"submit\" name=\"confirm\" value=\"yes\" class=\"primary\">Apply</button> \
         <a href=\"/console/projects/{}\">Cancel</a></form>",
        url_part(&id)
    );
    Ok((StatusCode::OK, Html(document("Confirm the quota change", Section::Fleet, Some(&viewer), &page_body)))
        .into_response())
}
