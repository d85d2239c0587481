//! Reading the usage in a `usage.totals` record straight into `Totals`,
//! without prost's wire structs. The enforcer and the api decode every state
//! the aggregator writes (a collector's transaction writes tens of
//! thousands), and prost's `ProjectTotalsView` (a `String` and a `Vec` per
//! project, then copied into `Totals`) was most of their allocations (issue
//! 19). As in `events_read`, only the common record is read here: a well
//! formed one, every project id valid, with no wire types the writers never
//! use. Anything else gives `None` and `decode_usage` reads it with prost, so
//! this module never decides what a record means; the tests hold the two
//! readers equal on every record they can build or mangle.

use meter_core::aggregate::{BranchSizes, CycleCounters, Reading, LEGACY_BRANCH};
use meter_core::small_map::SmallMap;
use meter_core::{Cycle, ProjectId, Totals};

use crate::wire_read::Reader;

/// The usage a record holds (see `decode_usage`), when the record is
/// common; `None` otherwise.
pub(crate) fn decode_usage_common(bytes: &[u8]) -> Option<Vec<Totals>> {
    let mut top = View::default();
    let mut packed = Vec::new();
    let mut r = Reader::new(bytes);
    while !r.is_empty() {
        let (tag, wire) = r.key()?;
        if tag == 13 {
            // One level only: prost reads a packed view's own `packed` too,
            // which nothing writes; such a record is left to it.
            let mut view = View::default();
            view.read_packed(r.bytes_field(wire)?)?;
            packed.push(view.totals()?);
        } else {
            top.field(&mut r, tag, wire)?;
        }
    }
    if !packed.is_empty() {
        return Some(packed);
    }
    if top.holds_no_totals {
        return Some(Vec::new());
    }
    Some(vec![top.totals()?])
}

/// The fields of a `ProjectTotalsView` that readers keep (the last of each
/// scalar counts, repeated ones add up, as in prost).
#[derive(Default)]
struct View<'a> {
    project_id: &'a str,
    cycles: SmallMap<i64, CycleCounters>,
    branches: BranchSizes,
    /// `logical_size_bytes` and `logical_size_time_unix_ms` (field 3, 4).
    legacy: (u64, i64),
    version: u64,
    last_ingested_ms: i64,
    /// A key chunk or a cycle close (fields 10, 12): a record for the
    /// aggregator alone.
    holds_no_totals: bool,
}

impl<'a> View<'a> {
    /// Reads a packed view's every field (one holding `packed` itself, 13,
    /// is refused).
    fn read_packed(&mut self, bytes: &'a [u8]) -> Option<()> {
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            let (tag, wire) = r.key()?;
            if tag == 13 {
                return None;
            }
            self.field(&mut r, tag, wire)?;
        }
        Some(())
    }

    /// Reads one field of a view other than `packed` (13).
    fn field(&mut self, r: &mut Reader<'a>, tag: u32, wire: u8) -> Option<()> {
        match tag {
            1 => self.project_id = r.str_field(wire)?,
            2 => {
                let c = cycle(r.bytes_field(wire)?)?;
                self.cycles.insert(c.cycle.start_ms, c);
            }
            3 => self.legacy.0 = r.varint_field(wire)?,
            4 => self.legacy.1 = r.varint_field(wire)? as i64,
            6 => self.version = r.varint_field(wire)?,
            8 => self.last_ingested_ms = r.varint_field(wire)? as i64,
            10 => {
                r.bytes_field(wire)?;
                self.holds_no_totals = true;
            }
            12 => {
                r.varint_field(wire)?;
                self.holds_no_totals = true;
            }
            11 => {
                let (id, reading) = branch(r.bytes_field(wire)?)?;
                self.branches.insert(id.to_owned(), reading);
            }
            _ => r.skip(wire)?,
        }
        Some(())
    }

    /// The usage read, as `usage_from_view` makes it of prost's view.
    fn totals(self) -> Option<Totals> {
        let mut branches = self.branches;
        if branches.is_empty() && (self.legacy.0 != 0 || self.legacy.1 != 0) {
            branches.insert(LEGACY_BRANCH.to_owned(), Reading { value: self.legacy.0, time_ms: self.legacy.1 });
        }
        Some(Totals {
            project_id: ProjectId::parse(self.project_id).ok()?,
            cycles: self.cycles,
            branches,
            version: self.version,
            last_ingested_ms: self.last_ingested_ms,
        })
    }
}

