//! Rebuilding ClickHouse usage rows from `usage.events` for a time range.
//!
//! Every record the ingest wrote between `from` and `to` (Kafka record
//! time, i.e. ingest time) is decoded and applied, in partition order, to
//! project states that start empty at `from`, as the aggregator applies
//! them (`ProjectState::apply`: retries and keys counted before in the range
//! are left out, storage spans between readings become byte-hours); the
//! rows are written keyed by batch and versioned by offset exactly as the
//! aggregator writes them: rows that exist are replaced by themselves, rows
//! that were lost (a dropped table, a restored backup) come back. What
//! happened before `from` is not known: a key counted then is counted
//! again, and a branch's span from its last reading before `from` is not
//! rebuilt. Nothing is written to Kafka and the aggregator's totals are not
//! touched. The adjustments applied that were made in the range are written
//! again to `usage_adjustments` from their outcomes (`meter.adjustments`).

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use meter_core::adjust::AdjustmentOutcome;
use meter_core::aggregate::{ProjectUpdate, Retention};
use meter_core::ProjectState;
use meter_kafka::KafkaConfig;
use meter_proto::decode_record;
use meter_store::{AdjustmentRow, Store, StoreConfig, UsageRow};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};

/// What a backfill did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct BackfillReport {
    pub records: u64,
    pub rows: u64,
    pub undecodable: u64,
    /// Applied adjustments made in the range, written to `usage_adjustments`.
    pub adjustments: u64,
}

const ROWS_PER_INSERT: usize = 50_000;

/// The `[start, end)` offsets of each partition for record times `[from_ms, to_ms)`.
fn ranges(consumer: &BaseConsumer, topic: &str, from_ms: i64, to_ms: i64) -> anyhow::Result<Vec<(i32, i64, i64)>> {
    let parts = meter_kafka::topic_partitions(consumer.client(), topic)?;
    let at = |ms: i64| -> anyhow::Result<TopicPartitionList> {
        let mut tpl = TopicPartitionList::new();
        for &p in &parts {
            tpl.add_partition_offset(topic, p, Offset::Offset(ms))?;
        }
        Ok(consumer.offsets_for_times(tpl, Duration::from_secs(10))?)
    };
    let (starts, ends) = (at(from_ms)?, at(to_ms)?);
    let mut out = Vec::new();
    for &p in &parts {
        let (_, high) = consumer.fetch_watermarks(topic, p, Duration::from_secs(10))?;
        let off = |tpl: &TopicPartitionList| match tpl.find_partition(topic, p).map(|e| e.offset()) {
            Some(Offset::Offset(o)) => o,
            _ => high, // no record at or after the time: the end
        };
        let (s, e) = (off(&starts), off(&ends));
        if s < e {
            out.push((p, s, e));
        }
    }
    Ok(out)
}

