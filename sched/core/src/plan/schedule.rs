//! Step 2 of the planner: the reconfiguration plan from the current to the target configuration.
//!
//! One action per VM or node that changes. Actions that only free resources (suspend, shutdown,
//! kill) start at once; actions that need room on a node (boot, resume, allocate, and migrate,
//! which occupies both nodes for its whole duration) start as soon as the node has room and no
//! continuous constraint forbids it (a spread mate, a lonely outsider or another split part still
//! there; a resource or running capacity of a node set reached). This is list scheduling over an
//! event queue, shortest action first: it keeps the sum of completion times low, and no capacity
//! is ever exceeded. `seq` constraints chain their VMs' actions.
//!
//! Each action records the actions whose end it waited for (every earlier departure from its
//! node), so an executor that follows dependencies instead of estimated times stays safe when
//! real durations differ. When actions wait on each other in a cycle, one migration goes through
//! a pivot node with room, or (if allowed) is suspended and resumed at its destination.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};

use super::place::Rules;
use super::{Action, ActionKind, Constraint, Instance, Plan, PlanError};
use crate::model::{Model, NodeIdx, VmIdx, VmState, NO_NODE};

/// How an action uses resources.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// Frees the VM's source demand on `node` at its end.
    Release { node: NodeIdx },
    /// Takes the VM's target demand on `node` at its start.
    Take { node: NodeIdx },
    /// Takes on `to` at its start, frees on `from` at its end.
    Move { from: NodeIdx, to: NodeIdx },
    /// Takes `delta` (target minus source demand) on `node` at its start.
    Grow { node: NodeIdx },
    /// Resources of no node (killing a VM that does not run, booting or halting a node).
    Nothing,
}

fn use_of(kind: &ActionKind) -> Use {
    match *kind {
        ActionKind::SuspendVm { from, .. } => Use::Release { node: from },
        ActionKind::ShutdownVm { on, .. } => Use::Release { node: on },
        ActionKind::KillVm { on, .. } if on != NO_NODE => Use::Release { node: on },
        ActionKind::BootVm { on, .. } => Use::Take { node: on },
        ActionKind::ResumeVm { to, .. } => Use::Take { node: to },
        ActionKind::MigrateVm { from, to, .. } => Use::Move { from, to },
        ActionKind::Allocate { on, .. } => Use::Grow { node: on },
        _ => Use::Nothing,
    }
}

/// The node an action needs room on, if any.
fn dest(kind: &ActionKind) -> Option<NodeIdx> {
    match use_of(kind) {
        Use::Take { node } | Use::Grow { node } | Use::Move { to: node, .. } => Some(node),
        _ => None,
    }
}

struct Pending {
    kind: ActionKind,
    cost: u64,
    deps: Vec<u32>,
    /// Actions that must end before this one starts (seq, second legs of a pivot).
    after: Vec<usize>,
}

/// Continuous constraints, indexed for the replay.
struct Continuous {
    /// Per VM: continuous spread, lonely and split constraints it belongs to.
    of_vm: Vec<Vec<u32>>,
    /// (constraint, VM) -> part (0 for spread and lonely).
    part: HashMap<(u32, VmIdx), u32>,
    /// Continuous lonely constraints: an outsider may not join their members.
    lonely: Vec<u32>,
    /// Per node: continuous resource and running capacity constraints covering it.
    caps_of_node: HashMap<NodeIdx, Vec<u32>>,
    cap_nodes: HashMap<u32, Vec<NodeIdx>>,
}

impl Continuous {
    fn new(inst: &Instance) -> Continuous {
        let mut c = Continuous {
            of_vm: vec![Vec::new(); inst.model.vms()],
            part: HashMap::new(),
            lonely: Vec::new(),
            caps_of_node: HashMap::new(),
            cap_nodes: HashMap::new(),
        };
        for (i, k) in inst.constraints.iter().enumerate() {
            let i = i as u32;
            let mut member = |v: VmIdx, p: u32| {
                c.of_vm[v as usize].push(i);
                c.part.insert((i, v), p);
            };
            match k {
                Constraint::Spread { vms, continuous: true } => vms.iter().for_each(|&v| member(v, 0)),
                Constraint::Lonely { vms, continuous: true } => {
                    vms.iter().for_each(|&v| member(v, 0));
                    c.lonely.push(i);
                }
                Constraint::Split {
                    parts,
                    continuous: true,
                } => {
                    for (p, vs) in parts.iter().enumerate() {
                        vs.iter().for_each(|&v| member(v, p as u32));
                    }
                }
                Constraint::ResourceCapacity {
                    nodes,
                    continuous: true,
                    ..
                }
                | Constraint::RunningCapacity {
                    nodes,
                    continuous: true,
                    ..
                } => {
                    for &n in nodes {
                        c.caps_of_node.entry(n).or_default().push(i);
                    }
                    c.cap_nodes.insert(i, nodes.clone());
                }
                _ => {}
            }
        }
        c
    }
}

