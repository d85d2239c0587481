//! The retry policy: exponential backoff with full jitter, a cap, and a
//! server's hint honoured. Pure: the caller supplies the randomness and
//! does the waiting.

use std::time::Duration;

/// How long to wait between attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// The ceiling of the first wait.
    pub initial: Duration,
    /// The ceiling never exceeds this.
    pub max: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy { initial: Duration::from_millis(50), max: Duration::from_secs(5) }
    }
}

impl RetryPolicy {
    /// The wait before retry number `attempt` (0 for the first retry):
    /// uniform in `[ceiling / 2, ceiling]` where the ceiling doubles from
    /// `initial` up to `max` ("equal jitter": never a busy loop, and
    /// clients that failed together spread out). `unit` is a random number
    /// in `[0, 1)`. A server's `hint` (retry-after) is a floor.
    pub fn delay(&self, attempt: u32, unit: f64, hint: Option<Duration>) -> Duration {
        let ceiling = self.initial.saturating_mul(1u32 << attempt.min(20)).min(self.max);
        let jittered = ceiling.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0));
        hint.map_or(jittered, |h| h.max(jittered))
    }
}

/// The policy's progress for one operation: each `next` is the wait before
/// the next attempt.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: RetryPolicy,
    attempt: u32,
}

impl Backoff {
    /// A fresh operation under `policy`.
    pub fn new(policy: RetryPolicy) -> Self {
        Backoff { policy, attempt: 0 }
    }

    /// The wait before the next attempt (`unit`: random in `[0, 1)`).
    pub fn next(&mut self, unit: f64, hint: Option<Duration>) -> Duration {
        let d = self.policy.delay(self.attempt, unit, hint);
        self.attempt = self.attempt.saturating_add(1);
        d
    }

    /// Attempts that failed so far.
    pub fn failures(&self) -> u32 {
        self.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn doubles_up_to_the_cap_and_honours_hints() {
        let p = RetryPolicy { initial: Duration::from_millis(100), max: Duration::from_secs(1) };
        assert_eq!(p.delay(0, 1.0, None), Duration::from_millis(100));
        assert_eq!(p.delay(2, 1.0, None), Duration::from_millis(400));
        assert_eq!(p.delay(30, 1.0, None), Duration::from_secs(1));
        assert_eq!(p.delay(0, 0.0, None), Duration::from_millis(50));
        assert_eq!(p.delay(0, 0.0, Some(Duration::from_secs(3))), Duration::from_secs(3));
    }

    #[test]
    fn a_backoff_walks_the_policy() {
        let mut b = Backoff::new(RetryPolicy { initial: Duration::from_millis(10), max: Duration::from_millis(40) });
        let waits: Vec<Duration> = (0..4).map(|_| b.next(1.0, None)).collect();
        assert_eq!(waits, [10, 20, 40, 40].map(Duration::from_millis));
        assert_eq!(b.failures(), 4);
    }

    proptest! {
        #[test]
        fn stays_within_half_and_whole_ceiling(attempt in 0u32..100, unit in 0.0f64..1.0) {
            let p = RetryPolicy::default();
            let d = p.delay(attempt, unit, None);
            prop_assert!(d <= p.max);
            prop_assert!(d >= p.initial / 2);
        }
    }
}
