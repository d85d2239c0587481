//! Calls handed over in process, without I/O: the enforcer gives the
//! actuator next to it the calls of each transaction once it committed, so
//! a suspension does not wait for the actions topic to deliver its record
//! (the enforcer's commit, then the actuator's read_committed fetch: ~15 ms
//! more on average, and most of the hop's tail, at full load). The record
//! stays the durable copy: its offset is committed only once the call is
//! done, whichever way it came, so a crash repeats a call (same key) and
//! never drops one.
//!
//! Each call comes both ways, in either order, and is made once: a call
//! handed over first is made at once and its record, when read, waits for
//! it; a record read first is called as before and the late handover is
//! dropped. Entries whose other half never comes (the record went to
//! another instance's actuator after a rebalance) are forgotten after a
//! while; the worst that does is a second call with the same idempotency
//! key, which the control plane recognises.

use std::collections::HashMap;
use std::time::{Duration, Instant};

/// How long a record read before its handover is remembered: the handover
/// is sent as soon as the transaction committed, before any record of it
/// can be read, so it never comes later than this.
const READ_KEEP: Duration = Duration::from_secs(60);
/// How long a handed call waits for its record (an actuator far behind).
const HANDED_KEEP: Duration = Duration::from_secs(600);

/// What to do with a record read from the actions topic.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum OnRecord<W> {
    /// Not handed over: make the call.
    Call,
    /// Handed over and made (or being made): wait for it with `W`.
    Await(W),
}

/// The calls seen one way and not yet the other, by idempotency key.
#[derive(Debug)]
pub(crate) struct Handoffs<W> {
    handed: HashMap<String, (W, Instant)>,
    read: HashMap<String, Instant>,
}

impl<W> Default for Handoffs<W> {
    fn default() -> Self {
        Handoffs { handed: HashMap::new(), read: HashMap::new() }
    }
}

impl<W> Handoffs<W> {
    /// A call handed over; true when it is to be made now (false: its
    /// record was read first and its call is already queued).
    pub(crate) fn handed(&mut self, key: &str, waiter: W, now: Instant) -> bool {
        if self.read.remove(key).is_some() {
            return false;
        }
        self.handed.insert(key.to_owned(), (waiter, now));
        true
    }

    /// A call's record read.
    pub(crate) fn read(&mut self, key: &str, now: Instant) -> OnRecord<W> {
        match self.handed.remove(key) {
            Some((waiter, _)) => OnRecord::Await(waiter),
            None => {
                self.read.insert(key.to_owned(), now);
                OnRecord::Call
            }
        }
    }

    /// Forgets the entries whose other half is not coming.
    pub(crate) fn prune(&mut self, now: Instant) {
        self.read.retain(|_, at| now.duration_since(*at) < READ_KEEP);
        self.handed.retain(|_, (_, at)| now.duration_since(*at) < HANDED_KEEP);
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.handed.len() + self.read.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_handed_call_is_made_once_and_its_record_waits_for_it() {
        let (mut h, t) = (Handoffs::default(), Instant::now());
        assert!(h.handed("suspend.p1.1", 7, t));
        assert_eq!(h.read("suspend.p1.1", t), OnRecord::Await(7));
        assert_eq!(h.len(), 0, "both halves seen: nothing left");
        assert_eq!(h.read("suspend.p1.1", t), OnRecord::Call, "a record read again (a replay) is called again");
    }

    #[test]
    fn a_record_read_first_is_called_and_its_late_handover_dropped() {
        let (mut h, t) = (Handoffs::default(), Instant::now());
        assert_eq!(h.read("resume.p2.3", t), OnRecord::<u8>::Call);
        assert!(!h.handed("resume.p2.3", 1, t));
        assert_eq!(h.len(), 0);
    }

    #[test]
    fn halves_that_never_come_are_forgotten() {
        let (mut h, t) = (Handoffs::default(), Instant::now());
        assert!(h.handed("a", 1, t));
        assert_eq!(h.read("b", t), OnRecord::Call);
        h.prune(t + READ_KEEP);
        assert_eq!(h.len(), 1, "the read one goes first");
        h.prune(t + HANDED_KEEP);
        assert_eq!(h.len(), 0);
        assert_eq!(h.read("a", t), OnRecord::Call, "a handed call forgotten: its record calls again (same key)");
    }
}
