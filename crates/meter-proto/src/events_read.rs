//! Reading a `usage.events` record straight into domain batches, without
//! prost's wire structs: decoding was a third of the aggregator's CPU on
//! collectors' records (thousands of 1-5-event project batches each, every
//! one a source id, a project id and an event list allocated, moved and
//! freed; issue 19). Only the common record is read here: one whose every
//! part is well formed and valid. Anything else (a malformed or invalid
//! record, one with wire types the writers never use, a record written
//! before 2026-12-01) gives `None`, and `decode_events` reads it with prost
//! as before, so this module never decides what a record means; the tests
//! hold the two readers equal on every record they can build or mangle.

use meter_core::{Batch, ProjectId, SourceId};
use prost::Message;

use crate::adjust::adjustment_from_wire;
use crate::batch::event_from_wire;
use crate::events::{close_start_ms, probe_ms, Decoded};
use crate::v1;
use crate::wire_read::Reader;

/// Decodes an `EventsRecord` holding batches, adjustments, probes or
/// closes, when it is well formed and valid; `None` otherwise (see the
/// module's comment).
pub(crate) fn decode_common(bytes: &[u8]) -> Option<Decoded> {
    let (batches, head) = scan(bytes)?;
    let shared = match head {
        Some(bytes) => Some(Shared::read(bytes)?),
        None => None,
    };
    // Sized at once: a collector's record holds a thousand batches.
    let mut out = Decoded { batches: Vec::with_capacity(batches), ..Decoded::default() };
    let mut r = Reader::new(bytes);
    while !r.is_empty() {
        let (tag, wire) = r.key()?;
        match tag {
            16 => {
                let batch = project_batch(r.bytes_field(wire)?, shared.as_ref(), out.batches.last())?;
                out.batches.push(batch);
            }
            17 => {
                let wire = v1::Adjustment::decode(r.bytes_field(wire)?).ok()?;
                out.adjustments.push(adjustment_from_wire(wire).ok()?);
            }
            18 => out.probes.push(probe_ms(&v1::Probe::decode(r.bytes_field(wire)?).ok()?)),
            19 => out.closes.push(close_start_ms(&v1::CycleClose::decode(r.bytes_field(wire)?).ok()?)),
            20 => _ = r.bytes_field(wire)?,
            _ => r.skip(wire)?,
        }
    }
    let empty = out.batches.is_empty() && out.adjustments.is_empty() && out.probes.is_empty() && out.closes.is_empty();
    (!empty).then_some(out)
}

/// A record's count of batches and its head's bytes, if it has one; `None`
/// when it is malformed or has two heads (which prost would merge).
fn scan(bytes: &[u8]) -> Option<(usize, Option<&[u8]>)> {
    let (mut batches, mut head) = (0, None);
    let mut r = Reader::new(bytes);
    while !r.is_empty() {
        let (tag, wire) = r.key()?;
        match tag {
            16 => {
                r.bytes_field(wire)?;
                batches += 1;
            }
            20 if head.is_none() => head = Some(r.bytes_field(wire)?),
            20 => return None,
            _ => r.skip(wire)?,
        }
    }
    Some((batches, head))
}

/// A `ProjectBatch`'s fields other than its events (the last of each
/// counts, as in prost): a batch's own, or a record's head's.
#[derive(Default)]
struct BatchFields<'a> {
    /// Checked as UTF-8 only when it differs from the previous batch's.
    source_id: &'a [u8],
    batch_seq: u64,
    project_id: &'a str,
    ingested_unix_ms: i64,
    source_session: u64,
    keyed_only: bool,
    events: usize,
}

