//! Webhook endpoints (secrets never shown), their recent deliveries with
//! every attempt, dead letters; test, disable/enable, resend and replay.

use std::fmt::Write;

use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::response::{Html, IntoResponse};
use axum::{Extension, Json};
use meter_core::delivery::DeliveryState;
use serde::Deserialize;

use super::html::{call_outcome, document, esc, table_head, url_part, when, Section, Viewer};
use super::{done_notice, project_link, see_other, ConsoleError, Form, PageResult};
use crate::model::{DeliveryParams, ReplayBody, Webhook, WebhookPatch};
use crate::query::Query;
use crate::webhooks as api;
use crate::App;

/// Dead letters listed on the page (the replay button takes all).
const DEAD_LETTERS_SHOWN: usize = 100;

#[derive(Debug, Deserialize)]
pub(crate) struct DoneParams {
    done: Option<String>,
    cursor: Option<String>,
}

fn event_types(w: &Webhook) -> String {
    if w.event_types.is_empty() {
        "all".to_owned()
    } else {
        w.event_types.iter().map(|t| esc(t.name())).collect::<Vec<_>>().join(", ")
    }
}

fn endpoint_state(w: &Webhook) -> String {
    match (w.disabled, &w.disabled_reason) {
        (false, _) => "<span class=\"state-active\">enabled</span>".to_owned(),
        (true, Some(r)) => format!("<span class=\"state-suspended\">disabled</span>: {}", esc(r)),
        (true, None) => "<span class=\"state-suspended\">disabled</span>".to_owned(),
    }
}

/// The buttons acting on an endpoint (for `manage` viewers).
fn endpoint_actions(w: &Webhook) -> String {
    let toggle = if w.disabled { ("enable", "Enable") } else { ("disable", "Disable") };
    format!(
        "<form method=\"post\" action=\"/console/webhooks/{u}\" class=\"inline\"><input type=\"hidden\" name=\"do\" \
         value=\"test\"><button type=\"submit\" aria-label=\"Send a test event to {e}\">Send test</button></form> \
         <form method=\"post\" action=\"/console/webhooks/{u}\" class=\"inline\"><input type=\"hidden\" name=\"do\" \
         value=\"{}\"><button type=\"submit\" class=\"danger\" aria-label=\"{} {e}\">{}</button></form>",
        toggle.0,
        toggle.1,
        toggle.1,
        u = url_part(&w.id),
        e = esc(&w.id)
    )
}

