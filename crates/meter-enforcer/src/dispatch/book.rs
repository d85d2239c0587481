//! The dispatcher's book: the deliveries of the partitions it owns, which
//! are in flight, and how each endpoint is doing. No I/O: the dispatcher
//! loops read and change it under one lock.

use std::collections::{HashMap, HashSet};

use meter_core::delivery::{Delivery, DeliveryState, EndpointHealth};
use meter_core::UnixMs;

/// Deliveries by id, with the partition (of the webhooks and deliveries
/// topics) they belong to.
#[derive(Debug, Default)]
pub(crate) struct Book {
    pub(crate) deliveries: HashMap<String, (i32, Delivery)>,
    in_flight: HashSet<String>,
    per_endpoint: HashMap<String, usize>,
    pub(crate) health: HashMap<String, EndpointHealth>,
}

impl Book {
    /// A new assignment: only `restored` (the current records of the
    /// assigned partitions) is ours now. Attempts in flight finish; their
    /// results for partitions no longer ours are dropped (`finish`).
    pub(crate) fn reassign(&mut self, restored: Vec<(i32, Delivery)>) {
        self.deliveries = restored.into_iter().map(|(p, d)| (d.id.clone(), (p, d))).collect();
        self.health.clear();
        for (_, d) in self.deliveries.values() {
            let h = self.health.entry(d.endpoint_id.clone()).or_default();
            d.attempts.iter().for_each(|a| h.observe(a));
        }
    }

    /// Deliveries due at `now`, marked in flight, within the limits: at
    /// most `per_endpoint` in flight per endpoint and `total` in all,
    /// earliest due first. `allowed(endpoint)`: false for endpoints that
    /// must not be called now.
    pub(crate) fn take_due(
        &mut self,
        now: UnixMs,
        total: usize,
        per_endpoint: usize,
        allowed: impl Fn(&str) -> bool,
    ) -> Vec<(i32, Delivery)> {
        let mut due: Vec<&(i32, Delivery)> = self
            .deliveries
            .values()
            .filter(|(_, d)| d.due(now) && !self.in_flight.contains(&d.id) && allowed(&d.endpoint_id))
            .collect();
        due.sort_by_key(|(_, d)| (d.next_attempt_ms, d.created_ms));
        let mut taken = Vec::new();
        let mut counts = self.per_endpoint.clone();
        let mut flying = self.in_flight.len();
        for (p, d) in due {
            let n = counts.entry(d.endpoint_id.clone()).or_default();
            if flying >= total {
                break;
            }
            if *n >= per_endpoint {
                continue;
            }
            *n += 1;
            flying += 1;
            taken.push((*p, d.clone()));
        }
        for (_, d) in &taken {
            self.in_flight.insert(d.id.clone());
            *self.per_endpoint.entry(d.endpoint_id.clone()).or_default() += 1;
        }
        taken
    }

    /// An attempt's delivery is no longer in flight; `updated` replaces the
    /// book's copy when its partition is still ours (returns false if not).
    pub(crate) fn finish(&mut self, partition: i32, updated: Delivery) -> bool {
        self.in_flight.remove(&updated.id);
        if let Some(n) = self.per_endpoint.get_mut(&updated.endpoint_id) {
            *n = n.saturating_sub(1);
        }
        if let Some(a) = updated.attempts.last() {
            self.health.entry(updated.endpoint_id.clone()).or_default().observe(a);
        }
        match self.deliveries.get_mut(&updated.id) {
            Some(slot) if slot.0 == partition => {
                slot.1 = updated;
                true
            }
            _ => false,
        }
    }

    /// Pending deliveries (not in flight) of endpoints `gone` says no
    /// longer take deliveries.
    pub(crate) fn stranded(&self, gone: impl Fn(&str) -> bool) -> Vec<(i32, Delivery)> {
        self.deliveries
            .values()
            .filter(|(_, d)| {
                d.state == DeliveryState::Pending && !self.in_flight.contains(&d.id) && gone(&d.endpoint_id)
            })
            .cloned()
            .collect()
    }

