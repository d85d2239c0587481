//! Recognising retried batches: a sliding window over each source's batch
//! sequence numbers.

/// How many batches below the highest one are remembered. A source must not
/// retry a batch after sending this many newer ones (see docs/exactness.md).
pub const WINDOW: u64 = 64;

/// The verdict on one `(source, batch_seq)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqVerdict {
    /// Never seen: count it.
    New,
    /// Seen before: a retry, drop it.
    Duplicate,
    /// Older than the window: cannot tell, so it is dropped and counted as such.
    TooOld,
}

/// The batches seen from one source (for one project).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqWindow {
    /// Highest sequence number seen.
    pub high: u64,
    /// Bit `i` set: `high - 1 - i` was seen.
    pub mask: u64,
}

impl SeqWindow {
    /// A window that has seen exactly `seq`.
    pub fn first(seq: u64) -> Self {
        SeqWindow { high: seq, mask: 0 }
    }

    /// Judges `seq` and, when new, records it.
    pub fn observe(&mut self, seq: u64) -> SeqVerdict {
        if seq > self.high {
            let shift = seq - self.high;
            self.mask = if shift > WINDOW {
                0
            } else {
                // The old high becomes bit `shift - 1`.
                let moved = if shift == WINDOW { 0 } else { self.mask << shift };
                moved | (1u64 << (shift - 1))
            };
            self.high = seq;
            return SeqVerdict::New;
        }
        if seq == self.high {
            return SeqVerdict::Duplicate;
        }
        let bit = self.high - seq - 1;
        if bit >= WINDOW {
            return SeqVerdict::TooOld;
        }
        if self.mask & (1 << bit) != 0 {
            SeqVerdict::Duplicate
        } else {
            self.mask |= 1 << bit;
            SeqVerdict::New
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    #[test]
    fn retries_are_duplicates() {
        let mut w = SeqWindow::first(10);
        assert_eq!(w.observe(10), SeqVerdict::Duplicate);
        assert_eq!(w.observe(12), SeqVerdict::New);
        assert_eq!(w.observe(11), SeqVerdict::New);
        assert_eq!(w.observe(11), SeqVerdict::Duplicate);
        assert_eq!(w.observe(10), SeqVerdict::Duplicate);
        assert_eq!(w.observe(12 + 100), SeqVerdict::New);
        assert_eq!(w.observe(12), SeqVerdict::TooOld);
    }

    proptest! {
        /// Against a model that remembers everything: within the window the
        /// verdicts agree exactly; outside it, nothing is ever counted twice.
        #[test]
        fn agrees_with_a_perfect_memory(seqs in proptest::collection::vec(0u64..300, 1..400)) {
            let mut w = SeqWindow::first(seqs[0]);
            let mut seen: HashSet<u64> = HashSet::from([seqs[0]]);
            for &s in &seqs[1..] {
                let high_before = w.high;
                let v = w.observe(s);
                let truth_new = !seen.contains(&s);
                if s + WINDOW >= high_before {
                    prop_assert_eq!(v == SeqVerdict::New, truth_new, "seq {} high {}", s, high_before);
                } else {
                    prop_assert_eq!(v, SeqVerdict::TooOld);
                }
                if v == SeqVerdict::New {
                    seen.insert(s);
                }
            }
        }
    }
}
