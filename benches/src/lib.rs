//! The benchmark's load generator, shared by `meter-bench` and the
//! criterion micro-benchmarks.

pub mod api_role;
pub mod encoded;
pub mod fixtures;
pub mod load;
