use super::*;
use crate::DEFAULT_THRESHOLDS;
use proptest::prelude::*;

const NOV: i64 = 1_793_491_200_000; // 2026-11-01
const DEC: i64 = 1_796_083_200_000; // 2026-12-01

fn usage(compute: u64, size: u64) -> Usage {
    let branches = if size == 0 { vec![] } else { vec![("main".to_owned(), size)] };
    Usage { counters: [0, compute, 0, 0], branches, last_ingested_ms: NOV + 5 }
}

fn quota(compute: u64) -> Quota {
    Quota { compute_time_seconds: compute, ..Quota::default() }
}

fn kinds(d: &Decision) -> Vec<(AlertType, Option<u8>)> {
    d.alerts.iter().map(|a| (a.kind, a.threshold)).collect()
}

#[test]
fn thresholds_fire_once_each_then_suspend_once() {
    let t = &DEFAULT_THRESHOLDS;
    let now = NOV + 1000;
    let d = evaluate(None, "p", &usage(40, 0), &quota(100), t, now);
    assert!(d.alerts.is_empty() && d.actions.is_empty() && !d.changed);
    let d = evaluate(None, "p", &usage(50, 0), &quota(100), t, now);
    assert_eq!(kinds(&d), [(AlertType::ThresholdReached, Some(50))]);
    let d = evaluate(Some(&d.state), "p", &usage(85, 0), &quota(100), t, now);
    assert_eq!(kinds(&d), [(AlertType::ThresholdReached, Some(80))]);
    let d2 = evaluate(Some(&d.state), "p", &usage(85, 0), &quota(100), t, now);
    assert!(!d2.changed && d2.alerts.is_empty());
    let d = evaluate(Some(&d.state), "p", &usage(120, 0), &quota(100), t, now);
    assert_eq!(
        kinds(&d),
        [
            (AlertType::ThresholdReached, Some(90)),
            (AlertType::ThresholdReached, Some(100)),
            (AlertType::QuotaExceeded, None),
            (AlertType::ProjectSuspended, None)
        ]
    );
    assert_eq!(d.actions.len(), 1);
    assert_eq!(d.actions[0].kind, ActionKind::Suspend);
    assert_eq!(d.actions[0].idempotency_key, "suspend.p.1793491200.1");
    assert_eq!(d.actions[0].crossing_ingested_ms, NOV + 5);
    let again = evaluate(Some(&d.state), "p", &usage(500, 0), &quota(100), t, now);
    assert!(again.actions.is_empty() && again.alerts.is_empty(), "one suspend per crossing");
}

#[test]
fn raising_the_quota_resumes_and_resolves() {
    let t = &DEFAULT_THRESHOLDS;
    let d = evaluate(None, "p", &usage(120, 0), &quota(100), t, NOV);
    let d = evaluate(Some(&d.state), "p", &usage(120, 0), &quota(1000), t, NOV + 1);
    assert_eq!(d.actions.len(), 1);
    assert_eq!(d.actions[0].kind, ActionKind::Resume);
    assert_eq!(d.actions[0].idempotency_key, "resume.p.1793491200.1");
    assert_eq!(d.actions[0].reason, "quota_raised");
    let resolved: Vec<_> =
        d.alerts.iter().filter(|a| a.kind == AlertType::ThresholdResolved).map(|a| a.threshold).collect();
    assert_eq!(resolved, [Some(50), Some(80), Some(90), Some(100)]);
    assert!(d.alerts.iter().any(|a| a.kind == AlertType::ProjectResumed));
    // 120 of 1000 is under every threshold: nothing fires for the new quota.
    assert!(!d.alerts.iter().any(|a| a.kind == AlertType::ThresholdReached));
    assert!(d.state.suspended.is_none() && d.state.fired.is_empty());
}

#[test]
fn usage_adjusted_under_the_quota_resumes_with_that_reason() {
    let t = &DEFAULT_THRESHOLDS;
    let d = evaluate(None, "p", &usage(120, 0), &quota(100), t, NOV);
    let d = evaluate(Some(&d.state), "p", &usage(70, 0), &quota(100), t, NOV + 1);
    assert_eq!(d.actions.len(), 1);
    assert_eq!((d.actions[0].kind, d.actions[0].reason.as_str()), (ActionKind::Resume, "usage_adjusted"));
    let resolved: Vec<_> =
        d.alerts.iter().filter(|a| a.kind == AlertType::ThresholdResolved).map(|a| a.threshold).collect();
    assert_eq!(resolved, [Some(80), Some(90), Some(100)], "70 of 100 is still past 50 %");
}

