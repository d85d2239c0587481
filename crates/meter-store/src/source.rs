//! Where usage of a time range is read from: the rollups for the days rolled
//! up (hours before `rolled_through`), the per-batch table `usage_hourly`
//! (with FINAL) from there on. The three parts never overlap, so their rows
//! are added up as they are; the daily rollup serves the whole days of a
//! daily or monthly read, the hourly rollup the rest.

use meter_core::finality::DAY_MS;

/// Seconds since the epoch, as ClickHouse's `DateTime` compares them.
type Secs = i64;

/// The latest second a range reaches (`DateTime` ends in 2106).
pub(crate) const ALL_TIME: (Secs, Secs) = (0, 4_000_000_000);

const DAY_S: Secs = DAY_MS / 1000;

/// What each part of a read covers, `[start, end)` in seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Spans {
    /// Read from `usage_hourly` FINAL.
    batches: (Secs, Secs),
    /// Read from `usage_hourly_rollup` (the rolled hours outside `days`).
    hours: [(Secs, Secs); 2],
    /// Read from `usage_daily_rollup`.
    days: (Secs, Secs),
}

/// The columns each part yields.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Columns {
    /// A row of usage: `project_id, metric, hour, branch_id, value,
    /// last_value, last_time_ms` (a daily row's `hour` is its day).
    Rows,
    /// `project_id` only.
    Projects,
}

impl Spans {
    /// The parts of `[from, to)` given that every hour before `rolled` is in
    /// the rollups; `whole_days`: a day wholly in the range may come from the
    /// daily rollup (a daily or monthly read).
    pub(crate) fn new((from, to): (Secs, Secs), rolled: Secs, whole_days: bool) -> Spans {
        let rolled_end = to.min(rolled).max(from);
        let batches = (from.max(rolled), to);
        let (a, b) = if whole_days {
            let a = from.div_euclid(DAY_S) * DAY_S + if from.rem_euclid(DAY_S) == 0 { 0 } else { DAY_S };
            let b = rolled_end.div_euclid(DAY_S) * DAY_S;
            if a < b {
                (a, b)
            } else {
                (rolled_end, rolled_end)
            }
        } else {
            (rolled_end, rolled_end)
        };
        Spans { batches, hours: [(from, a.min(rolled_end)), (b, rolled_end)], days: (a, b) }
    }

    /// A `UNION ALL` of the parts that cover anything (at least one), each
    /// restricted by `filter` (an SQL condition, `""` for none, whose
    /// parameters are bound once per part: `parts` times). A part left out
    /// costs nothing; one whose range is empty still opens every part of
    /// its table (~10 ms on ClickHouse 18.16 for a month of daily partitions).
    pub(crate) fn sql(&self, columns: Columns, filter: &str) -> Union {
        let and = if filter.is_empty() { String::new() } else { format!(" AND {filter}") };
        let (rows, daily) = match columns {
            Columns::Rows => (
                "project_id, metric, hour, branch_id, value, last_value, last_time_ms",
                "project_id, metric, day AS hour, branch_id, value, last_value, last_time_ms",
            ),
            Columns::Projects => ("project_id", "project_id"),
        };
        let hours: Vec<String> = self.hours.iter().filter(|r| !empty(**r)).map(|r| within("hour", *r)).collect();
        let mut parts = Vec::new();
        // An empty range still gets one part (yielding no rows): the batches'.
        if !empty(self.batches) || (hours.is_empty() && empty(self.days)) {
            parts.push(format!("SELECT {rows} FROM usage_hourly FINAL WHERE {}{and}", within("hour", self.batches)));
        }
        if !hours.is_empty() {
            parts.push(format!("SELECT {rows} FROM usage_hourly_rollup WHERE ({}){and}", hours.join(" OR ")));
        }
        if !empty(self.days) {
            parts.push(format!("SELECT {daily} FROM usage_daily_rollup WHERE {}{and}", within("day", self.days)));
        }
        Union { parts: parts.len(), sql: parts.join("\n UNION ALL\n ") }
    }
}

/// The SQL of a read's parts, and how many there are: a read binds its
/// filter's parameters once per part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Union {
    pub sql: String,
    pub parts: usize,
}

fn empty((start, end): (Secs, Secs)) -> bool {
    start >= end
}

