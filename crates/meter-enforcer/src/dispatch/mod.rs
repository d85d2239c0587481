//! The webhook dispatcher. Each event is split into one delivery per
//! endpoint that wants it, and each delivery follows the retry schedule on
//! its own, so a failing or slow endpoint never delays another's.
//!
//! - The **intake** (a consumer of `webhooks_topic` in the dispatchers'
//!   group) writes a record per new delivery to `deliveries_topic` (same
//!   partition as the event), then commits the event: it never waits for a
//!   receiver, so it keeps polling and its group rebalances promptly. On an
//!   assignment it restores the deliveries of its partitions from that
//!   compacted topic, so a restart neither loses nor restarts a schedule.
//! - The **sender** makes the due attempts, bounded per endpoint and in all,
//!   and writes each delivery's new state after every attempt; a delivery
//!   whose schedule is exhausted becomes a dead letter. An endpoint failing
//!   continuously for `webhook_disable_after_ms` is disabled.
//!
//! At least once: a crash between an attempt and its record repeats the
//! attempt, with the same `webhook-id`.

mod attempt;
mod book;

use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use meter_core::config_view::{ConfigKey, ConfigView, WebhookEndpoint};
use meter_core::delivery::{delivery_id, Delivery, DeliveryState};
use meter_core::target::AddressClass;
use meter_kafka::{read_latest, KafkaConfig, RebalanceWatch};
use meter_runtime::{now_ms, GuardedResolver};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;
use crate::{DeadLetter, EnforcerConfig, WebhookJob};
use attempt::Outcome;
use book::Book;

/// Events the intake takes in one go at most.
const INTAKE_BATCH: usize = 512;

/// What the intake and the sender share.
#[derive(Clone)]
struct Shared {
    cfg: EnforcerConfig,
    kafka: KafkaConfig,
    view: Arc<RwLock<ConfigView>>,
    book: Arc<Mutex<Book>>,
    /// Wakes the sender: new deliveries, or a slot freed.
    wake: Arc<tokio::sync::Notify>,
    producer: FutureProducer<meter_kafka::Quiet>,
}

impl Shared {
    /// Writes `d`'s record (and, when it died, its dead letter).
    async fn write(&self, partition: i32, d: &Delivery) -> anyhow::Result<()> {
        let value = serde_json::to_vec(d)?;
        let record = FutureRecord::to(&self.kafka.deliveries_topic).partition(partition).key(&d.id).payload(&value);
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("writing delivery {} to {}: {e}", d.id, self.kafka.deliveries_topic))?;
        if d.state == DeliveryState::Dead {
            let letter = serde_json::to_vec(&DeadLetter {
                job: WebhookJob { alert: d.alert.clone(), only_endpoint: Some(d.endpoint_id.clone()) },
                endpoint_id: d.endpoint_id.clone(),
                attempts: d.attempt_count,
                last_error: d.last_error(),
                failed_ms: d.updated_ms,
            })?;
            self.dead_letter(&d.id, Some(&letter)).await?;
            metrics::counter!(m::DEAD_LETTERS).increment(1);
            tracing::warn!(delivery = %d.id, attempts = d.attempt_count, error = %d.last_error(), "webhook.dead_lettered");
        }
        Ok(())
    }

    /// Writes (or, with `None`, removes) the dead letter of delivery `id`.
    async fn dead_letter(&self, id: &str, letter: Option<&[u8]>) -> anyhow::Result<()> {
        let mut record = FutureRecord::<str, [u8]>::to(&self.kafka.dead_letters_topic).key(id);
        if let Some(v) = letter {
            record = record.payload(v);
        }
        self.producer
            .send(record, Duration::from_secs(30))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("writing dead letter {id}: {e}"))?;
        Ok(())
    }

    fn endpoint(&self, id: &str) -> Option<WebhookEndpoint> {
        self.view.read().expect("config lock").webhooks.get(id).cloned()
    }

    /// Whether endpoint `id` exists and is enabled (asked for every
    /// endpoint at the head of the queue on each wake: no copy made).
    fn usable(&self, id: &str) -> bool {
        self.view.read().expect("config lock").webhooks.get(id).is_some_and(|w| !w.disabled)
    }
}