struct Timeline<'a> {
    inst: &'a Instance,
    src: &'a Model,
    dst: &'a Model,
    r: usize,
    occ: Vec<u64>,
    up: Vec<bool>,
    /// Where each VM is right now in the replay, and where it is arriving.
    at: Vec<NodeIdx>,
    arriving: Vec<NodeIdx>,
    /// VMs present on each node (arrivals count from their start, departures until their end).
    present: Vec<Vec<VmIdx>>,
    /// Per node: actions that freed resources there and have ended.
    released: Vec<Vec<u32>>,
    /// Per node: the action that boots it.
    boot_of: Vec<Option<u32>>,
    /// Per node: consumers waiting for room, shortest first.
    waiting: Vec<Vec<usize>>,
    /// Actions waiting for other actions to end.
    gated: Vec<usize>,
    pending: Vec<Pending>,
    actions: Vec<Option<Action>>,
    done: Vec<bool>,
    events: BinaryHeap<Reverse<(u64, u32)>>,
    cont: Continuous,
    /// Continuous capacity constraint -> what its nodes hold now.
    cap_use: HashMap<u32, u64>,
    /// The departure action of each VM, once started.
    leaving: Vec<Option<u32>>,
    /// VMs already sent through a pivot: a VM is rerouted once at most, so cycle breaking ends.
    pivoted: Vec<bool>,
}

