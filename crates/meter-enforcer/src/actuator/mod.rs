//! The actuator: makes each decided call on the control plane (suspend and
//! resume a project, block and unblock a branch's writes), with its
//! idempotency key. Calls for different projects run at
//! once (up to `actuator_concurrency`); one project's calls run in order, so
//! a resume never overtakes its suspend. Answers are classified
//! (`meter_core::retry::verdict`): 2xx done; no answer, 408, 429 (after its
//! `Retry-After`) and 5xx retried with backoff until done; any other answer
//! recorded as failed (metric, WARN, the project's status) without holding
//! anything else. A record's offset is committed once it and every record
//! before it in its partition are done. Calls handed over by the enforcer
//! in process are made before their records arrive (`handoff`, `job`).

mod handoff;
mod job;
mod queue;

use std::collections::HashSet;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use meter_core::enforce::{Action, ActionKind};
use meter_core::retry::{verdict, Backoff, RetryPolicy, Verdict};
use meter_kafka::{KafkaConfig, RebalanceWatch};
use meter_runtime::now_ms;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;
use crate::{CallOutcome, CallRecord, EnforcerConfig};
use handoff::{Handoffs, OnRecord};
use job::Job;
use queue::{Queue, Queued};

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

/// A call that ended (done or failed for good), for the bookkeeping.
struct Ended {
    generation: u64,
    project: String,
    partition: i32,
    offset: i64,
}

/// Which partitions of the actions topic this actuator reads, and how many
/// there are: a handed call is taken only when its record comes here too.
#[derive(Default)]
struct Owned {
    partitions: HashSet<i32>,
    count: i32,
}

impl Owned {
    fn of(consumer: &BaseConsumer<RebalanceWatch>, topic: &str) -> Owned {
        let partitions: HashSet<i32> = consumer
            .assignment()
            .map(|a| a.elements().iter().filter(|e| e.topic() == topic).map(|e| e.partition()).collect())
            .unwrap_or_default();
        if partitions.is_empty() {
            return Owned::default();
        }
        let count = meter_kafka::topic_partitions(consumer.client(), topic).map_or(0, |p| p.len() as i32);
        Owned { partitions, count }
    }

    /// The partition of `project`'s records (the enforcer's producer keys
    /// them by project; see `meter_core::partition`), when it is read here.
    fn of_project(&self, project: &str) -> Option<i32> {
        if self.count == 0 {
            return None;
        }
        let p = meter_core::partition::partition_of(project, self.count);
        self.partitions.contains(&p).then_some(p)
    }
}

