//! Step 1 of the planner: the target configuration.
//!
//! Every VM that may stay where it is stays. The VMs that must be (re)placed are: those that must
//! start running (boot, resume), those on a node that goes offline or breaks a constraint, and
//! the fewest, cheapest VMs that relieve each overloaded node. They are placed one by one, in the
//! order the caller asks first (the daemon's vjob order), then largest first: *filter* keeps the
//! nodes that have room and satisfy every constraint, *score* prefers nodes where the VM fits
//! right now (its action can start at once), then the tightest fit.
//!
//! [`Placer`] is the filter-and-score core on its own, with undo, so the policy can ask "would this
//! vjob fit?" with the very code that the planner places with.

use std::collections::HashMap;

use super::room::{make_room, Relocation};
pub use super::rules::Rules;
use super::{describe, wanted_online, wanted_states, Constraint, Instance, PlanError};
use crate::hash::WordHash;
use crate::model::{fits, Model, NodeIdx, VmIdx, VmState, NO_NODE};

/// Filter-and-score placement over per-node loads, with an undo log.
pub struct Placer {
    nres: usize,
    capacity: Vec<u64>,
    /// Nodes that take no new VM (offline, draining).
    closed: Vec<bool>,
    load: Vec<u64>,
    /// Load as of now (before any departure), to prefer nodes where an action can start at once.
    load_now: Vec<u64>,
    /// Takes (true) and releases since the last commit, as (node, added); their demands follow
    /// one another in `undo_demand`, `nres` values each (one buffer, not one allocation a step).
    undo: Vec<(NodeIdx, bool)>,
    undo_demand: Vec<u64>,
    /// Per resource, the room left on the open nodes together: a group that needs more cannot
    /// fit, which is known without looking at a node.
    free_total: Vec<u64>,
    /// On large clusters: open nodes by free amount of the first resource, so that a search
    /// looks at the tightest candidates instead of every node.
    index: Option<std::collections::BTreeSet<(u64, NodeIdx)>>,
    /// Elsewhere, with at most two resources: open nodes grouped by state (capacity, load,
    /// load now). Nodes of a group are alike but for their index, so a search over every node
    /// need only score the first of each group: the same answer, in the time of the distinct
    /// states.
    groups: Option<Groups>,
}

/// How a load change moves a node's loads (the target load, and the load of now).
#[derive(Clone, Copy, PartialEq, Eq)]
enum Shift {
    /// A VM arrives (a take, or one settled in place): both loads grow.
    Arrive,
    /// A VM is to leave (a release): the target load shrinks; it is there now.
    Depart,
    /// A VM is gone (settled, or a take undone): both loads shrink.
    Leave,
    /// A release undone: the target load grows back.
    Return,
}

/// Open nodes grouped by state. Each group has a slot that keeps its state, and each node
/// knows its slot: taking a node out of its group needs no hashing. Each slot also remembers
/// where its last few load changes led (nodes of a state change alike, VM after VM of the same
/// shape), so that most moves between groups hash nothing either.
#[derive(Default)]
struct Groups {
    /// Each group; a slot whose set emptied is free, listed in `free`, its bits kept for the
    /// next group.
    slots: Vec<Slot>,
    by_state: HashMap<StateKey, u32, WordHash>,
    /// Per node, its slot, or [`Groups::NONE`] when it is in no group (closed).
    of_node: Vec<u32>,
    free: Vec<u32>,
}

struct Slot {
    state: StateKey,
    nodes: NodeSet,
    /// Bumped when the slot is freed: a remembered move to an older generation is stale.
    generation: u32,
    /// Recent moves out of this state: (demand, how) led to (slot, its generation then).
    moves: [Option<Move>; MOVES_REMEMBERED],
    next_move: u8,
}

/// How many moves out of its state a group remembers: a node's state changes by a few shapes
/// of VM at a time (takes, and their undoing), most often one.
const MOVES_REMEMBERED: usize = 4;

#[derive(Clone, Copy)]
struct Move {
    demand: [u64; 2],
    how: Shift,
    to: u32,
    generation: u32,
}

impl Groups {
    const NONE: u32 = u32::MAX;

    fn new(nodes: usize) -> Groups {
        Groups {
            of_node: vec![Groups::NONE; nodes],
            ..Default::default()
        }
    }

    /// The slot of state `k`, made if no node has that state.
    fn slot_of(&mut self, k: StateKey) -> u32 {
        if let Some(&slot) = self.by_state.get(&k) {
            return slot;
        }
        let slot = match self.free.pop() {
            Some(slot) => {
                let s = &mut self.slots[slot as usize];
                s.state = k;
                s.moves = [None; MOVES_REMEMBERED];
                slot
            }
            None => {
                self.slots.push(Slot {
                    state: k,
                    nodes: NodeSet::default(),
                    generation: 0,
                    moves: [None; MOVES_REMEMBERED],
                    next_move: 0,
                });
                (self.slots.len() - 1) as u32
            }
        };
        self.by_state.insert(k, slot);
        slot
    }

    /// Files node `n` under state `k`.
    fn insert(&mut self, n: NodeIdx, k: StateKey) {
        debug_assert_eq!(self.of_node[n as usize], Groups::NONE, "a node is in one group");
        let slot = self.slot_of(k);
        self.put(n, slot);
    }

    fn put(&mut self, n: NodeIdx, slot: u32) {
        self.slots[slot as usize].nodes.insert(n);
        self.of_node[n as usize] = slot;
    }

    /// Takes node `n` out of its group, if it is in one.
    fn remove(&mut self, n: NodeIdx) {
        let slot = std::mem::replace(&mut self.of_node[n as usize], Groups::NONE);
        if slot == Groups::NONE {
            return;
        }
        let s = &mut self.slots[slot as usize];
        s.nodes.remove(n);
        if s.nodes.is_empty() {
            s.generation = s.generation.wrapping_add(1);
            self.by_state.remove(&s.state);
            self.free.push(slot);
        }
    }

    /// Where a load change (`demand`, `how`) remembered from `from` leads, if still valid.
    fn recall(&self, from: u32, demand: [u64; 2], how: Shift) -> Option<u32> {
        let s = &self.slots[from as usize];
        s.moves.iter().flatten().find_map(|m| {
            let valid = m.demand == demand && m.how == how && self.slots[m.to as usize].generation == m.generation;
            valid.then_some(m.to)
        })
    }

    /// Remembers that a load change (`demand`, `how`) leads from `from` to `to`.
    fn learn(&mut self, from: u32, demand: [u64; 2], how: Shift, to: u32) {
        let generation = self.slots[to as usize].generation;
        let s = &mut self.slots[from as usize];
        s.moves[s.next_move as usize] = Some(Move {
            demand,
            how,
            to,
            generation,
        });
        s.next_move = (s.next_move + 1) % MOVES_REMEMBERED as u8;
    }

