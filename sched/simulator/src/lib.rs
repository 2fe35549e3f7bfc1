//! vjob's trace simulator: a discrete-event engine ([`engine`]) that replays SWF traces
//! ([`swf`]) or synthetic scenarios in virtual time, driving the very policies and planner of
//! the daemon, and the metrics and plots of a run ([`report`]). [`cli`] is the `vsim` command.

pub mod cli;
pub mod engine;
pub mod report;
pub mod swf;
pub mod vmplaces;
