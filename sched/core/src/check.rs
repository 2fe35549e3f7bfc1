//! An independent plan checker: replays a plan on its instance and verifies every capacity at
//! every instant, every action's precondition and dependency, and every constraint (continuous
//! ones at every instant, the others on the final configuration).
//!
//! It deliberately shares no code with the planner's search ([`crate::plan::place`],
//! [`crate::plan::schedule`]): only the data types. A planner bug cannot hide behind the same bug
//! in its checker.

use std::collections::{BTreeMap, HashMap};

use crate::instance::{describe, ActionKind, Constraint, Instance, Plan};
use crate::model::{Model, NodeIdx, VmIdx, VmState, NO_NODE};

/// Everything wrong with a plan (empty: the plan is valid).
pub fn check(inst: &Instance, plan: &Plan) -> Vec<String> {
    let mut errors = timing_errors(plan);
    errors.extend(seq_errors(inst, plan));
    let mut replay = Replay::new(inst, plan);
    // Events: ends before starts at the same instant.
    let mut times: BTreeMap<u64, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for (i, a) in plan.actions.iter().enumerate() {
        times.entry(a.start).or_default().1.push(i);
        times.entry(a.end).or_default().0.push(i);
    }
    for (&t, (ends, starts)) in &times {
        for &i in ends {
            replay.end(plan.actions[i].kind);
        }
        for &i in starts {
            errors.extend(replay.start(i, t));
        }
        errors.extend(replay.instant(t, starts));
        if errors.len() > 50 {
            errors.push("... (stopped after 50 errors)".into());
            return errors;
        }
    }
    errors.extend(replay.final_errors());
    errors
}

/// Actions that end before they start, or start before what they depend on ends.
fn timing_errors(plan: &Plan) -> Vec<String> {
    let mut errors = Vec::new();
    for (i, a) in plan.actions.iter().enumerate() {
        if a.end < a.start {
            errors.push(format!("action {i} ({}) ends before it starts", a.kind.name()));
        }
        for &d in &a.deps {
            match plan.actions.get(d as usize) {
                None => errors.push(format!("action {i} depends on missing action {d}")),
                Some(dep) if dep.end > a.start => errors.push(format!(
                    "action {i} ({}) starts at {} before its dependency {d} ({}) ends at {}",
                    a.kind.name(),
                    a.start,
                    dep.kind.name(),
                    dep.end
                )),
                _ => {}
            }
        }
    }
    errors
}

/// seq: each VM's actions start after the previous VM's have ended.
fn seq_errors(inst: &Instance, plan: &Plan) -> Vec<String> {
    let m = &inst.model;
    let mut errors = Vec::new();
    for c in &inst.constraints {
        let Constraint::Seq { vms } = c else { continue };
        let mut prev_end: Option<(VmIdx, u64)> = None;
        for &v in vms {
            let acts: Vec<&crate::instance::Action> = plan.actions.iter().filter(|a| a.kind.vm() == Some(v)).collect();
            if acts.is_empty() {
                continue;
            }
            let start = acts.iter().map(|a| a.start).min().unwrap_or(0);
            if let Some((u, end)) = prev_end {
                if start < end {
                    errors.push(format!(
                        "{}: VM {} starts at {start} before VM {} ends at {end}",
                        describe(c, m),
                        m.vm_name(v),
                        m.vm_name(u)
                    ));
                }
            }
            prev_end = Some((v, acts.iter().map(|a| a.end).max().unwrap_or(0)));
        }
    }
    errors
}

/// The configuration as a plan is replayed, instant after instant.
struct Replay<'a> {
    inst: &'a Instance,
    plan: &'a Plan,
    state: Vec<VmState>,
    host: Vec<NodeIdx>,
    demand: Vec<Vec<u64>>,
    online: Vec<bool>,
    /// Nodes each VM occupies right now (two during a migration).
    present: Vec<Vec<NodeIdx>>,
    occ: Vec<Vec<u64>>,
    cap: Vec<Vec<u64>>,
    /// A node overloaded from the start may stay so until relieved, but never grow beyond where
    /// it started, and never receive anything while above its capacity.
    limit: Vec<Vec<u64>>,
    groups: GroupIndex,
    /// The last action started on each VM.
    touched: HashMap<VmIdx, usize>,
}

