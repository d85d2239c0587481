//! The gRPC codec of ingest's `Report`: the request is handed over as the
//! bytes it came in (`RawReport`), for `report_read` to turn into Kafka
//! records without building prost's structs; the response is prost's. And
//! its client's side, for a sender that writes a Report's bytes itself (the
//! benchmark's load generator).

use bytes::{Buf, BufMut, Bytes};
use tonic::codec::{BufferSettings, Codec, DecodeBuf, Decoder, EncodeBuf, Encoder};
use tonic::Status;
use tonic_prost::{ProstDecoder, ProstEncoder};

use crate::v1::ReportResponse;

/// A `ReportRequest`'s encoded bytes, as received.
#[derive(Debug, Clone, Default)]
pub struct RawReport(pub Bytes);

/// Requests as bytes, responses through prost.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReportCodec;

impl Codec for ReportCodec {
    type Encode = ReportResponse;
    type Decode = RawReport;
    type Encoder = ProstEncoder<ReportResponse>;
    type Decoder = RawDecoder;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(BufferSettings::default())
    }

    fn decoder(&mut self) -> Self::Decoder {
        RawDecoder
    }
}

/// Takes a message's bytes whole (no copy: the buffer's part is split off).
#[derive(Debug, Clone, Copy, Default)]
pub struct RawDecoder;

impl Decoder for RawDecoder {
    type Item = RawReport;
    type Error = Status;

    fn decode(&mut self, buf: &mut DecodeBuf<'_>) -> Result<Option<RawReport>, Status> {
        Ok(Some(RawReport(buf.copy_to_bytes(buf.remaining()))))
    }
}

/// The client's side: requests sent as the bytes given, responses through prost.
#[derive(Debug, Clone, Copy, Default)]
pub struct ReportClientCodec;

impl Codec for ReportClientCodec {
    type Encode = RawReport;
    type Decode = ReportResponse;
    type Encoder = RawEncoder;
    type Decoder = ProstDecoder<ReportResponse>;

    fn encoder(&mut self) -> Self::Encoder {
        RawEncoder
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(BufferSettings::default())
    }
}

/// Writes a message's bytes as they are.
#[derive(Debug, Clone, Copy, Default)]
pub struct RawEncoder;

impl Encoder for RawEncoder {
    type Item = RawReport;
    type Error = Status;

    fn encode(&mut self, item: RawReport, dst: &mut EncodeBuf<'_>) -> Result<(), Status> {
        dst.put(item.0);
        Ok(())
    }
}
