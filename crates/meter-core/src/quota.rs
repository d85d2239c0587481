//! Quotas with Neon's semantics and field names: a limit per metric, `0` or
//! absent meaning no limit; plans are named quota templates with alert
//! thresholds; a project may name a plan and override single limits.

use serde::{Deserialize, Serialize};

use crate::Metric;

/// Alert thresholds, percent of a quota, when a plan names none.
pub const DEFAULT_THRESHOLDS: [u8; 4] = [50, 80, 90, 100];

/// A limit per metric; `0` is no limit. Field names are Neon's.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Quota {
    pub active_time_seconds: u64,
    pub compute_time_seconds: u64,
    pub written_data_bytes: u64,
    pub data_transfer_bytes: u64,
    pub logical_size_bytes: u64,
}

/// `used` of a limit `quota` (> 0) in whole percent, rounded down.
pub fn percent(used: u64, quota: u64) -> u64 {
    (u128::from(used) * 100 / u128::from(quota)).min(u128::from(u64::MAX)) as u64
}

impl Quota {
    /// The limit of `m`, `None` when unlimited.
    pub fn limit(&self, m: Metric) -> Option<u64> {
        let v = match m {
            Metric::ActiveTimeSeconds => self.active_time_seconds,
            Metric::ComputeTimeSeconds => self.compute_time_seconds,
            Metric::WrittenDataBytes => self.written_data_bytes,
            Metric::DataTransferBytes => self.data_transfer_bytes,
            Metric::LogicalSizeBytes => self.logical_size_bytes,
        };
        (v > 0).then_some(v)
    }

    /// Sets `m`'s limit (`0`: unlimited).
    pub fn set(&mut self, m: Metric, v: u64) {
        let slot = match m {
            Metric::ActiveTimeSeconds => &mut self.active_time_seconds,
            Metric::ComputeTimeSeconds => &mut self.compute_time_seconds,
            Metric::WrittenDataBytes => &mut self.written_data_bytes,
            Metric::DataTransferBytes => &mut self.data_transfer_bytes,
            Metric::LogicalSizeBytes => &mut self.logical_size_bytes,
        };
        *slot = v;
    }

    /// The limited metric with the highest use of its quota, given usage
    /// in `Metric::ALL` order: `(metric, usage, quota, percent)`, percent
    /// rounded down. `None` when nothing is limited.
    pub fn highest_use(&self, usage: [u64; 5]) -> Option<(Metric, u64, u64, u64)> {
        Metric::ALL
            .into_iter()
            .zip(usage)
            .filter_map(|(m, u)| {
                let q = self.limit(m)?;
                let pct = percent(u, q);
                Some((m, u, q, pct))
            })
            .max_by(|a, b| (u128::from(a.1) * u128::from(b.2)).cmp(&(u128::from(b.1) * u128::from(a.2))))
    }
}

/// Per-project overrides of a plan's limits: an absent field inherits the
/// plan's, `0` lifts the limit.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub active_time_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub compute_time_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written_data_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data_transfer_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub logical_size_bytes: Option<u64>,
}

impl QuotaOverrides {
    /// `m`'s override, `None` when it inherits the plan's.
    pub fn get(&self, m: Metric) -> Option<u64> {
        *self.slot(m)
    }

    /// Sets or drops (`None`) `m`'s override.
    pub fn set(&mut self, m: Metric, v: Option<u64>) {
        *self.slot_mut(m) = v;
    }

    fn slot(&self, m: Metric) -> &Option<u64> {
        match m {
            Metric::ActiveTimeSeconds => &self.active_time_seconds,
            Metric::ComputeTimeSeconds => &self.compute_time_seconds,
            Metric::WrittenDataBytes => &self.written_data_bytes,
            Metric::DataTransferBytes => &self.data_transfer_bytes,
            Metric::LogicalSizeBytes => &self.logical_size_bytes,
        }
    }

    fn slot_mut(&mut self, m: Metric) -> &mut Option<u64> {
        match m {
            Metric::ActiveTimeSeconds => &mut self.active_time_seconds,
            Metric::ComputeTimeSeconds => &mut self.compute_time_seconds,
            Metric::WrittenDataBytes => &mut self.written_data_bytes,
            Metric::DataTransferBytes => &mut self.data_transfer_bytes,
            Metric::LogicalSizeBytes => &mut self.logical_size_bytes,
        }
    }

    /// `base` with these overrides applied.
    pub fn apply(&self, base: Quota) -> Quota {
        Quota {
            active_time_seconds: self.active_time_seconds.unwrap_or(base.active_time_seconds),
            compute_time_seconds: self.compute_time_seconds.unwrap_or(base.compute_time_seconds),
            written_data_bytes: self.written_data_bytes.unwrap_or(base.written_data_bytes),
            data_transfer_bytes: self.data_transfer_bytes.unwrap_or(base.data_transfer_bytes),
            logical_size_bytes: self.logical_size_bytes.unwrap_or(base.logical_size_bytes),
        }
    }
}

