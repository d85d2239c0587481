//! The aggregator loop: collect a batch, apply it, then commit totals,
//! hourly rows (for the load role to put in ClickHouse) and offsets in one
//! Kafka transaction. ClickHouse is not on this path: its outage or
//! slowness never delays the totals enforcement reads.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use meter_core::ProjectState;
use meter_kafka::{send_in_transaction as send, transactional_producer, KafkaConfig, TxProducer};
use meter_proto::packed::{own_record, packed_key, packed_records};
use meter_proto::{closed_record, key_chunk_records, mark_keys_persisted};
use meter_runtime::Health;
use rdkafka::consumer::Consumer;
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::collect::{collect, Bounds, Polled};
use crate::consumer::{group_consumer, GroupConsumer};
use crate::metrics as m;
use crate::process::{apply, Emission, Outcome, Pending, Record};
use crate::rows::{encode_adjustments, encode_probes, encode_rows};
use crate::state::States;
use crate::AggregatorConfig;
use meter_core::adjust::outcome_key;
use meter_runtime::now_ms;

const TXN_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs the aggregator role until `shutdown`. The loop runs on a blocking
/// thread (librdkafka's transactional calls block).
pub async fn run(
    cfg: &AggregatorConfig,
    kafka: &KafkaConfig,
    health: Health,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    crate::metrics::describe();
    let ready = health.part("aggregator");
    let worker = Worker { cfg: cfg.clone(), kafka: kafka.clone(), shutdown, states: States::default() };
    tokio::task::spawn_blocking(move || worker.run(ready)).await?
}

struct Worker {
    cfg: AggregatorConfig,
    kafka: KafkaConfig,
    shutdown: CancellationToken,
    states: States,
}

impl Worker {
    fn run(mut self, ready: Arc<AtomicBool>) -> anyhow::Result<()> {
        // The producer first: init_transactions can take seconds (a broker
        // loading its transaction coordinator), and a member that has joined
        // the group but does not poll holds every other member's rebalance.
        let producer = transactional_producer(&self.kafka, &self.cfg.transactional_id_prefix)?;
        let consumer = group_consumer(&self.kafka, &self.cfg)?;
        ready.store(true, Ordering::SeqCst);
        let mut last_lag = Instant::now();
        while !self.shutdown.is_cancelled() {
            let collecting = Instant::now();
            let pending = self.collect(&consumer)?;
            if last_lag.elapsed() > Duration::from_secs(2) {
                report_lag(&consumer, &self.kafka.events_topic, m::LAG);
                last_lag = Instant::now();
            }
            if pending.is_empty() {
                // Nothing to read: rows held past their due time go out in
                // a transaction of their own (decision 0022).
                if self.states.holding_due(&Emission::new(&self.cfg, false, now_ms())) {
                    self.flush(&consumer, &producer, &pending)?;
                }
                continue;
            }
            metrics::histogram!(m::FLUSH_SECONDS, "stage" => "collect").record(collecting.elapsed().as_secs_f64());
            self.flush(&consumer, &producer, &pending)?;
        }
        ready.store(false, Ordering::SeqCst);
        consumer.unsubscribe();
        tracing::info!("aggregator.stopped");
        Ok(())
    }

    /// One batch (`collect::collect`). A rebalance during collection drops
    /// what was collected: the new assignment starts from the committed
    /// offsets, and the states are rebuilt.
    fn collect(&mut self, consumer: &GroupConsumer) -> anyhow::Result<Pending> {
        let bounds = Bounds {
            max_records: self.cfg.max_batch_records,
            max_bytes: self.cfg.max_batch_bytes,
            linger: Duration::from_millis(self.cfg.linger_ms),
        };
        let mut generation = consumer.context().generation();
        let states = &mut self.states;
        collect(
            bounds,
            || self.shutdown.is_cancelled(),
            |timeout| {
                let record = match consumer.poll(timeout) {
                    None => None,
                    Some(Ok(msg)) => {
                        // No timestamp, or one ahead of this clock: no age (the whole linger).
                        let written = msg.timestamp().to_millis();
                        let age =
                            written.map_or(Duration::ZERO, |t| Duration::from_millis((now_ms() - t).max(0) as u64));
                        let payload = msg.payload().unwrap_or_default().to_vec();
                        Some((Record { partition: msg.partition(), offset: msg.offset(), payload }, age))
                    }
                    Some(Err(e)) => {
                        meter_kafka::poll_error("aggregator", e)?;
                        None
                    }
                };
                if consumer.context().generation() != generation {
                    generation = consumer.context().generation();
                    states.clear();
                    return Ok(Polled::Reassigned(record.map(|(r, _)| r)));
                }
                Ok(record.map_or(Polled::Nothing, |(r, age)| Polled::Record(r, age)))
            },
        )
    }

