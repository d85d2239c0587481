//! Enforcement under faults: while the load runs, quotas are set just above
//! a project's current usage (so it crosses them a few seconds later, in the
//! middle of whatever fault comes next) and some suspended projects get
//! their quota raised (a resume). At the end, the control-plane double must
//! agree with the exact totals: every project at or over its quota is
//! suspended, every other one is not, no project without a quota saw a
//! call, and no suspension episode was decided twice: a project's second
//! suspension needs a resume between (distinct suspend keys <= 1 + distinct
//! resume keys), and a resume needs a quota change after the first (usage
//! never falls within a cycle). The harness cannot tell a raise from a
//! lowering reliably (its view of usage lags the enforcer's), so it counts
//! changes, not raises. Alerts go to a
//! webhook receiver that fails every first attempt: each suspension must
//! have its `project.suspended` alert delivered, every delivery must carry
//! a valid signature, and no threshold may fire twice for one quota.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use meter_sim::receivers::{ControlPlane, FailMode, WebhookReceiver};
use rand::rngs::SmallRng;
use rand::seq::IndexedRandom;
use rand::Rng;
use serde_json::{json, Value};

/// What the harness did to one project's quota.
#[derive(Debug, Clone, Copy)]
struct QuotaSet {
    active_time_seconds: u64,
    /// Quota changes after the first: each may end a suspension.
    changes: u32,
}

/// The quota driver and the control-plane double it checks.
pub(crate) struct Quotas {
    api: String,
    http: reqwest::Client,
    pub(crate) control_plane: ControlPlane,
    pub(crate) hooks: WebhookReceiver,
    set: BTreeMap<String, QuotaSet>,
    pub(crate) changes: usize,
}

/// The enforcement part of the report.
#[derive(Debug, Default)]
pub struct EnforcementReport {
    pub quotas_set: usize,
    pub quota_changes: usize,
    pub over_quota: usize,
    pub suspend_calls: usize,
    pub resume_calls: usize,
    /// Calls that repeated an idempotency key already received (allowed:
    /// the actuator retries until 2xx; the key makes them one).
    pub repeated_keys: usize,
    /// Webhook deliveries accepted (after the receiver's refusals).
    pub alerts_delivered: usize,
    /// Crossing batch ingested -> control-plane call, seconds, sorted.
    pub suspend_latency_s: Vec<f64>,
    /// The same, for crossings ingested while ClickHouse was down.
    pub suspend_latency_in_outage_s: Vec<f64>,
    /// The slowest crossing: its project, and when (unix ms) its newest
    /// batch was ingested, the enforcer decided, and the control plane was
    /// called (set beside the faults' times, it says which one it met).
    pub slowest: Option<(String, [i64; 3])>,
    pub mismatches: Vec<String>,
}

