//! What ingest makes of a Report: validated per-project batches and their
//! Kafka records. Pure (no I/O), so it is unit-tested, fuzzed
//! (`fuzz/`, target `report`) and shared with the benchmark's baseline.

use meter_core::group::Groups;
use meter_core::keys::check_key;
use std::collections::BTreeMap;

use meter_core::partition::partition_of;
use meter_core::validate::check_branch_id;
use meter_core::{BatchError, Limits, ProjectId, SourceId};
use prost::Message;

use crate::v1::{self, ReportRequest};
use crate::{set_wire_span, wire_measure};

/// Validates a Report into per-project batches, all-or-nothing: what
/// ingest writes to Kafka, packed per partition (`kafka_records`).
///
/// Works on the wire events themselves, moving each into its project's
/// batch, without building domain events: the records are the bytes
/// `encode_batch` writes for `Batch::split_by_project` of the decoded events
/// (a test holds the two equal), at half the cost (BENCHMARKS.md).
pub fn validate(limits: &Limits, req: ReportRequest, now: i64) -> Result<Vec<v1::ProjectBatch>, BatchError> {
    SourceId::check(&req.source_id).map_err(|e| BatchError::batch("source_id", e.to_string()))?;
    if req.source_session == 0 {
        return Err(BatchError::batch(
            "source_session",
            "is 0; a source draws a random non-zero session when it starts, so that its batches after a \
             restart are not taken for retries (see ReportRequest in ingest.proto)",
        ));
    }
    limits.check_batch_len(req.events.len())?;
    let mut out: Vec<v1::ProjectBatch> = Vec::new();
    let mut groups = Groups::for_items(req.events.len());
    fn id_of(b: &v1::ProjectBatch) -> &str {
        b.project_id.as_str()
    }
    for (i, mut w) in req.events.into_iter().enumerate() {
        // An id is checked when first seen; the events after it compare
        // equal to a good one.
        let known = groups.find(&out, id_of, &w.project_id);
        if known.is_none() {
            ProjectId::check(&w.project_id).map_err(|e| BatchError::event(i, "project_id", e.to_string()))?;
        }
        let (_, span) = wire_measure(i, &w)?;
        limits.check_usage(i, w.value, span, now)?;
        check_key(i, &w.idempotency_key)?;
        check_branch_id(i, &w.branch_id)?;
        set_wire_span(&mut w, span);
        let project_id = std::mem::take(&mut w.project_id);
        match known {
            Some(k) => out[k].events.push(w),
            None => out.push(v1::ProjectBatch {
                source_id: req.source_id.clone(),
                batch_seq: req.batch_seq,
                project_id,
                events: vec![w],
                ingested_unix_ms: now,
                source_session: req.source_session,
                keyed_only: false,
            }),
        }
        groups.pushed(&out, |b| id_of(b).to_owned());
    }
    Ok(out)
}

/// One record of `usage.events`: the partition it must go to, its key,
/// its value (an `EventsRecord`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EventsRecord {
    pub partition: i32,
    pub key: String,
    pub value: Vec<u8>,
}

/// Largest value of an `EventsRecord` holding more than one batch: well
/// under the 1 MB `message.max.bytes` of brokers and librdkafka. A batch
/// larger than this (up to 10,000 events of one project) goes alone, as it
/// always did.
pub const RECORD_BYTES: usize = 512 * 1024;

/// The Kafka records of validated batches among `partitions` partitions:
/// one per partition that holds any of their projects (more only past
/// `RECORD_BYTES`), each keyed by the source. A collector's Report of 2,000
/// projects becomes a handful of records instead of 2,000 (issue 19). The
/// fields the batches share go once into each record's `head` (see
/// `EventsRecord` in ingest.proto); batches that do not share them (never
/// one Report's) keep their own.
pub fn kafka_records(mut batches: Vec<v1::ProjectBatch>, partitions: i32) -> Vec<EventsRecord> {
    let head = take_head(&mut batches);
    records_with(batches, partitions, head)
}

