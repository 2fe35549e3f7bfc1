//! An independent plan checker: replays a plan on its instance and verifies every capacity at
//! every instant, every action's precondition and dependency, and every constraint (continuous
//! ones at every instant, the others on the final configuration).
//!
//! It deliberately shares no code with the planner's search ([`crate::plan::place`],
//! [`crate::plan::schedule`]): only the data types. A planner bug cannot hide behind the same bug
//! in its checker.

use std::collections::{BTreeMap, HashMap};

use crate::model::{Model, NodeIdx, VmIdx, VmState, NO_NODE};
use crate::plan::{describe, ActionKind, Constraint, Instance, Plan};

/// Everything wrong with a plan (empty: the plan is valid).
pub fn check(inst: &Instance, plan: &Plan) -> Vec<String> {
    let mut errors = Vec::new();
    let m = &inst.model;
    let r = m.nres();
    let name = |v: VmIdx| m.vm_name(v).to_string();
    let node = |n: NodeIdx| {
        if n == NO_NODE {
            "-".to_string()
        } else {
            m.node_name(n).to_string()
        }
    };

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

    // seq: each VM's actions start after the previous VM's have ended.
    for c in &inst.constraints {
        if let Constraint::Seq { vms } = c {
            let mut prev_end: Option<(VmIdx, u64)> = None;
            for &v in vms {
                let acts: Vec<&crate::plan::Action> = plan.actions.iter().filter(|a| a.kind.vm() == Some(v)).collect();
                if acts.is_empty() {
                    continue;
                }
                let start = acts.iter().map(|a| a.start).min().unwrap_or(0);
                if let Some((u, end)) = prev_end {
                    if start < end {
                        errors.push(format!(
                            "{}: VM {} starts at {start} before VM {} ends at {end}",
                            describe(c, m),
                            name(v),
                            name(u)
                        ));
                    }
                }
                prev_end = Some((v, acts.iter().map(|a| a.end).max().unwrap_or(0)));
            }
        }
    }

    // Replay state.
    let mut state: Vec<VmState> = (0..m.vms() as VmIdx).map(|v| m.state(v)).collect();
    let mut host: Vec<NodeIdx> = (0..m.vms() as VmIdx).map(|v| m.host(v)).collect();
    let mut demand: Vec<Vec<u64>> = (0..m.vms() as VmIdx).map(|v| m.demand(v).to_vec()).collect();
    let mut online: Vec<bool> = (0..m.nodes() as NodeIdx).map(|n| m.is_online(n)).collect();
    // Nodes each VM occupies right now (two during a migration).
    let mut present: Vec<Vec<NodeIdx>> = (0..m.vms() as VmIdx)
        .map(|v| {
            if m.state(v) == VmState::Running {
                vec![m.host(v)]
            } else {
                vec![]
            }
        })
        .collect();
    let mut occ: Vec<Vec<u64>> = vec![vec![0; r]; m.nodes()];
    for v in 0..m.vms() {
        for &n in &present[v] {
            for k in 0..r {
                occ[n as usize][k] += demand[v][k];
            }
        }
    }
    let target_demand = |v: VmIdx| plan.target.demand(v).to_vec();
    let cap = effective_capacity(inst);
    let groups = GroupIndex::new(inst);
    // A node overloaded from the start may stay so until relieved, but never grow beyond where
    // it started, and never receive anything while above its capacity.
    let limit: Vec<Vec<u64>> = (0..m.nodes())
        .map(|n| (0..r).map(|k| cap[n][k].max(occ[n][k])).collect())
        .collect();

    // Events: ends before starts at the same instant.
    let mut times: BTreeMap<u64, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    for (i, a) in plan.actions.iter().enumerate() {
        times.entry(a.start).or_default().1.push(i);
        times.entry(a.end).or_default().0.push(i);
    }
    let mut touched_vms: HashMap<VmIdx, usize> = HashMap::new();
    for (&t, (ends, starts)) in &times {
        for &i in ends {
            let a = &plan.actions[i];
            match a.kind {
                ActionKind::MigrateVm { vm, from, to } => {
                    sub(&mut occ[from as usize], &demand_before(&demand, vm));
                    present[vm as usize].retain(|&n| n != from);
                    host[vm as usize] = to;
                    demand[vm as usize] = target_demand(vm);
                }
                ActionKind::SuspendVm { vm, from } => {
                    sub(&mut occ[from as usize], &demand[vm as usize]);
                    present[vm as usize].clear();
                    state[vm as usize] = VmState::Sleeping;
                    host[vm as usize] = from;
                }
                ActionKind::ShutdownVm { vm, on } => {
                    sub(&mut occ[on as usize], &demand[vm as usize]);
                    present[vm as usize].clear();
                    state[vm as usize] = VmState::Ready;
                    host[vm as usize] = NO_NODE;
                }
                ActionKind::KillVm { vm, on } => {
                    if on != NO_NODE && state[vm as usize] == VmState::Running {
                        sub(&mut occ[on as usize], &demand[vm as usize]);
                    }
                    present[vm as usize].clear();
                    state[vm as usize] = VmState::Killed;
                    host[vm as usize] = NO_NODE;
                }
                ActionKind::BootVm { vm, on } | ActionKind::ResumeVm { vm, to: on, .. } => {
                    state[vm as usize] = VmState::Running;
                    host[vm as usize] = on;
                }
                ActionKind::BootNode { node } => online[node as usize] = true,
                ActionKind::ShutdownNode { node } => online[node as usize] = false,
                ActionKind::Allocate { .. } => {}
            }
        }
        let arrivals_at_t: Vec<NodeIdx> = starts
            .iter()
            .filter_map(|&i| match plan.actions[i].kind {
                ActionKind::MigrateVm { to, .. } | ActionKind::ResumeVm { to, .. } => Some(to),
                ActionKind::BootVm { on, .. } | ActionKind::Allocate { on, .. } => Some(on),
                _ => None,
            })
            .collect();
        for &i in starts {
            let a = &plan.actions[i];
            if let Some(vm) = a.kind.vm() {
                if let Some(prev) = touched_vms.insert(vm, i) {
                    let p = &plan.actions[prev];
                    if p.end > a.start && !matches!(a.kind, ActionKind::Allocate { .. }) {
                        errors.push(format!(
                            "VM {} has two overlapping actions ({} and {})",
                            name(vm),
                            p.kind.name(),
                            a.kind.name()
                        ));
                    }
                }
            }
            let pre =
                |want: VmState, at: Option<NodeIdx>, st: &[VmState], h: &[NodeIdx], vm: VmIdx| -> Option<String> {
                    let ok = st[vm as usize] == want && at.is_none_or(|n| h[vm as usize] == n);
                    (!ok).then(|| {
                        format!(
                            "{} of VM {} at {t}: the VM is {} on {}, expected {}{}",
                            a.kind.name(),
                            name(vm),
                            st[vm as usize].as_str(),
                            node(h[vm as usize]),
                            want.as_str(),
                            at.map(|n| format!(" on {}", node(n))).unwrap_or_default()
                        )
                    })
                };
            let arrive = |vm: VmIdx,
                          on: NodeIdx,
                          errors: &mut Vec<String>,
                          occ: &mut Vec<Vec<u64>>,
                          present: &mut Vec<Vec<NodeIdx>>| {
                if !online[on as usize] {
                    errors.push(format!(
                        "{} of VM {} at {t}: node {} is offline",
                        a.kind.name(),
                        name(vm),
                        node(on)
                    ));
                }
                add(&mut occ[on as usize], &target_demand(vm));
                present[vm as usize].push(on);
            };
            match a.kind {
                ActionKind::MigrateVm { vm, from, to } => {
                    errors.extend(pre(VmState::Running, Some(from), &state, &host, vm));
                    arrive(vm, to, &mut errors, &mut occ, &mut present);
                }
                ActionKind::BootVm { vm, on } => {
                    errors.extend(pre(VmState::Ready, None, &state, &host, vm));
                    arrive(vm, on, &mut errors, &mut occ, &mut present);
                    demand[vm as usize] = target_demand(vm);
                }
                ActionKind::ResumeVm { vm, to, .. } => {
                    errors.extend(pre(VmState::Sleeping, None, &state, &host, vm));
                    arrive(vm, to, &mut errors, &mut occ, &mut present);
                    demand[vm as usize] = target_demand(vm);
                }
                ActionKind::SuspendVm { vm, from } => {
                    errors.extend(pre(VmState::Running, Some(from), &state, &host, vm))
                }
                ActionKind::ShutdownVm { vm, on } => errors.extend(pre(VmState::Running, Some(on), &state, &host, vm)),
                ActionKind::KillVm { vm, .. } => {
                    if state[vm as usize] == VmState::Killed {
                        errors.push(format!("killVM of VM {} at {t}: already killed", name(vm)));
                    }
                }
                ActionKind::Allocate { vm, on, rc, amount } => {
                    errors.extend(pre(VmState::Running, Some(on), &state, &host, vm));
                    let cur = demand[vm as usize][rc];
                    if amount > cur {
                        occ[on as usize][rc] += amount - cur;
                    } else {
                        occ[on as usize][rc] -= cur - amount;
                    }
                    demand[vm as usize][rc] = amount;
                }
                ActionKind::ShutdownNode { node: n } => {
                    if let Some(v) = (0..m.vms()).find(|&v| present[v].contains(&n)) {
                        errors.push(format!(
                            "shutdownNode {} at {t}: VM {} is still there",
                            node(n),
                            name(v as VmIdx)
                        ));
                    }
                }
                ActionKind::BootNode { node: n } => {
                    if online[n as usize] {
                        errors.push(format!("bootNode {} at {t}: already online", node(n)));
                    }
                }
            }
        }
        // Capacities at this instant.
        for n in 0..m.nodes() {
            for k in 0..r {
                if occ[n][k] > limit[n][k] || (occ[n][k] > cap[n][k] && arrivals_at_t.contains(&(n as NodeIdx))) {
                    errors.push(format!(
                        "at {t}: node {} uses {} {} of {}",
                        node(n as NodeIdx),
                        occ[n][k],
                        m.resources()[k],
                        cap[n][k]
                    ));
                }
            }
        }
        // Continuous constraints at this instant.
        for c in &inst.constraints {
            if let Some(msg) = continuous_violation(c, &present, &online, &demand, &groups) {
                errors.push(format!("at {t}: {} broken: {msg}", describe(c, m)));
            }
        }
        if errors.len() > 50 {
            errors.push("... (stopped after 50 errors)".into());
            return errors;
        }
    }

    // The final configuration is the announced target.
    for v in 0..m.vms() as VmIdx {
        let (s, h) = (state[v as usize], host[v as usize]);
        let (ts, th) = (plan.target.state(v), plan.target.host(v));
        let same_host = s != VmState::Running || h == th;
        if s != ts || !same_host {
            errors.push(format!(
                "VM {} ends {} on {} but the target says {} on {}",
                name(v),
                s.as_str(),
                node(h),
                ts.as_str(),
                node(th)
            ));
        }
    }
    let mut fin = m.clone();
    for v in 0..m.vms() as VmIdx {
        fin.set_vm(v, state[v as usize], host[v as usize]);
        for k in 0..r {
            fin.set_demand(v, k, demand[v as usize][k]);
        }
    }
    for n in 0..m.nodes() as NodeIdx {
        fin.set_online(n, online[n as usize]);
    }
    errors.extend(check_configuration(inst, &fin));
    errors
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
    fn of(&self, groups: &crate::plan::NodeGroups, n: NodeIdx) -> Option<usize> {
        self.0[&std::sync::Arc::as_ptr(groups)].get(&n).copied()
    }

    /// Whether all these nodes are in one group.
    fn one_group(&self, groups: &crate::plan::NodeGroups, nodes: &[NodeIdx]) -> bool {
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
    let m = &inst.model;
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
    let running = |v: VmIdx| fin.state(v) == VmState::Running;
    let arrived_on = |nodes: &[NodeIdx]| {
        (0..fin.vms() as VmIdx).any(|v| {
            running(v) && nodes.contains(&fin.host(v)) && !(m.state(v) == VmState::Running && m.host(v) == fin.host(v))
        })
    };
    for c in &inst.constraints {
        let broken = match c {
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
            Constraint::SplitAmong { vparts, nparts, .. } => {
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
        };
        if broken {
            errors.push(format!("{} does not hold at the end", describe(c, m)));
        }
    }
    errors
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
