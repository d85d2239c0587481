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

const TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// CRC-32 (polynomial 0x04C11DB7 reflected, init and final xor 0xFFFFFFFF).
pub fn crc32(bytes: &[u8]) -> u32 {
    !bytes.iter().fold(!0u32, |c, &b| TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8))
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