impl Timeline<'_> {
    fn demand(&self, kind: &ActionKind) -> Vec<u64> {
        match *kind {
            ActionKind::Allocate { vm, rc, .. } => {
                let mut d = vec![0; self.r];
                d[rc] = self.dst.demand(vm)[rc].saturating_sub(self.src.demand(vm)[rc]);
                d
            }
            _ => self.dst.demand(kind.vm().expect("a VM action")).to_vec(),
        }
    }

    fn fits(&self, node: NodeIdx, d: &[u64]) -> bool {
        let n = node as usize;
        self.up[n] && (0..self.r).all(|k| self.occ[n * self.r + k] + d[k] <= self.src.capacity(node)[k])
    }

    /// What a VM weighs in a capacity constraint.
    fn weight(&self, c: u32, vm: VmIdx, grow: Option<&[u64]>) -> u64 {
        match &self.inst.constraints[c as usize] {
            Constraint::ResourceCapacity { rc, .. } => match grow {
                Some(d) => d[*rc],
                None => self.dst.demand(vm)[*rc],
            },
            _ if grow.is_some() => 0,
            _ => 1,
        }
    }

    /// Whether `kind` may start on `node` now as far as continuous constraints go; if not, the
    /// departure it waits for, when known.
    fn continuous_allows(&self, kind: &ActionKind, node: NodeIdx) -> Result<(), Option<u32>> {
        let vm = kind.vm().expect("a VM action");
        let grow = matches!(kind, ActionKind::Allocate { .. });
        if let Some(caps) = self.cont.caps_of_node.get(&node) {
            let d = self.demand(kind);
            for &c in caps {
                let limit = match &self.inst.constraints[c as usize] {
                    Constraint::ResourceCapacity { amount, .. } | Constraint::RunningCapacity { amount, .. } => *amount,
                    _ => u64::MAX,
                };
                let w = self.weight(c, vm, grow.then_some(&d[..]));
                if self.cap_use.get(&c).copied().unwrap_or(0) + w > limit {
                    return Err(None);
                }
            }
        }
        if grow {
            return Ok(());
        }
        let here = &self.present[node as usize];
        let mine = &self.cont.of_vm[vm as usize];
        for &c in mine {
            let my_part = self.cont.part[&(c, vm)];
            for &u in here {
                if u == vm {
                    continue;
                }
                let clash = match &self.inst.constraints[c as usize] {
                    Constraint::Spread { .. } => self.cont.part.contains_key(&(c, u)),
                    Constraint::Lonely { .. } => !self.cont.part.contains_key(&(c, u)),
                    Constraint::Split { .. } => self.cont.part.get(&(c, u)).is_some_and(|&p| p != my_part),
                    _ => false,
                };
                if clash {
                    return Err(self.leaving[u as usize]);
                }
            }
        }
        for &c in &self.cont.lonely {
            if !self.cont.part.contains_key(&(c, vm)) {
                if let Some(&u) = here.iter().find(|&&u| self.cont.part.contains_key(&(c, u))) {
                    return Err(self.leaving[u as usize]);
                }
            }
        }
        Ok(())
    }

    fn start(&mut self, idx: usize, t: u64, extra_deps: Vec<u32>) {
        let p = &self.pending[idx];
        let kind = p.kind;
        let mut deps = p.deps.clone();
        deps.extend(p.after.iter().map(|&a| a as u32));
        deps.extend(extra_deps);
        if let Some(node) = dest(&kind) {
            let d = self.demand(&kind);
            let n = node as usize;
            for k in 0..self.r {
                self.occ[n * self.r + k] += d[k];
            }
            deps.extend(self.released[n].iter().copied());
            deps.extend(self.boot_of[n]);
            let vm = kind.vm().expect("a VM action");
            let grow = matches!(kind, ActionKind::Allocate { .. });
            if let Some(caps) = self.cont.caps_of_node.get(&node).cloned() {
                for c in caps {
                    let w = self.weight(c, vm, grow.then_some(&d[..]));
                    *self.cap_use.entry(c).or_default() += w;
                }
            }
            if !grow {
                self.arriving[vm as usize] = node;
                self.present[n].push(vm);
            }
        }
        if let (Use::Release { .. } | Use::Move { .. }, Some(vm)) = (use_of(&kind), kind.vm()) {
            self.leaving[vm as usize] = Some(idx as u32);
        }
        deps.sort_unstable();
        deps.dedup();
        deps.retain(|&d| d != idx as u32);
        let end = t + p.cost;
        self.actions[idx] = Some(Action {
            kind,
            start: t,
            end,
            deps,
        });
        self.events.push(Reverse((end, idx as u32)));
    }

    /// Applies the end of an action; returns the nodes where room may have grown.
    fn finish(&mut self, idx: u32) -> Vec<NodeIdx> {
        self.done[idx as usize] = true;
        let kind = self.actions[idx as usize].as_ref().expect("started").kind;
        let mut touched = Vec::new();
        if let Use::Release { node } | Use::Move { from: node, .. } = use_of(&kind) {
            let vm = kind.vm().expect("a VM action");
            let d = self.src.demand(vm);
            let n = node as usize;
            for k in 0..self.r {
                self.occ[n * self.r + k] -= d[k];
            }
            self.released[n].push(idx);
            self.present[n].retain(|&u| u != vm);
            touched.push(node);
            if let Some(caps) = self.cont.caps_of_node.get(&node).cloned() {
                for c in caps {
                    let w = match &self.inst.constraints[c as usize] {
                        Constraint::ResourceCapacity { rc, .. } => self.src.demand(vm)[*rc],
                        _ => 1,
                    };
                    let used = self.cap_use.entry(c).or_default();
                    *used = used.saturating_sub(w);
                    touched.extend(self.cont.cap_nodes[&c].iter().copied());
                }
            }
        }
        if let Some(vm) = kind.vm() {
            let v = vm as usize;
            match kind {
                ActionKind::MigrateVm { to, .. }
                | ActionKind::BootVm { on: to, .. }
                | ActionKind::ResumeVm { to, .. } => {
                    self.at[v] = to;
                    self.arriving[v] = NO_NODE;
                }
                ActionKind::SuspendVm { .. } | ActionKind::ShutdownVm { .. } | ActionKind::KillVm { .. } => {
                    self.at[v] = NO_NODE;
                }
                _ => {}
            }
            self.leaving[v] = None;
        }
        if let ActionKind::BootNode { node } = kind {
            self.up[node as usize] = true;
            touched.push(node);
        }
        touched
    }

    /// Releases gated actions whose predecessors have all ended: frees start at `t`, consumers
    /// join their node's queue. Returns the nodes whose queues grew.
    fn ungate(&mut self, t: u64) -> Vec<NodeIdx> {
        let mut woken = Vec::new();
        let gated = std::mem::take(&mut self.gated);
        for idx in gated {
            if !self.pending[idx].after.iter().all(|&a| self.done[a]) {
                self.gated.push(idx);
                continue;
            }
            match dest(&self.pending[idx].kind) {
                Some(node) => {
                    self.waiting[node as usize].push(idx);
                    let pending = &self.pending;
                    self.waiting[node as usize].sort_by_key(|&w| (pending[w].cost, w));
                    woken.push(node);
                }
                None => self.start(idx, t, Vec::new()),
            }
        }
        woken
    }

    /// Starts every waiting action on `node` that can start at `t`, shortest first.
    fn wake(&mut self, node: NodeIdx, t: u64) {
        let mut still = Vec::new();
        let waiting = std::mem::take(&mut self.waiting[node as usize]);
        for idx in waiting {
            let kind = self.pending[idx].kind;
            let d = self.demand(&kind);
            if self.fits(node, &d) && self.continuous_allows(&kind, node).is_ok() {
                self.start(idx, t, Vec::new());
            } else {
                still.push(idx);
            }
        }
        self.waiting[node as usize] = still;
    }
}

