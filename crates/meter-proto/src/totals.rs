//! Project state: domain <-> the `ProjectTotals` record of `usage.totals`.

use std::collections::BTreeMap;

use meter_core::aggregate::{BranchSizes, CycleCounters, Reading, SourceEntry, LEGACY_BRANCH};
use meter_core::held::{HeldRow, HeldRows};
use meter_core::small_map::SmallMap;
use meter_core::{Cycle, IdError, KeySet, ProjectId, ProjectState, SeqWindow, Totals};

use crate::packed::{packed_id, Packing};
use crate::v1;

/// A project's `usage.totals` record as prost's wire struct. The aggregator
/// writes the same bytes without it (`totals_write`); this is the reference
/// its tests and the benchmarks compare with.
pub fn state_to_wire(s: &ProjectState, now_ms: i64) -> v1::ProjectTotals {
    v1::ProjectTotals {
        project_id: s.project_id.as_str().to_owned(),
        cycles: s
            .cycles
            .values()
            .map(|c| v1::CycleTotals {
                cycle_start_unix_s: c.cycle.start_ms / 1000,
                cycle_end_unix_s: c.cycle.end_ms / 1000,
                active_time_seconds: c.values[0],
                compute_time_seconds: c.values[1],
                written_data_bytes: c.values[2],
                data_transfer_bytes: c.values[3],
            })
            .collect(),
        logical_size_bytes: 0,
        logical_size_time_unix_ms: 0,
        branches: branches_to_wire(&s.branches),
        sources: s
            .sources
            .iter()
            .flat_map(|(id, sessions)| {
                sessions.iter().map(move |(&session, e)| v1::SourceWindow {
                    source_id: id.clone(),
                    source_session: session,
                    high_seq: e.window.high,
                    seen_mask: e.window.mask,
                    last_seen_unix_ms: e.last_seen_ms,
                })
            })
            .collect(),
        version: s.version,
        updated_unix_ms: now_ms,
        last_ingested_unix_ms: s.last_ingested_ms,
        events_next_offset: 0,
        key_chunk: None,
        closed_cycle_start_unix_s: None,
        packed: Vec::new(),
        held_rows: s
            .held
            .rows
            .iter()
            .map(|r| v1::HeldRow {
                metric: i32::from(r.metric),
                hour_unix_s: r.hour_unix_s,
                branch_id: r.branch.clone(),
                value: r.value,
                last_value: r.last_value,
                last_time_unix_ms: r.last_time_ms,
            })
            .collect(),
        held_key: s.held.key,
        held_since_unix_ms: s.held.since_ms,
    }
}

/// The record key of one idempotency-key chunk (see `KeyChunk`): never a
/// project id, which cannot contain `#`.
pub fn key_chunk_key(project_id: &str, cycle_start_ms: i64, index: u32) -> String {
    format!("{project_id}#keys#{}#{index}", cycle_start_ms / 1000)
}

/// The `usage.totals` records of a project's idempotency keys that changed
/// since they were last persisted: (record key, value), a `None` value
/// being a tombstone (the chunks of a forgotten cycle).
pub fn key_chunk_records(s: &ProjectState, events_next_offset: i64) -> Vec<(String, Option<Vec<u8>>)> {
    let project = s.project_id.as_str();
    let mut out = Vec::new();
    for &(cycle_start, chunks) in &s.expired_keys {
        out.extend((0..chunks).map(|i| (key_chunk_key(project, cycle_start, i), None)));
    }
    for (&cycle_start, set) in &s.keys {
        for (index, hashes) in set.dirty_chunks() {
            let wire = v1::ProjectTotals {
                project_id: project.to_owned(),
                events_next_offset,
                key_chunk: Some(v1::KeyChunk {
                    cycle_start_unix_s: cycle_start / 1000,
                    index,
                    hashes: hashes.to_vec(),
                }),
                ..Default::default()
            };
            out.push((key_chunk_key(project, cycle_start, index), Some(prost::Message::encode_to_vec(&wire))));
        }
    }
    out
}

/// After the records of `key_chunk_records` were committed.
pub fn mark_keys_persisted(s: &mut ProjectState) {
    s.expired_keys.clear();
    for set in s.keys.values_mut() {
        set.mark_persisted();
    }
}

