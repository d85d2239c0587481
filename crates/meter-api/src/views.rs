//! In-memory views of the state topics, kept current by followers.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};

use meter_core::adjust::AdjustmentOutcome;
use meter_core::config_history::ConfigChange;
use meter_core::config_view::ConfigView;
use meter_core::delivery::Delivery;
use meter_core::enforce::EnforcementState;
use meter_core::{FastHash, Totals};
use meter_enforcer::{CallRecord, DeadLetter};
use meter_kafka::{Follower, KafkaConfig};
use meter_proto::decode_usage;

/// Everything the API reads.
#[derive(Debug, Default)]
pub(crate) struct State {
    pub(crate) config: ConfigView,
    pub(crate) totals: HashMap<String, Totals, FastHash>,
    pub(crate) enforcement: HashMap<String, EnforcementState>,
    pub(crate) dead_letters: BTreeMap<String, DeadLetter>,
    /// Webhook deliveries by id.
    pub(crate) deliveries: HashMap<String, Delivery>,
    /// The latest control-plane call per project.
    pub(crate) calls: HashMap<String, CallRecord>,
    /// Every quota and plan change, by config key (`project/<id>`,
    /// `plan/<name>`), oldest first.
    pub(crate) config_history: HashMap<String, Vec<ConfigChange>>,
    /// Every adjustment judged, by project and idempotency key.
    pub(crate) adjustments: HashMap<String, BTreeMap<String, AdjustmentOutcome>>,
}

impl State {
    /// Adds a change to the trail, once: the api that made it adds it when
    /// its transaction commits (read-your-writes), the follower when it reads it.
    pub(crate) fn record_change(&mut self, c: ConfigChange) {
        let changes = self.config_history.entry(c.key()).or_default();
        if !changes.contains(&c) {
            changes.push(c);
        }
    }
}

/// Shared handle on the views.
#[derive(Debug, Clone, Default)]
pub(crate) struct Views(pub(crate) Arc<RwLock<State>>);

impl Views {
    /// Starts one follower per state topic.
    pub(crate) fn follow(kafka: &KafkaConfig) -> anyhow::Result<(Views, Vec<Follower>)> {
        let views = Views::default();
        let v = views.clone();
        let config = Follower::start(kafka, &kafka.config_topic, move |(_, _, k, val)| {
            if let Err(e) = v.0.write().expect("views").config.apply(k, val) {
                tracing::error!(error = %e, "api.bad_config_record");
            }
        })?;
        let v = views.clone();
        let totals = Follower::start(kafka, &kafka.totals_topic, move |(_, _, _, val)| {
            let Some(bytes) = val else { return };
            match decode_usage(bytes) {
                Ok(states) if states.is_empty() => {}
                Ok(states) => {
                    let mut g = v.0.write().expect("views");
                    // Replaced in place: a collector's transaction writes
                    // tens of thousands of states, nearly all of known projects.
                    for s in states {
                        match g.totals.get_mut(s.project_id.as_str()) {
                            Some(cur) if cur.version >= s.version => {}
                            Some(cur) => *cur = s,
                            None => drop(g.totals.insert(s.project_id.to_string(), s)),
                        }
                    }
                }
                Err(e) => tracing::error!(error = %e, "api.bad_totals_record"),
            }
        })?;
        let v = views.clone();
        let enforcement = Follower::start(kafka, &kafka.enforcement_topic, move |(_, _, _, val)| {
            let Some(bytes) = val else { return };
            match serde_json::from_slice::<EnforcementState>(bytes) {
                Ok(s) => drop(v.0.write().expect("views").enforcement.insert(s.project_id.clone(), s)),
                Err(e) => tracing::error!(error = %e, "api.bad_enforcement_record"),
            }
        })?;
        let v = views.clone();
        let dead = Follower::start(kafka, &kafka.dead_letters_topic, move |(_, _, k, val)| {
            let key = String::from_utf8_lossy(k).into_owned();
            let mut g = v.0.write().expect("views");
            match val.map(serde_json::from_slice::<DeadLetter>) {
                None => drop(g.dead_letters.remove(&key)),
                Some(Ok(d)) => drop(g.dead_letters.insert(key, d)),
                Some(Err(e)) => tracing::error!(error = %e, "api.bad_dead_letter_record"),
            }
        })?;
        let v = views.clone();
        let deliveries = Follower::start(kafka, &kafka.deliveries_topic, move |(_, _, k, val)| {
            let key = String::from_utf8_lossy(k).into_owned();
            let mut g = v.0.write().expect("views");
            match val.map(serde_json::from_slice::<Delivery>) {
                None => drop(g.deliveries.remove(&key)),
                Some(Ok(d)) => drop(g.deliveries.insert(key, d)),
                Some(Err(e)) => tracing::error!(error = %e, "api.bad_delivery_record"),
            }
        })?;
        let v = views.clone();
        let calls = Follower::start(kafka, &kafka.calls_topic, move |(_, _, _, val)| {
            let Some(bytes) = val else { return };
            match serde_json::from_slice::<CallRecord>(bytes) {
                Ok(c) => drop(v.0.write().expect("views").calls.insert(c.project_id.clone(), c)),
                Err(e) => tracing::error!(error = %e, "api.bad_call_record"),
            }
        })?;
        let v = views.clone();
        let adjustments = Follower::start(kafka, &kafka.adjustments_topic, move |(_, _, _, val)| {
            let Some(bytes) = val else { return };
            match serde_json::from_slice::<AdjustmentOutcome>(bytes) {
                Ok(o) => {
                    let mut g = v.0.write().expect("views");
                    let project = g.adjustments.entry(o.adjustment.project_id.to_string()).or_default();
                    project.insert(o.adjustment.idempotency_key.clone(), o);
                }
                Err(e) => tracing::error!(error = %e, "api.bad_adjustment_record"),
            }
        })?;
        let v = views.clone();
        let history = Follower::start(kafka, &kafka.config_history_topic, move |(_, _, _, val)| {
            let Some(bytes) = val else { return };
            match serde_json::from_slice::<ConfigChange>(bytes) {
                Ok(c) => v.0.write().expect("views").record_change(c),
                Err(e) => tracing::error!(error = %e, "api.bad_config_history_record"),
            }
        })?;
        Ok((views, vec![config, totals, enforcement, dead, deliveries, calls, adjustments, history]))
    }
}
