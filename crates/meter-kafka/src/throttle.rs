//! Repeated Kafka trouble, written once per interval. librdkafka reports a
//! broker outage on every poll of every client (thousands of lines over a
//! 15 s outage of one broker); an operator needs the first line, then one
//! now and then saying it goes on, with how many were left out.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// One line per kind of trouble at most this often.
const EVERY: Duration = Duration::from_secs(30);

/// When each kind of trouble was last written, and the repeats left out since.
#[derive(Debug)]
pub(crate) struct Throttle {
    every: Duration,
    seen: HashMap<String, (Instant, u64)>,
}

impl Throttle {
    pub(crate) fn new(every: Duration) -> Self {
        Throttle { every, seen: HashMap::new() }
    }

    /// `Some(repeats left out since the last line)` when trouble of `kind`
    /// seen at `now` is to be written; `None` when it is a repeat to leave out.
    pub(crate) fn check(&mut self, kind: &str, now: Instant) -> Option<u64> {
        match self.seen.get_mut(kind) {
            Some((last, left_out)) if now.duration_since(*last) < self.every => {
                *left_out += 1;
                None
            }
            Some((last, left_out)) => {
                *last = now;
                Some(std::mem::take(left_out))
            }
            None => {
                self.seen.insert(kind.to_owned(), (now, 0));
                Some(0)
            }
        }
    }
}

/// The process's throttle: `Some(repeats left out)` when trouble of `kind`
/// is to be written now.
pub(crate) fn once_in_a_while(kind: &str) -> Option<u64> {
    static THROTTLE: OnceLock<Mutex<Throttle>> = OnceLock::new();
    let t = THROTTLE.get_or_init(|| Mutex::new(Throttle::new(EVERY)));
    t.lock().map_or(Some(0), |mut t| t.check(kind, Instant::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_of_a_kind_is_written_then_one_per_interval_with_the_repeats_counted() {
        let mut t = Throttle::new(Duration::from_secs(30));
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        assert_eq!(t.check("poll_error/load/AllBrokersDown", at(0)), Some(0));
        assert_eq!(t.check("poll_error/load/AllBrokersDown", at(1)), None);
        assert_eq!(t.check("poll_error/load/AllBrokersDown", at(29)), None);
        assert_eq!(t.check("poll_error/aggregator/AllBrokersDown", at(29)), Some(0), "another kind: its own");
        assert_eq!(t.check("poll_error/load/AllBrokersDown", at(31)), Some(2), "two left out");
        assert_eq!(t.check("poll_error/load/AllBrokersDown", at(62)), Some(0));
    }
}
