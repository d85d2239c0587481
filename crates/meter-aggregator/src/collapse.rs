//! One transaction's hourly rows of a partition, collapsed per (project,
//! metric, hour, branch): a collector's batch touches each project once, so
//! rows per batch were one ClickHouse row per event (issue 19). The rows are
//! keyed by the partition and the first record they count, which no other
//! committed transaction counts (docs/exactness.md, mechanism 4).

use std::collections::HashMap;

use meter_core::{Batch, HourlyRow};
use meter_store::{metric_code, UsageRow, BYTE_HOURS_CODE};

/// The `source_id` of a partition's collapsed rows: `/` never begins a
/// source's own id (`<source>/<session>`), so the two never meet.
pub(crate) fn collapsed_source_id(partition: i32) -> String {
    format!("/p{partition}")
}

/// The rows of one partition's transaction being collapsed.
#[derive(Debug, Default)]
pub(crate) struct Collapsed {
    rows: Vec<UsageRow>,
    /// Per project, the indexes of its rows (a handful).
    index: HashMap<String, Vec<usize>>,
    /// Offset of the first record whose batches gave rows.
    first_offset: Option<u64>,
}

impl Collapsed {
    /// Adds the rows of `batch`, read from the record at `offset`.
    pub(crate) fn add(&mut self, batch: &Batch, offset: u64, hourly: &[HourlyRow], byte_hours: &[(i64, u64)]) {
        if hourly.is_empty() && byte_hours.is_empty() {
            return;
        }
        self.first_offset.get_or_insert(offset);
        let project = batch.project_id.as_str();
        for r in hourly {
            let (metric, hour) = (metric_code(r.metric), (r.hour_ms / 1000) as u32);
            let row = self.row(project, metric, hour, &r.branch);
            if r.metric.is_gauge() {
                row.value = row.value.max(r.value);
                if (r.last_time_ms, r.last_value) > (row.last_time_ms, row.last_value) {
                    (row.last_time_ms, row.last_value) = (r.last_time_ms, r.last_value);
                }
            } else {
                row.value = row.value.saturating_add(r.value);
            }
        }
        for &(hour_ms, value) in byte_hours {
            let row = self.row(project, BYTE_HOURS_CODE, (hour_ms / 1000) as u32, "");
            row.value = row.value.saturating_add(value);
        }
    }

    /// The row of (project, metric, hour, branch), added empty if new.
    fn row(&mut self, project: &str, metric: i8, hour: u32, branch: &str) -> &mut UsageRow {
        let rows = &mut self.rows;
        let found = match self.index.get_mut(project) {
            Some(ids) => match ids.iter().copied().find(|&i| {
                let r = &rows[i];
                r.metric == metric && r.hour == hour && r.branch_id == branch
            }) {
                Some(i) => i,
                None => {
                    ids.push(rows.len());
                    rows.push(empty(project, metric, hour, branch));
                    rows.len() - 1
                }
            },
            None => {
                self.index.insert(project.to_owned(), vec![rows.len()]);
                rows.push(empty(project, metric, hour, branch));
                rows.len() - 1
            }
        };
        &mut rows[found]
    }

    /// The rows, keyed by `partition` and the first record counted (their
    /// `batch_seq` and `version`).
    pub(crate) fn into_rows(self, partition: i32) -> Vec<UsageRow> {
        let Some(first) = self.first_offset else { return Vec::new() };
        let source = collapsed_source_id(partition);
        let mut rows = self.rows;
        for r in &mut rows {
            r.source_id.clone_from(&source);
            r.batch_seq = first;
            r.version = first;
        }
        rows
    }
}

