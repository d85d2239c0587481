//! The benchmark's load generator, shared by `meter-bench` and the
//! criterion micro-benchmarks.

pub mod load;
