//! Ingest's Report read from its bytes straight into the records of
//! `usage.events`, without prost's structs: decoding a collector's Report
//! into 2,000 `UsageEvent`s (a project id allocated for each), moving them
//! into per-project `ProjectBatch`es and encoding those again was most of
//! ingest's CPU per event (BENCHMARKS.md, issue 19). Only a Report that
//! `report::validate` accepts is read here; any other (malformed, invalid,
//! with wire types the clients never use) gives `None`, and ingest decodes
//! it with prost and validates it as before, so this module never decides
//! what is refused or why. The tests hold the records written here to the
//! bytes `kafka_records(validate(..))` writes, on every Report they can
//! build or mangle.

use meter_core::group::Groups;
use meter_core::keys::check_key;
use meter_core::partition::partition_of;
use meter_core::validate::check_branch_id;
use meter_core::{Limits, ProjectId, SourceId, Span};
use prost::encoding::encoded_len_varint;

use crate::batch::measure_of;
use crate::report::{in_record_len, pack, EventsRecord, RECORD_BYTES};
use crate::v1::Kind;
use crate::wire_read::Reader;
use crate::wire_write::{encode_varint, key, put_str, put_varint, str_len, varint_len, LEN};

/// The end of a project's list of events.
const NONE: u32 = u32::MAX;

/// A Report that `validate` accepts, read from its bytes (which it borrows).
#[derive(Debug)]
pub struct ReadReport<'a> {
    pub source_id: &'a str,
    pub batch_seq: u64,
    pub source_session: u64,
    ingested_unix_ms: i64,
    events: Vec<Event<'a>>,
    /// Its projects, in order of first sight.
    projects: Vec<Project<'a>>,
}

/// An event as its project's batch holds it: checked, its span's fields
/// only (as `set_wire_span` keeps them), its project id above it.
#[derive(Debug)]
struct Event<'a> {
    endpoint_id: &'a str,
    branch_id: &'a str,
    metric: i32,
    value: u64,
    span: Span,
    idempotency_key: &'a str,
    /// Its bytes in the Report after its project id, when they are the
    /// bytes written here (see `usage_event`): copied, not written again.
    raw: Option<&'a [u8]>,
    /// Its encoded length.
    len: usize,
    /// The next event of its project (an index in `events`), or `NONE`.
    next: u32,
}

/// A project's events, linked through `Event::next` (no list allocated
/// per project: a collector's Report has thousands).
#[derive(Debug)]
struct Project<'a> {
    id: &'a str,
    first: u32,
    last: u32,
    /// The bytes its events take in its batch.
    events_len: usize,
}

impl<'a> ReadReport<'a> {
    /// Reads `bytes` as a `ReportRequest` and checks it as `validate` does
    /// at time `now`: `None` unless it is well formed and valid.
    pub fn read(limits: &Limits, bytes: &'a [u8], now: i64) -> Option<Self> {
        let (mut source_id, mut batch_seq, mut source_session) = ("", 0, 0);
        let mut raw = Vec::new();
        let mut r = Reader::new(bytes);
        while !r.is_empty() {
            let (tag, wire) = r.key()?;
            match tag {
                1 => source_id = r.str_field(wire)?,
                2 => batch_seq = r.varint_field(wire)?,
                3 => raw.push(r.bytes_field(wire)?),
                4 => source_session = r.varint_field(wire)?,
                _ => r.skip(wire)?,
            }
        }
        SourceId::check(source_id).ok()?;
        if source_session == 0 {
            return None;
        }
        limits.check_batch_len(raw.len()).ok()?;
        let mut report = ReadReport {
            source_id,
            batch_seq,
            source_session,
            ingested_unix_ms: now,
            events: Vec::with_capacity(raw.len()),
            projects: Vec::new(),
        };
        let mut groups = Groups::for_items(raw.len());
        fn id_of<'p>(p: &'p Project<'_>) -> &'p str {
            p.id
        }
        for (i, bytes) in raw.into_iter().enumerate() {
            let (project_id, event) = usage_event(limits, i, bytes, now)?;
            let at = u32::try_from(i).ok().filter(|&at| at != NONE)?;
            let in_batch = 1 + encoded_len_varint(event.len as u64) + event.len;
            report.events.push(event);
            match groups.find(&report.projects, id_of, project_id) {
                Some(k) => {
                    let p = &mut report.projects[k];
                    report.events[p.last as usize].next = at;
                    p.last = at;
                    p.events_len += in_batch;
                }
                None => {
                    ProjectId::check(project_id).ok()?;
                    report.projects.push(Project { id: project_id, first: at, last: at, events_len: in_batch });
                    groups.pushed(&report.projects, |p| p.id);
                }
            }
        }
        Some(report)
    }

