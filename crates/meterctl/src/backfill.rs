//! Rebuilding ClickHouse's usage rows from `usage.rows` for a time range.
//!
//! Every record the aggregator committed to `usage.rows` between `from`
//! and `to` (Kafka record time: when the aggregator wrote it, moments after
//! ingest) is decoded and inserted as the load role inserts it: the same
//! rows under the same keys and versions, and the applied adjustments in
//! it. Rows that exist replace themselves; rows that were lost (a dropped
//! table, a restored backup) come back, for any range, exactly. Nothing is
//! written to Kafka. `usage.rows` is kept as long as `usage.events`
//! (`events_retention_hours`): older rows cannot be rebuilt.

use std::io::Write;
use std::time::{Duration, Instant};

use anyhow::Context;
use meter_aggregator::decode_rows;
use meter_kafka::KafkaConfig;
use meter_store::{AdjustmentRow, Store, StoreConfig, UsageRow};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
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
        .set("enable.partition.eof", "true")
        .create()
        .context("creating the Kafka consumer")?;
    let topic = kafka.rows_topic.clone();
    let ranges = ranges(&consumer, &topic, from_ms, to_ms)?;
    let total: i64 = ranges.iter().map(|(_, s, e)| e - s).sum();
    let mut tpl = TopicPartitionList::new();
    for (p, s, _) in &ranges {
        tpl.add_partition_offset(&topic, *p, Offset::Offset(*s))?;
    }
    consumer.assign(&tpl)?;
    let mut open: std::collections::HashMap<i32, i64> = ranges.iter().map(|(p, _, e)| (*p, *e)).collect();
    let (mut report, mut done) = (BackfillReport::default(), 0i64);
    let (mut rows, mut adjustments) = (Vec::<UsageRow>::new(), Vec::<AdjustmentRow>::new());
    let mut last_print = Instant::now();
    let mut idle_since = Instant::now();
    while !open.is_empty() {
        let Some(msg) = consumer.poll(Duration::from_millis(200)) else {
            anyhow::ensure!(idle_since.elapsed() < Duration::from_secs(60), "no records from Kafka for 60 s");
            continue;
        };
        idle_since = Instant::now();
        // A range may end with transaction markers, which read_committed
        // never delivers: the partition's end closes it too.
        if let Err(KafkaError::PartitionEOF(p)) = msg {
            open.remove(&p);
            continue;
        }
        let msg = msg.context("reading usage.rows")?;
        let (p, offset) = (msg.partition(), msg.offset());
        let Some(&end) = open.get(&p) else { continue };
        if offset >= end {
            open.remove(&p);
            continue;
        }
        done += 1;
        report.records += 1;
        match decode_rows(msg.payload().unwrap_or_default()) {
            Ok(loadable) => {
                rows.extend(loadable.rows);
                adjustments.extend(loadable.adjustments);
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
    report.adjustments = adjustments.len() as u64;
    store.write_adjustments(&adjustments).await.context("writing adjustments to ClickHouse")?;
    // Every range read to its end (the offsets left were transaction markers).
    bar(progress, total, total)?;
    writeln!(progress)?;
    Ok(report)
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
