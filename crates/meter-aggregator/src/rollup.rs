//! The rollup job, run by every load instance: every
//! `load.rollup_interval_seconds`, the days that became final are rolled up
//! (oldest first) and the per-batch rows of months kept long enough are
//! dropped (see `Store::roll_up`). Instances that roll the same day at once
//! each replace it whole with the same rows, so no election is needed.

use std::time::{Duration, Instant};

use meter_core::finality::{Finality, DAY_MS};
use meter_kafka::KafkaConfig;
use meter_store::{RollupRule, Store};
use tokio_util::sync::CancellationToken;

use crate::metrics as m;
use crate::LoadConfig;

/// Rolls up until `shutdown`; a failed pass (ClickHouse down) is tried
/// again at the next interval.
pub(crate) async fn run_rollups(cfg: LoadConfig, kafka: KafkaConfig, store: Store, shutdown: CancellationToken) {
    if cfg.rollup_interval_seconds == 0 {
        return;
    }
    let finality = Finality::new(cfg.late_horizon_seconds * 1000, kafka.produce_timeout_ms as i64);
    let keep_batches_ms = (cfg.keep_batches_days > 0).then(|| cfg.keep_batches_days as i64 * DAY_MS);
    loop {
        let pass = async {
            let partitions = meter_kafka::partition_count(&kafka, &kafka.events_topic).await?;
            let rule = RollupRule { finality, partitions, keep_batches_ms };
            loop {
                let started = Instant::now();
                let pass = store.roll_up(&rule, 1, meter_runtime::now_ms()).await?;
                if !pass.rolled.is_empty() {
                    metrics::counter!(m::ROLLED_DAYS).increment(pass.rolled.len() as u64);
                    metrics::histogram!(m::ROLL_SECONDS).record(started.elapsed().as_secs_f64());
                }
                metrics::gauge!(m::ROLLED_THROUGH).set(pass.rolled_through.map_or(0.0, |t| (t / 1000) as f64));
                metrics::gauge!(m::COPIED_THROUGH).set(pass.compacted_through.map_or(0.0, |t| (t / 1000) as f64));
                for c in &pass.compacted {
                    metrics::histogram!(m::COPY_SECONDS).record(c.took.as_secs_f64());
                }
                if pass.days_left == 0 || shutdown.is_cancelled() {
                    return anyhow::Ok(());
                }
            }
        };
        if let Err(e) = pass.await {
            metrics::counter!(m::ROLL_ERRORS).increment(1);
            tracing::info!(error = format!("{e:#}"), "rollup.pass_failed");
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(cfg.rollup_interval_seconds)) => {}
        }
    }
}