/// The records of `batches` as ingest wrote them from 2026-12-01 until
/// 2026-12-04: every batch with its own source fields, no head. What the
/// upgrade test and the benchmarks write as the older layout.
pub fn records_without_head(batches: Vec<v1::ProjectBatch>, partitions: i32) -> Vec<EventsRecord> {
    records_with(batches, partitions, None)
}

/// `batches` packed per partition into records keyed by their source, each
/// with `head` (its bytes counted against `RECORD_BYTES`).
fn records_with(batches: Vec<v1::ProjectBatch>, partitions: i32, head: Option<v1::ProjectBatch>) -> Vec<EventsRecord> {
    let key = head.as_ref().or(batches.first()).map(|b| b.source_id.clone()).unwrap_or_default();
    let bound = RECORD_BYTES - head.as_ref().map_or(0, |h| in_record_len(h.encoded_len()));
    let sized = batches.into_iter().map(|b| {
        let len = b.encoded_len();
        (partition_of(&b.project_id, partitions), in_record_len(len), b)
    });
    pack(sized, bound)
        .into_iter()
        .map(|(partition, batches, _)| EventsRecord {
            partition,
            key: key.clone(),
            value: v1::EventsRecord { batches, head: head.clone(), ..Default::default() }.encode_to_vec(),
        })
        .collect()
}

/// The head of a record of `batches` when they all share its fields (their
/// source id, batch number, ingest time, session and `keyed_only`), taken
/// out of each; `None`, and the batches as they are, otherwise.
fn take_head(batches: &mut [v1::ProjectBatch]) -> Option<v1::ProjectBatch> {
    let first = batches.first()?;
    let shares = |b: &v1::ProjectBatch| {
        (b.source_id == first.source_id && b.batch_seq == first.batch_seq)
            && (b.ingested_unix_ms == first.ingested_unix_ms && b.source_session == first.source_session)
            && b.keyed_only == first.keyed_only
    };
    if first.source_id.is_empty() || !batches.iter().all(shares) {
        return None;
    }
    let head = v1::ProjectBatch {
        source_id: first.source_id.clone(),
        batch_seq: first.batch_seq,
        ingested_unix_ms: first.ingested_unix_ms,
        source_session: first.source_session,
        keyed_only: first.keyed_only,
        ..Default::default()
    };
    for b in batches.iter_mut() {
        b.source_id.clear();
        (b.batch_seq, b.ingested_unix_ms, b.source_session, b.keyed_only) = (0, 0, 0, false);
    }
    Some(head)
}

/// The bytes a `ProjectBatch` of `len` bytes takes in an `EventsRecord`
/// (field 16's two-byte key, the length, the batch), and so does its head
/// (field 20's).
pub(crate) fn in_record_len(len: usize) -> usize {
    len + prost::length_delimiter_len(len) + 2
}

/// Project batches, each with its partition and its bytes in a record,
/// packed into records: per partition in partition order, in the order
/// given, a new record when the next would pass `bound` bytes (a batch
/// larger than that goes alone). Each record comes with its partition and
/// bytes.
pub(crate) fn pack<T>(sized: impl IntoIterator<Item = (i32, usize, T)>, bound: usize) -> Vec<(i32, Vec<T>, usize)> {
    // Per partition, the records being filled: (batches, bytes so far).
    let mut open: BTreeMap<i32, Vec<(Vec<T>, usize)>> = BTreeMap::new();
    for (partition, size, b) in sized {
        let records = open.entry(partition).or_default();
        match records.last_mut() {
            Some((held, bytes)) if *bytes + size <= bound => {
                held.push(b);
                *bytes += size;
            }
            _ => records.push((vec![b], size)),
        }
    }
    open.into_iter()
        .flat_map(|(partition, records)| records.into_iter().map(move |(held, bytes)| (partition, held, bytes)))
        .collect()
}

