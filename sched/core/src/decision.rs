//! The one decision builder: from what was observed (the nodes, what occupies them, the vjobs
//! and where their VMs stand) to the policy's [`Decision`] and the planner [`Instance`] that
//! carries it out. `vjobd` and `vsim` both call [`build`]; they differ only in how they observed
//! the state (real nodes, or virtual time) and in how they carry the plan out.
//!
//! The steps, each a function of its own: the policy's view ([`candidates`], the [`Placer`]
//! holding what runs), the policy ([`PolicyChoice`]), then the planner's view: the model with
//! what occupies the nodes, the constraints of node states and manual moves, and every VM of a
//! candidate as the decision wants it ([`DecisionInstance`]).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use vjob_hypervisor::DurationModel;

use crate::instance::{Action, ActionCosts, ActionKind, Constraint, Instance, Options, Plan};
use crate::model::{Model, NodeIdx, VmIdx, VmState, NO_NODE};
use crate::plan::place::{Mark, Placer};
pub use crate::policy::Demands;
use crate::policy::{self, Candidate, Decision, Limits, OrderKey, PauseRule, Standing};
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
    /// Shared: a vjob is given to the board again at each change of its state.
    pub user: std::sync::Arc<str>,
    /// May be started or resumed.
    pub eligible: bool,
    /// May not be suspended now.
    pub protected: bool,
    /// Suspended by an administrator while it runs: it is suspended whatever the policy says.
    pub admin_suspend: bool,
    /// What each of its VMs needs.
    pub demand: Demands,
    /// Where each of its VMs stands.
    pub vms: VmsAt,
    /// The user's estimate of its running time.
    pub requested_ms: Option<u64>,
    /// For a running vjob: when its estimate says it ends.
    pub expected_end_ms: Option<u64>,
    /// What its placement script asks, if it has one.
    pub rules: Option<std::sync::Arc<crate::placement::VjobRules>>,
    /// A group of vjobs of which at most so many run at once (an array's tasks and its
    /// throttle): `(group, most running)`.
    pub group_limit: Option<(u64, u32)>,
    /// Its rank among vjobs of its queue priority (the multifactor priority of
    /// [`crate::fairshare`]; 0 when ranking is not configured): orders who starts first,
    /// never lets a vjob preempt one it does not outrank by priority.
    pub rank: i64,
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
    ContextSwitch(Box<Limits>),
}

impl PolicyChoice {
    fn pause_rule(&self) -> Option<&PauseRule> {
        match self {
            PolicyChoice::ContextSwitch(l) => l.pause.as_ref(),
            _ => None,
        }
    }
}

/// Everything a one-shot decision is made from.
pub struct DecisionInput<'a> {
    pub nodes: Vec<NodeInput>,
    pub load: Vec<LoadInput>,
    pub vjobs: Vec<VjobInput>,
    pub policy: &'a PolicyChoice,
    pub ask: Ask<'a>,
    /// The datacenter's constraints ([`Board::set_datacenter`]).
    pub datacenter: &'a [Constraint],
}

/// What is asked of a decision, besides the state it is made on.
pub struct Ask<'a> {
    /// VMs an administrator asked to move: (vjob, VM index, node).
    pub moves: &'a [(u64, usize, NodeIdx)],
    /// The name of VM `index` of vjob `id`, asked only when a planner instance is built.
    pub vm_name: &'a dyn Fn(u64, usize) -> std::sync::Arc<str>,
    /// Action durations, for the planner's costs.
    pub durations: &'a DurationModel,
    /// Build the planner instance even when nothing is to change (a snapshot).
    pub always_plan: bool,
    /// Which nodes the instance holds.
    pub scope: Scope,
    /// List every waiting vjob in the decision, with why it waits (vjobd shows the reasons,
    /// power management reads who is short of room). Otherwise EASY may stop reading a long
    /// queue where nothing more can start, and say so ([`Decision::unreached_from`]).
    pub list_waiting: bool,
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
    /// The plan, when the decision needs no planning: it only starts or resumes vjobs into room
    /// that is free now, each VM where the policy placed it, and nothing else moves. `None`:
    /// ask the planner.
    pub plan: Option<Plan>,
}

/// Which nodes a planner instance holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The nodes the decision touches, and what runs there: the plan costs what changes.
    Touched,
    /// Every node and every VM (the fallback when a plan of the touched nodes fails).
    Whole,
}

/// Decides once, from scratch: the policy's choice, and the planner instance that carries it
/// out. A [`Board`] kept across decisions gives the same answers for what changed only.
/// Each vjob VM of a planner instance, (vjob, VM index), to its index in the instance.
fn instance_index(vm_refs: &[Option<(u64, usize)>]) -> std::collections::HashMap<(u64, usize), VmIdx> {
    vm_refs
        .iter()
        .enumerate()
        .filter_map(|(v, r)| r.map(|r| (r, v as VmIdx)))
        .collect()
}

/// In a datacenter constraint, the VM that stands for every VM of every vjob (btrpsl's
/// `$ALL_VMS`).
pub const ALL_VMS: VmIdx = VmIdx::MAX;

pub fn build(input: DecisionInput<'_>) -> Built {
    let mut board = Board::new(input.nodes, input.policy.pause_rule().cloned());
    if !input.datacenter.is_empty() {
        board.set_datacenter(input.datacenter.to_vec());
    }
    board.set_load(input.load);
    for v in input.vjobs {
        board.upsert(v);
    }
    board.decide(input.policy, &input.ask)
}

/// What the decisions are made on, kept up to date between them: the nodes, what occupies each
/// (with the indexes of free capacity the policies place with), and every vjob. Updating it
/// costs what changed; a decision costs the candidates it considers and the nodes it touches.
pub struct Board {
    nodes: Vec<NodeInput>,
    /// The nodes' names as the planner's models share them (every decision names its nodes).
    node_names: Vec<std::sync::Arc<str>>,
    /// Per node, the name of the immovable VM that stands for what stays there in a decision
    /// that only starts vjobs: made the first time it is needed, then shared.
    what_stays: Vec<std::cell::OnceCell<std::sync::Arc<str>>>,
    /// What occupies the nodes: outside load, and the vjobs' VMs where they stay.
    placer: Placer,
    /// Per node: what occupies it outside the vjobs.
    load: Vec<Vec<LoadInput>>,
    /// Boxed: vjobs come and go in any order, and a B-tree shifts its entries at every
    /// insertion and removal (a pointer each, instead of a whole entry).
    vjobs: BTreeMap<u64, Box<Entry>>,
    /// The vjobs not running (waiting, suspended, paused): all that FCFS and EASY consider.
    not_running: BTreeSet<u64>,
    /// The same in the policies' order, made when FCFS or EASY first decide and kept from
    /// then on: they read the queue from its head and stop where nothing more can start, so a
    /// decision costs the vjobs it reaches, not the length of the queue. (The context switch
    /// reads every vjob, and changes every waiting one's priority with time: it sorts them.)
    queue_order: Option<BTreeSet<OrderKey>>,
    /// What runs, as (expected end, cpus, vjob), in order: EASY's reservations read it.
    running_ends: BTreeSet<(u64, u64, u64)>,
    /// The vjobs an administrator suspended.
    admin_suspended: BTreeSet<u64>,
    /// Running vjobs with VMs to place again (their node going offline).
    running_misplaced: BTreeSet<u64>,
    /// Vjobs of arrays with a throttle: their running tasks count against it.
    group_limited: usize,
    /// Per resource, what the eligible vjobs waiting or suspended need together.
    queued_demand: Vec<u64>,
    /// Per node: the vjobs' VMs there, (vjob, VM index).
    on_node: Vec<Vec<(u64, usize)>>,
    /// What a paused VM keeps on its node.
    rule: Option<PauseRule>,
    /// Some node must be left by its VMs.
    any_offline: bool,
    /// The datacenter's constraints, over the nodes' indices; VM [`ALL_VMS`] in one stands for
    /// every VM of every vjob.
    datacenter: Vec<Constraint>,
    /// Vjobs that are not wholly running where they are (waiting, suspended, paused, with VMs
    /// to place again) or are to be suspended by hand: when there is none, a decision has
    /// nothing to do.
    unsettled: usize,
    /// Vjobs with placement rules: while there is one, plans span the whole cluster.
    constrained: usize,
    /// Vjobs that the last decision starts with a direct plan, whose placements it left taken
    /// (see [`Entry::starting`]).
    starting: Vec<u64>,
}

impl Entry {
    /// Where it stands among what runs for EASY's reservations: (expected end, cpus, vjob).
    fn running_end(&self) -> Option<(u64, u64, u64)> {
        let v = &self.input;
        (self.standing == Standing::Running && !v.admin_suspend).then(|| {
            let cpus = v.demand.total(crate::resources::CPU, v.vms.len());
            (v.expected_end_ms.unwrap_or(u64::MAX), cpus, v.id)
        })
    }

    /// Whether a decision may have something to do about it.
    fn unsettled(&self) -> bool {
        self.input.admin_suspend || self.standing != Standing::Running || self.placed.len() < self.input.vms.len()
    }
}

/// A vjob on the board, with what the policy needs of it derived once.
struct Entry {
    input: VjobInput,
    standing: Standing,
    /// Its VMs that stay where they are (running, or paused), as (VM index, node).
    placed: Vec<(usize, NodeIdx)>,
    /// Per VM, the node a decision that starts it with a direct plan placed it on, held in
    /// the placer from that decision on: when the vjob is next seen running there, its VMs
    /// already occupy their nodes (a take, an undo and a settle would be three changes of one
    /// node's load for nothing). Released when it is seen otherwise, leaves the board, or at
    /// the next decision, which so decides on what is seen alone. Empty otherwise.
    starting: Vec<NodeIdx>,
}

