//! The one decision builder: from what was observed (the nodes, what occupies them, the vjobs
//! and where their VMs stand) to the policy's [`Decision`] and the planner [`Instance`] that
//! carries it out. `vjobd` and `vsim` both call [`build`]; they differ only in how they observed
//! the state (real nodes, or virtual time) and in how they carry the plan out.
//!
//! The steps, each a function of its own: the policy's view ([`candidates`], the [`Placer`]
//! holding what runs), the policy ([`PolicyChoice`]), then the planner's view: the model with
//! what occupies the nodes, the constraints of node states and manual moves, and every VM of a
//! candidate as the decision wants it ([`DecisionInstance`]).

use std::collections::HashSet;

use vjob_hypervisor::DurationModel;

use crate::instance::{ActionCosts, Constraint, Instance, Options};
use crate::model::{Model, NodeIdx, VmIdx, VmState, NO_NODE};
use crate::plan::place::Placer;
use crate::policy::{self, Candidate, Decision, Limits, PauseRule, Standing};
use crate::resources::MEMORY;

/// A node as a decision sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInput {
    pub name: String,
    /// One amount per resource of the model.
    pub capacity: Vec<u64>,
    /// Takes new VMs (up, online).
    pub accepts: bool,
    /// Must be left by every VM (offline).
    pub offline: bool,
}

/// A VM on a node that belongs to no candidate (another cluster's, a stale copy, the remains of
/// a job that ended): it occupies its node and never moves.
#[derive(Debug, Clone, PartialEq)]
pub struct LoadInput {
    pub name: String,
    pub node: NodeIdx,
    pub demand: Vec<u64>,
}

/// Where one VM of a vjob stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmAt {
    /// Running on this node.
    Running(NodeIdx),
    /// Paused in memory on this node (a short preemption).
    Paused(NodeIdx),
    /// Suspended to disk.
    Sleeping,
    /// Not started.
    NotStarted,
    /// On a node the decision does not know: left out of it.
    Unknown,
}

/// Where a vjob's VMs stand: all together away from nodes (the common case of a queue, said in
/// constant space), or one by one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmsAt {
    /// `count` VMs, none on a node: all not started, or all suspended to disk.
    Away { count: usize, sleeping: bool },
    /// Each VM's place.
    Each(Vec<VmAt>),
}

impl VmsAt {
    pub fn len(&self) -> usize {
        match self {
            VmsAt::Away { count, .. } => *count,
            VmsAt::Each(v) => v.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// VM `i`'s place.
    pub fn get(&self, i: usize) -> VmAt {
        match self {
            VmsAt::Away { sleeping: true, .. } => VmAt::Sleeping,
            VmsAt::Away { sleeping: false, .. } => VmAt::NotStarted,
            VmsAt::Each(v) => v[i],
        }
    }

    /// The VMs on nodes.
    fn on_nodes(&self) -> &[VmAt] {
        match self {
            VmsAt::Away { .. } => &[],
            VmsAt::Each(v) => v,
        }
    }
}

/// A vjob the decision is about.
#[derive(Debug, Clone, PartialEq)]
pub struct VjobInput {
    pub id: u64,
    pub queue: String,
    pub queue_priority: i32,
    pub priority: i32,
    pub submit_ms: u64,
    pub user: String,
    /// May be started or resumed.
    pub eligible: bool,
    /// May not be suspended now.
    pub protected: bool,
    /// Suspended by an administrator while it runs: it is suspended whatever the policy says.
    pub admin_suspend: bool,
    /// What each of its VMs needs.
    pub demand: Vec<u64>,
    /// Where each of its VMs stands.
    pub vms: VmsAt,
    /// The user's estimate of its running time.
    pub requested_ms: Option<u64>,
    /// For a running vjob: when its estimate says it ends.
    pub expected_end_ms: Option<u64>,
}

/// Which policy decides.
#[derive(Debug, Clone, PartialEq)]
pub enum PolicyChoice {
    Fcfs,
    /// EASY backfilling at time `now` (milliseconds).
    Easy {
        now: u64,
    },
    /// The vjob context switch (and selective suspension, through `preempt_ratio`).
    ContextSwitch(Limits),
}

impl PolicyChoice {
    fn pause_rule(&self) -> Option<&PauseRule> {
        match self {
            PolicyChoice::ContextSwitch(l) => l.pause.as_ref(),
            _ => None,
        }
    }
}

/// Everything a decision is made from.
pub struct DecisionInput<'a> {
    pub nodes: &'a [NodeInput],
    pub load: &'a [LoadInput],
    /// Taken whole: their fields become the policy's candidates without a copy.
    pub vjobs: Vec<VjobInput>,
    pub policy: &'a PolicyChoice,
    /// VMs an administrator asked to move: (vjob, VM index, node).
    pub moves: &'a [(u64, usize, NodeIdx)],
    /// The name of VM `index` of vjob `id`, asked only when a planner instance is built.
    pub vm_name: &'a dyn Fn(u64, usize) -> String,
    /// Action durations, for the planner's costs.
    pub durations: &'a DurationModel,
    /// Build the planner instance even when nothing is to change (a snapshot).
    pub always_plan: bool,
    /// Which nodes the instance holds.
    pub scope: Scope,
}

/// A decision and what carries it out.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    pub decision: Decision,
    /// The planner instance; `None` when nothing is to change.
    pub instance: Option<Instance>,
    /// For each VM of the instance: the vjob and the index of its VM, or `None` for load.
    pub vm_refs: Vec<Option<(u64, usize)>>,
    /// For each node of the instance, the input node it is: the instance holds only the nodes
    /// a decision touches (where VMs arrive, or leave from), unless [`Scope::Whole`] was asked
    /// or needed (manual moves, nodes to evacuate, snapshots).
    pub nodes: Vec<NodeIdx>,
}

