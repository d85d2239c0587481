//! The dispatcher's book: the deliveries of the partitions it owns, which
//! are in flight, and how each endpoint is doing. No I/O: the dispatcher
//! loops read and change it under one lock.
//!
//! Indexed so that taking what is due costs what is taken, not what is
//! kept: each endpoint's pending deliveries are ordered by next attempt,
//! and the heads of the endpoints that may take one more are ordered too
//! (an endpoint at its concurrency limit is not looked at until an attempt
//! of its own ends). Finished deliveries, kept for hours, are ordered by
//! their last change for the retention sweep.

use std::collections::{BTreeSet, HashMap, HashSet};

use meter_core::delivery::{Delivery, DeliveryState, EndpointHealth};
use meter_core::UnixMs;

/// (next attempt, created, id) of a pending delivery not in flight.
type DueKey = (UnixMs, UnixMs, String);

/// Deliveries by id, with the partition (of the webhooks and deliveries
/// topics) they belong to.
#[derive(Debug)]
pub(crate) struct Book {
    total: usize,
    per_endpoint: usize,
    deliveries: HashMap<String, (i32, Delivery)>,
    /// Per endpoint: pending deliveries not in flight, by next attempt.
    queues: HashMap<String, BTreeSet<DueKey>>,
    /// (next attempt, created, endpoint) of each endpoint's first queued
    /// delivery, for endpoints below their concurrency limit.
    heads: BTreeSet<DueKey>,
    head_of: HashMap<String, (UnixMs, UnixMs)>,
    /// Finished (delivered, dead, cancelled), by last change.
    finished: BTreeSet<(UnixMs, String)>,
    in_flight: HashSet<String>,
    flying: HashMap<String, usize>,
    pub(crate) health: HashMap<String, EndpointHealth>,
}

fn due_key(d: &Delivery) -> Option<DueKey> {
    match (d.state, d.next_attempt_ms) {
        (DeliveryState::Pending, Some(t)) => Some((t, d.created_ms, d.id.clone())),
        _ => None,
    }
}

impl Book {
    /// A book making at most `total` attempts at once, `per_endpoint` to
    /// any one endpoint.
    pub(crate) fn new(total: usize, per_endpoint: usize) -> Book {
        Book {
            total,
            per_endpoint,
            deliveries: HashMap::new(),
            queues: HashMap::new(),
            heads: BTreeSet::new(),
            head_of: HashMap::new(),
            finished: BTreeSet::new(),
            in_flight: HashSet::new(),
            flying: HashMap::new(),
            health: HashMap::new(),
        }
    }

    /// A new assignment: only `restored` (the current records of the
    /// assigned partitions) is ours now. Attempts in flight finish; their
    /// results for partitions no longer ours are dropped (`finish`).
    pub(crate) fn reassign(&mut self, restored: Vec<(i32, Delivery)>) {
        self.deliveries.clear();
        self.queues.clear();
        self.heads.clear();
        self.head_of.clear();
        self.finished.clear();
        self.health.clear();
        for (p, d) in restored {
            let h = self.health.entry(d.endpoint_id.clone()).or_default();
            d.attempts.iter().for_each(|a| h.observe(a));
            self.put(p, d);
        }
    }

    pub(crate) fn get(&self, id: &str) -> Option<&Delivery> {
        self.deliveries.get(id).map(|(_, d)| d)
    }

    /// Adds or replaces a delivery (not one in flight: see `finish`).
    pub(crate) fn put(&mut self, partition: i32, d: Delivery) {
        self.unindex(&d.id);
        let endpoint = d.endpoint_id.clone();
        if !self.in_flight.contains(&d.id) {
            if let Some(k) = due_key(&d) {
                self.queues.entry(endpoint.clone()).or_default().insert(k);
            }
        }
        if d.state != DeliveryState::Pending {
            self.finished.insert((d.updated_ms, d.id.clone()));
        }
        self.deliveries.insert(d.id.clone(), (partition, d));
        self.refresh_head(&endpoint);
    }

    pub(crate) fn remove(&mut self, id: &str) {
        if let Some(endpoint) = self.unindex(id) {
            self.deliveries.remove(id);
            self.refresh_head(&endpoint);
        }
    }