fn within(column: &str, (start, end): (Secs, Secs)) -> String {
    format!("{column} >= toDateTime({start}) AND {column} < toDateTime({end})")
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: Secs = 3600;
    const NOV1: Secs = 1_793_491_200;

    fn covered(s: &Spans) -> Vec<(Secs, Secs)> {
        let mut v: Vec<_> = [s.batches, s.hours[0], s.hours[1], s.days].into_iter().filter(|(a, b)| a < b).collect();
        v.sort();
        v
    }

    #[test]
    fn nothing_rolled_reads_only_the_batches() {
        let s = Spans::new((NOV1, NOV1 + 30 * DAY_S), 0, true);
        assert_eq!(covered(&s), [(NOV1, NOV1 + 30 * DAY_S)]);
    }

    #[test]
    fn rolled_days_come_from_the_daily_rollup_and_the_rest_from_batches() {
        let rolled = NOV1 + 10 * DAY_S;
        let s = Spans::new((NOV1, NOV1 + 30 * DAY_S), rolled, true);
        assert_eq!(s.days, (NOV1, rolled));
        assert_eq!(covered(&s), [(NOV1, rolled), (rolled, NOV1 + 30 * DAY_S)]);
        // Hourly reads never use the daily rollup.
        let s = Spans::new((NOV1, NOV1 + 30 * DAY_S), rolled, false);
        assert_eq!(s.days.0, s.days.1);
        assert_eq!(covered(&s), [(NOV1, rolled), (rolled, NOV1 + 30 * DAY_S)]);
        assert_eq!(s.hours[0], (NOV1, rolled));
    }

    #[test]
    fn partial_days_at_the_edges_come_from_the_hourly_rollup() {
        let rolled = NOV1 + 10 * DAY_S;
        let (from, to) = (NOV1 + 5 * H, NOV1 + 4 * DAY_S + 7 * H);
        let s = Spans::new((from, to), rolled, true);
        assert_eq!(s.days, (NOV1 + DAY_S, NOV1 + 4 * DAY_S));
        assert_eq!(s.hours, [(from, NOV1 + DAY_S), (NOV1 + 4 * DAY_S, to)]);
        assert_eq!(s.batches.0, rolled);
        assert!(s.batches.0 >= s.batches.1, "nothing from the batches: {s:?}");
        // Within one day: hours only.
        let s = Spans::new((NOV1 + 2 * H, NOV1 + 9 * H), rolled, true);
        assert_eq!(covered(&s), [(NOV1 + 2 * H, NOV1 + 9 * H)]);
        assert_eq!(s.days.0, s.days.1);
    }

    #[test]
    fn the_parts_never_overlap_and_cover_the_range() {
        for rolled in [0, NOV1, NOV1 + 3 * H, NOV1 + 2 * DAY_S, NOV1 + 40 * DAY_S] {
            for (from, to) in [(NOV1, NOV1 + 3 * DAY_S), (NOV1 + H, NOV1 + 2 * DAY_S + H), ALL_TIME] {
                for whole in [false, true] {
                    let v = covered(&Spans::new((from, to), rolled, whole));
                    assert_eq!(v.first().map(|x| x.0), Some(from), "{rolled} {from} {to} {v:?}");
                    assert_eq!(v.last().map(|x| x.1), Some(to), "{rolled} {from} {to} {v:?}");
                    assert!(v.windows(2).all(|w| w[0].1 == w[1].0), "{rolled} {from} {to} {v:?}");
                }
            }
        }
    }

    #[test]
    fn only_the_parts_that_cover_anything_are_read() {
        let rolled = NOV1 + 40 * DAY_S;
        // A month wholly rolled, hourly: the hourly rollup alone.
        let u = Spans::new((NOV1, NOV1 + 30 * DAY_S), rolled, false).sql(Columns::Rows, "project_id = ?");
        assert_eq!(u.parts, 1);
        assert!(u.sql.contains("usage_hourly_rollup") && !u.sql.contains("FINAL"), "{}", u.sql);
        assert_eq!(u.sql.matches('?').count(), u.parts);
        // Daily, whole days: the daily rollup alone.
        let u = Spans::new((NOV1, NOV1 + 30 * DAY_S), rolled, true).sql(Columns::Projects, "");
        assert_eq!(u.parts, 1);
        assert!(u.sql.contains("usage_daily_rollup"), "{}", u.sql);
        // Nothing rolled: the batches alone.
        let u = Spans::new((NOV1, NOV1 + 30 * DAY_S), 0, true).sql(Columns::Rows, "project_id = ?");
        assert_eq!((u.parts, u.sql.matches("FINAL").count()), (1, 1));
        // Partial days at both edges, some rolled: all three, both hour ranges.
        let u = Spans::new((NOV1 + 5 * H, NOV1 + 12 * DAY_S), NOV1 + 10 * DAY_S + 7 * H, true)
            .sql(Columns::Rows, "project_id = ?");
        assert_eq!(u.parts, 3);
        assert_eq!(u.sql.matches(" OR ").count(), 1, "{}", u.sql);
        assert_eq!(u.sql.matches('?').count(), 3);
        // An empty range still makes a query (with no rows).
        let u = Spans::new((NOV1, NOV1), rolled, true).sql(Columns::Rows, "");
        assert_eq!(u.parts, 1);
    }
}
