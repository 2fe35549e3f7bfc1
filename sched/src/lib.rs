//! vjob's brain: the model of the cluster, job specs, the planner and the policies, the executor
//! that turns plans into hypervisor calls, the durable store, and the `vjobd` daemon that wires
//! them together.
//!
//! The planner ([`plan`]) and the policies ([`policy`]) are pure: a model in, a decision out. They
//! never touch the store, the socket, a clock or a backend, so the daemon, the offline planner and
//! the trace simulator all call the same code.

pub mod btrplace;
pub mod check;
pub mod config;
pub mod daemon;
pub mod exec;
pub mod gen;
pub mod jobs;
pub mod model;
pub mod plan;
pub mod policy;
pub mod sim;
pub mod spec;
pub mod store;
pub mod tomlfile;
pub mod units;
pub mod vplan;
pub mod vsim;
