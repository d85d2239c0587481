//! The quickstart's enforcement part: small quotas on some projects, a
//! control-plane double and a webhook receiver on loopback, alerts and
//! suspensions printed as they happen, and a final check against the truth.

use std::sync::Arc;
use std::time::Duration;

use meter_core::enforce::AlertType;
use meter_sim::receivers::{ControlPlane, FailMode, WebhookReceiver};
use meter_sim::Truth;
use serde_json::json;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

/// The quota given to the first projects of the fleet, at most.
const SMALL_ACTIVE_SECONDS: u64 = 20_000;

/// The plan's active-time quota for a fleet whose computes (`computes`
/// per project) each report `covered_seconds` of usage during the run
/// (`covered_seconds`): 20,000 s, or half of what a project's computes
/// report when that is less (early in a billing cycle the backfill is
/// short; with 1 s ticks a short run covers little), so that some
/// projects cross it.
pub(crate) fn small_active_seconds(covered_seconds: i64, computes: usize) -> u64 {
    let reported = covered_seconds.max(60) as u64 * computes as u64 / 2;
    SMALL_ACTIVE_SECONDS.min(reported.max(60))
}

/// Seconds of usage each compute reports in a run of `duration_s`: one
/// `span_s` per tick, from `backfill_s` back, never past the present.
pub(crate) fn covered_seconds(backfill_s: i64, duration_s: u64, tick_ms: u64, span_s: i64) -> i64 {
    let ticks = (duration_s * 1000 / tick_ms.max(1)) as i64;
    (ticks * span_s).min(backfill_s + duration_s as i64)
}

pub(crate) struct Enforcement {
    api: String,
    pub(crate) control_plane: ControlPlane,
    pub(crate) hooks: WebhookReceiver,
    quota_projects: Vec<String>,
    /// The plan's active-time quota.
    active_seconds: u64,
}

async fn put(api: &str, path: &str, body: serde_json::Value) -> anyhow::Result<()> {
    let r = reqwest::Client::new().put(format!("{api}{path}")).json(&body).send().await?;
    if !r.status().is_success() {
        anyhow::bail!("PUT {path}: {} {}", r.status(), r.text().await.unwrap_or_default());
    }
    Ok(())
}

impl Enforcement {
    /// Starts the receivers and configures the plan, the project quotas and
    /// the webhook endpoint through the API.
    pub(crate) async fn setup(
        api: &str,
        control_plane_listen: &str,
        webhook_listen: &str,
        prefix: &str,
        quota_projects: Vec<String>,
        active_seconds: u64,
        stop: &CancellationToken,
    ) -> anyhow::Result<Enforcement> {
        let control_plane = ControlPlane::default();
        let l = TcpListener::bind(control_plane_listen).await?;
        tokio::spawn(control_plane.clone().serve(l, stop.clone()));
        let secret = meter_sim::receivers::new_secret();
        let hooks = WebhookReceiver::new(&secret, FailMode::Never);
        let l = TcpListener::bind(webhook_listen).await?;
        tokio::spawn(hooks.clone().serve(l, stop.clone()));
        // A plan of this run's own: its quota follows this run's backfill,
        // and the projects of earlier runs on the same stack keep theirs.
        let plan = format!("{prefix}-small");
        put(api, &format!("/v1/plans/{plan}"), json!({"quota": {"active_time_seconds": active_seconds}})).await?;
        for p in &quota_projects {
            put(api, &format!("/v1/projects/{p}/quota"), json!({"plan": plan})).await?;
        }
        put(api, "/v1/webhooks/quickstart", json!({"url": format!("http://{webhook_listen}/"), "secret": secret}))
            .await?;
        println!(
            "quotas: {} projects on plan {plan} (active_time_seconds {active_seconds}); control plane double on {control_plane_listen}, webhook receiver on {webhook_listen}",
            quota_projects.len()
        );
        Ok(Enforcement { api: api.to_owned(), control_plane, hooks, quota_projects, active_seconds })
    }