/// A named quota template with its alert thresholds.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub name: String,
    #[serde(default)]
    pub quota: Quota,
    /// Percent of each quota at which an alert fires, ascending, 1..=100.
    #[serde(default = "default_thresholds")]
    pub thresholds: Vec<u8>,
}

fn default_thresholds() -> Vec<u8> {
    DEFAULT_THRESHOLDS.to_vec()
}

impl Plan {
    /// Sorts and checks the thresholds; the error names the problem.
    pub fn normalized(mut self) -> Result<Plan, String> {
        if self.thresholds.iter().any(|&t| t == 0 || t > 100) {
            return Err("thresholds: each must be between 1 and 100 (percent)".into());
        }
        self.thresholds.sort_unstable();
        self.thresholds.dedup();
        Ok(self)
    }
}

/// What is configured for one project: a plan and overrides.
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectQuotaConfig {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub plan: Option<String>,
    pub quota: QuotaOverrides,
}

impl ProjectQuotaConfig {
    /// The effective quota and thresholds, given the plan it names (if found).
    pub fn effective(&self, plan: Option<&Plan>) -> (Quota, Vec<u8>) {
        let (quota, thresholds) = self.limits(plan);
        (quota, thresholds.to_vec())
    }

    /// `effective`, the thresholds borrowed from the plan (or the defaults).
    pub fn limits<'p>(&self, plan: Option<&'p Plan>) -> (Quota, &'p [u8]) {
        let base = plan.map(|p| p.quota).unwrap_or_default();
        (self.quota.apply(base), plan.map_or(&DEFAULT_THRESHOLDS[..], |p| &p.thresholds[..]))
    }
}

/// One field of a JSON merge patch (RFC 7396): absent keeps the stored
/// value, `null` clears it, a value replaces it. Fields of this type need
/// `#[serde(default)]` so that absent means `Keep`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Patch<T> {
    #[default]
    Keep,
    Clear,
    Set(T),
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Patch<T> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Ok(Option::<T>::deserialize(d)?.map_or(Patch::Clear, Patch::Set))
    }
}

impl<T> Patch<T> {
    /// `current` with this patch applied.
    pub fn apply(self, current: Option<T>) -> Option<T> {
        match self {
            Patch::Keep => current,
            Patch::Clear => None,
            Patch::Set(v) => Some(v),
        }
    }
}

/// A merge patch of a project's overrides: `null` on a metric drops its
/// override (the plan's limit applies again).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct QuotaOverridesPatch {
    pub active_time_seconds: Patch<u64>,
    pub compute_time_seconds: Patch<u64>,
    pub written_data_bytes: Patch<u64>,
    pub data_transfer_bytes: Patch<u64>,
    pub logical_size_bytes: Patch<u64>,
}

impl QuotaOverridesPatch {
    /// `current` with this patch applied.
    pub fn apply(self, current: QuotaOverrides) -> QuotaOverrides {
        QuotaOverrides {
            active_time_seconds: self.active_time_seconds.apply(current.active_time_seconds),
            compute_time_seconds: self.compute_time_seconds.apply(current.compute_time_seconds),
            written_data_bytes: self.written_data_bytes.apply(current.written_data_bytes),
            data_transfer_bytes: self.data_transfer_bytes.apply(current.data_transfer_bytes),
            logical_size_bytes: self.logical_size_bytes.apply(current.logical_size_bytes),
        }
    }
}

/// Overrides as a patch: each limit given replaces the current one, the
/// others are kept (how Neon's `PATCH /projects/{id}` treats
/// `settings.quota`).
impl From<QuotaOverrides> for QuotaOverridesPatch {
    fn from(o: QuotaOverrides) -> Self {
        let set = |v: Option<u64>| v.map_or(Patch::Keep, Patch::Set);
        QuotaOverridesPatch {
            active_time_seconds: set(o.active_time_seconds),
            compute_time_seconds: set(o.compute_time_seconds),
            written_data_bytes: set(o.written_data_bytes),
            data_transfer_bytes: set(o.data_transfer_bytes),
            logical_size_bytes: set(o.logical_size_bytes),
        }
    }
}

/// A merge patch of a project's configuration (`PATCH /v1/projects/{id}/quota`):
/// `"plan": null` leaves the project without a plan, `"quota": null` drops
/// every override, and a `quota` object patches single overrides (a metric
/// absent: kept; `null`: the plan's limit again; `0`: no limit).
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ProjectQuotaPatch {
    pub plan: Patch<String>,
    pub quota: Patch<QuotaOverridesPatch>,
}

