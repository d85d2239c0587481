//! The load's Reports written straight as their gRPC message bytes, and a
//! client that sends them as they are. Building prost's structs (a `String`
//! per event) and encoding them was most of the generator's CPU while it
//! sends (~0.34 us per event in the collectors' shape, ~0.21 us this way):
//! CPU the pipeline under test did not get, on a machine where compute nodes
//! and collectors are not.

use meter_proto::report_codec::{RawReport, ReportClientCodec};
use meter_proto::v1::{ReportResponse, UsageEvent};
use meter_proto::wire_write::{encode_varint, key, put_str, put_varint, str_len, varint_len, LEN};
use prost::bytes::Bytes;

use crate::load::{Counted, LoadConfig, ReportAt, Request};

/// A `ReportRequest` as its bytes, and how many events it holds.
#[derive(Debug, Clone)]
pub struct Encoded {
    pub bytes: Bytes,
    pub events: usize,
}

impl Request for Encoded {
    fn build(cfg: &LoadConfig, at: &ReportAt<'_>, counted: &mut Vec<Counted>) -> Self {
        let mut buf = Vec::with_capacity(cfg.batch * (at.names.first().map_or(0, String::len) + 24) + 64);
        let events = cfg.write_counted(at, counted, &mut buf);
        Encoded { bytes: Bytes::from(buf), events }
    }

    fn events(&self) -> usize {
        self.events
    }
}

/// The fields of one `UsageEvent` the load sets (every other is empty).
pub(crate) struct EventFields<'a> {
    pub(crate) project_id: &'a str,
    pub(crate) metric: i32,
    pub(crate) kind: i32,
    pub(crate) value: u64,
    pub(crate) start_unix_ms: i64,
    pub(crate) end_unix_ms: i64,
    pub(crate) idempotency_key: &'a str,
}

impl From<&EventFields<'_>> for UsageEvent {
    fn from(e: &EventFields<'_>) -> Self {
        UsageEvent {
            project_id: e.project_id.to_owned(),
            metric: e.metric,
            kind: e.kind,
            value: e.value,
            start_unix_ms: e.start_unix_ms,
            end_unix_ms: e.end_unix_ms,
            idempotency_key: e.idempotency_key.to_owned(),
            ..Default::default()
        }
    }
}

/// The head of a `ReportRequest` (its fields before the events).
pub(crate) fn put_head(source_id: &str, batch_seq: u64, buf: &mut Vec<u8>) {
    put_str(buf, 1, source_id);
    put_varint(buf, 2, batch_seq);
}

/// The tail of a `ReportRequest` (its fields after the events).
pub(crate) fn put_tail(source_session: u64, buf: &mut Vec<u8>) {
    put_varint(buf, 4, source_session);
}

/// Appends one event as a `ReportRequest.events` entry (field 3).
pub(crate) fn put_event(e: &EventFields<'_>, buf: &mut Vec<u8>) {
    let len = str_len(e.project_id)
        + varint_len(e.metric as u64)
        + varint_len(e.kind as u64)
        + varint_len(e.value)
        + varint_len(e.start_unix_ms as u64)
        + varint_len(e.end_unix_ms as u64)
        + str_len(e.idempotency_key);
    buf.push(key(3, LEN));
    encode_varint(len as u64, buf);
    put_str(buf, 1, e.project_id);
    put_varint(buf, 4, e.metric as u64);
    put_varint(buf, 5, e.kind as u64);
    put_varint(buf, 6, e.value);
    put_varint(buf, 7, e.start_unix_ms as u64);
    put_varint(buf, 8, e.end_unix_ms as u64);
    put_str(buf, 10, e.idempotency_key);
}

/// A gRPC client sending `Encoded` Reports to `Ingest/Report` as they are
/// (`ReportClientCodec`).
#[derive(Debug, Clone)]
pub struct RawClient(tonic::client::Grpc<tonic::transport::Channel>);

impl RawClient {
    pub fn new(channel: tonic::transport::Channel) -> Self {
        RawClient(
            tonic::client::Grpc::new(channel).max_decoding_message_size(64 << 20).max_encoding_message_size(64 << 20),
        )
    }

    /// Sends one Report; its response.
    pub async fn report(&mut self, r: Encoded) -> Result<ReportResponse, tonic::Status> {
        self.0.ready().await.map_err(|e| tonic::Status::unknown(format!("not ready: {e}")))?;
        let path = tonic::codegen::http::uri::PathAndQuery::from_static("/meter.v1.Ingest/Report");
        let request = tonic::Request::new(RawReport(r.bytes));
        Ok(self.0.unary(request, path, ReportClientCodec).await?.into_inner())
    }
}