/// Why a `usage.totals` record could not be read.
#[derive(Debug)]
pub enum TotalsDecodeError {
    /// Not a `ProjectTotals` message.
    Protobuf(prost::DecodeError),
    /// Decoded, but the project id is not valid.
    Invalid(IdError),
    /// A packed record under a key that is not `#packed#<offset>#<index>`.
    NotPackedKey,
    /// A held row whose metric code is not one of `usage_hourly`'s.
    HeldRowMetric(i32),
}

impl std::fmt::Display for TotalsDecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TotalsDecodeError::Protobuf(e) => write!(f, "undecodable totals record: {e}"),
            TotalsDecodeError::Invalid(e) => write!(f, "invalid totals record: project_id {e}"),
            TotalsDecodeError::NotPackedKey => {
                write!(f, "a packed totals record under a key not #packed#<offset>#<index>")
            }
            TotalsDecodeError::HeldRowMetric(m) => write!(f, "invalid totals record: a held row's metric code {m}"),
        }
    }
}

impl std::error::Error for TotalsDecodeError {}

/// Decodes the value of a `usage.totals` record into the usage of the
/// projects it holds, as the readers of the totals keep it: one for a
/// project's record, several for a packed one (`crate::packed`), none for
/// the records that hold no totals (idempotency-key chunks, closes,
/// tombstones), which they skip. Readers apply a partition's records in log
/// order, a later state of a project replacing an earlier one. The dedup
/// windows are skipped unread: decoding them cost the readers more than the
/// rest of the record (many sources report for one project).
pub fn decode_usage(bytes: &[u8]) -> Result<Vec<Totals>, TotalsDecodeError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    crate::totals_read::decode_usage_common(bytes).map_or_else(|| decode_usage_prost(bytes), Ok)
}

/// `decode_usage` through prost's wire structs: every record
/// `totals_read` leaves (malformed, invalid), and the reference the tests
/// hold `totals_read` to.
pub fn decode_usage_prost(bytes: &[u8]) -> Result<Vec<Totals>, TotalsDecodeError> {
    let w = <v1::ProjectTotalsView as prost::Message>::decode(bytes).map_err(TotalsDecodeError::Protobuf)?;
    if !w.packed.is_empty() {
        return w.packed.into_iter().map(usage_from_view).collect();
    }
    if w.key_chunk.is_some() || w.closed_cycle_start_unix_s.is_some() {
        return Ok(Vec::new());
    }
    Ok(vec![usage_from_view(w)?])
}

fn usage_from_view(w: v1::ProjectTotalsView) -> Result<Totals, TotalsDecodeError> {
    Ok(Totals {
        project_id: ProjectId::new(w.project_id).map_err(TotalsDecodeError::Invalid)?,
        cycles: cycles_from_wire(&w.cycles),
        branches: branches_from_wire(&w.branches, w.logical_size_bytes, w.logical_size_time_unix_ms),
        version: w.version,
        last_ingested_ms: w.last_ingested_unix_ms,
    })
}

/// A state's held rows; a metric code outside Enum8's range is refused
/// (the aggregator never writes one).
fn held_from_wire(rows: Vec<v1::HeldRow>, key: u64, since_ms: i64) -> Result<HeldRows, TotalsDecodeError> {
    let rows = rows
        .into_iter()
        .map(|r| {
            Ok(HeldRow {
                metric: i8::try_from(r.metric).map_err(|_| TotalsDecodeError::HeldRowMetric(r.metric))?,
                hour_unix_s: r.hour_unix_s,
                branch: r.branch_id,
                value: r.value,
                last_value: r.last_value,
                last_time_ms: r.last_time_unix_ms,
            })
        })
        .collect::<Result<_, TotalsDecodeError>>()?;
    Ok(HeldRows { key, since_ms, rows })
}

/// One record of `usage.totals`, decoded.
#[derive(Debug)]
pub enum TotalsRecord {
    /// A project's state and the `usage.events` offset its transaction
    /// committed (0 when unknown).
    Project(ProjectState, i64),
    /// A chunk of a project's idempotency keys for one cycle.
    Keys { project_id: String, cycle_start_ms: i64, index: u32, hashes: Vec<u64>, events_next_offset: i64 },
    /// The states of the projects one transaction changed (`crate::packed`),
    /// and the offset it committed.
    Packed(Vec<ProjectState>, i64),
    /// The partition's aggregator applied the close of the cycle starting then.
    Closed { cycle_start_ms: i64, events_next_offset: i64 },
    /// A deleted record (an empty value).
    Tombstone,
}

