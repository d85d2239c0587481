//! `usage.rows` records written from rows the writer borrows: the
//! aggregator writes its collapsed rows straight from its accumulators,
//! where each row was first copied into a `UsageRow` and then into a
//! prost `UsageRowRecord` (three strings allocated twice per row; issue
//! 19). The bytes are prost's (the tests hold them equal), and the load
//! role reads them with prost.

use prost::encoding::encoded_len_varint;

use crate::wire_write::{encode_varint, key, put_str, put_varint, str_len, varint_len, LEN};

/// One row of `usage_hourly` as a `UsageRowRecord` carries it, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RowRef<'a> {
    pub project_id: &'a str,
    /// `usage_hourly`'s Enum8 code.
    pub metric: i8,
    pub hour_unix_s: u32,
    pub source_id: &'a str,
    pub batch_seq: u64,
    pub value: u64,
    pub last_value: u64,
    pub last_time_unix_ms: i64,
    pub version: u64,
    pub branch_id: &'a str,
}

impl RowRef<'_> {
    /// `metric` as prost writes an `int32` (a negative one sign-extended).
    fn metric_varint(&self) -> u64 {
        i64::from(self.metric) as u64
    }

    fn encoded_len(&self) -> usize {
        str_len(self.project_id)
            + varint_len(self.metric_varint())
            + varint_len(u64::from(self.hour_unix_s))
            + str_len(self.source_id)
            + varint_len(self.batch_seq)
            + varint_len(self.value)
            + varint_len(self.last_value)
            + varint_len(self.last_time_unix_ms as u64)
            + varint_len(self.version)
            + str_len(self.branch_id)
    }

    /// The row as prost writes a `UsageRowRecord`, its fields in number order.
    fn write(&self, out: &mut Vec<u8>) {
        put_str(out, 1, self.project_id);
        put_varint(out, 2, self.metric_varint());
        put_varint(out, 3, u64::from(self.hour_unix_s));
        put_str(out, 4, self.source_id);
        put_varint(out, 5, self.batch_seq);
        put_varint(out, 6, self.value);
        put_varint(out, 7, self.last_value);
        put_varint(out, 8, self.last_time_unix_ms as u64);
        put_varint(out, 9, self.version);
        put_str(out, 10, self.branch_id);
    }
}

/// The `UsageRows` record holding `rows` and nothing else, as prost
/// writes it.
pub fn rows_record(rows: &[RowRef<'_>]) -> Vec<u8> {
    // Each row's length once: it sizes the record and prefixes the row.
    let lens: Vec<usize> = rows.iter().map(RowRef::encoded_len).collect();
    let mut out = Vec::with_capacity(lens.iter().map(|&n| 1 + encoded_len_varint(n as u64) + n).sum());
    for (r, &len) in rows.iter().zip(&lens) {
        out.push(key(1, LEN));
        encode_varint(len as u64, &mut out);
        r.write(&mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use prost::Message;

    use super::*;
    use crate::v1;

    fn wire(r: &RowRef<'_>) -> v1::UsageRowRecord {
        v1::UsageRowRecord {
            project_id: r.project_id.into(),
            metric: r.metric.into(),
            hour_unix_s: r.hour_unix_s,
            source_id: r.source_id.into(),
            batch_seq: r.batch_seq,
            value: r.value,
            last_value: r.last_value,
            last_time_unix_ms: r.last_time_unix_ms,
            version: r.version,
            branch_id: r.branch_id.into(),
        }
    }

    fn through_prost(rows: &[RowRef<'_>]) -> Vec<u8> {
        v1::UsageRows { rows: rows.iter().map(wire).collect(), ..Default::default() }.encode_to_vec()
    }

    fn row<'a>(project_id: &'a str, branch_id: &'a str, n: u64) -> RowRef<'a> {
        RowRef {
            project_id,
            metric: (n % 6) as i8 + 1,
            hour_unix_s: 1_764_500_400,
            source_id: "/p3",
            batch_seq: n,
            value: n * 1_000_003,
            last_value: n,
            last_time_unix_ms: 1_764_500_400_123,
            version: n,
            branch_id,
        }
    }

    #[test]
    fn rows_are_written_as_prost_writes_them() {
        let rows: Vec<RowRef<'_>> = (0..300).map(|n| row("proj-1", if n % 5 == 4 { "br-1" } else { "" }, n)).collect();
        assert_eq!(rows_record(&rows), through_prost(&rows));
        assert_eq!(rows_record(&[]), through_prost(&[]));
        // Every field at its default: an empty row, still a row.
        let empty = RowRef { metric: 0, hour_unix_s: 0, last_time_unix_ms: 0, ..row("", "", 0) };
        assert_eq!(rows_record(&[empty]), through_prost(&[empty]));
        assert_eq!(v1::UsageRows::decode(&*rows_record(&[empty])).expect("decodes").rows.len(), 1);
    }

    proptest! {
        #[test]
        fn any_rows_are_written_as_prost_writes_them(
            rows in proptest::collection::vec(
                ("[a-z0-9-]{0,140}", any::<i8>(), any::<u32>(), "[/a-z0-9]{0,20}", any::<u64>(), any::<u64>(),
                 any::<u64>(), any::<i64>(), any::<u64>(), "[a-z0-9-]{0,30}"),
                0..20,
            )
        ) {
            let rows: Vec<RowRef<'_>> = rows
                .iter()
                .map(|(p, m, h, s, b, v, lv, lt, ver, br)| RowRef {
                    project_id: p,
                    metric: *m,
                    hour_unix_s: *h,
                    source_id: s,
                    batch_seq: *b,
                    value: *v,
                    last_value: *lv,
                    last_time_unix_ms: *lt,
                    version: *ver,
                    branch_id: br,
                })
                .collect();
            prop_assert_eq!(rows_record(&rows), through_prost(&rows));
        }
    }
}
