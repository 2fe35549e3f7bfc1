//! Discrete-event simulation of a vjob cluster in virtual time, driving the very policies
//! ([`vjob_core::policy`]) and planner ([`vjob_core::plan`]) that `vjobd` runs: trace replay (SWF) and
//! synthetic scenarios, with honest metrics.
//!
//! The loop mirrors the daemon's: events arrive (submissions, job ends, ends of actions); when no
//! plan is being carried out, the policy decides and the planner computes the plan; its actions
//! take the time the [`DurationModel`] gives and hold resources as they would for real (a VM being
//! saved keeps its memory and cores until written). A job runs for its recorded run time once
//! all its VMs run; the policies never see that time, only the user's estimate.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

use vjob_hypervisor::DurationModel;

use vjob_core::decision::{Ask, Board, NodeInput, PolicyChoice, Scope, VjobInput, VmAt, VmsAt};
use vjob_core::model::{NodeIdx, NO_NODE};
use vjob_core::plan::{self, ActionKind, Plan};
use vjob_core::policy::{self, Decision, Defragment, Limits, PauseRule};
use vjob_core::power::{self, PowerModel, PowerRule, PowerState};
use vjob_core::resources::cpu_memory;

/// A scheduling policy of the simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyKind {
    /// First come, first served.
    Fcfs,
    /// EASY backfilling.
    Easy,
    /// vjob's context switch: vjobs ordered by expansion factor, whole-vjob suspension of
    /// lower-ranked running vjobs (suspension factor 2), anti-thrashing quantum.
    Vjob,
    /// Selective suspension (Kettimuthu et al., 2005): the same ordering and suspension factor,
    /// without the quantum.
    Ss,
}

impl PolicyKind {
    pub fn parse(s: &str) -> Result<PolicyKind, String> {
        match s {
            "fcfs" => Ok(PolicyKind::Fcfs),
            "easy" => Ok(PolicyKind::Easy),
            "vjob" => Ok(PolicyKind::Vjob),
            "ss" => Ok(PolicyKind::Ss),
            o => Err(format!("unknown policy `{o}` (fcfs, easy, vjob, ss)")),
        }
    }
    pub fn name(self) -> &'static str {
        match self {
            PolicyKind::Fcfs => "fcfs",
            PolicyKind::Easy => "easy",
            PolicyKind::Vjob => "vjob",
            PolicyKind::Ss => "ss",
        }
    }
}

/// The simulated cluster and the policy's settings.
#[derive(Debug, Clone, PartialEq)]
pub struct SimConfig {
    pub nodes: u32,
    pub cores: u32,
    /// Memory per node, bytes.
    pub node_memory: u64,
    /// Memory of a VM per core when the trace gives none, bytes.
    pub vm_memory_per_core: u64,
    pub durations: DurationModel,
    pub policy: PolicyKind,
    /// A vjob resumed after a preemption is not preempted again for this long (vjob policy).
    pub quantum_ms: u64,
    /// Suspension factor: a vjob may suspend one whose expansion factor is this many times lower.
    pub suspension_factor: f64,
    /// Keep each job's state changes, for Gantt charts.
    pub record_segments: bool,
    /// vcpus of each VM (0: as many as the job needs, up to a node's cores).
    pub vm_vcpus: u32,
    /// Stop after this many decisions (0: run to the end), for decision-time measurements.
    pub max_decisions: u64,
    /// Interval of scheduling rounds while vjobs wait (0: only on events), like the daemon's tick.
    pub tick_ms: u64,
    /// Preemptive policies: a vjob whose estimate is at most this long pauses the vjobs it
    /// preempts in memory instead of saving them, when processors are enough (0: never), as
    /// the daemon's `short_preemption`.
    pub short_preemption_ms: u64,
    /// The vjob policy moves running VMs live out of waiting vjobs' way (as the daemon does);
    /// off only to measure what that buys.
    pub defragment: bool,
    /// The datacenter's placement constraints (`vsim --placement`), over nodes `n1..nN`.
    pub datacenter: Vec<vjob_core::instance::Constraint>,
    /// What nodes draw (energy is always accounted).
    pub power_model: PowerModel,
    /// Power management: idle nodes switched off, booted when queued vjobs need them.
    pub power_rule: Option<PowerRule>,
    /// Power management also packs running vjobs by live migration so that nodes empty out
    /// ([`power::consolidation`], as vjobd does).
    pub consolidate: bool,
    /// Multifactor priority and fair share, as vjobd's `[priority]` and `[fairshare]`
    /// (`vsim --fairshare`): users are the trace's (SWF field 12).
    pub ranking: Option<vjob_core::fairshare::Ranking>,
}

/// The name of node `i` (0-based) of a simulated cluster, as placement scripts call it (`@n1`).
pub fn node_name(i: u32) -> String {
    format!("n{}", i + 1)
}

/// A job to simulate.
#[derive(Debug, Clone, PartialEq)]
pub struct SimJob {
    pub submit_ms: u64,
    /// The real running time; never shown to a policy.
    pub run_ms: u64,
    /// The user's estimate.
    pub requested_ms: Option<u64>,
    pub procs: u32,
    /// Memory per VM core, bytes.
    pub mem_per_core: u64,
    /// Shared by the jobs of one user.
    pub user: std::sync::Arc<str>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Phase {
    /// Not submitted yet.
    Future,
    Waiting,
    Starting,
    Running,
    Suspending,
    Suspended,
    /// Paused in memory on its hosts (its processors given back).
    Paused,
    Done,
}

/// A job's state in the simulation.
#[derive(Debug, Clone)]
struct JobState {
    phase: Phase,
    remaining_ms: u64,
    run_since: u64,
    end_ms: Option<u64>,
    epoch: u32,
    vcpus: u32,
    vms: u32,
    mem: u64,
    hosts: Vec<NodeIdx>,
    protected_until: u64,
    preempted: bool,
    /// Actions of the current plan not yet ended.
    pending_actions: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Event {
    /// Ends of actions come first at equal times: resources freed are seen by what follows.
    /// One event for all of a job's actions that end at the same time (a vjob's VMs boot
    /// together).
    ActionEnd {
        job: u32,
        actions: u32,
    },
    Finish {
        job: u32,
        epoch: u32,
    },
    Arrive {
        job: u32,
    },
    /// A periodic scheduling round while vjobs wait (priorities by expansion factor change
    /// with time alone, as do quanta).
    Tick,
    /// A node's boot or shutdown is over.
    Power {
        node: u32,
    },
    /// The first empty node is due to be switched off.
    PowerCheck,
}

/// One state change of a job, for Gantt charts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Segment {
    pub job: u32,
    pub start_ms: u64,
    pub end_ms: u64,
    pub phase: Phase,
}

/// What the cluster looked like at a moment, for plots.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    pub t_ms: u64,
    pub busy_cores: u64,
    pub queued: u32,
}

