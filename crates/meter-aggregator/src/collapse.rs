//! A partition's hourly rows, summed per (project, metric, hour, branch)
//! in each project's state (`HeldRows`) and written for ClickHouse when the
//! partition emits them: once the oldest has been held `rows_hold_min_ms`
//! while the aggregator keeps up, up to `rows_hold_seconds` while it has a
//! backlog (docs/exactness.md, mechanism 4; decisions 0014, 0020, 0022). A collector's
//! batch touches each project once, so rows per batch were one ClickHouse
//! row per event (issue 19).

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, Ordering};

use meter_core::held::HeldRow;
use meter_core::FastHash;
use meter_core::{HourlyRow, ProjectId};
use meter_proto::rows_write::RowRef;
use meter_store::{metric_code, BYTE_HOURS_CODE};

use crate::state::{Holding, PartitionState, Slot};

/// Project ids, hashed fast (a transaction touches thousands); shared
/// with the states', not copied.
pub(crate) type Projects = HashSet<ProjectId, FastHash>;

/// The `source_id` of a partition's collapsed rows: `/` never begins a
/// source's own id (`<source>/<session>`), so the two never meet.
pub(crate) fn collapsed_source_id(partition: i32) -> String {
    format!("/p{partition}")
}

/// How long a partition holds its projects' rows before writing them:
/// `min_ms` while the aggregator keeps up (its batch ended before a
/// bound), and up to `behind_ms` (at least `min_ms`) while it has a
/// backlog (decisions 0020 and 0022).
pub(crate) fn hold_ms(behind: bool, behind_ms: i64, min_ms: i64) -> i64 {
    if behind {
        behind_ms.max(min_ms)
    } else {
        min_ms
    }
}

/// Whether a partition's transaction writes the rows its projects hold:
/// once the oldest has been held `hold_ms` (0: in every transaction).
pub(crate) fn emits(holding_since_ms: Option<i64>, now_ms: i64, hold_ms: i64) -> bool {
    hold_ms <= 0 || holding_since_ms.is_some_and(|since| now_ms - since >= hold_ms)
}

/// The transaction that last counted a batch of a project, kept in its
/// slot: a project is listed once per transaction without a second lookup
/// (a separate map by project was 13 % of the aggregator's time in the
/// collectors' shape, a cache miss per batch over 50,000 projects).
#[derive(Debug, Default)]
pub(crate) struct SlotMark {
    owner: u64,
}

/// Tells one `Collapsed` from every other of the process.
static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

/// One partition's transaction: the projects it counted batches of (in
/// the order first counted), the first record that gave rows (the key of
/// the rows a project begins to hold in it), and the projects that began
/// to hold rows in it. The rows themselves are summed in the states.
#[derive(Debug)]
pub(crate) struct Collapsed {
    owner: u64,
    now_ms: i64,
    touched: Vec<ProjectId>,
    /// Offset of the first record whose batches gave rows.
    first_offset: Option<u64>,
    began: Vec<ProjectId>,
}

impl Collapsed {
    /// A transaction running at `now_ms` (when the rows it begins to hold
    /// were first held).
    pub(crate) fn new(now_ms: i64) -> Self {
        Collapsed {
            owner: NEXT_OWNER.fetch_add(1, Ordering::Relaxed),
            now_ms,
            touched: Vec::new(),
            first_offset: None,
            began: Vec::new(),
        }
    }