/// Which nodes a planner instance holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The nodes the decision touches, and what runs there: the plan costs what changes.
    Touched,
    /// Every node and every VM (the fallback when a plan of the touched nodes fails).
    Whole,
}

/// Decides: the policy's choice, and the planner instance that carries it out.
pub fn build(mut input: DecisionInput<'_>) -> Built {
    let views = split(std::mem::take(&mut input.vjobs), input.nodes);
    let rule = input.policy.pause_rule();
    let mut placer = policy_placer(input.nodes, input.load, &views.cands, rule);
    let mut decision = match input.policy {
        PolicyChoice::Fcfs => policy::fcfs(&views.cands, &mut placer),
        PolicyChoice::Easy { now } => policy::easy(&views.cands, &mut placer, *now, crate::resources::CPU),
        PolicyChoice::ContextSwitch(limits) => policy::context_switch(&views.cands, &mut placer, limits),
    };
    for v in views.vms.iter().filter(|v| v.admin_demand.is_some()) {
        decision.suspend.push((v.id, None));
    }
    let nothing = decision.run.is_empty() && decision.suspend.is_empty() && decision.pause.is_empty();
    if nothing && input.moves.is_empty() && !misplaced(&views, input.nodes) && !input.always_plan {
        return Built {
            decision,
            instance: None,
            vm_refs: Vec::new(),
            nodes: Vec::new(),
        };
    }
    let whole = input.scope == Scope::Whole || !input.moves.is_empty() || input.always_plan || misplaced(&views, input.nodes);
    let nodes: Vec<NodeIdx> = if whole {
        (0..input.nodes.len() as NodeIdx).collect()
    } else {
        touched_nodes(&views, &decision)
    };
    let (instance, vm_refs) = planner_instance(&input, &views, &decision, rule, &nodes);
    Built {
        decision,
        instance: Some(instance),
        vm_refs,
        nodes,
    }
}

/// The vjobs split into what the policy sees and where their VMs are.
struct Views {
    /// The policy's candidates (those suspended by hand are not the policy's).
    cands: Vec<Candidate>,
    /// Every vjob's VMs, in input order.
    vms: Vec<VjobVms>,
}

struct VjobVms {
    id: u64,
    at: VmsAt,
    /// Its candidate.
    cand: Option<usize>,
    /// For a vjob suspended by hand (no candidate): what its VMs need.
    admin_demand: Option<Vec<u64>>,
}

impl Views {
    fn demand<'a>(&'a self, v: &'a VjobVms) -> &'a [u64] {
        match (v.cand, &v.admin_demand) {
            (Some(c), _) => &self.cands[c].demand,
            (None, Some(d)) => d,
            (None, None) => unreachable!("every vjob is a candidate or suspended by hand"),
        }
    }
}

