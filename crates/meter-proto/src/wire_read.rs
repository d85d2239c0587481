//! A cursor over protobuf bytes for the hand-written readers of the common
//! records and requests (`events_read`, `report_read`): every method gives
//! `None` where prost would refuse the bytes or where the reader does not
//! go (group wire types), and the caller then leaves them to prost.

/// Protobuf wire types (the group types, never written here, are not read).
const VARINT: u8 = 0;
const FIXED64: u8 = 1;
const LEN: u8 = 2;
const FIXED32: u8 = 5;

/// A cursor over protobuf bytes; `None` is "not the common case".
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.buf.is_empty()
    }

    /// How many bytes are left.
    pub(crate) fn remaining(&self) -> usize {
        self.buf.len()
    }

    pub(crate) fn varint(&mut self) -> Option<u64> {
        // Keys, lengths and small values: one byte.
        let (&first, rest) = self.buf.split_first()?;
        if first < 0x80 {
            self.buf = rest;
            return Some(u64::from(first));
        }
        let mut value = u64::from(first & 0x7f);
        for (i, &b) in rest.iter().enumerate().take(9) {
            // The tenth byte holds the 64th bit only.
            if i == 8 && b > 1 {
                return None;
            }
            value |= u64::from(b & 0x7f) << (7 * (i + 1));
            if b < 0x80 {
                self.buf = &rest[i + 1..];
                return Some(value);
            }
        }
        None
    }

    /// A field's number and wire type. A key over 32 bits is invalid, as
    /// prost (and the protobuf spec) reads it, even when its field number
    /// alone would fit.
    pub(crate) fn key(&mut self) -> Option<(u32, u8)> {
        let key = u32::try_from(self.varint()?).ok()?;
        let tag = key >> 3;
        (tag > 0).then_some((tag, (key & 7) as u8))
    }

    pub(crate) fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.buf.len() {
            return None;
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Some(head)
    }

    /// A length-delimited field's bytes.
    pub(crate) fn bytes(&mut self) -> Option<&'a [u8]> {
        let n = usize::try_from(self.varint()?).ok()?;
        self.take(n)
    }

    pub(crate) fn str(&mut self) -> Option<&'a str> {
        std::str::from_utf8(self.bytes()?).ok()
    }

    /// Passes over a field of `wire` type.
    pub(crate) fn skip(&mut self, wire: u8) -> Option<()> {
        match wire {
            VARINT => self.varint().map(drop),
            FIXED64 => self.take(8).map(drop),
            LEN => self.bytes().map(drop),
            FIXED32 => self.take(4).map(drop),
            _ => None,
        }
    }

    /// A varint field's value, if the field is a varint.
    pub(crate) fn varint_field(&mut self, wire: u8) -> Option<u64> {
        (wire == VARINT).then(|| self.varint())?
    }

    /// A length-delimited field's bytes, if the field is one.
    pub(crate) fn bytes_field(&mut self, wire: u8) -> Option<&'a [u8]> {
        (wire == LEN).then(|| self.bytes())?
    }

    pub(crate) fn str_field(&mut self, wire: u8) -> Option<&'a str> {
        (wire == LEN).then(|| self.str())?
    }
}