impl<'a> Replay<'a> {
    fn new(inst: &'a Instance, plan: &'a Plan) -> Replay<'a> {
        let m = &inst.model;
        let r = m.nres();
        let present: Vec<Vec<NodeIdx>> = (0..m.vms() as VmIdx)
            .map(|v| {
                if m.state(v) == VmState::Running {
                    vec![m.host(v)]
                } else {
                    vec![]
                }
            })
            .collect();
        let demand: Vec<Vec<u64>> = (0..m.vms() as VmIdx).map(|v| m.demand(v).to_vec()).collect();
        let mut occ: Vec<Vec<u64>> = vec![vec![0; r]; m.nodes()];
        for v in 0..m.vms() {
            for &n in &present[v] {
                add(&mut occ[n as usize], &demand[v]);
            }
        }
        let cap = effective_capacity(inst);
        let limit = (0..m.nodes())
            .map(|n| (0..r).map(|k| cap[n][k].max(occ[n][k])).collect())
            .collect();
        Replay {
            inst,
            plan,
            state: (0..m.vms() as VmIdx).map(|v| m.state(v)).collect(),
            host: (0..m.vms() as VmIdx).map(|v| m.host(v)).collect(),
            demand,
            online: (0..m.nodes() as NodeIdx).map(|n| m.is_online(n)).collect(),
            present,
            occ,
            cap,
            limit,
            groups: GroupIndex::new(inst),
            touched: HashMap::new(),
        }
    }

    fn name(&self, v: VmIdx) -> &str {
        self.inst.model.vm_name(v)
    }

    fn node(&self, n: NodeIdx) -> String {
        if n == NO_NODE {
            "-".to_string()
        } else {
            self.inst.model.node_name(n).to_string()
        }
    }

    fn target_demand(&self, v: VmIdx) -> Vec<u64> {
        self.plan.target.demand(v).to_vec()
    }

    /// An action ends: what it changes takes effect.
    fn end(&mut self, kind: ActionKind) {
        match kind {
            ActionKind::MigrateVm { vm, from, to } => {
                sub(&mut self.occ[from as usize], &demand_before(&self.demand, vm));
                self.present[vm as usize].retain(|&n| n != from);
                self.host[vm as usize] = to;
                self.demand[vm as usize] = self.target_demand(vm);
            }
            ActionKind::SuspendVm { vm, from } => {
                self.leave(vm, from);
                self.state[vm as usize] = VmState::Sleeping;
                self.host[vm as usize] = from;
            }
            ActionKind::ShutdownVm { vm, on } => {
                self.leave(vm, on);
                self.state[vm as usize] = VmState::Ready;
                self.host[vm as usize] = NO_NODE;
            }
            ActionKind::KillVm { vm, on } => {
                if on != NO_NODE && self.state[vm as usize] == VmState::Running {
                    sub(&mut self.occ[on as usize], &self.demand[vm as usize]);
                }
                self.present[vm as usize].clear();
                self.state[vm as usize] = VmState::Killed;
                self.host[vm as usize] = NO_NODE;
            }
            ActionKind::BootVm { vm, on } | ActionKind::ResumeVm { vm, to: on, .. } => {
                self.state[vm as usize] = VmState::Running;
                self.host[vm as usize] = on;
            }
            ActionKind::BootNode { node } => self.online[node as usize] = true,
            ActionKind::ShutdownNode { node } => self.online[node as usize] = false,
            ActionKind::Allocate { .. } => {}
        }
    }

    fn leave(&mut self, vm: VmIdx, from: NodeIdx) {
        sub(&mut self.occ[from as usize], &self.demand[vm as usize]);
        self.present[vm as usize].clear();
    }

    /// Action `i` starts at `t`: its precondition is checked, what it holds taken.
    fn start(&mut self, i: usize, t: u64) -> Vec<String> {
        let a = &self.plan.actions[i];
        let mut errors = Vec::new();
        if let Some(vm) = a.kind.vm() {
            if let Some(prev) = self.touched.insert(vm, i) {
                let p = &self.plan.actions[prev];
                if p.end > a.start && !matches!(a.kind, ActionKind::Allocate { .. }) {
                    errors.push(format!(
                        "VM {} has two overlapping actions ({} and {})",
                        self.name(vm),
                        p.kind.name(),
                        a.kind.name()
                    ));
                }
            }
        }
        match a.kind {
            ActionKind::MigrateVm { vm, from, to } => {
                errors.extend(self.precondition(a.kind, t, VmState::Running, Some(from), vm));
                errors.extend(self.arrive(a.kind, t, vm, to));
            }
            ActionKind::BootVm { vm, on } => {
                errors.extend(self.precondition(a.kind, t, VmState::Ready, None, vm));
                errors.extend(self.arrive(a.kind, t, vm, on));
                self.demand[vm as usize] = self.target_demand(vm);
            }
            ActionKind::ResumeVm { vm, to, .. } => {
                errors.extend(self.precondition(a.kind, t, VmState::Sleeping, None, vm));
                errors.extend(self.arrive(a.kind, t, vm, to));
                self.demand[vm as usize] = self.target_demand(vm);
            }
            ActionKind::SuspendVm { vm, from } => {
                errors.extend(self.precondition(a.kind, t, VmState::Running, Some(from), vm))
            }
            ActionKind::ShutdownVm { vm, on } => {
                errors.extend(self.precondition(a.kind, t, VmState::Running, Some(on), vm))
            }
            ActionKind::KillVm { vm, .. } => {
                if self.state[vm as usize] == VmState::Killed {
                    errors.push(format!("killVM of VM {} at {t}: already killed", self.name(vm)));
                }
            }
            ActionKind::Allocate { vm, on, rc, amount } => {
                errors.extend(self.precondition(a.kind, t, VmState::Running, Some(on), vm));
                let cur = self.demand[vm as usize][rc];
                if amount > cur {
                    self.occ[on as usize][rc] += amount - cur;
                } else {
                    self.occ[on as usize][rc] -= cur - amount;
                }
                self.demand[vm as usize][rc] = amount;
            }
            ActionKind::ShutdownNode { node: n } => {
                if let Some(v) = (0..self.present.len()).find(|&v| self.present[v].contains(&n)) {
                    errors.push(format!(
                        "shutdownNode {} at {t}: VM {} is still there",
                        self.node(n),
                        self.name(v as VmIdx)
                    ));
                }
            }
            ActionKind::BootNode { node: n } => {
                if self.online[n as usize] {
                    errors.push(format!("bootNode {} at {t}: already online", self.node(n)));
                }
            }
        }
        errors
    }

    /// The VM must be in state `want` (on node `at`, if given) when `kind` starts.
    fn precondition(&self, kind: ActionKind, t: u64, want: VmState, at: Option<NodeIdx>, vm: VmIdx) -> Option<String> {
        let (st, h) = (self.state[vm as usize], self.host[vm as usize]);
        let ok = st == want && at.is_none_or(|n| h == n);
        (!ok).then(|| {
            format!(
                "{} of VM {} at {t}: the VM is {} on {}, expected {}{}",
                kind.name(),
                self.name(vm),
                st.as_str(),
                self.node(h),
                want.as_str(),
                at.map(|n| format!(" on {}", self.node(n))).unwrap_or_default()
            )
        })
    }

    /// The VM starts occupying node `on` (booted, resumed, or migrating there).
    fn arrive(&mut self, kind: ActionKind, t: u64, vm: VmIdx, on: NodeIdx) -> Option<String> {
        let offline = (!self.online[on as usize]).then(|| {
            format!(
                "{} of VM {} at {t}: node {} is offline",
                kind.name(),
                self.name(vm),
                self.node(on)
            )
        });
        let d = self.target_demand(vm);
        add(&mut self.occ[on as usize], &d);
        self.present[vm as usize].push(on);
        offline
    }

    /// Capacities and continuous constraints at instant `t`, once the actions of `starts` began.
    fn instant(&self, t: u64, starts: &[usize]) -> Vec<String> {
        let m = &self.inst.model;
        let arrivals: Vec<NodeIdx> = starts
            .iter()
            .filter_map(|&i| match self.plan.actions[i].kind {
                ActionKind::MigrateVm { to, .. } | ActionKind::ResumeVm { to, .. } => Some(to),
                ActionKind::BootVm { on, .. } | ActionKind::Allocate { on, .. } => Some(on),
                _ => None,
            })
            .collect();
        let mut errors = Vec::new();
        for n in 0..m.nodes() {
            for k in 0..m.nres() {
                let (occ, cap) = (self.occ[n][k], self.cap[n][k]);
                if occ > self.limit[n][k] || (occ > cap && arrivals.contains(&(n as NodeIdx))) {
                    errors.push(format!(
                        "at {t}: node {} uses {occ} {} of {cap}",
                        self.node(n as NodeIdx),
                        m.resources()[k],
                    ));
                }
            }
        }
        for c in &self.inst.constraints {
            if let Some(msg) = continuous_violation(c, &self.present, &self.online, &self.demand, &self.groups) {
                errors.push(format!("at {t}: {} broken: {msg}", describe(c, m)));
            }
        }
        errors
    }

    /// The final configuration: the announced target, and every constraint holding.
    fn final_errors(&self) -> Vec<String> {
        let m = &self.inst.model;
        let mut errors = Vec::new();
        for v in 0..m.vms() as VmIdx {
            let (s, h) = (self.state[v as usize], self.host[v as usize]);
            let (ts, th) = (self.plan.target.state(v), self.plan.target.host(v));
            let same_host = s != VmState::Running || h == th;
            if s != ts || !same_host {
                errors.push(format!(
                    "VM {} ends {} on {} but the target says {} on {}",
                    self.name(v),
                    s.as_str(),
                    self.node(h),
                    ts.as_str(),
                    self.node(th)
                ));
            }
        }
        let mut fin = m.clone();
        for v in 0..m.vms() as VmIdx {
            fin.set_vm(v, self.state[v as usize], self.host[v as usize]);
            for k in 0..m.nres() {
                fin.set_demand(v, k, self.demand[v as usize][k]);
            }
        }
        for n in 0..m.nodes() as NodeIdx {
            fin.set_online(n, self.online[n as usize]);
        }
        errors.extend(check_configuration(self.inst, &fin));
        errors
    }
}