    /// Takes `id`'s current copy out of the indexes; its endpoint.
    fn unindex(&mut self, id: &str) -> Option<String> {
        let (_, old) = self.deliveries.get(id)?;
        if let (Some(k), Some(q)) = (due_key(old), self.queues.get_mut(&old.endpoint_id)) {
            q.remove(&k);
        }
        self.finished.remove(&(old.updated_ms, old.id.clone()));
        Some(old.endpoint_id.clone())
    }

    /// Puts `endpoint`'s first queued delivery among the heads if the
    /// endpoint may take one more attempt now.
    fn refresh_head(&mut self, endpoint: &str) {
        if let Some((t, c)) = self.head_of.remove(endpoint) {
            self.heads.remove(&(t, c, endpoint.to_owned()));
        }
        let below_limit = self.flying.get(endpoint).copied().unwrap_or(0) < self.per_endpoint;
        match self.queues.get(endpoint).and_then(|q| q.first()) {
            Some(&(t, c, _)) if below_limit => {
                self.heads.insert((t, c, endpoint.to_owned()));
                self.head_of.insert(endpoint.to_owned(), (t, c));
            }
            None => {
                self.queues.remove(endpoint);
            }
            Some(_) => {}
        }
    }

    /// Deliveries due at `now`, marked in flight, within the limits,
    /// earliest due first. `allowed(endpoint)`: false for endpoints that
    /// must not be called now.
    pub(crate) fn take_due(&mut self, now: UnixMs, allowed: impl Fn(&str) -> bool) -> Vec<(i32, Delivery)> {
        let mut taken = Vec::new();
        let mut passed_over = Vec::new();
        while self.in_flight.len() < self.total {
            let Some(head) = self.heads.first().cloned().filter(|h| h.0 <= now) else { break };
            let endpoint = head.2;
            if !allowed(&endpoint) {
                self.heads.remove(&(head.0, head.1, endpoint.clone()));
                self.head_of.remove(&endpoint);
                passed_over.push(endpoint);
                continue;
            }
            let Some((_, _, id)) = self.queues.get_mut(&endpoint).and_then(|q| q.pop_first()) else { break };
            self.in_flight.insert(id.clone());
            *self.flying.entry(endpoint.clone()).or_default() += 1;
            let (p, d) = &self.deliveries[&id];
            taken.push((*p, d.clone()));
            self.refresh_head(&endpoint);
        }
        for endpoint in passed_over {
            self.refresh_head(&endpoint);
        }
        taken
    }

    /// When the next attempt `take_due` would make is due; `None` when no
    /// attempt can be made before one in flight ends.
    pub(crate) fn next_due(&self, allowed: impl Fn(&str) -> bool) -> Option<UnixMs> {
        if self.in_flight.len() >= self.total {
            return None;
        }
        self.heads.iter().find(|h| allowed(&h.2)).map(|h| h.0)
    }

    /// An attempt's delivery is no longer in flight; `updated` replaces the
    /// book's copy when its partition is still ours (returns false if not).
    pub(crate) fn finish(&mut self, partition: i32, updated: Delivery) -> bool {
        let endpoint = updated.endpoint_id.clone();
        self.in_flight.remove(&updated.id);
        if let Some(n) = self.flying.get_mut(&endpoint) {
            *n = n.saturating_sub(1);
        }
        if let Some(a) = updated.attempts.last() {
            self.health.entry(endpoint.clone()).or_default().observe(a);
        }
        let ours = matches!(self.deliveries.get(&updated.id), Some((p, _)) if *p == partition);
        if ours {
            self.put(partition, updated);
        } else {
            self.refresh_head(&endpoint);
        }
        ours
    }

    /// Pending deliveries (not in flight) of endpoints `gone` says no
    /// longer take deliveries.
    pub(crate) fn stranded(&self, gone: impl Fn(&str) -> bool) -> Vec<(i32, Delivery)> {
        self.queues
            .iter()
            .filter(|(endpoint, _)| gone(endpoint))
            .flat_map(|(_, q)| q.iter().map(|k| self.deliveries[&k.2].clone()))
            .collect()
    }

    /// Finished deliveries last changed before `before`: to forget.
    pub(crate) fn expired(&self, before: UnixMs) -> Vec<(i32, String)> {
        self.finished
            .iter()
            .take_while(|(t, _)| *t < before)
            .map(|(_, id)| (self.deliveries[id].0, id.clone()))
            .collect()
    }