#[test]
fn an_alert_is_sent_once_per_cycle_even_if_its_condition_returns() {
    let t = &DEFAULT_THRESHOLDS;
    let d = evaluate(None, "p", &usage(120, 0), &quota(100), t, NOV);
    let d = evaluate(Some(&d.state), "p", &usage(120, 0), &quota(1000), t, NOV + 1);
    assert_eq!(d.alerts.iter().filter(|a| a.kind == AlertType::ThresholdResolved).count(), 4);
    // The quota comes back: suspended again, but the threshold alerts were already sent.
    let d = evaluate(Some(&d.state), "p", &usage(120, 0), &quota(100), t, NOV + 2);
    assert_eq!(kinds(&d), [(AlertType::ProjectSuspended, None)]);
    assert_eq!(d.actions[0].idempotency_key, "suspend.p.1793491200.2");
    // The new cycle resumes; the resolutions were sent already too.
    let d = evaluate(Some(&d.state), "p", &usage(0, 0), &quota(100), t, DEC);
    assert_eq!(kinds(&d), [(AlertType::ProjectResumed, None)]);
    // Next cycle's crossings are new alerts.
    let d = evaluate(Some(&d.state), "p", &usage(60, 0), &quota(100), t, DEC + 1);
    assert_eq!(kinds(&d), [(AlertType::ThresholdReached, Some(50))]);
    assert!(d.state.sent.iter().all(|(_, c)| *c == DEC));
}

#[test]
fn a_new_cycle_resumes_but_storage_stays_counted() {
    let t = &DEFAULT_THRESHOLDS;
    let q = Quota { compute_time_seconds: 100, logical_size_bytes: 1000, ..Quota::default() };
    let d = evaluate(None, "p", &usage(100, 600), &q, t, NOV);
    assert_eq!(
        d.alerts.iter().filter(|a| a.branch_id.as_deref() == Some("main")).count(),
        1,
        "50 % of the branch's quota"
    );
    assert!(d.state.suspended.is_some());
    // December: counters start from zero, storage does not.
    let d = evaluate(Some(&d.state), "p", &usage(0, 600), &q, t, DEC + 1);
    assert_eq!(d.actions[0].kind, ActionKind::Resume);
    assert_eq!(d.actions[0].reason, "new_cycle");
    assert!(d.alerts.iter().all(|a| a.metric != Some(Metric::LogicalSizeBytes)), "{:?}", d.alerts);
    assert_eq!(d.state.fired.iter().filter(|f| f.metric == Metric::LogicalSizeBytes).count(), 1);
    assert_eq!(d.state.suspensions, 0);
}

fn sizes(main: u64, dev: u64) -> Usage {
    Usage { branches: vec![("main".into(), main), ("dev".into(), dev)], ..usage(0, 0) }
}

#[test]
fn a_branch_over_the_storage_quota_is_write_blocked_and_nothing_else() {
    let t = &[80];
    let q = Quota { logical_size_bytes: 1000, ..Quota::default() };
    let d = evaluate(None, "p", &sizes(1200, 100), &q, t, NOV);
    assert!(d.state.suspended.is_none(), "the project is not suspended");
    let calls: Vec<_> =
        d.actions.iter().map(|a| (a.kind, a.branch_id.as_deref(), a.idempotency_key.as_str())).collect();
    assert_eq!(calls, [(ActionKind::BlockWrites, Some("main"), "block_writes.p.logical_size_bytes@main.1")]);
    let named: Vec<_> = d.alerts.iter().map(|a| (a.kind, a.branch_id.as_deref())).collect();
    assert_eq!(
        named,
        [
            (AlertType::ThresholdReached, Some("main")),
            (AlertType::QuotaExceeded, Some("main")),
            (AlertType::BranchWritesBlocked, Some("main"))
        ]
    );
    // Once: the same sizes again decide nothing; the other branch crossing 80 % only alerts.
    let again = evaluate(Some(&d.state), "p", &sizes(1300, 100), &q, t, NOV + 1);
    assert!(again.actions.is_empty() && again.alerts.is_empty());
    let dev = evaluate(Some(&d.state), "p", &sizes(1300, 850), &q, t, NOV + 2);
    assert!(dev.actions.is_empty());
    assert_eq!(
        dev.alerts.iter().map(|a| (a.kind, a.branch_id.as_deref())).collect::<Vec<_>>(),
        [(AlertType::ThresholdReached, Some("dev"))]
    );
    // A new cycle does not unblock (storage never resets); raising the quota does.
    let dec = evaluate(Some(&dev.state), "p", &sizes(1300, 850), &q, t, DEC + 1);
    assert!(dec.actions.is_empty() && dec.state.blocked.len() == 1);
    let raised = Quota { logical_size_bytes: 5000, ..q };
    let d = evaluate(Some(&dec.state), "p", &sizes(1300, 850), &raised, t, DEC + 2);
    let calls: Vec<_> = d.actions.iter().map(|a| (a.kind, a.idempotency_key.as_str(), a.reason.as_str())).collect();
    assert_eq!(calls, [(ActionKind::UnblockWrites, "unblock_writes.p.logical_size_bytes@main.1", "quota_raised")]);
    assert!(d.state.blocked.is_empty());
    // Over again: a new block, a new key.
    let d = evaluate(Some(&d.state), "p", &sizes(6000, 850), &raised, t, DEC + 3);
    assert_eq!(d.actions[0].idempotency_key, "block_writes.p.logical_size_bytes@main.2");
}