pub(crate) async fn list(
    State(app): State<App>,
    Extension(viewer): Extension<Viewer>,
    params: Result<Query<DoneParams>, crate::error::ApiError>,
) -> PageResult {
    let Query(p) = params?;
    let Json(list) = api::list_webhooks(State(app.clone())).await?;
    let mut body = done_notice(p.done.as_deref());
    body.push_str("<h2 id=\"endpoints\">Endpoints</h2>");
    if list.webhooks.is_empty() {
        body.push_str("<p class=\"muted\">No endpoint: add one with <code>PUT /v1/webhooks/{id}</code>.</p>");
    } else {
        body.push_str(&table_head(&["Endpoint", "URL", "Events", "State"], viewer.manage.then_some("Actions")));
        for w in &list.webhooks {
            let _ = write!(
                body,
                "<tr><td><a href=\"/console/webhooks/{}\">{}</a></td><td class=\"id\">{}</td><td>{}</td><td>{}</td>",
                url_part(&w.id),
                esc(&w.id),
                esc(&w.url),
                event_types(w),
                endpoint_state(w)
            );
            if viewer.manage {
                let _ = write!(body, "<td>{}</td>", endpoint_actions(w));
            }
            body.push_str("</tr>");
        }
        body.push_str("</tbody></table>");
    }
    let Json(dead) = api::list_dead_letters(State(app.clone())).await?;
    body.push_str("<h2 id=\"dead-letters\">Dead letters</h2>");
    if dead.dead_letters.is_empty() {
        body.push_str("<p class=\"muted\">None: every event reached its endpoints or is still being retried.</p>");
    } else {
        let columns = ["Event", "Type", "Project", "Endpoint", "#Attempts", "Last error", "Failed at"];
        body.push_str(&table_head(&columns, viewer.manage.then_some("Replay")));
        for d in dead.dead_letters.iter().take(DEAD_LETTERS_SHOWN) {
            let _ = write!(
                body,
                "<tr><td class=\"id\">{}</td><td>{}</td><td>{}</td><td>{}</td><td class=\"num\">{}</td><td class=\"id\">{}</td><td class=\"nowrap\">{}</td>",
                esc(&d.event_id),
                esc(d.kind.name()),
                if d.project_id.is_empty() { "—".to_owned() } else { project_link(&d.project_id) },
                esc(&d.endpoint_id),
                d.attempts,
                esc(&d.last_error),
                when(&d.failed_at)
            );
            if viewer.manage {
                let _ = write!(
                    body,
                    "<td><form method=\"post\" action=\"/console/webhooks/dead-letters/replay\" class=\"inline\">\
                     <input type=\"hidden\" name=\"key\" value=\"{}\"><button type=\"submit\" \
                     aria-label=\"Replay {}\">Replay</button></form></td>",
                    esc(&d.key),
                    esc(&d.event_id)
                );
            }
            body.push_str("</tr>");
        }
        body.push_str("</tbody></table>");
        if dead.dead_letters.len() > DEAD_LETTERS_SHOWN {
            let _ = write!(
                body,
                "<p class=\"muted\">{} more not shown (oldest keys first; <code>GET /v1/webhooks/dead-letters</code> lists all).</p>",
                dead.dead_letters.len() - DEAD_LETTERS_SHOWN
            );
        }
        if viewer.manage {
            body.push_str(
                "<form method=\"post\" action=\"/console/webhooks/dead-letters/replay\"><p><button type=\"submit\" \
                 class=\"primary\">Replay all dead letters</button></p></form>",
            );
        }
    }
    Ok(Html(document("Webhooks", Section::Webhooks, Some(&viewer), &body)).into_response())
}

pub(crate) async fn page(
    State(app): State<App>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    params: Result<Query<DoneParams>, crate::error::ApiError>,
) -> PageResult {
    let Query(p) = params?;
    let w = {
        let Json(list) = api::list_webhooks(State(app.clone())).await?;
        list.webhooks.into_iter().find(|w| w.id == id).ok_or_else(|| {
            ConsoleError::new(axum::http::StatusCode::NOT_FOUND, format!("no webhook endpoint {id:?}"))
                .with_viewer(&viewer)
        })?
    };
    let params =
        DeliveryParams { event_type: None, project_id: None, state: None, limit: Some("50".into()), cursor: p.cursor };
    let Json(list) = api::list_deliveries(State(app.clone()), Path(id.clone()), Ok(Query(params))).await?;
    let mut body = done_notice(p.done.as_deref());
    let _ = write!(
        body,
        "<dl><dt>URL</dt><dd>{}</dd><dt>Events</dt><dd>{}</dd><dt>State</dt><dd>{}</dd><dt>Secret</dt>\
         <dd class=\"muted\">never shown</dd></dl>",
        esc(&w.url),
        event_types(&w),
        endpoint_state(&w)
    );
    if viewer.manage {
        let _ = write!(body, "<p>{}</p>", endpoint_actions(&w));
    }
    body.push_str("<h2 id=\"deliveries\">Recent deliveries <span class=\"muted\">(newest first)</span></h2>");
    if list.deliveries.is_empty() {
        body.push_str("<p class=\"muted\">No delivery kept for this endpoint.</p>");
    } else {
        let columns = ["Event", "Type", "Project", "State", "Created", "Attempts"];
        body.push_str(&table_head(&columns, viewer.manage.then_some("Resend")));
        for d in &list.deliveries {
            let state = match d.state {
                DeliveryState::Pending => d
                    .next_attempt_at
                    .as_deref()
                    .map_or_else(|| "pending".to_owned(), |n| format!("pending, next attempt {}", when(n))),
                DeliveryState::Delivered => "<span class=\"state-active\">delivered</span>".to_owned(),
                DeliveryState::Dead => format!(
                    "<span class=\"state-suspended\">dead letter</span>{}",
                    d.reason.as_deref().map(|r| format!(": {}", esc(r))).unwrap_or_default()
                ),
                DeliveryState::Cancelled => "cancelled".to_owned(),
            };
            let mut attempts = String::from("<ol class=\"attempts\">");
            for a in &d.attempts {
                let outcome = call_outcome(a.status, a.error.as_deref());
                let _ = write!(
                    attempts,
                    "<li><span class=\"nowrap\">{}</span> &middot; {outcome} &middot; {} ms</li>",
                    esc(a.at.get(11..19).unwrap_or(&a.at)),
                    a.duration_ms
                );
            }
            attempts.push_str("</ol>");
            let _ = write!(
                body,
                "<tr><td class=\"id\">{}</td><td>{}</td><td>{}</td><td>{state}</td><td class=\"nowrap\">{}</td><td>{attempts}</td>",
                esc(&d.event_id),
                esc(d.kind.name()),
                if d.project_id.is_empty() { "—".to_owned() } else { project_link(&d.project_id) },
                when(&d.created_at)
            );
            if viewer.manage {
                let _ = write!(
                    body,
                    "<td><form method=\"post\" action=\"/console/webhooks/{}/deliveries/{}/resend\" class=\"inline\">\
                     <button type=\"submit\" aria-label=\"Resend {}\">Resend</button></form></td>",
                    url_part(&id),
                    url_part(&d.id),
                    esc(&d.event_id)
                );
            }
            body.push_str("</tr>");
        }
        body.push_str("</tbody></table>");
        if let Some(next) = &list.pagination.next_cursor {
            let _ = write!(
                body,
                "<p><a href=\"/console/webhooks/{}?cursor={}\">Older deliveries</a></p>",
                url_part(&id),
                url_part(next)
            );
        }
    }
    Ok(Html(document(&format!("Webhook endpoint {id}"), Section::Webhooks, Some(&viewer), &body)).into_response())
}