/// Everything a run measured.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Outcome {
    pub jobs: usize,
    pub response_ms: Vec<u64>,
    pub run_ms: Vec<u64>,
    pub procs: Vec<u32>,
    pub first_submit_ms: u64,
    pub last_end_ms: u64,
    pub total_cores: u64,
    pub suspends: u64,
    pub resumes: u64,
    /// VMs paused in memory by short preemptions (each unpaused later).
    pub pauses: u64,
    pub migrations: u64,
    pub bytes_moved: u64,
    /// Virtual milliseconds of suspends, resumes and migrations, added up.
    pub switch_ms: u64,
    pub decisions: u64,
    /// Wall-clock time of each decision (policy and planner), in microseconds.
    pub decision_us: Vec<u64>,
    /// The decisions that planned something: wall-clock microseconds and VMs in the instance.
    pub planned: Vec<(u64, usize)>,
    pub samples: Vec<Sample>,
    pub segments: Vec<Segment>,
    /// Joules the nodes drew, and would have drawn had every node stayed on.
    pub energy_j: f64,
    pub energy_all_on_j: f64,
    pub node_boots: u64,
    pub node_shutdowns: u64,
    /// The user of each job that ended, in the order of `response_ms`.
    pub users: Vec<String>,
}

/// Ranking's state across decisions (with `SimConfig::ranking`).
#[derive(Default)]
struct Ranks {
    usage: vjob_core::fairshare::Usage,
    /// Each job's rank at its last computation.
    of: Vec<i64>,
    computed_at: Option<u64>,
}

struct Sim<'a> {
    cfg: &'a SimConfig,
    jobs: &'a [SimJob],
    st: Vec<JobState>,
    events: BinaryHeap<Reverse<(u64, Event, u64)>>,
    seq: u64,
    /// What the decisions are made on, kept up to date as jobs change.
    board: Board,
    /// Jobs changed since the board was last brought up to date.
    changed: Vec<u32>,
    plan_in_flight: u32,
    dirty: bool,
    queued: u32,
    busy_cores: u64,
    out: Outcome,
    seg_start: Vec<u64>,
    /// Jobs submitted and not done, in submission order: kept only for ranking and power
    /// management, which read them (a B-tree set costs its logarithm at every job otherwise).
    active: Option<std::collections::BTreeSet<u32>>,
    /// How many jobs are submitted and not done.
    active_count: usize,
    /// Jobs waiting, suspended or paused: those whose expansion factor grows with time. Kept
    /// only for the preemptive policies, which refresh their priorities.
    queue: Option<std::collections::BTreeSet<u32>>,
    /// Protections against preemption not lapsed yet as the board last saw them: (until, job).
    protections: std::collections::BTreeSet<(u64, u32)>,
    tick_pending: bool,
    power: Vec<PowerState>,
    /// When each node's boot began.
    boot_since: Vec<u64>,
    empty_since: Vec<Option<u64>>,
    /// Nodes drawing power as on (on, booting, shutting down).
    drawing: u64,
    energy_t: u64,
    power_check_pending: bool,
    /// The datacenter's `maxOnline` rules.
    caps: Vec<power::Cap>,
    /// VMs consolidation moves in the next decision: (job, VM, node).
    moves: Vec<(u64, usize, NodeIdx)>,
    consolidated_at: u64,
    /// The jobs the last decision left waiting for room, in its order: what boots serve.
    short_of_room: Vec<u64>,
    /// The off nodes the last decision placed jobs on, to boot.
    wanted: Vec<NodeIdx>,
    /// Jobs not arrived yet: when none is left and none is active, the run is over (energy is
    /// accounted up to the last job's end).
    arrivals_left: usize,
    /// Jobs by arrival; only the next one to arrive is in the event queue (a queue of every
    /// future arrival would cost its logarithm at every event).
    arrivals: Vec<u32>,
    ranks: Ranks,
}

