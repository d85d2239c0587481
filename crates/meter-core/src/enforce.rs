//! Deciding what to do about a project: given its usage in the current
//! cycle, its quota and what was already done (the enforcement state), which
//! alerts fire and whether it must be suspended or resumed. Pure: the same
//! inputs always give the same decisions and the same ids, so a decision
//! replayed after a crash is recognised downstream (idempotency keys, webhook
//! ids).

use serde::{Deserialize, Serialize};

use crate::{Cycle, Metric, Quota, UnixMs};

/// A project's usage in the cycle being evaluated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    /// Counters of the current cycle, in `Metric::COUNTERS` order.
    pub counters: [u64; 4],
    /// Latest storage reading (never resets).
    pub logical_size: u64,
    /// Ingest time of the newest batch counted (start of the suspend latency).
    pub last_ingested_ms: UnixMs,
}

impl Usage {
    /// The value of one metric.
    pub fn get(&self, m: Metric) -> u64 {
        m.counter_index().map_or(self.logical_size, |i| self.counters[i])
    }
}

/// A threshold that fired, and for which quota; `threshold == 0` stands
/// for `quota.exceeded`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fired {
    pub metric: Metric,
    pub threshold: u8,
    pub quota: u64,
    pub cycle_start_ms: UnixMs,
}

/// Why a project is suspended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Suspension {
    pub metric: Metric,
    pub usage: u64,
    pub quota: u64,
    pub since_ms: UnixMs,
    /// Idempotency key of the suspend call; the resume's derives from it.
    pub key: String,
}

/// What was already decided for a project; stored durably.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EnforcementState {
    pub project_id: String,
    pub cycle_start_ms: UnixMs,
    pub fired: Vec<Fired>,
    pub suspended: Option<Suspension>,
    /// Suspensions decided in this cycle (numbers the idempotency keys).
    pub suspensions: u32,
    /// Alerts already sent, with the cycle they were sent in: an alert id
    /// is never sent twice in a cycle, even if its condition comes back
    /// (a quota raised, then lowered again).
    #[serde(default)]
    pub sent: Vec<(String, UnixMs)>,
    pub version: u64,
}

impl EnforcementState {
    /// A project nothing was decided for yet.
    pub fn new(project_id: &str, cycle_start_ms: UnixMs) -> Self {
        EnforcementState {
            project_id: project_id.to_owned(),
            cycle_start_ms,
            fired: Vec::new(),
            suspended: None,
            suspensions: 0,
            sent: Vec::new(),
            version: 0,
        }
    }
}

/// A call to the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub kind: ActionKind,
    pub project_id: String,
    pub idempotency_key: String,
    pub metric: Metric,
    pub reason: String,
    /// Ingest time of the newest counted batch when the decision was made.
    pub crossing_ingested_ms: UnixMs,
    pub decided_ms: UnixMs,
}

/// Suspend or resume.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Suspend,
    Resume,
}

/// Webhook event types.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum AlertType {
    #[serde(rename = "quota.threshold_reached")]
    ThresholdReached,
    #[serde(rename = "quota.exceeded")]
    QuotaExceeded,
    #[serde(rename = "project.suspended")]
    ProjectSuspended,
    #[serde(rename = "project.resumed")]
    ProjectResumed,
    #[serde(rename = "quota.threshold_resolved")]
    ThresholdResolved,
    /// Sent to one endpoint on request (`POST /v1/webhooks/{id}/test`).
    #[serde(rename = "webhook.test")]
    WebhookTest,
}

impl AlertType {
    /// Every type.
    pub const ALL: [AlertType; 6] = [
        AlertType::ThresholdReached,
        AlertType::QuotaExceeded,
        AlertType::ProjectSuspended,
        AlertType::ProjectResumed,
        AlertType::ThresholdResolved,
        AlertType::WebhookTest,
    ];

    /// The wire name, e.g. `quota.exceeded`.
    pub fn name(self) -> &'static str {
        match self {
            AlertType::ThresholdReached => "quota.threshold_reached",
            AlertType::QuotaExceeded => "quota.exceeded",
            AlertType::ProjectSuspended => "project.suspended",
            AlertType::ProjectResumed => "project.resumed",
            AlertType::ThresholdResolved => "quota.threshold_resolved",
            AlertType::WebhookTest => "webhook.test",
        }
    }
}

/// One alert; `id` is stable for the same decision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Alert {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: AlertType,
    pub project_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metric: Option<Metric>,
    /// Percent, for threshold events.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threshold: Option<u8>,
    pub usage: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quota: Option<u64>,
    pub cycle_start_ms: UnixMs,
    pub cycle_end_ms: UnixMs,
    pub occurred_ms: UnixMs,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// The outcome of an evaluation.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    pub state: EnforcementState,
    pub actions: Vec<Action>,
    pub alerts: Vec<Alert>,
    /// False when nothing changed (nothing to record).
    pub changed: bool,
}

