//! The enforcer loop: follows `usage.totals` (its share of partitions, from
//! the beginning: the topic is compacted), evaluates projects, and commits
//! each round's new states, calls and webhook events in one transaction.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, Sender};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use meter_core::config_view::{ConfigKey, ConfigView};
use meter_core::enforce::{evaluate, Action, Decision, EnforcementState, Usage};
use meter_core::{Cycle, FastHash, Totals};
use meter_kafka::{
    read_partitions_to_end, send_in_transaction as send, transactional_producer, KafkaConfig, RebalanceWatch,
    TxProducer,
};
use meter_proto::decode_usage;
use meter_runtime::Clock;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use tokio_util::sync::CancellationToken;

use crate::metrics as m;
use crate::{EnforcerConfig, WebhookJob};

const TXN_TIMEOUT: Duration = Duration::from_secs(30);
/// Maps keyed by project id, hashed with `FastHash` (a collector's
/// transaction updates thousands of projects: SipHash was ~6 % of the
/// enforcer's CPU in the collectors' shape).
type ByProject<V> = HashMap<String, V, FastHash>;

/// Totals records read before an evaluation at most.
const MAX_RECORDS_PER_EVALUATION: usize = 10_000;

pub(crate) struct Enforcer {
    cfg: EnforcerConfig,
    kafka: KafkaConfig,
    clock: Arc<dyn Clock>,
    config: Arc<RwLock<ConfigView>>,
    changes: Receiver<ConfigKey>,
    /// The calls of each committed transaction, for the actuator next to
    /// this enforcer (`actuator::handoff`).
    handoff: Sender<Vec<Action>>,
    shutdown: CancellationToken,
    /// Latest totals of owned projects, with their partition.
    totals: ByProject<(i32, Totals)>,
    states: ByProject<(i32, EnforcementState)>,
    /// Partitions not yet read to their end since the last assignment.
    catching_up: HashSet<i32>,
    dirty: HashSet<String, FastHash>,
}

impl Enforcer {
    pub(crate) fn new(
        cfg: EnforcerConfig,
        kafka: KafkaConfig,
        clock: Arc<dyn Clock>,
        config: Arc<RwLock<ConfigView>>,
        changes: Receiver<ConfigKey>,
        handoff: Sender<Vec<Action>>,
        shutdown: CancellationToken,
    ) -> Self {
        Enforcer {
            cfg,
            kafka,
            clock,
            config,
            changes,
            handoff,
            shutdown,
            totals: ByProject::default(),
            states: ByProject::default(),
            catching_up: HashSet::new(),
            dirty: HashSet::default(),
        }
    }

    pub(crate) fn run(mut self, ready: Arc<AtomicBool>) -> anyhow::Result<()> {
        // The producer before joining the group (see the aggregator's run).
        let producer = transactional_producer(&self.kafka, &self.cfg.transactional_id_prefix)?;
        let consumer: BaseConsumer<RebalanceWatch> = self
            .kafka
            .consumer_config(&self.cfg.group_id)
            .set("enable.partition.eof", "true")
            .set("partition.assignment.strategy", "range")
            .create_with_context(RebalanceWatch::default())?;
        consumer.subscribe(&[&self.kafka.totals_topic])?;
        ready.store(true, Ordering::SeqCst);
        let mut generation = consumer.context().generation();
        let mut last_sweep = Instant::now();
        let mut swept_cycle = Cycle::containing(self.clock.now_ms());
        let interval = Duration::from_millis(self.cfg.evaluate_interval_ms);
        while !self.shutdown.is_cancelled() {
            // Everything already fetched (up to a bound), then one evaluation
            // and one transaction for all of it: under load a transaction per
            // totals record would fall behind.
            let mut timeout = Duration::from_millis(50);
            for _ in 0..MAX_RECORDS_PER_EVALUATION {
                let polled = consumer.poll(timeout);
                timeout = Duration::ZERO;
                if consumer.context().generation() != generation {
                    generation = consumer.context().generation();
                    self.reassigned(&consumer)?;
                }
                match polled {
                    None => break,
                    Some(Ok(msg)) => self.on_totals(msg.partition(), msg.payload()),
                    Some(Err(KafkaError::PartitionEOF(p))) => self.partition_read(p),
                    Some(Err(e)) => meter_kafka::poll_error("enforcer", e)?,
                }
            }
            while let Ok(k) = self.changes.try_recv() {
                match k {
                    ConfigKey::Project(p) if self.totals.contains_key(&p) || self.states.contains_key(&p) => {
                        self.dirty.insert(p);
                    }
                    ConfigKey::Plan(_) => self.dirty.extend(self.owned()),
                    _ => {}
                }
            }
            // Everything, when a cycle begins (usage restarts from zero
            // without a new totals record) and every `interval` as a safety
            // net; totals and configuration changes mark their projects.
            let cycle = Cycle::containing(self.clock.now_ms());
            if cycle != swept_cycle || last_sweep.elapsed() >= interval {
                self.dirty.extend(self.owned());
                (last_sweep, swept_cycle) = (Instant::now(), cycle);
            }
            if self.catching_up.is_empty() && !self.dirty.is_empty() {
                self.evaluate(&producer)?;
            }
        }
        consumer.unsubscribe();
        tracing::info!("enforcer.stopped");
        Ok(())
    }

    /// A partition reached its end; once all have, evaluate everything.
    fn partition_read(&mut self, p: i32) {
        if self.catching_up.remove(&p) && self.catching_up.is_empty() {
            tracing::info!(group = %self.cfg.group_id, projects = self.totals.len(), "enforcer.caught_up");
            self.dirty.extend(self.owned());
        }
    }