pub(crate) fn run(
    cfg: &EnforcerConfig,
    kafka: &KafkaConfig,
    handoff: mpsc::Receiver<Vec<Action>>,
    rt: &Handle,
    shutdown: &CancellationToken,
) -> anyhow::Result<()> {
    anyhow::ensure!(cfg.actuator_concurrency > 0, "enforcer.actuator_concurrency: must be at least 1");
    let consumer: BaseConsumer<RebalanceWatch> =
        kafka.consumer_config(&cfg.actuator_group_id).create_with_context(RebalanceWatch::default())?;
    consumer.subscribe(&[&kafka.actions_topic])?;
    let client = reqwest::Client::builder().timeout(Duration::from_millis(cfg.control_plane_timeout_ms)).build()?;
    let producer: FutureProducer<meter_kafka::Quiet> = kafka
        .client_config()
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .create_with_context(meter_kafka::Quiet)?;
    let caller =
        Caller { client, producer, kafka: kafka.clone(), base: cfg.control_plane_url.trim_end_matches('/').into() };
    let (tx, rx) = mpsc::channel::<Ended>();
    let mut queue: Queue<Job> = Queue::default();
    let mut handoffs: Handoffs<watch::Receiver<bool>> = Handoffs::default();
    let mut owned = Owned::default();
    let mut last_prune = Instant::now();
    let mut generation = consumer.context().generation();
    while !shutdown.is_cancelled() {
        let polled = consumer.poll(Duration::from_millis(5));
        if consumer.context().generation() != generation {
            generation = consumer.context().generation();
            queue.clear();
            owned = Owned::of(&consumer, &kafka.actions_topic);
        }
        // Before the record polled: a call handed over while the poll waited
        // is taken first, and its record, if that is what came, waits for it.
        while let Ok(actions) = handoff.try_recv() {
            for action in actions {
                let Some(partition) = owned.of_project(&action.project_id) else { continue };
                let (done, waiter) = watch::channel(false);
                if handoffs.handed(&action.idempotency_key, waiter, Instant::now()) {
                    received(&action, "handoff");
                    queue.push_handed(&action.project_id.clone(), partition, Job::Handed(action, Arc::new(done)));
                }
            }
        }
        match polled {
            None | Some(Err(KafkaError::PartitionEOF(_))) => {}
            Some(Err(e)) => meter_kafka::poll_error("actuator", e)?,
            Some(Ok(msg)) => {
                let (partition, offset) = (msg.partition(), msg.offset());
                match serde_json::from_slice::<Action>(msg.payload().unwrap_or_default()) {
                    Ok(action) => {
                        let project = action.project_id.clone();
                        let job = match handoffs.read(&action.idempotency_key, Instant::now()) {
                            OnRecord::Await(done) => Job::AwaitHanded(action, done),
                            OnRecord::Call => {
                                received(&action, "topic");
                                Job::Call(action)
                            }
                        };
                        queue.push(&project, Queued { partition, offset, call: job })
                    }
                    Err(e) => {
                        // Skipped, in its place in the partition's order.
                        tracing::error!(error = %e, partition, offset, "actuator.undecodable_action");
                        queue.push(&format!("#undecodable/{partition}"), Queued { partition, offset, call: Job::Skip });
                    }
                }
            }
        }
        if last_prune.elapsed() > Duration::from_secs(10) {
            handoffs.prune(Instant::now());
            if owned.count == 0 {
                // The partition count could not be read at the assignment.
                owned = Owned::of(&consumer, &kafka.actions_topic);
            }
            last_prune = Instant::now();
        }
        while let Ok(ended) = rx.try_recv() {
            if ended.generation != generation {
                continue;
            }
            if let Some((partition, next)) = queue.done(&ended.project, ended.partition, ended.offset) {
                let mut tpl = TopicPartitionList::new();
                tpl.add_partition_offset(&kafka.actions_topic, partition, Offset::Offset(next))?;
                consumer.commit(&tpl, CommitMode::Async)?;
            }
        }
        for (project, q) in queue.start(cfg.actuator_concurrency) {
            let (caller, tx, stop) = (caller.clone(), tx.clone(), shutdown.clone());
            rt.spawn(async move {
                let finished = job::finish(q.call, |a| caller.call(a, &stop), &stop).await;
                if finished {
                    let _ = tx.send(Ended { generation, project, partition: q.partition, offset: q.offset });
                }
            });
        }
    }
    consumer.unsubscribe();
    Ok(())
}

/// A call reached the actuator `via` "handoff" or "topic": the time since
/// its decision.
fn received(action: &Action, via: &'static str) {
    let delay_ms = (now_ms() - action.decided_ms).max(0);
    metrics::histogram!(m::CALL_RECEIVED, "via" => via).record(delay_ms as f64 / 1000.0);
}

/// Makes calls.
#[derive(Clone)]
struct Caller {
    client: reqwest::Client,
    producer: FutureProducer<meter_kafka::Quiet>,
    kafka: KafkaConfig,
    base: String,
}

