//! `meterctl rollup`: how far final days are rolled up, rolling them now,
//! and rolling days again (after a backfill rewrote their per-batch rows).

use std::io::Write;
use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;
use meter_core::cycle::{civil_from_days, rfc3339};
use meter_core::finality::{month_of, Finality, DAY_MS};
use meter_store::{RollupRule, Store};
use serde_json::{json, Value};

use crate::{cell, Render};

#[derive(Debug, Subcommand)]
pub(crate) enum RollupCmd {
    /// How far days are rolled up and final, and the months of per-batch rows kept.
    Status {
        /// meterd's configuration ([kafka], [clickhouse], [ingest], [load]); METER__* variables apply.
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Roll up every final day not rolled yet (what the load role does every interval).
    Run {
        #[arg(long)]
        config: Option<PathBuf>,
    },
    /// Roll up again the days [--from, --to) (YYYY-MM-DD) that were rolled up, e.g. after a backfill.
    Redo {
        #[arg(long)]
        config: Option<PathBuf>,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
    },
}

/// The sections of meterd's configuration the rollup needs (others ignored).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct Sections {
    kafka: meter_kafka::KafkaConfig,
    clickhouse: meter_store::StoreConfig,
    ingest: IngestPart,
    load: meter_aggregator::LoadConfig,
}

#[derive(Debug, serde::Deserialize)]
#[serde(default)]
struct IngestPart {
    max_past_seconds: i64,
}

impl Default for IngestPart {
    fn default() -> Self {
        IngestPart { max_past_seconds: meter_core::Limits::default().max_past_ms / 1000 }
    }
}

/// A `YYYY-MM-DD` as the start of that UTC day.
fn parse_day(name: &str, v: &str) -> anyhow::Result<i64> {
    meter_core::cycle::parse_rfc3339(&format!("{v}T00:00:00Z"))
        .with_context(|| format!("--{name} {v:?}: expected a day, YYYY-MM-DD"))
}

fn day_name(ms: i64) -> String {
    let (y, m, d) = civil_from_days(ms.div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// Runs a `rollup` subcommand.
pub(crate) async fn rollup(cmd: RollupCmd) -> anyhow::Result<(Value, Box<Render>)> {
    let config = match &cmd {
        RollupCmd::Status { config } | RollupCmd::Run { config } | RollupCmd::Redo { config, .. } => config.clone(),
    };
    let cfg: Sections = meter_runtime::load_config(config.as_deref(), "METER")?;
    let store = Store::new(&cfg.clickhouse)?;
    let partitions = meter_kafka::partition_count(&cfg.kafka, &cfg.kafka.events_topic).await?;
    let rule = RollupRule {
        finality: Finality::new(cfg.ingest.max_past_seconds * 1000, cfg.kafka.produce_timeout_ms as i64),
        partitions,
        keep_batches_ms: (cfg.load.keep_batches_days > 0).then(|| cfg.load.keep_batches_days as i64 * DAY_MS),
    };
    let now = meter_runtime::now_ms();
    let (mut rolled, mut dropped, mut compacted) = (Vec::new(), Vec::new(), Vec::new());
    match cmd {
        RollupCmd::Status { .. } => {}
        RollupCmd::Run { .. } => loop {
            let pass = store.roll_up(&rule, 1, now).await?;
            rolled.extend(pass.rolled);
            dropped.extend(pass.dropped_months);
            compacted.extend(pass.compacted);
            if pass.days_left == 0 {
                break;
            }
        },
        RollupCmd::Redo { from, to, .. } => {
            let (from, to) = (parse_day("from", &from)?, parse_day("to", &to)?);
            let through = store.rolled_through().await?.unwrap_or(i64::MIN);
            anyhow::ensure!(
                to <= through,
                "--to {}: days from {} on are not rolled up yet (they roll up once final; see `meterctl rollup status`)",
                day_name(to),
                day_name(through.max(0))
            );
            let (held, without_days) = (store.batch_months().await?, store.months_without_days().await?);
            let mut day = from;
            while day < to {
                let month = month_of(day);
                anyhow::ensure!(
                    !without_days.contains(&month),
                    "{}: {month} is compacted and its rolled days were dropped with its per-batch rows (any \
                     written since are not the whole month): rolling a day again would lose the rest; \
                     nothing was changed from this day on",
                    day_name(day)
                );
                anyhow::ensure!(
                    held.contains(&month),
                    "{}: the per-batch rows of {month} are not kept (dropped after load.keep_batches_days, or none): \
                     rolling it again would empty it; nothing was changed from this day on",
                    day_name(day)
                );
                rolled.push(store.roll_day(day, now).await?);
                day += DAY_MS;
            }
            // The months of those days were compacted from the days as they were.
            let loaded_ms = store.loaded_through(partitions).await?.unwrap_or(now);
            compacted = store.compact_months(through, meter_store::At { now_ms: now, loaded_ms }).await?;
        }
    }
    let loaded = store.loaded_through(partitions).await?;
    let reach = store.reach().await?;
    let body = json!({
        "rolled_through": reach.rolled_through.map(rfc3339),
        "compacted_through": reach.compacted_through.map(rfc3339),
        "final_before": rule.finality.final_before(loaded).map(rfc3339),
        "loaded_through": loaded.map(rfc3339),
        "batch_months": store.batch_months().await?,
        "keep_batches_days": cfg.load.keep_batches_days,
        "rolled": rolled.iter().map(|r| json!({"day": day_name(r.day_ms), "hourly_rows": r.hourly_rows, "daily_rows": r.daily_rows})).collect::<Vec<_>>(),
        "batch_months_dropped": dropped,
        "compacted": compacted.iter().map(|c| json!({"month": c.month, "through": rfc3339(c.through), "hourly_rows": c.hourly_rows, "seconds": c.took.as_secs_f64()})).collect::<Vec<_>>(),
    });
    Ok((body, Box::new(status_lines)))
}

fn status_lines(b: &Value, out: &mut dyn Write) -> anyhow::Result<()> {
    for r in b["rolled"].as_array().map(Vec::as_slice).unwrap_or_default() {
        writeln!(out, "rolled {}: {} hourly rows, {} daily rows", cell(&r["day"]), r["hourly_rows"], r["daily_rows"])?;
    }
    for c in b["compacted"].as_array().map(Vec::as_slice).unwrap_or_default() {
        writeln!(
            out,
            "copied {} through {}: {} hourly rows in {:.1} s",
            c["month"],
            cell(&c["through"]),
            c["hourly_rows"],
            c["seconds"].as_f64().unwrap_or(0.0)
        )?;
    }
    for m in b["batch_months_dropped"].as_array().map(Vec::as_slice).unwrap_or_default() {
        writeln!(out, "dropped the per-batch rows of {m}")?;
    }
    writeln!(
        out,
        "rolled up through {}, months compacted through {} (final before {}, loaded through {}); per-batch rows held for months {} (kept {} days after a month)",
        cell(&b["rolled_through"]),
        cell(&b["compacted_through"]),
        cell(&b["final_before"]),
        cell(&b["loaded_through"]),
        b["batch_months"],
        b["keep_batches_days"]
    )?;
    Ok(())
}