fn reached(usage: u64, quota: u64, percent: u8) -> bool {
    u128::from(usage) * 100 >= u128::from(quota) * u128::from(percent)
}

/// Evaluates one project at `now_ms`. `usage` is the project's usage in the
/// cycle containing `now_ms`.
pub fn evaluate(
    prev: Option<&EnforcementState>,
    project_id: &str,
    usage: &Usage,
    quota: &Quota,
    thresholds: &[u8],
    now_ms: UnixMs,
) -> Decision {
    let cycle = Cycle::containing(now_ms);
    let mut s = prev.cloned().unwrap_or_else(|| EnforcementState::new(project_id, cycle.start_ms));
    let new_cycle = s.cycle_start_ms != cycle.start_ms;
    if new_cycle {
        s.cycle_start_ms = cycle.start_ms;
        s.suspensions = 0;
    }
    let mut alerts = Vec::new();
    let alert = |kind, metric: Option<Metric>, threshold, usage, quota, id: String| Alert {
        id,
        kind,
        project_id: project_id.to_owned(),
        metric,
        threshold,
        usage,
        quota,
        cycle_start_ms: cycle.start_ms,
        cycle_end_ms: cycle.end_ms,
        occurred_ms: now_ms,
        reason: None,
    };
    for m in Metric::ALL {
        let (limit, u) = (quota.limit(m), usage.get(m));
        // Resolve what no longer holds: usage fell under, or the quota changed.
        s.fired.retain(|f| {
            if f.metric != m {
                return true;
            }
            let holds =
                limit == Some(f.quota) && reached(u, f.quota, f.threshold.max(100 * u8::from(f.threshold == 0)));
            if !holds && f.threshold != 0 {
                let id = format!("{project_id}.{}.{m}.resolved.{}.{}", f.cycle_start_ms / 1000, f.threshold, f.quota);
                alerts.push(alert(AlertType::ThresholdResolved, Some(m), Some(f.threshold), u, limit, id));
            }
            holds
        });
        let Some(q) = limit else { continue };
        let marks = thresholds.iter().copied().map(|t| (t, AlertType::ThresholdReached));
        for (t, kind) in marks.chain(std::iter::once((0, AlertType::QuotaExceeded))) {
            let pct = if t == 0 { 100 } else { t };
            if !reached(u, q, pct) || s.fired.iter().any(|f| f.metric == m && f.threshold == t && f.quota == q) {
                continue;
            }
            s.fired.push(Fired { metric: m, threshold: t, quota: q, cycle_start_ms: cycle.start_ms });
            let id = format!("{project_id}.{}.{m}.{}.{t}.{q}", cycle.start_ms / 1000, kind.name());
            alerts.push(alert(kind, Some(m), (t != 0).then_some(t), u, Some(q), id));
        }
    }
    let over = Metric::ALL.into_iter().find_map(|m| {
        let q = quota.limit(m)?;
        (usage.get(m) >= q).then_some((m, usage.get(m), q))
    });
    let mut actions = Vec::new();
    let action = |kind, key: &str, metric, reason: &str| Action {
        kind,
        project_id: project_id.to_owned(),
        idempotency_key: key.to_owned(),
        metric,
        reason: reason.to_owned(),
        crossing_ingested_ms: usage.last_ingested_ms,
        decided_ms: now_ms,
    };
    match (&s.suspended, over) {
        (None, Some((m, u, q))) => {
            s.suspensions += 1;
            let key = format!("suspend.{project_id}.{}.{}", cycle.start_ms / 1000, s.suspensions);
            actions.push(action(ActionKind::Suspend, &key, m, "quota_exceeded"));
            let mut a = alert(AlertType::ProjectSuspended, Some(m), None, u, Some(q), format!("{key}.event"));
            a.reason = Some("quota_exceeded".into());
            alerts.push(a);
            s.suspended = Some(Suspension { metric: m, usage: u, quota: q, since_ms: now_ms, key });
        }
        (Some(sus), None) => {
            let key = sus.key.replacen("suspend.", "resume.", 1);
            let reason = if new_cycle { "new_cycle" } else { "quota_raised" };
            actions.push(action(ActionKind::Resume, &key, sus.metric, reason));
            let mut a = alert(
                AlertType::ProjectResumed,
                Some(sus.metric),
                None,
                usage.get(sus.metric),
                quota.limit(sus.metric),
                format!("{key}.event"),
            );
            a.reason = Some(reason.into());
            alerts.push(a);
            s.suspended = None;
        }
        _ => {}
    }
    alerts.retain(|a| !s.sent.iter().any(|(id, _)| *id == a.id));
    s.sent.retain(|(_, c)| *c >= cycle.start_ms);
    s.sent.extend(alerts.iter().map(|a| (a.id.clone(), cycle.start_ms)));
    let changed = prev.map_or(!alerts.is_empty() || !actions.is_empty(), |p| *p != s);
    if changed {
        s.version += 1;
    }
    Decision { state: s, actions, alerts, changed }
}

#[cfg(test)]
mod tests;
