//! Splitting an interval's value across the hours it covers, exactly: the
//! pieces are proportional to the overlap and always add up to the value.

use crate::{UnixMs, HOUR_MS};

/// Start of the hour that contains `t`.
pub fn hour_floor(t: UnixMs) -> UnixMs {
    t.div_euclid(HOUR_MS) * HOUR_MS
}

/// The `(hour_start, value)` pieces of `value` spread over `[start, end)`.
///
/// Piece `i` is `floor(v * c_i / len) - floor(v * c_{i-1} / len)`, where `c_i`
/// is the length covered up to the end of hour `i`; the sum telescopes to `v`
/// exactly, and the result depends on nothing but the inputs. An empty
/// interval puts the whole value in the hour of `start`. Zero pieces are
/// dropped.
pub fn split_hours(start: UnixMs, end: UnixMs, value: u64) -> Vec<(UnixMs, u64)> {
    let mut out = Vec::new();
    for_each_hour(start, end, value, |hour, piece| out.push((hour, piece)));
    out
}

/// `split_hours`, each piece handed to `f` in hour order (nothing
/// allocated: the aggregator splits every counter event).
pub fn for_each_hour(start: UnixMs, end: UnixMs, value: u64, mut f: impl FnMut(UnixMs, u64)) {
    let first = hour_floor(start);
    if end <= start || end <= first + HOUR_MS {
        if value > 0 {
            f(first, value);
        }
        return;
    }
    let len = (end - start) as u128;
    let v = u128::from(value);
    let mut hour = first;
    let mut done: u128 = 0;
    while hour < end {
        let covered = (end.min(hour + HOUR_MS) - start) as u128;
        let upto = v * covered / len;
        let piece = (upto - done) as u64;
        if piece > 0 {
            f(hour, piece);
        }
        done = upto;
        hour += HOUR_MS;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn within_one_hour() {
        assert_eq!(split_hours(HOUR_MS + 5, HOUR_MS + 10, 7), vec![(HOUR_MS, 7)]);
        assert_eq!(split_hours(HOUR_MS + 5, HOUR_MS + 5, 7), vec![(HOUR_MS, 7)]);
        assert!(split_hours(0, 10, 0).is_empty());
    }

    #[test]
    fn across_two_hours_in_proportion() {
        // 3/4 of the interval in the first hour.
        let start = HOUR_MS - 45 * 60_000;
        let end = HOUR_MS + 15 * 60_000;
        assert_eq!(split_hours(start, end, 100), vec![(0, 75), (HOUR_MS, 25)]);
    }

    proptest! {
        #[test]
        fn pieces_add_up_and_stay_inside(
            start in -1_000_000_000_000i64..1_000_000_000_000,
            len in 0i64..(200 * HOUR_MS),
            value in 0u64..u64::MAX,
        ) {
            let pieces = split_hours(start, start + len, value);
            let sum: u128 = pieces.iter().map(|p| u128::from(p.1)).sum();
            prop_assert_eq!(sum, u128::from(value));
            for w in pieces.windows(2) {
                prop_assert!(w[0].0 < w[1].0);
            }
            for (h, _) in &pieces {
                prop_assert_eq!(h % HOUR_MS, 0);
                prop_assert!(*h >= hour_floor(start) && *h <= hour_floor((start + len).max(start)));
            }
        }
    }
}
