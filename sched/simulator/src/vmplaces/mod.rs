//! The VMPlaceS scenario (Pastor et al., Euro-Par 2015): VMs whose CPU demand changes at random
//! times, nodes that are *violated* while their VMs ask more than they have, and a scheduler
//! that repairs violations by live migration, solved with vjob's own planner. The measure is
//! the cumulated violation time: how long, summed over nodes, demand went unserved.
//!
//! The world ([`World`]) holds the nodes, the VMs and their loads, the violations and the
//! reconfigurations under way, in virtual time (microseconds); a scheduler ([`Scheduler`]) reacts
//! to time and to violations and starts reconfigurations; the planner bridge ([`World::solve`])
//! turns a set of nodes into a planner instance and its plan into migrations, each plan replayed
//! by the independent checker. Schedulers: [`central`] (observe all, solve all, apply),
//! [`dvms`] (partitions grown along a ring) and the same over [`lbo`]'s Vivaldi overlay.

pub mod central;
pub mod dvms;
pub mod lbo;
pub mod migration;

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use serde::Serialize;
use vjob_core::instance::{ActionCosts, ActionKind, Instance};
use vjob_core::model::{Model, NodeIdx, VmIdx, VmState};
use vjob_core::resources::MEMORY;
use vjob_hypervisor::DurationModel;
use vjob_instances::gen::Rng;

use migration::{Link, PreCopy};

/// Microseconds of virtual time.
pub type Micros = u64;

pub fn micros(s: f64) -> Micros {
    (s * 1e6).round().max(0.0) as Micros
}

pub fn secs(t: Micros) -> f64 {
    t as f64 / 1e6
}

/// Which scheduler repairs the violations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SchedulerKind {
    Central,
    /// DVMS on the ring of the paper.
    Dvms,
    /// DVMS's protocol over LBO's Vivaldi overlay.
    Lbo,
}

impl SchedulerKind {
    pub fn parse(s: &str) -> Result<SchedulerKind, String> {
        match s {
            "central" => Ok(SchedulerKind::Central),
            "dvms" => Ok(SchedulerKind::Dvms),
            "lbo" => Ok(SchedulerKind::Lbo),
            other => Err(format!("--scheduler: unknown scheduler `{other}` (central, dvms, lbo)")),
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            SchedulerKind::Central => "central",
            SchedulerKind::Dvms => "dvms",
            SchedulerKind::Lbo => "lbo",
        }
    }
}

/// How the time a solve takes is charged in virtual time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum SolveCost {
    /// `base + per_vm x VMs of the instance` seconds: the same for every run (the default,
    /// calibrated on this planner; see BENCHMARKS.md).
    Model { base_s: f64, per_vm_s: f64 },
    /// The measured wall-clock time of the solve: realistic, not reproducible.
    Measured,
}

impl Default for SolveCost {
    /// Calibrated on this planner and machine (`vsim` prints the measured planner time): a
    /// whole-cluster solve with a few violated nodes takes 2.3 ms at 1,024 nodes / 10,240 VMs,
    /// 9 ms at 4,096 / 40,960 and 14 ms at 8,192 / 81,920 (0.17-0.22 us a VM); a partition of a
    /// few nodes well under 0.1 ms.
    fn default() -> Self {
        SolveCost::Model {
            base_s: 0.00005,
            per_vm_s: 2e-7,
        }
    }
}

/// The scenario's settings, VMPlaceS's defaults where the issue gives none.
#[derive(Debug, Clone, PartialEq)]
pub struct Scenario {
    pub nodes: usize,
    pub cores: u32,
    pub node_memory: u64,
    pub vms_per_node: usize,
    pub vm_memory: u64,
    /// Mean seconds between two load changes of a VM (Poisson).
    pub load_period_s: f64,
    /// The law of a VM's load, in % of a core: normal, clipped to 0..100, in `load_steps`.
    pub load_mean: f64,
    pub load_std: f64,
    pub load_steps: u32,
    pub duration_s: f64,
    pub seed: u64,
    /// Nodes split into this many sites, in contiguous blocks.
    pub sites: usize,
    pub intra_site: Link,
    pub inter_site: Link,
    pub precopy: PreCopy,
    pub scheduler: SchedulerKind,
    /// Seconds between two rounds of the central scheduler.
    pub central_period_s: f64,
    pub solve_cost: SolveCost,
}