impl Sim<'_> {
    fn push(&mut self, t: u64, e: Event) {
        self.seq += 1;
        self.events.push(Reverse((t, e, self.seq)));
    }

    fn set_phase(&mut self, j: usize, phase: Phase, now: u64) {
        let old = self.st[j].phase;
        if old == phase {
            return;
        }
        if self.cfg.record_segments && old != Phase::Future {
            self.out.segments.push(Segment {
                job: j as u32,
                start_ms: self.seg_start[j],
                end_ms: now,
                phase: old,
            });
            self.seg_start[j] = now;
        }
        let cores = self.jobs[j].procs as u64;
        if matches!(old, Phase::Waiting | Phase::Suspended | Phase::Paused) {
            self.queued -= 1;
            keep_member(&mut self.queue, j as u32, false);
        }
        if matches!(phase, Phase::Waiting | Phase::Suspended | Phase::Paused) {
            self.queued += 1;
            keep_member(&mut self.queue, j as u32, true);
        }
        if old == Phase::Running {
            self.busy_cores -= cores;
        }
        if phase == Phase::Running {
            self.busy_cores += cores;
        }
        self.st[j].phase = phase;
        self.changed.push(j as u32);
    }

    fn sample(&mut self, now: u64) {
        let s = Sample {
            t_ms: now,
            busy_cores: self.busy_cores,
            queued: self.queued,
        };
        match self.out.samples.last_mut() {
            Some(last) if last.t_ms == now => *last = s,
            Some(last) if last.busy_cores == s.busy_cores && last.queued == s.queued => {}
            _ => self.out.samples.push(s),
        }
    }

    /// Expansion factor (wait + estimate) / estimate, the priority of the preemptive policies.
    fn xfactor(&self, j: usize, now: u64) -> f64 {
        let job = &self.jobs[j];
        let est = job.requested_ms.unwrap_or(86_400_000).max(60_000) as f64;
        let executed = job.run_ms - self.st[j].remaining_ms
            + if self.st[j].phase == Phase::Running {
                now - self.st[j].run_since
            } else {
                0
            };
        let waited = now.saturating_sub(job.submit_ms).saturating_sub(executed) as f64;
        (waited + est) / est
    }

    /// Job `j` as the decision board takes it, or `None` when it has no place there (not
    /// submitted, ended, or in the middle of a switch).
    fn vjob_input(&self, j: usize, now: u64) -> Option<VjobInput> {
        let s = &self.st[j];
        let count = s.vms as usize;
        let vms = match s.phase {
            Phase::Running => VmsAt::Each(s.hosts.iter().map(|&h| VmAt::Running(h)).collect()),
            Phase::Paused => VmsAt::Each(s.hosts.iter().map(|&h| VmAt::Paused(h)).collect()),
            Phase::Suspended => VmsAt::Away { count, sleeping: true },
            Phase::Waiting => VmsAt::Away { count, sleeping: false },
            _ => return None,
        };
        let job = &self.jobs[j];
        Some(VjobInput {
            id: j as u64,
            queue: String::new(),
            queue_priority: 0,
            priority: self.priority(j, now),
            submit_ms: job.submit_ms,
            user: job.user.clone(),
            eligible: true,
            protected: now < s.protected_until,
            admin_suspend: false,
            demand: cpu_memory(s.vcpus as u64, s.mem).into(),
            vms,
            requested_ms: job.requested_ms,
            expected_end_ms: (s.phase == Phase::Running)
                .then(|| policy::expected_end(s.run_since, job.run_ms - s.remaining_ms, job.requested_ms)),
            rules: None,
            group_limit: None,
            rank: self.ranks.of.get(j).copied().unwrap_or(0),
        })
    }

    /// The preemptive policies rank by expansion factor (which grows as a vjob waits); the
    /// others by submission alone.
    fn priority(&self, j: usize, now: u64) -> i32 {
        match self.cfg.policy {
            PolicyKind::Vjob | PolicyKind::Ss => (self.xfactor(j, now) * 1000.0).min(i32::MAX as f64) as i32,
            PolicyKind::Fcfs | PolicyKind::Easy => 0,
        }
    }

    /// Brings the board up to date with the jobs that changed since the last decision, and
    /// (preemptive policies) every active vjob's priority and protection, which change with time.
    fn sync_board(&mut self, now: u64) {
        self.rank(now);
        let mut changed = std::mem::take(&mut self.changed);
        changed.sort_unstable();
        changed.dedup();
        for &j in &changed {
            match self.vjob_input(j as usize, now) {
                Some(v) => self.board.upsert(v),
                None => self.board.remove(j as u64),
            }
        }
        // Kept for the next decision's changes, with its room.
        changed.clear();
        self.changed = changed;
        if matches!(self.cfg.policy, PolicyKind::Vjob | PolicyKind::Ss) && self.board.unsettled() {
            // A running vjob's expansion factor stays what it was when it started (it waits no
            // longer): only its protection lapses with time.
            let still = self.protections.split_off(&(now + 1, 0));
            let lapsed = std::mem::replace(&mut self.protections, still);
            let queue = self.queue.as_ref().expect("kept for the preemptive policies");
            let due = queue.iter().copied().chain(lapsed.into_iter().map(|(_, j)| j));
            for j in due.collect::<Vec<u32>>() {
                let (p, protected) = (
                    self.priority(j as usize, now),
                    now < self.st[j as usize].protected_until,
                );
                self.board.refresh(j as u64, p, protected);
            }
        }
    }

    /// With ranking: usage advanced to now, and every waiting job's rank computed again when
    /// due (as vjobd does, every `recalc` of virtual time).
    fn rank(&mut self, now: u64) {
        use vjob_core::fairshare::Factors;
        let Some(ranking) = &self.cfg.ranking else { return };
        let active = self.active.as_ref().expect("kept with ranking");
        if let Some((half_life, _)) = &ranking.fairshare {
            let (jobs, st) = (self.jobs, &self.st);
            let running = (active.iter())
                .filter(|&&j| st[j as usize].phase == Phase::Running)
                .map(|&j| (&*jobs[j as usize].user, jobs[j as usize].procs as u64));
            self.ranks.usage.advance(now, *half_life, running);
        }
        if self.ranks.computed_at.is_some_and(|t| now < t + ranking.recalc_ms) {
            return;
        }
        self.ranks.computed_at = Some(now);
        let factors: std::collections::HashMap<String, f64> = match &ranking.fairshare {
            None => Default::default(),
            Some((_, shares)) => {
                let users = active.iter().map(|&j| &*self.jobs[j as usize].user);
                (shares.standing(&self.ranks.usage, users).into_iter())
                    .map(|s| (s.user, s.factor))
                    .collect()
            }
        };
        if self.ranks.of.is_empty() {
            self.ranks.of = vec![0; self.jobs.len()];
        }
        let cluster = self.cfg.nodes as u64 * self.cfg.cores as u64;
        for &j in active {
            let (job, s) = (&self.jobs[j as usize], &self.st[j as usize]);
            if s.phase != Phase::Waiting {
                continue;
            }
            let fs = factors.get(&*job.user).copied().unwrap_or(1.0);
            let waited = now.saturating_sub(job.submit_ms);
            let f = Factors::of(&ranking.weights, 0, 0, waited, fs, job.procs as u64, cluster);
            let rank = f.priority(&ranking.weights);
            if self.ranks.of[j as usize] != rank {
                self.ranks.of[j as usize] = rank;
                self.changed.push(j);
            }
        }
    }

    fn policy(&self, now: u64) -> PolicyChoice {
        match self.cfg.policy {
            PolicyKind::Fcfs => PolicyChoice::Fcfs,
            PolicyKind::Easy => PolicyChoice::Easy { now },
            // Selective suspension as published never moves running vjobs; vjob does.
            PolicyKind::Vjob | PolicyKind::Ss => PolicyChoice::ContextSwitch(Box::new(Limits {
                preempt_ratio: Some(self.cfg.suspension_factor),
                pause: PauseRule::keeping_memory(self.cfg.short_preemption_ms),
                defragment: (self.cfg.policy == PolicyKind::Vjob && self.cfg.defragment).then_some(Defragment {
                    now_ms: now,
                    durations: self.cfg.durations,
                }),
                boots: self.cfg.power_rule.map(|rule| {
                    let nodes: Vec<power::PowerSince> = (0..self.power.len())
                        .map(|i| (self.power[i], self.boot_since[i], true))
                        .collect();
                    power::boots(&nodes, now, &rule, &self.caps, self.cfg.durations)
                }),
                ..Default::default()
            })),
        }
    }

    /// A decision round: the shared decision builder and planner, carried out in virtual time.
    fn decide(&mut self, now: u64) {
        let t0 = Instant::now();
        let policy = self.policy(now);
        self.sync_board(now);
        let mut scope = Scope::Touched;
        let moves = std::mem::take(&mut self.moves);
        let (built, inst, plan) = loop {
            let ask = Ask {
                moves: &moves,
                vm_name: &vm_name,
                durations: &self.cfg.durations,
                always_plan: false,
                scope,
                // Power management reads who is short of room; nothing else reads the reasons.
                list_waiting: self.cfg.power_rule.is_some(),
            };
            let mut built = self.board.decide(&policy, &ask);
            if self.cfg.power_rule.is_some() {
                self.short_of_room = std::mem::take(&mut built.decision.short_of_room);
                self.wanted = std::mem::take(&mut built.decision.boot);
            }
            let Some(inst) = built.instance.take() else {
                self.out.decisions += 1;
                self.out.decision_us.push(t0.elapsed().as_micros() as u64);
                return;
            };
            if let Some(plan) = built.plan.take() {
                break (built, inst, plan);
            }
            match plan::solve(&inst) {
                Ok(p) => break (built, inst, p),
                // The touched nodes were not enough (a cycle wants a pivot elsewhere): all of them.
                Err(_) if scope == Scope::Touched => scope = Scope::Whole,
                Err(e) => {
                    tracing::warn!(error = %e, "the planner found no plan for the policy's decision; skipped");
                    self.out.decisions += 1;
                    self.out.decision_us.push(t0.elapsed().as_micros() as u64);
                    return;
                }
            }
        };
        self.out.decisions += 1;
        let us = t0.elapsed().as_micros() as u64;
        self.out.decision_us.push(us);
        self.out.planned.push((us, inst.model.vms()));
        // `None`: what stays on a node, which no action moves.
        let owner: Vec<Option<(u32, usize)>> = (built.vm_refs.iter()).map(|r| r.map(|(j, i)| (j as u32, i))).collect();
        self.carry_out(now, &built.decision, &plan, &owner, &built.nodes);
    }

    /// Carries a decision's pauses, unpauses and plan out in virtual time: every action ends at
    /// `now + end`.
    /// `node_of` maps the plan's nodes to the cluster's.
    fn carry_out(
        &mut self,
        now: u64,
        decision: &Decision,
        plan: &Plan,
        owner: &[Option<(u32, usize)>],
        node_of: &[NodeIdx],
    ) {
        let cfg = self.cfg;
        // Pauses give the processors back at once (a pause takes milliseconds); unpauses take
        // them back and end after a pause's duration.
        let paused_now: Vec<usize> = decision.pause.iter().map(|&(id, _)| id as usize).collect();
        // Paused before this decision (a decision only pauses what runs).
        let was_paused = |st: &[JobState], j: usize| st[j].phase == Phase::Paused && !paused_now.contains(&j);
        // When each action ends, as (time, job).
        let mut ends: Vec<(u64, u32)> = Vec::new();
        for &(id, _) in &decision.pause {
            let j = id as usize;
            if self.st[j].phase != Phase::Running {
                continue;
            }
            let done = now - self.st[j].run_since;
            self.st[j].remaining_ms = self.st[j].remaining_ms.saturating_sub(done);
            self.st[j].epoch += 1;
            self.st[j].preempted = true;
            self.out.pauses += self.st[j].vms as u64;
            self.set_phase(j, Phase::Paused, now);
        }
        for &id in &decision.run {
            let j = id as usize;
            if !was_paused(&self.st, j) {
                continue;
            }
            for _ in 0..self.st[j].vms {
                self.st[j].pending_actions += 1;
                self.plan_in_flight += 1;
                ends.push((now + cfg.durations.pause(), id as u32));
            }
            self.set_phase(j, Phase::Starting, now);
        }
        // Carry it out in virtual time: every action ends at `now + end`.
        for a in &plan.actions {
            let Some((j, i)) = a.kind.vm().and_then(|v| owner[v as usize]) else {
                continue;
            };
            let ju = j as usize;
            let mem = self.st[ju].mem;
            if matches!(
                a.kind,
                ActionKind::SuspendVm { .. } | ActionKind::ResumeVm { .. } | ActionKind::MigrateVm { .. }
            ) {
                self.out.switch_ms += a.end - a.start;
            }
            match a.kind {
                ActionKind::SuspendVm { .. } => {
                    self.out.suspends += 1;
                    self.out.bytes_moved += mem;
                    if self.st[ju].phase == Phase::Running {
                        let done = now - self.st[ju].run_since;
                        self.st[ju].remaining_ms = self.st[ju].remaining_ms.saturating_sub(done);
                        self.st[ju].epoch += 1;
                        self.st[ju].preempted = true;
                        self.set_phase(ju, Phase::Suspending, now);
                    }
                    if was_paused(&self.st, ju) {
                        self.set_phase(ju, Phase::Suspending, now);
                    }
                }
                ActionKind::ResumeVm { to, .. } | ActionKind::BootVm { on: to, .. } => {
                    if matches!(a.kind, ActionKind::ResumeVm { .. }) {
                        self.out.resumes += 1;
                        self.out.bytes_moved += mem;
                    }
                    self.st[ju].hosts[i] = node_of[to as usize];
                    if self.st[ju].phase != Phase::Starting {
                        self.set_phase(ju, Phase::Starting, now);
                    }
                }
                ActionKind::MigrateVm { to, .. } => {
                    self.out.migrations += 1;
                    self.out.bytes_moved += mem;
                    self.st[ju].hosts[i] = node_of[to as usize];
                    self.changed.push(j);
                }
                _ => continue,
            }
            self.st[ju].pending_actions += 1;
            self.plan_in_flight += 1;
            ends.push((now + a.end, j));
        }
        ends.sort_unstable();
        for same in ends.chunk_by(|a, b| a == b) {
            let (t, job) = same[0];
            self.push(
                t,
                Event::ActionEnd {
                    job,
                    actions: same.len() as u32,
                },
            );
        }
        self.sample(now);
    }

    /// Adds the energy drawn since the last event, at the power of the state kept meanwhile.
    fn integrate(&mut self, now: u64) {
        if self.arrivals_left == 0 && self.active_count == 0 {
            return;
        }
        let dt = now.saturating_sub(self.energy_t) as f64 / 1000.0;
        self.energy_t = now;
        let (m, n, cores) = (&self.cfg.power_model, self.cfg.nodes as u64, self.cfg.cores as u64);
        self.out.energy_j += dt * m.cluster_watts(self.drawing, n - self.drawing, self.busy_cores, cores);
        self.out.energy_all_on_j += dt * m.cluster_watts(n, 0, self.busy_cores, cores);
    }

    fn set_power(&mut self, n: usize, state: PowerState) {
        let was = self.power[n].draws();
        self.power[n] = state;
        match (was, state.draws()) {
            (true, false) => self.drawing -= 1,
            (false, true) => self.drawing += 1,
            _ => {}
        }
    }

    /// After a decision: empty nodes idle long enough are switched off; off nodes are booted
    /// when queued vjobs need more processors than the open and booting nodes have.
    fn manage_power(&mut self, now: u64) {
        let Some(rule) = self.cfg.power_rule else { return };
        let n = self.cfg.nodes as usize;
        let cores = self.cfg.cores as u64;
        let mut held = vec![0u64; n];
        let mut held_memory = vec![0u64; n];
        let mut present = vec![false; n];
        for &j in self.active.as_ref().expect("kept with power management") {
            let s = &self.st[j as usize];
            match s.phase {
                Phase::Starting | Phase::Running | Phase::Suspending | Phase::Paused => {
                    for &h in s.hosts.iter().filter(|&&h| h != NO_NODE) {
                        present[h as usize] = true;
                        held_memory[h as usize] += s.mem;
                        if s.phase != Phase::Paused {
                            held[h as usize] += s.vcpus as u64;
                        }
                    }
                }
                _ => {}
            }
        }
        for i in 0..n {
            match (self.power[i], present[i]) {
                (PowerState::On, false) => {
                    self.empty_since[i].get_or_insert(now);
                }
                _ => self.empty_since[i] = None,
            }
        }
        let memory = self.cfg.node_memory;
        let view: Vec<power::NodePower> = (0..n)
            .map(|i| power::NodePower {
                state: self.power[i],
                capacity: [cores, memory],
                free: [cores.saturating_sub(held[i]), memory.saturating_sub(held_memory[i])],
                empty_since: self.empty_since[i],
                may_boot: true,
                accepts: self.power[i] == PowerState::On,
            })
            .collect();
        let short: Vec<Vec<[u64; 2]>> = (self.short_of_room.iter())
            .map(|&j| &self.st[j as usize])
            .filter(|s| matches!(s.phase, Phase::Waiting | Phase::Suspended))
            .map(|s| vec![[s.vcpus as u64, s.mem]; s.vms as usize])
            .collect();
        let needed = !short.is_empty() || !self.wanted.is_empty();
        let switches = power::switches(&view, &short, &self.wanted, now, &rule, &self.caps);
        for &i in &switches.off {
            let i = i as usize;
            self.set_power(i, PowerState::ShuttingDown);
            self.empty_since[i] = None;
            self.board.set_accepts(i as NodeIdx, false);
            self.out.node_shutdowns += 1;
            self.push(now + rule.shutdown_ms, Event::Power { node: i as u32 });
        }
        for &i in &switches.boot {
            self.set_power(i as usize, PowerState::Booting);
            self.boot_since[i as usize] = now;
            self.out.node_boots += 1;
            self.push(now + rule.boot_ms, Event::Power { node: i });
        }
        if self.cfg.consolidate
            && !needed
            && switches == power::Switches::default()
            && now >= self.consolidated_at + rule.consolidation_interval_ms()
        {
            self.consolidated_at = now;
            self.consolidate(now, &view);
        }
        let staying = self
            .power
            .iter()
            .filter(|p| matches!(p, PowerState::On | PowerState::Booting))
            .count();
        let work_left = self.arrivals_left > 0 || self.active_count > 0;
        // Spare nodes stay on however long they idle: only more empty nodes than that can go.
        let ready = self.empty_since.iter().flatten().count()
            + self.power.iter().filter(|&&p| p == PowerState::Booting).count();
        if let Some(first) = self.empty_since.iter().flatten().min().copied() {
            if !self.power_check_pending && work_left && !needed && staying > rule.min_on && ready > rule.spare {
                self.power_check_pending = true;
                self.push((first + rule.idle_ms).max(now + 1), Event::PowerCheck);
            }
        }
    }

    /// One node emptied by moving its VMs live, when that pays ([`power::consolidation`]):
    /// the moves go through the next decision, as an administrator's would.
    fn consolidate(&mut self, now: u64, view: &[power::NodePower]) {
        let mut residents: Vec<Vec<power::Resident>> = vec![Vec::new(); view.len()];
        let mut keys: Vec<(u64, usize)> = Vec::new();
        for &j in self.active.as_ref().expect("kept with power management") {
            let (s, job) = (&self.st[j as usize], &self.jobs[j as usize]);
            if !matches!(s.phase, Phase::Running | Phase::Starting) {
                continue;
            }
            let elapsed = job.run_ms - s.remaining_ms + now.saturating_sub(s.run_since);
            for (i, &h) in s.hosts.iter().enumerate().filter(|(_, &h)| h != NO_NODE) {
                residents[h as usize].push(power::Resident {
                    key: keys.len(),
                    demand: [s.vcpus as u64, s.mem],
                    movable: s.phase == Phase::Running && s.pending_actions == 0,
                    remaining_ms: job.requested_ms.map(|r| r.saturating_sub(elapsed)),
                    migrate_ms: self.cfg.durations.migrate(s.mem),
                });
                keys.push((j as u64, i));
            }
        }
        if let Some((_, moves)) = power::consolidation(view, &residents, &self.cfg.power_model) {
            self.moves = moves.into_iter().map(|(k, to)| (keys[k].0, keys[k].1, to)).collect();
            self.push(now + 1, Event::PowerCheck);
        }
    }

    fn handle(&mut self, now: u64, e: Event) {
        match e {
            Event::Power { node } => {
                let i = node as usize;
                match self.power[i] {
                    PowerState::Booting => {
                        self.set_power(i, PowerState::On);
                        self.board.set_accepts(node as NodeIdx, true);
                        self.dirty = true;
                    }
                    PowerState::ShuttingDown => self.set_power(i, PowerState::Off),
                    _ => {}
                }
            }
            Event::PowerCheck => {
                self.power_check_pending = false;
                self.dirty = true;
            }
            Event::Tick => {
                self.tick_pending = false;
                self.dirty = true;
            }
            Event::Arrive { job } => {
                let j = job as usize;
                self.arrivals_left -= 1;
                let next = self.arrivals.len() - self.arrivals_left;
                if let Some(&k) = self.arrivals.get(next) {
                    self.push(self.jobs[k as usize].submit_ms, Event::Arrive { job: k });
                }
                self.seg_start[j] = now;
                self.active_count += 1;
                keep_member(&mut self.active, job, true);
                self.set_phase(j, Phase::Waiting, now);
                self.dirty = true;
            }
            Event::Finish { job, epoch } => {
                let j = job as usize;
                if self.st[j].epoch != epoch || self.st[j].phase != Phase::Running {
                    return;
                }
                self.st[j].remaining_ms = 0;
                self.st[j].end_ms = Some(now);
                self.active_count -= 1;
                keep_member(&mut self.active, job, false);
                self.set_phase(j, Phase::Done, now);
                self.dirty = true;
            }
            Event::ActionEnd { job, actions } => {
                let j = job as usize;
                self.st[j].pending_actions -= actions;
                self.plan_in_flight -= actions;
                if self.st[j].pending_actions == 0 {
                    match self.st[j].phase {
                        Phase::Suspending => self.set_phase(j, Phase::Suspended, now),
                        Phase::Starting => {
                            if self.st[j].preempted && self.cfg.policy == PolicyKind::Vjob {
                                self.st[j].protected_until = now + self.cfg.quantum_ms;
                                self.protections.insert((self.st[j].protected_until, job));
                            }
                            self.st[j].run_since = now;
                            let epoch = self.st[j].epoch;
                            self.set_phase(j, Phase::Running, now);
                            self.push(now + self.st[j].remaining_ms, Event::Finish { job, epoch });
                        }
                        _ => {}
                    }
                }
                if self.plan_in_flight == 0 {
                    self.dirty = true;
                }
            }
        }
    }
}