impl<'a> BatchFields<'a> {
    fn read(bytes: &'a [u8]) -> Option<Self> {
        let mut fields = BatchFields::default();
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            let (tag, wire) = r.key()?;
            match tag {
                1 => {
                    // A repeated field: prost checks every occurrence, not only the last.
                    std::str::from_utf8(fields.source_id).ok()?;
                    fields.source_id = r.bytes_field(wire)?;
                }
                2 => fields.batch_seq = r.varint_field(wire)?,
                3 => fields.project_id = r.str_field(wire)?,
                4 => {
                    r.bytes_field(wire)?;
                    fields.events += 1;
                }
                5 => fields.ingested_unix_ms = r.varint_field(wire)? as i64,
                6 => fields.source_session = r.varint_field(wire)?,
                7 => fields.keyed_only = r.varint_field(wire)? != 0,
                _ => r.skip(wire)?,
            }
        }
        Some(fields)
    }
}

/// A record's head: the fields its batches without a source id of their
/// own take (see `EventsRecord.head` in ingest.proto).
struct Shared {
    source_id: SourceId,
    batch_seq: u64,
    ingested_unix_ms: i64,
    source_session: u64,
    keyed_only: bool,
}

impl Shared {
    /// `None` when the head has events (prost's to judge) or its source id
    /// is not a valid one.
    fn read(bytes: &[u8]) -> Option<Self> {
        let head = BatchFields::read(bytes).filter(|h| h.events == 0)?;
        Some(Shared {
            source_id: SourceId::parse(std::str::from_utf8(head.source_id).ok()?).ok()?,
            batch_seq: head.batch_seq,
            ingested_unix_ms: head.ingested_unix_ms,
            source_session: head.source_session,
            keyed_only: head.keyed_only,
        })
    }
}

/// One `ProjectBatch` as a domain batch: its source fields the record's
/// head's when it has no source id of its own, else its own, its source id
/// then shared with `previous` when equal (see `batch_from_wire_after`).
fn project_batch(bytes: &[u8], shared: Option<&Shared>, previous: Option<&Batch>) -> Option<Batch> {
    // First the fields (the project id may follow the events), then the events.
    let own = BatchFields::read(bytes)?;
    let project_id = ProjectId::parse(own.project_id).ok()?;
    let (source_id, session, batch_seq, keyed_only, ingested_ms) = match shared {
        Some(s) if own.source_id.is_empty() => {
            (s.source_id.clone(), s.source_session, s.batch_seq, s.keyed_only, s.ingested_unix_ms)
        }
        _ => {
            let source_id = match previous {
                Some(b) if b.source_id.as_str().as_bytes() == own.source_id => b.source_id.clone(),
                _ => SourceId::parse(std::str::from_utf8(own.source_id).ok()?).ok()?,
            };
            (source_id, own.source_session, own.batch_seq, own.keyed_only, own.ingested_unix_ms)
        }
    };
    let mut events = Vec::with_capacity(own.events);
    let mut r = Reader::new(bytes);
    while !r.is_empty() {
        let (tag, wire) = r.key()?;
        if tag == 4 {
            let e = usage_event(r.bytes_field(wire)?)?;
            events.push(event_from_wire(events.len(), e, Some(&project_id)).ok()?);
        } else {
            r.skip(wire)?;
        }
    }
    Some(Batch { source_id, session, batch_seq, keyed_only, project_id, events, ingested_ms })
}

/// One `UsageEvent`; its strings are allocated only when not empty (inside
/// a batch, most are).
fn usage_event(bytes: &[u8]) -> Option<v1::UsageEvent> {
    let mut e = v1::UsageEvent::default();
    let mut r = Reader::new(bytes);
    while !r.is_empty() {
        let (tag, wire) = r.key()?;
        match tag {
            1 => e.project_id = r.str_field(wire)?.to_owned(),
            2 => e.endpoint_id = r.str_field(wire)?.to_owned(),
            3 => e.branch_id = r.str_field(wire)?.to_owned(),
            4 => e.metric = r.varint_field(wire)? as i32,
            5 => e.kind = r.varint_field(wire)? as i32,
            6 => e.value = r.varint_field(wire)?,
            7 => e.start_unix_ms = r.varint_field(wire)? as i64,
            8 => e.end_unix_ms = r.varint_field(wire)? as i64,
            9 => e.time_unix_ms = r.varint_field(wire)? as i64,
            10 => e.idempotency_key = r.str_field(wire)?.to_owned(),
            _ => r.skip(wire)?,
        }
    }
    Some(e)
}