/// Builds the plan from `inst.model` to `target`.
pub fn schedule(inst: &Instance, target: &Model) -> Result<Plan, PlanError> {
    let pending = pending_actions(inst, target);
    let mut tl = Timeline::new(inst, target, pending);
    tl.seed();
    tl.run(&Rules::new(inst, target))?;
    let mut actions: Vec<Action> = tl
        .actions
        .into_iter()
        .map(|a| a.expect("every action started"))
        .collect();
    shutdown_nodes(inst, target, &tl.released, &mut actions);
    Ok(Plan {
        target: target.clone(),
        actions,
    })
}

/// The cost of action `i` in a per-VM or per-node list (1 when the list is short).
fn cost_of(v: &[u64], i: u32) -> u64 {
    v.get(i as usize).copied().unwrap_or(1)
}

/// One action per VM and per node that changes between the current configuration and the
/// target, with the order `seq` constraints impose.
fn pending_actions(inst: &Instance, target: &Model) -> Vec<Pending> {
    let src = &inst.model;
    let r = src.nres();
    let costs = &inst.costs;
    let cost = |v: &Vec<u64>, i: u32| cost_of(v, i);
    let mut pending: Vec<Pending> = Vec::new();
    let mut push = |kind: ActionKind, c: u64| {
        pending.push(Pending {
            kind,
            cost: c,
            deps: Vec::new(),
            after: Vec::new(),
        })
    };

    for n in 0..src.nodes() as NodeIdx {
        if !src.is_online(n) && target.is_online(n) {
            push(ActionKind::BootNode { node: n }, cost(&costs.boot_node, n));
        }
    }
    for v in 0..src.vms() as VmIdx {
        let (s, sh) = (src.state(v), src.host(v));
        let (d, dh) = (target.state(v), target.host(v));
        use VmState::*;
        match (s, d) {
            (Running, Running) if sh != dh => push(
                ActionKind::MigrateVm {
                    vm: v,
                    from: sh,
                    to: dh,
                },
                cost(&costs.migrate, v),
            ),
            (Running, Running) => {
                for k in 0..r {
                    if target.demand(v)[k] > src.demand(v)[k] {
                        push(
                            ActionKind::Allocate {
                                vm: v,
                                on: sh,
                                rc: k,
                                amount: target.demand(v)[k],
                            },
                            costs.allocate,
                        );
                    }
                }
            }
            (Running, Sleeping) => push(ActionKind::SuspendVm { vm: v, from: sh }, cost(&costs.suspend, v)),
            (Running, Ready) => push(ActionKind::ShutdownVm { vm: v, on: sh }, cost(&costs.shutdown, v)),
            (Running, Killed) => push(ActionKind::KillVm { vm: v, on: sh }, cost(&costs.kill, v)),
            (Sleeping | Ready, Killed) => push(ActionKind::KillVm { vm: v, on: NO_NODE }, cost(&costs.kill, v)),
            (Sleeping, Running) => push(
                ActionKind::ResumeVm {
                    vm: v,
                    from: sh,
                    to: dh,
                },
                cost(&costs.resume, v),
            ),
            (Ready, Running) => push(ActionKind::BootVm { vm: v, on: dh }, cost(&costs.boot, v)),
            _ => {}
        }
    }
    // seq: each VM's actions after the previous VM's.
    let mut first_of: HashMap<VmIdx, Vec<usize>> = HashMap::new();
    for (i, p) in pending.iter().enumerate() {
        if let Some(v) = p.kind.vm() {
            first_of.entry(v).or_default().push(i);
        }
    }
    for c in &inst.constraints {
        if let Constraint::Seq { vms } = c {
            let mut prev: Vec<usize> = Vec::new();
            for v in vms {
                if let Some(acts) = first_of.get(v) {
                    for &a in acts {
                        pending[a].after.extend(prev.iter().copied());
                    }
                    prev = acts.clone();
                }
            }
        }
    }

    pending
}