    /// Counts a batch of the project of `slot`, read from the record at
    /// `offset`, in: the project is touched, and the batch's rows added to
    /// the rows it holds.
    pub(crate) fn add(&mut self, slot: &mut Slot, offset: u64, hourly: &[HourlyRow], byte_hours: &[(i64, u64)]) {
        if slot.mark.owner != self.owner {
            slot.mark.owner = self.owner;
            self.touched.push(slot.state.project_id.clone());
        }
        if hourly.is_empty() && byte_hours.is_empty() {
            return;
        }
        let key = *self.first_offset.get_or_insert(offset);
        let held = &mut slot.state.held;
        if held.is_empty() {
            (held.key, held.since_ms) = (key, self.now_ms);
            self.began.push(slot.state.project_id.clone());
        }
        let rows = &mut held.rows;
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

    /// Ends the transaction: the projects it counted in; and, when `emit`
    /// gives a version, the rows every project of the partition holds
    /// (those `holding` lists and those begun here), taken out of the states
    /// of `states` under that version (their projects are counted in too:
    /// their states changed). Otherwise the projects that began holding
    /// rows join `holding`.
    pub(crate) fn into_parts(
        self,
        partition: i32,
        states: &mut PartitionState,
        emit: Option<u64>,
        holding: &mut Holding,
    ) -> (PartitionRows, Projects) {
        let mut touched = Projects::with_capacity_and_hasher(self.touched.len(), FastHash::default());
        touched.extend(self.touched);
        let Some(version) = emit else {
            if !self.began.is_empty() {
                holding.since_ms.get_or_insert(self.now_ms);
                holding.projects.extend(self.began);
            }
            return (PartitionRows::default(), touched);
        };
        let projects = holding.take_projects().into_iter().chain(self.began);
        (take_held(partition, projects, states, version, &mut touched), touched)
    }
}

/// The rows `projects` hold in `states`, taken out under `version`; the
/// projects join `touched`.
pub(crate) fn take_held(
    partition: i32,
    projects: impl IntoIterator<Item = ProjectId>,
    states: &mut PartitionState,
    version: u64,
    touched: &mut Projects,
) -> PartitionRows {
    let mut rows = PartitionRows { source: collapsed_source_id(partition), version, projects: Vec::new(), len: 0 };
    for project in projects {
        let slot = states.get_mut(project.as_str()).expect("a project holding rows keeps its slot");
        let held = std::mem::take(&mut slot.state.held);
        if !held.is_empty() {
            rows.len += held.rows.len();
            rows.projects.push((project.clone(), held.key, held.rows));
        }
        touched.insert(project);
    }
    rows
}

/// One partition's rows as they left the states: written to `usage.rows`
/// from here (`RowRef`s borrow them), with no `UsageRow` copied per row.
#[derive(Debug, Default)]
pub(crate) struct PartitionRows {
    /// Every row's `source_id` (`collapsed_source_id`).
    source: String,
    /// Every row's `version`: the `usage.events` offset the partition's
    /// state covered when they were written, higher at each emission.
    version: u64,
    /// Per project, the key its rows are written under (`batch_seq`) and the rows.
    projects: Vec<(ProjectId, u64, Vec<HeldRow>)>,
    len: usize,
}

impl PartitionRows {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The rows, project by project in the order first held.
    pub(crate) fn iter(&self) -> impl Iterator<Item = RowRef<'_>> {
        self.projects.iter().flat_map(move |(project, key, rows)| {
            rows.iter().map(move |a| RowRef {
                project_id: project.as_str(),
                metric: a.metric,
                hour_unix_s: a.hour_unix_s,
                source_id: &self.source,
                batch_seq: *key,
                value: a.value,
                last_value: a.last_value,
                last_time_unix_ms: a.last_time_ms,
                version: self.version,
                branch_id: &a.branch,
            })
        })
    }
}