/// Decodes a `usage.totals` record (its value; empty for a tombstone).
pub fn decode_totals(bytes: &[u8]) -> Result<TotalsRecord, TotalsDecodeError> {
    if bytes.is_empty() {
        return Ok(TotalsRecord::Tombstone);
    }
    let mut wire = <v1::ProjectTotals as prost::Message>::decode(bytes).map_err(TotalsDecodeError::Protobuf)?;
    let offset = wire.events_next_offset;
    if let Some(start) = wire.closed_cycle_start_unix_s {
        return Ok(TotalsRecord::Closed { cycle_start_ms: start * 1000, events_next_offset: offset });
    }
    if !wire.packed.is_empty() {
        let states = wire.packed.into_iter().map(state_from_wire).collect::<Result<_, _>>()?;
        return Ok(TotalsRecord::Packed(states, offset));
    }
    if let Some(chunk) = wire.key_chunk.take() {
        ProjectId::check(&wire.project_id).map_err(TotalsDecodeError::Invalid)?;
        return Ok(TotalsRecord::Keys {
            project_id: wire.project_id,
            cycle_start_ms: chunk.cycle_start_unix_s * 1000,
            index: chunk.index,
            hashes: chunk.hashes,
            events_next_offset: offset,
        });
    }
    Ok(TotalsRecord::Project(state_from_wire(wire)?, offset))
}

/// Restores key sets from their chunks (cycle start -> index -> hashes).
pub fn key_sets(chunks: BTreeMap<i64, BTreeMap<u32, Vec<u64>>>) -> BTreeMap<i64, KeySet> {
    chunks.into_iter().map(|(cycle, c)| (cycle, KeySet::from_chunks(c))).collect()
}

/// The states a `usage.totals` partition holds, read to its end.
#[derive(Debug, Default)]
pub struct Restored {
    /// The latest state of each project, its idempotency keys included.
    pub states: std::collections::HashMap<String, ProjectState>,
    /// The `usage.events` offset the states cover (0: unknown).
    pub resume_offset: i64,
    /// Idempotency keys restored.
    pub keys: usize,
    /// Bytes of the key chunk records read.
    pub key_bytes: u64,
    /// The cycles whose close the partition's aggregator applied.
    pub closed: meter_core::aggregate::ClosedCycles,
    /// Which packed records hold a project's latest state.
    pub packing: Packing,
}

/// Rebuilds the states of one partition from its `usage.totals` records
/// (key, value), in log order: a later record of a project (its own or a
/// packed one) or of a key chunk replaces an earlier one. The error names
/// the record's key.
pub fn restore<K: AsRef<[u8]>, V: AsRef<[u8]>>(
    records: impl IntoIterator<Item = (K, V)>,
) -> Result<Restored, (String, TotalsDecodeError)> {
    let mut out = Restored::default();
    let mut chunks: std::collections::HashMap<String, BTreeMap<i64, BTreeMap<u32, Vec<u64>>>> = Default::default();
    for (key, value) in records {
        let value = value.as_ref();
        let record = decode_totals(value).map_err(|e| (String::from_utf8_lossy(key.as_ref()).into_owned(), e))?;
        match record {
            TotalsRecord::Project(s, offset) => {
                out.resume_offset = out.resume_offset.max(offset);
                out.packing.own(s.project_id.as_str());
                out.states.insert(s.project_id.to_string(), s);
            }
            TotalsRecord::Packed(states, offset) => {
                let name = || String::from_utf8_lossy(key.as_ref()).into_owned();
                let id = packed_id(key.as_ref()).ok_or_else(|| (name(), TotalsDecodeError::NotPackedKey))?;
                out.resume_offset = out.resume_offset.max(offset);
                out.packing.packed(id, states.iter().map(|s| s.project_id.as_str()), value.len(), 0);
                out.states.extend(states.into_iter().map(|s| (s.project_id.to_string(), s)));
            }
            TotalsRecord::Keys { project_id, cycle_start_ms, index, hashes, events_next_offset } => {
                out.resume_offset = out.resume_offset.max(events_next_offset);
                out.key_bytes += value.len() as u64;
                chunks.entry(project_id).or_default().entry(cycle_start_ms).or_default().insert(index, hashes);
            }
            TotalsRecord::Closed { cycle_start_ms, events_next_offset } => {
                out.resume_offset = out.resume_offset.max(events_next_offset);
                out.closed.insert(cycle_start_ms);
            }
            TotalsRecord::Tombstone => {
                if let Some(id) = packed_id(key.as_ref()) {
                    out.packing.removed(id);
                }
            }
        }
    }
    for (project, cycles) in chunks {
        // Written in the same transaction as the project's totals.
        if let Some(s) = out.states.get_mut(&project) {
            s.keys = key_sets(cycles);
            out.keys += s.keys.values().map(KeySet::len).sum::<usize>();
        }
    }
    Ok(out)
}