impl<'a> Timeline<'a> {
    /// The timeline at instant 0: the current configuration, nothing started.
    fn new(inst: &'a Instance, target: &'a Model, pending: Vec<Pending>) -> Timeline<'a> {
        let src = &inst.model;
        let r = src.nres();
        let at: Vec<NodeIdx> = (0..src.vms() as VmIdx)
            .map(|v| {
                if src.state(v) == VmState::Running {
                    src.host(v)
                } else {
                    NO_NODE
                }
            })
            .collect();
        let mut present = vec![Vec::new(); src.nodes()];
        for (v, &h) in at.iter().enumerate() {
            if h != NO_NODE {
                present[h as usize].push(v as VmIdx);
            }
        }
        let cont = Continuous::new(inst);
        let mut cap_use: HashMap<u32, u64> = HashMap::new();
        for (&c, nodes) in &cont.cap_nodes {
            let used: u64 = nodes
                .iter()
                .flat_map(|&n| present[n as usize].iter())
                .map(|&v| match &inst.constraints[c as usize] {
                    Constraint::ResourceCapacity { rc, .. } => src.demand(v)[*rc],
                    _ => 1,
                })
                .sum();
            cap_use.insert(c, used);
        }
        let n_actions = pending.len();
        Timeline {
            inst,
            src,
            dst: target,
            r,
            occ: src.load(),
            up: (0..src.nodes() as NodeIdx).map(|n| src.is_online(n)).collect(),
            at,
            arriving: vec![NO_NODE; src.vms()],
            present,
            released: vec![Vec::new(); src.nodes()],
            boot_of: vec![None; src.nodes()],
            waiting: vec![Vec::new(); src.nodes()],
            gated: Vec::new(),
            pending,
            actions: vec![None; n_actions],
            done: vec![false; n_actions],
            events: BinaryHeap::new(),
            cont,
            cap_use,
            leaving: vec![None; src.vms()],
            pivoted: vec![false; src.vms()],
        }
    }

    /// Frees and node boots start at once; consumers wait on their node, shortest first.
    fn seed(&mut self) {
        let tl = self;
        let mut order: Vec<usize> = (0..tl.pending.len()).collect();
        order.sort_by_key(|&i| (tl.pending[i].cost, i));
        for i in order {
            if let ActionKind::BootNode { node } = tl.pending[i].kind {
                tl.boot_of[node as usize] = Some(i as u32);
            }
            if !tl.pending[i].after.is_empty() {
                tl.gated.push(i);
                continue;
            }
            match dest(&tl.pending[i].kind) {
                Some(node) => tl.waiting[node as usize].push(i),
                None => tl.start(i, 0, Vec::new()),
            }
        }
        for n in 0..tl.src.nodes() as NodeIdx {
            tl.wake(n, 0);
        }
    }

    /// Carries the timeline on until every action has started: events in time order, and a
    /// cycle broken whenever everything left waits on everything else.
    fn run(&mut self, rules: &Rules) -> Result<(), PlanError> {
        let tl = self;
        loop {
            if let Some(Reverse((t, _))) = tl.events.peek().copied() {
                let mut touched = Vec::new();
                while let Some(Reverse((t2, idx))) = tl.events.peek().copied() {
                    if t2 != t {
                        break;
                    }
                    tl.events.pop();
                    touched.extend(tl.finish(idx));
                }
                touched.extend(tl.ungate(t));
                touched.sort_unstable();
                touched.dedup();
                for n in touched {
                    tl.wake(n, t);
                }
                continue;
            }
            if tl.waiting.iter().all(|w| w.is_empty()) && tl.gated.is_empty() {
                break;
            }
            let now = tl.actions.iter().flatten().map(|a| a.end).max().unwrap_or(0);
            break_cycle(tl, rules, now)?;
        }
        Ok(())
    }
}

