//! The load role: `usage.rows` -> ClickHouse's `usage_hourly` (and the
//! applied adjustments -> `usage_adjustments`, the probes ->
//! `pipeline_watermarks`).
//!
//! A consumer group of its own (instances scale out like the aggregator's)
//! reads the rows the aggregator committed (read_committed: rows of aborted
//! transactions are never seen), inserts them, and only then commits its
//! offsets. A crash between the insert and the commit inserts the same rows
//! again, which replace themselves (`usage_hourly` is keyed by batch). While
//! ClickHouse is down the rows wait in Kafka and the lag grows; nothing
//! else waits for it. The rollup job runs next to it (`rollup.rs`).

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use meter_core::retry::{Backoff, RetryPolicy};
use meter_kafka::{KafkaConfig, RebalanceWatch};
use meter_runtime::Health;
use meter_store::{AdjustmentRow, Store, StoreConfig, UsageRow};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;

use crate::metrics as m;
use crate::rows::decode_rows;
use crate::LoadConfig;

type LoadConsumer = BaseConsumer<RebalanceWatch>;

/// Runs the load role until `shutdown`.
pub async fn run_load(
    cfg: &LoadConfig,
    kafka: &KafkaConfig,
    store: &StoreConfig,
    health: Health,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    m::describe_load();
    anyhow::ensure!(cfg.max_batch_rows > 0, "load.max_batch_rows: must be at least 1");
    let ready = health.part("load");
    let loader = Loader { cfg: cfg.clone(), kafka: kafka.clone(), store: Store::new(store)?, rt: Handle::current() };
    let rollups =
        tokio::spawn(crate::rollup::run_rollups(cfg.clone(), kafka.clone(), loader.store.clone(), shutdown.clone()));
    let loaded = tokio::task::spawn_blocking(move || loader.run(&ready, &shutdown)).await?;
    rollups.abort();
    loaded
}

struct Loader {
    cfg: LoadConfig,
    kafka: KafkaConfig,
    store: Store,
    rt: Handle,
}

/// Rows collected for one INSERT, and the offsets to commit after it.
#[derive(Default)]
struct Collected {
    rows: Vec<UsageRow>,
    adjustments: Vec<AdjustmentRow>,
    /// The latest probe per partition (inserted after the rows).
    probes: BTreeMap<i32, i64>,
    next: BTreeMap<i32, i64>,
}

impl Loader {
    fn run(self, ready: &AtomicBool, shutdown: &CancellationToken) -> anyhow::Result<()> {
        let consumer: LoadConsumer =
            self.kafka.consumer_config(&self.cfg.group_id).create_with_context(RebalanceWatch::default())?;
        consumer.subscribe(&[&self.kafka.rows_topic])?;
        ready.store(true, Ordering::SeqCst);
        let mut last_lag = Instant::now();
        while !shutdown.is_cancelled() {
            let batch = self.collect(&consumer, shutdown)?;
            if last_lag.elapsed() > Duration::from_secs(2) {
                crate::run::report_lag(&consumer, &self.kafka.rows_topic, m::LOAD_LAG);
                last_lag = Instant::now();
            }
            if batch.next.is_empty() {
                continue;
            }
            if !self.insert(&batch, shutdown) {
                break; // shutdown: the rows are read again by the next owner
            }
            let mut offsets = TopicPartitionList::new();
            for (&p, &next) in &batch.next {
                offsets.add_partition_offset(&self.kafka.rows_topic, p, Offset::Offset(next))?;
            }
            // Failing here (a rebalance took the partitions) only means the
            // next owner inserts these rows again, which is harmless.
            if let Err(e) = consumer.commit(&offsets, CommitMode::Sync) {
                tracing::info!(error = %e, rows = batch.rows.len(), "load.commit_failed");
            }
        }
        ready.store(false, Ordering::SeqCst);
        consumer.unsubscribe();
        tracing::info!("load.stopped");
        Ok(())
    }

    /// Polls until the INSERT is full or the linger time is over. A
    /// rebalance drops what was collected: the new assignment starts from
    /// the committed offsets.
    fn collect(&self, consumer: &LoadConsumer, shutdown: &CancellationToken) -> anyhow::Result<Collected> {
        let mut out = Collected::default();
        let generation = consumer.context().generation();
        let deadline = Instant::now() + Duration::from_millis(self.cfg.linger_ms);
        while out.rows.len() < self.cfg.max_batch_rows && !shutdown.is_cancelled() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let polled = consumer.poll(left);
            if consumer.context().generation() != generation {
                return Ok(Collected::default());
            }
            match polled {
                None => {}
                Some(Ok(msg)) => {
                    out.next.insert(msg.partition(), msg.offset() + 1);
                    match decode_rows(msg.payload().unwrap_or_default()) {
                        Ok(loadable) => {
                            out.rows.extend(loadable.rows);
                            out.adjustments.extend(loadable.adjustments);
                            if let Some(&latest) = loadable.probes.iter().max() {
                                let p = out.probes.entry(msg.partition()).or_insert(latest);
                                *p = (*p).max(latest);
                            }
                        }
                        Err(e) => {
                            // The aggregator never writes such a record; skip it, loudly.
                            tracing::error!(
                                partition = msg.partition(),
                                offset = msg.offset(),
                                error = format!("{e:#}"),
                                "load.record_undecodable"
                            );
                            metrics::counter!(m::LOAD_UNDECODABLE).increment(1);
                        }
                    }
                }
                Some(Err(e)) => meter_kafka::poll_error("load", e)?,
            }
        }
        Ok(out)
    }

    /// Inserts the rows, retrying until it succeeds; false if shutdown came
    /// first. Retrying is safe: the rows are keyed by their batch.
    fn insert(&self, batch: &Collected, shutdown: &CancellationToken) -> bool {
        let rows = &batch.rows;
        let started = Instant::now();
        let mut backoff =
            Backoff::new(RetryPolicy { initial: Duration::from_millis(100), max: Duration::from_secs(5) });
        let mut failures = 0u32;
        loop {
            let written = async {
                self.store.write_adjustments(&batch.adjustments).await?;
                self.store.write_usage(rows).await?;
                // Last: a probe is queryable only once what came before it is.
                self.store.write_probes(&batch.probes).await
            };
            match self.rt.block_on(written) {
                Ok(()) => break,
                Err(e) => {
                    metrics::counter!(m::LOAD_ERRORS).increment(1);
                    failures += 1;
                    let wait = backoff.next(rand::random(), None);
                    // The first failure may be a blip; the ones after it are
                    // an outage an operator should know about.
                    if failures == 1 {
                        tracing::info!(error = %e, rows = rows.len(), retry_in_ms = wait.as_millis() as u64, "load.clickhouse_write_failed");
                    } else {
                        tracing::warn!(error = %e, rows = rows.len(), failures, retry_in_ms = wait.as_millis() as u64, "load.clickhouse_write_failed");
                    }
                    let stopped = self.rt.block_on(async {
                        tokio::select! {
                            _ = shutdown.cancelled() => true,
                            _ = tokio::time::sleep(wait) => false,
                        }
                    });
                    if stopped {
                        return false;
                    }
                }
            }
        }
        metrics::histogram!(m::LOAD_SECONDS).record(started.elapsed().as_secs_f64());
        metrics::histogram!(m::LOAD_INSERT_ROWS).record(rows.len() as f64);
        metrics::counter!(m::LOAD_ROWS).increment(rows.len() as u64);
        true
    }
}
