//! When usage is final, and which days may be rolled up.
//!
//! Ingest refuses an event older than the late-event horizon, so no event
//! for a timeframe ending at E is acknowledged after E + horizon. The api's
//! probes, carried to ClickHouse behind the rows before them, say how far
//! ClickHouse is complete (`loaded`: every event acknowledged before it, less
//! the produce timeout and a margin for clocks, is queryable). A timeframe
//! ending at or before `final_before(loaded)` therefore never changes again
//! but by an explicit adjustment, which is kept apart from usage.

use crate::split::hour_floor;
use crate::UnixMs;

/// Allowance for clocks that disagree between ingest and api instances.
pub const CLOCK_MARGIN_MS: i64 = 60_000;

/// Milliseconds in a day.
pub const DAY_MS: i64 = 86_400_000;

/// The finality rule of one deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Finality {
    /// The late-event horizon (`ingest.max_past_seconds`), milliseconds.
    pub horizon_ms: i64,
    /// The produce timeout plus the clock margin.
    pub settle_ms: i64,
}

impl Finality {
    /// The rule for a horizon and a producer's delivery timeout.
    pub fn new(horizon_ms: i64, produce_timeout_ms: i64) -> Finality {
        Finality { horizon_ms, settle_ms: produce_timeout_ms + CLOCK_MARGIN_MS }
    }

    /// Timeframes ending at or before this are final (an hour boundary);
    /// `None` while nothing is known to be loaded.
    pub fn final_before(&self, loaded: Option<UnixMs>) -> Option<UnixMs> {
        loaded.map(|l| hour_floor(l - self.settle_ms - self.horizon_ms))
    }
}

/// Start of the UTC day that contains `t`.
pub fn day_floor(t: UnixMs) -> UnixMs {
    t.div_euclid(DAY_MS) * DAY_MS
}

/// The days to roll up next, in order: from `rolled_through` (the end of the
/// days rolled so far; `None`: none yet, start at the day of `first_usage`)
/// up to the last day ending at or before `final_before`.
pub fn days_to_roll(rolled_through: Option<UnixMs>, first_usage: Option<UnixMs>, final_before: UnixMs) -> Vec<UnixMs> {
    let Some(start) = rolled_through.or(first_usage.map(day_floor)) else { return Vec::new() };
    let start = day_floor(start);
    let end = day_floor(final_before);
    (0..).map(|i| start + i * DAY_MS).take_while(|d| *d < end).collect()
}

/// Whether the per-batch rows of `month` (`YYYYMM`) may be dropped: every
/// day of it is rolled up (`rolled_through` past its end) and it ended
/// `keep_ms` or more before `loaded` (the pipeline's time, see above).
pub fn batches_expired(month: u32, rolled_through: UnixMs, loaded: UnixMs, keep_ms: i64) -> bool {
    let end = month_span(month).1;
    end <= rolled_through && end + keep_ms <= loaded
}

/// The start and end of a month (`YYYYMM`), UTC.
pub fn month_span(month: u32) -> (UnixMs, UnixMs) {
    let (y, m) = (i64::from(month / 100), month % 100);
    let next = if m >= 12 { (y + 1, 1) } else { (y, m + 1) };
    (crate::cycle::days_from_civil(y, m, 1) * DAY_MS, crate::cycle::days_from_civil(next.0, next.1, 1) * DAY_MS)
}

/// The month (`YYYYMM`) that contains `t`.
pub fn month_of(t: UnixMs) -> u32 {
    let (y, m, _) = crate::cycle::civil_from_days(t.div_euclid(DAY_MS));
    y as u32 * 100 + m
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::HOUR_MS;

    const DEC1: UnixMs = 1_796_083_200_000; // 2026-12-01T00:00:00Z

    #[test]
    fn months_span_their_days() {
        assert_eq!(month_span(202612), (DEC1, DEC1 + 31 * DAY_MS));
        assert_eq!(month_span(202611).1, DEC1);
        assert_eq!(month_of(DEC1), 202612);
        assert_eq!(month_of(DEC1 - 1), 202611);
    }

    #[test]
    fn final_is_an_hour_boundary_a_horizon_and_a_settle_behind_what_is_loaded() {
        let f = Finality::new(7 * DAY_MS, 10_000);
        assert_eq!(f.final_before(None), None);
        let loaded = DEC1 + 7 * DAY_MS + 70_000 + 5 * 60_000;
        assert_eq!(f.final_before(Some(loaded)), Some(DEC1));
        assert_eq!(f.final_before(Some(loaded - 5 * 60_000 - 1)), Some(DEC1 - HOUR_MS));
    }

    #[test]
    fn days_roll_in_order_only_once_the_whole_day_is_final() {
        assert!(days_to_roll(None, None, DEC1).is_empty(), "no usage, nothing to roll");
        let first = DEC1 - 3 * DAY_MS + 5 * HOUR_MS;
        assert_eq!(days_to_roll(None, Some(first), DEC1), [DEC1 - 3 * DAY_MS, DEC1 - 2 * DAY_MS, DEC1 - DAY_MS]);
        // Final to 23:00 of the 1st: the 1st is not whole yet.
        assert_eq!(days_to_roll(Some(DEC1), Some(first), DEC1 + 23 * HOUR_MS), Vec::<UnixMs>::new());
        assert_eq!(days_to_roll(Some(DEC1), Some(first), DEC1 + DAY_MS), [DEC1]);
        // Already rolled further than final: nothing (never backwards).
        assert!(days_to_roll(Some(DEC1 + 2 * DAY_MS), Some(first), DEC1).is_empty());
        assert_eq!(day_floor(DEC1 - 1), DEC1 - DAY_MS);
    }

    #[test]
    fn a_months_batches_go_once_rolled_and_kept_long_enough() {
        let keep = 30 * DAY_MS;
        // November ends at DEC1.
        assert!(batches_expired(202611, DEC1, DEC1 + keep, keep));
        assert!(!batches_expired(202611, DEC1 - DAY_MS, DEC1 + keep, keep), "its last day is not rolled");
        assert!(!batches_expired(202611, DEC1, DEC1 + keep - 1, keep), "not kept long enough");
        // December ends at the next year's first day.
        let jan1 = crate::cycle::days_from_civil(2027, 1, 1) * DAY_MS;
        assert!(!batches_expired(202612, jan1 - 1, jan1 + keep, keep));
        assert!(batches_expired(202612, jan1, jan1 + keep, keep));
    }
}
