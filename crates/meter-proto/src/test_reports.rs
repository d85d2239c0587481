//! Test fixtures shared by the readers' tests (`events_read`,
//! `report_read`, `totals_read`): a collector's Report, byte mangling and
//! fields written one by one.

use proptest::prelude::*;

use crate::v1::{Kind, Metric, ReportRequest, UsageEvent};

/// The time the fixtures are valid at.
pub(crate) const NOW: i64 = 1_764_547_200_000;

/// A collector's Report over `projects` projects, with branch ids, storage
/// readings, endpoint ids and keys on some events, and stray time fields of
/// the other kind on some (which the records drop).
pub(crate) fn report(projects: usize, events: usize) -> ReportRequest {
    let events = (0..events)
        .map(|i| {
            let storage = i % 7 == 0;
            UsageEvent {
                project_id: format!("proj-{}", (i * 13) % projects),
                metric: if storage { Metric::LogicalSizeBytes } else { Metric::WrittenDataBytes } as i32,
                kind: if storage { Kind::Absolute } else { Kind::Incremental } as i32,
                value: 1 + (i as u64 * 977) % 5000,
                start_unix_ms: NOW - 60_000,
                end_unix_ms: if storage { 0 } else { NOW },
                time_unix_ms: if storage || i % 3 == 0 { NOW - 1 } else { 0 },
                branch_id: if i % 5 == 0 { format!("br-{i}") } else { String::new() },
                endpoint_id: if i % 3 == 0 { "ep-1".into() } else { String::new() },
                idempotency_key: if i % 4 == 0 { format!("k{i}") } else { String::new() },
            }
        })
        .collect();
    ReportRequest { source_id: "collector-1".into(), source_session: 77, batch_seq: 5, events }
}

/// A wire event: its project, metric and kind codes, value and (start, end,
/// time) fields.
pub(crate) fn event(project: &str, metric: i32, kind: i32, value: u64, times: (i64, i64, i64)) -> UsageEvent {
    UsageEvent {
        project_id: project.into(),
        metric,
        kind,
        value,
        start_unix_ms: times.0,
        end_unix_ms: times.1,
        time_unix_ms: times.2,
        ..Default::default()
    }
}

/// Up to 40 events of projects (some empty or invalid), metric and kind
/// codes (some unknown), values and times around `now`: valid and invalid
/// mixed.
pub(crate) fn mixed_events(now: i64) -> impl Strategy<Value = Vec<UsageEvent>> {
    let event_at = move |(p, m, k, v, a, b, c): (usize, i32, i32, u64, i64, i64, i64)| {
        let projects = ["p0", "p1", "p2", "p3", "", "bad id"];
        event(projects[p], m, k, v, (now + a, now + b, now + c * 1000))
    };
    let one = (0..6usize, 0..7i32, 0..4i32, 0..(1u64 << 51), -3_000i64..3_000, -3_000i64..3_000, -3_000i64..3_000);
    proptest::collection::vec(one.prop_map(event_at), 0..40)
}

/// Byte edits for `mangle`: where, which byte, and how (replace, insert,
/// truncate).
pub(crate) fn edits() -> impl Strategy<Value = Vec<(prop::sample::Index, u8, u8)>> {
    proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..3), 1..4)
}

/// `bytes` with `edits` applied, in order.
pub(crate) fn mangle(mut bytes: Vec<u8>, edits: Vec<(prop::sample::Index, u8, u8)>) -> Vec<u8> {
    for (at, byte, how) in edits {
        if bytes.is_empty() {
            break;
        }
        let i = at.index(bytes.len());
        match how {
            0 => bytes[i] = byte,
            1 => bytes.insert(i, byte),
            _ => bytes.truncate(i),
        }
    }
    bytes
}

/// Appends a length-delimited field, for records built field by field.
pub(crate) fn len_field(buf: &mut Vec<u8>, tag: u32, bytes: &[u8]) {
    prost::encoding::encode_key(tag, prost::encoding::WireType::LengthDelimited, buf);
    prost::encoding::encode_varint(bytes.len() as u64, buf);
    buf.extend_from_slice(bytes);
}

/// Appends a varint field.
pub(crate) fn varint_field(buf: &mut Vec<u8>, tag: u32, v: u64) {
    prost::encoding::encode_key(tag, prost::encoding::WireType::Varint, buf);
    prost::encoding::encode_varint(v, buf);
}
