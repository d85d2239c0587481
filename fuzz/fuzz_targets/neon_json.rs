//! A Neon `consumption_metrics` JSON body as ingest's HTTP endpoint
//! receives it: never a panic, and every record it would write decodes in
//! the aggregator, keyed-only, with a key on every event, within the limits.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meter_core::Limits;

const NOW: i64 = 1_760_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(batches) = meter_proto::neon::validate_neon(&Limits::default(), data, "json", 7, NOW) else { return };
    let read = meter_proto::report::round_trip(batches, 8);
    for b in read.expect("ingest wrote a record the aggregator cannot read") {
        assert!(!b.events.is_empty());
        assert!(b.keyed_only && b.session == 7);
        for e in &b.events {
            assert!(e.idempotency_key.is_some());
            Limits::default().check_event(0, e, NOW).expect("a stored event passes the limits");
        }
    }
});