/// Nodes going offline halt once every VM has left them.
fn shutdown_nodes(inst: &Instance, target: &Model, released: &[Vec<u32>], actions: &mut Vec<Action>) {
    let src = &inst.model;
    for n in 0..src.nodes() as NodeIdx {
        if src.is_online(n) && !target.is_online(n) {
            let deps: Vec<u32> = released[n as usize].clone();
            let start = deps.iter().map(|&d| actions[d as usize].end).max().unwrap_or(0);
            let c = cost_of(&inst.costs.shutdown_node, n);
            actions.push(Action {
                kind: ActionKind::ShutdownNode { node: n },
                start,
                end: start + c,
                deps,
            });
        }
    }
}

/// Every waiting action waits on room that only another waiting action would free: reroute one
/// migration through a pivot node, or suspend it and resume it at its destination.
fn break_cycle(tl: &mut Timeline<'_>, rules: &Rules, now: u64) -> Result<(), PlanError> {
    let inst = tl.inst;
    let mut migrations: Vec<usize> = tl
        .waiting
        .iter()
        .flatten()
        .copied()
        .filter(|&i| matches!(tl.pending[i].kind, ActionKind::MigrateVm { vm, .. } if !tl.pivoted[vm as usize]))
        .collect();
    migrations.sort_by_key(|&i| (tl.pending[i].cost, i));
    let hosts_now: Vec<NodeIdx> = tl.at.clone();
    for &i in &migrations {
        let ActionKind::MigrateVm { vm, from, to } = tl.pending[i].kind else {
            unreachable!()
        };
        let d = tl.dst.demand(vm).to_vec();
        let pivot = (0..tl.src.nodes() as NodeIdx).find(|&p| {
            p != from
                && p != to
                && tl.dst.is_online(p)
                && tl.fits(p, &d)
                && rules.accepts_arrivals(p)
                && rules.allows(inst, vm, p, &hosts_now)
                && tl
                    .continuous_allows(&ActionKind::MigrateVm { vm, from, to: p }, p)
                    .is_ok()
        });
        let first = match pivot {
            Some(p) => ActionKind::MigrateVm { vm, from, to: p },
            None if inst.options.suspend_to_break_cycles => ActionKind::SuspendVm { vm, from },
            None => continue,
        };
        let second = match first {
            ActionKind::MigrateVm { to: p, .. } => ActionKind::MigrateVm { vm, from: p, to },
            _ => ActionKind::ResumeVm { vm, from, to },
        };
        let first_cost = match first {
            ActionKind::SuspendVm { .. } => inst.costs.suspend.get(vm as usize).copied().unwrap_or(1),
            _ => tl.pending[i].cost,
        };
        let second_cost = match second {
            ActionKind::ResumeVm { .. } => inst.costs.resume.get(vm as usize).copied().unwrap_or(1),
            _ => tl.pending[i].cost,
        };
        tl.pivoted[vm as usize] = true;
        // The waiting migration becomes the first leg, started now; the second leg waits for it.
        tl.waiting[to as usize].retain(|&w| w != i);
        tl.pending[i].kind = first;
        tl.pending[i].cost = first_cost;
        tl.start(i, now, Vec::new());
        let j = tl.pending.len();
        // Whatever waited for the migration (seq) now waits for its second leg too.
        for p in tl.pending.iter_mut() {
            if p.after.contains(&i) {
                p.after.push(j);
            }
        }
        tl.pending.push(Pending {
            kind: second,
            cost: second_cost,
            deps: vec![i as u32],
            after: vec![i],
        });
        tl.actions.push(None);
        tl.done.push(false);
        tl.gated.push(j);
        return Ok(());
    }
    let mut vms: Vec<String> = tl
        .waiting
        .iter()
        .flatten()
        .chain(tl.gated.iter())
        .filter_map(|&i| tl.pending[i].kind.vm())
        .map(|v| tl.src.vm_name(v).to_string())
        .collect();
    vms.sort();
    vms.dedup();
    Err(PlanError::Cycle { vms })
}

#[cfg(test)]
mod tests {
    use super::super::{solve, Instance, Options};
    use super::*;

