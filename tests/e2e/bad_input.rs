//! Bad input is refused with INVALID_ARGUMENT naming the field, nothing of
//! the refused batch is counted, and good batches around it are.

use std::time::Duration;

use meter_e2e::{eventually, now_ms, Pipeline};
use meter_proto::v1::{Kind, Metric, UsageEvent};
use tonic::Code;

use crate::helpers::{inc, report, usage_of};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_batches_are_refused_whole_and_good_ones_still_count() {
    let Some(p) = Pipeline::start("bad").await else { return };
    let mut client = p.client().await;
    let good = || inc("bad-victim", Metric::ActiveTimeSeconds, 1);
    let now = now_ms();
    let cases: Vec<(&str, Vec<UsageEvent>, &str)> = vec![
        ("unknown metric", vec![good(), UsageEvent { metric: 9, ..good() }], "events[1].metric: unknown metric code 9"),
        (
            "end before start",
            vec![UsageEvent { start_unix_ms: now, end_unix_ms: now - 1, ..good() }],
            "events[0].end_unix_ms",
        ),
        (
            "too far in the future",
            vec![good(), UsageEvent { start_unix_ms: now, end_unix_ms: now + 3_600_000, ..good() }],
            "events[1].end_unix_ms",
        ),
        (
            "too far in the past",
            vec![UsageEvent { start_unix_ms: now - 30 * 86_400_000, ..good() }],
            "events[0].start_unix_ms",
        ),
        ("bad project id", vec![UsageEvent { project_id: "a b".into(), ..good() }], "events[0].project_id"),
        (
            "counter sent as a gauge",
            vec![UsageEvent { kind: Kind::Absolute as i32, time_unix_ms: now, ..good() }],
            "events[0].kind",
        ),
        ("value too large", vec![UsageEvent { value: u64::MAX, ..good() }], "events[0].value"),
        ("oversized batch", (0..10_001).map(|_| good()).collect(), "events: batch has 10001 events"),
    ];
    let mut seq = 1;
    for (what, events, expected) in cases {
        // A good batch from another source before each bad one.
        client
            .report(report("bad-good-src", seq, vec![inc("bad-good", Metric::ComputeTimeSeconds, 10)]))
            .await
            .expect("good batch acked");
        let err = client.report(report("bad-src", seq, events)).await.expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(err.message().contains(expected), "{what}: message {:?} lacks {expected:?}", err.message());
        seq += 1;
    }
    let err = client.report(report("", 1, vec![good()])).await.expect_err("empty source");
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().starts_with("source_id: "), "{}", err.message());

    let expected = 10 * (seq - 1);
    eventually(Duration::from_secs(60), "the good batches are counted", || async {
        let got = usage_of(&p.store, "bad-good").await.map(|u| u.compute_time_seconds);
        if got == Some(expected) {
            Ok(())
        } else {
            Err(format!("{got:?} != {expected}"))
        }
    })
    .await;
    assert_eq!(usage_of(&p.store, "bad-victim").await, None, "an event of a refused batch was counted");
    assert!(!p.totals().await.contains_key("bad-victim"));
    p.shutdown().await;
}

/// Bytes that are not a `ReportRequest` at all, sent by a client with its
/// own codec: refused with INVALID_ARGUMENT naming the request (not
/// INTERNAL, which clients retry), and a good Report after it still counts.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_is_not_a_report_is_refused_as_invalid() {
    let Some(p) = Pipeline::start("notreport").await else { return };
    let channel = tonic::transport::Endpoint::from_shared(p.ingest_url.clone()).expect("url").connect_lazy();
    let mut grpc = tonic::client::Grpc::new(channel);
    let path = tonic::codegen::http::uri::PathAndQuery::from_static("/meter.v1.Ingest/Report");
    for (what, body) in [("a truncated key", vec![0xff, 0xff, 0xff]), ("field 3 as a varint", vec![0x18, 0x01])] {
        grpc.ready().await.expect("ingest reachable");
        let err = grpc.unary(tonic::Request::new(body), path.clone(), RawCodec).await.expect_err(what);
        assert_eq!(err.code(), Code::InvalidArgument, "{what}: {err:?}");
        assert!(err.message().starts_with("request: is not a ReportRequest: "), "{what}: {}", err.message());
    }
    let mut client = p.client().await;
    client
        .report(report("notreport-src", 1, vec![inc("notreport-p", Metric::ComputeTimeSeconds, 7)]))
        .await
        .expect("a good Report after them is acknowledged");
    eventually(Duration::from_secs(60), "the good Report is counted", || async {
        match usage_of(&p.store, "notreport-p").await.map(|u| u.compute_time_seconds) {
            Some(7) => Ok(()),
            got => Err(format!("{got:?} != Some(7)")),
        }
    })
    .await;
    p.shutdown().await;
}

/// A client codec that sends its bytes as they are.
#[derive(Debug, Clone, Copy, Default)]
struct RawCodec;

impl tonic::codec::Codec for RawCodec {
    type Encode = Vec<u8>;
    type Decode = meter_proto::v1::ReportResponse;
    type Encoder = RawCodec;
    type Decoder = tonic_prost::ProstDecoder<meter_proto::v1::ReportResponse>;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        tonic_prost::ProstDecoder::new(tonic::codec::BufferSettings::default())
    }
}

impl tonic::codec::Encoder for RawCodec {
    type Item = Vec<u8>;
    type Error = tonic::Status;

    fn encode(&mut self, item: Vec<u8>, buf: &mut tonic::codec::EncodeBuf<'_>) -> Result<(), tonic::Status> {
        bytes::BufMut::put_slice(buf, &item);
        Ok(())
    }
}