/// One `CycleTotals`.
fn cycle(bytes: &[u8]) -> Option<CycleCounters> {
    let (mut start_s, mut end_s, mut values) = (0i64, 0i64, [0u64; 4]);
    let mut r = Reader::new(bytes);
    while !r.is_empty() {
        let (tag, wire) = r.key()?;
        match tag {
            1 => start_s = r.varint_field(wire)? as i64,
            2 => end_s = r.varint_field(wire)? as i64,
            3..=6 => values[tag as usize - 3] = r.varint_field(wire)?,
            _ => r.skip(wire)?,
        }
    }
    Some(CycleCounters { cycle: Cycle { start_ms: start_s * 1000, end_ms: end_s * 1000 }, values })
}

/// One `BranchSize`.
fn branch(bytes: &[u8]) -> Option<(&str, Reading)> {
    let (mut id, mut reading) = ("", Reading { value: 0, time_ms: 0 });
    let mut r = Reader::new(bytes);
    while !r.is_empty() {
        let (tag, wire) = r.key()?;
        match tag {
            1 => id = r.str_field(wire)?,
            2 => reading.value = r.varint_field(wire)?,
            3 => reading.time_ms = r.varint_field(wire)? as i64,
            _ => r.skip(wire)?,
        }
    }
    Some((id, reading))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message;

    use super::*;
    use crate::test_reports::{edits, mangle, NOW};
    use crate::{closed_record, decode_usage, decode_usage_prost, v1};

    const MONTH_S: i64 = 2_592_000;

    /// A project's record as the aggregator writes it, with what only the
    /// aggregator reads too (dedup windows, held rows); some with storage
    /// per branch, some with a reading from before branches.
    fn project(i: usize) -> v1::ProjectTotals {
        let start = NOW / 1000 - (NOW / 1000) % MONTH_S;
        v1::ProjectTotals {
            project_id: format!("proj-{i}"),
            cycles: (0..(i % 3) as i64)
                .map(|c| v1::CycleTotals {
                    cycle_start_unix_s: start - c * MONTH_S,
                    cycle_end_unix_s: start - (c - 1) * MONTH_S,
                    active_time_seconds: 7 * i as u64 + c as u64,
                    compute_time_seconds: i as u64,
                    written_data_bytes: 1 << 40,
                    data_transfer_bytes: u64::MAX - i as u64,
                })
                .collect(),
            branches: (0..usize::from(i.is_multiple_of(4)))
                .map(|b| v1::BranchSize { branch_id: format!("br-{b}"), logical_size_bytes: 99, time_unix_ms: NOW })
                .collect(),
            logical_size_bytes: if i % 5 == 1 { 1234 } else { 0 },
            logical_size_time_unix_ms: if i % 5 == 1 { NOW - 1 } else { 0 },
            sources: vec![v1::SourceWindow {
                source_id: "collector-1".into(),
                high_seq: 9,
                seen_mask: 3,
                last_seen_unix_ms: NOW,
                source_session: 7,
            }],
            version: 3 + i as u64,
            updated_unix_ms: NOW,
            last_ingested_unix_ms: NOW - i as i64,
            held_rows: (0..(i % 2) as i64)
                .map(|h| v1::HeldRow {
                    metric: 3,
                    hour_unix_s: (start + h * 3600) as u32,
                    value: 5,
                    ..Default::default()
                })
                .collect(),
            held_key: (i % 2) as u64 * 41,
            held_since_unix_ms: NOW,
            ..Default::default()
        }
    }

    /// A packed record of 20 projects, two projects' own records, a close
    /// and a key chunk.
    fn records() -> Vec<Vec<u8>> {
        let packed =
            v1::ProjectTotals { events_next_offset: 77, packed: (0..20).map(project).collect(), ..Default::default() };
        let chunk = v1::ProjectTotals {
            project_id: "proj-1".into(),
            key_chunk: Some(v1::KeyChunk { cycle_start_unix_s: NOW / 1000, index: 2, hashes: vec![1, 2, 3] }),
            ..Default::default()
        };
        vec![
            packed.encode_to_vec(),
            project(4).encode_to_vec(),
            project(6).encode_to_vec(),
            closed_record(NOW, 42).1,
            chunk.encode_to_vec(),
        ]
    }

    fn prost_read(bytes: &[u8]) -> Result<Vec<Totals>, String> {
        decode_usage_prost(bytes).map_err(|e| e.to_string())
    }

    #[test]
    fn common_records_are_read_here_as_prost_reads_them() {
        let all = records();
        for bytes in &all {
            let fast = decode_usage_common(bytes).expect("a common record is read here");
            assert_eq!(Ok(fast), prost_read(bytes));
        }
        let packed = decode_usage_common(&all[0]).expect("read");
        assert_eq!(packed.len(), 20);
        assert_eq!(
            packed[1].branches.iter().map(|(b, r)| (b.as_str(), r.value)).collect::<Vec<_>>(),
            [(LEGACY_BRANCH, 1234)]
        );
        assert_eq!(packed[4].branches.iter().map(|(b, r)| (b.as_str(), r.value)).collect::<Vec<_>>(), [("br-0", 99)]);
        assert_eq!(packed[5].cycles.len(), 2);
        assert!(decode_usage_common(&all[3]).expect("read").is_empty(), "a close holds no totals");
        assert!(decode_usage_common(&all[4]).expect("read").is_empty(), "a key chunk holds no totals");
    }

    /// Fields out of order, repeated (the last scalar counts, repeated
    /// messages add up) and unknown read as prost reads them.
    #[test]
    fn field_order_repeats_and_unknown_fields_read_as_prost_reads_them() {
        use crate::test_reports::{len_field as field, varint_field as varint};
        let cycles = project(2).cycles;
        let mut view = Vec::new();
        varint(&mut view, 6, 5);
        field(&mut view, 1, b"first");
        field(&mut view, 2, &cycles[1].encode_to_vec());
        varint(&mut view, 99, 7);
        field(&mut view, 2, &cycles[0].encode_to_vec());
        field(&mut view, 2, &cycles[1].encode_to_vec());
        field(&mut view, 1, b"second");
        varint(&mut view, 6, 9);
        varint(&mut view, 4, (-5i64) as u64);
        let mut record = Vec::new();
        field(&mut record, 13, &view);
        varint(&mut record, 7, 77);
        field(&mut record, 13, &project(3).encode_to_vec());
        for bytes in [&view, &record] {
            let fast = decode_usage_common(bytes).expect("common");
            assert_eq!(Ok(fast), prost_read(bytes));
        }
        let read = decode_usage_common(&record).expect("common");
        assert_eq!((read[0].project_id.as_str(), read[0].version, read[0].cycles.len()), ("second", 9, 2));
    }

    /// An invalid project id, or a packed view inside a packed view: left
    /// to prost, which decides (an error, or what it reads).
    #[test]
    fn what_is_not_common_is_left_to_prost() {
        let mut bad = project(1);
        bad.project_id = "bad id".into();
        let packed = v1::ProjectTotals { packed: vec![project(0), bad], ..Default::default() }.encode_to_vec();
        assert!(decode_usage_common(&packed).is_none());
        assert!(decode_usage(&packed).expect_err("invalid").to_string().contains("project_id"));
        let mut nested = project(2);
        nested.packed = vec![project(3)];
        let packed = v1::ProjectTotals { packed: vec![nested], ..Default::default() }.encode_to_vec();
        assert!(decode_usage_common(&packed).is_none());
        let read = decode_usage(&packed).expect("prost reads it");
        assert_eq!(read.iter().map(|t| t.project_id.as_str()).collect::<Vec<_>>(), ["proj-2"]);
    }

    proptest! {
        /// Whatever a record's bytes, what is read here is what prost reads,
        /// and `decode_usage` answers as prost does.
        #[test]
        fn mangled_records_read_here_only_as_prost_reads_them(which in 0usize..5, edits in edits()) {
            let bytes = mangle(records()[which].clone(), edits);
            let prost = prost_read(&bytes);
            if let Some(fast) = decode_usage_common(&bytes) {
                prop_assert_eq!(Ok(&fast), prost.as_ref());
            }
            if !bytes.is_empty() {
                prop_assert_eq!(decode_usage(&bytes).map_err(|e| e.to_string()), prost);
            }
        }
    }
}
