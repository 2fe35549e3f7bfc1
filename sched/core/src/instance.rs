//! What the planner is given and what it gives back: the [`Instance`] (a configuration, the
//! [`Constraint`]s that must hold, the action costs) and the [`Plan`] (the target configuration
//! and its timed [`Action`]s). The planner ([`crate::plan`]) and its independent checker
//! ([`crate::check`]) both speak these types and share nothing else.

use serde::{Deserialize, Serialize};

use crate::model::{Model, NodeIdx, VmIdx};

/// Groups of nodes (zones, racks), shared between the constraints that name the same groups: a
/// 10,000-node cluster's zones are listed once, not once per application.
pub type NodeGroups = std::sync::Arc<Vec<Vec<NodeIdx>>>;

/// A placement constraint, after BtrPlace's catalog. Each one is an invariant on a configuration
/// (and, when `continuous`, on every instant of the plan) that [`crate::check`] verifies alone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "id", rename_all = "camelCase")]
pub enum Constraint {
    /// The VM runs at the end.
    Running { vm: VmIdx },
    /// The VM is defined but not running at the end.
    Ready { vm: VmIdx },
    /// The VM is suspended to disk at the end.
    Sleeping { vm: VmIdx },
    /// The VM is gone at the end.
    Killed { vm: VmIdx },
    /// The node is online at the end.
    Online { node: NodeIdx },
    /// The node is offline at the end (hosting no VM).
    Offline { node: NodeIdx },
    /// The VMs never run on these nodes at the end.
    Ban { vms: Vec<VmIdx>, nodes: Vec<NodeIdx> },
    /// The VMs run only on these nodes at the end.
    Fence { vms: Vec<VmIdx>, nodes: Vec<NodeIdx> },
    /// The running VMs are on pairwise distinct nodes.
    Spread { vms: Vec<VmIdx>, continuous: bool },
    /// The running VMs are all on one node.
    Gather { vms: Vec<VmIdx>, continuous: bool },
    /// The running VMs are all within one of the node groups.
    Among {
        vms: Vec<VmIdx>,
        parts: NodeGroups,
        continuous: bool,
    },
    /// The VM does not move (no migration).
    Root { vm: VmIdx },
    /// The VM has at least `amount` of resource `rc` at the end.
    Preserve { vm: VmIdx, rc: usize, amount: u64 },
    /// No VM arrives on these nodes (vjob's drain: VMs already there may stay or leave).
    NoArrival { nodes: Vec<NodeIdx> },
    /// The running VMs of the set share their nodes with no VM outside the set.
    Lonely { vms: Vec<VmIdx>, continuous: bool },
    /// Running VMs of different parts never share a node.
    Split { parts: Vec<Vec<VmIdx>>, continuous: bool },
    /// Each VM part runs within one node part, and distinct VM parts within distinct node parts.
    #[serde(rename = "splitAmong")]
    SplitAmong {
        #[serde(rename = "vParts")]
        vparts: Vec<Vec<VmIdx>>,
        #[serde(rename = "pParts")]
        nparts: NodeGroups,
        continuous: bool,
    },
    /// No VM arrives on these nodes and none leaves them.
    Quarantine { nodes: Vec<NodeIdx> },
    /// The running VMs on these nodes use at most `amount` of resource `rc` together.
    ResourceCapacity {
        nodes: Vec<NodeIdx>,
        rc: usize,
        amount: u64,
        continuous: bool,
    },
    /// At most `amount` VMs run on these nodes together.
    RunningCapacity {
        nodes: Vec<NodeIdx>,
        amount: u64,
        continuous: bool,
    },
    /// On these nodes, resource `rc` may be used up to `ratio` times its capacity.
    Overbook {
        nodes: Vec<NodeIdx>,
        rc: usize,
        ratio: f64,
        continuous: bool,
    },
    /// At most `amount` of these nodes are online.
    MaxOnline {
        nodes: Vec<NodeIdx>,
        amount: u64,
        continuous: bool,
    },
    /// The actions on these VMs happen one after the other, in this order.
    Seq { vms: Vec<VmIdx> },
}

/// How long each action takes, per VM and per node, in the instance's time unit.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ActionCosts {
    pub boot: Vec<u64>,
    pub shutdown: Vec<u64>,
    pub migrate: Vec<u64>,
    pub suspend: Vec<u64>,
    pub resume: Vec<u64>,
    pub kill: Vec<u64>,
    pub allocate: u64,
    pub boot_node: Vec<u64>,
    pub shutdown_node: Vec<u64>,
}

