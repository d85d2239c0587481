//! A Kafka record of the events topic as the aggregator reads it: decode,
//! then fold it into a project's state twice (the second time must be a
//! duplicate and change nothing).
#![no_main]

use libfuzzer_sys::fuzz_target;
use meter_core::aggregate::Retention;
use meter_core::{Metric, ProjectState, ProjectUpdate};

fuzz_target!(|data: &[u8]| {
    let Ok(batches) = meter_proto::decode_record(data) else { return };
    for batch in batches {
        check(&batch);
    }
});

fn check(batch: &meter_core::Batch) {
    let mut state = ProjectState::new(batch.project_id.clone());
    let retention = Retention::default();
    if let ProjectUpdate::Counted { rows, .. } = state.apply(batch, &retention) {
        // The hour split is exact: per counter, the rows sum to the events.
        for m in Metric::COUNTERS {
            let events: u128 = batch.events.iter().filter(|e| e.metric == m).map(|e| e.value as u128).sum();
            let split: u128 = rows.iter().filter(|r| r.metric == m).map(|r| r.value as u128).sum();
            if events < u64::MAX as u128 {
                assert_eq!(events, split, "{m:?}");
            }
        }
    }
    let once = format!("{state:?}");
    let _ = state.apply(batch, &retention);
    assert_eq!(once, format!("{state:?}"), "a replayed batch changed the state");
}