    /// Applies and commits a batch; when it cannot (a restore timed out, the
    /// transaction aborted) the partitions are rewound and read again.
    /// Errors only on a fatal producer state.
    fn flush(&mut self, consumer: &GroupConsumer, producer: &TxProducer, pending: &Pending) -> anyhow::Result<()> {
        let partitions: Vec<i32> = pending.next.keys().copied().collect();
        let _span = tracing::info_span!("aggregator.flush", ?partitions, records = pending.len()).entered();
        let restore_timeout = Duration::from_secs(self.cfg.restore_timeout_seconds);
        let applying = Instant::now();
        // A batch that ended at a bound left records waiting: the aggregator is behind.
        let behind = pending.len() >= self.cfg.max_batch_records || pending.bytes >= self.cfg.max_batch_bytes;
        let emission = Emission::new(&self.cfg, behind, now_ms());
        let retention = self.cfg.retention();
        let outcome = match apply(pending, &mut self.states, &self.kafka, &retention, restore_timeout, emission) {
            Ok(o) => o,
            Err(e) => {
                // Typically: the state could not be restored in time. Nothing
                // was written; read the batch again after a pause.
                tracing::warn!(error = format!("{e:#}"), "aggregator.apply_failed");
                self.rewind(consumer, pending);
                std::thread::sleep(Duration::from_secs(1));
                return Ok(());
            }
        };
        metrics::histogram!(m::FLUSH_SECONDS, "stage" => "apply").record(applying.elapsed().as_secs_f64());
        let started = Instant::now();
        match self.commit(consumer, producer, pending, &outcome) {
            Ok(()) => {
                for (partition, project) in outcome.touched() {
                    if let Some(s) = self.states.get_mut(partition).and_then(|p| p.get_mut(project)) {
                        mark_keys_persisted(&mut s.state);
                    }
                }
                metrics::histogram!(m::FLUSH_SECONDS, "stage" => "kafka").record(started.elapsed().as_secs_f64());
                metrics::counter!(m::BATCHES, "outcome" => "committed").increment(1);
                metrics::counter!(m::EVENTS).increment(outcome.events);
                if let Some(t) = outcome.oldest_ingest_ms {
                    metrics::histogram!(m::INGEST_TO_COMMIT_SECONDS).record((now_ms() - t).max(0) as f64 / 1000.0);
                }
                Ok(())
            }
            Err(e) => {
                metrics::counter!(m::BATCHES, "outcome" => "aborted").increment(1);
                if let KafkaError::Transaction(rd) = &e {
                    if rd.is_fatal() {
                        anyhow::bail!("aggregator producer failed fatally (fenced by another instance?): {e}");
                    }
                }
                tracing::warn!(error = %e, records = pending.len(), "aggregator.transaction_aborted");
                if let Err(abort) = producer.abort_transaction(TXN_TIMEOUT) {
                    anyhow::bail!("aborting the transaction failed: {abort}");
                }
                // A partition that only wrote its held rows took them out of
                // its states: forgotten too, restored with them at its next batch.
                for &partition in outcome.touched.keys() {
                    self.states.forget(partition);
                }
                self.rewind(consumer, pending);
                Ok(())
            }
        }
    }

