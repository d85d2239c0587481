//! One transaction's hourly rows of a partition, collapsed per (project,
//! metric, hour, branch): a collector's batch touches each project once, so
//! rows per batch were one ClickHouse row per event (issue 19). The rows are
//! keyed by the partition and the first record they count, which no other
//! committed transaction counts (docs/exactness.md, mechanism 4).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use meter_core::FastHash;
use meter_core::{HourlyRow, ProjectId};
use meter_proto::rows_write::RowRef;
use meter_store::{metric_code, BYTE_HOURS_CODE};

use crate::state::{PartitionState, Slot};

/// Project ids, hashed fast (a transaction touches thousands); shared
/// with the states', not copied.
pub(crate) type Projects = HashSet<ProjectId, FastHash>;

/// The `source_id` of a partition's collapsed rows: `/` never begins a
/// source's own id (`<source>/<session>`), so the two never meet.
pub(crate) fn collapsed_source_id(partition: i32) -> String {
    format!("/p{partition}")
}

/// One hourly row being collapsed (its project is the slot's).
#[derive(Debug)]
struct Acc {
    metric: i8,
    hour: u32,
    branch: String,
    value: u64,
    last_value: u64,
    last_time_ms: i64,
}

/// A project's rows being collapsed, kept in its state's slot: the batch
/// just applied found the slot, so adding its rows costs no second lookup
/// (a separate map by project was 13 % of the aggregator's time in the
/// collectors' shape, a cache miss per batch over 50,000 projects).
#[derive(Debug, Default)]
pub(crate) struct SlotRows {
    /// The `Collapsed` these rows belong to; rows of any other are stale.
    owner: u64,
    rows: Vec<Acc>,
}

/// Tells one `Collapsed` from every other of the process.
static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// One partition's transaction: the projects it counted batches of (in
/// the order first counted) and the first record that gave rows; the rows
/// themselves wait in each project's slot (`SlotRows`) until `into_parts`
/// takes them out.
#[derive(Debug)]
pub(crate) struct Collapsed {
    owner: u64,
    touched: Vec<ProjectId>,
    /// Offset of the first record whose batches gave rows.
    first_offset: Option<u64>,
}

impl Default for Collapsed {
    fn default() -> Self {
        Collapsed { owner: NEXT_OWNER.fetch_add(1, Ordering::Relaxed), touched: Vec::new(), first_offset: None }
    }
}

impl Collapsed {
    /// Counts a batch of the project of `slot`, read from the record at
    /// `offset`, in: the project is touched, and the batch's rows added to
    /// the project's.
    pub(crate) fn add(&mut self, slot: &mut Slot, offset: u64, hourly: &[HourlyRow], byte_hours: &[(i64, u64)]) {
        if slot.rows.owner != self.owner {
            slot.rows.owner = self.owner;
            slot.rows.rows.clear();
            self.touched.push(slot.state.project_id.clone());
        }
        if hourly.is_empty() && byte_hours.is_empty() {
            return;
        }
        self.first_offset.get_or_insert(offset);
        let rows = &mut slot.rows.rows;
        for r in hourly {
            let row = row(rows, metric_code(r.metric), (r.hour_ms / 1000) as u32, &r.branch);
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
            let row = row(rows, BYTE_HOURS_CODE, (hour_ms / 1000) as u32, "");
            row.value = row.value.saturating_add(value);
        }
    }

    /// The rows, keyed by `partition` and the first record counted (their
    /// `batch_seq` and `version`), taken out of the slots of `states`, and
    /// the projects counted in.
    pub(crate) fn into_parts(self, partition: i32, states: &mut PartitionState) -> (PartitionRows, Projects) {
        let mut rows = PartitionRows {
            source: collapsed_source_id(partition),
            first: self.first_offset.unwrap_or_default(),
            projects: Vec::with_capacity(self.touched.len()),
            len: 0,
        };
        let mut touched = Projects::with_capacity_and_hasher(self.touched.len(), FastHash::default());
        for project in self.touched {
            let slot = states.get_mut(project.as_str()).expect("a touched project keeps its slot");
            let accs = std::mem::take(&mut slot.rows.rows);
            touched.insert(project.clone());
            if !accs.is_empty() {
                rows.len += accs.len();
                rows.projects.push((project, accs));
            }
        }
        (rows, touched)
    }
}