    /// The first node of each group.
    fn firsts(&self) -> impl Iterator<Item = NodeIdx> + '_ {
        self.slots.iter().filter_map(|s| s.nodes.first())
    }
}

/// A set of nodes as bits (the clusters that group their nodes have fewer than
/// [`INDEX_FROM_NODES`]): adding and removing a node cost one word, and the lowest node is
/// found from the first word that may hold one.
#[derive(Debug, Clone, Default)]
struct NodeSet {
    words: Vec<u64>,
    len: usize,
    /// No word before this one holds a node.
    low: usize,
}

impl NodeSet {
    fn insert(&mut self, n: NodeIdx) {
        let (w, bit) = (n as usize / 64, 1u64 << (n % 64));
        if self.words.len() <= w {
            self.words.resize(w + 1, 0);
        }
        if self.words[w] & bit == 0 {
            self.words[w] |= bit;
            self.len += 1;
            self.low = if self.len == 1 { w } else { self.low.min(w) };
        }
    }

    fn remove(&mut self, n: NodeIdx) {
        let (w, bit) = (n as usize / 64, 1u64 << (n % 64));
        if self.words.get(w).is_some_and(|&x| x & bit != 0) {
            self.words[w] &= !bit;
            self.len -= 1;
            while self.len > 0 && self.words[self.low] == 0 {
                self.low += 1;
            }
        }
    }

    fn first(&self) -> Option<NodeIdx> {
        let w = *self.words.get(self.low).filter(|_| self.len > 0)?;
        Some((self.low * 64) as NodeIdx + w.trailing_zeros() as NodeIdx)
    }

    fn is_empty(&self) -> bool {
        self.len == 0
    }
}

/// A node's capacity, load and load now, side by side (unused slots zero).
#[derive(Clone, Copy, PartialEq, Eq)]
struct StateKey([u64; 6]);

impl std::hash::Hash for StateKey {
    /// Word by word: an array hashes as a length and a byte slice, which [`crate::hash::WordHasher`]
    /// would cut back into words.
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        for &x in &self.0 {
            h.write_u64(x);
        }
    }
}

/// Clusters of at least this many nodes use the free-capacity index.
const INDEX_FROM_NODES: usize = 8192;
/// How many fitting nodes an indexed search scores before choosing.
const INDEXED_CANDIDATES: usize = 64;

/// A point to roll a [`Placer`] back to.
#[derive(Debug, Clone, Copy)]
pub struct Mark(usize);

impl Placer {
    /// A placer over `capacity` (`n * R`), starting from `load` (target loads so far) and
    /// `load_now` (loads before any action).
    pub fn new(nres: usize, capacity: Vec<u64>, closed: Vec<bool>, load: Vec<u64>, load_now: Vec<u64>) -> Placer {
        let mut p = Placer {
            nres,
            capacity,
            closed,
            load,
            load_now,
            undo: Vec::new(),
            undo_demand: Vec::new(),
            free_total: vec![0; nres],
            index: None,
            groups: None,
        };
        for n in 0..p.nodes() as NodeIdx {
            if !p.closed[n as usize] {
                p.count_free(n, true);
            }
        }
        if p.nodes() >= INDEX_FROM_NODES && nres > 0 {
            let idx = (0..p.nodes() as NodeIdx)
                .filter(|&n| !p.closed[n as usize])
                .map(|n| (p.free0(n), n))
                .collect();
            p.index = Some(idx);
        } else if nres <= 2 {
            p.groups = Some(Groups::new(p.nodes()));
            for n in 0..p.nodes() as NodeIdx {
                p.group(n);
            }
        }
        p
    }

    fn state_key(&self, n: NodeIdx) -> StateKey {
        let i = n as usize * self.nres;
        let (c, l, now) = (&self.capacity, &self.load, &self.load_now);
        // Spelled out per count of resources (groups have at most two): slices of a length
        // known only at run time are copied by `memcpy`, three calls at every take and release.
        StateKey(match self.nres {
            0 => [0; 6],
            1 => [c[i], 0, l[i], 0, now[i], 0],
            _ => [c[i], c[i + 1], l[i], l[i + 1], now[i], now[i + 1]],
        })
    }

    /// Files an open node under its state.
    fn group(&mut self, n: NodeIdx) {
        if self.groups.is_none() || self.closed[n as usize] {
            return;
        }
        let k = self.state_key(n);
        self.groups.as_mut().expect("checked above").insert(n, k);
    }

    /// Moves open node `n` to the group of its new state after its loads changed by `demand`
    /// as `how` says: where the same change from the same state led before, when remembered;
    /// else found by hashing the new state.
    fn regroup(&mut self, n: NodeIdx, demand: &[u64], how: Shift) {
        let Some(groups) = self.groups.as_ref() else { return };
        let from = groups.of_node[n as usize];
        let shape = [
            demand.first().copied().unwrap_or(0),
            demand.get(1).copied().unwrap_or(0),
        ];
        let known = (from != Groups::NONE)
            .then(|| groups.recall(from, shape, how))
            .flatten();
        let to = match known {
            Some(to) => to,
            None => {
                let key = self.state_key(n);
                let groups = self.groups.as_mut().expect("checked above");
                let to = groups.slot_of(key);
                if from != Groups::NONE {
                    groups.learn(from, shape, how, to);
                }
                to
            }
        };
        if to != from {
            let groups = self.groups.as_mut().expect("checked above");
            groups.remove(n);
            groups.put(n, to);
        }
    }

    /// Takes a node out of its group (before it closes).
    fn ungroup(&mut self, n: NodeIdx) {
        if let Some(groups) = self.groups.as_mut() {
            groups.remove(n);
        }
    }

    fn free0(&self, n: NodeIdx) -> u64 {
        let i = n as usize * self.nres;
        self.capacity[i].saturating_sub(self.load[i])
    }

    /// A placer for a model's online nodes and current loads.
    pub fn from_model(m: &Model) -> Placer {
        let r = m.nres();
        let mut capacity = Vec::with_capacity(m.nodes() * r);
        for n in 0..m.nodes() as NodeIdx {
            capacity.extend_from_slice(m.capacity(n));
        }
        let closed = (0..m.nodes() as NodeIdx).map(|n| !m.is_online(n)).collect();
        let load = m.load();
        Placer::new(r, capacity, closed, load.clone(), load)
    }

