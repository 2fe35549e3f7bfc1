//! The cluster as the planner sees it: nodes with a capacity per named resource, VMs with a state,
//! a host and a consumption per resource. Dense, index-based arrays (structure of arrays), so a
//! 10,000-node / 80,000-VM configuration is a few megabytes and scans are cache-friendly.
//!
//! The model is plain data: no jobs, no queues, no time. The daemon builds one from its jobs and
//! nodes, `vplan` from a BtrPlace instance, `vsim` from its simulated cluster.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

/// Index of a node in a [`Model`].
pub type NodeIdx = u32;
/// Index of a VM in a [`Model`].
pub type VmIdx = u32;
/// "No node": the host of a VM that runs nowhere.
pub const NO_NODE: NodeIdx = NodeIdx::MAX;

/// A VM's state, as in BtrPlace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmState {
    /// Defined, not running: waiting to be booted.
    Ready,
    /// Running on its host, consuming resources there.
    Running,
    /// Suspended to disk; its host is the node it was suspended on (resources not consumed).
    Sleeping,
    /// Gone for good.
    Killed,
}

impl VmState {
    pub fn as_str(self) -> &'static str {
        match self {
            VmState::Ready => "ready",
            VmState::Running => "running",
            VmState::Sleeping => "sleeping",
            VmState::Killed => "killed",
        }
    }
}

/// A configuration: nodes, VMs, where each VM is and what it consumes.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Model {
    /// Shared: models of the same resources are made and copied at every decision.
    resources: Arc<[String]>,
    /// Shared strings: a model is copied for a plan's target, and the decision builder
    /// names the same nodes decision after decision.
    node_names: Vec<Arc<str>>,
    node_online: Vec<bool>,
    /// `capacity[n * R + r]`.
    capacity: Vec<u64>,
    vm_names: Vec<Arc<str>>,
    vm_state: Vec<VmState>,
    vm_host: Vec<NodeIdx>,
    /// `demand[v * R + r]`.
    demand: Vec<u64>,
}

impl Model {
    /// An empty model over these resources (e.g. `["cpu", "memory"]`).
    pub fn new(resources: impl Into<Arc<[String]>>) -> Model {
        Model {
            resources: resources.into(),
            ..Default::default()
        }
    }

    pub fn resources(&self) -> &[String] {
        &self.resources
    }
    pub fn nres(&self) -> usize {
        self.resources.len()
    }
    /// The index of a resource by name.
    pub fn resource(&self, name: &str) -> Option<usize> {
        self.resources.iter().position(|r| r == name)
    }

    /// Makes room for `nodes` more nodes and `vms` more VMs, for a caller that knows how many
    /// it adds (a model is otherwise grown one node or VM at a time).
    pub fn reserve(&mut self, nodes: usize, vms: usize) {
        let r = self.nres();
        self.node_names.reserve(nodes);
        self.node_online.reserve(nodes);
        self.capacity.reserve(nodes * r);
        self.vm_names.reserve(vms);
        self.vm_state.reserve(vms);
        self.vm_host.reserve(vms);
        self.demand.reserve(vms * r);
    }

    /// Adds a node; `capacity` has one value per resource.
    pub fn add_node(&mut self, name: impl Into<Arc<str>>, online: bool, capacity: &[u64]) -> NodeIdx {
        assert_eq!(capacity.len(), self.nres(), "one capacity per resource");
        self.node_names.push(name.into());
        self.node_online.push(online);
        self.capacity.extend_from_slice(capacity);
        (self.node_names.len() - 1) as NodeIdx
    }

    /// Adds a VM; `demand` has one value per resource. A running VM needs a host.
    pub fn add_vm(&mut self, name: impl Into<Arc<str>>, state: VmState, host: NodeIdx, demand: &[u64]) -> VmIdx {
        assert_eq!(demand.len(), self.nres(), "one demand per resource");
        assert!(
            state != VmState::Running || (host as usize) < self.node_names.len(),
            "a running VM needs a host"
        );
        self.vm_names.push(name.into());
        self.vm_state.push(state);
        self.vm_host.push(host);
        self.demand.extend_from_slice(demand);
        (self.vm_names.len() - 1) as VmIdx
    }