    /// Prints alerts and control-plane calls as they arrive, until `finish`.
    pub(crate) async fn print_live(self: Arc<Self>, finish: CancellationToken) {
        let (mut seen_hooks, mut seen_calls) = (0, 0);
        loop {
            let done = finish.is_cancelled();
            let hooks = self.hooks.accepted();
            for d in &hooks[seen_hooks..] {
                if let Some(p) = &d.payload {
                    let a = &p.data;
                    let what = match (a.kind, a.threshold) {
                        (AlertType::ThresholdReached, Some(t)) => format!("{t}% of quota"),
                        _ => String::new(),
                    };
                    println!(
                        "  webhook  {:<26} {} {} {what} usage {} / {} (signature verified, id {})",
                        a.kind.name(),
                        a.project_id,
                        a.metric.map_or("", |m| m.name()),
                        a.usage,
                        a.quota.map_or("-".into(), |q| q.to_string()),
                        d.id
                    );
                }
            }
            seen_hooks = hooks.len();
            let calls = self.control_plane.calls.lock().expect("calls").clone();
            for c in &calls[seen_calls..] {
                let latency = c.action.as_ref().map(|a| (c.received_ms - a.crossing_ingested_ms) as f64 / 1000.0);
                println!(
                    "  control plane: {} {} (Idempotency-Key {}){}",
                    c.verb,
                    c.project_id,
                    c.idempotency_key,
                    latency
                        .filter(|_| c.verb == "suspend")
                        .map_or(String::new(), |l| format!(", {l:.3} s after the crossing batch was ingested"))
                );
            }
            seen_calls = calls.len();
            if done {
                return;
            }
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }

    fn over_quota<'a>(&'a self, truth: &Truth) -> Vec<&'a String> {
        self.quota_projects
            .iter()
            .filter(|p| truth.projects.get(*p).is_some_and(|t| t.counters[0] >= self.active_seconds))
            .collect()
    }

    fn suspended(&self) -> Vec<String> {
        let mut s: Vec<String> = self.control_plane.calls_of("suspend").into_iter().map(|c| c.project_id).collect();
        s.sort();
        s
    }

    /// Waits (up to 30 s) until every project over its quota is suspended.
    pub(crate) async fn settle(&self, truth: &Truth) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while self.suspended().len() < self.over_quota(truth).len() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }

    /// Prints the latency and checks suspensions against the ground truth.
    /// True when they agree.
    pub(crate) async fn report(&self, truth: &Truth) -> anyhow::Result<bool> {
        let over = self.over_quota(truth);
        let suspended = self.suspended();
        let mut lat: Vec<f64> = self
            .control_plane
            .calls_of("suspend")
            .iter()
            .filter_map(|c| c.action.as_ref().map(|a| (c.received_ms - a.crossing_ingested_ms) as f64 / 1000.0))
            .collect();
        lat.sort_by(f64::total_cmp);
        let q =
            |p: f64| lat.get(((lat.len() as f64 * p).ceil() as usize).saturating_sub(1)).copied().unwrap_or(f64::NAN);
        println!(
            "\nenforcement: {} of {} projects with a quota went over it and {} were suspended (one call each: {}); {} alerts delivered, all signatures verified",
            over.len(),
            self.quota_projects.len(),
            suspended.len(),
            if suspended.windows(2).all(|w| w[0] != w[1]) { "yes" } else { "NO" },
            self.hooks.accepted().len(),
        );
        if !lat.is_empty() {
            println!(
                "crossing-to-suspend latency (ingest of the crossing batch -> control-plane call): p50 {:.3} s, p99 {:.3} s, max {:.3} s over {} suspensions",
                q(0.5),
                q(0.99),
                lat.last().copied().unwrap_or(f64::NAN),
                lat.len()
            );
        }
        let mut expected: Vec<String> = over.iter().map(|s| s.to_string()).collect();
        expected.sort();
        let r =
            reqwest::get(format!("{}/v1/projects/{}/status", self.api, self.quota_projects.first().map_or("", |s| s)))
                .await;
        if let Ok(r) = r {
            if let Ok(body) = r.text().await {
                println!("GET /v1/projects/{}/status -> {body}", self.quota_projects.first().map_or("", |s| s));
            }
        }
        Ok(expected == suspended)
    }
}

#[cfg(test)]
mod tests {
    use super::small_active_seconds;

    #[test]
    fn the_quota_follows_a_short_backfill() {
        assert_eq!(small_active_seconds(24 * 3600, 2), 20_000, "a full day: the documented quota");
        assert_eq!(small_active_seconds(7_200, 2), 7_200, "two hours into a cycle: half of the backfill's usage");
        assert_eq!(small_active_seconds(0, 2), 60, "the first second of a cycle");
    }

    #[test]
    fn a_run_covers_what_its_ticks_reach() {
        use super::covered_seconds;
        assert_eq!(covered_seconds(86_400, 60, 100, 60), 36_000, "the quickstart's default run");
        assert_eq!(covered_seconds(7_200, 60, 100, 60), 7_260, "two hours into a cycle: caught up with the present");
        assert_eq!(covered_seconds(86_400, 20, 1_000, 60), 1_200, "1 s ticks: 20 spans in 20 s");
    }
}