    /// How many events it holds.
    pub fn len(&self) -> usize {
        self.events.len()
    }

    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// The projects it reports for, in order of first sight.
    pub fn project_ids(&self) -> impl Iterator<Item = &'a str> + '_ {
        self.projects.iter().map(|p| p.id)
    }

    /// Its Kafka records among `partitions` partitions: the bytes
    /// `kafka_records` writes for `validate`'s batches of the same Report
    /// (each batch its project id and events, then the record's head).
    pub fn records(&self, partitions: i32) -> Vec<EventsRecord> {
        let head_len = self.head_len();
        let sized = self.projects.iter().map(|p| {
            let len = str_len(p.id) + p.events_len;
            (partition_of(p.id, partitions), in_record_len(len), (p, len))
        });
        pack(sized, RECORD_BYTES - in_record_len(head_len))
            .into_iter()
            .map(|(partition, batches, bytes)| {
                let mut value = Vec::with_capacity(bytes + in_record_len(head_len));
                for (p, len) in batches {
                    value.extend_from_slice(&BATCHES_KEY);
                    encode_varint(len as u64, &mut value);
                    self.write_batch(p, &mut value);
                }
                value.extend_from_slice(&HEAD_KEY);
                encode_varint(head_len as u64, &mut value);
                self.write_head(&mut value);
                EventsRecord { partition, key: self.source_id.to_owned(), value }
            })
            .collect()
    }

    /// The encoded length of the records' head: the `ProjectBatch` fields
    /// its batches share.
    fn head_len(&self) -> usize {
        str_len(self.source_id)
            + varint_len(self.batch_seq)
            + varint_len(self.ingested_unix_ms as u64)
            + varint_len(self.source_session)
    }

    /// The head, its fields in number order as prost writes them
    /// (`keyed_only` false, so absent).
    fn write_head(&self, out: &mut Vec<u8>) {
        put_str(out, 1, self.source_id);
        put_varint(out, 2, self.batch_seq);
        put_varint(out, 5, self.ingested_unix_ms as u64);
        put_varint(out, 6, self.source_session);
    }

    /// `p`'s `ProjectBatch` in a record with a head: its project id and
    /// events.
    fn write_batch(&self, p: &Project<'_>, out: &mut Vec<u8>) {
        put_str(out, 3, p.id);
        let mut at = p.first;
        while at != NONE {
            let e = &self.events[at as usize];
            out.push(key(4, LEN));
            encode_varint(e.len as u64, out);
            e.write(out);
            at = e.next;
        }
    }
}