/// One partition's collapsed rows of a transaction, as they left the
/// slots: written to `usage.rows` from here (`RowRef`s borrow them), with
/// no `UsageRow` copied per row.
#[derive(Debug, Default)]
pub(crate) struct PartitionRows {
    /// Every row's `source_id` (`collapsed_source_id`).
    source: String,
    /// Every row's `batch_seq` and `version`: the first record counted.
    first: u64,
    projects: Vec<(ProjectId, Vec<Acc>)>,
    len: usize,
}

impl PartitionRows {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The rows, project by project in the order first counted.
    pub(crate) fn iter(&self) -> impl Iterator<Item = RowRef<'_>> {
        self.projects.iter().flat_map(move |(project, accs)| {
            accs.iter().map(move |a| RowRef {
                project_id: project.as_str(),
                metric: a.metric,
                hour_unix_s: a.hour,
                source_id: &self.source,
                batch_seq: self.first,
                value: a.value,
                last_value: a.last_value,
                last_time_unix_ms: a.last_time_ms,
                version: self.first,
                branch_id: &a.branch,
            })
        })
    }
}

/// The row of (metric, hour, branch) among a project's, added empty if new.
fn row<'a>(rows: &'a mut Vec<Acc>, metric: i8, hour: u32, branch: &str) -> &'a mut Acc {
    // Most rows name no branch: two empty ones are equal without a compare.
    let same_branch = |r: &Acc| r.branch.len() == branch.len() && (branch.is_empty() || r.branch == branch);
    match rows.iter().position(|r| r.metric == metric && r.hour == hour && same_branch(r)) {
        Some(i) => &mut rows[i],
        None => {
            rows.push(Acc { metric, hour, branch: branch.to_owned(), value: 0, last_value: 0, last_time_ms: 0 });
            rows.last_mut().expect("just pushed")
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use meter_core::{Batch, Metric, ProjectState, SourceId};
    use meter_store::UsageRow;

    use super::*;
    use crate::rows::row_ref;

    const HOUR: i64 = 1_764_547_200_000;

    fn id(project: &str) -> ProjectId {
        ProjectId::new(project).expect("id")
    }

    /// A partition's slots holding these projects' (empty) states.
    fn slots(projects: &[&ProjectId]) -> PartitionState {
        projects.iter().map(|p| (p.as_str().to_owned(), Slot::new(ProjectState::new((*p).clone())))).collect()
    }

    /// A batch of `project`, the id its state holds (a clone shares it).
    fn batch(project: &ProjectId, seq: u64) -> Batch {
        Batch {
            source_id: SourceId::new("collector").expect("id"),
            session: 7,
            batch_seq: seq,
            keyed_only: false,
            project_id: project.clone(),
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
    fn read<'a>(rows: impl IntoIterator<Item = RowRef<'a>>) -> Read {
        let mut out: BTreeMap<_, (u64, (i64, u64))> = BTreeMap::new();
        for r in rows {
            let e = out.entry((r.project_id.to_owned(), r.metric, r.hour_unix_s, r.branch_id.to_owned())).or_default();
            if r.metric == metric_code(Metric::LogicalSizeBytes) {
                e.0 = e.0.max(r.value);
                e.1 = e.1.max((r.last_time_unix_ms, r.last_value));
            } else {
                e.0 += r.value;
            }
        }
        out
    }

    #[test]
    fn collapsed_rows_read_as_the_rows_per_batch_do() {
        let storage = |v: u64, t: i64| hourly(Metric::LogicalSizeBytes, 0, "br-1", v, (v, HOUR + t));
        let (p1, p2) = (&id("p1"), &id("p2"));
        let batches = [
            (batch(p1, 1), vec![hourly(Metric::ActiveTimeSeconds, 0, "", 60, (0, 0)), storage(500, 10)], vec![]),
            (batch(p2, 1), vec![hourly(Metric::WrittenDataBytes, 1, "", 7, (0, 0))], vec![(HOUR, 3)]),
            (batch(p1, 2), vec![hourly(Metric::ActiveTimeSeconds, 0, "", 40, (0, 0)), storage(300, 20)], vec![]),
            (batch(p1, 3), vec![hourly(Metric::ActiveTimeSeconds, 1, "", 5, (0, 0)), storage(900, 5)], vec![]),
            (batch(p2, 2), vec![], vec![(HOUR, 4)]),
        ];
        let (mut per_batch, mut collapsed, mut states) = (Vec::new(), Collapsed::default(), slots(&[p1, p2]));
        for (offset, (b, rows, byte_hours)) in batches.iter().enumerate() {
            per_batch.extend(UsageRow::of_batch(b, offset as u64, rows));
            per_batch.extend(UsageRow::byte_hours_of(b, offset as u64, byte_hours));
            let slot = states.get_mut(b.project_id.as_str()).expect("slot");
            collapsed.add(slot, 40 + offset as u64, rows, byte_hours);
        }
        let (rows, touched) = collapsed.into_parts(3, &mut states);
        assert_eq!(touched.len(), 2);
        assert_eq!(read(rows.iter()), read(per_batch.iter().map(row_ref)));
        // One row per (project, metric, hour, branch): p1 active x2 hours, p1 storage, p2 written, p2 byte-hours.
        assert_eq!((rows.len(), rows.iter().count()), (5, 5), "{rows:#?}");
        assert!(rows.iter().all(|r| r.source_id == "/p3" && r.batch_seq == 40 && r.version == 40), "{rows:#?}");
        let storage = rows.iter().find(|r| r.metric == metric_code(Metric::LogicalSizeBytes)).expect("storage");
        assert_eq!((storage.value, storage.last_value, storage.last_time_unix_ms), (900, 300, HOUR + 20));
    }

    #[test]
    fn batches_without_rows_are_touched_and_leave_no_key() {
        let (mut c, mut states) = (Collapsed::default(), slots(&[&id("p1"), &id("p2")]));
        c.add(states.get_mut("p1").expect("slot"), 5, &[], &[]);
        c.add(states.get_mut("p2").expect("slot"), 9, &[hourly(Metric::ActiveTimeSeconds, 0, "", 1, (0, 0))], &[]);
        let (rows, touched) = c.into_parts(0, &mut states);
        assert_eq!(touched.len(), 2, "a counted batch moves its project's state, rows or not");
        let first = rows.iter().next().expect("a row");
        assert_eq!((rows.len(), first.batch_seq), (1, 9), "keyed by the first record that gave rows");
    }

    /// Rows left in a slot by a transaction that never took them (its
    /// `Collapsed` dropped) are not counted by the next one; a slot's rows
    /// are taken out with the transaction's.
    #[test]
    fn a_transaction_counts_only_its_own_rows() {
        let active = |v| [hourly(Metric::ActiveTimeSeconds, 0, "", v, (0, 0))];
        let mut states = slots(&[&id("p1")]);
        let mut dropped = Collapsed::default();
        dropped.add(states.get_mut("p1").expect("slot"), 1, &active(100), &[]);
        drop(dropped);
        let mut next = Collapsed::default();
        next.add(states.get_mut("p1").expect("slot"), 2, &active(5), &[]);
        next.add(states.get_mut("p1").expect("slot"), 3, &active(6), &[]);
        let (rows, touched) = next.into_parts(0, &mut states);
        assert_eq!((rows.len(), rows.iter().map(|r| r.value).collect(), touched.len()), (1, vec![11], 1));
        assert!(states["p1"].rows.rows.is_empty(), "taken out, not kept");
        let (rows, touched) = Collapsed::default().into_parts(0, &mut states);
        assert!(rows.is_empty() && touched.is_empty());
    }
}
