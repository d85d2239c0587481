//! Deciding what to do about a project: given its usage in the current
//! cycle, its quota and what was already done (the enforcement state), which
//! alerts fire and whether it must be suspended or resumed. Pure: the same
//! inputs always give the same decisions and the same ids, so a decision
//! replayed after a crash is recognised downstream (idempotency keys, webhook
//! ids).

use serde::{Deserialize, Serialize};

use crate::{Cycle, Metric, Quota, Totals, UnixMs};

/// A project's usage in the cycle being evaluated.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Usage {
    /// Counters of the current cycle, in `Metric::COUNTERS` order.
    pub counters: [u64; 4],
    /// Latest storage reading of each branch (never resets), by branch id
    /// (empty for readings that name no branch).
    pub branches: Vec<(String, u64)>,
    /// Ingest time of the newest batch counted (start of the suspend latency).
    pub last_ingested_ms: UnixMs,
}

impl Usage {
    /// A project's usage from its totals, at `now_ms`: the counters of the
    /// cycle containing it, and each branch's size (the legacy reading, not
    /// a branch, is left out).
    pub fn of_totals(t: &Totals, now_ms: UnixMs) -> Usage {
        Usage {
            counters: t.counters_at(now_ms).values,
            branches: t.enforced_branches().map(|(id, v)| (id.clone(), v)).collect(),
            last_ingested_ms: t.last_ingested_ms,
        }
    }

    /// A counter's value; for the storage gauge, the largest branch's.
    pub fn get(&self, m: Metric) -> u64 {
        m.counter_index().map_or_else(|| self.branches.iter().map(|b| b.1).max().unwrap_or(0), |i| self.counters[i])
    }

    /// What one quota is judged against: a counter, or one branch's size.
    fn of(&self, m: Metric, branch: Option<&str>) -> u64 {
        match (m.counter_index(), branch) {
            (Some(i), _) => self.counters[i],
            (None, Some(b)) => self.branches.iter().find(|(id, _)| id == b).map_or(0, |x| x.1),
            (None, None) => 0,
        }
    }
}

/// A threshold that fired, and for which quota; `threshold == 0` stands
/// for `quota.exceeded`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fired {
    pub metric: Metric,
    pub threshold: u8,
    pub quota: u64,
    pub cycle_start_ms: UnixMs,
    /// The branch, for the storage quota (which applies to each branch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch: Option<String>,
}

/// A branch over the storage quota, whose writes are blocked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BranchBlock {
    pub branch: String,
    pub usage: u64,
    pub quota: u64,
    pub since_ms: UnixMs,
    /// Idempotency key of the block call; the unblock's derives from it.
    pub key: String,
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
    /// Branches whose writes are blocked (storage quota).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub blocked: Vec<BranchBlock>,
    /// Branch blocks ever decided (numbers their idempotency keys; storage
    /// never resets, so neither does this).
    #[serde(default)]
    pub blocks: u32,
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
            blocked: Vec::new(),
            blocks: 0,
            version: 0,
        }
    }
}

/// A call to the control plane.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    pub kind: ActionKind,
    pub project_id: String,
    /// The branch, for `block_writes` and `unblock_writes`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_id: Option<String>,
    pub idempotency_key: String,
    pub metric: Metric,
    pub reason: String,
    /// Ingest time of the newest counted batch when the decision was made.
    pub crossing_ingested_ms: UnixMs,
    pub decided_ms: UnixMs,
}

/// Suspend or resume a project; block or unblock a branch's writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ActionKind {
    Suspend,
    Resume,
    BlockWrites,
    UnblockWrites,
}

impl ActionKind {
    /// Every kind.
    pub const ALL: [ActionKind; 4] =
        [ActionKind::Suspend, ActionKind::Resume, ActionKind::BlockWrites, ActionKind::UnblockWrites];