fn demand_before(demand: &[Vec<u64>], vm: VmIdx) -> Vec<u64> {
    demand[vm as usize].clone()
}

fn add(a: &mut [u64], b: &[u64]) {
    a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
}

fn sub(a: &mut [u64], b: &[u64]) {
    a.iter_mut().zip(b).for_each(|(x, y)| *x = x.saturating_sub(*y));
}

/// Node capacities with overbooking applied (the largest ratio where several apply).
fn effective_capacity(inst: &Instance) -> Vec<Vec<u64>> {
    let m = &inst.model;
    let mut cap: Vec<Vec<u64>> = (0..m.nodes() as NodeIdx).map(|n| m.capacity(n).to_vec()).collect();
    let mut best: HashMap<(NodeIdx, usize), f64> = HashMap::new();
    for c in &inst.constraints {
        if let Constraint::Overbook { nodes, rc, ratio, .. } = c {
            for &n in nodes {
                let e = best.entry((n, *rc)).or_insert(*ratio);
                *e = e.max(*ratio);
            }
        }
    }
    for ((n, k), ratio) in best {
        cap[n as usize][k] = (m.capacity(n)[k] as f64 * ratio).floor() as u64;
    }
    cap
}

/// The group of each node, for every distinct list of node groups of among and split-among.
struct GroupIndex(HashMap<*const Vec<Vec<NodeIdx>>, HashMap<NodeIdx, usize>>);