#[cfg(test)]
mod tests {
    use meter_core::Limits;
    use proptest::prelude::*;
    use prost::Message;

    use super::*;
    use crate::events::{close_records, decode_events_prost, probe_records};
    use crate::report::{kafka_records, records_without_head, validate};
    use crate::test_reports::{edits, mangle, report, NOW};
    use crate::v1::{Kind, Metric, ReportRequest, UsageEvent};

    fn records(projects: usize, events: usize) -> Vec<Vec<u8>> {
        let batches = validate(&Limits::default(), report(projects, events), NOW).expect("valid");
        kafka_records(batches, 4).into_iter().map(|r| r.value).collect()
    }

    #[test]
    fn common_records_are_read_here_as_prost_reads_them() {
        let mut all = records(300, 2000);
        all.extend(probe_records(NOW, 1).into_iter().map(|r| r.value));
        all.extend(close_records(NOW, 1).into_iter().map(|r| r.value));
        let adjustment = v1::Adjustment {
            project_id: "proj-1".into(),
            metric: Metric::WrittenDataBytes as i32,
            hour_unix_s: NOW / 1000,
            delta: -5,
            reason: "refund".into(),
            idempotency_key: "adj-1".into(),
            ..Default::default()
        };
        all.push(v1::EventsRecord { adjustments: vec![adjustment], ..Default::default() }.encode_to_vec());
        for bytes in &all {
            let fast = decode_common(bytes).expect("a common record is read here");
            assert_eq!(Ok(&fast), decode_events_prost(bytes).as_ref().map_err(|e| e.to_string()));
        }
        let batches: usize = all.iter().map(|b| decode_common(b).expect("read").batches.len()).sum();
        assert_eq!(batches, 300);
    }

    /// The same batches in a record with a head (as ingest writes them) and
    /// in one without (every batch its own source fields, as written before
    /// 2026-12-04) read the same, here and through prost; the head saves a
    /// collector's record about a quarter of its bytes.
    #[test]
    fn records_with_and_without_a_head_read_the_same() {
        let batches = validate(&Limits::default(), report(2000, 2000), NOW).expect("valid");
        let headed = kafka_records(batches.clone(), 1).remove(0).value;
        let per_batch = records_without_head(batches, 1).remove(0).value;
        assert!(v1::EventsRecord::decode(&headed[..]).expect("decodes").head.is_some());
        let read = decode_common(&headed).expect("read here");
        assert_eq!(read.batches.len(), 2000);
        assert_eq!(Some(&read), decode_common(&per_batch).as_ref());
        assert_eq!(Ok(&read), decode_events_prost(&headed).as_ref().map_err(|e| e.to_string()));
        assert_eq!(Ok(&read), decode_events_prost(&per_batch).as_ref().map_err(|e| e.to_string()));
        assert!(headed.len() * 4 < per_batch.len() * 3, "{} against {} bytes", headed.len(), per_batch.len());
    }

    /// In a record with a head, a batch with a source id of its own keeps
    /// all of its own source fields; the others take the head's.
    #[test]
    fn a_batch_with_its_own_source_id_keeps_its_own_fields() {
        let mut batches = validate(&Limits::default(), report(3, 6), NOW).expect("valid");
        let own = v1::ProjectBatch {
            source_id: "other".into(),
            batch_seq: 9,
            source_session: 4,
            ingested_unix_ms: NOW - 5,
            keyed_only: true,
            ..batches[1].clone()
        };
        let head = v1::ProjectBatch { events: Vec::new(), project_id: String::new(), ..batches[0].clone() };
        for b in &mut batches {
            *b = v1::ProjectBatch { project_id: b.project_id.clone(), events: b.events.clone(), ..Default::default() };
        }
        batches[1] = own;
        let record = v1::EventsRecord { batches, head: Some(head), ..Default::default() }.encode_to_vec();
        let read = decode_common(&record).expect("read here");
        let fields = |b: &Batch| (b.source_id.to_string(), b.batch_seq, b.session, b.keyed_only, b.ingested_ms);
        assert_eq!(fields(&read.batches[0]), ("collector-1".into(), 5, 77, false, NOW));
        assert_eq!(fields(&read.batches[1]), ("other".into(), 9, 4, true, NOW - 5));
        assert_eq!(fields(&read.batches[2]), fields(&read.batches[0]));
        assert_eq!(Ok(&read), decode_events_prost(&record).as_ref().map_err(|e| e.to_string()));
    }

