//! The fleet simulator: projects whose computes start, scale, idle and
//! suspend, write data and serve traffic, reporting through the real gRPC
//! ingest, while the simulator keeps the exact ground truth of every event
//! that ingest acknowledged.

pub mod compare;
pub mod fleet;
pub mod receivers;
pub mod runner;
pub mod sender;
pub mod truth;

pub use compare::{compare, Mismatch};
pub use fleet::{Fleet, FleetConfig};
pub use runner::{run, RunConfig, RunSummary};
pub use sender::{NodeSender, SendStats};
pub use truth::{ProjectTruth, Truth};
