//! Step 2 of the planner: the reconfiguration plan from the current to the target configuration.
//!
//! One action per VM or node that changes. Actions that only free resources (suspend, shutdown,
//! kill) start at once; actions that need room on a node (boot, resume, allocate, and migrate,
//! which occupies both nodes for its whole duration) start as soon as the node has room and no
//! continuous constraint forbids it. This is list scheduling over an event queue, shortest action
//! first: it keeps the sum of completion times low, and no capacity is ever exceeded.
//!
//! Each action records the actions whose end it waited for (every earlier departure from its
//! node), so an executor that follows dependencies instead of estimated times stays safe when
//! real durations differ. When migrations wait on each other in a cycle, one of them goes through
//! a pivot node with room, or (if allowed) is suspended and resumed at its destination.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

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

struct Pending {
    kind: ActionKind,
    cost: u64,
    deps: Vec<u32>,
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
    /// Per node: actions that freed resources there and have ended.
    released: Vec<Vec<u32>>,
    /// Per node: the action that boots it.
    boot_of: Vec<Option<u32>>,
    /// Per node: consumers waiting for room, shortest first.
    waiting: Vec<Vec<usize>>,
    pending: Vec<Pending>,
    actions: Vec<Option<Action>>,
    events: BinaryHeap<Reverse<(u64, u32)>>,
    /// Continuous spread constraints of each VM.
    spread_of: Vec<Vec<u32>>,
    /// The departure action of each VM, once started.
    leaving: Vec<Option<u32>>,
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

impl Timeline<'_> {
    fn demand(&self, kind: &ActionKind) -> Vec<u64> {
        match *kind {
            ActionKind::Allocate { vm, rc, .. } => {
                let mut d = vec![0; self.r];
                d[rc] = self.dst.demand(vm)[rc] - self.src.demand(vm)[rc];
                d
            }
            _ => self.dst.demand(kind.vm().expect("a VM action")).to_vec(),
        }
    }

    fn fits(&self, node: NodeIdx, d: &[u64]) -> bool {
        let n = node as usize;
        self.up[n] && (0..self.r).all(|k| self.occ[n * self.r + k] + d[k] <= self.src.capacity(node)[k])
    }

