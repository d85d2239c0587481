//! Which partition of `usage.events` (and of `usage.totals`, aligned with
//! it) holds a project: where librdkafka's default partitioner puts a record
//! keyed by the project id, so that records written before ingest packed
//! a Report's projects per partition and records written after agree.

/// The partition of `project_id` among `partitions` (at least 1):
/// CRC-32 (IEEE, as librdkafka's `rd_crc32`) of the id, modulo the count
/// (`consistent_random` for a non-empty key).
pub fn partition_of(project_id: &str, partitions: i32) -> i32 {
    let n = partitions.max(1) as u32;
    (crc32(project_id.as_bytes()) % n) as i32
}

/// CRC-32 tables for slicing by 8 (the id of every project batch is
/// hashed: a byte at a time it was ~5 % of ingest's CPU in the collectors'
/// shape). `TABLES[0]` is the classic byte table; `TABLES[k][i]` is the CRC
/// of byte `i` followed by `k` zero bytes.
const TABLES: [[u32; 256]; 8] = {
    let mut t = [[0u32; 256]; 8];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[0][i] = c;
        i += 1;
    }
    let mut k = 1;
    while k < 8 {
        let mut i = 0;
        while i < 256 {
            let prev = t[k - 1][i];
            t[k][i] = (prev >> 8) ^ t[0][(prev & 0xff) as usize];
            i += 1;
        }
        k += 1;
    }
    t
};

/// CRC-32 (polynomial 0x04C11DB7 reflected, init and final xor 0xFFFFFFFF).
pub fn crc32(bytes: &[u8]) -> u32 {
    let t = &TABLES;
    let mut c = !0u32;
    let mut chunks = bytes.chunks_exact(8);
    for w in &mut chunks {
        let lo = u32::from_le_bytes([w[0], w[1], w[2], w[3]]) ^ c;
        let hi = u32::from_le_bytes([w[4], w[5], w[6], w[7]]);
        c = t[7][(lo & 0xff) as usize]
            ^ t[6][((lo >> 8) & 0xff) as usize]
            ^ t[5][((lo >> 16) & 0xff) as usize]
            ^ t[4][(lo >> 24) as usize]
            ^ t[3][(hi & 0xff) as usize]
            ^ t[2][((hi >> 8) & 0xff) as usize]
            ^ t[1][((hi >> 16) & 0xff) as usize]
            ^ t[0][(hi >> 24) as usize];
    }
    !chunks.remainder().iter().fold(c, |c, &b| t[0][((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32_check_value() {
        // The standard check value of CRC-32 (the "123456789" test vector).
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    /// The textbook CRC-32, a bit at a time.
    fn crc32_bitwise(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }

    #[test]
    fn sliced_crc32_is_the_bitwise_one_at_every_length() {
        let bytes: Vec<u8> = (0..200u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
        for len in 0..bytes.len() {
            for start in [0, 1, 3] {
                let s = &bytes[start.min(len)..len];
                assert_eq!(crc32(s), crc32_bitwise(s), "{len} bytes from {start}");
            }
        }
    }

    #[test]
    fn partitions_stay_in_range() {
        for i in 0..1_000 {
            let p = partition_of(&format!("project-{i}"), 8);
            assert!((0..8).contains(&p));
        }
        assert_eq!(partition_of("anything", 0), 0);
        assert_eq!(partition_of("anything", 1), 0);
    }
}