/// Runs the dispatcher (intake on this thread, sender on `rt`) until `shutdown`.
pub(crate) fn run(
    cfg: &EnforcerConfig,
    kafka: &KafkaConfig,
    targets: &[AddressClass],
    view: Arc<RwLock<ConfigView>>,
    rt: &Handle,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    anyhow::ensure!(!cfg.webhook_schedule_ms.is_empty(), "enforcer.webhook_schedule_ms: needs at least one attempt");
    anyhow::ensure!(
        cfg.webhook_concurrency > 0 && cfg.webhook_endpoint_concurrency > 0,
        "enforcer.webhook_concurrency and webhook_endpoint_concurrency: must be at least 1"
    );
    let producer: FutureProducer<meter_kafka::Quiet> = kafka
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create_with_context(meter_kafka::Quiet)?;
    let shared = Shared {
        cfg: cfg.clone(),
        kafka: kafka.clone(),
        view,
        book: Arc::new(Mutex::new(Book::new(cfg.webhook_concurrency, cfg.webhook_endpoint_concurrency))),
        wake: Arc::default(),
        producer,
    };
    let client = reqwest::Client::builder()
        .timeout(Duration::from_millis(cfg.webhook_timeout_ms))
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(Arc::new(GuardedResolver::new(targets)))
        .build()?;
    let sender = rt.spawn(send_loop(shared.clone(), client, targets.to_vec(), shutdown.clone()));
    let intake = intake_loop(&shared, rt, shutdown);
    if intake.is_err() {
        shutdown.cancel(); // the sender stops too
    }
    let sent = rt.block_on(sender);
    intake?;
    sent??;
    Ok(())
}

/// Consumes events, writes their deliveries, commits.
fn intake_loop(s: &Shared, rt: &Handle, shutdown: &CancellationToken) -> anyhow::Result<()> {
    let consumer: BaseConsumer<RebalanceWatch> =
        s.kafka.consumer_config(&s.cfg.webhook_group_id).create_with_context(RebalanceWatch::default())?;
    consumer.subscribe(&[&s.kafka.webhooks_topic])?;
    let mut generation = consumer.context().generation();
    let schedule = s.cfg.webhook_schedule();
    while !shutdown.is_cancelled() {
        let polled = consumer.poll(Duration::from_millis(100));
        if consumer.context().generation() != generation {
            generation = consumer.context().generation();
            let parts: Vec<i32> = consumer.assignment()?.elements().iter().map(|e| e.partition()).collect();
            let restored = read_latest(&s.kafka, &s.kafka.deliveries_topic, &parts, Duration::from_secs(120))?;
            let mut deliveries = Vec::new();
            for (p, records) in restored {
                for (key, value) in records {
                    match serde_json::from_slice::<Delivery>(&value) {
                        Ok(d) => deliveries.push((p, d)),
                        Err(e) => {
                            tracing::error!(key = %String::from_utf8_lossy(&key), error = %e, "webhook.undecodable_delivery")
                        }
                    }
                }
            }
            tracing::info!(partitions = ?parts, deliveries = deliveries.len(), "webhook.assigned");
            s.book.lock().expect("book").reassign(deliveries);
        }
        // A batch: what is ready now, up to INTAKE_BATCH events, taken in
        // one go (the records of every delivery written together, one
        // commit), so the intake's pace is not one broker round trip per event.
        let mut batch = Vec::new();
        let mut next = polled;
        loop {
            match next {
                None => break,
                Some(Err(KafkaError::PartitionEOF(_))) => {}
                Some(Err(e)) => {
                    meter_kafka::poll_error("webhooks", e)?;
                    break;
                }
                Some(Ok(msg)) => batch.push(msg.detach()),
            }
            if batch.len() >= INTAKE_BATCH || consumer.context().generation() != generation {
                break;
            }
            next = consumer.poll(Duration::ZERO);
        }
        if batch.is_empty() {
            continue;
        }
        let mut jobs = Vec::new();
        let mut offsets = TopicPartitionList::new();
        for msg in &batch {
            match serde_json::from_slice::<WebhookJob>(msg.payload().unwrap_or_default()) {
                Ok(job) => jobs.push((msg.partition(), job)),
                Err(e) => tracing::error!(error = %e, offset = msg.offset(), "webhook.undecodable_event"),
            }
            offsets.add_partition_offset(msg.topic(), msg.partition(), Offset::Offset(msg.offset() + 1))?;
        }
        rt.block_on(intake_all(s, &jobs, &schedule))?;
        // A failed commit only means these events are taken again, and
        // an event's deliveries are made once (`intake` skips existing ones).
        if let Err(e) = consumer.commit(&offsets, CommitMode::Sync) {
            tracing::info!(error = %e, events = batch.len(), "webhook.commit_failed");
        }
    }
    consumer.unsubscribe();
    Ok(())
}

