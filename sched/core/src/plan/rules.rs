//! The placement rules of an instance: which node each VM may go to, given where the others are.
//!
//! [`Rules`] indexes the constraints by VM, and keeps the occupancy the constraints need
//! (members of each lonely or split set per node, running sums of resource and running
//! capacities, the part chosen for each among, gather and split-among), updated as VMs are
//! placed and unplaced. The filter step of the placement is [`Rules::allows`].

use std::collections::HashMap;
use std::sync::Arc;

use super::{Constraint, Instance};
use crate::model::{Model, NodeIdx, VmIdx, VmState, NO_NODE};

/// The part of each node, by node index ([`NO_PART`] for a node in none), shared between
/// constraints naming the same groups.
type PartOfNode = Arc<Vec<u32>>;

/// A node in no part of a group list.
const NO_PART: u32 = u32::MAX;

pub struct Rules {
    nres: usize,
    /// Target demands, `demand[v * R + r]`.
    demand: Vec<u64>,
    /// Per VM: indices of the constraints that restrict where it may go.
    by_vm: Vec<Vec<u32>>,
    /// Per node: indices of the capacity constraints (resource, running) covering it.
    by_node: HashMap<NodeIdx, Vec<u32>>,
    /// Sorted node lists of Ban, Fence and capacity constraints, by constraint index.
    node_sets: ByConstraint<Vec<NodeIdx>>,
    /// Among and split-among: per constraint, the node part of each node (sorted by node).
    node_parts: ByConstraint<PartOfNode>,
    /// Split and split-among: the part of each VM, by (constraint, VM).
    vm_part: HashMap<(u32, VmIdx), u32>,
    /// Among: the node part chosen; split-among: by (constraint, VM part).
    pub(super) among_choice: ByConstraint<u32>,
    split_among_choice: HashMap<(u32, u32), u32>,
    gather_choice: ByConstraint<NodeIdx>,
    root: Vec<bool>,
    no_arrival: Vec<bool>,
    // Occupancy.
    node_count: Vec<u32>,
    lonely_members: Vec<u32>,
    /// (constraint, node, part) -> VMs: members of a lonely set (part 0) or of each split part.
    set_count: HashMap<(u32, NodeIdx, u32), u32>,
    /// Resource or running capacity constraint -> what its nodes use.
    cap_used: HashMap<u32, u64>,
    /// Continuous lonely constraints (for VMs in no lonely set).
    lonely: Vec<u32>,
}

/// What some constraints have, by constraint index: a slot per constraint of the instance (the
/// filter step asks on every node it tries, a hash would cost more than the answer).
pub(super) struct ByConstraint<T>(Vec<Option<T>>);

impl<T> ByConstraint<T> {
    fn new(constraints: usize) -> Self {
        ByConstraint(std::iter::repeat_with(|| None).take(constraints).collect())
    }

    pub(super) fn get(&self, c: &u32) -> Option<&T> {
        self.0[*c as usize].as_ref()
    }

    pub(super) fn contains_key(&self, c: &u32) -> bool {
        self.0[*c as usize].is_some()
    }

    pub(super) fn insert(&mut self, c: u32, v: T) {
        self.0[c as usize] = Some(v);
    }

    /// Sets it unless it is set already.
    fn keep_first(&mut self, c: u32, v: T) {
        self.0[c as usize].get_or_insert(v);
    }
}

impl<T> std::ops::Index<&u32> for ByConstraint<T> {
    type Output = T;
    fn index(&self, c: &u32) -> &T {
        self.get(c).expect("indexed with its constraint")
    }
}

/// A sorted, deduplicated copy of a node list.
fn sorted(ns: &[NodeIdx]) -> Vec<NodeIdx> {
    let mut ns = ns.to_vec();
    ns.sort_unstable();
    ns.dedup();
    ns
}

/// The node parts of each group list, indexed once however many constraints share it.
#[derive(Default)]
struct PartsIndex {
    indexed: HashMap<*const Vec<Vec<NodeIdx>>, PartOfNode>,
}

impl PartsIndex {
    fn of(&mut self, groups: &super::NodeGroups, nodes: usize) -> PartOfNode {
        self.indexed
            .entry(Arc::as_ptr(groups))
            .or_insert_with(|| {
                let mut p = vec![NO_PART; nodes];
                // A node named in several parts belongs to the first.
                for (i, ns) in groups.iter().enumerate().rev() {
                    for &n in ns {
                        p[n as usize] = i as u32;
                    }
                }
                Arc::new(p)
            })
            .clone()
    }
}