    /// Two heads (which prost merges), a head with events, a head with an
    /// invalid source id: prost's to judge.
    #[test]
    fn unusual_heads_are_left_to_prost() {
        let good = records(3, 6).remove(0);
        let head = v1::EventsRecord::decode(&good[..]).expect("decodes").head.expect("a head");
        let n = decode_common(&good).expect("read here").batches.len();
        let twice = [good.clone(), v1::EventsRecord { head: Some(head.clone()), ..Default::default() }.encode_to_vec()];
        let twice = twice.concat();
        assert!(decode_common(&twice).is_none());
        assert_eq!(decode_events(&twice).expect("prost merges the two").batches.len(), n);
        let event = validate(&Limits::default(), report(1, 1), NOW).expect("valid")[0].events.clone();
        let with_events = v1::ProjectBatch { events: event, ..head.clone() };
        let mut record = v1::EventsRecord::decode(&good[..]).expect("decodes");
        record.head = Some(with_events);
        let bytes = record.encode_to_vec();
        assert!(decode_common(&bytes).is_none());
        assert_eq!(decode_events(&bytes).expect("read by prost").batches.len(), n);
        record.head = Some(v1::ProjectBatch { source_id: "a b".into(), ..head });
        let bytes = record.encode_to_vec();
        assert!(decode_common(&bytes).is_none());
        assert!(decode_events(&bytes).expect_err("an invalid source id").to_string().contains("source_id"));
    }

    /// The writers put fields in number order; a record with them in any
    /// order, repeated (the last counts) or unknown ones among them reads
    /// the same both ways.
    #[test]
    fn field_order_repeats_and_unknown_fields_read_as_prost_reads_them() {
        let event = UsageEvent {
            metric: Metric::ActiveTimeSeconds as i32,
            kind: Kind::Incremental as i32,
            value: 60,
            start_unix_ms: NOW - 60_000,
            end_unix_ms: NOW,
            ..Default::default()
        }
        .encode_to_vec();
        let mut batch = Vec::new();
        use crate::test_reports::{len_field as field, varint_field as varint};
        field(&mut batch, 4, &event);
        field(&mut batch, 3, b"first-project");
        varint(&mut batch, 6, 9);
        field(&mut batch, 1, b"src");
        varint(&mut batch, 99, 12345);
        field(&mut batch, 4, &event);
        field(&mut batch, 3, b"proj-b");
        varint(&mut batch, 2, 3);
        varint(&mut batch, 5, NOW as u64);
        batch.extend_from_slice(&[0x9d, 0x06, 1, 2, 3, 4]); // field 99, fixed32
        let mut record = Vec::new();
        varint(&mut record, 3, 1);
        field(&mut record, 16, &batch);
        field(&mut record, 21, b"unknown");
        let fast = decode_common(&record).expect("read here");
        assert_eq!(fast.batches[0].project_id.as_str(), "proj-b");
        assert_eq!(fast.batches[0].events.len(), 2);
        assert!(fast.batches[0].events.iter().all(|e| e.project_id.as_str() == "proj-b"));
        assert_eq!(Ok(&fast), decode_events_prost(&record).as_ref().map_err(|e| e.to_string()));
    }