/// Runs the backfill, printing progress to `progress`.
pub async fn backfill(
    kafka: &KafkaConfig,
    clickhouse: &StoreConfig,
    from_ms: i64,
    to_ms: i64,
    progress: &mut dyn Write,
) -> anyhow::Result<BackfillReport> {
    anyhow::ensure!(from_ms < to_ms, "--to must be after --from");
    let store = Store::new(clickhouse)?;
    let consumer: BaseConsumer = kafka
        .client_config()
        .set("group.id", "meterctl-backfill")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .context("creating the Kafka consumer")?;
    let topic = kafka.events_topic.clone();
    let ranges = ranges(&consumer, &topic, from_ms, to_ms)?;
    let total: i64 = ranges.iter().map(|(_, s, e)| e - s).sum();
    let mut tpl = TopicPartitionList::new();
    for (p, s, _) in &ranges {
        tpl.add_partition_offset(&topic, *p, Offset::Offset(*s))?;
    }
    consumer.assign(&tpl)?;
    let mut open: std::collections::HashMap<i32, i64> = ranges.iter().map(|(p, _, e)| (*p, *e)).collect();
    let (mut report, mut rows, mut done) = (BackfillReport::default(), Vec::<UsageRow>::new(), 0i64);
    let mut states: std::collections::HashMap<String, ProjectState> = std::collections::HashMap::new();
    let retention = Retention::default();
    let mut last_print = Instant::now();
    let mut idle_since = Instant::now();
    while !open.is_empty() {
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            anyhow::ensure!(idle_since.elapsed() < Duration::from_secs(60), "no records from Kafka for 60 s");
            continue;
        };
        idle_since = Instant::now();
        let msg = msg.context("reading usage.events")?;
        let (p, offset) = (msg.partition(), msg.offset());
        let Some(&end) = open.get(&p) else { continue };
        if offset >= end {
            open.remove(&p);
            continue;
        }
        done += 1;
        report.records += 1;
        match decode_record(msg.payload().unwrap_or_default()) {
            Ok(batches) => {
                for batch in &batches {
                    let state = states
                        .entry(batch.project_id.to_string())
                        .or_insert_with(|| ProjectState::new(batch.project_id.clone()));
                    if let ProjectUpdate::Counted { rows: hourly, byte_hours, .. } = state.apply(batch, &retention) {
                        rows.extend(UsageRow::of_batch(batch, offset as u64, &hourly));
                        rows.extend(UsageRow::byte_hours_of(batch, offset as u64, &byte_hours));
                    }
                }
            }
            Err(_) => report.undecodable += 1,
        }
        if offset + 1 >= end {
            open.remove(&p);
        }
        if rows.len() >= ROWS_PER_INSERT {
            report.rows += rows.len() as u64;
            store.write_usage(&std::mem::take(&mut rows)).await.context("writing to ClickHouse")?;
        }
        if last_print.elapsed() > Duration::from_millis(250) || open.is_empty() {
            bar(progress, done, total)?;
            last_print = Instant::now();
        }
    }
    report.rows += rows.len() as u64;
    store.write_usage(&rows).await.context("writing to ClickHouse")?;
    bar(progress, done, total)?;
    writeln!(progress)?;
    let adjustments = applied_adjustments(kafka, &consumer, from_ms, to_ms).await?;
    report.adjustments = adjustments.len() as u64;
    store.write_adjustments(&adjustments).await.context("writing adjustments to ClickHouse")?;
    Ok(report)
}

/// The rows of the adjustments applied that were made in `[from_ms, to_ms)`,
/// from their outcomes on the adjustments topic (compacted, kept forever),
/// as the load role writes them (same key, same version).
async fn applied_adjustments(
    kafka: &KafkaConfig,
    consumer: &BaseConsumer,
    from_ms: i64,
    to_ms: i64,
) -> anyhow::Result<Vec<AdjustmentRow>> {
    let topic = kafka.adjustments_topic.clone();
    let parts = meter_kafka::topic_partitions(consumer.client(), &topic)?;
    let kafka = kafka.clone();
    let records = tokio::task::spawn_blocking(move || {
        meter_kafka::read_partitions_to_end(&kafka, &topic, &parts, Duration::from_secs(60))
    })
    .await??;
    // The latest outcome per key (the topic is compacted, perhaps not yet).
    let mut latest = std::collections::BTreeMap::new();
    for (key, value) in records.into_values().flatten() {
        if let Ok(o) = serde_json::from_slice::<AdjustmentOutcome>(&value) {
            latest.insert(key, o);
        }
    }
    Ok(latest
        .into_values()
        .filter(|o| o.refusal.is_none() && (from_ms..to_ms).contains(&o.adjustment.created_ms))
        .map(|o| AdjustmentRow::of(&o.adjustment, o.events_offset))
        .collect())
}

fn bar(out: &mut dyn Write, done: i64, total: i64) -> std::io::Result<()> {
    let frac = if total == 0 { 1.0 } else { done as f64 / total as f64 };
    let filled = (frac * 30.0).round() as usize;
    write!(
        out,
        "\rbackfill [{}{}] {done}/{total} records ({:.0} %)",
        "#".repeat(filled),
        " ".repeat(30 - filled.min(30)),
        frac * 100.0
    )?;
    out.flush()
}
