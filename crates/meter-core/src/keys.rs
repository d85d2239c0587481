//! Idempotency keys: which keyed events a project has counted in one
//! billing cycle.
//!
//! A key is held as a 64-bit hash (the first 8 bytes of its SHA-256): 8
//! bytes on the wire, whatever the key's length. Two different keys of one
//! project and cycle collide with probability about n² / 2^65 for n keys
//! (3 in 10^8 at a million keys); a crafted collision needs a SHA-256
//! preimage search. The set is persisted in chunks of `CHUNK` hashes: the
//! chunk being filled is rewritten at each transaction that adds to it,
//! full chunks never again, so a transaction writes at most one partial
//! chunk per project and cycle however many keys the project already has.

use std::collections::{BTreeMap, HashSet};

use sha2::{Digest, Sha256};

use crate::BatchError;

/// Longest idempotency key accepted, in bytes.
pub const MAX_KEY_LEN: usize = 256;

/// Hashes per persisted chunk.
pub const CHUNK: usize = 512;

/// The hash a key is remembered by.
pub fn key_hash(key: &str) -> u64 {
    let d = Sha256::digest(key.as_bytes());
    u64::from_be_bytes(d[..8].try_into().expect("8 bytes"))
}

/// Checks a key's length (an empty key means "no key").
pub fn check_key(index: usize, key: &str) -> Result<(), BatchError> {
    if key.len() > MAX_KEY_LEN {
        return Err(BatchError::event(
            index,
            "idempotency_key",
            format!("is {} bytes long, the limit is {MAX_KEY_LEN}", key.len()),
        ));
    }
    Ok(())
}

/// The keys of one project counted in one cycle.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    seen: HashSet<u64>,
    /// Every chunk, in order; the last one may be partial.
    chunks: Vec<Vec<u64>>,
    /// Chunks from this index on changed since `mark_persisted`.
    dirty_from: Option<usize>,
}

impl KeySet {
    /// Rebuilds a set from its persisted chunks (index -> hashes). Missing
    /// indexes are tolerated (their hashes are simply absent).
    pub fn from_chunks(chunks: BTreeMap<u32, Vec<u64>>) -> Self {
        let mut set = KeySet::default();
        for (index, hashes) in chunks {
            let index = index as usize;
            set.seen.extend(hashes.iter().copied());
            if set.chunks.len() <= index {
                set.chunks.resize(index + 1, Vec::new());
            }
            set.chunks[index] = hashes;
        }
        set
    }

    /// Number of keys held.
    pub fn len(&self) -> usize {
        self.seen.len()
    }

    /// True when no key is held.
    pub fn is_empty(&self) -> bool {
        self.seen.is_empty()
    }

    /// Records `hash`; false when it was already there (a duplicate).
    pub fn insert(&mut self, hash: u64) -> bool {
        if !self.seen.insert(hash) {
            return false;
        }
        if self.chunks.last().is_none_or(|c| c.len() >= CHUNK) {
            self.chunks.push(Vec::with_capacity(CHUNK.min(16)));
        }
        let last = self.chunks.len() - 1;
        self.chunks[last].push(hash);
        self.dirty_from = Some(self.dirty_from.map_or(last, |d| d.min(last)));
        true
    }

    /// The chunks changed since the last `mark_persisted`: (index, hashes).
    pub fn dirty_chunks(&self) -> impl Iterator<Item = (u32, &[u64])> {
        let from = self.dirty_from.unwrap_or(self.chunks.len());
        self.chunks.iter().enumerate().skip(from).map(|(i, c)| (i as u32, c.as_slice()))
    }

    /// Number of chunks (what a tombstone pass must remove).
    pub fn chunk_count(&self) -> u32 {
        self.chunks.len() as u32
    }

    /// Everything is persisted.
    pub fn mark_persisted(&mut self) {
        self.dirty_from = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn hashes_are_stable() {
        // Persisted: must never change between versions.
        assert_eq!(key_hash("a"), 0xca97_8112_ca1b_bdca);
        assert_ne!(key_hash("k1"), key_hash("k2"));
    }

    #[test]
    fn long_keys_are_refused() {
        assert!(check_key(0, &"x".repeat(MAX_KEY_LEN)).is_ok());
        let e = check_key(3, &"x".repeat(MAX_KEY_LEN + 1)).unwrap_err();
        assert_eq!(e.to_string(), "events[3].idempotency_key: is 257 bytes long, the limit is 256");
    }

    #[test]
    fn only_the_filling_chunk_is_dirty_after_a_persist() {
        let mut s = KeySet::default();
        for h in 0..(CHUNK as u64 + 3) {
            assert!(s.insert(h));
        }
        assert!(!s.insert(5));
        assert_eq!(s.dirty_chunks().map(|(i, c)| (i, c.len())).collect::<Vec<_>>(), [(0, CHUNK), (1, 3)]);
        s.mark_persisted();
        assert_eq!(s.dirty_chunks().count(), 0);
        s.insert(10_000);
        assert_eq!(s.dirty_chunks().map(|(i, c)| (i, c.len())).collect::<Vec<_>>(), [(1, 4)]);
    }

    proptest! {
        /// Persisting the dirty chunks after any sequence of inserts and
        /// rebuilding from them gives the same set.
        #[test]
        fn chunks_rebuild_the_set(rounds in proptest::collection::vec(proptest::collection::vec(0u64..3000, 0..700), 1..6)) {
            let mut s = KeySet::default();
            let mut persisted: BTreeMap<u32, Vec<u64>> = BTreeMap::new();
            for round in rounds {
                for h in round {
                    s.insert(h);
                }
                for (i, c) in s.dirty_chunks() {
                    persisted.insert(i, c.to_vec());
                }
                s.mark_persisted();
            }
            let back = KeySet::from_chunks(persisted);
            prop_assert_eq!(&back.seen, &s.seen);
            prop_assert_eq!(&back.chunks, &s.chunks);
        }
    }
}