impl ActionCosts {
    /// Costs in milliseconds from a duration model, for VMs whose memory is resource `mem_rc`
    /// (the daemon and the simulator: one model for both).
    pub fn from_durations(model: &Model, d: &vjob_hypervisor::DurationModel, mem_rc: usize) -> ActionCosts {
        let mut c = ActionCosts::uniform(model, d.destroy_ms);
        // VMs side by side are mostly alike (a vjob's): the last memory's costs are kept.
        let mut last: Option<(u64, [u64; 4])> = None;
        for v in 0..model.vms() {
            let mem = model.demand(v as VmIdx)[mem_rc];
            let costs = match last {
                Some((m, costs)) if m == mem => costs,
                _ => [d.boot(mem), d.migrate(mem), d.save(mem), d.restore(mem)],
            };
            last = Some((mem, costs));
            [c.boot[v], c.migrate[v], c.suspend[v], c.resume[v]] = costs;
        }
        c.allocate = 0;
        c
    }

    /// The same cost for every action of every VM and node.
    pub fn uniform(model: &Model, cost: u64) -> ActionCosts {
        let v = vec![cost; model.vms()];
        let n = vec![cost; model.nodes()];
        ActionCosts {
            boot: v.clone(),
            shutdown: v.clone(),
            migrate: v.clone(),
            suspend: v.clone(),
            resume: v.clone(),
            kill: v,
            allocate: cost,
            boot_node: n.clone(),
            shutdown_node: n,
        }
    }
}

/// Planner options.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Options {
    /// When a cycle of migrations has no pivot node, suspend one VM and resume it at its
    /// destination once room is freed (the daemon allows it; a BtrPlace instance does not).
    pub suspend_to_break_cycles: bool,
    /// Baseline for comparisons: place every running VM again from scratch (first fit,
    /// largest first) instead of keeping those that may stay.
    pub from_scratch: bool,
}

/// What the planner is given.
#[derive(Debug, Clone, PartialEq)]
pub struct Instance {
    pub model: Model,
    pub constraints: Vec<Constraint>,
    /// VMs to place, in this order, before any other (the daemon: the vjobs in policy order).
    pub place_first: Vec<VmIdx>,
    pub costs: ActionCosts,
    pub options: Options,
}

impl Instance {
    pub fn new(model: Model, constraints: Vec<Constraint>) -> Instance {
        let costs = ActionCosts::uniform(&model, 1);
        Instance {
            model,
            constraints,
            place_first: Vec::new(),
            costs,
            options: Options::default(),
        }
    }
}

/// One action of a plan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "id")]
pub enum ActionKind {
    #[serde(rename = "bootVM")]
    BootVm { vm: VmIdx, on: NodeIdx },
    #[serde(rename = "shutdownVM")]
    ShutdownVm { vm: VmIdx, on: NodeIdx },
    #[serde(rename = "migrateVM")]
    MigrateVm { vm: VmIdx, from: NodeIdx, to: NodeIdx },
    #[serde(rename = "suspendVM")]
    SuspendVm { vm: VmIdx, from: NodeIdx },
    #[serde(rename = "resumeVM")]
    ResumeVm { vm: VmIdx, from: NodeIdx, to: NodeIdx },
    #[serde(rename = "killVM")]
    KillVm { vm: VmIdx, on: NodeIdx },
    #[serde(rename = "allocate")]
    Allocate {
        vm: VmIdx,
        on: NodeIdx,
        rc: usize,
        amount: u64,
    },
    #[serde(rename = "bootNode")]
    BootNode { node: NodeIdx },
    #[serde(rename = "shutdownNode")]
    ShutdownNode { node: NodeIdx },
}

impl ActionKind {
    /// The VM this action is about, if any.
    pub fn vm(&self) -> Option<VmIdx> {
        match *self {
            ActionKind::BootVm { vm, .. }
            | ActionKind::ShutdownVm { vm, .. }
            | ActionKind::MigrateVm { vm, .. }
            | ActionKind::SuspendVm { vm, .. }
            | ActionKind::ResumeVm { vm, .. }
            | ActionKind::KillVm { vm, .. }
            | ActionKind::Allocate { vm, .. } => Some(vm),
            ActionKind::BootNode { .. } | ActionKind::ShutdownNode { .. } => None,
        }
    }

    /// BtrPlace's name for the action.
    pub fn name(&self) -> &'static str {
        match self {
            ActionKind::BootVm { .. } => "bootVM",
            ActionKind::ShutdownVm { .. } => "shutdownVM",
            ActionKind::MigrateVm { .. } => "migrateVM",
            ActionKind::SuspendVm { .. } => "suspendVM",
            ActionKind::ResumeVm { .. } => "resumeVM",
            ActionKind::KillVm { .. } => "killVM",
            ActionKind::Allocate { .. } => "allocate",
            ActionKind::BootNode { .. } => "bootNode",
            ActionKind::ShutdownNode { .. } => "shutdownNode",
        }
    }
}