impl GroupIndex {
    fn new(inst: &Instance) -> GroupIndex {
        let mut idx = HashMap::new();
        for c in &inst.constraints {
            let groups = match c {
                Constraint::Among { parts, .. } => parts,
                Constraint::SplitAmong { nparts, .. } => nparts,
                _ => continue,
            };
            idx.entry(std::sync::Arc::as_ptr(groups)).or_insert_with(|| {
                let mut m = HashMap::new();
                for (i, g) in groups.iter().enumerate() {
                    for &n in g {
                        m.entry(n).or_insert(i);
                    }
                }
                m
            });
        }
        GroupIndex(idx)
    }

    /// The group of `n` among `groups` (the first one listing it).
    fn of(&self, groups: &crate::instance::NodeGroups, n: NodeIdx) -> Option<usize> {
        self.0[&std::sync::Arc::as_ptr(groups)].get(&n).copied()
    }

    /// Whether all these nodes are in one group.
    fn one_group(&self, groups: &crate::instance::NodeGroups, nodes: &[NodeIdx]) -> bool {
        let Some(&first) = nodes.first() else { return true };
        let Some(g) = self.of(groups, first) else { return false };
        // A node may be listed in several groups: fall back to the lists when in doubt.
        nodes.iter().all(|&n| self.of(groups, n) == Some(g))
            || groups.iter().any(|p| nodes.iter().all(|n| p.contains(n)))
    }
}