/// Restores a project's state from its `usage.totals` record.
pub fn state_from_wire(w: v1::ProjectTotals) -> Result<ProjectState, TotalsDecodeError> {
    Ok(ProjectState {
        project_id: ProjectId::new(w.project_id).map_err(TotalsDecodeError::Invalid)?,
        cycles: cycles_from_wire(&w.cycles),
        branches: branches_from_wire(&w.branches, w.logical_size_bytes, w.logical_size_time_unix_ms),
        sources: w.sources.into_iter().fold(
            SmallMap::new(),
            |mut acc: SmallMap<String, SmallMap<u64, SourceEntry>>, s| {
                let entry = SourceEntry {
                    window: SeqWindow { high: s.high_seq, mask: s.seen_mask },
                    last_seen_ms: s.last_seen_unix_ms,
                };
                acc.get_or_insert_with(s.source_id, SmallMap::new).insert(s.source_session, entry);
                acc
            },
        ),
        keys: BTreeMap::new(),
        expired_keys: Vec::new(),
        version: w.version,
        last_ingested_ms: w.last_ingested_unix_ms,
        held: held_from_wire(w.held_rows, w.held_key, w.held_since_unix_ms)?,
    })
}

fn cycles_from_wire(cycles: &[v1::CycleTotals]) -> SmallMap<i64, CycleCounters> {
    cycles
        .iter()
        .map(|c| {
            let cycle = Cycle { start_ms: c.cycle_start_unix_s * 1000, end_ms: c.cycle_end_unix_s * 1000 };
            let values = [c.active_time_seconds, c.compute_time_seconds, c.written_data_bytes, c.data_transfer_bytes];
            (cycle.start_ms, CycleCounters { cycle, values })
        })
        .collect()
}

fn branches_to_wire(branches: &BranchSizes) -> Vec<v1::BranchSize> {
    branches
        .iter()
        .map(|(id, r)| v1::BranchSize { branch_id: id.clone(), logical_size_bytes: r.value, time_unix_ms: r.time_ms })
        .collect()
}

/// The branches' readings; a record written before storage was kept per
/// branch has its one reading (`legacy_*`) as `LEGACY_BRANCH`.
fn branches_from_wire(branches: &[v1::BranchSize], legacy_value: u64, legacy_time_ms: i64) -> BranchSizes {
    let mut out: BranchSizes = branches
        .iter()
        .map(|b| (b.branch_id.clone(), Reading { value: b.logical_size_bytes, time_ms: b.time_unix_ms }))
        .collect();
    if branches.is_empty() && (legacy_value != 0 || legacy_time_ms != 0) {
        out.insert(LEGACY_BRANCH.to_owned(), Reading { value: legacy_value, time_ms: legacy_time_ms });
    }
    out
}

