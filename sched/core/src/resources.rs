//! The resources the daemon and the simulator count, by index into a [`Model`]'s resources:
//! processors and memory. (The planner itself takes any list of resources: BtrPlace instances
//! name their own.)

use crate::model::Model;

/// Processors (vCPUs of VMs, cores of nodes).
pub const CPU: usize = 0;
/// Memory, in bytes.
pub const MEMORY: usize = 1;
/// Their names, in index order.
pub const NAMES: [&str; 2] = ["cpu", "memory"];

impl Model {
    /// An empty model over processors and memory ([`CPU`], [`MEMORY`]).
    pub fn cpu_and_memory() -> Model {
        // Made once: the decision builder makes a model at every decision.
        static NAMED: std::sync::OnceLock<std::sync::Arc<[String]>> = std::sync::OnceLock::new();
        Model::new(
            NAMED
                .get_or_init(|| NAMES.iter().map(|n| n.to_string()).collect())
                .clone(),
        )
    }
}

/// A demand or capacity of `cpus` processors and `memory` bytes, in resource order.
pub fn cpu_memory(cpus: u64, memory: u64) -> Vec<u64> {
    let mut v = vec![0; NAMES.len()];
    v[CPU] = cpus;
    v[MEMORY] = memory;
    v
}