    pub fn nodes(&self) -> usize {
        self.closed.len()
    }
    pub fn close(&mut self, n: NodeIdx) {
        if !self.closed[n as usize] {
            self.count_free(n, false);
            self.ungroup(n);
        }
        if let Some(idx) = self.index.as_mut() {
            let f = self.capacity[n as usize * self.nres].saturating_sub(self.load[n as usize * self.nres]);
            idx.remove(&(f, n));
        }
        self.closed[n as usize] = true;
    }
    /// Takes new VMs on `n` again (a node switched back on).
    pub fn open(&mut self, n: NodeIdx) {
        if !self.closed[n as usize] {
            return;
        }
        self.closed[n as usize] = false;
        self.count_free(n, true);
        self.group(n);
        let f = self.free0(n);
        if let Some(idx) = self.index.as_mut() {
            idx.insert((f, n));
        }
    }

    /// The room of resource `k` left on the open nodes together.
    pub fn free(&self, k: usize) -> u64 {
        self.free_total[k]
    }

    /// How many resources each node and VM has.
    pub fn nres(&self) -> usize {
        self.nres
    }

    /// Whether `n` takes new VMs.
    pub fn accepts(&self, n: NodeIdx) -> bool {
        !self.closed[n as usize]
    }
    pub fn load(&self, n: NodeIdx) -> &[u64] {
        &self.load[n as usize * self.nres..(n as usize + 1) * self.nres]
    }
    pub fn capacity(&self, n: NodeIdx) -> &[u64] {
        &self.capacity[n as usize * self.nres..(n as usize + 1) * self.nres]
    }

    /// Whether `demand` fits on `n` now, in the target.
    pub fn fits(&self, n: NodeIdx, demand: &[u64]) -> bool {
        !self.closed[n as usize] && fits(self.load(n), demand, self.capacity(n))
    }

    /// The best node for `demand` among those `allowed`, or `None`.
    pub fn best(&self, demand: &[u64], mut allowed: impl FnMut(NodeIdx) -> bool) -> Option<NodeIdx> {
        let mut best: Option<(bool, u64, NodeIdx)> = None;
        // On a large cluster, score only the tightest nodes that fit (best fit on the first
        // resource); elsewhere every node.
        let indexed: Option<Vec<NodeIdx>> = self.index.as_ref().map(|idx| {
            idx.range((demand[0], 0)..)
                .map(|&(_, n)| n)
                .filter(|&n| self.fits(n, demand) && allowed(n))
                .take(INDEXED_CANDIDATES)
                .collect()
        });
        let all = 0..self.nodes() as NodeIdx;
        let candidates: Box<dyn Iterator<Item = NodeIdx>> = match &indexed {
            Some(v) => Box::new(v.iter().copied()),
            None => Box::new(all),
        };
        for n in candidates {
            if indexed.is_none() && (!self.fits(n, demand) || !allowed(n)) {
                continue;
            }
            let (later, slack) = self.score(n, demand);
            let key = (later, slack, n);
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
        best.map(|b| b.2)
    }

    /// The best node for `demand` of `nodes` that `allowed` lets it go to: [`Placer::best`]
    /// when a VM may only go to a few nodes (a fence, the part an among chose), scoring those
    /// rather than searching the whole cluster for them.
    pub fn best_within(
        &self,
        demand: &[u64],
        nodes: &[NodeIdx],
        mut allowed: impl FnMut(NodeIdx) -> bool,
    ) -> Option<NodeIdx> {
        nodes
            .iter()
            .copied()
            .filter(|&n| self.fits(n, demand) && allowed(n))
            .map(|n| {
                let (later, slack) = self.score(n, demand);
                (later, slack, n)
            })
            .min()
            .map(|b| b.2)
    }

    /// The best node for `demand` among all: [`Placer::best`] with every node allowed, in the
    /// time of the distinct node states where the nodes are grouped.
    pub fn best_any(&self, demand: &[u64]) -> Option<NodeIdx> {
        let Some(groups) = &self.groups else {
            return self.best(demand, |_| true);
        };
        let mut best: Option<(bool, u64, NodeIdx)> = None;
        for n in groups.firsts() {
            if !self.fits(n, demand) {
                continue;
            }
            let (later, slack) = self.score(n, demand);
            let key = (later, slack, n);
            if best.is_none_or(|b| key < b) {
                best = Some(key);
            }
        }
        best.map(|b| b.2)
    }

    /// How `demand` would sit on `n`: whether it must wait for departures (it does not fit in
    /// the load of now), and the tightest fit, the smallest relative room left on any resource,
    /// in millionths (lower is better).
    fn score(&self, n: NodeIdx, demand: &[u64]) -> (bool, u64) {
        let r = self.nres;
        let i = n as usize * r;
        let cap = &self.capacity[i..i + r];
        let later = !fits(&self.load_now[i..i + r], demand, cap);
        let load = &self.load[i..i + r];
        let slack = (0..r)
            .filter(|&k| cap[k] > 0)
            .map(|k| {
                let room = cap[k] - load[k] - demand[k];
                match room.checked_mul(1_000_000) {
                    Some(x) => x / cap[k],
                    None => (room as u128 * 1_000_000 / cap[k] as u128) as u64,
                }
            })
            .min()
            .unwrap_or(0);
        (later, slack)
    }

    /// Settles that `demand` now occupies `n`, before and after any departure: a change of
    /// the state placements start from, not a step of one (no undo).
    pub fn occupy(&mut self, n: NodeIdx, demand: &[u64]) {
        self.shift(n, demand, Shift::Arrive);
    }

    /// Settles that `demand` left `n` (the converse of [`Placer::occupy`]).
    pub fn vacate(&mut self, n: NodeIdx, demand: &[u64]) {
        self.shift(n, demand, Shift::Leave);
    }

    /// Adds `demand` to `n`.
    pub fn take(&mut self, n: NodeIdx, demand: &[u64]) {
        debug_assert_eq!(demand.len(), self.nres, "one amount per resource");
        self.undo.push((n, true));
        self.undo_demand.extend_from_slice(demand);
        self.shift(n, demand, Shift::Arrive);
    }

    /// Removes `demand` from `n` (a VM leaves).
    pub fn release(&mut self, n: NodeIdx, demand: &[u64]) {
        debug_assert_eq!(demand.len(), self.nres, "one amount per resource");
        self.undo.push((n, false));
        self.undo_demand.extend_from_slice(demand);
        self.shift(n, demand, Shift::Depart);
    }

    /// Adds (or takes away) node `n`'s room to the totals.
    fn count_free(&mut self, n: NodeIdx, add: bool) {
        let i = n as usize * self.nres;
        for k in 0..self.nres {
            let free = self.capacity[i + k].saturating_sub(self.load[i + k]);
            if add {
                self.free_total[k] += free;
            } else {
                self.free_total[k] -= free;
            }
        }
    }

    /// Changes `n`'s loads by `demand` as `how` says, keeping the free totals, the node's
    /// group and the index in step, in one pass over the resources.
    fn shift(&mut self, n: NodeIdx, demand: &[u64], how: Shift) {
        let i = n as usize * self.nres;
        let before = self.free0(n);
        let open = !self.closed[n as usize];
        let (add, now_too) = match how {
            Shift::Arrive => (true, true),
            Shift::Depart => (false, false),
            Shift::Leave => (false, true),
            Shift::Return => (true, false),
        };
        for (k, &d) in demand.iter().enumerate() {
            let (cap, load) = (self.capacity[i + k], &mut self.load[i + k]);
            let free_before = cap.saturating_sub(*load);
            *load = if add { *load + d } else { *load - d };
            let free_after = cap.saturating_sub(*load);
            if now_too {
                let now = &mut self.load_now[i + k];
                *now = if add { *now + d } else { *now - d };
            }
            if open {
                self.free_total[k] = self.free_total[k] - free_before + free_after;
            }
        }
        if open {
            self.regroup(n, demand, how);
        }
        self.reindex(n, before);
    }

    /// Moves `n` in the index after its load changed from free amount `before`.
    fn reindex(&mut self, n: NodeIdx, before: u64) {
        let after = self.free0(n);
        if let (Some(idx), false) = (self.index.as_mut(), self.closed[n as usize]) {
            if before != after {
                idx.remove(&(before, n));
                idx.insert((after, n));
            }
        }
    }

    pub fn mark(&self) -> Mark {
        Mark(self.undo.len())
    }

    /// Undoes every take and release since `mark`.
    pub fn rollback(&mut self, mark: Mark) {
        let demands = std::mem::take(&mut self.undo_demand);
        let mut at = demands.len();
        while self.undo.len() > mark.0 {
            let (n, added) = self.undo.pop().expect("len > mark");
            at -= self.nres;
            let how = if added { Shift::Leave } else { Shift::Return };
            self.shift(n, &demands[at..at + self.nres], how);
        }
        self.undo_demand = demands;
        self.undo_demand.truncate(at);
    }

    /// The takes (true) and releases since `mark`, in order: (node, taken, demand).
    pub fn steps_since(&self, mark: Mark) -> impl Iterator<Item = (NodeIdx, bool, &[u64])> + '_ {
        let r = self.nres;
        (self.undo[mark.0..].iter().enumerate())
            .map(move |(i, &(n, took))| (n, took, &self.undo_demand[(mark.0 + i) * r..(mark.0 + i + 1) * r]))
    }