impl Default for Scenario {
    fn default() -> Self {
        Scenario {
            nodes: 128,
            cores: 8,
            node_memory: 32 << 30,
            vms_per_node: 10,
            vm_memory: 1 << 30,
            load_period_s: 300.0,
            load_mean: 60.0,
            load_std: 20.0,
            load_steps: 10,
            duration_s: 1800.0,
            seed: 1,
            sites: 1,
            intra_site: Link {
                bandwidth: 125e6,
                latency: 0.0001,
            },
            inter_site: Link {
                bandwidth: 12.5e6,
                latency: 0.010,
            },
            precopy: PreCopy::default(),
            scheduler: SchedulerKind::Central,
            central_period_s: 30.0,
            solve_cost: SolveCost::default(),
        }
    }
}

/// What a run measured. Every field is a function of the scenario (and its seed) alone, so
/// that two runs print the same JSON; the measured wall times are in [`Run`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Report {
    pub scheduler: &'static str,
    pub nodes: usize,
    pub vms: usize,
    pub duration_s: f64,
    pub cumulated_violation_s: f64,
    /// Violations that began (a node going from served to violated).
    pub violations: u64,
    /// Scheduler events: a central round that found violated nodes; a DVMS event.
    pub events: u64,
    pub solved: u64,
    pub failed: u64,
    /// Time to solve an event, over those solved: from the event (a central round that finds
    /// a violation, a DVMS partition's creation) to the end of its reconfiguration.
    pub mean_solve_s: f64,
    pub p95_solve_s: f64,
    /// Virtual time charged per planner call.
    pub mean_compute_s: f64,
    /// Nodes of each event's instance when it ended (the whole cluster for `central`).
    pub mean_partition_size: f64,
    pub max_partition_size: usize,
    pub migrations: u64,
    pub inter_site_migrations: u64,
    pub messages: u64,
    pub load_changes: u64,
    /// Plans the independent checker found fault with (always 0, or it is a bug).
    pub plans_rejected: u64,
}

/// A run: its report, the measured time, and the violated nodes over time for plots.
pub struct Run {
    pub report: Report,
    pub wall_s: f64,
    /// Wall-clock seconds spent in the planner, over this many calls.
    pub solve_wall_s: f64,
    pub solve_calls: usize,
    /// (time s, violated nodes), at every change.
    pub violated: Vec<(f64, u32)>,
}

/// A node of the world.
#[derive(Debug, Clone, Default)]
pub struct Node {
    /// CPU asked of it (% of a core): its VMs', and those arriving by migration.
    pub load: u32,
    /// The VMs it hosts (a migrating VM stays here until it arrives).
    pub vms: Vec<u32>,
    pub site: u32,
    violated_since: Option<Micros>,
}

/// A VM of the world.
#[derive(Debug, Clone)]
pub struct Vm {
    pub host: u32,
    pub load: u32,
    pub memory: u64,
    /// While it migrates: where to.
    pub moving_to: Option<u32>,
}

/// One migration of a reconfiguration, and which of the others it waits for.
#[derive(Debug, Clone)]
pub struct Move {
    pub vm: u32,
    pub to: u32,
    pub deps: Vec<u32>,
}

/// A reconfiguration under way: its moves, those left, and who started it.
struct Reconfig {
    moves: Vec<Move>,
    waits: Vec<u32>,
    dependents: Vec<Vec<u32>>,
    left: usize,
    owner: u64,
}

/// What happens at an instant.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Event {
    /// A VM's load changes.
    Load { vm: u32 },
    /// Move `mv` of reconfiguration `reconfig` is over.
    Moved { reconfig: u32, mv: u32 },
    /// The scheduler's own (a timer, a message): `token` is its to interpret.
    Scheduler { token: u64 },
}

/// The events to come, in time order (ties in the order they were scheduled).
#[derive(Default)]
pub struct Queue {
    heap: BinaryHeap<Reverse<(Micros, u64, Event)>>,
    seq: u64,
}

impl Queue {
    pub fn at(&mut self, t: Micros, e: Event) {
        self.seq += 1;
        self.heap.push(Reverse((t, self.seq, e)));
    }

    fn pop(&mut self) -> Option<(Micros, Event)> {
        self.heap.pop().map(|Reverse((t, _, e))| (t, e))
    }
}

