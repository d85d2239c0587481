//! A source's batch identity: `(source_id, session, batch_seq)`.

use rand::Rng;

/// What identifies the batches of one running source. A new process draws a
/// new session (see `ReportRequest` in ingest.proto): nothing has to be
/// kept across restarts for its batches to be counted exactly once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceIdentity {
    source_id: String,
    session: u64,
    next_seq: u64,
}

impl SourceIdentity {
    /// A fresh session of `source_id`: random, non-zero, `batch_seq` from 1.
    pub fn start(source_id: impl Into<String>) -> Self {
        SourceIdentity { source_id: source_id.into(), session: rand::rng().random::<u64>() | 1, next_seq: 1 }
    }

    /// The source id.
    pub fn source_id(&self) -> &str {
        &self.source_id
    }

    /// The session drawn at start.
    pub fn session(&self) -> u64 {
        self.session
    }

    /// The sequence number of the next batch, then advances it.
    pub fn next_seq(&mut self) -> u64 {
        let s = self.next_seq;
        self.next_seq += 1;
        s
    }

    /// A restart without memory: a new session, `batch_seq` from 1 again.
    pub fn restart(&mut self) {
        *self = SourceIdentity::start(std::mem::take(&mut self.source_id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_restart_draws_a_new_session_and_counts_from_one() {
        let mut id = SourceIdentity::start("node-a");
        assert_ne!(id.session(), 0);
        assert_eq!((id.next_seq(), id.next_seq()), (1, 2));
        let before = id.session();
        id.restart();
        assert_ne!(id.session(), before);
        assert_eq!(id.source_id(), "node-a");
        assert_eq!(id.next_seq(), 1);
    }
}