/// The row of (metric, hour, branch) among a project's, added empty if new.
fn row<'a>(rows: &'a mut Vec<HeldRow>, metric: i8, hour: u32, branch: &str) -> &'a mut HeldRow {
    // Most rows name no branch: two empty ones are equal without a compare.
    let same_branch = |r: &HeldRow| r.branch.len() == branch.len() && (branch.is_empty() || r.branch == branch);
    match rows.iter().position(|r| r.metric == metric && r.hour_unix_s == hour && same_branch(r)) {
        Some(i) => &mut rows[i],
        None => {
            rows.push(HeldRow {
                metric,
                hour_unix_s: hour,
                branch: branch.to_owned(),
                value: 0,
                last_value: 0,
                last_time_ms: 0,
            });
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
        let (mut per_batch, mut collapsed, mut states) = (Vec::new(), Collapsed::new(HOUR), slots(&[p1, p2]));
        for (offset, (b, rows, byte_hours)) in batches.iter().enumerate() {
            per_batch.extend(UsageRow::of_batch(b, offset as u64, rows));
            per_batch.extend(UsageRow::byte_hours_of(b, offset as u64, byte_hours));
            let slot = states.get_mut(b.project_id.as_str()).expect("slot");
            collapsed.add(slot, 40 + offset as u64, rows, byte_hours);
        }
        let (rows, touched) = collapsed.into_parts(3, &mut states, Some(45), &mut Holding::default());
        assert_eq!(touched.len(), 2);
        assert_eq!(read(rows.iter()), read(per_batch.iter().map(row_ref)));
        // One row per (project, metric, hour, branch): p1 active x2 hours, p1 storage, p2 written, p2 byte-hours.
        assert_eq!((rows.len(), rows.iter().count()), (5, 5), "{rows:#?}");
        assert!(rows.iter().all(|r| r.source_id == "/p3" && r.batch_seq == 40 && r.version == 45), "{rows:#?}");
        let storage = rows.iter().find(|r| r.metric == metric_code(Metric::LogicalSizeBytes)).expect("storage");
        assert_eq!((storage.value, storage.last_value, storage.last_time_unix_ms), (900, 300, HOUR + 20));
    }

    #[test]
    fn batches_without_rows_are_touched_and_leave_no_key() {
        let (mut c, mut states) = (Collapsed::new(HOUR), slots(&[&id("p1"), &id("p2")]));
        c.add(states.get_mut("p1").expect("slot"), 5, &[], &[]);
        c.add(states.get_mut("p2").expect("slot"), 9, &[hourly(Metric::ActiveTimeSeconds, 0, "", 1, (0, 0))], &[]);
        let (rows, touched) = c.into_parts(0, &mut states, Some(10), &mut Holding::default());
        assert_eq!(touched.len(), 2, "a counted batch moves its project's state, rows or not");
        let first = rows.iter().next().expect("a row");
        assert_eq!((rows.len(), first.batch_seq), (1, 9), "keyed by the first record that gave rows");
    }

    /// Rows held by a transaction that does not emit stay in the states,
    /// under the key of the transaction that began holding them; the next
    /// that emits writes them with its own, summed, under that key, and
    /// lists every project holding rows as touched (their states change).
    #[test]
    fn rows_held_are_written_by_the_next_transaction_that_emits() {
        let active = |v| [hourly(Metric::ActiveTimeSeconds, 0, "", v, (0, 0))];
        let (mut states, mut holding) = (slots(&[&id("p1"), &id("p2")]), Holding::default());
        let mut first = Collapsed::new(HOUR);
        first.add(states.get_mut("p1").expect("slot"), 3, &active(100), &[]);
        first.add(states.get_mut("p1").expect("slot"), 4, &active(1), &[]);
        let (rows, touched) = first.into_parts(0, &mut states, None, &mut holding);
        assert!(rows.is_empty() && touched.len() == 1, "held, not written");
        assert_eq!((holding.projects.len(), holding.since_ms), (1, Some(HOUR)));
        let held = &states["p1"].state.held;
        assert_eq!((held.key, held.since_ms, held.rows.len(), held.rows[0].value), (3, HOUR, 1, 101));
        // The next transaction counts only p2, and emits.
        let mut next = Collapsed::new(HOUR + 1_000);
        next.add(states.get_mut("p2").expect("slot"), 7, &active(5), &[]);
        next.add(states.get_mut("p2").expect("slot"), 8, &active(6), &[]);
        let (rows, touched) = next.into_parts(0, &mut states, Some(9), &mut holding);
        let got: Vec<_> = rows.iter().map(|r| (r.project_id.to_owned(), r.batch_seq, r.value, r.version)).collect();
        assert_eq!(got, vec![("p1".to_owned(), 3, 101, 9), ("p2".to_owned(), 7, 11, 9)]);
        assert_eq!(touched.len(), 2, "p1's state changed too: it holds nothing now");
        assert!(holding.projects.is_empty() && holding.since_ms.is_none());
        assert!(states.values().all(|s| s.state.held.is_empty()));
        let (rows, touched) = Collapsed::new(HOUR).into_parts(0, &mut states, Some(9), &mut holding);
        assert!(rows.is_empty() && touched.is_empty());
    }
}