    /// Forgets the undo log (after a decision is final).
    pub fn commit(&mut self) {
        self.undo.clear();
        self.undo_demand.clear();
    }

    /// Whether the open nodes together have room for `demands` (whether or not any set of them
    /// can hold them one VM per node).
    pub fn room_for(&self, demands: &[&[u64]]) -> bool {
        (0..self.nres).all(|k| demands.iter().map(|d| d[k]).sum::<u64>() <= self.free_total[k])
    }

    /// Places a group of VMs (demands), all or none; returns their nodes.
    pub fn place_group(&mut self, demands: &[&[u64]]) -> Option<Vec<NodeIdx>> {
        if !self.room_for(demands) {
            return None;
        }
        let mark = self.mark();
        let mut hosts = Vec::with_capacity(demands.len());
        for d in demands {
            match self.best_any(d) {
                Some(n) => {
                    self.take(n, d);
                    hosts.push(n);
                }
                None => {
                    self.rollback(mark);
                    return None;
                }
            }
        }
        Some(hosts)
    }
}

/// Computes the target configuration of an instance.
pub fn target(inst: &Instance) -> Result<Model, PlanError> {
    let m = &inst.model;
    let r = m.nres();
    let states = wanted_states(inst)?;
    let online = wanted_online(inst)?;
    let mut t = m.clone();
    for c in &inst.constraints {
        if let Constraint::Preserve { vm, rc, amount } = *c {
            if t.demand(vm)[rc] < amount {
                t.set_demand(vm, rc, amount);
            }
        }
    }
    let mut rules = Rules::new(inst, &t);
    for n in 0..m.nodes() as NodeIdx {
        t.set_online(n, online[n as usize]);
    }
    let (mut host, mut to_place) = staying(inst, &states, &online, &rules)?;
    // Relieve constraints broken by VMs that stay: keep one VM per node of a spread, the
    // largest group of a gather or an among.
    evict_for_constraints(inst, &t, &rules, &mut host, &mut to_place);
    let mut load = vec![0u64; m.nodes() * r];
    for v in 0..m.vms() as VmIdx {
        let h = host[v as usize];
        if h != NO_NODE {
            for (k, d) in t.demand(v).iter().enumerate() {
                load[h as usize * r + k] += d;
            }
        }
    }
    evict_for_capacity(inst, &t, &rules, &mut host, &mut load, &mut to_place);
    for v in 0..m.vms() as VmIdx {
        let h = host[v as usize];
        if h != NO_NODE {
            rules.place(inst, v, h);
        }
    }
    choose_among_parts(inst, &t, &mut rules, &load, &to_place);
    let order = placement_order(inst, &t, &to_place);
    let placer = place_all(inst, &t, &mut rules, &online, load, &mut host, &order)?;
    still_overloaded(inst, &placer, &host)?;
    for v in 0..m.vms() as VmIdx {
        let s = states[v as usize];
        let h = match s {
            VmState::Running => host[v as usize],
            // A VM suspended now sleeps where it ran; a sleeping one stays where it sleeps.
            VmState::Sleeping => m.host(v),
            VmState::Ready | VmState::Killed => NO_NODE,
        };
        t.set_vm(v, s, h);
    }
    Ok(t)
}

/// Every running VM that may stay where it is stays (its host set); the others that must run
/// are to be placed.
fn staying(
    inst: &Instance,
    states: &[VmState],
    online: &[bool],
    rules: &Rules,
) -> Result<(Vec<NodeIdx>, Vec<VmIdx>), PlanError> {
    let m = &inst.model;
    let mut host = vec![NO_NODE; m.vms()];
    let mut to_place: Vec<VmIdx> = Vec::new();
    for v in 0..m.vms() as VmIdx {
        if states[v as usize] != VmState::Running {
            continue;
        }
        let h = m.host(v);
        let stays = !inst.options.from_scratch
            && m.state(v) == VmState::Running
            && online[h as usize]
            && rules.allows(inst, v, h, &host);
        if stays {
            host[v as usize] = h;
        } else if rules.is_root(v) && m.state(v) == VmState::Running && !inst.options.from_scratch {
            return Err(PlanError::Conflict {
                constraints: root_and_others(inst, v),
                reason: format!(
                    "VM {} may not move but may not stay on {} either",
                    m.vm_name(v),
                    m.node_name(h)
                ),
            });
        } else {
            to_place.push(v);
        }
    }
    Ok((host, to_place))
}