#[test]
fn a_project_suspended_for_storage_before_branches_is_resumed() {
    let q = Quota { logical_size_bytes: 1000, ..Quota::default() };
    let mut old = EnforcementState::new("p", NOV);
    old.suspensions = 1;
    old.suspended = Some(Suspension {
        metric: Metric::LogicalSizeBytes,
        usage: 1200,
        quota: 1000,
        since_ms: NOV,
        key: "suspend.p.1793491200.1".into(),
    });
    let d = evaluate(Some(&old), "p", &usage(0, 1200), &q, &[], NOV + 1);
    let calls: Vec<_> = d.actions.iter().map(|a| (a.kind, a.reason.as_str())).collect();
    assert_eq!(
        calls,
        [(ActionKind::Resume, "storage_quota_is_per_branch"), (ActionKind::BlockWrites, "quota_exceeded")]
    );
}

#[test]
fn ids_are_stable_for_the_same_decision() {
    let t = &DEFAULT_THRESHOLDS;
    let a = evaluate(None, "p", &usage(100, 0), &quota(100), t, NOV + 1);
    let b = evaluate(None, "p", &usage(100, 0), &quota(100), t, NOV + 99);
    let ids = |d: &Decision| d.alerts.iter().map(|a| a.id.clone()).collect::<Vec<_>>();
    assert_eq!(ids(&a), ids(&b));
    let mut unique = ids(&a);
    unique.sort();
    unique.dedup();
    assert_eq!(unique.len(), a.alerts.len());
}

#[test]
fn unlimited_metrics_never_alert() {
    let d = evaluate(None, "p", &usage(u64::MAX, u64::MAX), &Quota::default(), &DEFAULT_THRESHOLDS, NOV);
    assert!(!d.changed && d.alerts.is_empty() && d.actions.is_empty());
}

proptest! {
    /// Under growing usage with a fixed quota, within one cycle: each
    /// threshold fires exactly once when crossed, never before, and exactly
    /// one suspend happens, exactly when usage reaches the quota.
    #[test]
    fn growing_usage_fires_each_threshold_once(q in 1u64..10_000, steps in proptest::collection::vec(0u64..3_000, 1..50)) {
        let t = &DEFAULT_THRESHOLDS;
        let mut state = None;
        let mut u = 0u64;
        let mut fired: Vec<(AlertType, Option<u8>)> = Vec::new();
        let mut suspends = 0;
        for s in steps {
            u += s;
            let d = evaluate(state.as_ref(), "p", &usage(u, 0), &quota(q), t, NOV + 1);
            fired.extend(kinds(&d));
            suspends += d.actions.iter().filter(|a| a.kind == ActionKind::Suspend).count();
            prop_assert!(d.actions.iter().all(|a| a.kind == ActionKind::Suspend));
            prop_assert_eq!(d.state.suspended.is_some(), u >= q);
            state = Some(d.state);
        }
        for &th in t {
            let n = fired.iter().filter(|k| **k == (AlertType::ThresholdReached, Some(th))).count();
            prop_assert_eq!(n, usize::from(u128::from(u) * 100 >= u128::from(q) * u128::from(th)));
        }
        prop_assert_eq!(suspends, usize::from(u >= q));
    }
}
