//! The ground truth: what the simulator sent and ingest acknowledged.

use std::collections::BTreeMap;

use meter_core::aggregate::held_byte_hours;
use meter_core::split::{hour_floor, split_hours};
use meter_core::{Event, Metric, Span, UnixMs};

/// One project's true usage: counters summed over all time, and each
/// branch's latest storage reading (by time, then by value), keyed by
/// branch id ("" for readings that name none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProjectTruth {
    pub counters: [u64; 4],
    pub branches: BTreeMap<String, (i64, u64)>,
}

impl ProjectTruth {
    /// The value of one metric (the gauge: the sum of the branches' latest
    /// readings, 0 if none).
    pub fn get(&self, m: Metric) -> u64 {
        match m.counter_index() {
            Some(i) => self.counters[i],
            None => self.branches.values().map(|(_, v)| v).sum(),
        }
    }
}

/// Ground truth of every project.
#[derive(Debug, Clone, Default)]
pub struct Truth {
    pub projects: BTreeMap<String, ProjectTruth>,
    pub events: u64,
    /// Counters per (project, counter index, hour start), intervals split
    /// across hours in proportion to their overlap.
    pub hourly: BTreeMap<(String, usize, UnixMs), u64>,
    /// The latest storage reading per (project, hour start, branch).
    pub hourly_gauge: BTreeMap<(String, UnixMs, String), (UnixMs, u64)>,
    /// Storage held per (project, hour start), byte-hours: each branch's
    /// size from one reading to its next, per span `floor(size * ms / 1 h)`
    /// split over the span's hours (readings arrive in time order per
    /// branch, as the simulator sends them).
    pub byte_hours: BTreeMap<(String, UnixMs), u64>,
}

impl Truth {
    /// Adds acknowledged events.
    pub fn record(&mut self, events: &[Event]) {
        for e in events {
            let p = self.projects.entry(e.project_id.to_string()).or_default();
            let id = e.project_id.to_string();
            match (e.metric.counter_index(), e.span) {
                (Some(i), span) => {
                    p.counters[i] += e.value;
                    let parts = match span {
                        Span::Interval { start_ms, end_ms } => split_hours(start_ms, end_ms, e.value),
                        Span::Instant { time_ms } => vec![(hour_floor(time_ms), e.value)],
                    };
                    for (hour, v) in parts {
                        *self.hourly.entry((id.clone(), i, hour)).or_default() += v;
                    }
                }
                (None, Span::Instant { time_ms }) => {
                    let branch = e.branch_id.clone().unwrap_or_default();
                    let latest = p.branches.entry(branch.clone()).or_insert((time_ms, e.value));
                    if time_ms > latest.0 {
                        let held = held_byte_hours(latest.1, time_ms - latest.0);
                        for (hour, v) in split_hours(latest.0, time_ms, held) {
                            *self.byte_hours.entry((id.clone(), hour)).or_default() += v;
                        }
                    }
                    *latest = (*latest).max((time_ms, e.value));
                    let h = self.hourly_gauge.entry((id, hour_floor(time_ms), branch)).or_insert((time_ms, e.value));
                    *h = (*h).max((time_ms, e.value));
                }
                (None, Span::Interval { .. }) => {}
            }
        }
        self.events += events.len() as u64;
    }

    /// A project's storage held in `[start, end)` (hour-aligned), byte-hours.
    pub fn byte_hours_in(&self, project: &str, start: UnixMs, end: UnixMs) -> u64 {
        let id = project.to_owned();
        self.byte_hours.range((id.clone(), start)..(id, end)).map(|(_, v)| v).sum()
    }

    /// A project's true usage of `m` in `[start, end)` (hour-aligned): the
    /// counter's sum, or the sum over branches of each one's latest reading
    /// in the timeframe (0 when none).
    pub fn in_timeframe(&self, project: &str, m: Metric, start: UnixMs, end: UnixMs) -> u64 {
        let id = project.to_owned();
        match m.counter_index() {
            Some(i) => self.hourly.range((id.clone(), i, start)..(id, i, end)).map(|(_, v)| v).sum(),
            None => {
                let mut latest: BTreeMap<&str, (UnixMs, u64)> = BTreeMap::new();
                for ((_, _, branch), r) in
                    self.hourly_gauge.range((id.clone(), start, String::new())..(id, end, String::new()))
                {
                    let l = latest.entry(branch).or_insert(*r);
                    *l = (*l).max(*r);
                }
                latest.values().map(|(_, v)| v).sum()
            }
        }
    }
}
