//! Writing protobuf fields by hand, for the writers of hot records
//! (`report_read`'s `usage.events` records, `rows_write`'s `usage.rows`
//! records): fields numbered below 16 (one-byte keys), in prost's proto3
//! layout (a field equal to its default is not written), into a buffer
//! whose capacity the caller reserved from the lengths given here. Each
//! writer's tests hold its bytes equal to prost's. Public for the
//! benchmark's load generator, which writes its Reports this way too.

use prost::encoding::encoded_len_varint;

pub const VARINT: u8 = 0;
pub const LEN: u8 = 2;

/// A field's key, one byte for the fields numbered below 16 written here.
pub const fn key(tag: u8, wire: u8) -> u8 {
    (tag << 3) | wire
}

/// A proto3 string field's bytes (none when empty).
pub fn str_len(s: &str) -> usize {
    if s.is_empty() {
        0
    } else {
        1 + encoded_len_varint(s.len() as u64) + s.len()
    }
}

/// A proto3 varint field's bytes (none when 0).
pub fn varint_len(v: u64) -> usize {
    if v == 0 {
        0
    } else {
        1 + encoded_len_varint(v)
    }
}

/// A varint, byte by byte into `out` (whose capacity the caller reserved:
/// prost's generic writer was a tenth of ingest's CPU in `report_read`).
pub fn encode_varint(mut v: u64, out: &mut Vec<u8>) {
    while v >= 0x80 {
        out.push(v as u8 | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// A proto3 string field (nothing when empty).
pub fn put_str(out: &mut Vec<u8>, tag: u8, s: &str) {
    if !s.is_empty() {
        out.push(key(tag, LEN));
        encode_varint(s.len() as u64, out);
        out.extend_from_slice(s.as_bytes());
    }
}

/// A proto3 varint field (nothing when 0).
pub fn put_varint(out: &mut Vec<u8>, tag: u8, v: u64) {
    if v != 0 {
        out.push(key(tag, VARINT));
        encode_varint(v, out);
    }
}