fn split(vjobs: Vec<VjobInput>, nodes: &[NodeInput]) -> Views {
    let mut views = Views {
        cands: Vec::with_capacity(vjobs.len()),
        vms: Vec::with_capacity(vjobs.len()),
    };
    for v in vjobs {
        if v.admin_suspend {
            views.vms.push(VjobVms {
                id: v.id,
                at: v.vms,
                cand: None,
                admin_demand: Some(v.demand),
            });
            continue;
        }
        let cand = candidate(
            v.id,
            &v.vms,
            nodes,
            CandidateFields {
                queue: v.queue,
                queue_priority: v.queue_priority,
                priority: v.priority,
                submit_ms: v.submit_ms,
                user: v.user,
                eligible: v.eligible,
                protected: v.protected,
                demand: v.demand,
                requested_ms: v.requested_ms,
                expected_end_ms: v.expected_end_ms,
            },
        );
        views.vms.push(VjobVms {
            id: v.id,
            at: v.vms,
            cand: Some(views.cands.len()),
            admin_demand: None,
        });
        views.cands.push(cand);
    }
    views
}

/// What a candidate takes from its vjob as is.
struct CandidateFields {
    queue: String,
    queue_priority: i32,
    priority: i32,
    submit_ms: u64,
    user: String,
    eligible: bool,
    protected: bool,
    demand: Vec<u64>,
    requested_ms: Option<u64>,
    expected_end_ms: Option<u64>,
}

/// A vjob as the policy sees it: where it stands, and where its VMs run (a VM on a node going
/// offline must be placed again).
fn candidate(id: u64, vms: &VmsAt, nodes: &[NodeInput], f: CandidateFields) -> Candidate {
    let (mut running, mut paused, mut sleeping) = (false, false, matches!(vms, VmsAt::Away { sleeping: true, .. }));
    for at in vms.on_nodes() {
        match at {
            VmAt::Running(_) => running = true,
            VmAt::Paused(_) => paused = true,
            VmAt::Sleeping => sleeping = true,
            VmAt::NotStarted | VmAt::Unknown => {}
        }
    }
    let standing = match (running, paused, sleeping) {
        (true, _, _) => Standing::Running,
        (false, true, _) => Standing::Paused,
        (false, false, true) => Standing::Suspended,
        _ => Standing::Waiting,
    };
    let placed = vms
        .on_nodes()
        .iter()
        .filter_map(|at| match *at {
            VmAt::Running(h) if !nodes[h as usize].offline => Some(h),
            VmAt::Paused(h) => Some(h),
            _ => None,
        })
        .collect();
    Candidate {
        id,
        queue: f.queue,
        queue_priority: f.queue_priority,
        priority: f.priority,
        submit_ms: f.submit_ms,
        user: f.user,
        standing,
        eligible: f.eligible,
        protected: f.protected,
        demand: f.demand,
        vms: vms.len(),
        placed,
        requested_ms: f.requested_ms,
        expected_end_ms: f.expected_end_ms,
    }
}

/// The nodes a decision touches, in order: where the policy placed VMs, and where the VMs of
/// the vjobs it starts, suspends, pauses or unpauses are.
fn touched_nodes(views: &Views, decision: &Decision) -> Vec<NodeIdx> {
    let mut nodes: Vec<NodeIdx> = decision.placed.iter().flat_map(|(_, ns)| ns.iter().copied()).collect();
    let moved: HashSet<u64> = decision
        .run
        .iter()
        .chain(decision.suspend.iter().map(|(id, _)| id))
        .chain(decision.pause.iter().map(|(id, _)| id))
        .copied()
        .collect();
    for v in views.vms.iter().filter(|v| moved.contains(&v.id)) {
        nodes.extend(v.at.on_nodes().iter().filter_map(|at| match *at {
            VmAt::Running(h) | VmAt::Paused(h) => Some(h),
            _ => None,
        }));
    }
    nodes.sort_unstable();
    nodes.dedup();
    nodes
}