fn continuous_violation(
    c: &Constraint,
    present: &[Vec<NodeIdx>],
    online: &[bool],
    demand: &[Vec<u64>],
    groups: &GroupIndex,
) -> Option<String> {
    let on = |v: VmIdx| present[v as usize].clone();
    match c {
        Constraint::Lonely { vms, continuous: true } => {
            let mine: Vec<NodeIdx> = vms.iter().flat_map(|&v| on(v)).collect();
            let outsider = (0..present.len() as VmIdx)
                .filter(|v| !vms.contains(v))
                .find(|&v| present[v as usize].iter().any(|n| mine.contains(n)));
            outsider.map(|v| format!("VM {v} shares a node with the set"))
        }
        Constraint::Split {
            parts,
            continuous: true,
        } => {
            let nodes: Vec<Vec<NodeIdx>> = parts.iter().map(|p| p.iter().flat_map(|&v| on(v)).collect()).collect();
            for i in 0..nodes.len() {
                for j in i + 1..nodes.len() {
                    if let Some(n) = nodes[i].iter().find(|n| nodes[j].contains(n)) {
                        return Some(format!("parts {i} and {j} share node {n}"));
                    }
                }
            }
            None
        }
        Constraint::ResourceCapacity {
            nodes,
            rc,
            amount,
            continuous: true,
        } => {
            let used: u64 = (0..present.len())
                .map(|v| present[v].iter().filter(|n| nodes.contains(n)).count() as u64 * demand[v][*rc])
                .sum();
            (used > *amount).then(|| format!("{used} used"))
        }
        Constraint::RunningCapacity {
            nodes,
            amount,
            continuous: true,
        } => {
            let used: u64 = present
                .iter()
                .map(|p| p.iter().filter(|n| nodes.contains(n)).count() as u64)
                .sum();
            (used > *amount).then(|| format!("{used} VMs"))
        }
        Constraint::MaxOnline {
            nodes,
            amount,
            continuous: true,
        } => {
            let count = nodes.iter().filter(|&&n| online[n as usize]).count() as u64;
            (count > *amount).then(|| format!("{count} nodes online"))
        }
        Constraint::Spread { vms, continuous: true } => {
            let mut seen: HashMap<NodeIdx, VmIdx> = HashMap::new();
            for &v in vms {
                for &n in &present[v as usize] {
                    if let Some(u) = seen.insert(n, v) {
                        if u != v {
                            return Some(format!("VMs {u} and {v} share node {n}"));
                        }
                    }
                }
            }
            None
        }
        Constraint::Gather { vms, continuous: true } => {
            let mut nodes: Vec<NodeIdx> = vms.iter().flat_map(|&v| present[v as usize].iter().copied()).collect();
            nodes.sort_unstable();
            nodes.dedup();
            (nodes.len() > 1).then(|| format!("VMs on {} nodes", nodes.len()))
        }
        Constraint::Among {
            vms,
            parts,
            continuous: true,
        } => {
            let used: Vec<NodeIdx> = vms.iter().flat_map(|&v| present[v as usize].iter().copied()).collect();
            (!used.is_empty() && !groups.one_group(parts, &used)).then(|| "VMs span several groups".to_string())
        }
        _ => None,
    }
}