/// A scheduler of the scenario.
pub trait Scheduler {
    /// At time 0.
    fn start(&mut self, w: &mut World, q: &mut Queue);
    /// One of its own events.
    fn on_event(&mut self, token: u64, w: &mut World, q: &mut Queue);
    /// A node just became violated.
    fn on_violation(&mut self, _node: u32, _w: &mut World, _q: &mut Queue) {}
    /// A reconfiguration it started (`owner`) is over.
    fn on_reconfigured(&mut self, owner: u64, w: &mut World, q: &mut Queue);
}

/// The nodes, the VMs, the violations and the reconfigurations, with the counters a report
/// is made of.
pub struct World {
    pub now: Micros,
    pub scenario: Scenario,
    /// CPU of a node, % of a core.
    pub capacity: u32,
    pub nodes: Vec<Node>,
    pub vms: Vec<Vm>,
    reconfigs: Vec<Option<Reconfig>>,
    /// Nodes that became violated and the scheduler was not told of yet.
    newly_violated: Vec<u32>,
    violated_now: u32,
    violated_series: Vec<(f64, u32)>,
    cumulated_violation: Micros,
    pub counters: Counters,
    solve_charged: Vec<f64>,
    solve_times: Vec<f64>,
    partition_sizes: Vec<usize>,
    solve_wall_s: f64,
    rng: Rng,
}

/// What the schedulers and the world count.
#[derive(Debug, Clone, Default)]
pub struct Counters {
    pub violations: u64,
    pub events: u64,
    pub solved: u64,
    pub failed: u64,
    pub migrations: u64,
    pub inter_site_migrations: u64,
    pub messages: u64,
    pub load_changes: u64,
    pub plans_rejected: u64,
}

/// A plan for some nodes, as the world carries it out.
pub struct Solution {
    pub moves: Vec<Move>,
    /// Virtual seconds the solve costs.
    pub charged_s: f64,
}

impl World {
    /// The scenario's world at time 0: VMs placed round robin, loads drawn from the law.
    pub fn new(scenario: Scenario) -> World {
        let mut rng = Rng::new(scenario.seed);
        let n = scenario.nodes;
        let sites = scenario.sites.max(1);
        let mut nodes: Vec<Node> = (0..n)
            .map(|i| Node {
                site: (i * sites / n.max(1)) as u32,
                ..Node::default()
            })
            .collect();
        let mut vms = Vec::with_capacity(n * scenario.vms_per_node);
        for i in 0..n * scenario.vms_per_node {
            let host = (i % n.max(1)) as u32;
            let load = draw_load(&mut rng, &scenario);
            nodes[host as usize].vms.push(i as u32);
            nodes[host as usize].load += load;
            vms.push(Vm {
                host,
                load,
                memory: scenario.vm_memory,
                moving_to: None,
            });
        }
        let mut w = World {
            now: 0,
            capacity: scenario.cores * 100,
            nodes,
            vms,
            reconfigs: Vec::new(),
            newly_violated: Vec::new(),
            violated_now: 0,
            violated_series: vec![(0.0, 0)],
            cumulated_violation: 0,
            counters: Counters::default(),
            solve_charged: Vec::new(),
            solve_times: Vec::new(),
            partition_sizes: Vec::new(),
            solve_wall_s: 0.0,
            rng,
            scenario,
        };
        for i in 0..w.nodes.len() as u32 {
            w.update_violation(i);
        }
        w
    }

    pub fn is_violated(&self, n: u32) -> bool {
        self.nodes[n as usize].violated_since.is_some()
    }