/// An action with its estimated start and end, and the actions that must be over before it
/// starts (the executor follows these, not the estimated times).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Action {
    pub kind: ActionKind,
    pub start: u64,
    pub end: u64,
    pub deps: Vec<u32>,
}

/// A reconfiguration plan: the target configuration and the actions that reach it.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub target: Model,
    pub actions: Vec<Action>,
}

impl Plan {
    /// When the last action ends.
    pub fn duration(&self) -> u64 {
        self.actions.iter().map(|a| a.end).max().unwrap_or(0)
    }
    /// The sum of the actions' completion times (BtrPlace's MTTR objective).
    pub fn sum_completion(&self) -> u64 {
        self.actions.iter().map(|a| a.end).sum()
    }
    /// How many actions of each kind, by BtrPlace name, in a stable order.
    pub fn counts(&self) -> Vec<(&'static str, usize)> {
        let mut counts: Vec<(&'static str, usize)> = Vec::new();
        for a in &self.actions {
            let name = a.kind.name();
            match counts.iter_mut().find(|(n, _)| *n == name) {
                Some((_, c)) => *c += 1,
                None => counts.push((name, 1)),
            }
        }
        counts.sort();
        counts
    }
    pub fn count(&self, name: &str) -> usize {
        self.actions.iter().filter(|a| a.kind.name() == name).count()
    }
}

/// Describes a constraint the way a user wrote it, for error messages.
pub fn describe(c: &Constraint, m: &Model) -> String {
    let vm = |v: &VmIdx| m.vm_name(*v).to_string();
    let node = |n: &NodeIdx| m.node_name(*n).to_string();
    let list = |vs: &[VmIdx]| vs.iter().map(vm).collect::<Vec<_>>().join(",");
    let nodes = |ns: &[NodeIdx]| ns.iter().map(node).collect::<Vec<_>>().join(",");
    match c {
        Constraint::Running { vm: v } => format!("running({})", vm(v)),
        Constraint::Ready { vm: v } => format!("ready({})", vm(v)),
        Constraint::Sleeping { vm: v } => format!("sleeping({})", vm(v)),
        Constraint::Killed { vm: v } => format!("killed({})", vm(v)),
        Constraint::Online { node: n } => format!("online({})", node(n)),
        Constraint::Offline { node: n } => format!("offline({})", node(n)),
        Constraint::Ban { vms, nodes: ns } => format!("ban({{{}}}, {{{}}})", list(vms), nodes(ns)),
        Constraint::Fence { vms, nodes: ns } => format!("fence({{{}}}, {{{}}})", list(vms), nodes(ns)),
        Constraint::Spread { vms, .. } => format!("spread({{{}}})", list(vms)),
        Constraint::Gather { vms, .. } => format!("gather({{{}}})", list(vms)),
        Constraint::Among { vms, .. } => format!("among({{{}}})", list(vms)),
        Constraint::Root { vm: v } => format!("root({})", vm(v)),
        Constraint::Preserve { vm: v, rc, amount } => {
            format!("preserve({}, {}, {amount})", vm(v), m.resources()[*rc])
        }
        Constraint::NoArrival { nodes: ns } => format!("noArrival({{{}}})", nodes(ns)),
        Constraint::Lonely { vms, .. } => format!("lonely({{{}}})", list(vms)),
        Constraint::Split { parts, .. } => {
            format!(
                "split({})",
                parts
                    .iter()
                    .map(|p| format!("{{{}}}", list(p)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        Constraint::SplitAmong { vparts, .. } => {
            format!(
                "splitAmong({})",
                vparts
                    .iter()
                    .map(|p| format!("{{{}}}", list(p)))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        }
        Constraint::Quarantine { nodes: ns } => format!("quarantine({{{}}})", nodes(ns)),
        Constraint::ResourceCapacity {
            nodes: ns, rc, amount, ..
        } => {
            format!("resourceCapacity({{{}}}, {}, {amount})", nodes(ns), m.resources()[*rc])
        }
        Constraint::RunningCapacity { nodes: ns, amount, .. } => {
            format!("runningCapacity({{{}}}, {amount})", nodes(ns))
        }
        Constraint::Overbook {
            nodes: ns, rc, ratio, ..
        } => {
            format!("overbook({{{}}}, {}, {ratio})", nodes(ns), m.resources()[*rc])
        }
        Constraint::MaxOnline { nodes: ns, amount, .. } => format!("maxOnline({{{}}}, {amount})", nodes(ns)),
        Constraint::Seq { vms } => format!("seq({})", list(vms)),
    }
}
