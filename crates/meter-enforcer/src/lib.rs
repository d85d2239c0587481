//! The enforce role. Three loops:
//!
//! - the **enforcer** follows the cycle totals (`usage.totals`) and the
//!   configuration, evaluates each project (`meter_core::enforce`), and
//!   records the new enforcement state together with the suspend/resume
//!   calls and webhook events to make, in one Kafka transaction (an outbox);
//! - the **actuator** makes the control-plane calls with an idempotency key,
//!   projects side by side, one project's calls in order, as soon as the
//!   enforcer hands them over in process after its commit (their records in
//!   the actions topic stay the durable copy); answers that can
//!   change are retried, the others recorded as failed;
//! - the **dispatcher** delivers webhook events per endpoint, signed per
//!   Standard Webhooks, on a durable retry schedule over hours, then
//!   dead-lettered; endpoints failing for days are disabled.
//!
//! Decisions are deterministic (same inputs, same keys and ids), so a
//! decision replayed after a crash is recognised downstream.

mod actuator;
mod config;
mod dispatch;
mod enforcer;
mod metrics;
mod records;
pub mod sign;

pub use config::EnforcerConfig;
pub use records::{AlertData, CallOutcome, CallRecord, DeadLetter, WebhookJob, WebhookPayload};

use std::sync::{Arc, RwLock};

use meter_core::config_view::ConfigView;
use meter_core::target::AddressClass;
use meter_kafka::{Follower, KafkaConfig};
use meter_runtime::{Clock, Health};
use tokio_util::sync::CancellationToken;

/// Follows the config topic into a shared view; every applied key is also
/// sent on the returned channel.
pub fn follow_config(
    kafka: &KafkaConfig,
) -> anyhow::Result<(Follower, Arc<RwLock<ConfigView>>, std::sync::mpsc::Receiver<meter_core::config_view::ConfigKey>)>
{
    let view = Arc::new(RwLock::new(ConfigView::default()));
    let (tx, rx) = std::sync::mpsc::channel();
    let v = view.clone();
    let follower = Follower::start(kafka, &kafka.config_topic, move |(_, _, key, value)| {
        match v.write().expect("config lock").apply(key, value) {
            Ok(k) => {
                let _ = tx.send(k);
            }
            Err(e) => tracing::error!(error = %e, "enforcer.bad_config_record"),
        }
    })?;
    Ok((follower, view, rx))
}

/// Runs the enforce role (enforcer, actuator, dispatcher) until `shutdown`.
pub async fn run(
    cfg: &EnforcerConfig,
    kafka: &KafkaConfig,
    webhook_targets: &[AddressClass],
    clock: Arc<dyn Clock>,
    health: Health,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    crate::metrics::describe();
    let (follower, view, changes) = follow_config(kafka)?;
    if !follower.wait_caught_up(std::time::Duration::from_secs(60)).await {
        anyhow::bail!("could not read the config topic {} to its end within 60 s", kafka.config_topic);
    }
    let ready = health.part("enforcer");
    let rt = tokio::runtime::Handle::current();
    let (handoff, handed) = std::sync::mpsc::channel();
    let enforcer =
        enforcer::Enforcer::new(cfg.clone(), kafka.clone(), clock, view.clone(), changes, handoff, shutdown.clone());
    let mut parts = tokio::task::JoinSet::new();
    parts.spawn_blocking(move || ("enforcer", enforcer.run(ready)));
    {
        let (c, k, s, rt) = (cfg.clone(), kafka.clone(), shutdown.clone(), rt.clone());
        parts.spawn_blocking(move || ("actuator", actuator::run(&c, &k, handed, &rt, &s)));
    }
    {
        let (c, k, s, v, t) = (cfg.clone(), kafka.clone(), shutdown.clone(), view.clone(), webhook_targets.to_vec());
        parts.spawn_blocking(move || ("dispatcher", dispatch::run(&c, &k, &t, v, &rt, &s)));
    }
    // The first part to end ends the role: the others are stopped, and its
    // failure is returned as soon as they have, so meterd exits and its
    // supervisor starts it again. (Waiting for all three kept a process whose enforcer had
    // failed alive, deciding nothing, with its actuator and dispatcher
    // running: found by the long cluster chaos run.)
    let mut failure = None;
    while let Some(joined) = parts.join_next().await {
        let (name, result) = joined?;
        if let Err(e) = result {
            failure.get_or_insert(e.context(format!("{name} failed")));
        }
        shutdown.cancel();
    }
    drop(follower);
    failure.map_or(Ok(()), Err)
}