/// One `UsageEvent` of a Report, checked as `validate` checks it: its
/// project id and the event, or `None`.
///
/// A client's protobuf library writes an event's fields in number order,
/// minimally and without defaults, as `Event::write` does, so the bytes
/// after its project id are usually the bytes to write. They are taken as
/// they are when its fields came in ascending order and those bytes are as
/// long as the event written here: every field written here was read with
/// the same value, so any extra field (a default, a stray time, an unknown
/// one) or longer encoding would make them longer.
fn usage_event<'a>(limits: &Limits, i: usize, bytes: &'a [u8], now: i64) -> Option<(&'a str, Event<'a>)> {
    let (mut project_id, mut endpoint_id, mut branch_id, mut idempotency_key) = ("", "", "", "");
    let (mut metric, mut kind, mut value, mut start, mut end, mut time) = (0, 0, 0, 0, 0, 0);
    let (mut last_tag, mut ascending, mut after_project) = (0, true, 0);
    let mut r = Reader::new(bytes);
    while !r.is_empty() {
        let (tag, wire) = r.key()?;
        ascending &= tag > last_tag;
        last_tag = tag;
        match tag {
            1 => project_id = r.str_field(wire)?,
            2 => endpoint_id = r.str_field(wire)?,
            3 => branch_id = r.str_field(wire)?,
            4 => metric = r.varint_field(wire)? as i32,
            5 => kind = r.varint_field(wire)? as i32,
            6 => value = r.varint_field(wire)?,
            7 => start = r.varint_field(wire)? as i64,
            8 => end = r.varint_field(wire)? as i64,
            9 => time = r.varint_field(wire)? as i64,
            10 => idempotency_key = r.str_field(wire)?,
            _ => r.skip(wire)?,
        }
        if tag == 1 {
            after_project = bytes.len() - r.remaining();
        }
    }
    let (_, span) = measure_of(i, metric, kind, (start, end, time)).ok()?;
    limits.check_usage(i, value, span, now).ok()?;
    check_key(i, idempotency_key).ok()?;
    check_branch_id(i, branch_id).ok()?;
    let mut e = Event { endpoint_id, branch_id, metric, value, span, idempotency_key, raw: None, len: 0, next: NONE };
    e.len = e.encoded_len();
    let rest = &bytes[after_project..];
    e.raw = (ascending && rest.len() == e.len).then_some(rest);
    Some((project_id, e))
}

impl Event<'_> {
    /// Its kind and its start, end and time fields.
    fn times(&self) -> (Kind, i64, i64, i64) {
        match self.span {
            Span::Interval { start_ms, end_ms } => (Kind::Incremental, start_ms, end_ms, 0),
            Span::Instant { time_ms } => (Kind::Absolute, 0, 0, time_ms),
        }
    }

    fn encoded_len(&self) -> usize {
        let (kind, start, end, time) = self.times();
        str_len(self.endpoint_id)
            + str_len(self.branch_id)
            + varint_len(self.metric as u64)
            + varint_len(kind as u64)
            + varint_len(self.value)
            + varint_len(start as u64)
            + varint_len(end as u64)
            + varint_len(time as u64)
            + str_len(self.idempotency_key)
    }

    /// The event as prost writes a `UsageEvent`, its `project_id` empty.
    fn write(&self, out: &mut Vec<u8>) {
        if let Some(raw) = self.raw {
            out.extend_from_slice(raw);
            return;
        }
        let (kind, start, end, time) = self.times();
        put_str(out, 2, self.endpoint_id);
        put_str(out, 3, self.branch_id);
        put_varint(out, 4, self.metric as u64);
        put_varint(out, 5, kind as u64);
        put_varint(out, 6, self.value);
        put_varint(out, 7, start as u64);
        put_varint(out, 8, end as u64);
        put_varint(out, 9, time as u64);
        put_str(out, 10, self.idempotency_key);
    }
}

/// The key of an `EventsRecord`'s `batches` (field 16, length-delimited).
const BATCHES_KEY: [u8; 2] = [0x82, 0x01];

