//! Per-source rate limiting: a token bucket per key that may go into debt,
//! so a batch larger than the burst still passes once the bucket is full
//! and the long-run rate stays bounded. Time is passed in (no clock here).

use std::collections::HashMap;

use crate::UnixMs;

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at_ms: UnixMs,
}

impl Bucket {
    /// The tokens at `now_ms`: refilled at `rate_per_ms`, at most `burst`.
    fn level(&self, rate_per_ms: f64, burst: f64, now_ms: UnixMs) -> f64 {
        (self.tokens + (now_ms - self.at_ms).max(0) as f64 * rate_per_ms).min(burst)
    }
}

/// Buckets of `rate_per_second` events, holding at most `burst` events.
#[derive(Debug)]
pub struct RateLimiter {
    rate_per_ms: f64,
    burst: f64,
    max_keys: usize,
    buckets: HashMap<String, Bucket>,
}

impl RateLimiter {
    /// A limiter of `rate_per_second` events per key with `burst` events of
    /// headroom, tracking at most `max_keys` keys (idle, full buckets are
    /// forgotten first).
    pub fn new(rate_per_second: u64, burst: u64, max_keys: usize) -> Self {
        RateLimiter {
            rate_per_ms: rate_per_second as f64 / 1000.0,
            burst: burst.max(1) as f64,
            max_keys: max_keys.max(1),
            buckets: HashMap::new(),
        }
    }

    /// Takes `n` events for `key` at `now_ms`: `Ok` if the bucket was not in
    /// debt, else `Err(ms)` until it will be.
    pub fn take(&mut self, key: &str, n: u64, now_ms: UnixMs) -> Result<(), u64> {
        if !self.buckets.contains_key(key) && self.buckets.len() >= self.max_keys {
            self.forget_full(now_ms);
        }
        let (rate, burst) = (self.rate_per_ms, self.burst);
        let b = self.buckets.entry(key.to_owned()).or_insert(Bucket { tokens: burst, at_ms: now_ms });
        b.tokens = b.level(rate, burst, now_ms);
        b.at_ms = now_ms.max(b.at_ms);
        if b.tokens < 0.0 {
            let wait = (-b.tokens / self.rate_per_ms).ceil();
            return Err(if wait.is_finite() { wait as u64 } else { u64::MAX });
        }
        b.tokens -= n as f64;
        Ok(())
    }

    /// Keys tracked now.
    pub fn keys(&self) -> usize {
        self.buckets.len()
    }

    fn forget_full(&mut self, now_ms: UnixMs) {
        let (rate, burst) = (self.rate_per_ms, self.burst);
        self.buckets.retain(|_, b| b.level(rate, burst, now_ms) < burst);
        if self.buckets.len() >= self.max_keys {
            // Every key is active: forget the one with the most tokens (the
            // least in debt), so a flood of new keys cannot grow the map.
            if let Some(k) =
                self.buckets.iter().max_by(|a, b| a.1.tokens.total_cmp(&b.1.tokens)).map(|(k, _)| k.clone())
            {
                self.buckets.remove(&k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admits_the_burst_then_the_rate() {
        let mut l = RateLimiter::new(1000, 2000, 10);
        assert!(l.take("a", 1500, 0).is_ok());
        assert!(l.take("a", 1500, 0).is_ok(), "500 left: not in debt yet");
        assert_eq!(l.take("a", 1, 0), Err(1000), "1,000 in debt at 1,000/s: 1 s");
        assert_eq!(l.take("a", 1, 600), Err(400));
        assert!(l.take("a", 1000, 1000).is_ok());
        assert!(l.take("b", 10, 1000).is_ok(), "another key is not affected");
    }

    #[test]
    fn a_batch_larger_than_the_burst_passes_once() {
        let mut l = RateLimiter::new(10, 10, 10);
        assert!(l.take("a", 100, 0).is_ok());
        assert_eq!(l.take("a", 1, 0), Err(9000));
    }

    #[test]
    fn the_long_run_rate_is_bounded() {
        let mut l = RateLimiter::new(1000, 1000, 10);
        let mut admitted = 0;
        for t in 0..10_000 {
            if l.take("a", 100, t).is_ok() {
                admitted += 100;
            }
        }
        // 10 s at 1,000/s plus the burst and one batch of debt.
        assert!((10_000..=11_100).contains(&admitted), "{admitted}");
    }

    #[test]
    fn the_number_of_keys_is_bounded() {
        let mut l = RateLimiter::new(10, 10, 100);
        for i in 0..10_000 {
            let _ = l.take(&format!("k{i}"), 5, 0);
        }
        assert!(l.keys() <= 100, "{}", l.keys());
    }
}