impl ProjectQuotaPatch {
    /// `current` with this patch applied.
    pub fn apply(self, current: ProjectQuotaConfig) -> ProjectQuotaConfig {
        let quota = match self.quota {
            Patch::Keep => current.quota,
            Patch::Clear => QuotaOverrides::default(),
            Patch::Set(p) => p.apply(current.quota),
        };
        ProjectQuotaConfig { plan: self.plan.apply(current.plan), quota }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_and_overrides_are_set_per_metric() {
        let mut q = Quota::default();
        let mut o = QuotaOverrides::default();
        for (i, m) in Metric::ALL.into_iter().enumerate() {
            q.set(m, i as u64 + 1);
            o.set(m, Some(i as u64 * 10));
        }
        for (i, m) in Metric::ALL.into_iter().enumerate() {
            assert_eq!(q.limit(m), Some(i as u64 + 1));
            assert_eq!(o.get(m), Some(i as u64 * 10));
        }
        q.set(Metric::WrittenDataBytes, 0);
        assert_eq!(q.limit(Metric::WrittenDataBytes), None, "0 is unlimited");
        o.set(Metric::WrittenDataBytes, None);
        assert_eq!(o.apply(q).written_data_bytes, 0, "no override: the base's");
        assert_eq!(o.apply(q).data_transfer_bytes, 30);
    }

    #[test]
    fn merge_patch_keeps_absent_fields_clears_nulls_and_sets_values() {
        let current = ProjectQuotaConfig {
            plan: Some("small".into()),
            quota: QuotaOverrides {
                compute_time_seconds: Some(10),
                written_data_bytes: Some(20),
                ..Default::default()
            },
        };
        let patch = |j: &str| serde_json::from_str::<ProjectQuotaPatch>(j).unwrap().apply(current.clone());
        assert_eq!(patch("{}"), current);
        let p = patch(r#"{"quota": {"compute_time_seconds": null, "data_transfer_bytes": 0}}"#);
        assert_eq!(p.plan.as_deref(), Some("small"));
        assert_eq!(
            p.quota,
            QuotaOverrides { written_data_bytes: Some(20), data_transfer_bytes: Some(0), ..Default::default() }
        );
        let p = patch(r#"{"plan": null, "quota": null}"#);
        assert_eq!(p, ProjectQuotaConfig::default());
        assert_eq!(patch(r#"{"plan": "large"}"#).plan.as_deref(), Some("large"));
        let sent = QuotaOverrides { written_data_bytes: Some(0), active_time_seconds: Some(5), ..Default::default() };
        let neon = ProjectQuotaPatch { quota: Patch::Set(sent.into()), ..Default::default() }.apply(current.clone());
        assert_eq!(
            neon.quota,
            QuotaOverrides {
                compute_time_seconds: Some(10),
                written_data_bytes: Some(0),
                active_time_seconds: Some(5),
                ..Default::default()
            }
        );
        assert_eq!(neon.plan, current.plan);
        for bad in [r#"{"quota": {"cpu": 1}}"#, r#"{"plans": "x"}"#, r#"{"quota": {"written_data_bytes": -1}}"#] {
            assert!(serde_json::from_str::<ProjectQuotaPatch>(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn highest_use_compares_exact_ratios() {
        let q = Quota { active_time_seconds: 300, written_data_bytes: 1000, ..Quota::default() };
        assert_eq!(Quota::default().highest_use([5, 5, 5, 5, 5]), None);
        // 200/300 = 66.7 % beats 660/1000 = 66 %.
        assert_eq!(q.highest_use([200, 9, 660, 9, 9]), Some((Metric::ActiveTimeSeconds, 200, 300, 66)));
        assert_eq!(q.highest_use([0, 0, 2500, 0, 0]), Some((Metric::WrittenDataBytes, 2500, 1000, 250)));
    }

    #[test]
    fn zero_or_absent_is_no_limit() {
        let q: Quota = serde_json::from_str(r#"{"compute_time_seconds": 3600}"#).unwrap();
        assert_eq!(q.limit(Metric::ComputeTimeSeconds), Some(3600));
        assert_eq!(q.limit(Metric::ActiveTimeSeconds), None);
        assert_eq!(Quota { written_data_bytes: 0, ..q }.limit(Metric::WrittenDataBytes), None);
    }

    #[test]
    fn overrides_inherit_or_replace_the_plan() {
        let plan = Plan {
            name: "free".into(),
            quota: Quota { active_time_seconds: 100, compute_time_seconds: 50, ..Quota::default() },
            thresholds: vec![75],
        };
        let cfg = ProjectQuotaConfig {
            plan: Some("free".into()),
            quota: QuotaOverrides { compute_time_seconds: Some(0), written_data_bytes: Some(9), ..Default::default() },
        };
        let (q, t) = cfg.effective(Some(&plan));
        assert_eq!((q.active_time_seconds, q.compute_time_seconds, q.written_data_bytes), (100, 0, 9));
        assert_eq!(t, [75]);
        assert_eq!(ProjectQuotaConfig::default().effective(None).1, DEFAULT_THRESHOLDS);
    }

    #[test]
    fn bad_json_names_the_field() {
        let err = serde_json::from_str::<Quota>(r#"{"compute_time_seconds": -1}"#).unwrap_err().to_string();
        assert!(err.contains("invalid value: integer `-1`"), "{err}");
        let err = serde_json::from_str::<Quota>(r#"{"cpu_seconds": 1}"#).unwrap_err().to_string();
        assert!(err.contains("unknown field `cpu_seconds`"), "{err}");
        let err = Plan { name: "x".into(), quota: Quota::default(), thresholds: vec![0] }.normalized().unwrap_err();
        assert!(err.starts_with("thresholds"));
    }
}