impl Rules {
    /// Rules for `inst`, with the demands of `demands` (the target's, after preserve).
    pub fn new(inst: &Instance, demands: &Model) -> Rules {
        let m = &inst.model;
        let nres = m.nres();
        let mut demand = Vec::with_capacity(m.vms() * nres);
        for v in 0..m.vms() as VmIdx {
            demand.extend_from_slice(demands.demand(v));
        }
        let mut r = Rules {
            nres,
            demand,
            by_vm: vec![Vec::new(); m.vms()],
            by_node: HashMap::new(),
            node_sets: ByConstraint::new(inst.constraints.len()),
            node_parts: ByConstraint::new(inst.constraints.len()),
            vm_part: HashMap::new(),
            among_choice: ByConstraint::new(inst.constraints.len()),
            split_among_choice: HashMap::new(),
            gather_choice: ByConstraint::new(inst.constraints.len()),
            root: vec![false; m.vms()],
            no_arrival: vec![false; m.nodes()],
            node_count: vec![0; m.nodes()],
            lonely_members: vec![0; m.nodes()],
            set_count: HashMap::new(),
            cap_used: HashMap::new(),
            lonely: Vec::new(),
        };
        let mut parts = PartsIndex::default();
        for (i, c) in inst.constraints.iter().enumerate() {
            r.index(i as u32, c, m, &mut parts);
        }
        r
    }

    /// Takes constraint `i` into the indexes.
    fn index(&mut self, i: u32, c: &Constraint, m: &Model, parts: &mut PartsIndex) {
        match c {
            Constraint::Ban { vms, nodes } | Constraint::Fence { vms, nodes } => {
                self.node_sets.insert(i, sorted(nodes));
                vms.iter().for_each(|&v| self.by_vm[v as usize].push(i));
            }
            Constraint::Spread { vms, .. } => vms.iter().for_each(|&v| self.by_vm[v as usize].push(i)),
            Constraint::Gather { vms, continuous } => {
                vms.iter().for_each(|&v| self.by_vm[v as usize].push(i));
                if *continuous {
                    if let Some(&v) = vms.iter().find(|&&v| m.state(v) == VmState::Running) {
                        self.gather_choice.insert(i, m.host(v));
                    }
                }
            }
            Constraint::Lonely { vms, .. } => {
                vms.iter().for_each(|&v| self.by_vm[v as usize].push(i));
                self.lonely.push(i);
            }
            Constraint::Among {
                vms,
                parts: groups,
                continuous,
            } => {
                self.node_parts.insert(i, parts.of(groups, m.nodes()));
                vms.iter().for_each(|&v| self.by_vm[v as usize].push(i));
                // Continuous: the VMs may never leave the part they run in now.
                if *continuous {
                    let part = vms
                        .iter()
                        .find(|&&v| m.state(v) == VmState::Running)
                        .and_then(|&v| self.node_part(i, m.host(v)));
                    if let Some(p) = part {
                        self.among_choice.insert(i, p);
                    }
                }
            }
            Constraint::Split { parts: vparts, .. } => {
                for (p, vs) in vparts.iter().enumerate() {
                    for &v in vs {
                        self.vm_part.insert((i, v), p as u32);
                        self.by_vm[v as usize].push(i);
                    }
                }
            }
            Constraint::SplitAmong { vparts, nparts, .. } => {
                self.node_parts.insert(i, parts.of(nparts, m.nodes()));
                for (p, vs) in vparts.iter().enumerate() {
                    for &v in vs {
                        self.vm_part.insert((i, v), p as u32);
                        self.by_vm[v as usize].push(i);
                    }
                }
            }
            Constraint::ResourceCapacity { nodes, .. } | Constraint::RunningCapacity { nodes, .. } => {
                let ns = sorted(nodes);
                for &n in &ns {
                    self.by_node.entry(n).or_default().push(i);
                }
                self.node_sets.insert(i, ns);
            }
            Constraint::Root { vm } => self.root[*vm as usize] = true,
            Constraint::NoArrival { nodes } => nodes.iter().for_each(|&n| self.no_arrival[n as usize] = true),
            Constraint::Quarantine { nodes } => {
                for &n in nodes {
                    self.no_arrival[n as usize] = true;
                }
                for v in 0..m.vms() as VmIdx {
                    if m.state(v) == VmState::Running && nodes.contains(&m.host(v)) {
                        self.root[v as usize] = true;
                    }
                }
            }
            _ => {}
        }
    }

