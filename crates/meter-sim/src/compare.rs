//! Comparing what the pipeline stored with the ground truth, exactly.

use meter_core::Metric;
use meter_store::ProjectUsage;

use crate::Truth;

/// One value that differs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mismatch {
    pub project_id: String,
    pub metric: Metric,
    pub truth: u64,
    pub stored: u64,
}

/// Every difference between `truth` and `stored` (projects missing on
/// either side count as zeros).
pub fn compare(truth: &Truth, stored: &[ProjectUsage]) -> Vec<Mismatch> {
    let mut out = Vec::new();
    let mut ids: Vec<&str> = truth.projects.keys().map(String::as_str).collect();
    ids.extend(stored.iter().map(|s| s.project_id.as_str()));
    ids.sort_unstable();
    ids.dedup();
    for id in ids {
        let t = truth.projects.get(id).cloned().unwrap_or_default();
        let s = stored.iter().find(|s| s.project_id == id);
        for m in Metric::ALL {
            let (tv, sv) = (t.get(m), s.map_or(0, |s| s.get(m)));
            if tv != sv {
                out.push(Mismatch { project_id: id.to_owned(), metric: m, truth: tv, stored: sv });
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProjectTruth;

    fn usage(id: &str, active: u64) -> ProjectUsage {
        ProjectUsage {
            project_id: id.into(),
            active_time_seconds: active,
            compute_time_seconds: 0,
            written_data_bytes: 0,
            data_transfer_bytes: 0,
            logical_size_bytes: 0,
            logical_size_bytes_hour: 0,
        }
    }

    #[test]
    fn finds_differences_and_missing_projects() {
        let mut t = Truth::default();
        t.projects.insert("a".into(), ProjectTruth { counters: [5, 0, 0, 0], branches: Default::default() });
        t.projects.insert("b".into(), ProjectTruth { counters: [1, 0, 0, 0], branches: Default::default() });
        assert!(compare(&t, &[usage("a", 5), usage("b", 1)]).is_empty());
        let diff = compare(&t, &[usage("a", 6), usage("c", 1)]);
        let keys: Vec<(&str, u64, u64)> = diff.iter().map(|m| (m.project_id.as_str(), m.truth, m.stored)).collect();
        assert_eq!(keys, [("a", 5, 6), ("b", 1, 0), ("c", 0, 1)]);
    }
}
