//! The ground truth: what the simulator sent and ingest acknowledged.

use std::collections::BTreeMap;

use meter_core::split::{hour_floor, split_hours};
use meter_core::{Event, Metric, Span, UnixMs};

/// One project's true usage: counters summed over all time, and the latest
/// storage reading (by time, then by value).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProjectTruth {
    pub counters: [u64; 4],
    pub logical_size: Option<(i64, u64)>,
}

impl ProjectTruth {
    /// The value of one metric (the gauge: its latest reading, 0 if none).
    pub fn get(&self, m: Metric) -> u64 {
        match m.counter_index() {
            Some(i) => self.counters[i],
            None => self.logical_size.map_or(0, |(_, v)| v),
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
    /// The latest storage reading per (project, hour start).
    pub hourly_gauge: BTreeMap<(String, UnixMs), (UnixMs, u64)>,
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
                    if p.logical_size.is_none_or(|cur| (time_ms, e.value) > cur) {
                        p.logical_size = Some((time_ms, e.value));
                    }
                    let h = self.hourly_gauge.entry((id, hour_floor(time_ms))).or_insert((time_ms, e.value));
                    *h = (*h).max((time_ms, e.value));
                }
                (None, Span::Interval { .. }) => {}
            }
        }
        self.events += events.len() as u64;
    }

    /// A project's true usage of `m` in `[start, end)` (hour-aligned): the
    /// counter's sum, or the gauge's latest reading (0 when none).
    pub fn in_timeframe(&self, project: &str, m: Metric, start: UnixMs, end: UnixMs) -> u64 {
        let id = project.to_owned();
        match m.counter_index() {
            Some(i) => self.hourly.range((id.clone(), i, start)..(id, i, end)).map(|(_, v)| v).sum(),
            None => {
                self.hourly_gauge.range((id.clone(), start)..(id, end)).map(|(_, r)| *r).max().map_or(0, |(_, v)| v)
            }
        }
    }
}
