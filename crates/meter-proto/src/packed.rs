//! Packed totals: the states one aggregator transaction changed in a
//! partition, written as a few `usage.totals` records instead of one per
//! project (a collector's batch touches thousands), and the bookkeeping
//! that says which packed records still hold a project's latest state.
//!
//! A packed record is replaced project by project: once every project in
//! it has a later record (packed or its own), the aggregator writes its
//! tombstone in the same transaction. Packed records still live after
//! `max_age` or past `max_bytes` are checkpointed: their live projects get
//! records of their own, after which they are tombstoned. Every reader
//! applies the records of a partition in log order, a later state of a
//! project replacing an earlier one, so compaction (which removes a record
//! only once a later record has its key) never changes what a reader ends
//! with (docs/exactness.md, "Packed totals").

use std::collections::{BTreeMap, HashMap};

use meter_core::ProjectState;

use crate::totals_write::write_state;
use crate::wire_write::{encode_varint, key, put_varint, LEN};

/// A packed record's place: the `usage.events` offset its transaction
/// committed in the partition (unique per committed transaction) and its
/// index among that transaction's packed records.
pub type PackedId = (i64, u32);

const PREFIX: &str = "#packed#";

/// Largest packed value before compression: well under the brokers' 1 MB.
pub const PACKED_BYTES: usize = 512 * 1024;

/// The record key of a packed record: never a project id (no `#`).
pub fn packed_key(id: PackedId) -> String {
    format!("{PREFIX}{}#{}", id.0, id.1)
}

/// The id of a packed record's key; `None` for any other key.
pub fn packed_id(key: &[u8]) -> Option<PackedId> {
    let rest = std::str::from_utf8(key).ok()?.strip_prefix(PREFIX)?;
    let (offset, index) = rest.split_once('#')?;
    Some((offset.parse().ok()?, index.parse().ok()?))
}

/// One packed record to write: its id, its value, the projects in it.
#[derive(Debug)]
pub struct PackedRecord {
    pub id: PackedId,
    pub value: Vec<u8>,
    pub projects: Vec<String>,
}

/// The packed records of `states` (the projects one transaction changed in
/// one partition), each under `PACKED_BYTES`, carrying
/// `events_next_offset`.
pub fn packed_records<'a>(
    states: impl IntoIterator<Item = &'a ProjectState>,
    events_next_offset: i64,
    now_ms: i64,
) -> Vec<PackedRecord> {
    // A record's value: `events_next_offset` (field 9), then each state as
    // field 13 (prost's order), each state's bytes written by `totals_write`.
    let begin = || {
        let mut value = Vec::new();
        put_varint(&mut value, 9, events_next_offset as u64);
        (value, Vec::new(), 0usize)
    };
    let mut out = Vec::new();
    let mut open: (Vec<u8>, Vec<String>, usize) = begin();
    let mut state = Vec::new();
    for s in states {
        state.clear();
        write_state(s, now_ms, 0, &mut state);
        let size = state.len() + prost::length_delimiter_len(state.len()) + 1;
        if open.2 + size > PACKED_BYTES && !open.1.is_empty() {
            let (value, projects, _) = std::mem::replace(&mut open, begin());
            out.push(PackedRecord { id: (events_next_offset, out.len() as u32), value, projects });
        }
        open.0.push(key(13, LEN));
        encode_varint(state.len() as u64, &mut open.0);
        open.0.extend_from_slice(&state);
        open.1.push(s.project_id.as_str().to_owned());
        open.2 += size;
    }
    if !open.1.is_empty() {
        out.push(PackedRecord { id: (events_next_offset, out.len() as u32), value: open.0, projects: open.1 });
    }
    out
}

/// The record of a project's own (key: its id), carrying
/// `events_next_offset`: what a checkpoint writes.
pub fn own_record(state: &ProjectState, events_next_offset: i64, now_ms: i64) -> Vec<u8> {
    let mut value = Vec::new();
    write_state(state, now_ms, events_next_offset, &mut value);
    value
}

/// Which packed records of a partition still hold a project's latest
/// state; rebuilt by `restore` from the records themselves.
#[derive(Debug, Default)]
pub struct Packing {
    /// Project -> the packed record holding its latest state (projects
    /// whose latest state is in a record of their own are absent).
    latest: HashMap<String, PackedId>,
    /// Packed records holding some project's latest state, oldest first.
    live: BTreeMap<PackedId, Live>,
    /// Packed records that hold none any more, their tombstone not yet
    /// written (or, after a restore, not seen).
    dead: Vec<PackedId>,
    bytes: usize,
}

#[derive(Debug)]
struct Live {
    projects: usize,
    bytes: usize,
    written_ms: i64,
}