impl Entry {
    /// What its VM `vm` holds where it stays: what it needs, what a paused VM keeps (`rule`),
    /// or nothing for a vjob suspended by hand (it goes).
    fn held<'e>(&'e self, vm: usize, rule: Option<&PauseRule>) -> std::borrow::Cow<'e, [u64]> {
        let d = self.input.demand.of(vm);
        match (self.input.admin_suspend, self.standing, rule) {
            (true, ..) => std::borrow::Cow::Owned(vec![0; d.len()]),
            (false, Standing::Paused, Some(rule)) => std::borrow::Cow::Owned(rule.held(d)),
            _ => std::borrow::Cow::Borrowed(d),
        }
    }
}

impl Board {
    /// An empty board over `nodes`; paused VMs hold what `rule` keeps.
    pub fn new(nodes: Vec<NodeInput>, rule: Option<PauseRule>) -> Board {
        let r = crate::resources::NAMES.len();
        let capacity: Vec<u64> = nodes.iter().flat_map(|n| n.capacity.iter().copied()).collect();
        let closed = nodes.iter().map(|n| !n.accepts).collect();
        let zero = vec![0u64; capacity.len()];
        let n = nodes.len();
        Board {
            any_offline: nodes.iter().any(|n| n.offline),
            unsettled: 0,
            constrained: 0,
            starting: Vec::new(),
            placer: Placer::new(r, capacity, closed, zero.clone(), zero),
            node_names: nodes.iter().map(|n| n.name.as_str().into()).collect(),
            what_stays: vec![std::cell::OnceCell::new(); nodes.len()],
            nodes,
            load: vec![Vec::new(); n],
            vjobs: BTreeMap::new(),
            not_running: BTreeSet::new(),
            queue_order: None,
            running_ends: BTreeSet::new(),
            admin_suspended: BTreeSet::new(),
            running_misplaced: BTreeSet::new(),
            group_limited: 0,
            queued_demand: vec![0; r],
            on_node: vec![Vec::new(); n],
            rule,
            datacenter: Vec::new(),
        }
    }

    /// The datacenter's placement constraints, kept by every plan from now on.
    /// Nodes that no vjob VM may use are closed to the policy's placements.
    pub fn set_datacenter(&mut self, constraints: Vec<Constraint>) {
        for c in &constraints {
            let closed: Vec<NodeIdx> = match c {
                Constraint::Ban { vms, nodes } if vms == &[ALL_VMS] => nodes.clone(),
                Constraint::Fence { vms, nodes } if vms == &[ALL_VMS] => (0..self.nodes.len() as NodeIdx)
                    .filter(|n| !nodes.contains(n))
                    .collect(),
                _ => continue,
            };
            for n in closed {
                self.placer.close(n);
            }
        }
        self.datacenter = constraints;
    }

    pub fn nodes(&self) -> &[NodeInput] {
        &self.nodes
    }

    /// Whether node `n` takes new VMs (a node switched off or on): the datacenter's bans of
    /// every VM still close it.
    pub fn set_accepts(&mut self, n: NodeIdx, accepts: bool) {
        self.nodes[n as usize].accepts = accepts;
        let banned = self.datacenter.iter().any(|c| match c {
            Constraint::Ban { vms, nodes } => vms == &[ALL_VMS] && nodes.contains(&n),
            Constraint::Fence { vms, nodes } => vms == &[ALL_VMS] && !nodes.contains(&n),
            _ => false,
        });
        match accepts && !banned {
            true => self.placer.open(n),
            false => self.placer.close(n),
        }
    }

    /// Replaces what occupies the nodes outside the vjobs.
    pub fn set_load(&mut self, load: Vec<LoadInput>) {
        let mut by_node: Vec<Vec<LoadInput>> = vec![Vec::new(); self.nodes.len()];
        for l in load {
            by_node[l.node as usize].push(l);
        }
        for (n, l) in by_node.into_iter().enumerate() {
            self.set_node_load(n as NodeIdx, l);
        }
    }

    /// Replaces what occupies node `n` outside the vjobs.
    pub fn set_node_load(&mut self, n: NodeIdx, load: Vec<LoadInput>) {
        for l in std::mem::take(&mut self.load[n as usize]) {
            self.placer.vacate(n, &l.demand);
        }
        for l in &load {
            self.placer.occupy(n, &l.demand);
        }
        self.load[n as usize] = load;
    }

    /// Adds a vjob, or brings it up to date.
    pub fn upsert(&mut self, v: VjobInput) {
        let mut old = self.vjobs.remove(&v.id);
        let mut seen_where_started = false;
        if let Some(e) = old.as_mut() {
            seen_where_started = !e.starting.is_empty()
                && !v.admin_suspend
                && e.input.demand == v.demand
                && running_on(&v.vms, &e.starting, &self.nodes);
            if seen_where_started {
                // Its placements become where its VMs stay, as they are.
                e.starting.clear();
                self.starting.retain(|&id| id != v.id);
            }
            self.forget(e);
        }
        let (standing, placed) = standing_and_placed(&v.vms, &self.nodes);
        for (i, at) in v.vms.on_nodes().iter().enumerate() {
            if let VmAt::Running(h) | VmAt::Paused(h) = *at {
                self.on_node[h as usize].push((v.id, i));
            }
        }
        let entry = Entry {
            input: v,
            standing,
            placed,
            starting: Vec::new(),
        };
        if !seen_where_started {
            for &(vm, h) in &entry.placed {
                self.placer.occupy(h, &entry.held(vm, self.rule.as_ref()));
            }
        }
        if entry.unsettled() {
            self.unsettled += 1;
        }
        if entry.input.rules.is_some() {
            self.constrained += 1;
        }
        self.index(&entry, true);
        let id = entry.input.id;
        let boxed = match old {
            Some(mut b) => {
                *b = entry;
                b
            }
            None => Box::new(entry),
        };
        self.vjobs.insert(id, boxed);
    }

    /// Takes a vjob off the board.
    pub fn remove(&mut self, id: u64) {
        if let Some(e) = self.vjobs.remove(&id) {
            self.forget(&e);
        }
    }

    /// Undoes what an entry taken off the board added to the counts, the indexes and the
    /// placer.
    fn forget(&mut self, e: &Entry) {
        let id = e.input.id;
        if e.unsettled() {
            self.unsettled -= 1;
        }
        if e.input.rules.is_some() {
            self.constrained -= 1;
        }
        self.index(e, false);
        for &(vm, h) in &e.placed {
            self.placer.vacate(h, &e.held(vm, self.rule.as_ref()));
        }
        for (vm, &h) in e.starting.iter().enumerate() {
            self.placer.vacate(h, e.input.demand.of(vm));
        }
        for at in e.input.vms.on_nodes() {
            if let VmAt::Running(h) | VmAt::Paused(h) = *at {
                self.on_node[h as usize].retain(|&(j, _)| j != id);
            }
        }
    }

    /// Adds (or takes away) an entry to the indexes the policies read instead of every vjob.
    fn index(&mut self, e: &Entry, add: bool) {
        let id = e.input.id;
        let misplaced = e.standing == Standing::Running && e.placed.len() < e.input.vms.len();
        let sets = [
            (&mut self.not_running, e.standing != Standing::Running),
            (&mut self.admin_suspended, e.input.admin_suspend),
            (&mut self.running_misplaced, misplaced && !e.input.admin_suspend),
        ];
        for (set, member) in sets {
            if member && add {
                set.insert(id);
            } else if member {
                set.remove(&id);
            }
        }
        if let Some(queue) = self.queue_order.as_mut().filter(|_| e.standing != Standing::Running) {
            match add {
                true => queue.insert(order_key_of(e)),
                false => queue.remove(&order_key_of(e)),
            };
        }
        let v = &e.input;
        if matches!(e.standing, Standing::Waiting | Standing::Suspended) && v.eligible && !v.admin_suspend {
            for (k, total) in self.queued_demand.iter_mut().enumerate() {
                match add {
                    true => *total += v.demand.total(k, v.vms.len()),
                    false => *total -= v.demand.total(k, v.vms.len()),
                }
            }
        }
        if e.input.group_limit.is_some() {
            match add {
                true => self.group_limited += 1,
                false => self.group_limited -= 1,
            }
        }
        if let Some(end) = e.running_end() {
            match add {
                true => self.running_ends.insert(end),
                false => self.running_ends.remove(&end),
            };
        }
    }

    /// The vjob's priority and protection, which change with time alone (an expansion factor,
    /// a quantum): updated in place.
    pub fn refresh(&mut self, id: u64, priority: i32, protected: bool) {
        let Some(e) = self.vjobs.get_mut(&id) else { return };
        let queued = self.queue_order.as_mut().filter(|_| e.standing != Standing::Running);
        match queued {
            Some(queue) if e.input.priority != priority => {
                queue.remove(&order_key_of(e));
                e.input.priority = priority;
                queue.insert(order_key_of(e));
            }
            _ => e.input.priority = priority,
        }
        e.input.protected = protected;
    }

    /// Whether some vjob is not wholly running where it is: otherwise a decision has nothing
    /// to do (and the time-dependent priorities need no refreshing).
    pub fn unsettled(&self) -> bool {
        self.unsettled > 0
    }