    pub fn violated(&self) -> impl Iterator<Item = u32> + '_ {
        (0..self.nodes.len() as u32).filter(|&n| self.is_violated(n))
    }

    fn update_violation(&mut self, n: u32) {
        let over = self.nodes[n as usize].load > self.capacity;
        let node = &mut self.nodes[n as usize];
        match (over, node.violated_since) {
            (true, None) => {
                node.violated_since = Some(self.now);
                self.violated_now += 1;
                self.counters.violations += 1;
                self.newly_violated.push(n);
            }
            (false, Some(since)) => {
                node.violated_since = None;
                self.violated_now -= 1;
                self.cumulated_violation += self.now - since;
            }
            _ => return,
        }
        self.violated_series.push((secs(self.now), self.violated_now));
    }

    /// Adds `delta` to node `n`'s load.
    fn add_load(&mut self, n: u32, delta: i64) {
        let l = &mut self.nodes[n as usize].load;
        *l = (*l as i64 + delta) as u32;
        self.update_violation(n);
    }

    /// VM `v` changes its load (and the next change is scheduled).
    fn change_load(&mut self, v: u32, q: &mut Queue) {
        let load = draw_load(&mut self.rng, &self.scenario);
        let vm = &self.vms[v as usize];
        let delta = load as i64 - vm.load as i64;
        let (host, to) = (vm.host, vm.moving_to);
        self.vms[v as usize].load = load;
        self.add_load(host, delta);
        if let Some(to) = to {
            self.add_load(to, delta);
        }
        self.counters.load_changes += 1;
        let gap = self.rng.exponential(self.scenario.load_period_s);
        q.at(self.now + micros(gap), Event::Load { vm: v });
    }

    /// The link between two nodes.
    pub fn link(&self, a: u32, b: u32) -> Link {
        match self.nodes[a as usize].site == self.nodes[b as usize].site {
            true => self.scenario.intra_site,
            false => self.scenario.inter_site,
        }
    }

    /// An event ended: it began at `since` (virtual time), spanned `nodes` nodes, and was
    /// solved or not.
    pub fn event_ended(&mut self, since: Micros, nodes: usize, solved: bool) {
        self.partition_sizes.push(nodes);
        if solved {
            self.counters.solved += 1;
            self.solve_times.push(secs(self.now - since));
        } else {
            self.counters.failed += 1;
        }
    }

    /// Solves the nodes `of` alone with the planner: their VMs at their current loads, every
    /// node's CPU and memory. `None` if the planner finds no viable configuration (or its plan
    /// does not pass the checker). The VMs of the nodes must not be migrating.
    pub fn solve(&mut self, of: &[u32]) -> Option<Solution> {
        let mut m = Model::cpu_and_memory();
        let mut vm_of: Vec<u32> = Vec::new();
        let cap = [self.capacity as u64, self.scenario.node_memory];
        for (i, &n) in of.iter().enumerate() {
            m.add_node(format!("n{n}"), true, &cap);
            for &v in &self.nodes[n as usize].vms {
                let vm = &self.vms[v as usize];
                m.add_vm(
                    format!("v{v}"),
                    VmState::Running,
                    i as NodeIdx,
                    &[vm.load as u64, vm.memory],
                );
                vm_of.push(v);
            }
        }
        let mut inst = Instance::new(m, Vec::new());
        inst.costs = ActionCosts::from_durations(&inst.model, &DurationModel::default(), MEMORY);
        let began = std::time::Instant::now();
        let plan = vjob_core::plan::solve(&inst);
        let wall = began.elapsed().as_secs_f64();
        self.solve_wall_s += wall;
        let charged_s = match self.scenario.solve_cost {
            SolveCost::Model { base_s, per_vm_s } => base_s + per_vm_s * vm_of.len() as f64,
            SolveCost::Measured => wall,
        };
        self.solve_charged.push(charged_s);
        let plan = plan.ok()?;
        if !vjob_core::check::check(&inst, &plan).is_empty() {
            self.counters.plans_rejected += 1;
            debug_assert!(
                false,
                "a plan failed the checker: {:?}",
                vjob_core::check::check(&inst, &plan)
            );
            return None;
        }
        let mut moves = Vec::new();
        let mut index = vec![u32::MAX; plan.actions.len()];
        for (i, a) in plan.actions.iter().enumerate() {
            if let ActionKind::MigrateVm { vm, to, .. } = a.kind {
                index[i] = moves.len() as u32;
                moves.push(Move {
                    vm: vm_of[vm as VmIdx as usize],
                    to: of[to as usize],
                    deps: a.deps.clone(),
                });
            } else {
                // Only migrations repair a violation here: anything else is not carried out.
                return None;
            }
        }
        for mv in &mut moves {
            mv.deps = mv.deps.iter().map(|&d| index[d as usize]).collect();
        }
        Some(Solution { moves, charged_s })
    }

    /// Starts the moves (each once those it depends on are over); `owner` is told when all
    /// are. Returns false, starting nothing, when there is none.
    pub fn reconfigure(&mut self, moves: Vec<Move>, owner: u64, q: &mut Queue) -> bool {
        if moves.is_empty() {
            return false;
        }
        let id = self.reconfigs.len() as u32;
        let mut dependents = vec![Vec::new(); moves.len()];
        let waits: Vec<u32> = moves.iter().map(|m| m.deps.len() as u32).collect();
        for (i, m) in moves.iter().enumerate() {
            for &d in &m.deps {
                dependents[d as usize].push(i as u32);
            }
        }
        let ready: Vec<u32> = (0..moves.len() as u32).filter(|&i| waits[i as usize] == 0).collect();
        self.reconfigs.push(Some(Reconfig {
            left: moves.len(),
            moves,
            waits,
            dependents,
            owner,
        }));
        for i in ready {
            self.begin_move(id, i, q);
        }
        true
    }

    /// Move `i` of reconfiguration `id` begins: the VM asks its CPU of both nodes until it
    /// arrives.
    fn begin_move(&mut self, id: u32, i: u32, q: &mut Queue) {
        let mv = self.reconfigs[id as usize].as_ref().expect("under way").moves[i as usize].clone();
        let vm = &self.vms[mv.vm as usize];
        let (from, load, memory) = (vm.host, vm.load, vm.memory);
        let link = self.link(from, mv.to);
        let took = self.scenario.precopy.duration(memory, load, link);
        self.vms[mv.vm as usize].moving_to = Some(mv.to);
        self.nodes[mv.to as usize].vms.push(mv.vm);
        self.add_load(mv.to, load as i64);
        self.counters.migrations += 1;
        if self.nodes[from as usize].site != self.nodes[mv.to as usize].site {
            self.counters.inter_site_migrations += 1;
        }
        q.at(self.now + micros(took), Event::Moved { reconfig: id, mv: i });
    }

    /// Move `i` of `id` is over; returns the owner when it was the reconfiguration's last.
    fn end_move(&mut self, id: u32, i: u32, q: &mut Queue) -> Option<u64> {
        let r = self.reconfigs[id as usize].as_mut().expect("under way");
        let mv = r.moves[i as usize].clone();
        let mut ready = Vec::new();
        for &d in &r.dependents[i as usize].clone() {
            r.waits[d as usize] -= 1;
            if r.waits[d as usize] == 0 {
                ready.push(d);
            }
        }
        r.left -= 1;
        let finished = (r.left == 0).then_some(r.owner);
        let vm = &self.vms[mv.vm as usize];
        let (from, load) = (vm.host, vm.load);
        self.nodes[from as usize].vms.retain(|&u| u != mv.vm);
        let v = &mut self.vms[mv.vm as usize];
        v.host = mv.to;
        v.moving_to = None;
        self.add_load(from, -(load as i64));
        for d in ready {
            self.begin_move(id, d, q);
        }
        if finished.is_some() {
            self.reconfigs[id as usize] = None;
        }
        finished
    }

    /// Sets VM `v`'s load (tests that need a given situation).
    #[cfg(test)]
    pub(crate) fn set_load(&mut self, v: u32, load: u32) {
        let vm = &self.vms[v as usize];
        let delta = load as i64 - vm.load as i64;
        let host = vm.host;
        self.vms[v as usize].load = load;
        self.add_load(host, delta);
    }

    fn report(&mut self) -> Report {
        for n in 0..self.nodes.len() {
            if let Some(since) = self.nodes[n].violated_since {
                self.cumulated_violation += self.now - since;
                self.nodes[n].violated_since = Some(self.now);
            }
        }
        let mut times = self.solve_times.clone();
        times.sort_by(|a, b| a.total_cmp(b));
        let mean = |v: &[f64]| {
            if v.is_empty() {
                0.0
            } else {
                v.iter().sum::<f64>() / v.len() as f64
            }
        };
        let p95 = times
            .get((times.len() * 95).div_ceil(100).saturating_sub(1))
            .copied()
            .unwrap_or(0.0);
        let sizes: Vec<f64> = self.partition_sizes.iter().map(|&s| s as f64).collect();
        let c = &self.counters;
        Report {
            scheduler: self.scenario.scheduler.name(),
            nodes: self.nodes.len(),
            vms: self.vms.len(),
            duration_s: self.scenario.duration_s,
            cumulated_violation_s: round6(secs(self.cumulated_violation)),
            violations: c.violations,
            events: c.events,
            solved: c.solved,
            failed: c.failed,
            mean_solve_s: round6(mean(&times)),
            p95_solve_s: round6(p95),
            mean_compute_s: round6(mean(&self.solve_charged)),
            mean_partition_size: round6(mean(&sizes)),
            max_partition_size: self.partition_sizes.iter().copied().max().unwrap_or(0),
            migrations: c.migrations,
            inter_site_migrations: c.inter_site_migrations,
            messages: c.messages,
            load_changes: c.load_changes,
            plans_rejected: c.plans_rejected,
        }
    }
}

