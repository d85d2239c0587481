//! The webhook dispatcher: delivers each event to every endpoint that wants
//! it, signed, retried with backoff; what fails every attempt becomes a dead
//! letter. The record's offset is committed once every endpoint is done, so
//! a crash redelivers (at least once, same `webhook-id`).

use meter_core::retry::{Backoff, RetryPolicy};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use futures::future::join_all;
use meter_core::config_view::{ConfigView, WebhookEndpoint};
use meter_core::target::AddressClass;
use meter_kafka::KafkaConfig;
use meter_runtime::{check_webhook_url, GuardedResolver};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;
use crate::outbox::next_json;
use crate::{sign, DeadLetter, EnforcerConfig, WebhookJob, WebhookPayload};
use meter_runtime::now_ms;

pub(crate) fn run(
    cfg: &EnforcerConfig,
    kafka: &KafkaConfig,
    targets: &[AddressClass],
    view: Arc<RwLock<ConfigView>>,
    rt: &Handle,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    let consumer: BaseConsumer = kafka.consumer_config(&cfg.webhook_group_id).create()?;
    consumer.subscribe(&[&kafka.webhooks_topic])?;
    let producer: FutureProducer =
        kafka.client_config().set("enable.idempotence", "true").set("acks", "all").create()?;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(cfg.webhook_timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(GuardedResolver::new(targets)))
        .build()?;
    while !shutdown.is_cancelled() {
        let Some((msg, job)) = next_json::<WebhookJob>(&consumer, "webhooks")? else { continue };
        let endpoints: Vec<WebhookEndpoint> = view
            .read()
            .expect("config lock")
            .webhooks
            .values()
            .filter(|w| job.only_endpoint.as_ref().map_or(w.wants(job.alert.kind), |only| &w.id == only))
            .cloned()
            .collect();
        let body = serde_json::to_vec(&WebhookPayload::of(&job.alert))?;
        let outcomes =
            rt.block_on(join_all(endpoints.iter().map(|w| deliver(cfg, &client, targets, w, &job, &body, shutdown))));
        for (w, outcome) in endpoints.iter().zip(outcomes) {
            match outcome {
                Delivery::Delivered | Delivery::Stopped => {}
                Delivery::Failed { attempts, last_error } => {
                    let dead = DeadLetter {
                        job: WebhookJob { alert: job.alert.clone(), only_endpoint: Some(w.id.clone()) },
                        endpoint_id: w.id.clone(),
                        attempts,
                        last_error,
                        failed_ms: now_ms(),
                    };
                    let (key, value) = (dead.key(), serde_json::to_vec(&dead)?);
                    rt.block_on(producer.send(
                        FutureRecord::to(&kafka.dead_letters_topic).key(&key).payload(&value),
                        Duration::from_secs(30),
                    ))
                    .map_err(|(e, _)| anyhow::anyhow!("writing dead letter {key}: {e}"))?;
                    metrics::counter!(m::DEAD_LETTERS).increment(1);
                    tracing::warn!(key, attempts, "webhook.dead_lettered");
                }
            }
        }
        if shutdown.is_cancelled() {
            break; // not committed: delivered again after restart
        }
        consumer.commit_message(&msg, CommitMode::Sync)?;
    }
    Ok(())
}

enum Delivery {
    Delivered,
    Failed { attempts: u32, last_error: String },
    Stopped,
}

/// Delivers to one endpoint; a target that is not allowed (an internal
/// address, see `security.webhook_allowed_targets`) is dead-lettered at once.
async fn deliver(
    cfg: &EnforcerConfig,
    client: &reqwest::Client,
    targets: &[AddressClass],
    endpoint: &WebhookEndpoint,
    job: &WebhookJob,
    body: &[u8],
    shutdown: &CancellationToken,
) -> Delivery {
    if let Err(e) = check_webhook_url(&endpoint.url, targets).await {
        tracing::warn!(endpoint = %endpoint.id, error = %e, "webhook.target_refused");
        metrics::counter!(m::WEBHOOKS, "outcome" => "refused").increment(1);
        metrics::counter!(m::WEBHOOKS, "outcome" => "dead_letter").increment(1);
        return Delivery::Failed { attempts: 0, last_error: format!("target refused: {e}") };
    }
    let mut backoff = Backoff::new(RetryPolicy {
        initial: Duration::from_millis(cfg.webhook_backoff_ms),
        max: Duration::from_millis(cfg.webhook_max_backoff_ms),
    });
    let mut last_error = String::new();
    for attempt in 1..=cfg.webhook_max_attempts {
        let ts = now_ms() / 1000;
        let signature = match sign::sign(&endpoint.secret, &job.alert.id, ts, body) {
            Ok(s) => s,
            Err(e) => return Delivery::Failed { attempts: attempt, last_error: e.to_string() },
        };
        let sent = client
            .post(&endpoint.url)
            .header("content-type", "application/json")
            .header("webhook-id", &job.alert.id)
            .header("webhook-timestamp", ts.to_string())
            .header("webhook-signature", signature)
            .body(body.to_vec())
            .send()
            .await;
        match sent {
            Ok(r) if r.status().is_success() => {
                metrics::counter!(m::WEBHOOKS, "outcome" => "delivered").increment(1);
                return Delivery::Delivered;
            }
            Ok(r) => last_error = format!("status {}", r.status()),
            Err(e) => last_error = e.to_string(),
        }
        if attempt == cfg.webhook_max_attempts {
            break;
        }
        metrics::counter!(m::WEBHOOKS, "outcome" => "retry").increment(1);
        tracing::debug!(endpoint = %endpoint.id, id = %job.alert.id, attempt, error = %last_error, "webhook.retry");
        tokio::select! {
            _ = shutdown.cancelled() => return Delivery::Stopped,
            _ = tokio::time::sleep(backoff.next(rand::random(), None)) => {}
        }
    }
    metrics::counter!(m::WEBHOOKS, "outcome" => "dead_letter").increment(1);
    Delivery::Failed { attempts: cfg.webhook_max_attempts, last_error }
}