/// Everything wrong with a configuration alone: capacities and every constraint's final state.
pub fn check_configuration(inst: &Instance, fin: &Model) -> Vec<String> {
    let groups = GroupIndex::new(inst);
    let mut errors = capacity_errors(inst, fin);
    for c in &inst.constraints {
        if broken_at_end(c, inst, fin, &groups) {
            errors.push(format!("{} does not hold at the end", describe(c, &inst.model)));
        }
    }
    errors
}

/// Overloaded nodes, and offline nodes that host VMs, in a configuration.
fn capacity_errors(inst: &Instance, fin: &Model) -> Vec<String> {
    let mut errors = Vec::new();
    let r = fin.nres();
    let load = fin.load();
    let cap = effective_capacity(inst);
    for n in 0..fin.nodes() as NodeIdx {
        for k in 0..r {
            if load[n as usize * r + k] > cap[n as usize][k] {
                errors.push(format!(
                    "node {} is overloaded on {}",
                    fin.node_name(n),
                    fin.resources()[k]
                ));
            }
        }
        if !fin.is_online(n) && load[n as usize * r..(n as usize + 1) * r].iter().any(|&l| l > 0) {
            errors.push(format!("node {} is offline but hosts VMs", fin.node_name(n)));
        }
    }
    errors
}

/// Whether constraint `c` fails to hold in the final configuration `fin`.
fn broken_at_end(c: &Constraint, inst: &Instance, fin: &Model, groups: &GroupIndex) -> bool {
    let m = &inst.model;
    let running = |v: VmIdx| fin.state(v) == VmState::Running;
    let arrived_on = |nodes: &[NodeIdx]| {
        (0..fin.vms() as VmIdx).any(|v| {
            running(v) && nodes.contains(&fin.host(v)) && !(m.state(v) == VmState::Running && m.host(v) == fin.host(v))
        })
    };
    match c {
        Constraint::Running { vm } => fin.state(*vm) != VmState::Running,
        Constraint::Ready { vm } => fin.state(*vm) != VmState::Ready,
        Constraint::Sleeping { vm } => fin.state(*vm) != VmState::Sleeping,
        Constraint::Killed { vm } => fin.state(*vm) != VmState::Killed,
        Constraint::Online { node } => !fin.is_online(*node),
        Constraint::Offline { node } => fin.is_online(*node),
        Constraint::Ban { vms, nodes } => vms.iter().any(|&v| running(v) && nodes.contains(&fin.host(v))),
        Constraint::Fence { vms, nodes } => vms.iter().any(|&v| running(v) && !nodes.contains(&fin.host(v))),
        Constraint::Spread { vms, .. } => {
            let mut hosts: Vec<NodeIdx> = vms.iter().filter(|&&v| running(v)).map(|&v| fin.host(v)).collect();
            let n = hosts.len();
            hosts.sort_unstable();
            hosts.dedup();
            hosts.len() != n
        }
        Constraint::Gather { vms, .. } => {
            let mut hosts: Vec<NodeIdx> = vms.iter().filter(|&&v| running(v)).map(|&v| fin.host(v)).collect();
            hosts.sort_unstable();
            hosts.dedup();
            hosts.len() > 1
        }
        Constraint::Among { vms, parts, .. } => {
            let hosts: Vec<NodeIdx> = vms.iter().filter(|&&v| running(v)).map(|&v| fin.host(v)).collect();
            !hosts.is_empty() && !groups.one_group(parts, &hosts)
        }
        Constraint::Root { vm } => m.state(*vm) == VmState::Running && running(*vm) && fin.host(*vm) != m.host(*vm),
        Constraint::Preserve { vm, rc, amount } => running(*vm) && fin.demand(*vm)[*rc] < *amount,
        Constraint::NoArrival { nodes } => arrived_on(nodes),
        Constraint::Quarantine { nodes } => {
            arrived_on(nodes)
                || (0..fin.vms() as VmIdx).any(|v| {
                    m.state(v) == VmState::Running
                        && nodes.contains(&m.host(v))
                        && !(running(v) && fin.host(v) == m.host(v))
                })
        }
        Constraint::Lonely { vms, .. } => {
            let mine: Vec<NodeIdx> = vms.iter().filter(|&&v| running(v)).map(|&v| fin.host(v)).collect();
            (0..fin.vms() as VmIdx).any(|v| running(v) && !vms.contains(&v) && mine.contains(&fin.host(v)))
        }
        Constraint::Split { parts, .. } => {
            let nodes: Vec<Vec<NodeIdx>> = parts
                .iter()
                .map(|p| p.iter().filter(|&&v| running(v)).map(|&v| fin.host(v)).collect())
                .collect();
            (0..nodes.len()).any(|i| (i + 1..nodes.len()).any(|j| nodes[i].iter().any(|n| nodes[j].contains(n))))
        }
        Constraint::SplitAmong { vparts, nparts, .. } => split_among_broken(vparts, nparts, fin, groups),
        Constraint::ResourceCapacity { nodes, rc, amount, .. } => {
            (0..fin.vms() as VmIdx)
                .filter(|&v| running(v) && nodes.contains(&fin.host(v)))
                .map(|v| fin.demand(v)[*rc])
                .sum::<u64>()
                > *amount
        }
        Constraint::RunningCapacity { nodes, amount, .. } => {
            (0..fin.vms() as VmIdx)
                .filter(|&v| running(v) && nodes.contains(&fin.host(v)))
                .count() as u64
                > *amount
        }
        // Checked with the capacities, which it raises.
        Constraint::Overbook { .. } => false,
        Constraint::MaxOnline { nodes, amount, .. } => {
            nodes.iter().filter(|&&n| fin.is_online(n)).count() as u64 > *amount
        }
        // Checked on the plan's actions.
        Constraint::Seq { .. } => false,
    }
}

