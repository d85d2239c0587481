//! The project page's audit sections: its adjustments (made with the API or
//! `meterctl adjust`) and the changes of its plan and overrides, newest
//! first, each with who made it and when.

use std::fmt::Write;

use axum::extract::{Path, State};
use axum::Json;

use super::html::{amount, esc, metric_label, table_head, when};
use crate::adjustments::list_adjustments;
use crate::config_history::quota_history;
use crate::model::{AdjustmentListParams, AdjustmentStatus};
use crate::query::Query;
use crate::App;

/// Rows shown per section.
const SHOWN: usize = 20;

fn who(actor: &str) -> String {
    if actor.is_empty() {
        "<span class=\"muted\">(no tokens)</span>".to_owned()
    } else {
        esc(actor)
    }
}

/// The adjustments section.
pub(crate) async fn adjustments(body: &mut String, app: &App, id: &str) {
    body.push_str("<h2 id=\"adjustments\">Adjustments</h2>");
    let params = Ok(Query(AdjustmentListParams::default()));
    let Ok(Json(list)) = list_adjustments(State(app.clone()), Path(id.to_owned()), params).await else { return };
    if list.adjustments.is_empty() {
        body.push_str("<p class=\"muted\">None. Make one with <code>meterctl adjust add</code> or <code>POST /v1/projects/{id}/adjustments</code>.</p>");
        return;
    }
    body.push_str(&table_head(&["Made", "Metric", "Booked in", "#Change", "Outcome", "By", "Why"], None));
    for a in list.adjustments.iter().take(SHOWN) {
        let sign = if a.delta < 0 { "−" } else { "+" };
        let outcome = match a.status {
            AdjustmentStatus::Applied => "applied".to_owned(),
            AdjustmentStatus::Pending => "pending".to_owned(),
            AdjustmentStatus::Refused => {
                format!("<span class=\"state-suspended\">refused</span> ({})", a.refusal.map_or("", |r| r.code()))
            }
        };
        let booked = if a.cycle_wide { format!("cycle {}", esc(&a.cycle)) } else { when(&a.hour) };
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td>{booked}</td><td class=\"num\">{sign}{}</td><td>{outcome}</td><td>{}</td><td>{}</td></tr>",
            when(&a.created_at),
            metric_label(a.metric),
            esc(&amount(a.metric, a.delta.unsigned_abs())),
            who(&a.actor),
            esc(&a.reason)
        );
    }
    body.push_str("</tbody></table>");
}

/// The quota changes section.
pub(crate) async fn quota_changes(body: &mut String, app: &App, id: &str) {
    body.push_str("<h2 id=\"quota-changes\">Plan and override changes</h2>");
    let Ok(Json(h)) = quota_history(State(app.clone()), Path(id.to_owned())).await else { return };
    if h.changes.is_empty() {
        body.push_str("<p class=\"muted\">None recorded.</p>");
        return;
    }
    body.push_str(&table_head(&["Changed", "By", "Before", "After"], None));
    let text = |c: Option<&meter_core::ProjectQuotaConfig>| match c {
        None => "<span class=\"muted\">nothing set</span>".to_owned(),
        Some(c) => esc(&serde_json::to_string(c).unwrap_or_default()),
    };
    for c in h.changes.iter().take(SHOWN) {
        let _ = write!(
            body,
            "<tr><td>{}</td><td>{}</td><td><code>{}</code></td><td><code>{}</code></td></tr>",
            when(&c.changed_at),
            who(&c.actor),
            text(c.before.as_ref()),
            text(Some(&c.after))
        );
    }
    body.push_str("</tbody></table>");
}
