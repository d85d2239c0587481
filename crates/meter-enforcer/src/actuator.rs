//! The actuator: makes each decided suspend/resume call on the control
//! plane, with its idempotency key, retrying with backoff until it is
//! acknowledged; only then is the record's offset committed.

use meter_core::retry::{Backoff, RetryPolicy};
use std::sync::Mutex;
use std::time::Duration;

use hdrhistogram::Histogram;
use meter_core::enforce::{Action, ActionKind};
use meter_kafka::KafkaConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;
use crate::outbox::next_json;
use crate::EnforcerConfig;
use meter_runtime::now_ms;

/// Latency of suspensions, microseconds, from 1 us to 1 h.
static LATENCY: Mutex<Option<Histogram<u64>>> = Mutex::new(None);

fn record_latency(seconds: f64) {
    metrics::histogram!(m::CROSSING_TO_SUSPEND).record(seconds);
    let mut guard = LATENCY.lock().expect("latency lock");
    let h = guard.get_or_insert_with(|| Histogram::new_with_bounds(1, 3_600_000_000, 3).expect("valid bounds"));
    let _ = h.record((seconds * 1e6).max(1.0) as u64);
    for (label, q) in [("50", 0.5), ("99", 0.99), ("99.9", 0.999)] {
        metrics::gauge!(m::CROSSING_TO_SUSPEND_Q, "percentile" => label).set(h.value_at_quantile(q) as f64 / 1e6);
    }
}

pub(crate) fn run(
    cfg: &EnforcerConfig,
    kafka: &KafkaConfig,
    rt: &Handle,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = kafka.consumer_config(&cfg.actuator_group_id).create()?;
    consumer.subscribe(&[&kafka.actions_topic])?;
    let client = reqwest::Client::builder().timeout(Duration::from_millis(cfg.control_plane_timeout_ms)).build()?;
    let base = cfg.control_plane_url.trim_end_matches('/');
    while !shutdown.is_cancelled() {
        let Some((msg, action)) = next_json::<Action>(&consumer, "actions")? else { continue };
        let verb = if action.kind == ActionKind::Suspend { "suspend" } else { "resume" };
        let url = format!("{base}/projects/{}/{verb}", action.project_id);
        let mut backoff =
            Backoff::new(RetryPolicy { initial: Duration::from_millis(100), max: Duration::from_secs(10) });
        let mut first = true;
        loop {
            let sent =
                rt.block_on(client.post(&url).header("Idempotency-Key", &action.idempotency_key).json(&action).send());
            if first && action.kind == ActionKind::Suspend {
                record_latency((now_ms() - action.crossing_ingested_ms).max(0) as f64 / 1000.0);
                first = false;
            }
            match sent {
                Ok(r) if r.status().is_success() => {
                    metrics::counter!(m::CALLS, "kind" => verb, "outcome" => "ok").increment(1);
                    tracing::info!(project = %action.project_id, verb, key = %action.idempotency_key, "actuator.acknowledged");
                    break;
                }
                other => {
                    let why = match other {
                        Ok(r) => format!("status {}", r.status()),
                        Err(e) => e.to_string(),
                    };
                    metrics::counter!(m::CALLS, "kind" => verb, "outcome" => "retry").increment(1);
                    let wait = backoff.next(rand::random(), None);
                    tracing::warn!(project = %action.project_id, verb, error = %why, retry_in_ms = wait.as_millis() as u64, "actuator.call_failed");
                    let stop = rt.block_on(async {
                        tokio::select! {
                            _ = shutdown.cancelled() => true,
                            _ = tokio::time::sleep(wait) => false,
                        }
                    });
                    if stop {
                        return Ok(());
                    }
                }
            }
        }
        consumer.commit_message(&msg, CommitMode::Sync)?;
    }
    Ok(())
}
