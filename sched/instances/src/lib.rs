//! Planner instances in and out of vjob: BtrPlace's JSON formats for instances and plans
//! ([`btrplace`]), and generated instances shaped like BtrPlace's benchmarks ([`gen`]).

pub mod btrplace;
pub mod gen;
