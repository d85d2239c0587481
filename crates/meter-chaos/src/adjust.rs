//! Adjustments under faults: a client of the api that adds small positive
//! corrections of `written_data_bytes` to random projects while the faults
//! run, retrying each with the same idempotency key until the api gives a
//! definite answer (as a billing system would), and keeps a ledger of
//! what was applied. At the end the totals topic must hold usage plus the
//! ledger, and `usage_adjustments` exactly the ledger.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// Applied adjustments per project, and how many requests it took.
#[derive(Debug, Default, Clone)]
pub(crate) struct Ledger {
    pub(crate) applied: BTreeMap<String, u64>,
    pub(crate) made: u64,
    pub(crate) retries: u64,
}

pub(crate) struct Adjuster {
    stop: CancellationToken,
    task: JoinHandle<()>,
    ledger: Arc<Mutex<Ledger>>,
}

impl Adjuster {
    /// Starts adjusting `projects` through the api at `api` every ~300 ms.
    pub(crate) fn start(api: String, projects: Vec<String>, seed: u64) -> Adjuster {
        let stop = CancellationToken::new();
        let ledger = Arc::new(Mutex::new(Ledger::default()));
        let (s, l) = (stop.clone(), ledger.clone());
        let task = tokio::spawn(async move {
            let http = reqwest::Client::builder().timeout(Duration::from_secs(15)).build().expect("http client");
            let mut rng = SmallRng::seed_from_u64(seed ^ 0xad1);
            let mut n = 0u64;
            while !s.is_cancelled() && !projects.is_empty() {
                n += 1;
                let project = &projects[rng.random_range(0..projects.len())];
                let delta = rng.random_range(1..=1000u64);
                let body = serde_json::json!({
                    "metric": "written_data_bytes", "delta": delta, "reason": "chaos",
                    "idempotency_key": format!("chaos-{n}"),
                });
                let url = format!("{api}/v1/projects/{project}/adjustments");
                if adjust_until_answered(&http, &url, &body, &l).await {
                    let mut g = l.lock().expect("ledger");
                    *g.applied.entry(project.clone()).or_default() += delta;
                    g.made += 1;
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        });
        Adjuster { stop, task, ledger }
    }

    /// Stops after the adjustment in flight has its answer; the ledger.
    pub(crate) async fn finish(self) -> Ledger {
        self.stop.cancel();
        let _ = self.task.await;
        self.ledger.lock().expect("ledger").clone()
    }
}

/// Posts `body` until the api answers it definitely: true when applied
/// (201, or 200 for a retry the first attempt already applied), false when
/// refused before anything was written (4xx: e.g. a project not known yet).
/// A 202 (written, not judged yet) or no answer is retried with the same key.
async fn adjust_until_answered(
    http: &reqwest::Client,
    url: &str,
    body: &serde_json::Value,
    ledger: &Mutex<Ledger>,
) -> bool {
    loop {
        match http.post(url).json(body).send().await.map(|r| r.status().as_u16()) {
            Ok(200 | 201) => return true,
            Ok(s @ 400..=499) => {
                tracing::info!(status = s, url, "chaos.adjustment_refused");
                return false;
            }
            _ => {
                ledger.lock().expect("ledger").retries += 1;
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
