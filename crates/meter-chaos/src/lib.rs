//! The fault-injection harness. It runs `meterd` roles as processes against
//! the real local stack, drives them with the simulator (which keeps a
//! ledger of every acknowledged event), injects faults at random moments,
//! samples the stored counters while it runs (never down, never above what
//! was sent), and at the end checks ClickHouse and the totals topic against
//! the ledger exactly, and the enforcer's suspensions against the exact usage.

mod adjust;
mod check;
mod faults;
mod harness;
mod ports;
pub mod procs;
mod quotas;
mod stack_args;

pub use faults::FaultKind;
pub use harness::{meterd_config, run, ChaosConfig, ChaosReport, LoadShape, Ports};
pub use ports::free_port;
pub use quotas::EnforcementReport;
pub use stack_args::StackArgs;