    fn owned(&self) -> Vec<String> {
        self.totals.keys().chain(self.states.keys()).cloned().collect()
    }

    /// A new assignment: forget everything, restore the enforcement states
    /// of the assigned partitions, and read their totals from the start.
    fn reassigned(&mut self, consumer: &BaseConsumer<RebalanceWatch>) -> anyhow::Result<()> {
        self.totals.clear();
        self.states.clear();
        self.dirty.clear();
        let parts: Vec<i32> = consumer.assignment()?.elements().iter().map(|e| e.partition()).collect();
        self.catching_up = parts.iter().copied().collect();
        let restored =
            read_partitions_to_end(&self.kafka, &self.kafka.enforcement_topic, &parts, Duration::from_secs(120))?;
        for (p, records) in restored {
            for (key, value) in records {
                let s: EnforcementState = serde_json::from_slice(&value).map_err(|e| {
                    anyhow::anyhow!("undecodable enforcement record {:?}: {e}", String::from_utf8_lossy(&key))
                })?;
                self.states.insert(s.project_id.clone(), (p, s));
            }
        }
        tracing::info!(group = %self.cfg.group_id, partitions = ?parts, states = self.states.len(), "enforcer.assigned");
        Ok(())
    }

    fn on_totals(&mut self, partition: i32, payload: Option<&[u8]>) {
        let Some(bytes) = payload else { return };
        let states = match decode_usage(bytes) {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, partition, "enforcer.undecodable_totals");
                return;
            }
        };
        for state in states {
            let id = state.project_id.as_str();
            let known = self.totals.get_mut(id);
            if known.as_ref().is_some_and(|(_, cur)| cur.version >= state.version) {
                continue;
            }
            if self.catching_up.is_empty() {
                self.dirty.insert(id.to_owned());
            }
            // Replaced in place: nearly every state is of a known project.
            match known {
                Some(entry) => *entry = (partition, state),
                None => drop(self.totals.insert(id.to_owned(), (partition, state))),
            }
        }
    }

    fn evaluate(&mut self, producer: &TxProducer) -> anyhow::Result<()> {
        let _span = tracing::info_span!("enforcer.evaluate", projects = self.dirty.len()).entered();
        let now = self.clock.now_ms();
        let mut decided: Vec<(i32, Decision)> = Vec::new();
        {
            let config = self.config.read().expect("config lock");
            for id in self.dirty.drain() {
                let (quota, thresholds) = config.limits_of(&id);
                let (partition, usage) = match (self.totals.get(&id), self.states.get(&id)) {
                    (Some((p, t)), _) => (*p, Usage::of_totals(t, now)),
                    (None, Some((p, _))) => (*p, Usage::default()),
                    (None, None) => continue,
                };
                let prev = self.states.get(&id).map(|(_, s)| s);
                let d = evaluate(prev, &id, &usage, &quota, thresholds, now);
                if d.changed {
                    decided.push((partition, d));
                }
            }
        }
        if decided.is_empty() {
            return Ok(());
        }
        match self.commit(producer, &decided) {
            Ok(()) => {
                metrics::counter!(m::COMMITS, "outcome" => "committed").increment(1);
                let calls: Vec<Action> = decided.iter().flat_map(|(_, d)| d.actions.iter().cloned()).collect();
                if !calls.is_empty() {
                    // The actuator may have stopped: its records are the durable copy.
                    let _ = self.handoff.send(calls);
                }
                for (p, d) in decided {
                    for a in &d.actions {
                        let kind = a.kind.name();
                        tracing::info!(project = %a.project_id, kind, key = %a.idempotency_key, reason = %a.reason, "enforcer.decided");
                        metrics::counter!(m::DECISIONS, "kind" => kind).increment(1);
                    }
                    for a in &d.alerts {
                        metrics::counter!(m::ALERTS, "type" => a.kind.name()).increment(1);
                    }
                    self.states.insert(d.state.project_id.clone(), (p, d.state));
                }
                Ok(())
            }
            Err(e) => {
                metrics::counter!(m::COMMITS, "outcome" => "aborted").increment(1);
                if let KafkaError::Transaction(rd) = &e {
                    if rd.is_fatal() {
                        anyhow::bail!("enforcer producer failed fatally: {e}");
                    }
                }
                tracing::warn!(error = %e, "enforcer.transaction_aborted");
                producer.abort_transaction(TXN_TIMEOUT)?;
                // Evaluate the same projects again next round: same decisions, same ids.
                self.dirty.extend(decided.into_iter().map(|(_, d)| d.state.project_id));
                Ok(())
            }
        }
    }

    fn commit(&self, producer: &TxProducer, decided: &[(i32, Decision)]) -> Result<(), KafkaError> {
        let started = Instant::now();
        producer.begin_transaction()?;
        for (partition, d) in decided {
            let id = d.state.project_id.as_str();
            send(
                producer,
                BaseRecord::to(&self.kafka.enforcement_topic).partition(*partition).key(id).payload(&json(&d.state)),
            )?;
            for a in &d.actions {
                send(producer, BaseRecord::to(&self.kafka.actions_topic).key(id).payload(&json(a)))?;
            }
            for alert in &d.alerts {
                let job = WebhookJob { alert: alert.clone(), only_endpoint: None };
                send(producer, BaseRecord::to(&self.kafka.webhooks_topic).key(id).payload(&json(&job)))?;
            }
        }
        meter_kafka::commit_transaction(producer, TXN_TIMEOUT)?;
        metrics::histogram!(m::TRANSACTION).record(started.elapsed().as_secs_f64());
        Ok(())
    }
}

fn json<T: serde::Serialize>(v: &T) -> Vec<u8> {
    serde_json::to_vec(v).expect("records serialize")
}