/// The placer the policy places with: every node's load (outside VMs, and the candidates' VMs
/// where they are, a paused one holding what its rule keeps), the nodes that take no new VM
/// closed. Built from plain vectors: it runs on every decision, at 10,000 nodes.
fn policy_placer(nodes: &[NodeInput], outside: &[LoadInput], cands: &[Candidate], rule: Option<&PauseRule>) -> Placer {
    let r = crate::resources::NAMES.len();
    let capacity: Vec<u64> = nodes.iter().flat_map(|n| n.capacity.iter().copied()).collect();
    let mut load = vec![0u64; capacity.len()];
    let mut add = |node: NodeIdx, demand: &[u64]| {
        for (k, d) in demand.iter().enumerate() {
            load[node as usize * r + k] += d;
        }
    };
    for l in outside {
        add(l.node, &l.demand);
    }
    for c in cands
        .iter()
        .filter(|c| matches!(c.standing, Standing::Running | Standing::Paused))
    {
        let held = match (c.standing, rule) {
            (Standing::Paused, Some(rule)) => rule.held(&c.demand),
            _ => c.demand.clone(),
        };
        for &h in &c.placed {
            add(h, &held);
        }
    }
    let closed = nodes.iter().map(|n| !n.accepts).collect();
    Placer::new(r, capacity, closed, load.clone(), load)
}

/// Whether some running VM sits on a node that must be left.
fn misplaced(views: &Views, nodes: &[NodeInput]) -> bool {
    if !nodes.iter().any(|n| n.offline) {
        return false;
    }
    views.vms.iter().any(|v| {
        v.at.on_nodes()
            .iter()
            .any(|at| matches!(at, VmAt::Running(h) if nodes[*h as usize].offline))
    })
}

/// The planner instance for a decision over `nodes` (input indices, in order), with the vjob
/// and VM index of each of its VMs. The VMs outside those nodes are left out: they neither move
/// nor weigh on the nodes in.
fn planner_instance(
    input: &DecisionInput<'_>,
    views: &Views,
    decision: &Decision,
    rule: Option<&PauseRule>,
    nodes: &[NodeIdx],
) -> (Instance, Vec<Option<(u64, usize)>>) {
    let mut local = vec![NO_NODE; input.nodes.len()];
    let mut model = Model::cpu_and_memory();
    for (i, &n) in nodes.iter().enumerate() {
        local[n as usize] = i as NodeIdx;
        let node = &input.nodes[n as usize];
        model.add_node(node.name.clone(), true, &node.capacity);
    }
    let mut constraints = Vec::new();
    let mut vm_refs = Vec::new();
    for l in input.load.iter().filter(|l| local[l.node as usize] != NO_NODE) {
        let v = model.add_vm(l.name.clone(), VmState::Running, local[l.node as usize], &l.demand);
        constraints.push(Constraint::Root { vm: v });
        vm_refs.push(None);
    }
    let mut build = DecisionInstance::new(model, constraints, decision, rule);
    for v in in_decision_order(views, decision) {
        let demand = views.demand(v);
        for i in 0..v.at.len() {
            let (state, host, paused) = match v.at.get(i) {
                VmAt::Running(h) if local[h as usize] != NO_NODE => (VmState::Running, local[h as usize], false),
                VmAt::Paused(h) if local[h as usize] != NO_NODE => (VmState::Running, local[h as usize], true),
                VmAt::Sleeping => (VmState::Sleeping, NO_NODE, false),
                VmAt::NotStarted => (VmState::Ready, NO_NODE, false),
                _ => continue,
            };
            if build
                .add_vm(v.id, i, state, host, demand, paused, input.vm_name)
                .is_some()
            {
                vm_refs.push(Some((v.id, i)));
            }
        }
    }
    for (i, &n) in nodes.iter().enumerate() {
        let node = &input.nodes[n as usize];
        if node.offline {
            build.constraints.push(Constraint::Offline { node: i as NodeIdx });
        } else if !node.accepts {
            build.constraints.push(Constraint::NoArrival {
                nodes: vec![i as NodeIdx],
            });
        }
    }
    for (id, i, node) in input.moves {
        // Moves are few (an administrator's): looked up, not indexed.
        if let Some(v) = vm_refs.iter().position(|r| *r == Some((*id, *i))) {
            build.constraints.push(Constraint::Fence {
                vms: vec![v as VmIdx],
                nodes: vec![local[*node as usize]],
            });
        }
    }
    (build.finish(input.durations), vm_refs)
}

