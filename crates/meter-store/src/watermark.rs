//! How far ClickHouse is complete: the latest probe (see `Probe` in
//! ingest.proto) of each `usage.events` partition that reached
//! `pipeline_watermarks`, inserted by the load role after the rows that came
//! before it. Everything acknowledged before the oldest of them is queryable.

use std::collections::BTreeMap;

use clickhouse::Row;
use serde::{Deserialize, Serialize};

use crate::{Result, Store};

#[derive(Debug, Row, Serialize)]
struct ProbeRow {
    partition: u32,
    written_ms: i64,
}

#[derive(Debug, Row, Deserialize)]
struct Latest {
    partition: u32,
    written_ms: i64,
}

impl Store {
    /// Records the latest probe read per partition (written after their rows).
    pub async fn write_probes(&self, latest: &BTreeMap<i32, i64>) -> Result<()> {
        let rows: Vec<ProbeRow> =
            latest.iter().map(|(&p, &t)| ProbeRow { partition: p as u32, written_ms: t }).collect();
        self.insert_all("pipeline_watermarks", &rows).await
    }

    /// When the oldest of the partitions' latest probes was written: every
    /// event acknowledged before it is in ClickHouse. `None` until each of
    /// `partitions` has had a probe loaded.
    pub async fn loaded_through(&self, partitions: u32) -> Result<Option<i64>> {
        let latest: Vec<Latest> = self
            .client
            .query("SELECT partition, max(written_ms) AS written_ms FROM pipeline_watermarks GROUP BY partition")
            .fetch_all()
            .await?;
        let seen = latest.iter().filter(|l| l.partition < partitions).count();
        if seen < partitions as usize {
            return Ok(None);
        }
        Ok(latest.iter().filter(|l| l.partition < partitions).map(|l| l.written_ms).min())
    }
}