/// Floats in the report to the microsecond, so that the JSON does not show summation noise.
fn round6(x: f64) -> f64 {
    (x * 1e6).round() / 1e6
}

/// A load from the scenario's law: normal, clipped to 0..100, rounded to its steps.
fn draw_load(rng: &mut Rng, s: &Scenario) -> u32 {
    let x = rng.normal(s.load_mean, s.load_std).clamp(0.0, 100.0);
    let step = 100.0 / f64::from(s.load_steps.max(1));
    ((x / step).round() * step).round() as u32
}

/// Runs the scenario with its scheduler.
pub fn run(scenario: &Scenario) -> Run {
    let began = std::time::Instant::now();
    let mut w = World::new(scenario.clone());
    let mut sched: Box<dyn Scheduler> = match scenario.scheduler {
        SchedulerKind::Central => Box::new(central::Central::default()),
        SchedulerKind::Dvms => Box::new(dvms::Dvms::new(dvms::Ring, scenario.nodes)),
        SchedulerKind::Lbo => {
            // The coordinates from their own generator: the loads stay those of the other
            // schedulers' runs of the same seed.
            let coords = lbo::vivaldi(&w, &mut Rng::new(scenario.seed ^ 0x5eed));
            w.counters.messages += 2 * (lbo::ROUNDS * scenario.nodes) as u64;
            Box::new(dvms::Dvms::new(lbo::Nearest::new(coords), scenario.nodes))
        }
    };
    run_in(w, sched.as_mut(), began)
}