/// The vjobs to run first, in policy order, so that the planner places them as the policy did;
/// then the others, in input order.
fn in_decision_order<'a>(views: &'a Views, decision: &Decision) -> Vec<&'a VjobVms> {
    let index: std::collections::HashMap<u64, usize> = views.vms.iter().enumerate().map(|(i, v)| (v.id, i)).collect();
    let mut order: Vec<&VjobVms> = decision
        .run
        .iter()
        .filter_map(|id| index.get(id))
        .map(|&i| &views.vms[i])
        .collect();
    let to_run: HashSet<u64> = decision.run.iter().copied().collect();
    order.extend(views.vms.iter().filter(|v| !to_run.contains(&v.id)));
    order
}

/// The planner instance that carries a [`Decision`] out, built VM by VM: the caller says where
/// each VM of a candidate stands, this says how the planner must see it (what it holds over the
/// plan, and the constraints that carry the decision out).
struct DecisionInstance<'a> {
    model: Model,
    constraints: Vec<Constraint>,
    place_first: Vec<VmIdx>,
    run: HashSet<u64>,
    sleep: HashSet<u64>,
    pause: HashSet<u64>,
    rule: Option<&'a PauseRule>,
}

impl<'a> DecisionInstance<'a> {
    /// Starts from `model` and `constraints` (what is not a candidate's: load, nodes).
    fn new(model: Model, constraints: Vec<Constraint>, decision: &Decision, rule: Option<&'a PauseRule>) -> Self {
        DecisionInstance {
            model,
            constraints,
            place_first: Vec::new(),
            run: decision.run.iter().copied().collect(),
            sleep: decision.suspend.iter().map(|(id, _)| *id).collect(),
            pause: decision.pause.iter().map(|(id, _)| *id).collect(),
            rule,
        }
    }

    /// Adds VM `index` of candidate `id`, which stands in `state` on `host` (paused in memory
    /// there when `paused`) and needs `demand` to run. `None`: the plan has nothing to do with
    /// this VM (it is not on a node and is not to run).
    #[allow(clippy::too_many_arguments)]
    fn add_vm(
        &mut self,
        id: u64,
        index: usize,
        state: VmState,
        host: NodeIdx,
        demand: &[u64],
        paused: bool,
        name: &dyn Fn(u64, usize) -> String,
    ) -> Option<VmIdx> {
        let to_run = self.run.contains(&id);
        if state != VmState::Running && !to_run {
            return None;
        }
        let to_sleep = self.sleep.contains(&id);
        // Paused in memory (or about to be): it stays where it is, holding what its rule keeps,
        // unless it is unpaused now.
        let in_memory = paused || self.pause.contains(&id);
        let held = match (in_memory && !to_run, self.rule) {
            (true, Some(r)) => r.held(demand),
            _ => demand.to_vec(),
        };
        let v = self.model.add_vm(name(id, index), state, host, &held);
        if to_run {
            self.constraints.push(Constraint::Running { vm: v });
            self.place_first.push(v);
        } else if to_sleep && state == VmState::Running {
            self.constraints.push(Constraint::Sleeping { vm: v });
        }
        if in_memory && !to_sleep {
            self.constraints.push(Constraint::Root { vm: v });
        }
        Some(v)
    }

