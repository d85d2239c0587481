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

/// A retry schedule over hours (webhook deliveries, as Svix and Stripe do):
/// attempt `i` is made `delays[i]` after attempt `i - 1` failed (the first
/// after `delays[0]`, usually 0); after the last, the operation has failed
/// for good. Each delay is jittered by up to a tenth either way, so
/// deliveries that failed together do not retry together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schedule {
    pub delays: Vec<Duration>,
}

impl Schedule {
    /// The wait before attempt number `attempt` (0-based), `None` when the
    /// schedule is exhausted. `unit`: random in `[0, 1)`; a server's `hint`
    /// (retry-after) is a floor.
    pub fn delay(&self, attempt: usize, unit: f64, hint: Option<Duration>) -> Option<Duration> {
        let base = *self.delays.get(attempt)?;
        let jittered = base.mul_f64(0.9 + 0.2 * unit.clamp(0.0, 1.0));
        Some(hint.map_or(jittered, |h| h.max(jittered)))
    }

    /// How many attempts it allows.
    pub fn attempts(&self) -> usize {
        self.delays.len()
    }
}

/// What to do after a call to a server that answered `status` (`None`:
/// no answer: a timeout or a transport error).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// 2xx.
    Done,
    /// No answer, 408, 429 (honour its `Retry-After`) or 5xx: try again later.
    Retry,
    /// Any other answer (a 4xx such as 400, 403, 404, 409): trying again
    /// would get the same; record it as failed.
    Failed,
}

/// Classifies an answer (one rule for every client of the codebase).
pub fn verdict(status: Option<u16>) -> Verdict {
    match status {
        None | Some(408) | Some(429) | Some(500..=599) => Verdict::Retry,
        Some(200..=299) => Verdict::Done,
        Some(_) => Verdict::Failed,
    }
}

/// The wait a `Retry-After` value asks for at `now_ms`: delay-seconds
/// (`120`) or an HTTP-date (`Wed, 25 Nov 2026 19:40:00 GMT`; a date in the
/// past asks for no wait). `None` when it is neither.
pub fn retry_after(value: &str, now_ms: crate::UnixMs) -> Option<Duration> {
    let v = value.trim();
    if let Ok(s) = v.parse::<u64>() {
        return Some(Duration::from_secs(s));
    }
    let at = crate::cycle::parse_http_date(v)?;
    Some(Duration::from_millis(u64::try_from(at - now_ms).unwrap_or(0)))
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

    #[test]
    fn answers_are_classified() {
        assert_eq!(verdict(Some(204)), Verdict::Done);
        for retry in [None, Some(408), Some(429), Some(500), Some(503)] {
            assert_eq!(verdict(retry), Verdict::Retry, "{retry:?}");
        }
        for failed in [Some(400), Some(401), Some(404), Some(409), Some(301)] {
            assert_eq!(verdict(failed), Verdict::Failed, "{failed:?}");
        }
    }

    #[test]
    fn a_schedule_ends_and_jitters_within_a_tenth() {
        let s = Schedule { delays: [0, 5, 300].map(Duration::from_secs).to_vec() };
        assert_eq!(s.delay(0, 0.7, None), Some(Duration::ZERO));
        assert_eq!(s.delay(1, 0.5, None), Some(Duration::from_secs(5)));
        assert_eq!(s.delay(2, 0.0, None), Some(Duration::from_secs(270)));
        assert_eq!(s.delay(2, 1.0, None), Some(Duration::from_secs(330)));
        assert_eq!(s.delay(1, 0.5, Some(Duration::from_secs(60))), Some(Duration::from_secs(60)));
        assert_eq!(s.delay(3, 0.5, None), None);
        assert_eq!(s.attempts(), 3);
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

    #[test]
    fn retry_after_takes_seconds_or_an_http_date() {
        let now = 1_795_635_480_000; // Wed, 25 Nov 2026 19:38:00 GMT
        assert_eq!(retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after("Wed, 25 Nov 2026 19:40:00 GMT", now), Some(Duration::from_secs(120)));
        assert_eq!(retry_after("Wed, 25 Nov 2026 19:00:00 GMT", now), Some(Duration::ZERO), "in the past");
        assert_eq!(retry_after("soon", now), None);
        assert_eq!(retry_after("-5", now), None);
    }
}