impl Packing {
    /// A packed record `id` of `bytes` holding `projects` was written (or
    /// read back) at `now_ms`.
    pub fn packed<'a>(&mut self, id: PackedId, projects: impl IntoIterator<Item = &'a str>, bytes: usize, now_ms: i64) {
        let mut n = 0;
        for p in projects {
            n += 1;
            let before = match self.latest.get_mut(p) {
                Some(cur) => Some(std::mem::replace(cur, id)),
                None => {
                    self.latest.insert(p.to_owned(), id);
                    None
                }
            };
            if let Some(old) = before {
                self.release(old);
            }
        }
        if n > 0 {
            self.live.insert(id, Live { projects: n, bytes, written_ms: now_ms });
            self.bytes += bytes;
        } else {
            self.dead.push(id);
        }
    }

    /// A record of `project`'s own was written (or read back).
    pub fn own(&mut self, project: &str) {
        if let Some(old) = self.latest.remove(project) {
            self.release(old);
        }
    }

    /// The tombstone of `id` was read back.
    pub fn removed(&mut self, id: PackedId) {
        self.dead.retain(|&d| d != id);
        if let Some(l) = self.live.remove(&id) {
            // Not written so by the aggregator; keep the books straight.
            self.bytes -= l.bytes;
            self.latest.retain(|_, v| *v != id);
        }
    }

    fn release(&mut self, id: PackedId) {
        let Some(l) = self.live.get_mut(&id) else { return };
        l.projects -= 1;
        if l.projects == 0 {
            self.bytes -= l.bytes;
            self.live.remove(&id);
            self.dead.push(id);
        }
    }

    /// The packed records to tombstone now (none of their projects' latest
    /// state is in them), forgotten here.
    pub fn take_dead(&mut self) -> Vec<PackedId> {
        std::mem::take(&mut self.dead)
    }

    /// The projects to checkpoint now (write records of their own): those
    /// whose latest state is in a packed record written `max_age_ms` or
    /// longer before `now_ms`, or in the oldest records while the live
    /// packed bytes exceed `max_bytes`.
    pub fn due(&self, now_ms: i64, max_age_ms: i64, max_bytes: usize) -> Vec<String> {
        let mut over = self.bytes.saturating_sub(max_bytes);
        let mut due: Vec<PackedId> = Vec::new();
        for (&id, l) in &self.live {
            if l.written_ms + max_age_ms > now_ms && over == 0 {
                break;
            }
            over = over.saturating_sub(l.bytes);
            due.push(id);
        }
        if due.is_empty() {
            return Vec::new();
        }
        let mut out: Vec<String> =
            self.latest.iter().filter(|(_, id)| due.binary_search(id).is_ok()).map(|(p, _)| p.clone()).collect();
        out.sort_unstable();
        out
    }

    /// Counts the age of every live record from `now_ms` (after a restore,
    /// which cannot know when they were written).
    pub fn restamp(&mut self, now_ms: i64) {
        for l in self.live.values_mut() {
            l.written_ms = now_ms;
        }
    }

    /// Bytes of the packed records that hold some project's latest state.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Packed records that hold some project's latest state.
    pub fn live_records(&self) -> usize {
        self.live.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_never_look_like_projects() {
        assert_eq!(packed_id(packed_key((42, 3)).as_bytes()), Some((42, 3)));
        assert_eq!(packed_id(b"p1"), None);
        assert_eq!(packed_id(b"#closed#17"), None);
        assert_eq!(packed_id(b"#packed#x#1"), None);
    }

    #[test]
    fn a_record_dies_when_every_project_in_it_has_a_later_one() {
        let mut k = Packing::default();
        k.packed((10, 0), ["a", "b"], 100, 0);
        k.packed((20, 0), ["a"], 50, 1);
        assert!(k.take_dead().is_empty(), "b's latest is still in the first");
        assert_eq!((k.live_records(), k.bytes()), (2, 150));
        k.own("b");
        assert_eq!(k.take_dead(), [(10, 0)]);
        assert_eq!((k.live_records(), k.bytes()), (1, 50));
        k.packed((30, 0), ["a"], 70, 2);
        assert_eq!(k.take_dead(), [(20, 0)]);
        k.removed((20, 0));
        assert_eq!((k.live_records(), k.bytes()), (1, 70));
    }

    #[test]
    fn old_records_and_the_oldest_past_the_byte_bound_are_due() {
        let mut k = Packing::default();
        k.packed((10, 0), ["a", "b"], 100, 0);
        k.packed((20, 0), ["c"], 100, 500);
        k.packed((30, 0), ["d"], 100, 900);
        assert!(k.due(999, 1000, 1000).is_empty());
        assert_eq!(k.due(1000, 1000, 1000), ["a", "b"]);
        assert_eq!(k.due(1500, 1000, 1000), ["a", "b", "c"]);
        assert_eq!(k.due(0, 1000, 150), ["a", "b", "c"], "oldest first until under the bound");
        for p in k.due(0, 1000, 150) {
            k.own(&p);
        }
        assert_eq!(k.take_dead(), [(10, 0), (20, 0)]);
        assert_eq!(k.bytes(), 100);
    }
}
