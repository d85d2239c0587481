//! A gRPC Report body as ingest receives it: decode, validate, and every
//! record ingest would write must decode in the aggregator to the same
//! project and number of events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meter_core::Limits;
use meter_proto::v1::ReportRequest;
use prost::Message;

const NOW: i64 = 1_760_000_000_000;

fuzz_target!(|data: &[u8]| {
    let Ok(req) = ReportRequest::decode(data) else { return };
    let n = req.events.len();
    let Ok(batches) = meter_proto::report::validate(&Limits::default(), req, NOW) else { return };
    assert_eq!(batches.iter().map(|b| b.events.len()).sum::<usize>(), n);
    let read = meter_proto::report::round_trip(batches, 8);
    for b in read.expect("ingest wrote a record the aggregator cannot read") {
        assert!(!b.events.is_empty());
        for e in &b.events {
            Limits::default().check_event(0, e, NOW).expect("a stored event passes the limits");
        }
    }
});