#[cfg(test)]
fn run_with(scenario: &Scenario, sched: &mut dyn Scheduler, began: std::time::Instant) -> Run {
    let w = World::new(scenario.clone());
    run_in(w, sched, began)
}

fn run_in(mut w: World, sched: &mut dyn Scheduler, began: std::time::Instant) -> Run {
    let scenario = w.scenario.clone();
    let mut q = Queue::default();
    for v in 0..w.vms.len() as u32 {
        let gap = w.rng.exponential(scenario.load_period_s);
        q.at(micros(gap), Event::Load { vm: v });
    }
    let end = micros(scenario.duration_s);
    sched.start(&mut w, &mut q);
    tell_violations(&mut w, sched, &mut q);
    while let Some((t, e)) = q.pop() {
        if t > end {
            break;
        }
        w.now = t;
        match e {
            Event::Load { vm } => w.change_load(vm, &mut q),
            Event::Moved { reconfig, mv } => {
                if let Some(owner) = w.end_move(reconfig, mv, &mut q) {
                    sched.on_reconfigured(owner, &mut w, &mut q);
                }
            }
            Event::Scheduler { token } => sched.on_event(token, &mut w, &mut q),
        }
        tell_violations(&mut w, sched, &mut q);
    }
    w.now = end;
    let report = w.report();
    Run {
        report,
        wall_s: began.elapsed().as_secs_f64(),
        solve_wall_s: w.solve_wall_s,
        solve_calls: w.solve_charged.len(),
        violated: std::mem::take(&mut w.violated_series),
    }
}

/// The human summary of a run.
pub fn summary(run: &Run) -> String {
    let r = &run.report;
    format!(
        "vmplaces, {}: {} nodes, {} VMs, {} s simulated\n\
         cumulated violation time  {:.1} s ({} violations)\n\
         events                    {} ({} solved, {} failed)\n\
         time to solve an event    mean {:.2} s, p95 {:.2} s (planner: {:.4} s a call)\n\
         partition size            mean {:.1}, max {}\n\
         migrations                {} ({} between sites)\n\
         messages                  {}\n\
         load changes              {}\n\
         wall time                 {:.1} s ({:.2} s in {} planner calls)\n",
        r.scheduler,
        r.nodes,
        r.vms,
        r.duration_s,
        r.cumulated_violation_s,
        r.violations,
        r.events,
        r.solved,
        r.failed,
        r.mean_solve_s,
        r.p95_solve_s,
        r.mean_compute_s,
        r.mean_partition_size,
        r.max_partition_size,
        r.migrations,
        r.inter_site_migrations,
        r.messages,
        r.load_changes,
        run.wall_s,
        run.solve_wall_s,
        run.solve_calls
    )
}