    fn entry(&self, id: u64) -> Option<&Entry> {
        self.vjobs.get(&id).map(|e| &**e)
    }

    /// Every vjob's entry, by id.
    fn entries(&self) -> impl Iterator<Item = &Entry> {
        self.vjobs.values().map(|e| &**e)
    }

    pub fn vjob(&self, id: u64) -> Option<&VjobInput> {
        self.vjobs.get(&id).map(|e| &e.input)
    }

    /// Decides: the policy's choice on what the board holds, and the planner instance that
    /// carries it out. The board changes as the plan is carried out, with one exception kept
    /// out of sight: the placements of a decision that a direct plan carries out stay taken
    /// until the vjobs are next seen (see [`Entry::starting`]).
    pub fn decide(&mut self, policy: &PolicyChoice, ask: &Ask<'_>) -> Built {
        self.release_starting();
        if self.unsettled == 0 && ask.moves.is_empty() && !ask.always_plan && !self.misplaced() {
            return Built {
                decision: Decision::default(),
                instance: None,
                vm_refs: Vec::new(),
                nodes: Vec::new(),
                plan: None,
            };
        }
        let mark = self.placer.mark();
        let mut decision = self.policy_takes(policy);
        if ask.list_waiting {
            self.list_unreached(&mut decision);
        }
        decision
            .suspend
            .extend(self.admin_suspended.iter().map(|&id| (id, None)));
        let nothing = decision.run.is_empty() && decision.suspend.is_empty() && decision.pause.is_empty();
        let misplaced = self.misplaced();
        if nothing && ask.moves.is_empty() && !misplaced && !ask.always_plan {
            self.placer.rollback(mark);
            return Built {
                decision,
                instance: None,
                vm_refs: Vec::new(),
                nodes: Vec::new(),
                plan: None,
            };
        }
        // Constraints span nodes and vjobs beyond those a decision touches: plan them whole.
        let constrained = !self.datacenter.is_empty() || self.constrained > 0;
        let whole = ask.scope == Scope::Whole || !ask.moves.is_empty() || ask.always_plan || misplaced || constrained;
        let nodes: Vec<NodeIdx> = if whole {
            (0..self.nodes.len() as NodeIdx).collect()
        } else {
            self.touched_nodes(&decision)
        };
        let arrivals = !whole && self.only_arrivals(&decision);
        let keep = arrivals && self.took_what_it_placed(&decision, mark);
        if !keep {
            self.placer.rollback(mark);
        }
        let (instance, vm_refs) = match arrivals {
            true => self.arrivals_instance(ask, &decision, &nodes, keep.then_some(mark)),
            false => self.planner_instance(ask, &decision, &nodes, whole),
        };
        let plan = arrivals
            .then(|| direct_plan(&instance, &vm_refs, &decision, &nodes))
            .flatten();
        match (keep, plan.is_some()) {
            (true, true) => self.hold_starting(&decision),
            (true, false) => self.placer.rollback(mark),
            _ => {}
        }
        Built {
            decision,
            instance: Some(instance),
            vm_refs,
            nodes,
            plan,
        }
    }

    /// The policy, on the candidates and the committed loads; what it takes stays taken in
    /// the placer, for the caller to roll back or keep.
    /// FCFS and EASY never touch what runs: their candidates are the vjobs that do not. The
    /// context switch looks at what runs only when it must (see [`Board::admits_all`]).
    fn policy_takes(&mut self, policy: &PolicyChoice) -> Decision {
        if let PolicyChoice::ContextSwitch(limits) = policy {
            if let Some(decision) = self.admits_all(limits) {
                return decision;
            }
        }
        if let PolicyChoice::ContextSwitch(limits) = policy {
            // Sized up front: a filtered iterator would grow the vector a candidate at a time.
            let mut cands: Vec<Candidate<'_>> = Vec::with_capacity(self.vjobs.len());
            cands.extend(
                (self.vjobs.values().map(|e| &**e))
                    .filter(|e| !e.input.admin_suspend)
                    .map(candidate),
            );
            return policy::context_switch(&cands, &mut self.placer, limits);
        }
        let (vjobs, not_running) = (&self.vjobs, &self.not_running);
        let queue =
            (self.queue_order).get_or_insert_with(|| not_running.iter().map(|id| order_key_of(&vjobs[id])).collect());
        let cands = (queue.iter())
            .map(|key| &*vjobs[&key.4])
            .filter(|e| !e.input.admin_suspend)
            .map(candidate);
        match policy {
            PolicyChoice::Easy { now } => {
                let running = self.running_ends.iter().map(|&(end, cpus, _)| (end, cpus));
                policy::easy(cands, running, &mut self.placer, *now, crate::resources::CPU)
            }
            _ => policy::fcfs(cands, &mut self.placer),
        }
    }

    /// Lists the candidates EASY did not reach ([`Decision::unreached_from`]) as it lists those
    /// it reached and could not start: each eligible one waits behind the reservation.
    fn list_unreached(&self, decision: &mut Decision) {
        let Some(from) = decision.unreached_from.take() else {
            return;
        };
        let queue = self.queue_order.as_ref().expect("EASY reads the queue in order");
        for key in queue.range(order_key_of(&self.vjobs[&from])..) {
            let e = &self.vjobs[&key.4];
            if e.input.eligible && !e.input.admin_suspend {
                decision.waiting.push((key.4, policy::EASY_BACKFILL.into()));
                decision.short_of_room.push(key.4);
            }
        }
    }

    /// Whether what the placer took since `mark` is, in order, each VM of each vjob the
    /// decision placed, on its node with its demand: then keeping it taken is keeping the
    /// decision's placements and nothing else.
    fn took_what_it_placed(&self, decision: &Decision, mark: Mark) -> bool {
        let mut steps = self.placer.steps_since(mark);
        let placed = decision.placed.iter().all(|(id, ns)| {
            self.entry(*id).is_some_and(|e| {
                (ns.iter().enumerate()).all(|(vm, &n)| {
                    steps
                        .next()
                        .is_some_and(|(at, took, d)| took && at == n && d == e.input.demand.of(vm))
                })
            })
        });
        placed && steps.next().is_none()
    }

    /// Keeps the placements of the vjobs a decision starts taken, as their entries say.
    fn hold_starting(&mut self, decision: &Decision) {
        self.placer.commit();
        for (id, ns) in &decision.placed {
            if let Some(e) = self.vjobs.get_mut(id) {
                e.starting = ns.clone();
                self.starting.push(*id);
            }
        }
    }

    /// Releases the placements still held for vjobs not seen where they were started.
    fn release_starting(&mut self) {
        for id in std::mem::take(&mut self.starting) {
            let Some(e) = self.vjobs.get_mut(&id) else { continue };
            for (vm, h) in std::mem::take(&mut e.starting).into_iter().enumerate() {
                self.placer.vacate(h, e.input.demand.of(vm));
            }
        }
    }

    /// The context switch's decision when it starts every vjob that does not run into room
    /// that is free, in order, and changes nothing else: then the vjobs that run play no part
    /// (they are passed over, and their VMs are in the placer's loads), so the policy is run on
    /// the others alone. `None` when one of them would wait, preempt, move VMs or boot nodes,
    /// or when running vjobs count against limits or have VMs to place again: the caller runs
    /// the policy on every vjob.
    fn admits_all(&mut self, limits: &Limits) -> Option<Decision> {
        let limited = limits.queues.values().any(|(q, u)| q.is_some() || u.is_some());
        if limited || self.group_limited > 0 || !self.running_misplaced.is_empty() {
            return None;
        }
        // More than the free room together: some would wait, known without placing any.
        if !self.placer.room_for(&[&self.queued_demand]) {
            return None;
        }
        let mut cands: Vec<Candidate<'_>> = Vec::with_capacity(self.not_running.len());
        cands.extend(
            not_running_entries(&self.vjobs, &self.not_running)
                .filter(|e| !e.input.admin_suspend)
                .map(candidate),
        );
        let mark = self.placer.mark();
        let decision = policy::context_switch(&cands, &mut self.placer, limits);
        let eligible = cands.iter().filter(|c| c.eligible).count();
        let all_started = decision.run.len() == eligible && decision.placed.len() == eligible;
        let nothing_else = decision.waiting.is_empty()
            && decision.suspend.is_empty()
            && decision.pause.is_empty()
            && decision.migrate.is_empty()
            && decision.boot.is_empty()
            && decision.short_of_room.is_empty();
        if !(all_started && nothing_else) {
            self.placer.rollback(mark);
            return None;
        }
        Some(decision)
    }

    /// Whether a decision only starts or resumes vjobs whose VMs are all away from nodes (so
    /// the policy placed each of them), suspending and pausing none.
    fn only_arrivals(&self, decision: &Decision) -> bool {
        decision.suspend.is_empty()
            && decision.pause.is_empty()
            && decision.migrate.is_empty()
            && decision.run.len() == decision.placed.len()
            && decision.placed.iter().all(|(id, ns)| {
                self.vjobs.get(id).is_some_and(|e| {
                    e.placed.is_empty() && e.standing != Standing::Paused && ns.len() == e.input.vms.len()
                })
            })
    }

    /// Whether some running VM sits on a node that must be left.
    fn misplaced(&self) -> bool {
        if !self.any_offline {
            return false;
        }
        self.nodes
            .iter()
            .enumerate()
            .any(|(n, node)| node.offline && self.on_node[n].iter().any(|&(id, i)| self.is_running(id, i)))
    }