/// The deliveries of many events, concurrently; events about the same
/// alert (an event and a resend of it) in the order they came.
async fn intake_all(
    s: &Shared,
    jobs: &[(i32, WebhookJob)],
    schedule: &meter_core::retry::Schedule,
) -> anyhow::Result<()> {
    let mut rest = jobs;
    while !rest.is_empty() {
        let mut seen = std::collections::HashSet::new();
        let n = rest.iter().take_while(|(_, job)| seen.insert(job.alert.id.as_str())).count();
        let (now, later) = rest.split_at(n);
        futures::future::try_join_all(now.iter().map(|(p, job)| intake(s, *p, job, schedule))).await?;
        rest = later;
    }
    Ok(())
}

/// The deliveries of one event: new ones for endpoints that want it and do
/// not have it yet; for a request to one endpoint, a fresh start.
async fn intake(
    s: &Shared,
    partition: i32,
    job: &WebhookJob,
    schedule: &meter_core::retry::Schedule,
) -> anyhow::Result<()> {
    let endpoints: Vec<WebhookEndpoint> = s
        .view
        .read()
        .expect("config lock")
        .webhooks
        .values()
        .filter(|w| job.only_endpoint.as_ref().map_or(w.wants(job.alert.kind), |only| &w.id == only))
        .cloned()
        .collect();
    let now = now_ms();
    let mut made = Vec::new();
    for w in endpoints {
        let id = delivery_id(&job.alert.id, &w.id);
        let existing = s.book.lock().expect("book").get(&id).cloned();
        let mut was_dead = false;
        let mut d = match (existing, job.only_endpoint.is_some()) {
            (Some(_), false) => continue, // seen before this restart's commit
            (Some(mut d), true) => {
                was_dead = d.state == DeliveryState::Dead;
                d.resend(now);
                d
            }
            (None, _) => Delivery::new(&job.alert, &w.id, now, schedule, rand::random()),
        };
        if w.disabled {
            d.end(DeliveryState::Dead, "endpoint disabled", now);
        }
        made.push((was_dead, d));
    }
    // Every endpoint's record at once: one round trip to the brokers per
    // event, not one per endpoint.
    let writes = made.iter().map(|(was_dead, d)| async move {
        s.write(partition, d).await?;
        if *was_dead && d.state == DeliveryState::Pending {
            s.dead_letter(&d.id, None).await?;
        }
        anyhow::Ok(())
    });
    futures::future::try_join_all(writes).await?;
    let mut book = s.book.lock().expect("book");
    for (_, d) in made {
        book.put(partition, d);
    }
    s.wake.notify_one();
    Ok(())
}

/// Makes the due attempts; ends the deliveries of deleted and disabled
/// endpoints; disables endpoints failing too long; forgets old deliveries.
async fn send_loop(
    s: Shared,
    client: reqwest::Client,
    targets: Vec<AddressClass>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    let schedule = s.cfg.webhook_schedule();
    let disable_after = Duration::from_millis(s.cfg.webhook_disable_after_ms);
    let retention_ms = s.cfg.webhook_delivery_retention_hours as i64 * 3_600_000;
    let mut tasks = tokio::task::JoinSet::new();
    let mut last_sweep = 0;
    while !shutdown.is_cancelled() {
        let now = now_ms();
        let usable = |id: &str| s.usable(id);
        let due = s.book.lock().expect("book").take_due(now, usable);
        for (partition, d) in due {
            let Some(endpoint) = s.endpoint(&d.endpoint_id) else { continue };
            let (s, client, targets, schedule) = (s.clone(), client.clone(), targets.clone(), schedule.clone());
            tasks.spawn(async move { send_one(&s, &client, &targets, &endpoint, partition, d, &schedule).await });
        }
        while let Some(done) = tasks.try_join_next() {
            done??;
        }
        if now - last_sweep >= 1000 {
            last_sweep = now;
            sweep(&s, now, disable_after, retention_ms).await?;
        }
        // Until something is due, a slot frees up or new deliveries come;
        // at least once a second for the sweep.
        let next = s.book.lock().expect("book").next_due(usable).unwrap_or(i64::MAX);
        let wait = (next - now_ms()).clamp(1, 1000) as u64;
        tokio::select! {
            _ = shutdown.cancelled() => {}
            _ = s.wake.notified() => {}
            _ = tokio::time::sleep(Duration::from_millis(wait)) => {}
        }
    }
    tasks.abort_all();
    Ok(())
}

