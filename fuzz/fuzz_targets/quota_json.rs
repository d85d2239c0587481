//! Quota and plan JSON as the API receives it: parse, then compute the
//! effective quota and its most used metric without panicking or wrapping.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meter_core::{Plan, ProjectQuotaConfig};

fuzz_target!(|data: &[u8]| {
    let plan = serde_json::from_slice::<Plan>(data).ok().and_then(|p| p.normalized().ok());
    if let Ok(cfg) = serde_json::from_slice::<ProjectQuotaConfig>(data) {
        let (quota, thresholds) = cfg.effective(plan.as_ref());
        let usage = [u64::MAX, 0, 1, data.len() as u64, u64::MAX / 2];
        if let Some((_, used, limit, percent)) = quota.highest_use(usage) {
            assert!(limit > 0 || used == 0 || percent > 0);
        }
        assert!(thresholds.iter().all(|t| *t <= 100), "{thresholds:?}");
    }
});