    /// The instance, with action costs from `durations`.
    fn finish(self, durations: &DurationModel) -> Instance {
        let costs = ActionCosts::from_durations(&self.model, durations, MEMORY);
        Instance {
            model: self.model,
            constraints: self.constraints,
            place_first: self.place_first,
            costs,
            options: Options {
                suspend_to_break_cycles: true,
                ..Default::default()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::cpu_memory;

    fn nodes(n: usize) -> Vec<NodeInput> {
        (0..n)
            .map(|i| NodeInput {
                name: format!("n{i}"),
                capacity: cpu_memory(4, 8 << 30),
                accepts: true,
                offline: false,
            })
            .collect()
    }

    fn vjob(id: u64, queue_priority: i32, vms: Vec<VmAt>) -> VjobInput {
        let vms = VmsAt::Each(vms);
        VjobInput {
            id,
            queue: "q".into(),
            queue_priority,
            priority: 0,
            submit_ms: id,
            user: "u".into(),
            eligible: true,
            protected: false,
            admin_suspend: false,
            demand: cpu_memory(4, 1 << 30),
            vms,
            requested_ms: None,
            expected_end_ms: None,
        }
    }

    fn decide(nodes: &[NodeInput], load: &[LoadInput], vjobs: &[VjobInput], moves: &[(u64, usize, NodeIdx)]) -> Built {
        build(DecisionInput {
            nodes,
            load,
            vjobs: vjobs.to_vec(),
            policy: &PolicyChoice::ContextSwitch(Limits::default()),
            moves,
            vm_name: &|id, i| format!("v{id}-{i}"),
            durations: &DurationModel::default(),
            always_plan: false,
            scope: Scope::Touched,
        })
    }

    #[test]
    fn a_preemption_is_decided_and_its_instance_places_the_preemptor_first() {
        let ns = nodes(1);
        let b = decide(
            &ns,
            &[],
            &[vjob(1, 0, vec![VmAt::Running(0)]), vjob(2, 10, vec![VmAt::NotStarted])],
            &[],
        );
        assert_eq!(
            (b.decision.run.clone(), b.decision.suspend.clone()),
            (vec![2], vec![(1, Some(2))])
        );
        let inst = b.instance.expect("something changes");
        assert_eq!(b.vm_refs, vec![Some((2, 0)), Some((1, 0))], "the preemptor's VM first");
        assert_eq!(inst.place_first, vec![0]);
        assert!(inst.constraints.contains(&Constraint::Running { vm: 0 }));
        assert!(inst.constraints.contains(&Constraint::Sleeping { vm: 1 }));
    }

    #[test]
    fn load_occupies_its_node_and_never_moves() {
        let ns = nodes(2);
        let load = [LoadInput {
            name: "theirs".into(),
            node: 0,
            demand: cpu_memory(4, 1 << 30),
        }];
        let vjobs = [vjob(1, 0, vec![VmAt::NotStarted])];
        let input = DecisionInput {
            nodes: &ns,
            load: &load,
            vjobs: vjobs.to_vec(),
            policy: &PolicyChoice::ContextSwitch(Limits::default()),
            moves: &[],
            vm_name: &|id, i| format!("v{id}-{i}"),
            durations: &DurationModel::default(),
            always_plan: false,
            scope: Scope::Whole,
        };
        let b = build(input);
        assert_eq!(b.decision.run, vec![1]);
        assert_eq!(b.decision.placed, vec![(1, vec![1])], "the policy placed it beside the load");
        let inst = b.instance.unwrap();
        assert_eq!(b.vm_refs[0], None);
        assert!(inst.constraints.contains(&Constraint::Root { vm: 0 }));
        let plan = crate::plan::solve(&inst).unwrap();
        assert_eq!(plan.target.host(1), 1, "placed beside the load, not on it");
        // The touched nodes only: node 1 and its arrival; the load's node is left out.
        let b = decide(&ns, &load, &vjobs, &[]);
        let inst = b.instance.unwrap();
        assert_eq!((b.nodes.clone(), inst.model.nodes(), inst.model.vms()), (vec![1], 1, 1));
        let plan = crate::plan::solve(&inst).unwrap();
        assert_eq!(b.nodes[plan.target.host(0) as usize], 1);
    }

    #[test]
    fn nothing_to_change_builds_no_instance_unless_asked_or_misplaced_or_moved() {
        let mut ns = nodes(2);
        let running = [vjob(1, 0, vec![VmAt::Running(0)])];
        assert!(decide(&ns, &[], &running, &[]).instance.is_none());
        let moved = decide(&ns, &[], &running, &[(1, 0, 1)]);
        let inst = moved.instance.expect("a manual move is planned");
        assert!(inst.constraints.contains(&Constraint::Fence {
            vms: vec![0],
            nodes: vec![1]
        }));
        ns[0].offline = true;
        ns[0].accepts = false;
        let b = decide(&ns, &[], &running, &[]);
        assert!(b
            .instance
            .unwrap()
            .constraints
            .contains(&Constraint::Offline { node: 0 }));
    }

    #[test]
    fn a_vjob_suspended_by_hand_is_suspended_whatever_the_policy() {
        let ns = nodes(1);
        let mut v = vjob(1, 0, vec![VmAt::Running(0)]);
        v.admin_suspend = true;
        let b = decide(&ns, &[], &[v], &[]);
        assert_eq!(b.decision.suspend, vec![(1, None)]);
        assert!(b
            .instance
            .unwrap()
            .constraints
            .contains(&Constraint::Sleeping { vm: 0 }));
    }
}