/// `do=test|disable|enable` posted for an endpoint.
pub(crate) async fn action(
    State(app): State<App>,
    Extension(viewer): Extension<Viewer>,
    Path(id): Path<String>,
    body: Bytes,
) -> PageResult {
    let form = Form::parse(&body);
    let done = match form.get("do") {
        Some("test") => {
            let (_, Json(sent)) = api::test_webhook(State(app.clone()), Path(id.clone())).await?;
            format!("Test event {} queued.", sent.event_id)
        }
        Some(verb @ ("disable" | "enable")) => {
            let patch = WebhookPatch { url: None, secret: None, event_types: None, disabled: Some(verb == "disable") };
            let _patched = api::patch_webhook(State(app.clone()), Path(id.clone()), Ok(Json(patch)))
                .await
                .map_err(|e| ConsoleError::from(e).with_viewer(&viewer))?;
            format!("Endpoint {}d.", verb)
        }
        other => {
            return Err(
                ConsoleError::bad_input(format!("do: {other:?} is not test, disable or enable")).with_viewer(&viewer)
            )
        }
    };
    Ok(see_other(&format!("/console/webhooks/{}?done={}", url_part(&id), url_part(&done)), None))
}

pub(crate) async fn resend(State(app): State<App>, Path((id, delivery)): Path<(String, String)>) -> PageResult {
    let _queued = api::resend_delivery(State(app.clone()), Path((id.clone(), delivery))).await?;
    Ok(see_other(&format!("/console/webhooks/{}?done=Delivery+queued+again.", url_part(&id)), None))
}

/// Replays one dead letter (`key`) or all of them.
pub(crate) async fn replay(State(app): State<App>, body: Bytes) -> PageResult {
    let form = Form::parse(&body);
    let keys = form.get("key").map(|k| vec![k.to_owned()]);
    let Json(r) = api::replay_dead_letters(State(app.clone()), Ok(Json(ReplayBody { keys }))).await?;
    Ok(see_other(&format!("/console/webhooks?done={}+dead+letter(s)+queued+again.", r.replayed), None))
}