/// The batches of `records` as the aggregator reads them, checking that
/// each is in its project's partition among `partitions`: what tests and
/// fuzz targets hold `kafka_records` to.
pub fn read_back(records: &[EventsRecord], partitions: i32) -> Result<Vec<meter_core::Batch>, String> {
    let mut out = Vec::new();
    for r in records {
        for b in crate::decode_record(&r.value).map_err(|e| format!("partition {}: {e}", r.partition))? {
            let want = partition_of(b.project_id.as_str(), partitions);
            if want != r.partition {
                return Err(format!("project {} in partition {}, belongs in {want}", b.project_id, r.partition));
            }
            out.push(b);
        }
    }
    Ok(out)
}

/// `batches` written as ingest writes them among `partitions` and read back
/// (`read_back`), checking nothing was lost or split.
pub fn round_trip(batches: Vec<v1::ProjectBatch>, partitions: i32) -> Result<Vec<meter_core::Batch>, String> {
    let n = batches.len();
    let read = read_back(&kafka_records(batches, partitions), partitions)?;
    if read.len() != n {
        return Err(format!("{n} batches written, {} read back", read.len()));
    }
    Ok(read)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_reports::{event, mixed_events};
    use crate::{encode_batch, event_from_wire};
    use meter_core::Batch;
    use proptest::prelude::*;

    const NOW: i64 = 1_760_000_000_000;

    /// The records through domain events: decode every event, split by
    /// project, encode each batch. `validate` must write the same bytes.
    fn via_domain(req: &ReportRequest) -> Result<Vec<(String, Vec<u8>)>, BatchError> {
        let limits = Limits::default();
        let source = SourceId::new(req.source_id.clone()).map_err(|e| BatchError::batch("source_id", e.to_string()))?;
        if req.source_session == 0 {
            return Err(BatchError::batch("source_session", "0"));
        }
        limits.check_batch_len(req.events.len())?;
        let mut events = Vec::new();
        for (i, w) in req.events.iter().enumerate() {
            let e = event_from_wire(i, w.clone(), None)?;
            limits.check_event(i, &e, NOW)?;
            check_key(i, &w.idempotency_key)?;
            check_branch_id(i, &w.branch_id)?;
            events.push(e);
        }
        let batches = Batch::split_by_project(&source, req.source_session, req.batch_seq, events, NOW);
        Ok(batches.iter().map(|b| (b.project_id.to_string(), encode_batch(b))).collect())
    }

    fn direct(req: &ReportRequest) -> Result<Vec<(String, Vec<u8>)>, BatchError> {
        let per_project =
            |b: Vec<v1::ProjectBatch>| b.iter().map(|b| (b.project_id.clone(), b.encode_to_vec())).collect();
        validate(&Limits::default(), req.clone(), NOW).map(per_project).map_err(|mut e| {
            if e.field == "source_session" {
                e.reason = "0".into();
            }
            e
        })
    }

    #[test]
    fn writes_the_bytes_of_the_domain_path() {
        let mut with_ids = event("b", 4, 1, 5, (NOW - 10, NOW, 0));
        (with_ids.endpoint_id, with_ids.branch_id, with_ids.idempotency_key) = ("ep".into(), "br".into(), "k".into());
        let req = ReportRequest {
            source_id: "src-1".into(),
            source_session: 77,
            batch_seq: 9,
            events: vec![
                // stray time fields of the other kind are dropped on both paths
                event("a", 1, 1, 3, (NOW - 1000, NOW, 77)),
                with_ids,
                event("a", 5, 2, 1 << 40, (5, 6, NOW)),
                event("c", 2, 1, 0, (NOW, NOW, 0)),
                event("b", 3, 1, 8, (NOW - 5, NOW - 1, 0)),
            ],
        };
        let got = direct(&req).unwrap();
        assert_eq!(got.iter().map(|(k, _)| k.as_str()).collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(got, via_domain(&req).unwrap());
    }

    /// A collector's batch: thousands of projects, each seen two or three
    /// times (past the linear search's limit, through the hash index).
    #[test]
    fn groups_a_collectors_batch_of_thousands_of_projects() {
        let events: Vec<_> = (0..5000)
            .map(|i| event(&format!("p{}", (i * 7) % 2000), 1 + i % 4, 1, 1 + i as u64, (NOW - 1000, NOW, 0)))
            .collect();
        let req = ReportRequest { source_id: "collector".into(), source_session: 1, batch_seq: 1, events };
        let got = direct(&req).unwrap();
        assert_eq!(got.len(), 2000);
        assert_eq!(got[1].0, "p7", "in order of first sight");
        assert_eq!(got, via_domain(&req).unwrap());
        let batches = validate(&Limits::default(), req, NOW).unwrap();
        assert_eq!(batches.iter().map(|b| b.events.len()).sum::<usize>(), 5000);
        assert!(batches.iter().all(|b| b.events.len() == 2 || b.events.len() == 3));
    }

    /// A collector's Report: one record per partition, every batch in the
    /// partition of its project, read back by `decode_record` as it was.
    #[test]
    fn packs_a_reports_projects_per_partition() {
        let events: Vec<_> = (0..2000)
            .map(|i| event(&format!("p{}", i % 1000), 1 + i % 4, 1, 1 + i as u64, (NOW - 1000, NOW, 0)))
            .collect();
        let req = ReportRequest { source_id: "collector".into(), source_session: 1, batch_seq: 4, events };
        let batches = validate(&Limits::default(), req, NOW).unwrap();
        let records = kafka_records(batches.clone(), 8);
        assert_eq!(records.iter().map(|r| r.partition).collect::<Vec<_>>(), (0..8).collect::<Vec<_>>());
        assert!(records.iter().all(|r| r.key == "collector"));
        let mut back = read_back(&records, 8).unwrap();
        let mut want: Vec<_> = batches.iter().map(|b| crate::decode_batch(&b.encode_to_vec()).unwrap()).collect();
        let order = |b: &meter_core::Batch| b.project_id.to_string();
        back.sort_by_key(order);
        want.sort_by_key(order);
        assert_eq!(back, want);
        assert_eq!(kafka_records(Vec::new(), 8), Vec::new());
    }

    /// A Report's batches share their source fields, written once per
    /// record; batches that do not (never one Report's) keep their own.
    #[test]
    fn shared_source_fields_go_once_into_each_records_head() {
        let events: Vec<_> = (0..40).map(|i| event(&format!("p{i}"), 1, 1, 1, (NOW - 1000, NOW, 0))).collect();
        let req = ReportRequest { source_id: "collector".into(), source_session: 3, batch_seq: 4, events };
        let batches = validate(&Limits::default(), req, NOW).unwrap();
        for r in kafka_records(batches.clone(), 4) {
            let wire = v1::EventsRecord::decode(&r.value[..]).unwrap();
            let head = wire.head.expect("a head");
            assert_eq!((head.source_id.as_str(), head.batch_seq, head.source_session), ("collector", 4, 3));
            assert_eq!((head.ingested_unix_ms, head.project_id.as_str(), head.events.len()), (NOW, "", 0));
            assert!(wire.batches.iter().all(|b| b.source_id.is_empty() && b.batch_seq == 0 && b.source_session == 0));
        }
        let mut mixed = batches.clone();
        mixed[7].source_session = 9;
        let records = kafka_records(mixed.clone(), 4);
        assert!(records.iter().all(|r| v1::EventsRecord::decode(&r.value[..]).unwrap().head.is_none()));
        let mut back = read_back(&records, 4).unwrap();
        back.sort_by_key(|b| b.project_id.to_string());
        let mut want: Vec<_> = mixed.iter().map(|b| crate::decode_batch(&b.encode_to_vec()).unwrap()).collect();
        want.sort_by_key(|b| b.project_id.to_string());
        assert_eq!(back, want);
    }

    /// Past `RECORD_BYTES` a partition's batches go to more than one
    /// record; a batch larger than that alone goes whole.
    #[test]
    fn splits_a_partition_past_the_record_size() {
        let key = "k".repeat(200);
        let events: Vec<_> = (0..10_000)
            .map(|i| v1::UsageEvent {
                idempotency_key: format!("{key}{i}"),
                ..event(&format!("p{}", i % 2), 1, 1, 1, (NOW - 1000, NOW, 0))
            })
            .collect();
        let req = ReportRequest { source_id: "s".into(), source_session: 1, batch_seq: 1, events };
        let batches = validate(&Limits::default(), req, NOW).unwrap();
        let records = kafka_records(batches, 1);
        assert_eq!(records.len(), 2, "two batches of ~1 MiB each, one record each");
        assert!(records.iter().all(|r| crate::decode_record(&r.value).unwrap().len() == 1));
        let small: Vec<_> = (0..3000)
            .map(|i| v1::UsageEvent {
                idempotency_key: format!("{key}{i}"),
                ..event(&format!("p{i}"), 1, 1, 1, (NOW - 1000, NOW, 0))
            })
            .collect();
        let req = ReportRequest { source_id: "s".into(), source_session: 1, batch_seq: 2, events: small };
        let records = kafka_records(validate(&Limits::default(), req, NOW).unwrap(), 1);
        assert!(records.len() >= 2, "{} records", records.len());
        assert!(
            records.iter().all(|r| r.value.len() <= RECORD_BYTES),
            "{:?}",
            records.iter().map(|r| r.value.len()).collect::<Vec<_>>()
        );
        assert_eq!(records.iter().map(|r| crate::decode_record(&r.value).unwrap().len()).sum::<usize>(), 3000);
    }

    #[test]
    fn refuses_as_the_domain_path_does() {
        let good = event("a", 1, 1, 3, (NOW - 1000, NOW, 0));
        let cases = [
            ("", vec![good.clone()]),
            ("src", vec![good.clone(), event("", 1, 1, 3, (NOW - 1000, NOW, 0))]),
            ("src", vec![good.clone(), event("a b", 9, 1, 3, (NOW - 1000, NOW, 0))]),
            ("src", vec![good.clone(), event("a", 9, 1, 3, (NOW - 1000, NOW, 0))]),
            ("src", vec![event("a", 1, 7, 3, (NOW - 1000, NOW, 0))]),
            ("src", vec![good.clone(), event("a", 1, 2, 3, (0, 0, NOW))]),
            ("src", vec![good.clone(), event("a", 1, 1, u64::MAX, (NOW - 1000, NOW, 0))]),
            ("src", vec![good.clone(), event("z", 1, 1, 3, (NOW - 1000, NOW + 3_600_000, 0))]),
            ("src", vec![good.clone(), v1::UsageEvent { idempotency_key: "k".repeat(257), ..good.clone() }]),
        ];
        for (source, events) in cases {
            let req = ReportRequest { source_id: source.into(), source_session: 1, batch_seq: 1, events };
            let err = direct(&req).unwrap_err();
            assert_eq!(err, via_domain(&req).unwrap_err(), "{err}");
        }
        let l = Limits { max_events_per_batch: 1, ..Limits::default() };
        let req = ReportRequest {
            source_id: "s".into(),
            source_session: 1,
            batch_seq: 1,
            events: vec![event("a", 1, 1, 1, (NOW, NOW, 0)); 2],
        };
        assert_eq!(validate(&l, req.clone(), NOW).unwrap_err().field, "events");
        let no_session = ReportRequest { source_session: 0, ..req };
        let e = validate(&Limits::default(), no_session, NOW).unwrap_err();
        assert_eq!(e.field, "source_session", "{e}");
        assert!(e.to_string().starts_with("source_session: is 0; a source draws a random non-zero session"), "{e}");
    }

    proptest! {
        /// Any mix of projects, metrics, kinds and times: the same records
        /// or the same error as the domain path.
        #[test]
        fn agrees_with_the_domain_path(events in mixed_events(NOW)) {
            let req = ReportRequest { source_id: "s".into(), source_session: 5, batch_seq: 3, events };
            prop_assert_eq!(direct(&req), via_domain(&req));
        }
    }
}