/// Violated nodes over time, one panel per run, side by side on one time axis.
pub fn svg(runs: &[Run]) -> String {
    let (w, h) = (1000.0, 200.0);
    let t1 = runs.iter().map(|r| r.report.duration_s).fold(1.0, f64::max);
    let top = runs
        .iter()
        .flat_map(|r| r.violated.iter().map(|&(_, n)| n))
        .max()
        .unwrap_or(1)
        .max(1) as f64;
    let mut out = format!(
        "<svg xmlns='http://www.w3.org/2000/svg' width='{w}' height='{}' font-family='sans-serif' font-size='12'>\n\
         <rect width='100%' height='100%' fill='white'/>\n",
        h * runs.len().max(1) as f64
    );
    for (i, run) in runs.iter().enumerate() {
        let y0 = i as f64 * h + 20.0;
        let x = |t: f64| 60.0 + t / t1 * (w - 80.0);
        let y = |n: u32| y0 + (1.0 - n as f64 / top) * 150.0;
        let mut points = String::new();
        let mut last = 0;
        for &(t, n) in &run.violated {
            points.push_str(&format!("{:.1},{:.1} {:.1},{:.1} ", x(t), y(last), x(t), y(n)));
            last = n;
        }
        points.push_str(&format!("{:.1},{:.1}", x(t1), y(last)));
        out.push_str(&format!(
            "<text x='60' y='{}'>{}: violated nodes over {} s (max shown {top}), cumulated {:.0} s</text>\n\
             <rect x='60' y='{y0}' width='{}' height='150' fill='none' stroke='#999'/>\n\
             <polyline fill='none' stroke='#c52' points='{points}'/>\n",
            y0 - 6.0,
            run.report.scheduler,
            run.report.duration_s,
            run.report.cumulated_violation_s,
            w - 80.0
        ));
    }
    out.push_str("</svg>\n");
    out
}

/// Tells the scheduler of the nodes that became violated (and are still).
fn tell_violations(w: &mut World, sched: &mut dyn Scheduler, q: &mut Queue) {
    while !w.newly_violated.is_empty() {
        let nodes = std::mem::take(&mut w.newly_violated);
        for n in nodes {
            if w.is_violated(n) {
                sched.on_violation(n, w, q);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn small(nodes: usize) -> Scenario {
        Scenario {
            nodes,
            duration_s: 600.0,
            ..Scenario::default()
        }
    }

    #[test]
    fn loads_follow_the_law_in_steps_and_violations_are_accounted() {
        let w = World::new(small(64));
        assert_eq!(w.vms.len(), 640);
        assert!(w.vms.iter().all(|v| v.load % 10 == 0 && v.load <= 100));
        let mean = w.vms.iter().map(|v| v.load as f64).sum::<f64>() / 640.0;
        assert!((mean - 60.0).abs() < 3.0, "{mean}");
        for (i, n) in w.nodes.iter().enumerate() {
            let sum: u32 = n.vms.iter().map(|&v| w.vms[v as usize].load).sum();
            assert_eq!(n.load, sum);
            assert_eq!(w.is_violated(i as u32), sum > 800);
        }
    }

    /// A scheduler that never acts: violations last as long as the loads make them.
    struct Idle;
    impl Scheduler for Idle {
        fn start(&mut self, _: &mut World, _: &mut Queue) {}
        fn on_event(&mut self, _: u64, _: &mut World, _: &mut Queue) {}
        fn on_reconfigured(&mut self, _: u64, _: &mut World, _: &mut Queue) {}
    }

    #[test]
    fn without_a_scheduler_violations_accumulate_and_the_run_is_deterministic() {
        let s = Scenario {
            load_std: 40.0,
            ..small(32)
        };
        let a = run_with(&s, &mut Idle, std::time::Instant::now());
        let b = run_with(&s, &mut Idle, std::time::Instant::now());
        assert_eq!(a.report, b.report);
        assert!(
            a.report.cumulated_violation_s > 0.0 && a.report.violations > 0,
            "{:?}",
            a.report
        );
        assert!(a.report.load_changes > 32 * 10 * 600 / 300 / 2, "{:?}", a.report);
        assert_eq!(a.report.migrations, 0);
    }
}