/// The order VMs are placed in: first the caller's, then the largest first (size relative to
/// the largest node, on the resource it needs most of).
fn placement_order(inst: &Instance, t: &Model, to_place: &[VmIdx]) -> Vec<VmIdx> {
    let m = &inst.model;
    let mut order: Vec<VmIdx> = Vec::with_capacity(to_place.len());
    let mut pending = vec![false; m.vms()];
    to_place.iter().for_each(|&v| pending[v as usize] = true);
    for &v in &inst.place_first {
        if pending[v as usize] {
            order.push(v);
            pending[v as usize] = false;
        }
    }
    let mut rest: Vec<VmIdx> = to_place.iter().copied().filter(|&v| pending[v as usize]).collect();
    let max_cap: Vec<u64> = (0..m.nres())
        .map(|k| {
            (0..m.nodes() as NodeIdx)
                .map(|n| m.capacity(n)[k])
                .max()
                .unwrap_or(1)
                .max(1)
        })
        .collect();
    let size = |v: VmIdx| -> u64 {
        t.demand(v)
            .iter()
            .zip(&max_cap)
            .map(|(d, c)| d * 1_000_000 / c)
            .max()
            .unwrap_or(0)
    };
    rest.sort_by_key(|&v| (std::cmp::Reverse(size(v)), v));
    order.extend(rest);
    order
}

/// Places the VMs of `order`, each on the best node that allows it, making room by moving
/// placed VMs when none does. Returns the placer with the target's loads.
fn place_all(
    inst: &Instance,
    t: &Model,
    rules: &mut Rules,
    online: &[bool],
    load: Vec<u64>,
    host: &mut Vec<NodeIdx>,
    order: &[VmIdx],
) -> Result<Placer, PlanError> {
    let m = &inst.model;
    let r = m.nres();
    let mut capacity = Vec::with_capacity(m.nodes() * r);
    let mut closed = Vec::with_capacity(m.nodes());
    for n in 0..m.nodes() as NodeIdx {
        capacity.extend_from_slice(m.capacity(n));
        closed.push(!online[n as usize]);
    }
    let mut placer = Placer::new(r, capacity, closed, load, m.load());
    let mut on_node: Vec<Vec<VmIdx>> = vec![Vec::new(); m.nodes()];
    for v in 0..m.vms() as VmIdx {
        if host[v as usize] != NO_NODE {
            on_node[host[v as usize] as usize].push(v);
        }
    }
    for &v in order {
        let d = t.demand(v).to_vec();
        let cur = current_host(m, v);
        let allowed = |n| (n == cur || rules.accepts_arrivals(n)) && rules.allows(inst, v, n, host);
        let chosen = match rules.restricted_to(inst, v) {
            Some(ns) if ns.len() * 4 < m.nodes() => placer.best_within(&d, &ns, allowed),
            _ => placer.best(&d, allowed),
        };
        match chosen {
            Some(n) => {
                placer.take(n, &d);
                host[v as usize] = n;
                on_node[n as usize].push(v);
                rules.place(inst, v, n);
            }
            None => {
                let mut ctx = Ctx {
                    inst,
                    t,
                    rules: &mut *rules,
                    host: &mut *host,
                    on_node: &on_node,
                };
                let Some((n, moved)) = make_room(&mut placer, &mut ctx, v) else {
                    return Err(no_room(inst, t, &placer, v, host));
                };
                on_node[n as usize].retain(|u| !moved.iter().any(|(m, _)| m == u));
                on_node[n as usize].push(v);
                for (u, x) in moved {
                    on_node[x as usize].push(u);
                }
            }
        }
    }
    placer.commit();
    Ok(placer)
}

/// What could not be relieved (VMs that may not move) leaves the target overloaded: a conflict.
fn still_overloaded(inst: &Instance, placer: &Placer, host: &[NodeIdx]) -> Result<(), PlanError> {
    let m = &inst.model;
    for n in 0..m.nodes() as NodeIdx {
        if !fits(placer.load(n), &vec![0; m.nres()], placer.capacity(n)) {
            let stuck: Vec<String> = inst
                .constraints
                .iter()
                .filter(|c| {
                    matches!(c, Constraint::Root { vm } if host[*vm as usize] == n)
                        || matches!(c, Constraint::Quarantine { nodes } if nodes.contains(&n))
                })
                .map(|c| describe(c, m))
                .collect();
            return Err(PlanError::Conflict {
                constraints: stuck,
                reason: format!(
                    "node {} stays overloaded: the VMs that would relieve it may not move",
                    m.node_name(n)
                ),
            });
        }
    }
    Ok(())
}

/// Where a VM runs now, if it runs.
fn current_host(m: &Model, v: VmIdx) -> NodeIdx {
    if m.state(v) == VmState::Running {
        m.host(v)
    } else {
        NO_NODE
    }
}

/// The placement under way, as the room-making step sees it: VMs that may move are those
/// placed and not fixed where they are; where they may go is what the constraints allow.
struct Ctx<'a> {
    inst: &'a Instance,
    t: &'a Model,
    rules: &'a mut Rules,
    host: &'a mut Vec<NodeIdx>,
    on_node: &'a [Vec<VmIdx>],
}

impl Relocation for Ctx<'_> {
    type Vm = VmIdx;

    fn demand(&self, u: VmIdx) -> &[u64] {
        self.t.demand(u)
    }

    fn movable(&self, n: NodeIdx) -> Vec<VmIdx> {
        self.on_node[n as usize]
            .iter()
            .copied()
            .filter(|&u| self.host[u as usize] == n && !self.rules.is_root(u))
            .collect()
    }

    fn may_go(&self, v: VmIdx, n: NodeIdx) -> bool {
        let cur = current_host(&self.inst.model, v);
        (n == cur || self.rules.accepts_arrivals(n)) && self.rules.allows(self.inst, v, n, self.host)
    }

    fn put(&mut self, u: VmIdx, n: NodeIdx) {
        self.host[u as usize] = n;
        self.rules.place(self.inst, u, n);
    }

    fn lift(&mut self, u: VmIdx, n: NodeIdx) {
        self.host[u as usize] = NO_NODE;
        self.rules.unplace(self.inst, u, n);
    }
}

fn root_and_others(inst: &Instance, v: VmIdx) -> Vec<String> {
    inst.constraints
        .iter()
        .filter(|c| match c {
            Constraint::Root { vm } => *vm == v,
            Constraint::Ban { vms, .. } | Constraint::Fence { vms, .. } | Constraint::Spread { vms, .. } => {
                vms.contains(&v)
            }
            Constraint::Offline { node } => *node == inst.model.host(v),
            _ => false,
        })
        .map(|c| describe(c, &inst.model))
        .collect()
}