    fn is_running(&self, id: u64, i: usize) -> bool {
        self.vjobs
            .get(&id)
            .is_some_and(|e| matches!(e.input.vms.get(i), VmAt::Running(_)))
    }

    /// The nodes a decision touches, in order: where the policy placed VMs, and where the VMs
    /// of the vjobs it starts, suspends, pauses or unpauses are.
    fn touched_nodes(&self, decision: &Decision) -> Vec<NodeIdx> {
        let placed: usize = decision.placed.iter().map(|(_, ns)| ns.len()).sum();
        let mut nodes: Vec<NodeIdx> = Vec::with_capacity(placed);
        nodes.extend(decision.placed.iter().flat_map(|(_, ns)| ns.iter().copied()));
        nodes.extend(decision.migrate.iter().flat_map(|m| [m.from, m.to]));
        let moved = decision
            .run
            .iter()
            .chain(decision.suspend.iter().map(|(id, _)| id))
            .chain(decision.pause.iter().map(|(id, _)| id));
        for id in moved {
            if let Some(e) = self.vjobs.get(id) {
                nodes.extend(e.input.vms.on_nodes().iter().filter_map(|at| match *at {
                    VmAt::Running(h) | VmAt::Paused(h) => Some(h),
                    _ => None,
                }));
            }
        }
        nodes.sort_unstable();
        nodes.dedup();
        nodes
    }

    /// The planner instance for a decision over `nodes` (in order), with the vjob and VM index
    /// of each of its VMs. The VMs outside those nodes are left out: they neither move nor
    /// weigh on the nodes in.
    fn planner_instance(
        &self,
        ask: &Ask<'_>,
        decision: &Decision,
        nodes: &[NodeIdx],
        whole: bool,
    ) -> (Instance, Vec<Option<(u64, usize)>>) {
        let local = Local(nodes);
        let mut model = self.nodes_model(nodes);
        let mut constraints = Vec::new();
        let mut vm_refs = Vec::new();
        for &n in nodes {
            for l in &self.load[n as usize] {
                let v = model.add_vm(l.name.clone(), VmState::Running, local.of(n), &l.demand);
                constraints.push(Constraint::Root { vm: v });
                vm_refs.push(None);
            }
        }
        let mut build = DecisionInstance::new(model, constraints, decision, self.rule.as_ref());
        for e in self.in_decision_order(decision, nodes, whole) {
            for i in 0..e.input.vms.len() {
                let (state, host, paused) = match e.input.vms.get(i) {
                    VmAt::Running(h) if local.of(h) != NO_NODE => (VmState::Running, local.of(h), false),
                    VmAt::Paused(h) if local.of(h) != NO_NODE => (VmState::Running, local.of(h), true),
                    VmAt::Sleeping => (VmState::Sleeping, NO_NODE, false),
                    VmAt::NotStarted => (VmState::Ready, NO_NODE, false),
                    _ => continue,
                };
                let id = e.input.id;
                if build
                    .add_vm(id, i, state, host, e.input.demand.of(i), paused, ask.vm_name)
                    .is_some()
                {
                    vm_refs.push(Some((id, i)));
                }
            }
        }
        self.node_constraints(nodes, &mut build.constraints);
        for (id, i, node) in ask.moves {
            // Moves are few (an administrator's): looked up, not indexed.
            if let Some(v) = vm_refs.iter().position(|r| *r == Some((*id, *i))) {
                build.constraints.push(Constraint::Fence {
                    vms: vec![v as VmIdx],
                    nodes: vec![local.of(*node)],
                });
            }
        }
        self.fence_migrations(decision, &vm_refs, local, &mut build.constraints);
        self.placement_constraints(&vm_refs, local, &mut build.constraints);
        (build.finish(ask.durations), vm_refs)
    }

    /// The instance of a decision that only starts vjobs into free room on `nodes` (in
    /// order): their VMs, and on each node what stays there as one immovable VM (the committed
    /// load, outside load and vjobs' VMs together), so that it costs the nodes and the VMs that
    /// start, not the VMs already on those nodes. Nothing else moves, so nothing else is needed.
    /// `taken`: the placer still holds the decision's placements, its steps since that mark,
    /// which are not what stays.
    fn arrivals_instance(
        &self,
        ask: &Ask<'_>,
        decision: &Decision,
        nodes: &[NodeIdx],
        taken: Option<Mark>,
    ) -> (Instance, Vec<Option<(u64, usize)>>) {
        let starting: usize = (decision.run.iter())
            .filter_map(|&id| self.entry(id))
            .map(|e| e.input.vms.len())
            .sum();
        let mut model = self.nodes_model(nodes);
        // At most one VM for what stays on each node, then the VMs that start.
        model.reserve(0, nodes.len() + starting);
        let mut constraints = Vec::with_capacity(nodes.len() + starting);
        let mut vm_refs = Vec::with_capacity(nodes.len() + starting);
        let r = crate::resources::NAMES.len();
        let mut staying: Vec<u64> = Vec::with_capacity(nodes.len() * r);
        for &n in nodes {
            staying.extend_from_slice(self.placer.load(n));
        }
        if let Some(mark) = taken {
            let local = Local(nodes);
            for (n, _, demand) in self.placer.steps_since(mark) {
                let at = local.of(n) as usize * r;
                for (k, d) in demand.iter().enumerate() {
                    staying[at + k] -= d;
                }
            }
        }
        for (i, held) in staying.chunks(r).enumerate() {
            let n = nodes[i];
            if held.iter().any(|&x| x > 0) {
                let name = self.what_stays[n as usize]
                    .get_or_init(|| format!("{} (what stays)", self.nodes[n as usize].name).into());
                let v = model.add_vm(name.clone(), VmState::Running, i as NodeIdx, held);
                constraints.push(Constraint::Root { vm: v });
                vm_refs.push(None);
            }
        }
        let mut build = DecisionInstance::new(model, constraints, decision, self.rule.as_ref());
        for e in decision.run.iter().filter_map(|id| self.vjobs.get(id)) {
            for i in 0..e.input.vms.len() {
                let state = match e.input.vms.get(i) {
                    VmAt::Sleeping => VmState::Sleeping,
                    _ => VmState::Ready,
                };
                let id = e.input.id;
                if build
                    .add_vm(id, i, state, NO_NODE, e.input.demand.of(i), false, ask.vm_name)
                    .is_some()
                {
                    vm_refs.push(Some((id, i)));
                }
            }
        }
        self.node_constraints(nodes, &mut build.constraints);
        (build.finish(ask.durations), vm_refs)
    }

    /// A model of `nodes` (in order), with no VM yet.
    fn nodes_model(&self, nodes: &[NodeIdx]) -> Model {
        let mut model = Model::cpu_and_memory();
        model.reserve(nodes.len(), 0);
        for &n in nodes {
            let node = &self.nodes[n as usize];
            model.add_node(self.node_names[n as usize].clone(), true, &node.capacity);
        }
        model
    }

    /// What the instance's `nodes` allow: an offline node is to be left, one that takes no
    /// new VMs receives none.
    fn node_constraints(&self, nodes: &[NodeIdx], out: &mut Vec<Constraint>) {
        for (i, &n) in nodes.iter().enumerate() {
            let node = &self.nodes[n as usize];
            if node.offline {
                out.push(Constraint::Offline { node: i as NodeIdx });
            } else if !node.accepts {
                out.push(Constraint::NoArrival {
                    nodes: vec![i as NodeIdx],
                });
            }
        }
    }

    /// The vjobs' placement rules and the datacenter's constraints, on the instance's VMs and
    /// nodes.
    fn placement_constraints(&self, vm_refs: &[Option<(u64, usize)>], local: Local<'_>, out: &mut Vec<Constraint>) {
        if self.datacenter.is_empty() && self.constrained == 0 {
            return;
        }
        let index = instance_index(vm_refs);
        let node = |n: NodeIdx| Some(local.of(n)).filter(|&l| l != NO_NODE);
        for e in self.vjobs.values() {
            let Some(rules) = &e.input.rules else { continue };
            let id = e.input.id;
            let vm = |i: VmIdx| index.get(&(id, i as usize)).copied();
            out.extend(
                rules
                    .constraints
                    .iter()
                    .filter_map(|c| crate::placement::remap(c, &vm, &node)),
            );
        }
        let mut every: Vec<VmIdx> = index.values().copied().collect();
        every.sort_unstable();
        for c in &self.datacenter {
            let all = |_: VmIdx| None;
            match c {
                Constraint::Ban { vms, nodes } if vms == &[ALL_VMS] && !every.is_empty() => out.push(Constraint::Ban {
                    vms: every.clone(),
                    nodes: nodes.iter().filter_map(|&n| node(n)).collect(),
                }),
                Constraint::Fence { vms, nodes } if vms == &[ALL_VMS] && !every.is_empty() => {
                    out.push(Constraint::Fence {
                        vms: every.clone(),
                        nodes: nodes.iter().filter_map(|&n| node(n)).collect(),
                    })
                }
                other => out.extend(crate::placement::remap(other, &all, &node)),
            }
        }
    }

