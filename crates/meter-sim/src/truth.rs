//! The ground truth: what the simulator sent and ingest acknowledged.

use std::collections::BTreeMap;

use meter_core::{Event, Metric, Span};

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
}

impl Truth {
    /// Adds acknowledged events.
    pub fn record(&mut self, events: &[Event]) {
        for e in events {
            let p = self.projects.entry(e.project_id.to_string()).or_default();
            match (e.metric.counter_index(), e.span) {
                (Some(i), _) => p.counters[i] += e.value,
                (None, Span::Instant { time_ms }) => {
                    if p.logical_size.is_none_or(|cur| (time_ms, e.value) > cur) {
                        p.logical_size = Some((time_ms, e.value));
                    }
                }
                (None, Span::Interval { .. }) => {}
            }
        }
        self.events += events.len() as u64;
    }
}