    /// The wire name, also the last segment of the control plane's path.
    pub fn name(self) -> &'static str {
        match self {
            ActionKind::Suspend => "suspend",
            ActionKind::Resume => "resume",
            ActionKind::BlockWrites => "block_writes",
            ActionKind::UnblockWrites => "unblock_writes",
        }
    }
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
    #[serde(rename = "branch.writes_blocked")]
    BranchWritesBlocked,
    #[serde(rename = "branch.writes_unblocked")]
    BranchWritesUnblocked,
    /// Sent to one endpoint on request (`POST /v1/webhooks/{id}/test`).
    #[serde(rename = "webhook.test")]
    WebhookTest,
}

impl AlertType {
    /// Every type.
    pub const ALL: [AlertType; 8] = [
        AlertType::ThresholdReached,
        AlertType::QuotaExceeded,
        AlertType::ProjectSuspended,
        AlertType::ProjectResumed,
        AlertType::ThresholdResolved,
        AlertType::BranchWritesBlocked,
        AlertType::BranchWritesUnblocked,
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
            AlertType::BranchWritesBlocked => "branch.writes_blocked",
            AlertType::BranchWritesUnblocked => "branch.writes_unblocked",
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
    /// The branch, for the storage quota (which applies to each branch).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub branch_id: Option<String>,
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
/// cycle containing `now_ms`. The counters' quotas apply to the project (a
/// project over one is suspended); the storage quota to each branch (a
/// branch over it has its writes blocked, and nothing else is touched).
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
    let alert = |kind, metric: Option<Metric>, branch: Option<&str>, threshold, usage, quota, id: String| Alert {
        id,
        kind,
        project_id: project_id.to_owned(),
        branch_id: branch.map(str::to_owned),
        metric,
        threshold,
        usage,
        quota,
        cycle_start_ms: cycle.start_ms,
        cycle_end_ms: cycle.end_ms,
        occurred_ms: now_ms,
        reason: None,
    };
    // Resolve what no longer holds: usage fell under, or the quota changed.
    s.fired.retain(|f| {
        let (m, branch) = (f.metric, f.branch.as_deref());
        let (limit, u) = (quota.limit(m), usage.of(m, branch));
        let holds = limit == Some(f.quota) && reached(u, f.quota, f.threshold.max(100 * u8::from(f.threshold == 0)));
        if !holds && f.threshold != 0 {
            let id = format!(
                "{project_id}.{}.{}.resolved.{}.{}",
                f.cycle_start_ms / 1000,
                subject_name(m, branch),
                f.threshold,
                f.quota
            );
            alerts.push(alert(AlertType::ThresholdResolved, Some(m), branch, Some(f.threshold), u, limit, id));
        }
        holds
    });
    // What each quota is judged on: each counter, and each branch's size.
    let counters = Metric::COUNTERS.into_iter().map(|m| (m, None));
    let branches = usage.branches.iter().map(|(b, _)| (Metric::LogicalSizeBytes, Some(b.as_str())));
    for (m, branch) in counters.chain(branches) {
        let Some(q) = quota.limit(m) else { continue };
        let u = usage.of(m, branch);
        let marks = thresholds.iter().copied().map(|t| (t, AlertType::ThresholdReached));
        for (t, kind) in marks.chain(std::iter::once((0, AlertType::QuotaExceeded))) {
            let pct = if t == 0 { 100 } else { t };
            let fired = |f: &Fired| f.metric == m && f.branch.as_deref() == branch && f.threshold == t && f.quota == q;
            if !reached(u, q, pct) || s.fired.iter().any(fired) {
                continue;
            }
            s.fired.push(Fired {
                metric: m,
                threshold: t,
                quota: q,
                cycle_start_ms: cycle.start_ms,
                branch: branch.map(str::to_owned),
            });
            let id =
                format!("{project_id}.{}.{}.{}.{t}.{q}", cycle.start_ms / 1000, subject_name(m, branch), kind.name());
            alerts.push(alert(kind, Some(m), branch, (t != 0).then_some(t), u, Some(q), id));
        }
    }
    let over = Metric::COUNTERS.into_iter().find_map(|m| {
        let q = quota.limit(m)?;
        (usage.get(m) >= q).then_some((m, usage.get(m), q))
    });
    let mut actions = Vec::new();
    let action = |kind, branch: Option<&str>, key: &str, metric, reason: &str| Action {
        kind,
        project_id: project_id.to_owned(),
        branch_id: branch.map(str::to_owned),
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
            actions.push(action(ActionKind::Suspend, None, &key, m, "quota_exceeded"));
            let mut a = alert(AlertType::ProjectSuspended, Some(m), None, None, u, Some(q), format!("{key}.event"));
            a.reason = Some("quota_exceeded".into());
            alerts.push(a);
            s.suspended = Some(Suspension { metric: m, usage: u, quota: q, since_ms: now_ms, key });
        }
        (Some(sus), None) => {
            let key = sus.key.replacen("suspend.", "resume.", 1);
            let reason = match () {
                // Suspended for storage before the storage quota applied to each branch.
                _ if sus.metric.counter_index().is_none() => "storage_quota_is_per_branch",
                _ if new_cycle => "new_cycle",
                // The same quota, less usage: a negative adjustment.
                _ if quota.limit(sus.metric) == Some(sus.quota) => "usage_adjusted",
                _ => "quota_raised",
            };
            actions.push(action(ActionKind::Resume, None, &key, sus.metric, reason));
            let mut a = alert(
                AlertType::ProjectResumed,
                Some(sus.metric),
                None,
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
    // Branches: unblock those back under the storage quota, block those over it.
    let size_limit = quota.limit(Metric::LogicalSizeBytes);
    let m = Metric::LogicalSizeBytes;
    let (mut still, mut unblocked) = (Vec::new(), Vec::new());
    for b in std::mem::take(&mut s.blocked) {
        let u = usage.of(m, Some(&b.branch));
        if size_limit.is_some_and(|q| u >= q) {
            still.push(b);
        } else {
            unblocked.push((b, u));
        }
    }
    s.blocked = still;
    for (b, u) in unblocked {
        let key = b.key.replacen("block_writes.", "unblock_writes.", 1);
        let reason = if size_limit == Some(b.quota) { "size_reduced" } else { "quota_raised" };
        actions.push(action(ActionKind::UnblockWrites, Some(&b.branch), &key, m, reason));
        let mut a = alert(
            AlertType::BranchWritesUnblocked,
            Some(m),
            Some(&b.branch),
            None,
            u,
            size_limit,
            format!("{key}.event"),
        );
        a.reason = Some(reason.into());
        alerts.push(a);
    }
    if let Some(q) = size_limit {
        for (branch, u) in &usage.branches {
            if *u < q || s.blocked.iter().any(|b| b.branch == *branch) {
                continue;
            }
            s.blocks += 1;
            let key = format!("block_writes.{project_id}.{}.{}", subject_name(m, Some(branch)), s.blocks);
            actions.push(action(ActionKind::BlockWrites, Some(branch), &key, m, "quota_exceeded"));
            let mut a =
                alert(AlertType::BranchWritesBlocked, Some(m), Some(branch), None, *u, Some(q), format!("{key}.event"));
            a.reason = Some("quota_exceeded".into());
            alerts.push(a);
            s.blocked.push(BranchBlock { branch: branch.clone(), usage: *u, quota: q, since_ms: now_ms, key });
        }
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

/// The name of what a quota is judged on in ids: the metric, and for the
/// storage quota the branch (`logical_size_bytes@br-main`; `@` alone for
/// readings that name no branch).
fn subject_name(m: Metric, branch: Option<&str>) -> String {
    match branch {
        Some(b) => format!("{m}@{b}"),
        None => m.to_string(),
    }
}

#[cfg(test)]
mod tests;