    /// The policy's live migrations, as fences: each moved VM to its new node, and each VM of
    /// the vjobs they make room for to the node the policy placed it on (the planner's own
    /// choice could take the room the moves make elsewhere).
    fn fence_migrations(
        &self,
        decision: &Decision,
        vm_refs: &[Option<(u64, usize)>],
        local: Local<'_>,
        constraints: &mut Vec<Constraint>,
    ) {
        if decision.migrate.is_empty() {
            return;
        }
        let index = instance_index(vm_refs);
        let mut fence = |id: u64, i: usize, node: NodeIdx| {
            if let Some(&v) = index.get(&(id, i)) {
                constraints.push(Constraint::Fence {
                    vms: vec![v],
                    nodes: vec![local.of(node)],
                });
            }
        };
        let mut taken: HashSet<(u64, usize)> = HashSet::new();
        for m in &decision.migrate {
            let Some(e) = self.vjobs.get(&m.vjob) else { continue };
            let vm = (0..e.input.vms.len())
                .find(|&i| e.input.vms.get(i) == VmAt::Running(m.from) && !taken.contains(&(m.vjob, i)));
            if let Some(i) = vm {
                taken.insert((m.vjob, i));
                fence(m.vjob, i, m.to);
            }
        }
        let made_room_for: HashSet<u64> = decision.migrate.iter().map(|m| m.for_vjob).collect();
        for (id, ns) in decision.placed.iter().filter(|(id, _)| made_room_for.contains(id)) {
            for (i, &n) in ns.iter().enumerate() {
                fence(*id, i, n);
            }
        }
    }

    /// The vjobs of a planner instance: those to run first, in policy order, so that the
    /// planner places them as the policy did; then, by id, every other one (`whole`) or those
    /// with VMs on the `nodes` or suspended or paused by the decision.
    fn in_decision_order(&self, decision: &Decision, nodes: &[NodeIdx], whole: bool) -> Vec<&Entry> {
        let to_run: HashSet<u64> = decision.run.iter().copied().collect();
        let mut order: Vec<&Entry> = decision.run.iter().filter_map(|&id| self.entry(id)).collect();
        if whole {
            order.extend(self.entries().filter(|e| !to_run.contains(&e.input.id)));
            return order;
        }
        let mut others: Vec<u64> = nodes
            .iter()
            .flat_map(|&n| self.on_node[n as usize].iter().map(|&(id, _)| id))
            .chain(decision.suspend.iter().map(|(id, _)| *id))
            .chain(decision.pause.iter().map(|(id, _)| *id))
            .filter(|id| !to_run.contains(id))
            .collect();
        others.sort_unstable();
        others.dedup();
        order.extend(others.iter().filter_map(|&id| self.entry(id)));
        order
    }
}

/// The plan of a decision that only starts or resumes VMs into free room: each VM booted (or
/// resumed) at once where the policy placed it. `None` if the instance does not bear it out
/// (then the planner decides).
fn direct_plan(
    inst: &Instance,
    vm_refs: &[Option<(u64, usize)>],
    decision: &Decision,
    nodes: &[NodeIdx],
) -> Option<Plan> {
    // Looked up for every VM: a binary search of a few ids costs less than hashing one.
    let mut placed: Vec<(u64, &[NodeIdx])> = decision.placed.iter().map(|(id, ns)| (*id, ns.as_slice())).collect();
    placed.sort_unstable_by_key(|&(id, _)| id);
    let nodes_of = |id: u64| {
        placed
            .binary_search_by_key(&id, |&(id, _)| id)
            .ok()
            .map(|i| placed[i].1)
    };
    let local = |n: NodeIdx| Some(Local(nodes).of(n)).filter(|&l| l != NO_NODE);
    let m = &inst.model;
    let mut target = m.clone();
    let mut actions = Vec::new();
    for (v, r) in vm_refs.iter().enumerate() {
        let v = v as VmIdx;
        let Some(ns) = r.and_then(|(id, i)| nodes_of(id).map(|ns| ns[i])) else {
            continue;
        };
        let on = local(ns)?;
        let (kind, cost) = match m.state(v) {
            VmState::Ready => (ActionKind::BootVm { vm: v, on }, inst.costs.boot.get(v as usize)),
            VmState::Sleeping => (
                ActionKind::ResumeVm {
                    vm: v,
                    from: m.host(v),
                    to: on,
                },
                inst.costs.resume.get(v as usize),
            ),
            _ => return None,
        };
        target.set_vm(v, VmState::Running, on);
        actions.push(Action {
            kind,
            start: 0,
            end: cost.copied().unwrap_or(1),
            deps: Vec::new(),
        });
    }
    let load = target.load();
    let r = target.nres();
    let fits = (0..target.nodes()).all(|n| (0..r).all(|k| load[n * r + k] <= target.capacity(n as NodeIdx)[k]));
    fits.then_some(Plan { target, actions })
}

/// A planner instance's nodes, the cluster's nodes it spans in order: a node's index in the
/// instance is found in the time of a binary search, with no table the size of the cluster.
#[derive(Clone, Copy)]
struct Local<'a>(&'a [NodeIdx]);

impl Local<'_> {
    /// Node `n`'s index in the instance, or `NO_NODE` when the instance leaves it out.
    fn of(&self, n: NodeIdx) -> NodeIdx {
        self.0.binary_search(&n).map_or(NO_NODE, |i| i as NodeIdx)
    }
}

/// Where a vjob stands, and the nodes of its VMs that stay (a VM on a node going offline must
/// be placed again).
fn standing_and_placed(vms: &VmsAt, nodes: &[NodeInput]) -> (Standing, Vec<(usize, NodeIdx)>) {
    let (mut running, mut paused, mut sleeping) = (false, false, matches!(vms, VmsAt::Away { sleeping: true, .. }));
    let mut placed = Vec::with_capacity(vms.on_nodes().len());
    for (i, at) in vms.on_nodes().iter().enumerate() {
        match *at {
            VmAt::Running(h) => {
                running = true;
                if !nodes[h as usize].offline {
                    placed.push((i, h));
                }
            }
            VmAt::Paused(h) => {
                paused = true;
                placed.push((i, h));
            }
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
    (standing, placed)
}

/// Whether `vms` are each running on the node `hosts` names for it, none of them offline (then
/// each stays where it runs and holds what it needs there).
fn running_on(vms: &VmsAt, hosts: &[NodeIdx], nodes: &[NodeInput]) -> bool {
    let on = vms.on_nodes();
    on.len() == hosts.len()
        && (on.iter().zip(hosts)).all(|(at, &h)| *at == VmAt::Running(h) && !nodes[h as usize].offline)
}

/// The entries of the vjobs that do not run (`not_running`, a board's index), by id. When
/// they are many (a long queue), one pass over every entry costs less than a search for each.
/// Free of the board, so that its placer can be borrowed beside.
fn not_running_entries<'b>(
    vjobs: &'b BTreeMap<u64, Box<Entry>>,
    not_running: &'b BTreeSet<u64>,
) -> Box<dyn Iterator<Item = &'b Entry> + 'b> {
    if not_running.len() * 4 >= vjobs.len() {
        Box::new(vjobs.values().map(|e| &**e).filter(|e| e.standing != Standing::Running))
    } else {
        Box::new(not_running.iter().map(|id| &*vjobs[id]))
    }
}

/// Where a vjob's entry stands in the policies' order.
fn order_key_of(e: &Entry) -> OrderKey {
    policy::order_key(&candidate(e))
}

/// A vjob as the policy sees it, borrowed from its entry.
fn candidate(e: &Entry) -> Candidate<'_> {
    let v = &e.input;
    Candidate {
        id: v.id,
        queue: &v.queue,
        queue_priority: v.queue_priority,
        priority: v.priority,
        submit_ms: v.submit_ms,
        user: &v.user,
        standing: e.standing,
        eligible: v.eligible,
        protected: v.protected,
        demand: &v.demand,
        vms: v.vms.len(),
        placed: &e.placed,
        requested_ms: v.requested_ms,
        expected_end_ms: v.expected_end_ms,
        rules: v.rules.as_deref(),
        group_limit: v.group_limit,
        rank: v.rank,
    }
}

/// The planner instance that carries a [`Decision`] out, built VM by VM: the caller says where
/// each VM of a candidate stands, this says how the planner must see it (what it holds over the
/// plan, and the constraints that carry the decision out).
struct DecisionInstance<'a> {
    model: Model,
    constraints: Vec<Constraint>,
    place_first: Vec<VmIdx>,
    /// The vjobs the decision runs, suspends and pauses, each sorted: looked up for every VM
    /// added, where a search of a few ids costs less than hashing one.
    run: Vec<u64>,
    sleep: Vec<u64>,
    pause: Vec<u64>,
    rule: Option<&'a PauseRule>,
}

/// `ids` sorted, for binary searches.
fn sorted_ids(ids: impl Iterator<Item = u64>) -> Vec<u64> {
    let mut v: Vec<u64> = ids.collect();
    v.sort_unstable();
    v
}