/// Moves VMs that stay but break a constraint (spread, gather, among, lonely, split,
/// splitAmong, a capacity) into `to_place`.
fn evict_for_constraints(inst: &Instance, t: &Model, rules: &Rules, host: &mut [NodeIdx], to_place: &mut Vec<VmIdx>) {
    let mut e = Evictions { rules, host, to_place };
    for (ci, c) in inst.constraints.iter().enumerate() {
        match c {
            Constraint::Spread { vms, .. } => e.spread(vms),
            Constraint::Gather { vms, .. } => e.gather(vms),
            Constraint::Among { vms, .. } => e.among(ci as u32, vms),
            Constraint::Lonely { vms, .. } => e.lonely(vms),
            Constraint::Split { parts, .. } => e.split(parts),
            Constraint::SplitAmong { vparts, nparts, .. } => e.split_among(vparts, nparts),
            Constraint::ResourceCapacity { nodes, amount, rc, .. } => e.capacity(nodes, *amount, |v| t.demand(v)[*rc]),
            Constraint::RunningCapacity { nodes, amount, .. } => e.capacity(nodes, *amount, |_| 1),
            _ => {}
        }
    }
}

/// VMs taken off their node (to be placed again), except those that may not move.
struct Evictions<'a> {
    rules: &'a Rules,
    host: &'a mut [NodeIdx],
    to_place: &'a mut Vec<VmIdx>,
}

impl Evictions<'_> {
    fn evict(&mut self, v: VmIdx) {
        if self.host[v as usize] != NO_NODE && !self.rules.is_root(v) {
            self.host[v as usize] = NO_NODE;
            self.to_place.push(v);
        }
    }

    /// One VM per node stays; VMs that may not move claim their node first.
    fn spread(&mut self, vms: &[VmIdx]) {
        let mut seen: HashMap<NodeIdx, VmIdx> = HashMap::new();
        let mut members: Vec<VmIdx> = vms.to_vec();
        members.sort_by_key(|&v| (!self.rules.is_root(v), v));
        for v in members {
            let h = self.host[v as usize];
            if h != NO_NODE && seen.insert(h, v).is_some() {
                self.evict(v);
            }
        }
    }

    /// The node of a VM that may not move, else the node most of them are on, keeps them.
    fn gather(&mut self, vms: &[VmIdx]) {
        let rooted = vms
            .iter()
            .find(|&&v| self.rules.is_root(v) && self.host[v as usize] != NO_NODE)
            .map(|&v| self.host[v as usize]);
        let keep = rooted.or_else(|| majority(vms.iter().map(|&v| self.host[v as usize]).filter(|&h| h != NO_NODE)));
        if let Some(keep) = keep {
            for &v in vms {
                if self.host[v as usize] != keep {
                    self.evict(v);
                }
            }
        }
    }

    /// The group of a VM that may not move, else the group most of them are in, keeps them.
    fn among(&mut self, ci: u32, vms: &[VmIdx]) {
        let rules = self.rules;
        let part_of = |n: NodeIdx| rules.node_part(ci, n);
        let rooted = vms
            .iter()
            .find(|&&v| rules.is_root(v) && self.host[v as usize] != NO_NODE)
            .and_then(|&v| part_of(self.host[v as usize]));
        let keep = rooted.or(majority(vms.iter().filter_map(|&v| {
            let h = self.host[v as usize];
            (h != NO_NODE).then(|| part_of(h)).flatten()
        })));
        for &v in vms {
            let h = self.host[v as usize];
            if h != NO_NODE && part_of(h) != keep {
                self.evict(v);
            }
        }
    }

    /// Members sharing a node with outsiders leave it; where a member may not move, the
    /// outsiders leave instead.
    fn lonely(&mut self, vms: &[VmIdx]) {
        let set: std::collections::HashSet<VmIdx> = vms.iter().copied().collect();
        let has_member: std::collections::HashSet<NodeIdx> = vms
            .iter()
            .map(|&v| self.host[v as usize])
            .filter(|&h| h != NO_NODE)
            .collect();
        let mut mixed: std::collections::HashSet<NodeIdx> = std::collections::HashSet::new();
        for (u, &h) in self.host.iter().enumerate() {
            if h != NO_NODE && has_member.contains(&h) && !set.contains(&(u as VmIdx)) {
                mixed.insert(h);
            }
        }
        for n in mixed {
            let pinned = vms.iter().any(|&v| self.host[v as usize] == n && self.rules.is_root(v));
            for u in 0..self.host.len() as VmIdx {
                if self.host[u as usize] == n && set.contains(&u) != pinned {
                    self.evict(u);
                }
            }
        }
    }

    /// On a node holding several parts, the part of a VM that may not move, else the part
    /// with most VMs there, stays.
    fn split(&mut self, parts: &[Vec<VmIdx>]) {
        let mut by_node: HashMap<NodeIdx, Vec<(usize, VmIdx)>> = HashMap::new();
        for (p, vs) in parts.iter().enumerate() {
            for &v in vs {
                if self.host[v as usize] != NO_NODE {
                    by_node.entry(self.host[v as usize]).or_default().push((p, v));
                }
            }
        }
        for (_, list) in by_node {
            let rooted = list.iter().find(|&&(_, v)| self.rules.is_root(v)).map(|&(p, _)| p);
            if let Some(keep) = rooted.or_else(|| majority(list.iter().map(|&(p, _)| p))) {
                for &(p, v) in &list {
                    if p != keep {
                        self.evict(v);
                    }
                }
            }
        }
    }

    /// Each VM part keeps the node part most of its VMs are in, if no earlier part took it.
    fn split_among(&mut self, vparts: &[Vec<VmIdx>], nparts: &[Vec<NodeIdx>]) {
        let part_of = |n: NodeIdx| nparts.iter().position(|p| p.contains(&n));
        let mut taken: HashMap<usize, usize> = HashMap::new();
        for (vp, vs) in vparts.iter().enumerate() {
            let keep = majority(vs.iter().filter_map(|&v| {
                let h = self.host[v as usize];
                (h != NO_NODE).then(|| part_of(h)).flatten()
            }))
            .filter(|np| !taken.contains_key(np));
            if let Some(np) = keep {
                taken.insert(np, vp);
            }
            for &v in vs {
                let h = self.host[v as usize];
                if h != NO_NODE && (keep.is_none() || part_of(h) != keep) {
                    self.evict(v);
                }
            }
        }
    }

    /// Over a capacity on a set of nodes: the largest VMs leave first (the fewest moves).
    fn capacity(&mut self, nodes: &[NodeIdx], amount: u64, weight: impl Fn(VmIdx) -> u64) {
        let mut inside: Vec<VmIdx> = (0..self.host.len() as VmIdx)
            .filter(|&v| self.host[v as usize] != NO_NODE && nodes.contains(&self.host[v as usize]))
            .collect();
        let mut used: u64 = inside.iter().map(|&v| weight(v)).sum();
        inside.sort_by_key(|&v| (std::cmp::Reverse(weight(v)), v));
        for v in inside {
            if used <= amount {
                break;
            }
            if !self.rules.is_root(v) {
                used -= weight(v);
                self.evict(v);
            }
        }
    }
}