/// The name of VM `i` of job `id` in a planner instance, `"{id}-{i}"`: written with `itoa` on
/// the stack and shared from there in one allocation, as `format!` costs several times more and
/// a replay names every VM it starts.
fn vm_name(id: u64, i: usize) -> std::sync::Arc<str> {
    let (mut a, mut b) = (itoa::Buffer::new(), itoa::Buffer::new());
    let (id, i) = (a.format(id), b.format(i));
    // At most 20 digits, a dash and 20 digits.
    let mut buf = [0u8; 41];
    let len = id.len() + 1 + i.len();
    buf[..id.len()].copy_from_slice(id.as_bytes());
    buf[id.len()] = b'-';
    buf[id.len() + 1..len].copy_from_slice(i.as_bytes());
    std::str::from_utf8(&buf[..len]).expect("digits and a dash").into()
}

/// Adds job `j` to a set of jobs kept only when something reads it, or takes it away.
fn keep_member(set: &mut Option<std::collections::BTreeSet<u32>>, j: u32, member: bool) {
    match (set, member) {
        (Some(set), true) => set.insert(j),
        (Some(set), false) => set.remove(&j),
        (None, _) => false,
    };
}

/// Progress reports: called with (events done, events in all) now and then.
pub type Progress<'a> = &'a mut dyn FnMut(usize, usize);

