//! A gRPC Report body as ingest receives it: read from its bytes
//! (`report_read`) only as prost decodes and `validate` accepts it, to the
//! same records (or left to them); and every record ingest would write must decode in the
//! aggregator to the same project and number of events.
#![no_main]

use libfuzzer_sys::fuzz_target;
use meter_core::Limits;
use meter_proto::report_read::ReadReport;
use meter_proto::v1::ReportRequest;
use prost::Message;

const NOW: i64 = 1_760_000_000_000;

fuzz_target!(|data: &[u8]| {
    let read = ReadReport::read(&Limits::default(), data, NOW).map(|r| r.records(8));
    let Ok(req) = ReportRequest::decode(data) else {
        assert!(read.is_none(), "read a Report prost refuses");
        return;
    };
    let n = req.events.len();
    let Ok(batches) = meter_proto::report::validate(&Limits::default(), req, NOW) else {
        assert!(read.is_none(), "read a Report validate refuses");
        return;
    };
    assert_eq!(batches.iter().map(|b| b.events.len()).sum::<usize>(), n);
    // A Report prost and `validate` accept may still be left to them
    // (`None`: group wire types, which no client writes).
    if let Some(read) = read {
        assert_eq!(read, meter_proto::report::kafka_records(batches.clone(), 8), "read differently");
    }
    let read = meter_proto::report::round_trip(batches, 8);
    for b in read.expect("ingest wrote a record the aggregator cannot read") {
        assert!(!b.events.is_empty());
        for e in &b.events {
            Limits::default().check_event(0, e, NOW).expect("a stored event passes the limits");
        }
    }
});