impl Caller {
    /// Makes `action`'s call until it is done or failed for good; false when
    /// `stop` came first (not done: called again after the restart).
    async fn call(&self, action: Action, stop: &CancellationToken) -> bool {
        let action = &action;
        let verb = action.kind.name();
        let url = call_url(&self.base, action);
        let mut backoff =
            Backoff::new(RetryPolicy { initial: Duration::from_millis(100), max: Duration::from_secs(10) });
        let mut attempts = 0u32;
        loop {
            attempts += 1;
            let sent_at = std::time::Instant::now();
            let sent =
                self.client.post(&url).header("Idempotency-Key", &action.idempotency_key).json(action).send().await;
            metrics::histogram!(m::CALL_SECONDS).record(sent_at.elapsed().as_secs_f64());
            if attempts == 1 && action.kind == ActionKind::Suspend {
                record_latency((now_ms() - action.crossing_ingested_ms).max(0) as f64 / 1000.0);
            }
            let (status, hint, error) = match &sent {
                Ok(r) => (Some(r.status().as_u16()), retry_after(r), format!("status {}", r.status())),
                Err(e) => (None, None, e.to_string()),
            };
            match verdict(status) {
                Verdict::Done => {
                    metrics::counter!(m::CALLS, "kind" => verb, "outcome" => "ok").increment(1);
                    tracing::info!(project = %action.project_id, verb, key = %action.idempotency_key, "actuator.acknowledged");
                    self.record(action, CallOutcome::Ok, status, None, attempts).await;
                    return true;
                }
                Verdict::Failed => {
                    metrics::counter!(m::CALLS, "kind" => verb, "outcome" => "failed").increment(1);
                    metrics::counter!(m::CALLS_FAILED, "kind" => verb).increment(1);
                    tracing::warn!(project = %action.project_id, verb, key = %action.idempotency_key, error = %error, "actuator.call_refused");
                    self.record(action, CallOutcome::Failed, status, Some(error), attempts).await;
                    return true;
                }
                Verdict::Retry => {
                    metrics::counter!(m::CALLS, "kind" => verb, "outcome" => "retry").increment(1);
                    let wait = backoff.next(rand::random(), hint);
                    tracing::warn!(project = %action.project_id, verb, error = %error, retry_in_ms = wait.as_millis() as u64, "actuator.call_failed");
                    tokio::select! {
                        _ = stop.cancelled() => return false,
                        _ = tokio::time::sleep(wait) => {}
                    }
                }
            }
        }
    }

    /// Records how the project's latest call ended (shown in its status).
    async fn record(
        &self,
        a: &Action,
        outcome: CallOutcome,
        status: Option<u16>,
        error: Option<String>,
        attempts: u32,
    ) {
        let r = CallRecord {
            project_id: a.project_id.clone(),
            kind: a.kind,
            branch_id: a.branch_id.clone(),
            idempotency_key: a.idempotency_key.clone(),
            outcome,
            status,
            error,
            attempts,
            at_ms: now_ms(),
        };
        let value = serde_json::to_vec(&r).expect("call records serialize");
        let record = FutureRecord::to(&self.kafka.calls_topic).key(&a.project_id).payload(&value);
        if let Err((e, _)) = self.producer.send(record, Duration::from_secs(30)).await {
            tracing::warn!(project = %a.project_id, error = %e, "actuator.call_record_failed");
        }
    }
}

/// Where an action is POSTed: `{base}/projects/{id}/{suspend|resume}`, and
/// for a branch `{base}/projects/{id}/branches/{branch}/{block_writes|unblock_writes}`
/// (`{base}/projects/{id}/{verb}` for readings that named no branch). Ids
/// are checked at ingest to letters, digits and `-_.:`: safe in a path.
fn call_url(base: &str, a: &Action) -> String {
    match a.branch_id.as_deref() {
        Some(b) if !b.is_empty() => format!("{base}/projects/{}/branches/{b}/{}", a.project_id, a.kind.name()),
        _ => format!("{base}/projects/{}/{}", a.project_id, a.kind.name()),
    }
}

/// The response's `Retry-After` (seconds or an HTTP-date), if any.
pub(crate) fn retry_after(r: &reqwest::Response) -> Option<Duration> {
    let v = r.headers().get(reqwest::header::RETRY_AFTER)?.to_str().ok()?;
    meter_core::retry::retry_after(v, meter_runtime::now_ms())
}

#[cfg(test)]
mod tests {
    use super::*;
    use meter_core::Metric;

    #[test]
    fn branch_calls_go_to_the_branch() {
        let mut a = Action {
            kind: ActionKind::BlockWrites,
            project_id: "p-1".into(),
            branch_id: Some("br-main".into()),
            idempotency_key: "k".into(),
            metric: Metric::LogicalSizeBytes,
            reason: "quota_exceeded".into(),
            crossing_ingested_ms: 0,
            decided_ms: 0,
        };
        assert_eq!(call_url("http://cp", &a), "http://cp/projects/p-1/branches/br-main/block_writes");
        a.branch_id = Some(String::new());
        assert_eq!(call_url("http://cp", &a), "http://cp/projects/p-1/block_writes");
        (a.kind, a.branch_id) = (ActionKind::Suspend, None);
        assert_eq!(call_url("http://cp", &a), "http://cp/projects/p-1/suspend");
    }
}
