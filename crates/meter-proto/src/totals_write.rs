//! Writing a project's `ProjectTotals` straight from its state, without
//! prost's wire structs: the aggregator writes every state a transaction
//! changed, and `state_to_wire` copies each into a `String` and a `Vec` per
//! field (a dedup window per source, and a collector's project has one per
//! collector) only for prost to walk them twice and free them (~8 % of a
//! loaded aggregator's CPU in the collectors' shape; issue 19). The bytes
//! are prost's encoding of `state_to_wire`'s message (`wire_write`'s
//! layout), which the tests hold them to.

use meter_core::ProjectState;

use crate::wire_write::{encode_varint, key, put_str, put_varint, str_len, varint_len, LEN, VARINT};

/// A field of a nested message.
enum Field<'a> {
    Varint(u64),
    Str(&'a str),
}

/// A nested message of `fields` (numbered below 16) as field `tag`.
fn put_message(out: &mut Vec<u8>, tag: u8, fields: &[(u8, Field<'_>)]) {
    let len: usize = fields
        .iter()
        .map(|(_, f)| match f {
            Field::Varint(v) => varint_len(*v),
            Field::Str(s) => str_len(s),
        })
        .sum();
    out.push(key(tag, LEN));
    encode_varint(len as u64, out);
    for (t, f) in fields {
        match f {
            Field::Varint(v) => put_varint(out, *t, *v),
            Field::Str(s) => put_str(out, *t, s),
        }
    }
}

/// Appends the `ProjectTotals` of `s` (as `state_to_wire(s, now_ms)` with
/// `events_next_offset` set) to `out`.
pub(crate) fn write_state(s: &ProjectState, now_ms: i64, events_next_offset: i64, out: &mut Vec<u8>) {
    use Field::{Str, Varint};
    put_str(out, 1, s.project_id.as_str());
    for c in s.cycles.values() {
        let [active, compute, written, transfer] = c.values;
        let (start_s, end_s) = ((c.cycle.start_ms / 1000) as u64, (c.cycle.end_ms / 1000) as u64);
        let fields = [
            (1, Varint(start_s)),
            (2, Varint(end_s)),
            (3, Varint(active)),
            (4, Varint(compute)),
            (5, Varint(written)),
            (6, Varint(transfer)),
        ];
        put_message(out, 2, &fields);
    }
    for (id, sessions) in s.sources.iter() {
        for (&session, e) in sessions.iter() {
            let fields = [
                (1, Str(id)),
                (2, Varint(e.window.high)),
                (3, Varint(e.window.mask)),
                (4, Varint(e.last_seen_ms as u64)),
                (5, Varint(session)),
            ];
            put_message(out, 5, &fields);
        }
    }
    put_varint(out, 6, s.version);
    put_varint(out, 7, now_ms as u64);
    put_varint(out, 8, s.last_ingested_ms as u64);
    put_varint(out, 9, events_next_offset as u64);
    for (id, r) in s.branches.iter() {
        put_message(out, 11, &[(1, Str(id)), (2, Varint(r.value)), (3, Varint(r.time_ms as u64))]);
    }
    for r in &s.held.rows {
        let fields = [
            // int32: sign-extended to 64 bits, as prost writes it.
            (1, Varint(i64::from(r.metric) as u64)),
            (2, Varint(u64::from(r.hour_unix_s))),
            (3, Str(&r.branch)),
            (4, Varint(r.value)),
            (5, Varint(r.last_value)),
            (6, Varint(r.last_time_ms as u64)),
        ];
        put_message(out, 14, &fields);
    }
    put_varint(out, 15, s.held.key);
    // Field 16: a two-byte key.
    if s.held.since_ms != 0 {
        encode_varint(u64::from(16u32 << 3 | u32::from(VARINT)), out);
        encode_varint(s.held.since_ms as u64, out);
    }
}

#[cfg(test)]
mod tests {
    use meter_core::aggregate::{CycleCounters, Reading, SourceEntry};
    use meter_core::held::{HeldRow, HeldRows};
    use meter_core::{Cycle, ProjectId, SeqWindow};
    use prost::Message;

    use super::*;
    use crate::packed::{own_record, packed_records, PACKED_BYTES};
    use crate::test_reports::NOW;
    use crate::{state_to_wire, v1};

    const MONTH_MS: i64 = 2_592_000_000;

    /// States of every shape: cycles, sources with several sessions,
    /// branches (one unnamed), held rows (a negative metric code, an empty
    /// row), negative times, zeros left out.
    fn state(i: u64) -> ProjectState {
        let mut s = ProjectState::new(ProjectId::new(format!("proj-{i}")).expect("valid"));
        for c in 0..(i % 3) as i64 {
            let start = NOW - c * MONTH_MS;
            let cycle = Cycle { start_ms: start, end_ms: start + MONTH_MS };
            s.cycles.insert(start, CycleCounters { cycle, values: [i, 0, 1 << 40, u64::MAX] });
        }
        for src in 0..i % 4 {
            let entry = |k: u64| SourceEntry {
                window: SeqWindow { high: i + k, mask: u64::MAX >> k },
                last_seen_ms: NOW + k as i64,
            };
            s.sources.insert(format!("collector-{src}"), (0..2).map(|k| (k * 7 + src, entry(k))).collect());
        }
        if i.is_multiple_of(2) {
            s.branches.insert(format!("br-{i}"), Reading { value: i * 1000, time_ms: -5 });
            s.branches.insert(String::new(), Reading { value: 0, time_ms: 0 });
        }
        s.version = i * 3;
        s.last_ingested_ms = if i.is_multiple_of(5) { 0 } else { NOW + 123 };
        if i % 3 == 1 {
            let row = |metric, branch: &str, value| HeldRow {
                metric,
                hour_unix_s: if value == 0 { 0 } else { (NOW / 1000) as u32 },
                branch: branch.into(),
                value,
                last_value: value / 2,
                last_time_ms: -(value as i64),
            };
            s.held = HeldRows { key: 41 + i, since_ms: NOW, rows: vec![row(-3, "dev", 9), row(2, "", 0)] };
        }
        s
    }

    #[test]
    fn a_state_is_written_as_prost_writes_its_wire_message() {
        for i in 0..24 {
            let s = state(i);
            for (now, next) in [(NOW + 999, 0), (0, 77), (5, -1)] {
                let mut wire = state_to_wire(&s, now);
                wire.events_next_offset = next;
                let mut written = Vec::new();
                write_state(&s, now, next, &mut written);
                assert_eq!(written, wire.encode_to_vec(), "state {i}");
                assert_eq!(own_record(&s, next, now), written);
            }
        }
    }

    #[test]
    fn packed_records_are_prost_s_packed_messages_split_under_the_bound() {
        let states: Vec<ProjectState> = (0..3000).map(state).collect();
        let packed = |states: &[ProjectState], next| v1::ProjectTotals {
            events_next_offset: next,
            packed: states.iter().map(|s| state_to_wire(s, 99)).collect(),
            ..Default::default()
        };
        let records = packed_records(&states, 1234, 99);
        assert!(records.len() > 1, "3000 states are more than one record");
        let mut first = 0;
        for (n, r) in records.iter().enumerate() {
            let part = &states[first..first + r.projects.len()];
            assert_eq!(r.id, (1234, n as u32));
            assert_eq!(r.value, packed(part, 1234).encode_to_vec(), "record {n}");
            assert_eq!(r.projects, part.iter().map(|s| s.project_id.as_str().to_owned()).collect::<Vec<_>>());
            assert!(r.value.len() <= PACKED_BYTES + 16, "record {n}: {} bytes", r.value.len());
            first += r.projects.len();
        }
        assert_eq!(first, states.len());
        assert_eq!(packed_records(&states[..2], 0, 99)[0].value, packed(&states[..2], 0).encode_to_vec());
        assert!(packed_records(&states[..0], 5, 99).is_empty());
    }
}