    /// One transaction: the totals of every touched project (and the
    /// chunks of its idempotency keys that changed), the hourly rows of
    /// the counted batches, the adjustments applied (for ClickHouse) and
    /// what became of each adjustment judged, the probes read, and the
    /// offsets.
    fn commit(
        &mut self,
        consumer: &GroupConsumer,
        producer: &TxProducer,
        pending: &Pending,
        outcome: &Outcome,
    ) -> Result<(), KafkaError> {
        producer.begin_transaction()?;
        let now = now_ms();
        let topic = &self.kafka.totals_topic;
        let mut written = [0u64; 3];
        for (&partition, projects) in &outcome.touched {
            // A partition that only wrote its held rows covers what it did.
            let next_offset =
                pending.next.get(&partition).copied().or(self.states.resume_offset(partition)).unwrap_or_default();
            let (states, packing) = self.states.with_packing(partition).expect("touched partition has state");
            let changed: Vec<&ProjectState> =
                projects.iter().map(|id| &states.get(id.as_str()).expect("touched project has state").state).collect();
            for record in packed_records(changed.iter().copied(), next_offset, now) {
                let key = packed_key(record.id);
                send(producer, BaseRecord::to(topic).partition(partition).key(key.as_str()).payload(&record.value))?;
                packing.packed(record.id, record.projects.iter().map(String::as_str), record.value.len(), now);
                written[0] += 1;
            }
            for state in changed {
                for (key, value) in key_chunk_records(state, next_offset) {
                    let record = BaseRecord::<str, [u8]>::to(topic).partition(partition).key(key.as_str());
                    send(
                        producer,
                        match &value {
                            Some(v) => record.payload(v.as_slice()),
                            None => record,
                        },
                    )?;
                }
            }
        }
        // Checkpoints and tombstones of the packed records, per partition of
        // the transaction (the only ones an abort forgets and restores).
        let max_age_ms = self.cfg.totals_checkpoint_seconds as i64 * 1000;
        let max_bytes = (self.cfg.totals_packed_max_mib << 20) as usize;
        for (&partition, &next_offset) in &pending.next {
            let Some((states, packing)) = self.states.with_packing(partition) else { continue };
            for project in packing.due(now, max_age_ms, max_bytes) {
                let bytes = own_record(&states[project.as_str()].state, next_offset, now);
                send(producer, BaseRecord::to(topic).partition(partition).key(project.as_str()).payload(&bytes))?;
                packing.own(&project);
                written[1] += 1;
            }
            for dead in packing.take_dead() {
                let key = packed_key(dead);
                send(producer, BaseRecord::<str, [u8]>::to(topic).partition(partition).key(key.as_str()))?;
                written[2] += 1;
            }
            metrics::gauge!(m::PACKED_BYTES, "partition" => partition.to_string()).set(packing.bytes() as f64);
        }
        for (kind, n) in ["packed", "own", "tombstone"].into_iter().zip(written) {
            if n > 0 {
                metrics::counter!(m::TOTALS_RECORDS, "kind" => kind).increment(n);
            }
        }
        for (partition, rows) in &outcome.rows {
            for record in encode_rows(rows.iter()) {
                send(
                    producer,
                    BaseRecord::<str, [u8]>::to(&self.kafka.rows_topic).partition(*partition).payload(&record),
                )?;
            }
        }
        for (partition, applied) in &outcome.adjusted {
            let record = encode_adjustments(applied);
            send(producer, BaseRecord::<str, [u8]>::to(&self.kafka.rows_topic).partition(*partition).payload(&record))?;
        }
        for (&partition, cycles) in &outcome.closes {
            let next_offset = pending.next.get(&partition).copied().unwrap_or_default();
            for &c in cycles {
                let (key, value) = closed_record(c, next_offset);
                let topic = &self.kafka.totals_topic;
                send(producer, BaseRecord::to(topic).partition(partition).key(key.as_str()).payload(&value))?;
            }
        }
        // After the partition's rows: a probe says everything before it is on its way.
        for (partition, probes) in &outcome.probes {
            let record = encode_probes(probes);
            send(producer, BaseRecord::<str, [u8]>::to(&self.kafka.rows_topic).partition(*partition).payload(&record))?;
        }
        for judged in &outcome.adjustments {
            let a = &judged.adjustment;
            let key = outcome_key(a.project_id.as_str(), &a.idempotency_key);
            let value = serde_json::to_vec(judged).expect("an outcome serializes");
            send(producer, BaseRecord::to(&self.kafka.adjustments_topic).key(key.as_str()).payload(&value))?;
        }
        // A transaction that only writes held rows reads nothing: no offsets.
        if !pending.next.is_empty() {
            let mut offsets = TopicPartitionList::new();
            for (&p, &next) in &pending.next {
                offsets.add_partition_offset(&self.kafka.events_topic, p, Offset::Offset(next))?;
            }
            let group = consumer.group_metadata().ok_or(KafkaError::NoMessageReceived)?;
            producer.send_offsets_to_transaction(&offsets, &group, TXN_TIMEOUT)?;
        }
        meter_kafka::commit_transaction(producer, TXN_TIMEOUT)
    }

    /// After an abort: forget the touched partitions' states and seek back
    /// to the first record of the batch, which is the committed offset.
    fn rewind(&mut self, consumer: &GroupConsumer, pending: &Pending) {
        for (&p, &first) in &pending.first {
            self.states.forget(p);
            if let Err(e) = consumer.seek(&self.kafka.events_topic, p, Offset::Offset(first), Duration::from_secs(10)) {
                // Not ours any more (rebalance): the next owner starts from the committed offset.
                tracing::info!(partition = p, error = %e, "aggregator.rewind_skipped");
            }
        }
    }
}

/// Sets `gauge` to the records of `topic` behind `consumer`'s positions.
pub(crate) fn report_lag<C: rdkafka::consumer::ConsumerContext>(
    consumer: &rdkafka::consumer::BaseConsumer<C>,
    topic: &str,
    gauge: &'static str,
) {
    let Ok(positions) = consumer.position() else { return };
    let mut total = 0i64;
    for e in positions.elements_for_topic(topic) {
        let Ok((_, high)) = consumer.fetch_watermarks(topic, e.partition(), Duration::from_secs(1)) else { continue };
        // Before the first record of a partition the position is unknown: skip it.
        if let Offset::Offset(pos) = e.offset() {
            total += (high - pos).max(0);
        }
    }
    metrics::gauge!(gauge).set(total as f64);
}
