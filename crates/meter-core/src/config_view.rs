//! The configuration every role shares (plans, project quotas, webhook
//! endpoints), as kept in the compacted config topic: key `plan/<name>`,
//! `project/<id>` or `webhook/<id>`, JSON value, tombstone to delete.

use std::collections::{BTreeMap, HashMap};

use serde::{Deserialize, Serialize};

use crate::enforce::AlertType;
use crate::{FastHash, Plan, ProjectQuotaConfig, Quota};

/// A webhook endpoint: where alerts go, signed with `secret`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookEndpoint {
    #[serde(default)]
    pub id: String,
    pub url: String,
    /// `whsec_` followed by the base64 of the key (Standard Webhooks).
    pub secret: String,
    /// Event types wanted; empty for all.
    #[serde(default)]
    pub event_types: Vec<AlertType>,
    /// Gets nothing while disabled (by an operator, or by the dispatcher
    /// after failing continuously for `webhook_disable_after_ms`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub disabled: bool,
    /// Why it was disabled, when the dispatcher did it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disabled_reason: Option<String>,
}

impl WebhookEndpoint {
    /// True when this endpoint wants `kind`.
    pub fn wants(&self, kind: AlertType) -> bool {
        self.event_types.is_empty() || self.event_types.contains(&kind)
    }
}

impl std::fmt::Debug for WebhookEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookEndpoint")
            .field("id", &self.id)
            .field("url", &self.url)
            .field("secret", &"<redacted>")
            .field("event_types", &self.event_types)
            .field("disabled", &self.disabled)
            .finish()
    }
}

/// What a config record is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ConfigKey {
    Plan(String),
    Project(String),
    Webhook(String),
    /// A closed billing cycle, by name (`2026-11`).
    Cycle(String),
}

impl ConfigKey {
    /// The record key.
    pub fn encode(&self) -> String {
        match self {
            ConfigKey::Plan(n) => format!("plan/{n}"),
            ConfigKey::Project(p) => format!("project/{p}"),
            ConfigKey::Webhook(w) => format!("webhook/{w}"),
            ConfigKey::Cycle(c) => format!("cycle/{c}"),
        }
    }

    /// Parses a record key.
    pub fn decode(key: &str) -> Option<ConfigKey> {
        let (kind, name) = key.split_once('/')?;
        match kind {
            "plan" => Some(ConfigKey::Plan(name.to_owned())),
            "project" => Some(ConfigKey::Project(name.to_owned())),
            "webhook" => Some(ConfigKey::Webhook(name.to_owned())),
            "cycle" => Some(ConfigKey::Cycle(name.to_owned())),
            _ => None,
        }
    }
}

/// The latest configuration.
#[derive(Debug, Clone, Default)]
pub struct ConfigView {
    pub plans: HashMap<String, Plan>,
    /// Hashed with `FastHash`: looked up for every project evaluated.
    pub projects: HashMap<String, ProjectQuotaConfig, FastHash>,
    pub webhooks: BTreeMap<String, WebhookEndpoint>,
    /// Closed billing cycles, by name (`2026-11`).
    pub closed_cycles: BTreeMap<String, CycleClosed>,
}

/// A billing cycle's close: who closed it and when. Its numbers never
/// change after (see `meter_core::aggregate::ProjectState::apply_closed`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CycleClosed {
    pub cycle_start_ms: crate::UnixMs,
    pub closed_ms: crate::UnixMs,
    pub actor: String,
    pub request_id: String,
}

impl ConfigView {
    /// Applies one record of the config topic; `None` deletes.
    pub fn apply(&mut self, key: &[u8], value: Option<&[u8]>) -> Result<ConfigKey, String> {
        let key_text = std::str::from_utf8(key).map_err(|_| "config key is not UTF-8".to_string())?;
        let k = ConfigKey::decode(key_text).ok_or_else(|| format!("unknown config key {key_text:?}"))?;
        let bad = |e: serde_json::Error| format!("config record {key_text}: {e}");
        match (&k, value) {
            (ConfigKey::Plan(n), Some(v)) => {
                self.plans.insert(n.clone(), serde_json::from_slice(v).map_err(bad)?);
            }
            (ConfigKey::Project(p), Some(v)) => {
                self.projects.insert(p.clone(), serde_json::from_slice(v).map_err(bad)?);
            }
            (ConfigKey::Webhook(w), Some(v)) => {
                self.webhooks.insert(w.clone(), serde_json::from_slice(v).map_err(bad)?);
            }
            (ConfigKey::Cycle(c), Some(v)) => {
                self.closed_cycles.insert(c.clone(), serde_json::from_slice(v).map_err(bad)?);
            }
            (ConfigKey::Cycle(c), None) => drop(self.closed_cycles.remove(c)),
            (ConfigKey::Plan(n), None) => drop(self.plans.remove(n)),
            (ConfigKey::Project(p), None) => drop(self.projects.remove(p)),
            (ConfigKey::Webhook(w), None) => drop(self.webhooks.remove(w)),
        }
        Ok(k)
    }