    /// Finished deliveries last changed before `before`: to forget.
    pub(crate) fn expired(&self, before: UnixMs) -> Vec<(i32, String)> {
        self.deliveries
            .values()
            .filter(|(_, d)| d.state != DeliveryState::Pending && d.updated_ms < before)
            .map(|(p, d)| (*p, d.id.clone()))
            .collect()
    }

    /// Pending deliveries per endpoint (for the gauge).
    pub(crate) fn pending_by_endpoint(&self) -> HashMap<String, usize> {
        let mut out: HashMap<String, usize> = HashMap::new();
        for (_, d) in self.deliveries.values().filter(|(_, d)| d.state == DeliveryState::Pending) {
            *out.entry(d.endpoint_id.clone()).or_default() += 1;
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meter_core::delivery::Attempt;
    use meter_core::enforce::{Alert, AlertType};
    use meter_core::retry::Schedule;
    use std::time::Duration;

    fn delivery(event: &str, endpoint: &str, due_ms: i64) -> Delivery {
        let alert = Alert {
            id: event.into(),
            kind: AlertType::QuotaExceeded,
            project_id: "p".into(),
            metric: None,
            threshold: None,
            usage: 0,
            quota: None,
            cycle_start_ms: 0,
            cycle_end_ms: 0,
            occurred_ms: 0,
            reason: None,
        };
        let schedule = Schedule { delays: vec![Duration::ZERO; 3] };
        let mut d = Delivery::new(&alert, endpoint, due_ms, &schedule, 0.5);
        d.next_attempt_ms = Some(due_ms);
        d
    }

    #[test]
    fn a_slow_endpoint_takes_only_its_share() {
        let mut b = Book::default();
        let mut restored: Vec<(i32, Delivery)> = (0..10).map(|i| (0, delivery(&format!("e{i}"), "dead", i))).collect();
        restored.push((1, delivery("e-ok", "ok", 50)));
        b.reassign(restored);
        let first = b.take_due(100, 8, 4, |_| true);
        let ids: Vec<&str> = first.iter().map(|(_, d)| d.endpoint_id.as_str()).collect();
        assert_eq!(ids.iter().filter(|e| **e == "dead").count(), 4, "{ids:?}");
        assert!(ids.contains(&"ok"), "the healthy endpoint is not queued behind the dead one: {ids:?}");
        assert!(b.take_due(100, 8, 4, |_| true).is_empty(), "per-endpoint limit holds");
        let (p, mut d) = first.into_iter().find(|(_, d)| d.endpoint_id == "dead").expect("one");
        d.record(
            Attempt { at_ms: 100, status: Some(500), error: None, duration_ms: 1 },
            &Schedule { delays: vec![Duration::from_secs(5); 3] },
            None,
            0.5,
        );
        assert!(b.finish(p, d));
        assert_eq!(b.take_due(100, 8, 4, |_| true).len(), 1, "a slot freed");
        assert_eq!(b.health["dead"].failing_since_ms, Some(100));
    }

    #[test]
    fn results_for_partitions_no_longer_owned_are_dropped() {
        let mut b = Book::default();
        b.reassign(vec![(3, delivery("e1", "w", 0))]);
        let (p, d) = b.take_due(0, 10, 10, |_| true).pop().expect("due");
        b.reassign(vec![]);
        assert!(!b.finish(p, d));
        assert!(b.deliveries.is_empty());
    }

    #[test]
    fn disallowed_endpoints_wait_and_are_found_stranded() {
        let mut b = Book::default();
        b.reassign(vec![(0, delivery("e1", "off", 0)), (0, delivery("e2", "on", 0))]);
        let taken = b.take_due(0, 10, 10, |e| e != "off");
        assert_eq!(taken.len(), 1);
        assert_eq!(b.stranded(|e| e == "off").len(), 1);
        assert_eq!(b.pending_by_endpoint().get("off"), Some(&1));
    }
}
