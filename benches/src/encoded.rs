//! The load's Reports written straight as their gRPC message bytes, and a
//! client that sends them as they are. Building prost's structs (a `String`
//! per event) and encoding them was most of the generator's CPU while it
//! sends (~0.34 us per event in the collectors' shape, ~0.21 us this way):
//! CPU the pipeline under test did not get, on a machine where compute nodes
//! and collectors are not.

use meter_proto::v1::ReportResponse;
use prost::bytes::{Buf, BufMut, Bytes};
use prost::encoding::{encode_key, encode_varint, encoded_len_varint, WireType};
use prost::Message;
use tonic::codec::{Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};

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

/// Appends a string field, left out when empty (as prost leaves it).
fn put_str(tag: u32, s: &str, buf: &mut Vec<u8>) {
    if !s.is_empty() {
        encode_key(tag, WireType::LengthDelimited, buf);
        encode_varint(s.len() as u64, buf);
        buf.extend_from_slice(s.as_bytes());
    }
}

/// Appends a varint field, left out when zero (as prost leaves it).
fn put_varint(tag: u32, v: u64, buf: &mut Vec<u8>) {
    if v != 0 {
        encode_key(tag, WireType::Varint, buf);
        encode_varint(v, buf);
    }
}

/// The head of a `ReportRequest` (its fields before the events).
pub(crate) fn put_head(source_id: &str, batch_seq: u64, buf: &mut Vec<u8>) {
    put_str(1, source_id, buf);
    put_varint(2, batch_seq, buf);
}

/// The tail of a `ReportRequest` (its fields after the events).
pub(crate) fn put_tail(source_session: u64, buf: &mut Vec<u8>) {
    put_varint(4, source_session, buf);
}

/// Appends one event as a `ReportRequest.events` entry (field 3).
pub(crate) fn put_event(e: &EventFields<'_>, buf: &mut Vec<u8>) {
    let str_len = |s: &str| if s.is_empty() { 0 } else { 1 + encoded_len_varint(s.len() as u64) + s.len() };
    let int_len = |v: u64| if v == 0 { 0 } else { 1 + encoded_len_varint(v) };
    let len = str_len(e.project_id)
        + int_len(e.metric as u64)
        + int_len(e.kind as u64)
        + int_len(e.value)
        + int_len(e.start_unix_ms as u64)
        + int_len(e.end_unix_ms as u64)
        + str_len(e.idempotency_key);
    encode_key(3, WireType::LengthDelimited, buf);
    encode_varint(len as u64, buf);
    put_str(1, e.project_id, buf);
    put_varint(4, e.metric as u64, buf);
    put_varint(5, e.kind as u64, buf);
    put_varint(6, e.value, buf);
    put_varint(7, e.start_unix_ms as u64, buf);
    put_varint(8, e.end_unix_ms as u64, buf);
    put_str(10, e.idempotency_key, buf);
}

/// Sends `Encoded` Reports as they are; reads prost's `ReportResponse`.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawCodec;

impl Codec for RawCodec {
    type Encode = Encoded;
    type Decode = ReportResponse;
    type Encoder = RawCodec;
    type Decoder = RawCodec;

    fn encoder(&mut self) -> Self::Encoder {
        RawCodec
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawCodec
    }
}

impl Encoder for RawCodec {
    type Item = Encoded;
    type Error = tonic::Status;

    fn encode(&mut self, item: Encoded, dst: &mut EncodeBuf<'_>) -> Result<(), Self::Error> {
        dst.put(item.bytes);
        Ok(())
    }
}

impl Decoder for RawCodec {
    type Item = ReportResponse;
    type Error = tonic::Status;

    fn decode(&mut self, src: &mut DecodeBuf<'_>) -> Result<Option<ReportResponse>, Self::Error> {
        let n = src.remaining();
        ReportResponse::decode(src.copy_to_bytes(n)).map(Some).map_err(|e| tonic::Status::internal(e.to_string()))
    }
}

/// A gRPC client sending `Encoded` Reports to `Ingest/Report`.
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
        Ok(self.0.unary(tonic::Request::new(r), path, RawCodec).await?.into_inner())
    }
}