    /// Whether `vm` may arrive on `node` now: continuous spread mates must not be there.
    fn spread_allows(&self, vm: VmIdx, node: NodeIdx) -> Result<(), Option<u32>> {
        for &c in &self.spread_of[vm as usize] {
            let Constraint::Spread { vms, .. } = &self.inst.constraints[c as usize] else {
                continue;
            };
            for &u in vms {
                if u != vm && (self.at[u as usize] == node || self.arriving[u as usize] == node) {
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
        deps.extend(extra_deps);
        match use_of(&kind) {
            Use::Take { node } | Use::Grow { node } | Use::Move { to: node, .. } => {
                let d = self.demand(&kind);
                let n = node as usize;
                for k in 0..self.r {
                    self.occ[n * self.r + k] += d[k];
                }
                deps.extend(self.released[n].iter().copied());
                deps.extend(self.boot_of[n]);
                if let Some(vm) = kind.vm() {
                    if !matches!(kind, ActionKind::Allocate { .. }) {
                        self.arriving[vm as usize] = node;
                    }
                }
            }
            _ => {}
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

    /// Applies the end of an action; returns the node whose room grew, if any.
    fn finish(&mut self, idx: u32) -> Vec<NodeIdx> {
        let kind = self.actions[idx as usize].as_ref().expect("started").kind;
        let mut touched = Vec::new();
        match use_of(&kind) {
            Use::Release { node } | Use::Move { from: node, .. } => {
                let vm = kind.vm().expect("a VM action");
                let d = self.src.demand(vm);
                let n = node as usize;
                for k in 0..self.r {
                    self.occ[n * self.r + k] -= d[k];
                }
                self.released[n].push(idx);
                touched.push(node);
            }
            _ => {}
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

    /// Starts every waiting action on `node` that can start at `t`, shortest first.
    fn wake(&mut self, node: NodeIdx, t: u64) {
        let mut still = Vec::new();
        let waiting = std::mem::take(&mut self.waiting[node as usize]);
        for idx in waiting {
            let kind = self.pending[idx].kind;
            let d = self.demand(&kind);
            let vm = kind.vm().expect("a VM action");
            let spread = if matches!(kind, ActionKind::Allocate { .. }) {
                Ok(())
            } else {
                self.spread_allows(vm, node)
            };
            if self.fits(node, &d) && spread.is_ok() {
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
    let src = &inst.model;
    let r = src.nres();
    let costs = &inst.costs;
    let cost = |v: &Vec<u64>, i: u32| v.get(i as usize).copied().unwrap_or(1);
    let mut pending: Vec<Pending> = Vec::new();
    let mut push = |kind: ActionKind, c: u64| {
        pending.push(Pending {
            kind,
            cost: c,
            deps: Vec::new(),
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

    let mut spread_of: Vec<Vec<u32>> = vec![Vec::new(); src.vms()];
    for (i, c) in inst.constraints.iter().enumerate() {
        if let Constraint::Spread { vms, continuous: true } = c {
            vms.iter().for_each(|&v| spread_of[v as usize].push(i as u32));
        }
    }
    let mut tl = Timeline {
        inst,
        src,
        dst: target,
        r,
        occ: src.load(),
        up: (0..src.nodes() as NodeIdx).map(|n| src.is_online(n)).collect(),
        at: (0..src.vms() as VmIdx)
            .map(|v| {
                if src.state(v) == VmState::Running {
                    src.host(v)
                } else {
                    NO_NODE
                }
            })
            .collect(),
        arriving: vec![NO_NODE; src.vms()],
        released: vec![Vec::new(); src.nodes()],
        boot_of: vec![None; src.nodes()],
        waiting: vec![Vec::new(); src.nodes()],
        actions: Vec::new(),
        pending,
        events: BinaryHeap::new(),
        spread_of,
        leaving: vec![None; src.vms()],
    };
    tl.actions = vec![None; tl.pending.len()];

    // Frees and node boots start at once; consumers wait on their node, shortest first.
    let mut order: Vec<usize> = (0..tl.pending.len()).collect();
    order.sort_by_key(|&i| (tl.pending[i].cost, i));
    for i in order {
        match use_of(&tl.pending[i].kind) {
            Use::Take { node } | Use::Grow { node } | Use::Move { to: node, .. } => tl.waiting[node as usize].push(i),
            _ => {
                if let ActionKind::BootNode { node } = tl.pending[i].kind {
                    tl.boot_of[node as usize] = Some(i as u32);
                }
                tl.start(i, 0, Vec::new());
            }
        }
    }
    for n in 0..src.nodes() as NodeIdx {
        tl.wake(n, 0);
    }

    let rules = Rules::new(inst);
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
            touched.sort_unstable();
            touched.dedup();
            for n in touched {
                tl.wake(n, t);
            }
            continue;
        }
        if tl.waiting.iter().all(|w| w.is_empty()) {
            break;
        }
        let now = tl.actions.iter().flatten().map(|a| a.end).max().unwrap_or(0);
        break_cycle(&mut tl, &rules, now)?;
    }

    // Nodes going offline halt once every VM has left them.
    let mut actions: Vec<Action> = tl
        .actions
        .into_iter()
        .map(|a| a.expect("every action started"))
        .collect();
    for n in 0..src.nodes() as NodeIdx {
        if src.is_online(n) && !target.is_online(n) {
            let deps: Vec<u32> = tl.released[n as usize].clone();
            let start = deps.iter().map(|&d| actions[d as usize].end).max().unwrap_or(0);
            let c = cost(&costs.shutdown_node, n);
            actions.push(Action {
                kind: ActionKind::ShutdownNode { node: n },
                start,
                end: start + c,
                deps,
            });
        }
    }
    Ok(Plan {
        target: target.clone(),
        actions,
    })
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
        .filter(|&i| matches!(tl.pending[i].kind, ActionKind::MigrateVm { .. }))
        .collect();
    migrations.sort_by_key(|&i| (tl.pending[i].cost, i));
    let target_host: Vec<NodeIdx> = (0..tl.src.vms() as VmIdx).map(|v| tl.at[v as usize]).collect();
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
                && rules.allows(inst, vm, p, &target_host)
                && tl.spread_allows(vm, p).is_ok()
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
        // The waiting migration becomes the first leg, started now; the second leg waits.
        tl.waiting[to as usize].retain(|&w| w != i);
        tl.pending[i].kind = first;
        tl.pending[i].cost = first_cost;
        tl.start(i, now, Vec::new());
        let j = tl.pending.len();
        tl.pending.push(Pending {
            kind: second,
            cost: second_cost,
            deps: vec![i as u32],
        });
        tl.actions.push(None);
        tl.waiting[to as usize].push(j);
        tl.waiting[to as usize].sort_by_key(|&w| (tl.pending[w].cost, w));
        return Ok(());
    }
    let vms: Vec<String> = tl
        .waiting
        .iter()
        .flatten()
        .filter_map(|&i| tl.pending[i].kind.vm())
        .map(|v| tl.src.vm_name(v).to_string())
        .collect();
    Err(PlanError::Cycle { vms })
}

#[cfg(test)]
mod tests {
    use super::super::{solve, Instance, Options};
    use super::*;

    fn nodes(n: usize, cap: &[u64]) -> Model {
        let mut m = Model::new(vec!["cpu".into(), "memory".into()]);
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