fn majority<T: Copy + Eq + std::hash::Hash + Ord>(items: impl Iterator<Item = T>) -> Option<T> {
    let mut counts: HashMap<T, usize> = HashMap::new();
    for i in items {
        *counts.entry(i).or_default() += 1;
    }
    counts
        .into_iter()
        .max_by_key(|&(k, c)| (c, std::cmp::Reverse(k)))
        .map(|(k, _)| k)
}

/// Evicts, from every overloaded node, the fewest and cheapest VMs that bring it back within
/// capacity.
fn evict_for_capacity(
    inst: &Instance,
    t: &Model,
    rules: &Rules,
    host: &mut [NodeIdx],
    load: &mut [u64],
    to_place: &mut Vec<VmIdx>,
) {
    let r = t.nres();
    let mut on_node: Vec<Vec<VmIdx>> = vec![Vec::new(); t.nodes()];
    for v in 0..t.vms() as VmIdx {
        let h = host[v as usize];
        if h != NO_NODE {
            on_node[h as usize].push(v);
        }
    }
    for n in 0..t.nodes() {
        let cap = t.capacity(n as NodeIdx);
        loop {
            let excess: Vec<u64> = (0..r).map(|k| load[n * r + k].saturating_sub(cap[k])).collect();
            if excess.iter().all(|&e| e == 0) {
                break;
            }
            let candidates = on_node[n]
                .iter()
                .copied()
                .filter(|&v| host[v as usize] == n as NodeIdx && !rules.is_root(v));
            // A single VM that covers the whole excess, the cheapest to move; otherwise the VM
            // that covers the most of it.
            let covers = |v: VmIdx| t.demand(v).iter().zip(&excess).all(|(d, e)| d >= e);
            let best_single = candidates.clone().filter(|&v| covers(v)).min_by_key(|&v| {
                (
                    inst.costs.migrate.get(v as usize).copied().unwrap_or(1),
                    t.demand(v).iter().sum::<u64>(),
                    v,
                )
            });
            let victim = best_single.or_else(|| {
                candidates.max_by_key(|&v| {
                    let covered: u64 = t
                        .demand(v)
                        .iter()
                        .zip(&excess)
                        .zip(cap)
                        .map(|((d, e), c)| (*d.min(e) as u128 * 1_000_000 / (*c).max(1) as u128) as u64)
                        .sum();
                    (covered, std::cmp::Reverse(v))
                })
            });
            let Some(v) = victim else { break };
            host[v as usize] = NO_NODE;
            for (k, d) in t.demand(v).iter().enumerate() {
                load[n * r + k] -= d;
            }
            to_place.push(v);
        }
    }
}

/// For each among with no VM placed yet, picks the part with the most room for its VMs.
fn choose_among_parts(inst: &Instance, t: &Model, rules: &mut Rules, load: &[u64], to_place: &[VmIdx]) {
    let r = t.nres();
    let mut placing = vec![false; t.vms()];
    to_place.iter().for_each(|&v| placing[v as usize] = true);
    for (i, c) in inst.constraints.iter().enumerate() {
        let Constraint::Among { vms, parts, .. } = c else {
            continue;
        };
        let i = i as u32;
        if rules.among_choice.contains_key(&i) || !vms.iter().any(|&v| placing[v as usize]) {
            continue;
        }
        let room = |p: &Vec<NodeIdx>| -> u128 {
            p.iter()
                .filter(|&&n| t.is_online(n))
                .map(|&n| {
                    let cap = t.capacity(n);
                    (0..r)
                        .map(|k| {
                            (cap[k].saturating_sub(load[n as usize * r + k]) as u128 * 1_000_000)
                                / cap[k].max(1) as u128
                        })
                        .min()
                        .unwrap_or(0)
                })
                .sum()
        };
        if let Some((p, _)) = parts
            .iter()
            .enumerate()
            .max_by_key(|(p, ns)| (room(ns), std::cmp::Reverse(*p)))
        {
            rules.among_choice.insert(i, p as u32);
        }
    }
}