    fn demand(&self, v: VmIdx) -> &[u64] {
        &self.demand[v as usize * self.nres..(v as usize + 1) * self.nres]
    }

    /// The node part of `n` in among or split-among constraint `c`.
    pub fn node_part(&self, c: u32, n: NodeIdx) -> Option<u32> {
        Some(self.node_parts[&c][n as usize]).filter(|&p| p != NO_PART)
    }

    pub fn is_root(&self, v: VmIdx) -> bool {
        self.root[v as usize]
    }
    pub fn accepts_arrivals(&self, n: NodeIdx) -> bool {
        !self.no_arrival[n as usize]
    }

    /// The fewest nodes `v` may go to by its fences, the parts its amongs chose and its gathers'
    /// choices, if any restrict it: [`Rules::allows`] still decides on each of them.
    pub fn restricted_to<'s>(&'s self, inst: &'s Instance, v: VmIdx) -> Option<std::borrow::Cow<'s, [NodeIdx]>> {
        use std::borrow::Cow;
        let mut best: Option<Cow<'s, [NodeIdx]>> = None;
        for &c in &self.by_vm[v as usize] {
            let set: Cow<'s, [NodeIdx]> = match &inst.constraints[c as usize] {
                Constraint::Fence { .. } => Cow::Borrowed(&self.node_sets[&c]),
                Constraint::Among { parts, .. } => match self.among_choice.get(&c) {
                    Some(&p) => Cow::Borrowed(&parts[p as usize]),
                    None => continue,
                },
                Constraint::Gather { .. } => match self.gather_choice.get(&c) {
                    Some(&g) => Cow::Owned(vec![g]),
                    None => continue,
                },
                _ => continue,
            };
            if best.as_ref().is_none_or(|b| set.len() < b.len()) {
                best = Some(set);
            }
        }
        best
    }

    /// Whether `v` may run on `n`, given the other VMs' hosts (`host`) and the occupancy
    /// recorded by [`Rules::place`]. `v` itself must not be placed.
    pub fn allows(&self, inst: &Instance, v: VmIdx, n: NodeIdx, host: &[NodeIdx]) -> bool {
        let mut in_lonely = false;
        for &c in &self.by_vm[v as usize] {
            let ok = match &inst.constraints[c as usize] {
                Constraint::Ban { .. } => self.node_sets[&c].binary_search(&n).is_err(),
                Constraint::Fence { .. } => self.node_sets[&c].binary_search(&n).is_ok(),
                Constraint::Spread { vms, .. } => vms.iter().all(|&u| u == v || host[u as usize] != n),
                Constraint::Gather { vms, .. } => match self.gather_choice.get(&c) {
                    Some(&g) => g == n,
                    None => vms
                        .iter()
                        .all(|&u| u == v || host[u as usize] == NO_NODE || host[u as usize] == n),
                },
                Constraint::Among { .. } => match (self.among_choice.get(&c), self.node_part(c, n)) {
                    (_, None) => false,
                    (Some(&chosen), Some(p)) => chosen == p,
                    (None, Some(_)) => true,
                },
                Constraint::Lonely { .. } => {
                    in_lonely = true;
                    let members = self.set_count.get(&(c, n, 0)).copied().unwrap_or(0);
                    members == self.node_count[n as usize]
                }
                Constraint::Split { parts, .. } => {
                    let mine = self.vm_part[&(c, v)];
                    (0..parts.len() as u32)
                        .all(|p| p == mine || self.set_count.get(&(c, n, p)).copied().unwrap_or(0) == 0)
                }
                Constraint::SplitAmong { .. } => {
                    let mine = self.vm_part[&(c, v)];
                    match (self.node_part(c, n), self.split_among_choice.get(&(c, mine))) {
                        (None, _) => false,
                        (Some(np), Some(&chosen)) => np == chosen,
                        (Some(np), None) => !self
                            .split_among_choice
                            .iter()
                            .any(|(&(cc, vp), &nn)| cc == c && vp != mine && nn == np),
                    }
                }
                _ => true,
            };
            if !ok {
                return false;
            }
        }
        if !in_lonely && self.lonely_members[n as usize] > 0 {
            return false;
        }
        if let Some(caps) = self.by_node.get(&n) {
            for &c in caps {
                let used = self.cap_used.get(&c).copied().unwrap_or(0);
                let ok = match &inst.constraints[c as usize] {
                    Constraint::ResourceCapacity { rc, amount, .. } => used + self.demand(v)[*rc] <= *amount,
                    Constraint::RunningCapacity { amount, .. } => used < *amount,
                    _ => true,
                };
                if !ok {
                    return false;
                }
            }
        }
        true
    }

    /// Records that `v` runs on `n` (and fixes the choices of gather, among and split-among).
    pub fn place(&mut self, inst: &Instance, v: VmIdx, n: NodeIdx) {
        self.occupy(inst, v, n, true);
    }

    /// Forgets that `v` runs on `n` (the choices stay).
    pub fn unplace(&mut self, inst: &Instance, v: VmIdx, n: NodeIdx) {
        self.occupy(inst, v, n, false);
    }

    fn occupy(&mut self, inst: &Instance, v: VmIdx, n: NodeIdx, add: bool) {
        let bump = |x: &mut u32| if add { *x += 1 } else { *x -= 1 };
        bump(&mut self.node_count[n as usize]);
        for k in 0..self.by_vm[v as usize].len() {
            let c = self.by_vm[v as usize][k];
            match &inst.constraints[c as usize] {
                Constraint::Gather { .. } if add => {
                    self.gather_choice.keep_first(c, n);
                }
                Constraint::Among { .. } if add => {
                    if let Some(p) = self.node_part(c, n) {
                        self.among_choice.keep_first(c, p);
                    }
                }
                Constraint::Lonely { .. } => {
                    bump(self.set_count.entry((c, n, 0)).or_default());
                    bump(&mut self.lonely_members[n as usize]);
                }
                Constraint::Split { .. } => {
                    let p = self.vm_part[&(c, v)];
                    bump(self.set_count.entry((c, n, p)).or_default());
                }
                Constraint::SplitAmong { .. } if add => {
                    let p = self.vm_part[&(c, v)];
                    if let Some(np) = self.node_part(c, n) {
                        self.split_among_choice.entry((c, p)).or_insert(np);
                    }
                }
                _ => {}
            }
        }
        if let Some(caps) = self.by_node.get(&n) {
            for &c in caps {
                let delta = match &inst.constraints[c as usize] {
                    Constraint::ResourceCapacity { rc, .. } => self.demand[v as usize * self.nres + rc],
                    _ => 1,
                };
                let used = self.cap_used.entry(c).or_default();
                if add {
                    *used += delta;
                } else {
                    *used -= delta;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_vm_is_restricted_to_its_smallest_fence_or_chosen_among_part() {
        let mut m = Model::cpu_and_memory();
        for i in 0..8 {
            m.add_node(format!("n{i}"), true, &[4, 8]);
        }
        let a = m.add_vm("a", VmState::Ready, NO_NODE, &[1, 1]);
        let b = m.add_vm("b", VmState::Ready, NO_NODE, &[1, 1]);
        let inst = Instance::new(
            m.clone(),
            vec![
                Constraint::Fence {
                    vms: vec![a],
                    nodes: vec![5, 1, 2],
                },
                Constraint::Among {
                    vms: vec![a, b],
                    parts: Arc::new(vec![vec![0, 1], vec![2, 3, 4, 5, 6, 7]]),
                    continuous: false,
                },
            ],
        );
        let mut r = Rules::new(&inst, &m);
        assert_eq!(
            r.restricted_to(&inst, a).as_deref(),
            Some(&[1, 2, 5][..]),
            "the fence, sorted"
        );
        assert_eq!(r.restricted_to(&inst, b), None, "no among part chosen yet");
        r.place(&inst, a, 1);
        assert_eq!(
            r.restricted_to(&inst, a).as_deref(),
            Some(&[0, 1][..]),
            "the part a chose"
        );
        assert_eq!(r.restricted_to(&inst, b).as_deref(), Some(&[0, 1][..]));
        assert!(r.allows(&inst, b, 0, &[1, NO_NODE]) && !r.allows(&inst, b, 2, &[1, NO_NODE]));
    }
}