fn empty(project: &str, metric: i8, hour: u32, branch: &str) -> UsageRow {
    UsageRow {
        project_id: project.to_owned(),
        metric,
        hour,
        source_id: String::new(),
        batch_seq: 0,
        value: 0,
        last_value: 0,
        last_time_ms: 0,
        version: 0,
        branch_id: branch.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use meter_core::{Metric, ProjectId, SourceId};

    use super::*;

    const HOUR: i64 = 1_764_547_200_000;

    fn batch(project: &str, seq: u64) -> Batch {
        Batch {
            source_id: SourceId::new("collector").expect("id"),
            session: 7,
            batch_seq: seq,
            keyed_only: false,
            project_id: ProjectId::new(project).expect("id"),
            events: Vec::new(),
            ingested_ms: HOUR,
        }
    }

    fn hourly(metric: Metric, hour: i64, branch: &str, value: u64, last: (u64, i64)) -> HourlyRow {
        HourlyRow {
            metric,
            hour_ms: HOUR + hour * 3_600_000,
            branch: branch.into(),
            value,
            last_value: last.0,
            last_time_ms: last.1,
        }
    }

    /// (project, metric, hour, branch) -> (value, (last time, last value)).
    type Read = BTreeMap<(String, i8, u32, String), (u64, (i64, u64))>;

    /// What the readers compute from rows: per (project, metric, hour,
    /// branch), counters and byte-hours summed, storage's largest reading
    /// and latest (by time, then value).
    fn read(rows: &[UsageRow]) -> Read {
        let mut out: BTreeMap<_, (u64, (i64, u64))> = BTreeMap::new();
        for r in rows {
            let e = out.entry((r.project_id.clone(), r.metric, r.hour, r.branch_id.clone())).or_default();
            if r.metric == metric_code(Metric::LogicalSizeBytes) {
                e.0 = e.0.max(r.value);
                e.1 = e.1.max((r.last_time_ms, r.last_value));
            } else {
                e.0 += r.value;
            }
        }
        out
    }

    #[test]
    fn collapsed_rows_read_as_the_rows_per_batch_do() {
        let storage = |v: u64, t: i64| hourly(Metric::LogicalSizeBytes, 0, "br-1", v, (v, HOUR + t));
        let batches = [
            (batch("p1", 1), vec![hourly(Metric::ActiveTimeSeconds, 0, "", 60, (0, 0)), storage(500, 10)], vec![]),
            (batch("p2", 1), vec![hourly(Metric::WrittenDataBytes, 1, "", 7, (0, 0))], vec![(HOUR, 3)]),
            (batch("p1", 2), vec![hourly(Metric::ActiveTimeSeconds, 0, "", 40, (0, 0)), storage(300, 20)], vec![]),
            (batch("p1", 3), vec![hourly(Metric::ActiveTimeSeconds, 1, "", 5, (0, 0)), storage(900, 5)], vec![]),
            (batch("p2", 2), vec![], vec![(HOUR, 4)]),
        ];
        let (mut per_batch, mut collapsed) = (Vec::new(), Collapsed::default());
        for (offset, (b, rows, byte_hours)) in batches.iter().enumerate() {
            per_batch.extend(UsageRow::of_batch(b, offset as u64, rows));
            per_batch.extend(UsageRow::byte_hours_of(b, offset as u64, byte_hours));
            collapsed.add(b, 40 + offset as u64, rows, byte_hours);
        }
        let rows = collapsed.into_rows(3);
        assert_eq!(read(&rows), read(&per_batch));
        // One row per (project, metric, hour, branch): p1 active x2 hours, p1 storage, p2 written, p2 byte-hours.
        assert_eq!(rows.len(), 5, "{rows:#?}");
        assert!(rows.iter().all(|r| r.source_id == "/p3" && r.batch_seq == 40 && r.version == 40), "{rows:#?}");
        let storage = rows.iter().find(|r| r.metric == metric_code(Metric::LogicalSizeBytes)).expect("storage");
        assert_eq!((storage.value, storage.last_value, storage.last_time_ms), (900, 300, HOUR + 20));
    }

    #[test]
    fn batches_without_rows_leave_no_key() {
        let mut c = Collapsed::default();
        c.add(&batch("p1", 1), 5, &[], &[]);
        assert!(c.rows.is_empty());
        c.add(&batch("p1", 2), 9, &[hourly(Metric::ActiveTimeSeconds, 0, "", 1, (0, 0))], &[]);
        assert_eq!(c.into_rows(0)[0].batch_seq, 9, "keyed by the first record that gave rows");
    }
}