    #[test]
    fn records_left_to_prost() {
        // Legacy: one ProjectBatch per record.
        let legacy = v1::ProjectBatch {
            source_id: "s".into(),
            project_id: "p".into(),
            source_session: 1,
            batch_seq: 1,
            ..Default::default()
        }
        .encode_to_vec();
        assert!(decode_common(&legacy).is_none());
        assert_eq!(decode_events(&legacy).expect("legacy").batches.len(), 1);
        // Invalid ids and metrics, and truncation, are prost's to judge.
        let mut bad = report(3, 6);
        bad.events[2].metric = 42;
        let bytes = v1::EventsRecord { batches: validate_unchecked(bad), ..Default::default() }.encode_to_vec();
        assert!(decode_common(&bytes).is_none());
        assert!(decode_events(&bytes).expect_err("bad metric").to_string().contains("metric"));
        let good = &records(3, 6)[0];
        assert!(decode_common(&good[..good.len() - 1]).is_none());
        assert!(decode_events(&good[..good.len() - 1]).is_err());
    }

    /// A key of more than 32 bits whose field number alone would fit (found
    /// by the mangling test in CI): prost refuses it, so it is not read here.
    #[test]
    fn a_key_over_32_bits_is_left_to_prost() {
        let mut record = Vec::new();
        prost::encoding::encode_varint(13_785_525_000, &mut record); // field 1,723,190,625, wire 0
        prost::encoding::encode_varint(1, &mut record);
        record.extend_from_slice(&records(3, 6)[0]);
        assert!(decode_common(&record).is_none());
        let err = decode_events(&record).expect_err("invalid key").to_string();
        assert!(err.contains("invalid key value"), "{err}");
    }

    /// A batch's source id is checked as UTF-8 only when it differs from
    /// the previous batch's: an earlier occurrence of the field, which prost
    /// checks too, still is.
    #[test]
    fn a_source_id_repeated_with_invalid_utf8_is_left_to_prost() {
        // Batches with their own source ids (as written before heads).
        let first = validate(&Limits::default(), report(3, 6), NOW).expect("valid");
        assert!(first.len() >= 2, "two batches of one source");
        // The first batch, then the second with its source id first as
        // `earlier` (two bytes), then as the first batch's.
        let record = |earlier: &[u8; 2]| {
            let mut second = vec![0x0a, 2, earlier[0], earlier[1]];
            second.extend_from_slice(&first[1].encode_to_vec());
            let mut record = v1::EventsRecord { batches: vec![first[0].clone()], ..Default::default() }.encode_to_vec();
            prost::encoding::encode_key(16, prost::encoding::WireType::LengthDelimited, &mut record);
            prost::encoding::encode_varint(second.len() as u64, &mut record);
            record.extend_from_slice(&second);
            record
        };
        let invalid = record(&[0xc3, 0x28]);
        assert!(decode_events_prost(&invalid).is_err(), "prost refuses the invalid occurrence");
        assert!(decode_common(&invalid).is_none());
        // The same record with a valid first occurrence reads both ways alike.
        let record = record(b"ok");
        let fast = decode_common(&record).expect("read here");
        assert_eq!(Ok(&fast), decode_events_prost(&record).as_ref().map_err(|e| e.to_string()));
    }

    use crate::events::decode_events;

    /// The batches of a Report, unchecked (to write invalid records).
    fn validate_unchecked(req: ReportRequest) -> Vec<v1::ProjectBatch> {
        req.events
            .into_iter()
            .map(|mut e| v1::ProjectBatch {
                source_id: req.source_id.clone(),
                project_id: std::mem::take(&mut e.project_id),
                source_session: req.source_session,
                batch_seq: req.batch_seq,
                events: vec![e],
                ..Default::default()
            })
            .collect()
    }

    proptest! {
        /// Whatever a record's bytes, what is read here is what prost reads.
        #[test]
        fn mangled_records_read_here_only_as_prost_reads_them(which in 0usize..4, edits in edits()) {
            let bytes = mangle(records(40, 60)[which].clone(), edits);
            if let Some(fast) = decode_common(&bytes) {
                let prost = decode_events_prost(&bytes).map_err(|e| e.to_string());
                prop_assert_eq!(Ok(&fast), prost.as_ref());
            }
        }
    }
}
