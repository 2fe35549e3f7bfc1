//! The planner: from the current configuration and what must hold (constraints, wanted VM states),
//! a viable target configuration and the reconfiguration plan that reaches it.
//!
//! Two steps, after Entropy and BtrPlace:
//! 1. [`place`]: the target configuration. VMs that are well placed stay where they are; only the
//!    VMs that must move (new, resumed, on a node going offline, on an overloaded node, breaking a
//!    constraint) are placed, by filter and score, as close to the current configuration as
//!    possible.
//! 2. [`schedule`]: the plan. One action per VM that changes (boot, shutdown, migrate, suspend,
//!    resume, kill, allocate) and per node that changes (bootNode, shutdownNode), each started as
//!    early as capacities and continuous constraints allow, never exceeding a capacity at any
//!    instant; cycles of migrations are broken through a pivot node, or by suspend and resume.
//!
//! The planner is pure: an [`Instance`] in, a [`Plan`] out. It is checked by [`crate::check`],
//! which shares none of its code.

pub mod place;
pub mod room;
pub mod rules;
pub mod schedule;

pub use crate::instance::{describe, Action, ActionCosts, ActionKind, Constraint, Instance, NodeGroups, Options, Plan};
use crate::model::{Model, NodeIdx, VmIdx, VmState};

/// Why no plan exists.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Constraints that cannot hold together, named as in the instance.
    #[error("constraints in conflict: {}: {reason}", constraints.join(", "))]
    Conflict { constraints: Vec<String>, reason: String },
    /// Some VM has no node to go to.
    #[error("no node can host VM {vm}: {reason}")]
    NoRoom { vm: String, reason: String },
    /// Migrations wait on each other and no pivot can break the cycle.
    #[error("migrations of {} wait on each other and no node has room to break the cycle", vms.join(", "))]
    Cycle { vms: Vec<String> },
}

/// Computes a viable target configuration and a plan to reach it.
pub fn solve(inst: &Instance) -> Result<Plan, PlanError> {
    let overbooked;
    let inst = if inst
        .constraints
        .iter()
        .any(|c| matches!(c, Constraint::Overbook { .. }))
    {
        overbooked = with_overbooking(inst);
        &overbooked
    } else {
        inst
    };
    if let Some(c) = inst.constraints.iter().find(|c| broken_at_start(c, &inst.model)) {
        return Err(PlanError::Conflict {
            constraints: vec![describe(c, &inst.model)],
            reason:
                "it is continuous but already broken in the current configuration, so it cannot hold at every instant"
                    .into(),
        });
    }
    let target = place::target(inst)?;
    // A safety net, with the independent checker: a target the heuristics got wrong (constraints
    // that pull a VM that may not move two ways) is refused, never planned.
    let broken: Vec<String> = crate::check::check_configuration(inst, &target);
    if !broken.is_empty() {
        return Err(PlanError::Conflict {
            constraints: broken
                .iter()
                .map(|b| b.trim_end_matches(" does not hold at the end").to_string())
                .collect(),
            reason: "no placement satisfying them together was found".into(),
        });
    }
    schedule::schedule(inst, &target)
}

/// Whether a continuous constraint is already broken in `m` (then no plan can keep it at every
/// instant).
fn broken_at_start(c: &Constraint, m: &Model) -> bool {
    let running = |v: &VmIdx| m.state(*v) == VmState::Running;
    let hosts = |vms: &[VmIdx]| -> Vec<NodeIdx> { vms.iter().filter(|v| running(v)).map(|&v| m.host(v)).collect() };
    let distinct = |mut h: Vec<NodeIdx>| {
        h.sort_unstable();
        h.dedup();
        h.len()
    };
    match c {
        Constraint::Spread { vms, continuous: true } => {
            let h = hosts(vms);
            distinct(h.clone()) != h.len()
        }
        Constraint::Gather { vms, continuous: true } => distinct(hosts(vms)) > 1,
        Constraint::Among {
            vms,
            parts,
            continuous: true,
        } => {
            let h = hosts(vms);
            !h.is_empty() && !parts.iter().any(|p| h.iter().all(|n| p.contains(n)))
        }
        Constraint::Lonely { vms, continuous: true } => {
            let h = hosts(vms);
            (0..m.vms() as VmIdx).any(|v| running(&v) && !vms.contains(&v) && h.contains(&m.host(v)))
        }
        Constraint::Split {
            parts,
            continuous: true,
        } => {
            let hs: Vec<Vec<NodeIdx>> = parts.iter().map(|p| hosts(p)).collect();
            (0..hs.len()).any(|i| (i + 1..hs.len()).any(|j| hs[i].iter().any(|n| hs[j].contains(n))))
        }
        Constraint::ResourceCapacity {
            nodes,
            rc,
            amount,
            continuous: true,
        } => {
            (0..m.vms() as VmIdx)
                .filter(|v| running(v) && nodes.contains(&m.host(*v)))
                .map(|v| m.demand(v)[*rc])
                .sum::<u64>()
                > *amount
        }
        Constraint::RunningCapacity {
            nodes,
            amount,
            continuous: true,
        } => {
            (0..m.vms() as VmIdx)
                .filter(|v| running(v) && nodes.contains(&m.host(*v)))
                .count() as u64
                > *amount
        }
        Constraint::MaxOnline {
            nodes,
            amount,
            continuous: true,
        } => nodes.iter().filter(|&&n| m.is_online(n)).count() as u64 > *amount,
        _ => false,
    }
}