/// Whether a splitAmong fails in `fin`: a VM part over several node parts (or none), or two VM
/// parts in one node part.
fn split_among_broken(
    vparts: &[Vec<VmIdx>],
    nparts: &crate::instance::NodeGroups,
    fin: &Model,
    groups: &GroupIndex,
) -> bool {
    let running = |v: VmIdx| fin.state(v) == VmState::Running;
    let part_of = |n: NodeIdx| groups.of(nparts, n);
    let mut used: Vec<Option<usize>> = Vec::new();
    let mut bad = false;
    for vs in vparts {
        let mut ps: Vec<Option<usize>> = vs
            .iter()
            .filter(|&&v| running(v))
            .map(|&v| part_of(fin.host(v)))
            .collect();
        ps.sort_unstable();
        ps.dedup();
        if ps.len() > 1 || ps.contains(&None) {
            bad = true;
        }
        if let Some(&p) = ps.first() {
            if used.contains(&p) {
                bad = true;
            }
            used.push(p);
        }
    }
    bad
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::plan::{solve, Action};

    fn inst() -> Instance {
        let mut m = Model::new(vec!["cpu".into()]);
        m.add_node("a", true, &[2]);
        m.add_node("b", true, &[2]);
        m.add_node("c", true, &[1]);
        m.add_vm("v", VmState::Running, 0, &[2]);
        m.add_vm("w", VmState::Running, 1, &[1]);
        Instance::new(
            m,
            vec![Constraint::Ban {
                vms: vec![0],
                nodes: vec![0],
            }],
        )
    }

    #[test]
    fn accepts_the_planners_plan_and_catches_a_forged_one() {
        let inst = inst();
        // v (2 cpus) must leave a for b, where w (1 cpu) is: w has to make room (on c) first.
        let plan = solve(&inst).unwrap();
        assert_eq!(check(&inst, &plan), Vec::<String>::new());
        // Start v's migration at once instead: b overflows.
        let mut forged = plan.clone();
        for a in &mut forged.actions {
            if a.kind.vm() == Some(0) {
                let d = a.end - a.start;
                *a = Action {
                    start: 0,
                    end: d,
                    deps: vec![],
                    ..a.clone()
                };
            }
        }
        let errors = check(&inst, &forged);
        assert!(
            errors.iter().any(|e| e.contains("node b uses 3 cpu of 2")),
            "{errors:?}"
        );
    }

    #[test]
    fn final_constraints_are_checked() {
        let inst = inst();
        let empty = Plan {
            target: inst.model.clone(),
            actions: vec![],
        };
        let errors = check(&inst, &empty);
        assert_eq!(errors, vec!["ban({v}, {a}) does not hold at the end".to_string()]);
    }
}