/// The key of an `EventsRecord`'s `head` (field 20, length-delimited).
const HEAD_KEY: [u8; 2] = [0xa2, 0x01];

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message;

    use super::*;
    use crate::report::{kafka_records, validate};
    use crate::test_reports::{edits, mangle, mixed_events, report, NOW};
    use crate::v1::{Metric, ReportRequest, UsageEvent};
    use crate::wire_write::VARINT;

    /// What ingest writes for `bytes` through prost: the records, or `None`
    /// when prost or `validate` refuses them.
    fn through_prost(limits: &Limits, bytes: &[u8], partitions: i32) -> Option<Vec<EventsRecord>> {
        let req = ReportRequest::decode(bytes).ok()?;
        Some(kafka_records(validate(limits, req, NOW).ok()?, partitions))
    }

    /// What is read here, as records.
    fn here(limits: &Limits, bytes: &[u8], partitions: i32) -> Option<Vec<EventsRecord>> {
        ReadReport::read(limits, bytes, NOW).map(|r| r.records(partitions))
    }

    #[test]
    fn writes_the_records_prost_and_validate_write() {
        let limits = Limits::default();
        for (projects, events, partitions) in [(1, 1, 1), (3, 10, 4), (16, 1000, 8), (2000, 2000, 8), (40, 0, 2)] {
            let bytes = report(projects, events).encode_to_vec();
            let read = ReadReport::read(&limits, &bytes, NOW).expect("a valid Report is read here");
            assert_eq!((read.len(), read.source_id, read.batch_seq), (events, "collector-1", 5));
            assert_eq!(read.project_ids().count(), projects.min(events));
            assert_eq!(Some(read.records(partitions)), through_prost(&limits, &bytes, partitions));
        }
    }

    /// Past `RECORD_BYTES` a partition's batches go to more than one record,
    /// as `kafka_records` splits them.
    #[test]
    fn splits_records_as_kafka_records_does() {
        let mut req = report(3000, 3000);
        for e in &mut req.events {
            e.idempotency_key = format!("{}{}", "k".repeat(200), e.value);
        }
        let bytes = req.encode_to_vec();
        let records = here(&Limits::default(), &bytes, 1).expect("read");
        assert!(records.len() >= 2, "{} records", records.len());
        assert_eq!(Some(records), through_prost(&Limits::default(), &bytes, 1));
    }

    /// Fields in any order, repeated (the last counts), unknown ones: read as
    /// prost reads them.
    #[test]
    fn field_order_repeats_and_unknown_fields_read_as_prost_reads_them() {
        let field = |buf: &mut Vec<u8>, tag: u32, bytes: &[u8]| {
            prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, buf);
            encode_varint(bytes.len() as u64, buf);
            buf.extend_from_slice(bytes);
        };
        let varint = |buf: &mut Vec<u8>, tag: u32, v: u64| {
            prost::encoding::encode_key(tag, prost::encoding::WireType::Varint, buf);
            encode_varint(v, buf);
        };
        let mut event = Vec::new();
        varint(&mut event, 6, 5);
        field(&mut event, 1, b"first");
        varint(&mut event, 5, Kind::Incremental as u64);
        varint(&mut event, 4, Metric::ActiveTimeSeconds as u64);
        varint(&mut event, 8, NOW as u64);
        varint(&mut event, 7, (NOW - 60_000) as u64);
        field(&mut event, 1, b"proj-b");
        varint(&mut event, 99, 1);
        event.extend_from_slice(&[0x9d, 0x06, 1, 2, 3, 4]); // field 99, fixed32
        let mut req = Vec::new();
        field(&mut req, 3, &event);
        varint(&mut req, 4, 9);
        field(&mut req, 1, b"other");
        field(&mut req, 1, b"src");
        field(&mut req, 20, b"unknown");
        field(&mut req, 3, &event);
        varint(&mut req, 2, 3);
        let records = here(&Limits::default(), &req, 4).expect("read here");
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].key, "src");
        assert_eq!(Some(records), through_prost(&Limits::default(), &req, 4));
    }

    /// An event as prost writes it is copied; one whose bytes differ from
    /// what is written here (a default written, a longer varint, a stray
    /// time, an unknown field, fields out of order) is written again, and
    /// the records are prost's either way.
    #[test]
    fn events_as_written_are_copied_and_others_written_again() {
        let limits = Limits::default();
        let canonical = UsageEvent {
            project_id: "proj-1".into(),
            endpoint_id: "ep-1".into(),
            metric: Metric::WrittenDataBytes as i32,
            kind: Kind::Incremental as i32,
            value: 300,
            start_unix_ms: NOW - 60_000,
            end_unix_ms: NOW,
            idempotency_key: "k-1".into(),
            ..Default::default()
        }
        .encode_to_vec();
        let (_, e) = usage_event(&limits, 0, &canonical, NOW).expect("valid");
        assert_eq!(e.raw, Some(&canonical[8..]), "after the project id's 8 bytes");
        let value_at = canonical.iter().position(|&b| b == key(6, VARINT)).expect("the value's key");
        let mut cases = Vec::new();
        // value 300 as a three-byte varint
        cases.push([&canonical[..value_at + 1], &[0xac, 0x82, 0x00], &canonical[value_at + 3..]].concat());
        // a default written: time 0
        cases.push([&canonical[..], &[key(9, VARINT), 0]].concat());
        // a stray time on an interval
        cases.push([&canonical[..], &[key(9, VARINT), 5]].concat());
        // an unknown field
        cases.push([&canonical[..], &[0x98, 0x06, 1]].concat());
        // the value moved first
        cases.push([&canonical[value_at..value_at + 3], &canonical[..value_at], &canonical[value_at + 3..]].concat());
        for (i, event) in cases.iter().enumerate() {
            let (_, e) = usage_event(&limits, 0, event, NOW).expect("valid");
            assert_eq!(e.raw, None, "case {i}");
            let mut req = Vec::new();
            put_str(&mut req, 1, "src");
            req.push(key(3, LEN));
            encode_varint(event.len() as u64, &mut req);
            req.extend_from_slice(event);
            put_varint(&mut req, 4, 9);
            assert_eq!(here(&limits, &req, 4), through_prost(&limits, &req, 4), "case {i}");
            assert!(here(&limits, &req, 4).is_some(), "case {i} read here");
        }
    }

    #[test]
    fn invalid_reports_are_left_to_prost_and_validate() {
        let limits = Limits::default();
        let mut cases = Vec::new();
        let good = report(3, 6);
        let mut bad = good.clone();
        bad.events[2].metric = 42;
        cases.push(bad.encode_to_vec());
        let mut bad = good.clone();
        bad.events[4].project_id = "a b".into();
        cases.push(bad.encode_to_vec());
        let mut bad = good.clone();
        bad.events[1].end_unix_ms = NOW + 86_400_000;
        cases.push(bad.encode_to_vec());
        let mut bad = good.clone();
        bad.events[0].idempotency_key = "k".repeat(257);
        cases.push(bad.encode_to_vec());
        cases.push(ReportRequest { source_session: 0, ..good.clone() }.encode_to_vec());
        cases.push(ReportRequest { source_id: String::new(), ..good.clone() }.encode_to_vec());
        let whole = good.encode_to_vec();
        cases.push(whole[..whole.len() - 1].to_vec());
        for (i, bytes) in cases.iter().enumerate() {
            assert!(ReadReport::read(&limits, bytes, NOW).is_none(), "case {i} read here");
            assert!(through_prost(&limits, bytes, 4).is_none(), "case {i} accepted by prost and validate");
        }
        let few = Limits { max_events_per_batch: 5, ..Limits::default() };
        assert!(ReadReport::read(&few, &whole, NOW).is_none());
    }

    /// An unknown field of a group wire type (which prost skips, found by
    /// the fuzzer): left to prost, which writes the records.
    #[test]
    fn group_wire_types_are_left_to_prost() {
        let mut bytes = vec![0x73, 0x74]; // field 14, start group, end group
        bytes.extend(report(3, 6).encode_to_vec());
        assert!(ReadReport::read(&Limits::default(), &bytes, NOW).is_none());
        assert!(through_prost(&Limits::default(), &bytes, 4).is_some());
    }

    proptest! {
        /// Any mix of projects, metrics, kinds and times: the same records
        /// as prost and `validate`, or left to them.
        #[test]
        fn agrees_with_prost_and_validate(events in mixed_events(NOW)) {
            let bytes = ReportRequest { source_id: "s".into(), source_session: 5, batch_seq: 3, events }.encode_to_vec();
            let prost = through_prost(&Limits::default(), &bytes, 4);
            prop_assert_eq!(here(&Limits::default(), &bytes, 4), prost);
        }

        /// Whatever a Report's bytes, what is read here is what prost and
        /// `validate` make of them.
        #[test]
        fn mangled_reports_read_here_only_as_prost_reads_them(edits in edits()) {
            let bytes = mangle(report(20, 40).encode_to_vec(), edits);
            if let Some(read) = here(&Limits::default(), &bytes, 4) {
                prop_assert_eq!(Some(read), through_prost(&Limits::default(), &bytes, 4));
            }
        }
    }
}