    fn nodes(n: usize, cap: &[u64]) -> Model {
        let mut m = Model::cpu_and_memory();
        for i in 0..n {
            m.add_node(format!("n{i}"), true, cap);
        }
        m
    }

    #[test]
    fn suspend_frees_room_before_boot_starts() {
        let mut m = nodes(1, &[4, 8]);
        let low = m.add_vm("low", VmState::Running, 0, &[4, 4]);
        let high = m.add_vm("high", VmState::Ready, NO_NODE, &[4, 4]);
        let mut inst = Instance::new(
            m,
            vec![Constraint::Sleeping { vm: low }, Constraint::Running { vm: high }],
        );
        inst.costs.suspend = vec![5, 5];
        inst.costs.boot = vec![2, 2];
        let p = solve(&inst).unwrap();
        assert_eq!(p.actions.len(), 2);
        let boot = p
            .actions
            .iter()
            .find(|a| matches!(a.kind, ActionKind::BootVm { .. }))
            .unwrap();
        assert_eq!((boot.start, boot.end), (5, 7));
        assert_eq!(boot.deps, vec![0]);
        assert_eq!(p.sum_completion(), 12);
    }

    #[test]
    fn swap_of_two_full_nodes_goes_through_a_pivot() {
        let mut m = nodes(3, &[4, 8]);
        let a = m.add_vm("a", VmState::Running, 0, &[4, 4]);
        let b = m.add_vm("b", VmState::Running, 1, &[4, 4]);
        let inst = Instance::new(
            m,
            vec![
                Constraint::Ban {
                    vms: vec![a],
                    nodes: vec![0, 2],
                },
                Constraint::Ban {
                    vms: vec![b],
                    nodes: vec![1, 2],
                },
            ],
        );
        // a must go to n1 and b to n0: a cycle. n2 is banned for both, so no pivot exists.
        let e = solve(&inst).unwrap_err();
        assert!(matches!(e, PlanError::Cycle { .. }), "{e}");
        // With a free third node, the cycle breaks through it.
        let free = Instance::new(inst.model.clone(), vec![]);
        let mut swapped = inst.model.clone();
        swapped.set_vm(a, VmState::Running, 1);
        swapped.set_vm(b, VmState::Running, 0);
        let p = schedule(&free, &swapped).unwrap();
        assert_eq!(p.count("migrateVM"), 3, "{:?}", p.actions);
        assert_eq!(p.duration(), 3, "pivot leg, the other migration, then the second leg");
        // Or suspend and resume when the daemon allows it.
        let mut inst3 = inst.clone();
        inst3.options = Options {
            suspend_to_break_cycles: true,
            ..Default::default()
        };
        let p = solve(&inst3).unwrap();
        assert_eq!(
            (p.count("suspendVM"), p.count("resumeVM"), p.count("migrateVM")),
            (1, 1, 1)
        );
    }

    #[test]
    fn offline_node_halts_after_its_vms_left() {
        let mut m = nodes(2, &[4, 8]);
        m.add_vm("v", VmState::Running, 0, &[1, 1]);
        let mut inst = Instance::new(m, vec![Constraint::Offline { node: 0 }]);
        inst.costs = super::super::ActionCosts::uniform(&inst.model, 3);
        let p = solve(&inst).unwrap();
        let last = p.actions.last().unwrap();
        assert_eq!(last.kind, ActionKind::ShutdownNode { node: 0 });
        assert_eq!((last.start, last.deps.clone()), (3, vec![0]));
    }

    #[test]
    fn continuous_spread_waits_for_the_mate_to_leave() {
        let mut m = nodes(3, &[4, 8]);
        let a = m.add_vm("a", VmState::Running, 0, &[1, 1]);
        let b = m.add_vm("b", VmState::Running, 1, &[1, 1]);
        // a must leave n0, b must go where a is... force: a to n1? ban a from n0 and n2; b from n1, n2
        let inst = Instance::new(
            m,
            vec![
                Constraint::Spread {
                    vms: vec![a, b],
                    continuous: true,
                },
                Constraint::Ban {
                    vms: vec![a],
                    nodes: vec![0, 2],
                },
                Constraint::Ban {
                    vms: vec![b],
                    nodes: vec![1, 2],
                },
            ],
        );
        // Room is plentiful, but a and b may never share a node: a swap through nowhere.
        let e = solve(&inst).unwrap_err();
        assert!(matches!(e, PlanError::Cycle { .. }), "{e}");
    }
}
