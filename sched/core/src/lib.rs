//! vjob's pure decision core: the model of the cluster, the planner and its independent checker,
//! the policies, and the one decision builder that turns what was observed (nodes, vjobs, queue)
//! into a policy decision and the planner instance that carries it out.
//!
//! Pure means: a model in, a decision out. Nothing here touches a store, a socket, a clock or a
//! backend, so `vjobd`, `vsim` and `vplan` call the same code, and tests can too. Time comes in
//! as a parameter.

pub mod check;
pub mod decision;
pub mod fairshare;
pub mod hash;
pub mod instance;
pub mod model;
pub mod placement;
pub mod plan;
pub mod policy;
pub mod power;
pub mod resources;
