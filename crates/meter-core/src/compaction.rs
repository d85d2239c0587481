//! Which months of the hourly rollup to copy into one partition each, and
//! how far. A month's rolled days are copied once a week of them is not in
//! its copy yet, again when all its days are rolled, and again when a day
//! already copied was rolled again (a redo). So a read of 30 days of hours
//! opens one part per month and at most a week of day partitions, at the
//! cost of copying a month about four times as it fills.

use crate::finality::{day_floor, month_of, month_span, DAY_MS};
use crate::UnixMs;

/// Days of a month rolled but not in its copy that make a new copy due.
pub const COPY_EVERY_DAYS: i64 = 7;

/// A month's copy: its rolled days before `through`, as rolled when those
/// days had `rolls` records (of rolling them, again after a redo).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MonthCopy {
    /// `YYYYMM`.
    pub month: u32,
    pub through: UnixMs,
    pub rolls: u64,
}

/// Records of rolling each day (its start; see `MonthCopy`) of `month`
/// before `through`. A count never shrinks, so more than a copy counted
/// says "rolled again since" without clocks.
fn rolls_before(day_rolls: &[(UnixMs, u64)], month: u32, through: UnixMs) -> u64 {
    day_rolls.iter().filter(|(d, _)| month_of(*d) == month && *d < through).map(|(_, n)| n).sum()
}

/// The latest copy of `month` among `copies`.
fn latest(copies: &[MonthCopy], month: u32) -> Option<&MonthCopy> {
    copies.iter().filter(|c| c.month == month).max_by_key(|c| (c.through, c.rolls))
}

/// The copies to make next, oldest month first (a month's copy needs the
/// months before it whole: reads take every hour before the latest copy's
/// end from the copies). `day_rolls`: per day rolled, its records in
/// `rollup_days`; `copies`: those made; `rolled_through`: the end of the days
/// rolled up.
pub fn copies_due(day_rolls: &[(UnixMs, u64)], copies: &[MonthCopy], rolled_through: UnixMs) -> Vec<MonthCopy> {
    let mut months: Vec<u32> = day_rolls.iter().map(|(d, _)| month_of(*d)).collect();
    months.sort_unstable();
    months.dedup();
    months
        .into_iter()
        .filter_map(|month| {
            let (start, end) = month_span(month);
            let through = end.min(day_floor(rolled_through));
            if through <= start {
                return None;
            }
            let week = COPY_EVERY_DAYS * DAY_MS;
            let due = match latest(copies, month) {
                None => through == end || through - start >= week,
                Some(c) => {
                    rolls_before(day_rolls, month, c.through) > c.rolls
                        || (through == end && c.through < end)
                        || through - c.through >= week
                }
            };
            due.then(|| MonthCopy { month, through, rolls: rolls_before(day_rolls, month, through) })
        })
        .collect()
}

/// The months whose latest copy among `copies` holds all their days as
/// they are rolled now: their day partitions may go once nothing reads them.
pub fn copied_whole(day_rolls: &[(UnixMs, u64)], copies: &[MonthCopy]) -> Vec<u32> {
    let mut months: Vec<u32> = copies.iter().map(|c| c.month).collect();
    months.sort_unstable();
    months.dedup();
    months.retain(|m| {
        latest(copies, *m)
            .is_some_and(|c| c.through == month_span(*m).1 && rolls_before(day_rolls, *m, c.through) == c.rolls)
    });
    months
}

#[cfg(test)]
mod tests {
    use super::*;

    const OCT1: UnixMs = 1_790_812_800_000; // 2026-10-01T00:00:00Z
    const NOV1: UnixMs = OCT1 + 31 * DAY_MS;

    /// Days [from, to) of October on, rolled once each.
    fn rolled(from: i64, to: i64) -> Vec<(UnixMs, u64)> {
        (from..to).map(|d| (OCT1 + d * DAY_MS, 1)).collect()
    }

    fn copy(month: u32, through: UnixMs, rolls: u64) -> MonthCopy {
        MonthCopy { month, through, rolls }
    }

    #[test]
    fn a_month_is_copied_each_week_and_when_whole() {
        // Six days rolled: not yet.
        assert!(copies_due(&rolled(0, 6), &[], OCT1 + 6 * DAY_MS).is_empty());
        // A week: its first copy.
        assert_eq!(copies_due(&rolled(0, 7), &[], OCT1 + 7 * DAY_MS), [copy(202610, OCT1 + 7 * DAY_MS, 7)]);
        // Copied through the week: nothing until the next week.
        let first = [copy(202610, OCT1 + 7 * DAY_MS, 7)];
        assert!(copies_due(&rolled(0, 13), &first, OCT1 + 13 * DAY_MS).is_empty());
        assert_eq!(copies_due(&rolled(0, 14), &first, OCT1 + 14 * DAY_MS)[0].through, OCT1 + 14 * DAY_MS);
        // The last day rolled: whole, however few days since the last copy.
        let fourth = [copy(202610, OCT1 + 28 * DAY_MS, 28)];
        assert_eq!(copies_due(&rolled(0, 31), &fourth, NOV1), [copy(202610, NOV1, 31)]);
        // Usage that began late in the month: copied whole at its end.
        assert_eq!(copies_due(&rolled(27, 31), &[], NOV1), [copy(202610, NOV1, 4)]);
    }

    #[test]
    fn the_month_before_is_copied_whole_first() {
        let days = rolled(0, 38);
        let due = copies_due(&days, &[copy(202610, OCT1 + 28 * DAY_MS, 28)], NOV1 + 7 * DAY_MS);
        assert_eq!(due, [copy(202610, NOV1, 31), copy(202611, NOV1 + 7 * DAY_MS, 7)]);
    }

    #[test]
    fn a_day_rolled_again_makes_its_month_due_and_not_whole() {
        let mut days = rolled(0, 31);
        let whole = [copy(202610, NOV1, 31)];
        assert!(copies_due(&days, &whole, NOV1).is_empty());
        assert_eq!(copied_whole(&days, &whole), [202610]);
        days[4].1 = 2; // October 5th rolled again.
        assert_eq!(copies_due(&days, &whole, NOV1), [copy(202610, NOV1, 32)]);
        assert!(copied_whole(&days, &whole).is_empty());
        // Copied again: whole again.
        let again = [whole[0], copy(202610, NOV1, 32)];
        assert!(copies_due(&days, &again, NOV1).is_empty());
        assert_eq!(copied_whole(&days, &again), [202610]);
        // A day after a partial copy's end rolled again is not a reason.
        let partial = [copy(202610, OCT1 + 7 * DAY_MS, 7)];
        let mut days = rolled(0, 10);
        days[8].1 = 2;
        assert!(copies_due(&days, &partial, OCT1 + 10 * DAY_MS).is_empty());
        assert!(copied_whole(&days, &partial).is_empty());
    }
}
