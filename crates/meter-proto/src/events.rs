//! What a record of `usage.events` holds: usage batches, adjustments,
//! probes or cycle closes (see ingest.proto), and the records the api
//! writes to every partition (probes, closes).

use meter_core::adjust::Adjustment;
use meter_core::{Batch, UnixMs};
use prost::Message;

use crate::adjust::adjustment_from_wire;
use crate::batch::{batch_from_wire_after, DecodeError};
use crate::report::EventsRecord;
use crate::v1;

/// What one `usage.events` record holds.
#[derive(Debug, Default, PartialEq)]
pub struct Decoded {
    pub batches: Vec<Batch>,
    pub adjustments: Vec<Adjustment>,
    /// When each probe in it was written.
    pub probes: Vec<UnixMs>,
    /// The starts of the cycles it closes.
    pub closes: Vec<UnixMs>,
}

/// Decodes a record of `usage.events`: the batches, adjustments or probes of
/// an `EventsRecord`, or the one `ProjectBatch` of a record written before
/// 2026-12-01 (see `EventsRecord` in ingest.proto). All or nothing.
pub fn decode_events(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    crate::events_read::decode_common(bytes).map_or_else(|| decode_events_prost(bytes), Ok)
}

/// `decode_events` through prost's wire structs: every record
/// `events_read` leaves (malformed, invalid, legacy), and the reference
/// the tests hold `events_read` to.
pub fn decode_events_prost(bytes: &[u8]) -> Result<Decoded, DecodeError> {
    let packed = v1::EventsRecord::decode(bytes).map_err(DecodeError::Protobuf)?;
    if packed.batches.is_empty()
        && packed.adjustments.is_empty()
        && packed.probes.is_empty()
        && packed.closes.is_empty()
    {
        return Ok(Decoded { batches: vec![crate::decode_batch(bytes)?], ..Decoded::default() });
    }
    let mut batches = Vec::with_capacity(packed.batches.len());
    for mut w in packed.batches {
        if let Some(head) = packed.head.as_ref().filter(|_| w.source_id.is_empty()) {
            w.source_id.clone_from(&head.source_id);
            (w.batch_seq, w.ingested_unix_ms) = (head.batch_seq, head.ingested_unix_ms);
            (w.source_session, w.keyed_only) = (head.source_session, head.keyed_only);
        }
        let batch = batch_from_wire_after(w, batches.last())?;
        batches.push(batch);
    }
    Ok(Decoded {
        batches,
        adjustments: packed.adjustments.into_iter().map(adjustment_from_wire).collect::<Result<_, _>>()?,
        probes: packed.probes.iter().map(probe_ms).collect(),
        closes: packed.closes.iter().map(close_start_ms).collect(),
    })
}

/// When a probe was written.
pub(crate) fn probe_ms(p: &v1::Probe) -> UnixMs {
    p.written_unix_ms
}

/// The start of the cycle a close closes.
pub(crate) fn close_start_ms(c: &v1::CycleClose) -> UnixMs {
    c.cycle_start_unix_s * 1000
}

/// One probe record for each of `partitions` partitions, written at `now_ms`.
pub fn probe_records(now_ms: UnixMs, partitions: i32) -> Vec<EventsRecord> {
    let value = v1::EventsRecord { probes: vec![v1::Probe { written_unix_ms: now_ms }], ..Default::default() };
    to_every_partition("probe", &value, partitions)
}

/// One record closing the cycle that starts at `cycle_start_ms` for each
/// of `partitions` partitions.
pub fn close_records(cycle_start_ms: UnixMs, partitions: i32) -> Vec<EventsRecord> {
    let close = v1::CycleClose { cycle_start_unix_s: cycle_start_ms / 1000 };
    to_every_partition("close", &v1::EventsRecord { closes: vec![close], ..Default::default() }, partitions)
}

fn to_every_partition(key: &str, value: &v1::EventsRecord, partitions: i32) -> Vec<EventsRecord> {
    let value = value.encode_to_vec();
    (0..partitions).map(|partition| EventsRecord { partition, key: key.into(), value: value.clone() }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_probe_goes_to_every_partition_and_is_read_back_alone() {
        let records = probe_records(1_796_083_200_000, 3);
        assert_eq!(records.iter().map(|r| r.partition).collect::<Vec<_>>(), [0, 1, 2]);
        let d = decode_events(&records[2].value).expect("decodes");
        assert_eq!((d.batches.len(), d.adjustments.len(), d.probes), (0, 0, vec![1_796_083_200_000]));
        assert!(crate::decode_record(&records[0].value).expect("decodes").is_empty());
        let closes = close_records(1_793_491_200_000, 2);
        assert_eq!(decode_events(&closes[1].value).expect("decodes").closes, vec![1_793_491_200_000]);
    }

    fn wire_batch(source: &str, project: &str) -> v1::ProjectBatch {
        v1::ProjectBatch {
            source_id: source.into(),
            project_id: project.into(),
            source_session: 1,
            batch_seq: 1,
            ..Default::default()
        }
    }

    /// A record's batches share their source id (checked once), and a
    /// record whose batches name other sources is still read as written.
    #[test]
    fn every_batch_keeps_its_own_source_id() {
        let batches = vec![wire_batch("a", "p1"), wire_batch("a", "p2"), wire_batch("b", "p3"), wire_batch("a", "p4")];
        let record = v1::EventsRecord { batches, ..Default::default() }.encode_to_vec();
        let d = decode_events(&record).expect("decodes");
        let got: Vec<(&str, &str)> = d.batches.iter().map(|b| (b.source_id.as_str(), b.project_id.as_str())).collect();
        assert_eq!(got, [("a", "p1"), ("a", "p2"), ("b", "p3"), ("a", "p4")]);
        let bad = vec![wire_batch("a", "p1"), wire_batch("a b", "p2")];
        let record = v1::EventsRecord { batches: bad, ..Default::default() }.encode_to_vec();
        let e = decode_events(&record).expect_err("a bad source id after a good one");
        assert!(e.to_string().contains("source_id"), "{e}");
    }
}