    pub fn nodes(&self) -> usize {
        self.node_names.len()
    }
    pub fn vms(&self) -> usize {
        self.vm_names.len()
    }
    pub fn node_name(&self, n: NodeIdx) -> &str {
        &self.node_names[n as usize]
    }
    pub fn vm_name(&self, v: VmIdx) -> &str {
        &self.vm_names[v as usize]
    }
    pub fn is_online(&self, n: NodeIdx) -> bool {
        self.node_online[n as usize]
    }
    pub fn set_online(&mut self, n: NodeIdx, online: bool) {
        self.node_online[n as usize] = online;
    }
    pub fn capacity(&self, n: NodeIdx) -> &[u64] {
        let r = self.nres();
        &self.capacity[n as usize * r..(n as usize + 1) * r]
    }
    pub fn set_capacity(&mut self, n: NodeIdx, rc: usize, amount: u64) {
        let r = self.nres();
        self.capacity[n as usize * r + rc] = amount;
    }
    pub fn state(&self, v: VmIdx) -> VmState {
        self.vm_state[v as usize]
    }
    pub fn host(&self, v: VmIdx) -> NodeIdx {
        self.vm_host[v as usize]
    }
    pub fn demand(&self, v: VmIdx) -> &[u64] {
        let r = self.nres();
        &self.demand[v as usize * r..(v as usize + 1) * r]
    }
    pub fn set_demand(&mut self, v: VmIdx, rc: usize, amount: u64) {
        let r = self.nres();
        self.demand[v as usize * r + rc] = amount;
    }
    pub fn set_vm(&mut self, v: VmIdx, state: VmState, host: NodeIdx) {
        self.vm_state[v as usize] = state;
        self.vm_host[v as usize] = host;
    }

    /// Running VMs per node, in index order.
    pub fn running_by_node(&self) -> Vec<Vec<VmIdx>> {
        let mut by = vec![Vec::new(); self.nodes()];
        for v in 0..self.vms() as VmIdx {
            if self.state(v) == VmState::Running {
                by[self.host(v) as usize].push(v);
            }
        }
        by
    }

    /// What running VMs consume on each node: `load[n * R + r]`.
    pub fn load(&self) -> Vec<u64> {
        let r = self.nres();
        let mut load = vec![0u64; self.nodes() * r];
        for v in 0..self.vms() as VmIdx {
            if self.state(v) == VmState::Running {
                let h = self.host(v) as usize;
                for (k, d) in self.demand(v).iter().enumerate() {
                    load[h * r + k] += d;
                }
            }
        }
        load
    }

    pub fn node_index(&self, name: &str) -> Option<NodeIdx> {
        self.node_names.iter().position(|n| **n == *name).map(|i| i as NodeIdx)
    }
    pub fn vm_index(&self, name: &str) -> Option<VmIdx> {
        self.vm_names.iter().position(|n| **n == *name).map(|i| i as VmIdx)
    }
}

/// `a[i] + b[i] <= cap[i]` for every resource.
#[inline]
pub fn fits(load: &[u64], demand: &[u64], cap: &[u64]) -> bool {
    load.iter().zip(demand).zip(cap).all(|((l, d), c)| l + d <= *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn load_sums_running_vms_per_node() {
        let mut m = Model::cpu_and_memory();
        let a = m.add_node("a", true, &[4, 100]);
        let b = m.add_node("b", true, &[4, 100]);
        m.add_vm("v1", VmState::Running, a, &[1, 10]);
        m.add_vm("v2", VmState::Running, a, &[2, 20]);
        m.add_vm("v3", VmState::Sleeping, b, &[2, 20]);
        m.add_vm("v4", VmState::Ready, NO_NODE, &[2, 20]);
        assert_eq!(m.load(), vec![3, 30, 0, 0]);
        assert_eq!(m.running_by_node(), vec![vec![0, 1], vec![]]);
        assert!(fits(&[3, 30], &[1, 70], m.capacity(a)));
        assert!(!fits(&[3, 30], &[2, 0], m.capacity(a)));
        assert_eq!(m.vm_index("v3"), Some(2));
    }
}