/// The instance with capacities scaled by its overbook constraints (the largest ratio wins where
/// several apply).
fn with_overbooking(inst: &Instance) -> Instance {
    let mut out = inst.clone();
    let mut ratio: Vec<Vec<f64>> = vec![vec![1.0; inst.model.nres()]; inst.model.nodes()];
    let mut set = vec![vec![false; inst.model.nres()]; inst.model.nodes()];
    for c in &inst.constraints {
        if let Constraint::Overbook {
            nodes, rc, ratio: r, ..
        } = c
        {
            for &n in nodes {
                let cur = &mut ratio[n as usize][*rc];
                *cur = if set[n as usize][*rc] { cur.max(*r) } else { *r };
                set[n as usize][*rc] = true;
            }
        }
    }
    for n in 0..inst.model.nodes() as NodeIdx {
        for k in 0..inst.model.nres() {
            if set[n as usize][k] {
                let cap = (inst.model.capacity(n)[k] as f64 * ratio[n as usize][k]).floor() as u64;
                out.model.set_capacity(n, k, cap);
            }
        }
    }
    out
}

/// The state each VM must reach: from the state constraints, else its current state.
pub(crate) fn wanted_states(inst: &Instance) -> Result<Vec<VmState>, PlanError> {
    let m = &inst.model;
    let mut state: Vec<VmState> = (0..m.vms() as VmIdx).map(|v| m.state(v)).collect();
    let mut set_by: Vec<Option<usize>> = vec![None; m.vms()];
    for (i, c) in inst.constraints.iter().enumerate() {
        let (vm, s) = match *c {
            Constraint::Running { vm } => (vm, VmState::Running),
            Constraint::Ready { vm } => (vm, VmState::Ready),
            Constraint::Sleeping { vm } => (vm, VmState::Sleeping),
            Constraint::Killed { vm } => (vm, VmState::Killed),
            _ => continue,
        };
        if let Some(j) = set_by[vm as usize] {
            if state[vm as usize] != s {
                return Err(PlanError::Conflict {
                    constraints: vec![describe(&inst.constraints[j], m), describe(c, m)],
                    reason: format!("VM {} cannot end in two states", m.vm_name(vm)),
                });
            }
        }
        let cur = m.state(vm);
        let reachable = match (cur, s) {
            (a, b) if a == b => true,
            (VmState::Killed, _) => false,
            (VmState::Ready, VmState::Sleeping) => false,
            (VmState::Sleeping, VmState::Ready) => false,
            _ => true,
        };
        if !reachable {
            return Err(PlanError::Conflict {
                constraints: vec![describe(c, m)],
                reason: format!(
                    "VM {} is {} and cannot become {}",
                    m.vm_name(vm),
                    cur.as_str(),
                    s.as_str()
                ),
            });
        }
        state[vm as usize] = s;
        set_by[vm as usize] = Some(i);
    }
    Ok(state)
}

/// Whether each node is online at the end.
pub(crate) fn wanted_online(inst: &Instance) -> Result<Vec<bool>, PlanError> {
    let m = &inst.model;
    let mut online: Vec<bool> = (0..m.nodes() as NodeIdx).map(|n| m.is_online(n)).collect();
    let mut set_by: Vec<Option<usize>> = vec![None; m.nodes()];
    for (i, c) in inst.constraints.iter().enumerate() {
        let (node, on) = match *c {
            Constraint::Online { node } => (node, true),
            Constraint::Offline { node } => (node, false),
            _ => continue,
        };
        if let Some(j) = set_by[node as usize] {
            if online[node as usize] != on {
                return Err(PlanError::Conflict {
                    constraints: vec![describe(&inst.constraints[j], m), describe(c, m)],
                    reason: format!("node {} cannot be both online and offline", m.node_name(node)),
                });
            }
        }
        online[node as usize] = on;
        set_by[node as usize] = Some(i);
    }
    // At most `amount` online: turn off nodes that nothing keeps on (no running VM, no online
    // constraint), emptiest first.
    let running = m.running_by_node();
    for c in &inst.constraints {
        let Constraint::MaxOnline { nodes, amount, .. } = c else {
            continue;
        };
        let mut on: Vec<NodeIdx> = nodes.iter().copied().filter(|&n| online[n as usize]).collect();
        on.sort_by_key(|&n| (set_by[n as usize].is_some(), running[n as usize].len(), n));
        let mut count = on.len() as u64;
        for n in on {
            if count <= *amount {
                break;
            }
            if set_by[n as usize].is_none() && running[n as usize].is_empty() {
                online[n as usize] = false;
                count -= 1;
            }
        }
        if count > *amount {
            return Err(PlanError::Conflict {
                constraints: vec![describe(c, m)],
                reason: format!("{count} of these nodes must stay online (online constraints or running VMs)"),
            });
        }
    }
    Ok(online)
}