    /// A project's effective quota and the name of its plan, without
    /// copying anything (for listings over the whole fleet).
    pub fn quota_of(&self, project: &str) -> (Quota, Option<&str>) {
        let (quota, _, name) = self.resolve(project);
        (quota, name)
    }

    /// A project's effective quota and alert thresholds, borrowed: the
    /// enforcer asks for every project a transaction touched (copying the
    /// project's configuration each time was ~9 % of its loop in the
    /// collectors' shape, issue 19).
    pub fn limits_of(&self, project: &str) -> (Quota, &[u8]) {
        let (quota, thresholds, _) = self.resolve(project);
        (quota, thresholds)
    }

    /// A project's effective quota, thresholds and plan name, copied.
    pub fn effective(&self, project: &str) -> (Quota, Vec<u8>, Option<String>) {
        let (quota, thresholds, name) = self.resolve(project);
        (quota, thresholds.to_vec(), name.map(str::to_owned))
    }

    /// A project's effective quota and thresholds (`ProjectQuotaConfig::limits`,
    /// its plan looked up once) and its plan's name as configured.
    fn resolve(&self, project: &str) -> (Quota, &[u8], Option<&str>) {
        let Some(cfg) = self.projects.get(project) else {
            let (quota, thresholds) = ProjectQuotaConfig::default().limits(None);
            return (quota, thresholds, None);
        };
        let plan = cfg.plan.as_ref().and_then(|n| self.plans.get(n));
        let (quota, thresholds) = cfg.limits(plan);
        (quota, thresholds, cfg.plan.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_apply_and_tombstones_delete() {
        let mut v = ConfigView::default();
        v.apply(b"plan/free", Some(br#"{"name":"free","quota":{"compute_time_seconds":10}}"#)).unwrap();
        v.apply(b"project/p1", Some(br#"{"plan":"free","quota":{"written_data_bytes":5}}"#)).unwrap();
        let (q, t, plan) = v.effective("p1");
        assert_eq!((q.compute_time_seconds, q.written_data_bytes, plan.as_deref()), (10, 5, Some("free")));
        assert_eq!(v.quota_of("p1"), (q, Some("free")), "the borrowed form agrees");
        assert_eq!(v.quota_of("nobody"), (Quota::default(), None));
        assert_eq!(v.limits_of("p1"), (q, &t[..]), "the borrowed form agrees");
        assert_eq!(v.limits_of("nobody"), (Quota::default(), &crate::DEFAULT_THRESHOLDS[..]));
        v.apply(b"plan/scale", Some(br#"{"name":"scale","quota":{},"thresholds":[75,100]}"#)).unwrap();
        v.apply(b"project/p2", Some(br#"{"plan":"scale"}"#)).unwrap();
        assert_eq!(v.limits_of("p2").1, [75, 100]);
        assert_eq!(v.effective("p2").1, [75, 100]);
        assert_eq!(t, crate::DEFAULT_THRESHOLDS);
        assert_eq!(v.apply(b"project/p1", None).unwrap(), ConfigKey::Project("p1".into()));
        assert_eq!(v.effective("p1").0, Quota::default());
        assert!(v.apply(b"nope", None).is_err());
        assert!(v.apply(b"plan/x", Some(b"{")).unwrap_err().contains("plan/x"));
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let w = WebhookEndpoint {
            id: "w".into(),
            url: "http://x".into(),
            secret: "whsec_c2VjcmV0".into(),
            event_types: vec![],
            disabled: false,
            disabled_reason: None,
        };
        assert!(!format!("{w:?}").contains("c2VjcmV0"));
    }
}