    /// Pending deliveries per endpoint, in flight or not (for the gauge).
    pub(crate) fn pending_by_endpoint(&self) -> HashMap<String, usize> {
        let mut out: HashMap<String, usize> = self.queues.iter().map(|(e, q)| (e.clone(), q.len())).collect();
        for (e, n) in &self.flying {
            *out.entry(e.clone()).or_default() += n;
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
            branch_id: None,
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
        let mut b = Book::new(8, 4);
        let mut restored: Vec<(i32, Delivery)> = (0..10).map(|i| (0, delivery(&format!("e{i}"), "dead", i))).collect();
        restored.push((1, delivery("e-ok", "ok", 50)));
        b.reassign(restored);
        let first = b.take_due(100, |_| true);
        let ids: Vec<&str> = first.iter().map(|(_, d)| d.endpoint_id.as_str()).collect();
        assert_eq!(ids.iter().filter(|e| **e == "dead").count(), 4, "{ids:?}");
        assert!(ids.contains(&"ok"), "the healthy endpoint is not queued behind the dead one: {ids:?}");
        assert!(b.take_due(100, |_| true).is_empty(), "per-endpoint limit holds");
        assert_eq!(b.next_due(|_| true), None, "nothing can go before an attempt ends");
        let (p, mut d) = first.into_iter().find(|(_, d)| d.endpoint_id == "dead").expect("one");
        d.record(
            Attempt { at_ms: 100, status: Some(500), error: None, duration_ms: 1 },
            &Schedule { delays: vec![Duration::from_secs(5); 3] },
            None,
            0.5,
        );
        assert!(b.finish(p, d));
        assert_eq!(b.next_due(|_| true), Some(4), "the dead endpoint's next in line");
        assert_eq!(b.take_due(100, |_| true).len(), 1, "a slot freed");
        assert_eq!(b.health["dead"].failing_since_ms, Some(100));
    }

    #[test]
    fn results_for_partitions_no_longer_owned_are_dropped() {
        let mut b = Book::new(10, 10);
        b.reassign(vec![(3, delivery("e1", "w", 0))]);
        let (p, d) = b.take_due(0, |_| true).pop().expect("due");
        b.reassign(vec![]);
        assert!(!b.finish(p, d));
        assert!(b.get("e1~w").is_none());
    }

    #[test]
    fn disallowed_endpoints_wait_and_are_found_stranded() {
        let mut b = Book::new(10, 10);
        b.reassign(vec![(0, delivery("e1", "off", 0)), (0, delivery("e2", "on", 0))]);
        let taken = b.take_due(0, |e| e != "off");
        assert_eq!(taken.len(), 1);
        assert_eq!(b.next_due(|e| e != "off"), None, "a disallowed endpoint never looks due");
        assert_eq!(b.next_due(|_| true), Some(0), "and is still queued");
        assert_eq!(b.stranded(|e| e == "off").len(), 1);
        assert_eq!(b.pending_by_endpoint().get("off"), Some(&1));
    }

    #[test]
    fn the_indexes_follow_every_change() {
        let mut b = Book::new(10, 10);
        b.reassign(vec![(0, delivery("e1", "w", 10)), (0, delivery("e2", "w", 20))]);
        // Rescheduled later: no longer due at its old time.
        let mut later = b.get("e1~w").expect("e1").clone();
        later.next_attempt_ms = Some(30);
        b.put(0, later);
        let ids = |v: Vec<(i32, Delivery)>| v.into_iter().map(|(_, d)| d.id).collect::<Vec<_>>();
        assert_eq!(ids(b.take_due(25, |_| true)), ["e2~w"]);
        // Finished: out of the queue, expires after its last change only.
        let mut done = b.get("e1~w").expect("e1").clone();
        done.end(DeliveryState::Cancelled, "endpoint deleted", 40);
        b.put(0, done);
        assert!(b.take_due(100, |_| true).is_empty());
        assert!(b.expired(40).is_empty());
        assert_eq!(b.expired(41), [(0, "e1~w".to_string())]);
        b.remove("e1~w");
        assert!(b.expired(i64::MAX).is_empty() && b.get("e1~w").is_none());
        assert_eq!(b.pending_by_endpoint().get("w"), Some(&1), "e2, in flight");
    }
}