impl<'a> DecisionInstance<'a> {
    /// Starts from `model` and `constraints` (what is not a candidate's: load, nodes).
    fn new(model: Model, constraints: Vec<Constraint>, decision: &Decision, rule: Option<&'a PauseRule>) -> Self {
        DecisionInstance {
            model,
            constraints,
            place_first: Vec::new(),
            run: sorted_ids(decision.run.iter().copied()),
            sleep: sorted_ids(decision.suspend.iter().map(|(id, _)| *id)),
            pause: sorted_ids(decision.pause.iter().map(|(id, _)| *id)),
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
        name: &dyn Fn(u64, usize) -> std::sync::Arc<str>,
    ) -> Option<VmIdx> {
        let to_run = self.run.binary_search(&id).is_ok();
        if state != VmState::Running && !to_run {
            return None;
        }
        let to_sleep = self.sleep.binary_search(&id).is_ok();
        // Paused in memory (or about to be): it stays where it is, holding what its rule keeps,
        // unless it is unpaused now.
        let in_memory = paused || self.pause.binary_search(&id).is_ok();
        let held = match (in_memory && !to_run, self.rule) {
            (true, Some(r)) => std::borrow::Cow::Owned(r.held(demand)),
            _ => std::borrow::Cow::Borrowed(demand),
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
            demand: cpu_memory(4, 1 << 30).into(),
            vms,
            requested_ms: None,
            expected_end_ms: None,
            rules: None,
            group_limit: None,
            rank: 0,
        }
    }

    fn decide(nodes: &[NodeInput], load: &[LoadInput], vjobs: &[VjobInput], moves: &[(u64, usize, NodeIdx)]) -> Built {
        decide_in(nodes, load, vjobs, moves, Scope::Touched)
    }

    fn decide_in(
        nodes: &[NodeInput],
        load: &[LoadInput],
        vjobs: &[VjobInput],
        moves: &[(u64, usize, NodeIdx)],
        scope: Scope,
    ) -> Built {
        build(DecisionInput {
            nodes: nodes.to_vec(),
            load: load.to_vec(),
            vjobs: vjobs.to_vec(),
            policy: &PolicyChoice::ContextSwitch(Box::default()),
            ask: Ask {
                moves,
                vm_name: &|id, i| format!("v{id}-{i}").into(),
                durations: &DurationModel::default(),
                always_plan: false,
                scope,
                list_waiting: true,
            },
            datacenter: &[],
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

    /// A vjob with a placement script (`VM[1..n] : t;` then `body`) over nodes `n0..`.
    fn scripted(id: u64, queue_priority: i32, vms: Vec<VmAt>, body: &str, nodes: usize) -> VjobInput {
        let mut lib = vjob_btrpsl::Library::new(Vec::new(), Default::default());
        let text = format!("namespace app{id};\nVM[1..{}] : t;\n{body}", vms.len());
        let script = lib.load_text("app.btrp", &text).unwrap();
        let names: Vec<String> = (0..nodes).map(|i| format!("n{i}")).collect();
        let rules = crate::placement::VjobRules::from_script(&script, &names).unwrap();
        VjobInput {
            demand: cpu_memory(1, 1 << 30).into(),
            rules: Some(std::sync::Arc::new(rules)),
            ..vjob(id, queue_priority, vms)
        }
    }

    fn hosts(b: &Built, id: u64) -> Vec<NodeIdx> {
        let plan = crate::plan::solve(b.instance.as_ref().unwrap()).unwrap();
        let inst = b.instance.as_ref().unwrap();
        assert!(
            crate::check::check(inst, &plan).is_empty(),
            "{:?}",
            crate::check::check(inst, &plan)
        );
        b.vm_refs
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_some_and(|(j, _)| j == id))
            .map(|(v, _)| plan.target.host(v as VmIdx))
            .collect()
    }

    #[test]
    fn a_vjobs_spread_and_ban_hold_in_the_policys_placement_and_in_the_plan() {
        // Four 4-cpu nodes; three 1-cpu VMs would all fit on one node, but must be spread and
        // kept off n0.
        let ns = nodes(4);
        let v = scripted(1, 0, vec![VmAt::NotStarted; 3], "spread($me);\nban($me, @n0);", 4);
        let b = decide(&ns, &[], &[v], &[]);
        let mut placed = b.decision.placed[0].1.clone();
        placed.sort_unstable();
        assert_eq!(placed, vec![1, 2, 3], "the policy placed them as the script asks");
        let mut h = hosts(&b, 1);
        h.sort_unstable();
        assert_eq!(h, vec![1, 2, 3], "and so did the plan");
    }

    #[test]
    fn a_constrained_vjob_waits_when_its_constraints_cannot_hold_and_preempts_only_when_they_then_do() {
        let ns = nodes(2);
        // Three VMs spread over two nodes: never, whatever runs.
        let v = scripted(2, 10, vec![VmAt::NotStarted; 3], "spread($me);", 2);
        let low = VjobInput {
            demand: cpu_memory(4, 1 << 30).into(),
            ..vjob(1, 0, vec![VmAt::Running(0)])
        };
        let b = decide(&ns, &[], &[low.clone(), v], &[]);
        assert!(b.decision.suspend.is_empty(), "nobody is preempted for nothing");
        let why = &b.decision.waiting.iter().find(|(id, _)| *id == 2).unwrap().1;
        assert_eq!(
            why,
            "waiting: spread($me); (app.btrp:3) needs 3 nodes with room, 1 has it"
        );
        // Two VMs fenced to n0, where the low vjob runs: preempting it makes the fence hold.
        let v = scripted(3, 10, vec![VmAt::NotStarted; 2], "fence($me, @n0);", 2);
        let b = decide(&ns, &[], &[low, v], &[]);
        assert_eq!(b.decision.suspend, vec![(1, Some(3))]);
        assert_eq!(hosts(&b, 3), vec![0, 0]);
    }

    #[test]
    fn the_datacenters_ban_of_every_vm_keeps_a_node_empty_in_the_plan() {
        let ns = nodes(2);
        let mut board = Board::new(ns, None);
        board.set_datacenter(vec![Constraint::Ban {
            vms: vec![ALL_VMS],
            nodes: vec![0],
        }]);
        board.upsert(VjobInput {
            demand: cpu_memory(1, 1 << 30).into(),
            ..vjob(1, 0, vec![VmAt::NotStarted; 2])
        });
        let b = board.decide(
            &PolicyChoice::ContextSwitch(Box::default()),
            &Ask {
                moves: &[],
                vm_name: &|id, i| format!("v{id}-{i}").into(),
                durations: &DurationModel::default(),
                always_plan: false,
                scope: Scope::Touched,
                list_waiting: true,
            },
        );
        assert!(b
            .instance
            .as_ref()
            .unwrap()
            .constraints
            .iter()
            .any(|c| matches!(c, Constraint::Ban { nodes, .. } if nodes == &[0])));
        assert_eq!(hosts(&b, 1), vec![1, 1]);
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
        let b = decide_in(&ns, &load, &vjobs, &[], Scope::Whole);
        assert_eq!(b.decision.run, vec![1]);
        assert_eq!(
            b.decision.placed,
            vec![(1, vec![1])],
            "the policy placed it beside the load"
        );
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

    #[test]
    fn a_board_kept_across_decisions_decides_as_a_fresh_one() {
        let ns = nodes(3);
        let mut vjobs = vec![
            vjob(1, 0, vec![VmAt::Running(0)]),
            vjob(2, 0, vec![VmAt::Running(1)]),
            vjob(3, 10, vec![VmAt::NotStarted, VmAt::NotStarted]),
        ];
        let policy = PolicyChoice::ContextSwitch(Box::default());
        let durations = DurationModel::default();
        let ask = touched(&durations);
        let mut board = Board::new(ns.clone(), None);
        for v in &vjobs {
            board.upsert(v.clone());
        }
        // vjob 3 needs two nodes; only node 2 is free: vjob 1 (submitted first) stays, 2 goes.
        let kept = board.decide(&policy, &ask);
        assert_eq!(kept, decide(&ns, &[], &vjobs, &[]));
        assert_eq!(kept.decision.suspend, vec![(2, Some(3))]);
        // What the plan did, told to the board: vjob 2 sleeps, 3 runs.
        vjobs[1].vms = VmsAt::Away {
            count: 1,
            sleeping: true,
        };
        vjobs[2].vms = VmsAt::Each(vec![VmAt::Running(1), VmAt::Running(2)]);
        board.upsert(vjobs[1].clone());
        board.upsert(vjobs[2].clone());
        assert_eq!(board.decide(&policy, &ask), decide(&ns, &[], &vjobs, &[]));
        // vjob 1 ends: vjob 2 resumes on its node.
        board.remove(1);
        vjobs.remove(0);
        let again = board.decide(&policy, &ask);
        assert_eq!(again, decide(&ns, &[], &vjobs, &[]));
        assert_eq!(again.decision.run, vec![2]);
        assert_eq!(again.nodes, vec![0], "only the node it resumes on");
    }

    /// A random board for [`the_policies_on_a_kept_board_decide_as_on_every_candidate`]: per
    /// vjob (VMs, cpus per VM, standing, priority, estimate, flags).
    /// With `offline`, node 0 is being left (its VMs are to be placed again).
    fn random_board(nodes_n: usize, specs: &[(u8, u8, u8, u8, u8, u8)], offline: bool) -> Board {
        let mut ns = nodes(nodes_n);
        if offline {
            (ns[0].offline, ns[0].accepts) = (true, false);
        }
        let mut board = Board::new(ns, None);
        let mut free = vec![4u64; nodes_n];
        for (id, &(vms, cpus, standing, priority, estimate, flags)) in specs.iter().enumerate() {
            let (vms, cpus) = (1 + vms as usize % 3, 1 + cpus as u64 % 4);
            let mut v = mixed(id as u64 + 1, (priority % 2) as i32, vec![], &vec![cpus; vms]);
            v.priority = (priority / 2 % 4) as i32;
            v.requested_ms = Some(100 * (1 + estimate as u64 % 20));
            v.eligible = flags % 13 != 0;
            v.admin_suspend = flags % 17 == 1;
            v.group_limit = (flags % 5 == 2).then_some((1, 1));
            v.protected = flags % 3 == 0;
            v.vms = match standing % 3 {
                // Running where its VMs fit, one per node from the first with room.
                0 => {
                    let hosts: Vec<VmAt> = (0..vms)
                        .filter_map(|_| {
                            let n = free.iter().position(|&f| f >= cpus)?;
                            free[n] -= cpus;
                            Some(VmAt::Running(n as NodeIdx))
                        })
                        .collect();
                    v.expected_end_ms = Some(50 * (1 + estimate as u64 % 30));
                    VmsAt::Each(hosts)
                }
                1 => VmsAt::Away {
                    count: vms,
                    sleeping: true,
                },
                _ => VmsAt::Away {
                    count: vms,
                    sleeping: false,
                },
            };
            if v.vms.len() < vms {
                // Not all of a running vjob's VMs found room: it waits instead.
                v.vms = VmsAt::Away {
                    count: vms,
                    sleeping: false,
                };
                v.expected_end_ms = None;
            }
            board.upsert(v);
        }
        board
    }

    proptest::proptest! {
        /// The board hands FCFS and EASY the vjobs that do not run (and EASY what runs as a
        /// sorted index of ends), and the context switch only those when they all start into
        /// free room: each decides as it does on every candidate.
        #[test]
        fn the_policies_on_a_kept_board_decide_as_on_every_candidate(
            nodes_n in 2usize..6,
            specs in proptest::collection::vec(proptest::prelude::any::<(u8, u8, u8, u8, u8, u8)>(), 1..10),
            defragment in proptest::prelude::any::<bool>(),
            offline in proptest::prelude::any::<bool>(),
        ) {
            let mut limits = Limits::default();
            if defragment {
                limits.defragment = Some(crate::policy::Defragment { now_ms: 0, durations: DurationModel::default() });
            }
            let policies = [
                PolicyChoice::Fcfs,
                PolicyChoice::Easy { now: 0 },
                PolicyChoice::ContextSwitch(Box::new(limits)),
            ];
            for policy in &policies {
                let mut board = random_board(nodes_n, &specs, offline);
                let every = {
                    let cands: Vec<Candidate<'_>> =
                        board.vjobs.values().map(|e| &**e).filter(|e| !e.input.admin_suspend).map(candidate).collect();
                    let mut ends: Vec<(u64, u64)> = (cands.iter())
                        .filter(|c| c.standing == Standing::Running)
                        .map(|c| (c.expected_end_ms.unwrap_or(u64::MAX), c.demand.total(crate::resources::CPU, c.vms)))
                        .collect();
                    ends.sort_unstable();
                    let placer = &mut board.placer;
                    let mark = placer.mark();
                    let every = match policy {
                        PolicyChoice::Fcfs => policy::fcfs(policy::in_order(&cands), placer),
                        PolicyChoice::Easy { now } => policy::easy(policy::in_order(&cands), ends, placer, *now, crate::resources::CPU),
                        PolicyChoice::ContextSwitch(limits) => policy::context_switch(&cands, placer, limits),
                    };
                    placer.rollback(mark);
                    every
                };
                let mark = board.placer.mark();
                let kept = board.policy_takes(policy);
                board.placer.rollback(mark);
                proptest::prop_assert_eq!(kept, every, "{:?}", policy);
            }
        }
    }

    #[test]
    fn easy_on_a_kept_board_reserves_by_what_runs_as_last_told() {
        // Two 4-cpu nodes; vjobs 1 and 2 run with 2 cpus each, expected to end at t=100 and
        // t=1000. The head (vjob 3) needs both nodes whole; vjob 4 (2 cpus, 1500 ms) may
        // backfill only if it ends before the head's reservation.
        let ns = nodes(2);
        let mut vjobs = vec![
            mixed(1, 0, vec![VmAt::Running(0)], &[2]),
            mixed(2, 0, vec![VmAt::Running(1)], &[2]),
            vjob(3, 0, vec![VmAt::NotStarted, VmAt::NotStarted]),
            mixed(4, 0, vec![VmAt::NotStarted], &[2]),
        ];
        vjobs[0].expected_end_ms = Some(100);
        vjobs[1].expected_end_ms = Some(1000);
        vjobs[2].requested_ms = Some(1000);
        vjobs[3].requested_ms = Some(1500);
        let policy = PolicyChoice::Easy { now: 0 };
        let durations = DurationModel::default();
        let ask = touched(&durations);
        let fresh = |vjobs: &[VjobInput]| {
            let mut board = Board::new(ns.clone(), None);
            vjobs.iter().for_each(|v| board.upsert(v.clone()));
            board.decide(&policy, &ask)
        };
        let mut board = Board::new(ns.clone(), None);
        vjobs.iter().for_each(|v| board.upsert(v.clone()));
        // Both running vjobs must end for the head: reserved at t=1000, which vjob 4 would delay.
        let first = board.decide(&policy, &ask);
        assert!(first.decision.run.is_empty(), "{:?}", first.decision);
        // Vjob 1 is now expected to end at t=2000 (its record changed): the reservation moves
        // to t=2000 and vjob 4 backfills. A board that kept vjob 1's old end would not.
        vjobs[0].expected_end_ms = Some(2000);
        board.upsert(vjobs[0].clone());
        let second = board.decide(&policy, &ask);
        assert_eq!(second, fresh(&vjobs));
        assert_eq!(second.decision.run, vec![4]);
        // Vjob 1 ends and vjob 2 is suspended by hand: both nodes are free for the head.
        board.remove(1);
        vjobs.remove(0);
        vjobs[0].admin_suspend = true;
        board.upsert(vjobs[0].clone());
        let third = board.decide(&policy, &ask);
        assert_eq!(third, fresh(&vjobs));
        assert_eq!(third.decision.suspend, vec![(2, None)]);
    }

    #[test]
    fn a_decision_that_only_starts_vjobs_into_free_room_is_planned_without_the_planner() {
        let ns = nodes(4);
        let mut sleeping = vjob(2, 0, vec![]);
        sleeping.vms = VmsAt::Away {
            count: 1,
            sleeping: true,
        };
        let vjobs = [
            vjob(1, 0, vec![VmAt::Running(0)]),
            sleeping,
            vjob(3, 0, vec![VmAt::NotStarted, VmAt::NotStarted]),
        ];
        let b = decide(&ns, &[], &vjobs, &[]);
        let plan = b.plan.clone().expect("nothing but arrivals into free room");
        let inst = b.instance.as_ref().unwrap();
        assert!(
            crate::check::check(inst, &plan).is_empty(),
            "{:?}",
            crate::check::check(inst, &plan)
        );
        assert_eq!(plan.count("bootVM"), 2);
        assert_eq!(plan.count("resumeVM"), 1);
        // Each VM where the policy placed it.
        for (v, r) in b.vm_refs.iter().enumerate() {
            let Some((id, i)) = *r else { continue };
            let (_, placed) = b.decision.placed.iter().find(|(j, _)| *j == id).unwrap();
            assert_eq!(b.nodes[plan.target.host(v as VmIdx) as usize], placed[i]);
        }
        // A preemption is the planner's.
        let b = decide(
            &ns[..1],
            &[],
            &[vjob(1, 0, vec![VmAt::Running(0)]), vjob(4, 10, vec![VmAt::NotStarted])],
            &[],
        );
        assert!(b.plan.is_none() && !b.decision.suspend.is_empty());
    }

    #[test]
    fn an_arrival_beside_running_vms_is_planned_on_what_stays_there_not_on_each_vm() {
        // Two 4-cpu nodes, each half taken by a VM of vjob 1; vjob 2's two 2-cpu VMs fit only
        // beside them.
        let ns = nodes(2);
        let running = mixed(1, 0, vec![VmAt::Running(0), VmAt::Running(1)], &[2, 2]);
        let arriving = mixed(2, 0, vec![VmAt::NotStarted, VmAt::NotStarted], &[2, 2]);
        let b = decide(&ns, &[], &[running, arriving], &[]);
        let plan = b.plan.clone().expect("an arrival into free room");
        let inst = b.instance.as_ref().unwrap();
        assert!(
            crate::check::check(inst, &plan).is_empty(),
            "{:?}",
            crate::check::check(inst, &plan)
        );
        assert_eq!(b.vm_refs, vec![None, None, Some((2, 0)), Some((2, 1))]);
        for v in 0..2 {
            assert_eq!(inst.model.demand(v)[crate::resources::CPU], 2, "what stays on node {v}");
            assert!(inst.constraints.contains(&Constraint::Root { vm: v }));
        }
        let hosts: Vec<NodeIdx> = (2..4).map(|v| b.nodes[plan.target.host(v) as usize]).collect();
        assert_eq!(hosts, vec![0, 1]);
    }

    #[test]
    fn running_vms_move_live_out_of_a_waiting_vjobs_way_and_the_plan_migrates_before_it_boots() {
        // Two 4-cpu nodes, each half taken by a 2-cpu VM of the same vjob: 4 cpus free in all,
        // but no node has them. A 4-cpu vjob behind it in order fits once one VM moves.
        let ns = nodes(2);
        let half = VjobInput {
            demand: cpu_memory(2, 1 << 30).into(),
            ..vjob(1, 10, vec![VmAt::Running(0), VmAt::Running(1)])
        };
        let big = vjob(2, 0, vec![VmAt::NotStarted]);
        let policy = PolicyChoice::ContextSwitch(Box::new(Limits {
            defragment: Some(policy::Defragment {
                now_ms: 0,
                durations: DurationModel::default(),
            }),
            ..Default::default()
        }));
        let b = build(DecisionInput {
            nodes: ns,
            load: Vec::new(),
            vjobs: vec![half, big],
            policy: &policy,
            ask: Ask {
                moves: &[],
                vm_name: &|id, i| format!("v{id}-{i}").into(),
                durations: &DurationModel::default(),
                always_plan: false,
                scope: Scope::Touched,
                list_waiting: true,
            },
            datacenter: &[],
        });
        assert_eq!(b.decision.run, vec![2]);
        assert!(b.decision.suspend.is_empty(), "moved, not suspended");
        assert_eq!(b.decision.migrate.len(), 1);
        let m = b.decision.migrate[0];
        assert_eq!((m.vjob, m.for_vjob), (1, 2));
        assert_eq!(
            b.decision.placed,
            vec![(2, vec![m.from])],
            "it goes where room was made"
        );
        assert!(b.plan.is_none(), "moves are the planner's to schedule");
        let inst = b.instance.as_ref().unwrap();
        let plan = crate::plan::solve(inst).expect("a plan");
        assert!(
            crate::check::check(inst, &plan).is_empty(),
            "{:?}",
            crate::check::check(inst, &plan)
        );
        assert_eq!(
            (plan.count("migrateVM"), plan.count("bootVM"), plan.count("suspendVM")),
            (1, 1, 0)
        );
        let migrate = plan
            .actions
            .iter()
            .find(|a| matches!(a.kind, ActionKind::MigrateVm { .. }))
            .unwrap();
        let boot = plan
            .actions
            .iter()
            .find(|a| matches!(a.kind, ActionKind::BootVm { .. }))
            .unwrap();
        assert!(boot.start >= migrate.end, "the vjob boots once the room is made");
    }

    fn vm_name(id: u64, i: usize) -> std::sync::Arc<str> {
        format!("v{id}-{i}").into()
    }

    #[test]
    fn placements_a_direct_plan_starts_are_held_until_seen_then_kept_or_released() {
        use crate::resources::CPU;
        let durations = DurationModel::default();
        let easy = PolicyChoice::Easy { now: 0 };
        let mut board = Board::new(nodes(2), None);
        // Each vjob's one VM fills a node.
        board.upsert(vjob(1, 0, vec![VmAt::NotStarted]));
        let first = board.decide(&easy, &touched(&durations));
        assert!(first.plan.is_some(), "a direct plan");
        let n = first.decision.placed[0].1[0];
        assert_eq!(board.placer.load(n)[CPU], 4, "held from the decision on");
        // Seen running where it was placed: its VM occupies the node once.
        board.upsert(vjob(1, 0, vec![VmAt::Running(n)]));
        assert_eq!((board.placer.load(n)[CPU], board.placer.free(CPU)), (4, 4));
        assert!(board.starting.is_empty());
        // Started, then seen on another node: released where placed, occupied where seen.
        board.upsert(vjob(2, 0, vec![VmAt::NotStarted]));
        let second = board.decide(&easy, &touched(&durations));
        let m = second.decision.placed[0].1[0];
        assert_ne!(m, n);
        board.upsert(vjob(2, 0, vec![VmAt::Running(n)]));
        assert_eq!((board.placer.load(n)[CPU], board.placer.load(m)[CPU]), (8, 0));
        // Started and not seen by the next decision: that one decides on what is seen, the
        // same again, as a fresh board would.
        board.remove(2);
        board.upsert(vjob(3, 0, vec![VmAt::NotStarted]));
        let third = board.decide(&easy, &touched(&durations));
        let again = board.decide(&easy, &touched(&durations));
        assert_eq!(third, again);
        assert_eq!(board.placer.load(m)[CPU], 4, "held once, not twice");
        board.remove(3);
        assert_eq!(board.placer.free(CPU), 4, "leaving the board releases what was held");
    }

    #[test]
    fn easy_stops_reading_a_queue_where_nothing_is_free_and_the_board_lists_the_rest_when_asked() {
        // Two 4-cpu nodes, both taken by vjob 1 until t=100. The head (vjob 2) reserves t=100;
        // nothing is free, so vjobs 3 to 5 cannot backfill and are not read. Vjob 4 is held.
        let ns = nodes(2);
        let mut vjobs = vec![
            mixed(1, 0, vec![VmAt::Running(0), VmAt::Running(1)], &[4, 4]),
            vjob(2, 0, vec![VmAt::NotStarted]),
            vjob(3, 0, vec![VmAt::NotStarted]),
            vjob(4, 0, vec![VmAt::NotStarted]),
            vjob(5, 0, vec![VmAt::NotStarted]),
        ];
        vjobs[0].expected_end_ms = Some(100);
        vjobs[3].eligible = false;
        let durations = DurationModel::default();
        let easy = PolicyChoice::Easy { now: 0 };
        let decide = |list_waiting: bool| {
            let mut board = Board::new(ns.clone(), None);
            vjobs.iter().for_each(|v| board.upsert(v.clone()));
            board
                .decide(
                    &easy,
                    &Ask {
                        list_waiting,
                        ..touched(&durations)
                    },
                )
                .decision
        };
        let head = (2, "waiting for resources (holds the reservation)".into());
        let behind = |id: u64| (id, policy::EASY_BACKFILL.into());

        let unlisted = decide(false);
        assert_eq!(unlisted.waiting, vec![head.clone()]);
        assert_eq!(unlisted.short_of_room, vec![2]);
        assert_eq!(unlisted.unreached_from, Some(3));

        let listed = decide(true);
        assert_eq!(listed.waiting, vec![head, behind(3), behind(5)]);
        assert_eq!(listed.short_of_room, vec![2, 3, 5]);
        assert_eq!(listed.unreached_from, None);
        assert!(listed.run.is_empty() && unlisted.run.is_empty());
    }

    /// What a decision of the touched nodes asks, with nothing moved by hand.
    fn touched(durations: &DurationModel) -> Ask<'_> {
        Ask {
            moves: &[],
            vm_name: &vm_name,
            durations,
            always_plan: false,
            scope: Scope::Touched,
            list_waiting: true,
        }
    }

    /// A vjob whose VMs differ (a placement script's templates), each needing `cpus[i]`.
    fn mixed(id: u64, queue_priority: i32, vms: Vec<VmAt>, cpus: &[u64]) -> VjobInput {
        VjobInput {
            demand: Demands::from_each(cpus.iter().map(|&c| cpu_memory(c, 1 << 30)).collect()),
            ..vjob(id, queue_priority, vms)
        }
    }

    #[test]
    fn vms_of_several_shapes_are_placed_and_freed_each_by_its_own_demand() {
        let ns = nodes(2);
        // 3 + 1 + 1 cpus fit two 4-cpu nodes; three VMs of the first's shape would not.
        let b = decide(&ns, &[], &[mixed(1, 0, vec![VmAt::NotStarted; 3], &[3, 1, 1])], &[]);
        assert_eq!(b.decision.run, vec![1]);
        let h = hosts(&b, 1);
        let on_first: usize = h.iter().filter(|&&n| n == h[0]).count();
        assert!(
            on_first <= 2,
            "the 3-cpu VM shares its node with one 1-cpu VM at most: {h:?}"
        );
        let mut policy_hosts = b.decision.placed[0].1.clone();
        policy_hosts.sort_unstable();
        assert_ne!(policy_hosts, vec![0, 0, 0], "the policy counted each VM's own demand");

        // A running vjob loses the node of its 4-cpu VM: that VM, not its 1-cpu sibling, must
        // be placed again, and the 3 cpus left on the other node cannot take it.
        let mut off = nodes(2);
        off[0].offline = true;
        off[0].accepts = false;
        let b = decide(
            &off,
            &[],
            &[mixed(1, 0, vec![VmAt::Running(0), VmAt::Running(1)], &[4, 1])],
            &[],
        );
        assert_eq!(b.decision.suspend, vec![(1, None)], "{:?}", b.decision);
        let b = decide(
            &off,
            &[],
            &[mixed(1, 0, vec![VmAt::Running(0), VmAt::Running(1)], &[3, 1])],
            &[],
        );
        assert_eq!((b.decision.run.clone(), b.decision.suspend.clone()), (vec![1], vec![]));
        assert_eq!(hosts(&b, 1), vec![1, 1], "its 3-cpu VM joins its sibling");

        // Suspending it gives back what each VM holds: then a 4-cpu VM fits either node.
        let mut board = Board::new(ns.clone(), None);
        board.upsert(mixed(1, 0, vec![VmAt::Running(0), VmAt::Running(1)], &[3, 1]));
        board.upsert(vjob(2, 10, vec![VmAt::NotStarted]));
        let durations = DurationModel::default();
        let ask = touched(&durations);
        let b = board.decide(&PolicyChoice::ContextSwitch(Box::default()), &ask);
        assert_eq!((b.decision.run, b.decision.suspend), (vec![2], vec![(1, Some(2))]));
        board.remove(1);
        board.upsert(vjob(3, 10, vec![VmAt::NotStarted]));
        let b = board.decide(&PolicyChoice::ContextSwitch(Box::default()), &ask);
        assert_eq!(b.decision.run, vec![2, 3], "both nodes are free again");
    }
}