/// The `usage.totals` record (key, value) saying the partition's aggregator
/// applied the close of the cycle starting at `cycle_start_ms`, in the
/// transaction that committed `events_next_offset`.
pub fn closed_record(cycle_start_ms: i64, events_next_offset: i64) -> (String, Vec<u8>) {
    let wire = v1::ProjectTotals {
        closed_cycle_start_unix_s: Some(cycle_start_ms / 1000),
        events_next_offset,
        ..Default::default()
    };
    (format!("#closed#{}", cycle_start_ms / 1000), prost::Message::encode_to_vec(&wire))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;
    use meter_core::aggregate::Retention;
    use meter_core::{Batch, Event, Metric, SourceId, Span};

    #[test]
    fn a_closed_cycle_record_is_restored_and_skipped_by_readers() {
        let (key, value) = closed_record(1_793_491_200_000, 42);
        assert_eq!(key, "#closed#1793491200");
        assert!(decode_usage(&value).expect("decodes").is_empty(), "readers of the totals skip it");
        let restored = restore([(key, value)]).expect("restores");
        assert_eq!(restored.closed.into_iter().collect::<Vec<_>>(), [1_793_491_200_000]);
        assert_eq!((restored.resume_offset, restored.states.len()), (42, 0));
    }

    #[test]
    fn state_round_trips() {
        let p = ProjectId::new("p").unwrap();
        let mut s = ProjectState::new(p.clone());
        let t = 1_795_635_480_000;
        let ev = |metric, span, value| Event {
            project_id: p.clone(),
            endpoint_id: None,
            branch_id: None,
            metric,
            value,
            span,
            idempotency_key: None,
        };
        let b = Batch {
            source_id: SourceId::new("s").unwrap(),
            session: 9,
            batch_seq: 3,
            keyed_only: false,
            project_id: p.clone(),
            events: vec![
                ev(Metric::ComputeTimeSeconds, Span::Interval { start_ms: t, end_ms: t + 5 }, 11),
                ev(Metric::LogicalSizeBytes, Span::Instant { time_ms: t }, 99),
                Event {
                    branch_id: Some("dev".into()),
                    ..ev(Metric::LogicalSizeBytes, Span::Instant { time_ms: t }, 7)
                },
            ],
            ingested_ms: t,
        };
        s.apply(&b, &Retention::default());
        let mut b2 = b.clone();
        (b2.session, b2.batch_seq) = (10, 1);
        b2.events[0].idempotency_key = Some("k1".into());
        s.apply(&b2, &Retention::default());
        // Rows held for ClickHouse go with the state; readers of the usage skip them.
        s.held = meter_core::held::HeldRows {
            key: 41,
            since_ms: t,
            rows: vec![HeldRow {
                metric: -3,
                hour_unix_s: 7,
                branch: "dev".into(),
                value: 9,
                last_value: 8,
                last_time_ms: t,
            }],
        };
        assert_eq!(decode_usage(&prost::Message::encode_to_vec(&state_to_wire(&s, t))).unwrap(), [s.totals()]);
        // The totals record, then the key chunks: together, the same state.
        let mut back = state_from_wire(state_to_wire(&s, t)).unwrap();
        let mut chunks: BTreeMap<i64, BTreeMap<u32, Vec<u64>>> = BTreeMap::new();
        let records = key_chunk_records(&s, 5);
        assert!(!records.is_empty());
        for (key, value) in records {
            let value = value.unwrap();
            assert_eq!(decode_usage(&value).unwrap(), [], "a key chunk holds no totals");
            match decode_totals(&value).unwrap() {
                TotalsRecord::Keys { project_id, cycle_start_ms, index, hashes, events_next_offset } => {
                    assert_eq!((project_id.as_str(), events_next_offset), ("p", 5));
                    assert_eq!(key, key_chunk_key("p", cycle_start_ms, index));
                    chunks.entry(cycle_start_ms).or_default().insert(index, hashes);
                }
                other => panic!("{other:?}"),
            }
        }
        back.keys = key_sets(chunks);
        mark_keys_persisted(&mut s);
        assert_eq!(back, s);
        assert_eq!(back.sources["s"].len(), 2);
        // What the enforcer and the API read of the same records.
        let usage = decode_usage(&prost::Message::encode_to_vec(&state_to_wire(&s, t))).unwrap();
        assert_eq!(usage, [s.totals()]);
        assert_eq!(usage[0].counters_at(t).values, [0, 22, 0, 0], "two batches of 11");
        assert_eq!(decode_usage(&[]).unwrap(), [], "a tombstone");
        assert!(decode_usage(b"\x0a\x03a#b").is_err(), "an invalid project id is refused");
        assert_eq!(back.totals().storage_bytes(), 106, "two branches");
    }

    /// Records of a `usage.totals` partition, (key, value), in log order.
    type Log = Vec<(String, Vec<u8>)>;

    /// A partition's `usage.totals` log as the aggregator writes it: packed
    /// records per transaction, checkpoints of old ones, tombstones; and the
    /// states it holds.
    fn packed_log() -> (Log, HashMap<String, ProjectState>) {
        use crate::packed::{own_record, packed_key, packed_records};
        let retention = Retention::default();
        let t = 1_795_635_480_000;
        let mut states: HashMap<String, ProjectState> = HashMap::new();
        let mut packing = Packing::default();
        let mut log: Log = Vec::new();
        for txn in 0..40i64 {
            // Each transaction touches a few of 12 projects, some every time.
            let touched: Vec<String> =
                (0..12).filter(|i| (txn + i) % 11 == 0 || *i < 2).map(|i| format!("p{i}")).collect();
            for (n, id) in touched.iter().enumerate() {
                let p = ProjectId::new(id.clone()).unwrap();
                let batch = Batch {
                    source_id: SourceId::new("s").unwrap(),
                    session: 1,
                    batch_seq: (txn * 16 + n as i64 + 1) as u64,
                    keyed_only: false,
                    project_id: p.clone(),
                    events: vec![Event {
                        project_id: p.clone(),
                        endpoint_id: None,
                        branch_id: None,
                        metric: Metric::WrittenDataBytes,
                        value: 1 + txn as u64,
                        span: Span::Instant { time_ms: t },
                        idempotency_key: None,
                    }],
                    ingested_ms: t,
                };
                states.entry(id.clone()).or_insert_with(|| ProjectState::new(p)).apply(&batch, &retention);
            }
            let next = (txn + 1) * 10;
            let changed: Vec<&ProjectState> = touched.iter().map(|id| &states[id]).collect();
            for r in packed_records(changed, next, t) {
                packing.packed(r.id, r.projects.iter().map(String::as_str), r.value.len(), txn);
                log.push((packed_key(r.id), r.value));
            }
            // A checkpoint of what is 8 transactions old.
            for id in packing.due(txn, 8, usize::MAX) {
                log.push((id.clone(), own_record(&states[&id], next, t)));
                packing.own(&id);
            }
            for dead in packing.take_dead() {
                log.push((packed_key(dead), Vec::new()));
            }
        }
        (log, states)
    }

    /// What compaction may leave of `log`: the last record of each key
    /// (tombstones dropped), in log order.
    fn compacted(log: &[(String, Vec<u8>)]) -> Log {
        let last: HashMap<&str, usize> = log.iter().enumerate().map(|(i, (k, _))| (k.as_str(), i)).collect();
        log.iter()
            .enumerate()
            .filter(|(i, (k, v))| last[k.as_str()] == *i && !v.is_empty())
            .map(|(_, r)| r.clone())
            .collect()
    }

    #[test]
    fn packed_records_restore_and_read_as_the_latest_states_before_and_after_compaction() {
        let (log, states) = packed_log();
        let packed = log.iter().filter(|(k, _)| k.starts_with("#packed#")).count();
        let own = log.iter().filter(|(k, _)| !k.starts_with('#')).count();
        assert!(packed > 40 && own > 0, "{packed} packed records, {own} own");
        for (what, records) in [("the whole log", log.clone()), ("compacted", compacted(&log))] {
            let restored = restore(records.clone()).expect("restores");
            assert_eq!(restored.states, states, "{what}");
            assert_eq!(restored.resume_offset, 400, "{what}");
            let mut readers: HashMap<String, Totals> = HashMap::new();
            for (_, v) in &records {
                for u in decode_usage(v).expect("decodes") {
                    readers.insert(u.project_id.to_string(), u);
                }
            }
            let want: HashMap<String, Totals> = states.iter().map(|(k, s)| (k.clone(), s.totals())).collect();
            assert_eq!(readers, want, "{what}");
        }
        // Compaction leaves only records that hold a latest state.
        let restored = restore(compacted(&log)).expect("restores");
        let live = compacted(&log).iter().filter(|(k, _)| k.starts_with("#packed#")).count();
        assert_eq!(restored.packing.live_records(), live);
        assert!(live < packed / 4, "{live} of {packed} packed records live");
    }

    #[test]
    fn a_packed_record_under_another_key_is_refused() {
        let (log, _) = packed_log();
        let (_, value) = log.into_iter().find(|(k, _)| k.starts_with("#packed#")).unwrap();
        let err = restore([("p1".to_owned(), value)]).unwrap_err();
        assert_eq!(err.0, "p1");
    }

    #[test]
    fn a_record_from_before_branches_reads_as_the_legacy_branch() {
        let old = v1::ProjectTotals {
            project_id: "p".into(),
            logical_size_bytes: 42,
            logical_size_time_unix_ms: 1_795_635_480_000,
            version: 3,
            ..Default::default()
        };
        let usage = decode_usage(&prost::Message::encode_to_vec(&old)).unwrap().remove(0);
        assert_eq!(usage.branches.get(LEGACY_BRANCH), Some(&Reading { value: 42, time_ms: 1_795_635_480_000 }));
        assert_eq!(state_from_wire(old).unwrap().branches.len(), 1);
    }
}