impl Quotas {
    /// Starts the control-plane double and the webhook receiver on the
    /// given loopback ports and registers the receiver through the API.
    pub(crate) async fn start(
        api: String,
        control_plane_port: u16,
        stop: &tokio_util::sync::CancellationToken,
    ) -> anyhow::Result<Quotas> {
        let control_plane = ControlPlane::default();
        let l = tokio::net::TcpListener::bind(("127.0.0.1", control_plane_port)).await?;
        tokio::spawn(control_plane.clone().serve(l, stop.clone()));
        let hooks = WebhookReceiver::new(&meter_sim::receivers::new_secret(), FailMode::FirstAttempt);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}/", l.local_addr()?);
        tokio::spawn(hooks.clone().serve(l, stop.clone()));
        let http = reqwest::Client::builder().timeout(Duration::from_secs(5)).build()?;
        // Next to the healthy receiver, one that hangs (no answer until the
        // dispatcher's timeout) and one that is gone (connection refused):
        // the healthy one must still get every alert.
        let hanging = WebhookReceiver::new(&hooks.secret, FailMode::Hang);
        let l = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let hanging_url = format!("http://{}/", l.local_addr()?);
        tokio::spawn(hanging.serve(l, stop.clone()));
        let gone_url = format!("http://127.0.0.1:{}/", crate::free_port()?);
        for (id, url) in [("chaos", url), ("chaos-hanging", hanging_url), ("chaos-gone", gone_url)] {
            let r = http
                .put(format!("{api}/v1/webhooks/{id}"))
                .json(&json!({"url": url, "secret": hooks.secret}))
                .send()
                .await?;
            anyhow::ensure!(r.status().is_success(), "registering the {id} endpoint: {}", r.status());
        }
        Ok(Quotas { api, http, control_plane, hooks, set: BTreeMap::new(), changes: 0 })
    }

    /// The project's status from the API (`None` when it cannot answer yet).
    async fn status(&self, project: &str) -> Option<Value> {
        let r = self.http.get(format!("{}/v1/projects/{project}/status", self.api)).send().await.ok()?;
        if !r.status().is_success() {
            return None;
        }
        r.json().await.ok()
    }

    async fn put_quota(&mut self, project: &str, active_time_seconds: u64) -> anyhow::Result<()> {
        let body = json!({"quota": {"active_time_seconds": active_time_seconds}});
        let r = self.http.patch(format!("{}/v1/projects/{project}/quota", self.api)).json(&body).send().await?;
        anyhow::ensure!(r.status().is_success(), "PATCH quota of {project}: {}", r.status());
        self.changes += 1;
        Ok(())
    }

    fn last_verb(&self, project: &str) -> Option<String> {
        let calls = self.control_plane.calls.lock().expect("calls");
        calls.iter().rev().find(|c| c.project_id == project).map(|c| c.verb.clone())
    }

    /// One step between faults: a quota for a project that has none, and
    /// sometimes a raise for a suspended one. Failures (the API restarting)
    /// skip the step; they are not faults of the pipeline.
    pub(crate) async fn step(&mut self, rng: &mut SmallRng, projects: &[String]) {
        let fresh: Vec<&String> = projects.iter().filter(|p| !self.set.contains_key(*p)).collect();
        // Half of the fleet gets a quota; the other half must never be called.
        if self.set.len() < projects.len() / 2 {
            if let Some(p) = fresh.choose(rng).map(|p| (*p).clone()) {
                self.set_above_usage(&p, rng, 5..=90).await;
            }
        }
        if rng.random_bool(0.3) {
            let suspended: Vec<String> =
                self.set.keys().filter(|p| self.last_verb(p).as_deref() == Some("suspend")).cloned().collect();
            if let Some(p) = suspended.choose(rng) {
                self.set_above_usage(p, rng, 5..=90).await;
            }
        }
    }

    /// A quota a few seconds of active time above a project's usage, for a
    /// project with a quota that is not suspended now (or, while fewer than
    /// half have one, a fresh project): it crosses soon. The other half of
    /// the fleet keeps no quota.
    pub(crate) async fn cross_soon(&mut self, rng: &mut SmallRng, projects: &[String]) {
        let mut open: Vec<String> =
            self.set.keys().filter(|p| self.last_verb(p).as_deref() != Some("suspend")).cloned().collect();
        if open.is_empty() && self.set.len() < projects.len() / 2 {
            open = projects.iter().filter(|p| !self.set.contains_key(*p)).cloned().collect();
        }
        if let Some(p) = open.choose(rng) {
            self.set_above_usage(p, rng, 2..=8).await;
        }
    }

    /// A quota `margin` seconds of active time above `project`'s usage.
    async fn set_above_usage(&mut self, project: &str, rng: &mut SmallRng, margin: std::ops::RangeInclusive<u64>) {
        let Some(status) = self.status(project).await else { return };
        let Some(usage) = status["usage"]["active_time_seconds"].as_u64() else { return };
        let quota = usage + rng.random_range(margin);
        if let Err(e) = self.put_quota(project, quota).await {
            tracing::warn!(error = %e, "chaos.quota_not_set");
            return;
        }
        let changes = self.set.get(project).map_or(0, |s| s.changes + 1);
        self.set.insert(project.to_owned(), QuotaSet { active_time_seconds: quota, changes });
    }

    /// Compares the control plane's calls with the exact usage, waiting up
    /// to `wait` for the enforcer to catch up.
    pub(crate) async fn check(&self, projects: &[String], wait: Duration, outages: &[(i64, i64)]) -> EnforcementReport {
        let deadline = Instant::now() + wait;
        loop {
            let r = self.compare(projects, outages).await;
            if r.mismatches.is_empty() || Instant::now() > deadline {
                return r;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }

    async fn compare(&self, projects: &[String], outages: &[(i64, i64)]) -> EnforcementReport {
        let calls = self.control_plane.calls.lock().expect("calls").clone();
        let mut r = EnforcementReport {
            quotas_set: self.set.len(),
            quota_changes: self.changes,
            suspend_calls: calls.iter().filter(|c| c.verb == "suspend").count(),
            resume_calls: calls.iter().filter(|c| c.verb == "resume").count(),
            ..EnforcementReport::default()
        };
        let mut keys = BTreeSet::new();
        for c in &calls {
            if !keys.insert((c.verb.clone(), c.idempotency_key.clone())) {
                r.repeated_keys += 1;
            }
        }
        let mut first_key_call = BTreeSet::new();
        let mut slowest = f64::MIN;
        for c in calls.iter().filter(|c| c.verb == "suspend") {
            if let Some(a) = c.action.as_ref().filter(|_| first_key_call.insert(c.idempotency_key.clone())) {
                let latency = (c.received_ms - a.crossing_ingested_ms) as f64 / 1000.0;
                if latency > slowest {
                    slowest = latency;
                    r.slowest = Some((c.project_id.clone(), [a.crossing_ingested_ms, a.decided_ms, c.received_ms]));
                }
                r.suspend_latency_s.push(latency);
                if outages.iter().any(|(from, to)| (*from..=*to).contains(&a.crossing_ingested_ms)) {
                    r.suspend_latency_in_outage_s.push(latency);
                }
            }
        }
        r.suspend_latency_s.sort_by(f64::total_cmp);
        r.suspend_latency_in_outage_s.sort_by(f64::total_cmp);
        // A run that suspended nothing proves nothing about enforcement.
        if !self.set.is_empty() && r.suspend_calls == 0 {
            r.mismatches.push(format!("{} quotas set but no project was suspended", self.set.len()));
        }
        if !outages.is_empty() && r.suspend_latency_in_outage_s.is_empty() {
            r.mismatches.push("no crossing made while ClickHouse was down was suspended".into());
        }
        self.compare_alerts(&keys, &mut r);
        for p in projects {
            let keys_of = |verb: &str| {
                let prefix = format!("{verb}.{p}.");
                keys.iter().filter(|(v, k)| v == verb && k.starts_with(&prefix)).count()
            };
            let (episodes, resumes) = (keys_of("suspend"), keys_of("resume"));
            let Some(q) = self.set.get(p) else {
                if calls.iter().any(|c| &c.project_id == p) {
                    r.mismatches.push(format!("{p} has no quota but the control plane was called for it"));
                }
                continue;
            };
            let Some(usage) = self.status(p).await.and_then(|s| s["usage"]["active_time_seconds"].as_u64()) else {
                r.mismatches.push(format!("{p}: no status from the API"));
                continue;
            };
            let over = usage >= q.active_time_seconds;
            r.over_quota += usize::from(over);
            let suspended = self.last_verb(p).as_deref() == Some("suspend");
            if over != suspended {
                r.mismatches.push(format!(
                    "{p}: usage {usage}, quota {}, but the control plane's last call is {:?}",
                    q.active_time_seconds,
                    self.last_verb(p)
                ));
            }
            if episodes > 1 + resumes {
                r.mismatches.push(format!("{p}: {episodes} suspensions decided with {resumes} resumes between"));
            }
            if resumes > q.changes as usize {
                r.mismatches.push(format!("{p}: {resumes} resumes for {} quota changes", q.changes));
            }
        }
        r
    }

    /// Invariant 5 and the alert of every suspension.
    fn compare_alerts(&self, keys: &BTreeSet<(String, String)>, r: &mut EnforcementReport) {
        let all = self.hooks.all();
        if let Some(d) = all.iter().find(|d| !d.verified) {
            r.mismatches.push(format!("webhook {} arrived with a signature that does not verify", d.id));
        }
        let accepted = self.hooks.accepted();
        r.alerts_delivered = accepted.len();
        // (project, type, metric, threshold, quota, cycle) -> alert ids
        type Firing<'a> = (String, &'a str, String, u8, Option<u64>, String);
        let mut fired: BTreeMap<Firing, BTreeSet<String>> = BTreeMap::new();
        let mut ids = BTreeSet::new();
        for a in accepted.iter().filter_map(|d| d.payload.as_ref()).map(|p| &p.data) {
            ids.insert(a.id.clone());
            if let Some(t) = a.threshold {
                let metric = a.metric.map_or("", |m| m.name()).to_owned();
                // A resolution is of the quota the threshold fired at, which its
                // id names last; `quota` is the limit now (a quota moved twice
                // resolves two firings under the same new limit).
                let quota = match a.kind {
                    meter_core::enforce::AlertType::ThresholdResolved => {
                        a.id.rsplit('.').next().and_then(|q| q.parse().ok())
                    }
                    _ => a.quota,
                };
                fired
                    .entry((a.project_id.clone(), a.kind.name(), metric, t, quota, a.cycle_start.clone()))
                    .or_default()
                    .insert(a.id.clone());
            }
        }
        for ((p, kind, m, t, q, _), set) in fired.iter().filter(|(_, s)| s.len() > 1) {
            r.mismatches.push(format!("{p} {kind} {m} {t}% of quota {q:?} fired {} times: {set:?}", set.len()));
        }
        for (_, key) in keys.iter().filter(|(v, _)| v == "suspend") {
            if !ids.contains(&format!("{key}.event")) {
                r.mismatches.push(format!("suspension {key} has no delivered project.suspended alert"));
            }
        }
    }
}