async fn send_one(
    s: &Shared,
    client: &reqwest::Client,
    targets: &[AddressClass],
    endpoint: &WebhookEndpoint,
    partition: i32,
    mut d: Delivery,
    schedule: &meter_core::retry::Schedule,
) -> anyhow::Result<()> {
    match attempt::attempt(client, targets, endpoint, &d).await {
        Outcome::Refused(why) => {
            tracing::warn!(endpoint = %endpoint.id, error = %why, "webhook.target_refused");
            metrics::counter!(m::WEBHOOKS, "outcome" => "refused").increment(1);
            d.end(DeliveryState::Dead, &why, now_ms());
        }
        Outcome::Tried { attempt, retry_after } => {
            let error = attempt.error.clone();
            d.record(attempt, schedule, retry_after, rand::random());
            let outcome = match d.state {
                DeliveryState::Delivered => {
                    let age = (now_ms() - d.alert.occurred_ms).max(0) as f64 / 1000.0;
                    metrics::histogram!(m::WEBHOOK_LATENCY).record(age);
                    "delivered"
                }
                DeliveryState::Dead => "dead_letter",
                _ => "retry",
            };
            metrics::counter!(m::WEBHOOKS, "outcome" => outcome).increment(1);
            if let Some(e) = error {
                tracing::debug!(endpoint = %endpoint.id, delivery = %d.id, attempt = d.attempt_count, error = %e, next_ms = ?d.next_attempt_ms, "webhook.attempt_failed");
            }
        }
    }
    let ours = s.book.lock().expect("book").finish(partition, d.clone());
    s.wake.notify_one();
    if ours {
        s.write(partition, &d).await?;
    }
    Ok(())
}

/// The periodic chores of the sender.
async fn sweep(s: &Shared, now: i64, disable_after: Duration, retention_ms: i64) -> anyhow::Result<()> {
    // Deliveries to endpoints deleted or disabled since they were made.
    let stranded = s.book.lock().expect("book").stranded(|id| s.endpoint(id).is_none_or(|w| w.disabled));
    for (p, mut d) in stranded {
        let (state, why) = match s.endpoint(&d.endpoint_id) {
            None => (DeliveryState::Cancelled, "endpoint deleted"),
            Some(_) => (DeliveryState::Dead, "endpoint disabled"),
        };
        d.end(state, why, now);
        s.write(p, &d).await?;
        s.book.lock().expect("book").put(p, d);
    }
    // Endpoints failing for too long.
    let failing: Vec<String> = {
        let book = s.book.lock().expect("book");
        book.health.iter().filter(|(_, h)| h.failing_for(disable_after, now)).map(|(id, _)| id.clone()).collect()
    };
    for id in failing {
        let Some(mut w) = s.endpoint(&id).filter(|w| !w.disabled) else { continue };
        w.disabled = true;
        w.disabled_reason = Some(format!("every delivery failed for {} s", disable_after.as_secs()));
        let key = ConfigKey::Webhook(id.clone()).encode();
        let value = serde_json::to_vec(&w)?;
        s.producer
            .send(FutureRecord::to(&s.kafka.config_topic).key(&key).payload(&value), Duration::from_secs(30))
            .await
            .map_err(|(e, _)| anyhow::anyhow!("disabling endpoint {id}: {e}"))?;
        s.view.write().expect("config lock").apply(key.as_bytes(), Some(&value)).map_err(anyhow::Error::msg)?;
        metrics::counter!(m::ENDPOINTS_DISABLED).increment(1);
        tracing::warn!(endpoint = %id, after_s = disable_after.as_secs(), "webhook.endpoint_disabled");
    }
    // Finished deliveries past retention.
    let expired = s.book.lock().expect("book").expired(now - retention_ms);
    for (p, id) in expired {
        s.producer
            .send(
                FutureRecord::<str, [u8]>::to(&s.kafka.deliveries_topic).partition(p).key(&id),
                Duration::from_secs(30),
            )
            .await
            .map_err(|(e, _)| anyhow::anyhow!("forgetting delivery {id}: {e}"))?;
        s.book.lock().expect("book").remove(&id);
    }
    let pending = s.book.lock().expect("book").pending_by_endpoint();
    let endpoints: Vec<String> = s.view.read().expect("config lock").webhooks.keys().cloned().collect();
    for endpoint in endpoints {
        let n = pending.get(&endpoint).copied().unwrap_or(0);
        metrics::gauge!(m::WEBHOOK_PENDING, "endpoint" => endpoint).set(n as f64);
    }
    Ok(())
}