/// Each job's state before it arrives: its VMs (as many cores each as a node has, or
/// `vm_vcpus`) and their memory.
fn job_states(cfg: &SimConfig, jobs: &[SimJob]) -> Vec<JobState> {
    let per_vm = if cfg.vm_vcpus > 0 {
        cfg.vm_vcpus.min(cfg.cores)
    } else {
        cfg.cores
    }
    .max(1);
    jobs.iter()
        .map(|j| {
            let vcpus = j.procs.min(per_vm);
            let vms = j.procs.div_ceil(vcpus);
            JobState {
                phase: Phase::Future,
                remaining_ms: j.run_ms,
                run_since: 0,
                end_ms: None,
                epoch: 0,
                vcpus,
                vms,
                mem: j.mem_per_core * vcpus as u64,
                hosts: vec![NO_NODE; vms as usize],
                protected_until: 0,
                preempted: false,
                pending_actions: 0,
            }
        })
        .collect()
}

impl<'a> Sim<'a> {
    /// The simulation at its start: every node on and empty, no job arrived.
    fn new(cfg: &'a SimConfig, jobs: &'a [SimJob]) -> Sim<'a> {
        let mut sim = Sim {
            cfg,
            jobs,
            st: job_states(cfg, jobs),
            events: BinaryHeap::new(),
            seq: 0,
            board: Board::new(
                (0..cfg.nodes)
                    .map(|i| NodeInput {
                        name: node_name(i),
                        capacity: cpu_memory(cfg.cores as u64, cfg.node_memory),
                        accepts: true,
                        offline: false,
                    })
                    .collect(),
                PauseRule::keeping_memory(cfg.short_preemption_ms)
                    .filter(|_| matches!(cfg.policy, PolicyKind::Vjob | PolicyKind::Ss)),
            ),
            changed: Vec::new(),
            plan_in_flight: 0,
            dirty: false,
            queued: 0,
            busy_cores: 0,
            out: Outcome {
                total_cores: cfg.nodes as u64 * cfg.cores as u64,
                ..Default::default()
            },
            seg_start: vec![0; jobs.len()],
            active: (cfg.ranking.is_some() || cfg.power_rule.is_some()).then(Default::default),
            active_count: 0,
            queue: matches!(cfg.policy, PolicyKind::Vjob | PolicyKind::Ss).then(Default::default),
            protections: Default::default(),
            tick_pending: false,
            power: vec![PowerState::On; cfg.nodes as usize],
            empty_since: vec![None; cfg.nodes as usize],
            boot_since: vec![0; cfg.nodes as usize],
            drawing: cfg.nodes as u64,
            energy_t: jobs.iter().map(|j| j.submit_ms).min().unwrap_or(0),
            power_check_pending: false,
            caps: power::caps(&cfg.datacenter),
            moves: Vec::new(),
            consolidated_at: 0,
            short_of_room: Vec::new(),
            wanted: Vec::new(),
            arrivals_left: jobs.len(),
            arrivals: {
                let mut order: Vec<u32> = (0..jobs.len() as u32).collect();
                order.sort_by_key(|&j| (jobs[j as usize].submit_ms, j));
                order
            },
            ranks: Ranks::default(),
        };
        if !cfg.datacenter.is_empty() {
            sim.board.set_datacenter(cfg.datacenter.clone());
        }
        sim
    }

    /// What the run measured, once it is over.
    fn outcome(self) -> Outcome {
        let jobs = self.jobs;
        let mut out = self.out;
        out.first_submit_ms = jobs.iter().map(|j| j.submit_ms).min().unwrap_or(0);
        for (j, s) in self.st.iter().enumerate() {
            if let Some(end) = s.end_ms {
                out.jobs += 1;
                out.response_ms.push(end - jobs[j].submit_ms);
                out.run_ms.push(jobs[j].run_ms);
                out.procs.push(jobs[j].procs);
                out.users.push(jobs[j].user.to_string());
                out.last_end_ms = out.last_end_ms.max(end);
            }
        }
        out
    }
}