/// Explains why `v` cannot be placed: no capacity anywhere, or which constraints exclude the
/// nodes that have room.
fn no_room(inst: &Instance, t: &Model, placer: &Placer, v: VmIdx, host: &[NodeIdx]) -> PlanError {
    let m = &inst.model;
    let d = t.demand(v);
    let with_room: Vec<NodeIdx> = (0..m.nodes() as NodeIdx).filter(|&n| placer.fits(n, d)).collect();
    if with_room.is_empty() {
        let need = m
            .resources()
            .iter()
            .zip(d)
            .map(|(r, d)| format!("{r} {d}"))
            .collect::<Vec<_>>()
            .join(", ");
        return PlanError::NoRoom {
            vm: m.vm_name(v).to_string(),
            reason: format!("no online node has room left for it ({need})"),
        };
    }
    let blocking: Vec<String> = inst
        .constraints
        .iter()
        .filter(|c| match c {
            Constraint::Ban { vms, .. }
            | Constraint::Fence { vms, .. }
            | Constraint::Spread { vms, .. }
            | Constraint::Gather { vms, .. }
            | Constraint::Lonely { vms, .. }
            | Constraint::Among { vms, .. } => vms.contains(&v),
            Constraint::Split { parts, .. } => parts.iter().any(|p| p.contains(&v)),
            Constraint::SplitAmong { vparts, .. } => vparts.iter().any(|p| p.contains(&v)),
            Constraint::NoArrival { .. }
            | Constraint::Quarantine { .. }
            | Constraint::ResourceCapacity { .. }
            | Constraint::RunningCapacity { .. } => true,
            _ => false,
        })
        .filter(|c| {
            // Would this constraint alone exclude every node with room?
            let single = Instance {
                model: m.clone(),
                constraints: vec![(*c).clone()],
                place_first: vec![],
                costs: Default::default(),
                options: Default::default(),
            };
            let mut alone = Rules::new(&single, t);
            for (u, &h) in host.iter().enumerate() {
                if h != NO_NODE {
                    alone.place(&single, u as VmIdx, h);
                }
            }
            !with_room
                .iter()
                .any(|&n| alone.allows(&single, v, n, host) && alone.accepts_arrivals(n))
        })
        .map(|c| describe(c, m))
        .collect();
    PlanError::NoRoom {
        vm: m.vm_name(v).to_string(),
        reason: if blocking.is_empty() {
            format!(
                "{} node(s) have room but the constraints together exclude them all",
                with_room.len()
            )
        } else {
            format!("the nodes with room are excluded by {}", blocking.join(", "))
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn two_nodes() -> Model {
        let mut m = Model::cpu_and_memory();
        m.add_node("a", true, &[4, 8]);
        m.add_node("b", true, &[4, 8]);
        m
    }

    #[test]
    fn well_placed_vms_stay_and_new_ones_fit() {
        let mut m = two_nodes();
        m.add_vm("v0", VmState::Running, 0, &[2, 2]);
        let v1 = m.add_vm("v1", VmState::Ready, NO_NODE, &[3, 2]);
        let inst = Instance::new(m, vec![Constraint::Running { vm: v1 }]);
        let t = target(&inst).unwrap();
        assert_eq!(t.host(0), 0);
        assert_eq!(t.state(v1), VmState::Running);
        assert_eq!(t.host(v1), 1, "only b has 3 cpus free");
    }

    #[test]
    fn overloaded_node_sheds_the_cheapest_sufficient_vm() {
        let mut m = two_nodes();
        m.add_vm("big", VmState::Running, 0, &[2, 4]);
        let small = m.add_vm("small", VmState::Running, 0, &[1, 1]);
        m.add_vm("other", VmState::Running, 0, &[1, 1]);
        let inst = Instance::new(
            m,
            vec![Constraint::Preserve {
                vm: small,
                rc: 0,
                amount: 2,
            }],
        );
        let t = target(&inst).unwrap();
        // Load becomes 5 cpus on a: moving "other" (1 cpu) is enough.
        assert_eq!(t.host(0), 0);
        assert_eq!(t.host(small), 0);
        assert_eq!(t.host(2), 1);
    }

    #[test]
    fn spread_and_offline_move_vms() {
        let mut m = two_nodes();
        m.add_node("c", true, &[4, 8]);
        let a = m.add_vm("a", VmState::Running, 0, &[1, 1]);
        let b = m.add_vm("b", VmState::Running, 0, &[1, 1]);
        let c = m.add_vm("c", VmState::Running, 2, &[1, 1]);
        let inst = Instance::new(
            m,
            vec![
                Constraint::Spread {
                    vms: vec![a, b],
                    continuous: false,
                },
                Constraint::Offline { node: 2 },
            ],
        );
        let t = target(&inst).unwrap();
        assert_ne!(t.host(a), t.host(b));
        assert_ne!(t.host(c), 2);
        assert!(!t.is_online(2));
    }

    #[test]
    fn unsatisfiable_names_the_constraints() {
        let mut m = two_nodes();
        let v = m.add_vm("v", VmState::Ready, NO_NODE, &[1, 1]);
        let inst = Instance::new(
            m,
            vec![
                Constraint::Running { vm: v },
                Constraint::Ban {
                    vms: vec![v],
                    nodes: vec![0, 1],
                },
            ],
        );
        let e = target(&inst).unwrap_err().to_string();
        assert!(e.contains("ban({v}, {a,b})"), "{e}");
        let mut m = two_nodes();
        let v = m.add_vm("v", VmState::Ready, NO_NODE, &[1, 9]);
        let e = target(&Instance::new(m, vec![Constraint::Running { vm: v }]))
            .unwrap_err()
            .to_string();
        assert!(e.contains("no online node has room"), "{e}");
    }

    #[test]
    fn a_node_set_gives_its_lowest_node_as_nodes_come_and_go() {
        let mut set = NodeSet::default();
        assert_eq!(set.first(), None);
        for n in [700, 5, 130, 64] {
            set.insert(n);
        }
        set.insert(5);
        assert_eq!((set.first(), set.len), (Some(5), 4));
        set.remove(5);
        set.remove(5);
        assert_eq!((set.first(), set.len), (Some(64), 3));
        set.remove(64);
        set.remove(130);
        assert_eq!(set.first(), Some(700));
        set.insert(3);
        assert_eq!(set.first(), Some(3));
        set.remove(3);
        set.remove(700);
        assert!(set.is_empty() && set.first().is_none());
        set.insert(129);
        assert_eq!(set.first(), Some(129), "an emptied set is used again");
    }

    proptest::proptest! {
        /// The grouped search (the first node of each state) finds the node that scoring every
        /// node finds, whatever takes, releases, rollbacks, closes and opens came before: the
        /// groups follow every change of a node's state.
        #[test]
        fn the_grouped_search_finds_what_scoring_every_node_finds(
            nres in 1usize..=2,
            steps in proptest::collection::vec((0u8..6, 0u32..12, 1u64..5, 1u64..5), 1..80),
        ) {
            let nodes = 12;
            let capacity: Vec<u64> = (0..nodes * nres).map(|i| 4 + (i as u64 % 3) * 2).collect();
            let mut p = Placer::new(nres, capacity, vec![false; nodes], vec![0; nodes * nres], vec![0; nodes * nres]);
            let mut marks = Vec::new();
            let mut taken: Vec<(NodeIdx, Vec<u64>)> = Vec::new();
            for (op, n, a, b) in steps {
                let demand: Vec<u64> = [a, b][..nres].to_vec();
                match op {
                    0 | 1 => {
                        if p.fits(n, &demand) {
                            p.take(n, &demand);
                            taken.push((n, demand.clone()));
                        }
                    }
                    2 => {
                        if let Some((n, d)) = taken.pop() {
                            p.release(n, &d);
                        }
                    }
                    3 => marks.push(p.mark()),
                    4 => {
                        if let Some(mark) = marks.pop() {
                            p.rollback(mark);
                            taken.clear();
                            marks.clear();
                            p.commit();
                        }
                    }
                    _ => match p.accepts(n) {
                        true => p.close(n),
                        false => p.open(n),
                    },
                }
                proptest::prop_assert_eq!(p.best_any(&demand), p.best(&demand, |_| true));
            }
        }
    }

    #[test]
    fn placer_places_groups_all_or_nothing() {
        let m = two_nodes();
        let mut p = Placer::from_model(&m);
        assert_eq!(p.place_group(&[&[4, 4], &[4, 4]]), Some(vec![0, 1]));
        let mark = p.mark();
        assert_eq!(p.place_group(&[&[1, 1]]), None);
        p.release(0, &[4, 4]);
        assert_eq!(p.place_group(&[&[2, 2], &[2, 2]]), Some(vec![0, 0]));
        p.rollback(mark);
        assert!(!p.fits(0, &[1, 1]));
    }
}
