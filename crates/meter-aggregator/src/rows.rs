//! Hourly rows on the `usage.rows` topic: the `UsageRows` records the
//! aggregator writes from its collapsed rows (borrowed, `RowRef`), and the
//! `UsageRow`s the load role reads back from them.

use meter_proto::adjust::{adjustment_from_wire, adjustment_to_wire};
use meter_proto::rows_write::{rows_record, RowRef};
use meter_proto::v1;
use meter_store::{AdjustmentRow, UsageRow};
use prost::Message as _;

/// Rows per `usage.rows` record at most: ~100 bytes each, so a record stays
/// well under the broker's 1 MiB `message.max.bytes`.
pub(crate) const ROWS_PER_RECORD: usize = 2_000;

/// The `usage.rows` records of `rows`, in order, `ROWS_PER_RECORD` rows
/// each at most.
pub(crate) fn encode_rows<'a>(rows: impl IntoIterator<Item = RowRef<'a>>) -> Vec<Vec<u8>> {
    let (mut out, mut chunk) = (Vec::new(), Vec::with_capacity(ROWS_PER_RECORD));
    for row in rows {
        chunk.push(row);
        if chunk.len() == ROWS_PER_RECORD {
            out.push(rows_record(&chunk));
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        out.push(rows_record(&chunk));
    }
    out
}

/// `r` as the rows writer borrows it.
#[cfg(test)]
pub(crate) fn row_ref(r: &UsageRow) -> RowRef<'_> {
    RowRef {
        project_id: &r.project_id,
        metric: r.metric,
        hour_unix_s: r.hour,
        source_id: &r.source_id,
        batch_seq: r.batch_seq,
        value: r.value,
        last_value: r.last_value,
        last_time_unix_ms: r.last_time_ms,
        version: r.version,
        branch_id: &r.branch_id,
    }
}

/// The `usage.rows` record of applied adjustments (few: one record).
pub(crate) fn encode_adjustments(applied: &[(meter_core::adjust::Adjustment, u64)]) -> Vec<u8> {
    let adjustments = applied
        .iter()
        .map(|(a, version)| v1::AppliedAdjustment { adjustment: Some(adjustment_to_wire(a)), version: *version })
        .collect();
    v1::UsageRows { adjustments, ..Default::default() }.encode_to_vec()
}

/// The `usage.rows` record of the probes read from one partition.
pub(crate) fn encode_probes(written_ms: &[i64]) -> Vec<u8> {
    let probes = written_ms.iter().map(|&t| v1::Probe { written_unix_ms: t }).collect();
    v1::UsageRows { probes, ..Default::default() }.encode_to_vec()
}

/// What one `usage.rows` record holds for ClickHouse.
#[derive(Debug, Default)]
pub struct Loadable {
    pub rows: Vec<UsageRow>,
    pub adjustments: Vec<AdjustmentRow>,
    /// When each probe in it was written.
    pub probes: Vec<i64>,
}

/// The rows and adjustments of one `usage.rows` record (the load role's
/// reading, and `meterctl backfill`'s).
pub fn decode_rows(payload: &[u8]) -> anyhow::Result<Loadable> {
    let wire = v1::UsageRows::decode(payload)?;
    let adjustments = wire
        .adjustments
        .into_iter()
        .map(|w| {
            let a = adjustment_from_wire(w.adjustment.unwrap_or_default())?;
            Ok(AdjustmentRow::of(&a, w.version))
        })
        .collect::<anyhow::Result<_>>()?;
    let rows = wire
        .rows
        .into_iter()
        .map(|r| {
            let metric = i8::try_from(r.metric)
                .ok()
                .filter(|m| (1..=meter_store::BYTE_HOURS_CODE).contains(m))
                .ok_or_else(|| anyhow::anyhow!("metric code {} is not 1..=6", r.metric))?;
            Ok(UsageRow {
                project_id: r.project_id,
                metric,
                hour: r.hour_unix_s,
                source_id: r.source_id,
                batch_seq: r.batch_seq,
                value: r.value,
                last_value: r.last_value,
                last_time_ms: r.last_time_unix_ms,
                version: r.version,
                branch_id: r.branch_id,
            })
        })
        .collect::<anyhow::Result<_>>()?;
    let probes = wire.probes.iter().map(|p| p.written_unix_ms).collect();
    Ok(Loadable { rows, adjustments, probes })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(i: u64) -> UsageRow {
        UsageRow {
            project_id: format!("p{i}"),
            metric: (i % 6) as i8 + 1,
            hour: 1_764_500_400,
            source_id: "node-1/00ab".into(),
            batch_seq: i,
            value: i * 7,
            last_value: i,
            last_time_ms: 1_764_500_400_123,
            version: 42,
            branch_id: if i % 5 == 4 { format!("br-{i}") } else { String::new() },
        }
    }

    #[test]
    fn rows_survive_the_topic_in_records_of_bounded_size() {
        let rows: Vec<UsageRow> = (0..4_500).map(row).collect();
        let records = encode_rows(rows.iter().map(row_ref));
        assert_eq!(records.len(), 3);
        assert!(records.iter().all(|r| r.len() < 512 * 1024), "{:?}", records.iter().map(Vec::len).collect::<Vec<_>>());
        let back: Vec<UsageRow> = records.iter().flat_map(|r| decode_rows(r).expect("decodes").rows).collect();
        assert_eq!(format!("{back:?}"), format!("{rows:?}"));
    }

    #[test]
    fn applied_adjustments_survive_the_topic() {
        let a = meter_core::adjust::Adjustment {
            project_id: meter_core::ProjectId::new("p1").unwrap(),
            metric: meter_core::Metric::ActiveTimeSeconds,
            hour_ms: 1_764_500_400_000,
            cycle_wide: false,
            delta: -60,
            reason: "r".into(),
            idempotency_key: "k".into(),
            actor: "ops".into(),
            created_ms: 1,
            request_id: "q".into(),
        };
        let back = decode_rows(&encode_adjustments(&[(a.clone(), 7)])).expect("decodes");
        assert!(back.rows.is_empty());
        assert_eq!(back.adjustments, vec![AdjustmentRow::of(&a, 7)]);
    }

    #[test]
    fn a_bad_metric_code_is_named() {
        let mut bad = row(1);
        bad.metric = 9;
        let err = decode_rows(&encode_rows([row_ref(&bad)])[0]).expect_err("refused");
        assert!(err.to_string().contains("metric code 9"), "{err}");
    }
}