/// Runs a simulation to its end.
pub fn run(cfg: &SimConfig, jobs: &[SimJob], progress: Progress<'_>) -> Outcome {
    let mut sim = Sim::new(cfg, jobs);
    // Jobs are waiting (counted in the queue) from their arrival only.
    if let Some(&first) = sim.arrivals.first() {
        sim.push(jobs[first as usize].submit_ms, Event::Arrive { job: first });
    }
    let total = jobs.len();
    let mut done = 0usize;
    while let Some(Reverse((now, e, _))) = sim.events.pop() {
        if let Event::Arrive { .. } = e {
            done += 1;
            if done.is_multiple_of(1024) {
                progress(done, total);
            }
        }
        sim.integrate(now);
        sim.handle(now, e);
        let more_now = sim.events.peek().is_some_and(|Reverse((t, _, _))| *t == now);
        if !more_now {
            if sim.dirty && sim.plan_in_flight == 0 {
                sim.dirty = false;
                sim.decide(now);
                sim.manage_power(now);
                if cfg.tick_ms > 0 && sim.queued > 0 && !sim.tick_pending {
                    sim.tick_pending = true;
                    sim.push(now + cfg.tick_ms, Event::Tick);
                }
                if cfg.max_decisions > 0 && sim.out.decisions >= cfg.max_decisions {
                    sim.sample(now);
                    break;
                }
            }
            sim.sample(now);
        }
    }
    progress(total, total);
    sim.outcome()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vm_names_are_the_job_and_the_vms_index() {
        for (id, i) in [(0, 0), (7, 12), (1234567, 0), (u64::MAX, usize::MAX)] {
            assert_eq!(&*vm_name(id, i), format!("{id}-{i}"));
        }
    }

    fn cfg(policy: PolicyKind) -> SimConfig {
        SimConfig {
            nodes: 2,
            cores: 1,
            node_memory: 4 << 30,
            vm_memory_per_core: 1 << 30,
            durations: DurationModel {
                boot_ms: 1_000,
                ..DurationModel::libvirt_lab()
            },
            policy,
            quantum_ms: 600_000,
            suspension_factor: 2.0,
            record_segments: true,
            vm_vcpus: 0,
            max_decisions: 0,
            tick_ms: 60_000,
            short_preemption_ms: 0,
            defragment: true,
            datacenter: Vec::new(),
            power_model: PowerModel::default(),
            power_rule: None,
            consolidate: false,
            ranking: None,
        }
    }

    fn job(submit_s: u64, run_s: u64, requested_s: u64, procs: u32) -> SimJob {
        SimJob {
            submit_ms: submit_s * 1000,
            run_ms: run_s * 1000,
            requested_ms: Some(requested_s * 1000),
            procs,
            mem_per_core: 1 << 30,
            user: "u".into(),
        }
    }

    #[test]
    fn a_job_on_an_empty_cluster_waits_only_for_its_boot() {
        let o = run(&cfg(PolicyKind::Fcfs), &[job(0, 100, 200, 2)], &mut |_, _| {});
        assert_eq!(o.jobs, 1);
        assert_eq!(o.response_ms, vec![101_000], "boot (1 s) then 100 s of running");
    }

    #[test]
    fn idle_nodes_go_off_and_a_job_that_needs_them_boots_exactly_as_many_as_it_needs() {
        let rule = PowerRule {
            idle_ms: 60_000,
            min_on: 1,
            spare: 0,
            boot_ms: 30_000,
            shutdown_ms: 10_000,
        };
        let c = SimConfig {
            nodes: 4,
            power_rule: Some(rule),
            consolidate: false,
            ranking: None,
            ..cfg(PolicyKind::Easy)
        };
        let jobs = [job(0, 100, 200, 1), job(2000, 100, 200, 3)];
        let o = run(&c, &jobs, &mut |_, _| {});
        assert_eq!(o.jobs, 2);
        assert_eq!(o.node_shutdowns, 3, "the three nodes the first job left empty");
        assert_eq!(o.node_boots, 2, "one node stayed on: two more for three processors");
        assert_eq!(
            o.response_ms[1],
            30_000 + 101_000,
            "the boot, then the VMs' boot and the run"
        );
        assert!(
            o.energy_j < 0.5 * o.energy_all_on_j,
            "{} J against {} J",
            o.energy_j,
            o.energy_all_on_j
        );

        let without = run(&cfg_nodes(4), &jobs, &mut |_, _| {});
        assert_eq!(without.node_boots + without.node_shutdowns, 0);
        assert!((without.energy_j - without.energy_all_on_j).abs() < 1e-6);
        // Every node on from 0 to the last end (2,101 s), idle but for 400 core-seconds.
        let m = PowerModel::default();
        let expected = 4.0 * 2101.0 * m.watts_idle + 400.0 * (m.watts_busy - m.watts_idle);
        assert!(
            (without.energy_j - expected).abs() < 1.0,
            "{} vs {expected}",
            without.energy_j
        );
    }

    fn cfg_nodes(nodes: u32) -> SimConfig {
        SimConfig {
            nodes,
            ..cfg(PolicyKind::Easy)
        }
    }

    #[test]
    fn the_context_switch_suspends_a_long_job_for_a_short_one_and_charges_the_cost() {
        // A 10-hour job fills the cluster; a 1-minute job arrives: under vjob it waits until its
        // expansion factor is twice the long job's, then the long job is suspended whole.
        let jobs = [job(0, 36_000, 36_000, 2), job(10, 60, 60, 1)];
        let easy = run(&cfg(PolicyKind::Easy), &jobs, &mut |_, _| {});
        let vjob = run(&cfg(PolicyKind::Vjob), &jobs, &mut |_, _| {});
        assert_eq!(easy.suspends, 0);
        assert_eq!(
            (vjob.suspends, vjob.resumes),
            (2, 2),
            "both VMs of the long job, together"
        );
        let short = |o: &Outcome| o.response_ms[1];
        assert!(short(&vjob) < short(&easy) / 10, "{} vs {}", short(&vjob), short(&easy));
        // The long job pays the switch: more than its run time plus a save and a restore.
        let d = DurationModel::libvirt_lab();
        assert!(vjob.response_ms[0] >= 36_000_000 + d.save(1 << 30) + d.restore(1 << 30));
        assert!(vjob.segments.iter().any(|s| s.phase == Phase::Suspended && s.job == 0));
        // With short preemptions paused in memory (the 1-minute job's memory fits beside the
        // long job's), the long job is paused and unpaused in place: nothing goes to disk.
        let paused = run(
            &SimConfig {
                short_preemption_ms: 300_000,
                defragment: true,
                ..cfg(PolicyKind::Vjob)
            },
            &jobs,
            &mut |_, _| {},
        );
        assert_eq!(
            (paused.pauses, paused.suspends, paused.resumes, paused.bytes_moved),
            (2, 0, 0, 0)
        );
        assert!(paused.segments.iter().any(|s| s.phase == Phase::Paused && s.job == 0));
        assert!(short(&paused) <= short(&vjob), "{} vs {}", short(&paused), short(&vjob));
        assert!(
            paused.response_ms[0] < vjob.response_ms[0],
            "no save nor restore to pay"
        );
        // Deterministic (all but the wall-clock decision times).
        let again = run(&cfg(PolicyKind::Vjob), &jobs, &mut |_, _| {});
        assert_eq!(
            (&again.response_ms, &again.segments, &again.samples),
            (&vjob.response_ms, &vjob.segments, &vjob.samples)
        );
    }
}
