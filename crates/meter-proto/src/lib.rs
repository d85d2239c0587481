//! The wire types (generated from `proto/meter/v1`) and their conversions to
//! the domain types of `meter-core`, so prost types stay at the edges.

#![allow(unreachable_pub, missing_debug_implementations)]

/// Generated code for package `meter.v1`.
pub mod v1 {
    #![allow(clippy::all)]
    tonic::include_proto!("meter.v1");
}

mod batch;
mod totals;

pub use batch::{decode_batch, encode_batch, event_from_wire, event_to_wire, metric_to_wire, DecodeError};
pub use totals::{decode_state, decode_totals, state_from_wire, state_to_wire, TotalsDecodeError};
