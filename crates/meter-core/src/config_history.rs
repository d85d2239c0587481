//! The trail of quota and plan changes: one record per change on the topic
//! `meter.config.history` (kept forever), written by the API in the same
//! Kafka transaction as the change itself, so the trail has every change
//! that took effect and nothing else.

use serde::{Deserialize, Serialize};

use crate::{Plan, ProjectQuotaConfig, UnixMs};

/// What changed: a project's plan and overrides, or a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Changed {
    Project { project_id: String, before: Option<ProjectQuotaConfig>, after: ProjectQuotaConfig },
    Plan { name: String, before: Option<Plan>, after: Plan },
}

/// One change, who made it and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ConfigChange {
    #[serde(flatten)]
    pub changed: Changed,
    /// The name of the API credential that made it ("" without a tokens file).
    pub actor: String,
    /// The `X-Request-ID` of the request that made it.
    pub request_id: String,
    pub changed_ms: UnixMs,
}

impl ConfigChange {
    /// The record key: the config key it changed (`project/<id>`, `plan/<name>`).
    pub fn key(&self) -> String {
        match &self.changed {
            Changed::Project { project_id, .. } => format!("project/{project_id}"),
            Changed::Plan { name, .. } => format!("plan/{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_change_round_trips_with_its_kind() {
        let c = ConfigChange {
            changed: Changed::Project {
                project_id: "p1".into(),
                before: None,
                after: ProjectQuotaConfig { plan: Some("small".into()), ..Default::default() },
            },
            actor: "ops".into(),
            request_id: "r".into(),
            changed_ms: 5,
        };
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["kind"], "project");
        assert_eq!(json["after"]["plan"], "small");
        assert_eq!(serde_json::from_value::<ConfigChange>(json).unwrap(), c);
        assert_eq!(c.key(), "project/p1");
    }
}
