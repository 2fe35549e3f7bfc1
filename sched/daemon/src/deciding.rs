//! Deciding, in the daemon: what it knows turned into the decision builder's input
//! ([`Core::decision_input`], no side effect), the shared builder ([`vjob_core::decision`]),
//! then the decision's effects applied here, by the caller: reasons on the jobs that wait,
//! their history, and the plan handed to the executor.

use std::collections::{BTreeSet, HashSet};
use std::time::Instant;

use vjob_api::{JobState, NodeAdminState};
use vjob_core::decision::{
    self, Ask, Board, Built, DecisionInput, LoadInput, NodeInput, PolicyChoice, Scope, VjobInput, VmAt, VmsAt,
};
use vjob_core::model::NodeIdx;
use vjob_core::plan;
use vjob_core::policy::{self, Decision, Defragment, Limits, PauseRule};
use vjob_core::power;
use vjob_core::resources::cpu_memory;
use vjob_hypervisor::{DomainState, GuestSpec, VmSpec};

use crate::core_loop::{now_ms, Core};
use crate::exec::Run;
use crate::jobs::{parse_vm_name, Job, VmPhase};
use crate::lower::{self, PlannedVms};

/// What the daemon knows, as the decision builder takes it, and the reasons it gives itself
/// for vjobs it keeps out of the decision.
pub struct Inputs {
    pub nodes: Vec<NodeInput>,
    pub load: Vec<LoadInput>,
    pub vjobs: Vec<VjobInput>,
    pub moves: Vec<(u64, usize, NodeIdx)>,
    pub policy: PolicyChoice,
    /// Vjobs that wait for something the policy does not see, and what.
    pub waits: Vec<(u64, String)>,
}

/// The decision board kept across rounds, and what changed since it was last brought up to
/// date: a round then costs what changed, not the cluster.
#[derive(Default)]
pub struct BoardCache {
    board: Option<Board>,
    /// Each node's [`NodeState`], as the board was built: a change rebuilds it.
    nodes: Vec<NodeState>,
    /// Jobs changed since (their records, or what their input depends on).
    pub(crate) jobs: BTreeSet<u64>,
    /// Nodes whose listing changed since.
    pub(crate) listings: BTreeSet<NodeIdx>,
    /// Something all the inputs depend on changed (the queues): build it anew.
    pub(crate) rebuild: bool,
    /// When vjobs protected by their quantum stop being so: (time, job).
    protections: BTreeSet<(u64, u64)>,
}

/// What of a node the kept board's inputs depend on besides the vjobs: whether it takes new
/// VMs, must be left, answers, may hold VMs (a vjob with a stale copy on a node that may hold
/// it waits, whatever the node's other states).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct NodeState {
    accepts: bool,
    offline: bool,
    up: bool,
    may_hold_vms: bool,
}

impl Core {
    fn node_states(&self) -> Vec<NodeState> {
        self.nodes
            .iter()
            .map(|n| NodeState {
                accepts: n.takes_new_vms(),
                offline: n.admin == NodeAdminState::Offline,
                up: n.up,
                may_hold_vms: n.may_hold_vms(),
            })
            .collect()
    }

    fn policy_choice(&self) -> PolicyChoice {
        PolicyChoice::ContextSwitch(Box::new(Limits {
            queues: self
                .rec
                .queues
                .values()
                .map(|q| (q.name.clone(), (q.max_running, q.max_user_running)))
                .collect(),
            pause: PauseRule::keeping_memory(self.cfg.scheduler.short_preemption_ms),
            defragment: Some(Defragment {
                now_ms: now_ms(),
                durations: self.durations.learned,
            }),
            boots: self.cfg.power.as_ref().map(|settings| {
                let nodes: Vec<power::PowerSince> = (self.nodes.iter())
                    .map(|n| {
                        let may_boot = !n.power.by_hand && n.admin == NodeAdminState::Online;
                        (n.power.state, n.power.since_ms, may_boot)
                    })
                    .collect();
                let caps = power::caps(&self.cfg.datacenter.constraints);
                power::boots(&nodes, now_ms(), &settings.rule, &caps, self.durations.learned)
            }),
            ..Default::default()
        }))
    }

    /// Brings the kept board up to date (built anew when the nodes' states or the queues
    /// changed); returns the reasons of the vjobs it keeps out of decisions that were looked at.
    pub(crate) fn sync_board(&mut self) -> Vec<(u64, String)> {
        let now = now_ms();
        let states = self.node_states();
        let mut waits = Vec::new();
        if self.board.board.is_none() || self.board.rebuild || states != self.board.nodes {
            let inputs = self.decision_input();
            let mut board = Board::new(
                inputs.nodes,
                PauseRule::keeping_memory(self.cfg.scheduler.short_preemption_ms),
            );
            board.set_datacenter(self.cfg.datacenter.constraints.clone());
            board.set_load(inputs.load);
            self.board.protections.clear();
            for v in inputs.vjobs {
                self.note_protection(v.id, now);
                board.upsert(v);
            }
            self.board = BoardCache {
                board: Some(board),
                nodes: states,
                protections: std::mem::take(&mut self.board.protections),
                ..Default::default()
            };
            return inputs.waits;
        }
        let mut changed: BTreeSet<u64> = std::mem::take(&mut self.board.jobs);
        changed.extend(self.dirty.jobs.iter().copied());
        while let Some(&(t, id)) = self.board.protections.first() {
            if t > now {
                break;
            }
            self.board.protections.pop_first();
            changed.insert(id);
        }
        let mut listings = std::mem::take(&mut self.board.listings);
        for id in changed {
            listings.extend(self.job_nodes(id));
            let input = self.rec.jobs.get(&id).and_then(|j| self.vjob_input(j, now, &mut waits));
            let board = self.board.board.as_mut().expect("built above");
            match input {
                Some(v) => {
                    board.upsert(v);
                    self.note_protection(id, now);
                }
                None => board.remove(id),
            }
        }
        let stale = self.stale_copies();
        for n in listings {
            let load = self.node_load(n, &stale);
            self.board.board.as_mut().expect("built above").set_node_load(n, load);
        }
        waits
    }

    /// A vjob protected by its quantum is looked at again when the quantum ends.
    fn note_protection(&mut self, id: u64, now: u64) {
        if let Some(j) = self.rec.jobs.get(&id).filter(|j| j.protected_until > now) {
            self.board.protections.insert((j.protected_until, id));
        }
    }

    /// The nodes where a job's VMs (and their stale copies) are, by the records.
    fn job_nodes(&self, id: u64) -> Vec<NodeIdx> {
        let Some(job) = self.rec.jobs.get(&id) else {
            return Vec::new();
        };
        job.vms
            .iter()
            .filter_map(|v| v.node.as_deref())
            .chain(job.stale.iter().map(|(_, n)| n.as_str()))
            .filter_map(|n| self.node_idx(n))
            .collect()
    }

    /// What occupies node `n` outside the board's vjobs: other clusters' VMs, stale copies, the
    /// remains of jobs that ended.
    fn node_load(&self, n: NodeIdx, stale: &HashSet<(String, String)>) -> Vec<LoadInput> {
        let view = &self.nodes[n as usize];
        let board = self.board.board.as_ref();
        view.domains
            .iter()
            .filter(|d| !matches!(d.state, DomainState::Ended { .. } | DomainState::Crashed))
            .filter_map(|d| {
                let is_stale = stale.contains(&(d.name.clone(), view.cfg.name.clone()));
                let on_board = parse_vm_name(&self.cfg.cluster, &d.name)
                    .is_some_and(|(id, _)| board.is_some_and(|b| b.vjob(id).is_some()));
                if on_board && !is_stale {
                    return None;
                }
                Some(LoadInput {
                    name: if is_stale {
                        format!("{}@{}", d.name, view.cfg.name)
                    } else {
                        d.name.clone()
                    },
                    node: n,
                    demand: cpu_memory(d.vcpus as u64, d.memory),
                })
            })
            .collect()
    }

    /// The decision builder's input: nodes, what occupies them, the vjobs. Changes nothing.
    pub(crate) fn decision_input(&self) -> Inputs {
        let now = now_ms();
        let stale = self.stale_copies();
        let mut waits = Vec::new();
        let mut vjobs = Vec::new();
        for job in self.rec.active.iter().filter_map(|id| self.rec.jobs.get(id)) {
            if let Some(v) = self.vjob_input(job, now, &mut waits) {
                vjobs.push(v);
            }
        }
        let theirs: HashSet<u64> = vjobs.iter().map(|v| v.id).collect();
        Inputs {
            nodes: self.node_inputs(),
            load: self.load_inputs(&theirs, &stale),
            vjobs,
            moves: self.manual_move_inputs(),
            policy: self.policy_choice(),
            waits,
        }
    }

    fn node_inputs(&self) -> Vec<NodeInput> {
        self.nodes
            .iter()
            .map(|n| NodeInput {
                name: n.cfg.name.clone(),
                capacity: cpu_memory(n.cfg.cpus as u64, n.cfg.memory),
                accepts: n.takes_new_vms(),
                offline: n.admin == NodeAdminState::Offline,
            })
            .collect()
    }

    /// A job as the decision sees it, or `None` when it has nothing to decide about (over, or
    /// occupying nothing and not allowed to start). A reason to wait that the policy does not
    /// see goes to `waits`.
    fn vjob_input(&self, job: &Job, now: u64, waits: &mut Vec<(u64, String)>) -> Option<VjobInput> {
        if job.state.is_final()
            || job
                .vms
                .iter()
                .any(|v| matches!(v.phase, VmPhase::Ended | VmPhase::Gone))
        {
            return None;
        }
        let queue = self.rec.queues.get(&job.queue)?;
        if let Some(v) = job
            .vms
            .iter()
            .find(|v| self.calls.hung.iter().any(|(h, _)| h == &v.name))
        {
            // A call on one of its VMs never came back: it stays as it is (its VMs count as
            // load) until that call returns.
            waits.push((
                job.id,
                format!("waiting for a hypervisor call on {} that does not answer", v.name),
            ));
            return None;
        }
        let any_running = job.vms.iter().any(|v| v.phase == VmPhase::Running);
        let any_paused = job.vms.iter().any(|v| v.phase == VmPhase::Paused);
        // A copy of one of its VMs on a node that answers is being destroyed: the VM starts
        // again once that is confirmed, never beside it (names are per node). On a node that
        // is on and silent, the copy may still execute: the VM starts again once the node is
        // fenced or answers (chaos seed 906: a vjob requeued for another node's loss started
        // one VM again while its copy went on running on a node cut off, not yet fenced).
        let stale_copy_held = job.stale.iter().find_map(|(vm, n)| {
            let node = &self.nodes[self.node_idx(n)? as usize];
            node.may_hold_vms().then_some((vm, n, node.up))
        });
        if let (Some((vm, node, up)), false) = (stale_copy_held, any_running || any_paused) {
            let why = if up {
                format!("waiting for the stale copy of {vm} on {node} to be destroyed")
            } else {
                format!("waiting for node {node} to answer or be fenced: a stale copy of {vm} may still run there")
            };
            waits.push((job.id, why));
        }
        let dependency_met = match job.spec.dependency.as_ref().filter(|_| job.start_ms.is_none()) {
            None => true,
            Some(dep) => match dep.status(job, &self.rec.jobs) {
                crate::dependency::Status::Met => true,
                crate::dependency::Status::Waiting(w) => {
                    waits.push((job.id, format!("waiting for {w} (dependency)")));
                    false
                }
                crate::dependency::Status::Never(w) => {
                    waits.push((job.id, format!("its dependency can never be met: {w}")));
                    false
                }
            },
        };
        let eligible = queue.started
            && job.state != JobState::Held
            && !job.admin_suspended
            && stale_copy_held.is_none()
            && dependency_met;
        if !any_running && !any_paused && !eligible {
            return None;
        }
        let vms = VmsAt::Each(
            job.vms
                .iter()
                .map(|v| match (v.phase, v.node.as_deref().and_then(|n| self.node_idx(n))) {
                    (VmPhase::Running, Some(h)) => VmAt::Running(h),
                    (VmPhase::Paused, Some(h)) => VmAt::Paused(h),
                    (VmPhase::Sleeping, _) => VmAt::Sleeping,
                    (VmPhase::Ready, _) => VmAt::NotStarted,
                    _ => VmAt::Unknown,
                })
                .collect(),
        );
        Some(VjobInput {
            id: job.id,
            queue: job.queue.clone(),
            queue_priority: queue.priority,
            priority: job.priority,
            submit_ms: job.submit_ms,
            user: job.user.as_str().into(),
            eligible,
            protected: now < job.protected_until || job.admin_suspended,
            admin_suspend: job.admin_suspended && any_running,
            demand: job.spec.vm.demands(),
            vms,
            requested_ms: job.spec.walltime_ms,
            expected_end_ms: (job.state == JobState::Running)
                .then(|| policy::expected_end(now, job.elapsed_ms(now), job.spec.walltime_ms)),
            rules: self.rules.get(&job.id).cloned(),
            group_limit: job.array.and_then(|a| a.throttle.map(|t| (a.id, t))),
            rank: self.fair.rank(job.id),
        })
    }

    /// Everything on a node that no vjob of the decision owns (other clusters' VMs, stale
    /// copies, remains of jobs that ended): load, that never moves.
    fn load_inputs(&self, decided: &HashSet<u64>, stale: &HashSet<(String, String)>) -> Vec<LoadInput> {
        let decided_vms: HashSet<&str> = decided
            .iter()
            .filter_map(|id| self.rec.jobs.get(id))
            .flat_map(|j| j.vms.iter().map(|v| v.name.as_str()))
            .collect();
        let mut load = Vec::new();
        for (n, view) in self.nodes.iter().enumerate() {
            for d in &view.domains {
                let is_stale = stale.contains(&(d.name.clone(), view.cfg.name.clone()));
                if (decided_vms.contains(d.name.as_str()) && !is_stale)
                    || matches!(d.state, DomainState::Ended { .. } | DomainState::Crashed)
                {
                    continue;
                }
                load.push(LoadInput {
                    name: if is_stale {
                        format!("{}@{}", d.name, view.cfg.name)
                    } else {
                        d.name.clone()
                    },
                    node: n as NodeIdx,
                    demand: cpu_memory(d.vcpus as u64, d.memory),
                });
            }
        }
        load
    }

    fn manual_move_inputs(&self) -> Vec<(u64, usize, NodeIdx)> {
        self.rec
            .manual_moves
            .iter()
            .filter_map(|(vm, node)| {
                let (id, idx) = parse_vm_name(&self.cfg.cluster, vm)?;
                Some((id, idx, self.node_idx(node)?))
            })
            .collect()
    }

    /// The policy's decision and the planner instance that carries it out (`always_plan`: even
    /// when nothing is to change, for a snapshot), with the reasons of vjobs kept out of it.
    /// Changes nothing.
    pub(crate) fn build_decision(&self, always_plan: bool, scope: Scope) -> (Built, Vec<(u64, String)>) {
        let inputs = self.decision_input();
        let name = |id: u64, i: usize| self.rec.jobs[&id].vms[i].name.as_str().into();
        let built = decision::build(DecisionInput {
            nodes: inputs.nodes,
            load: inputs.load,
            vjobs: inputs.vjobs,
            policy: &inputs.policy,
            ask: Ask {
                moves: &inputs.moves,
                vm_name: &name,
                durations: &self.durations.learned,
                always_plan,
                scope,
                list_waiting: true,
            },
            datacenter: &self.cfg.datacenter.constraints,
        });
        (built, inputs.waits)
    }

    /// The policy's decision and the planner instance that carries it out, on the kept board,
    /// with the reasons of vjobs kept out of it.
    pub(crate) fn kept_decision(&mut self, scope: Scope) -> (Built, Vec<(u64, String)>) {
        let waits = self.sync_board();
        let policy = self.policy_choice();
        let moves = self.manual_move_inputs();
        let jobs = &self.rec.jobs;
        let name = |id: u64, i: usize| jobs[&id].vms[i].name.as_str().into();
        let ask = Ask {
            moves: &moves,
            vm_name: &name,
            durations: &self.durations.learned,
            always_plan: false,
            scope,
            list_waiting: true,
        };
        let built = self.board.board.as_mut().expect("synced").decide(&policy, &ask);
        (built, waits)
    }

    /// Runs the policy and the planner and starts carrying the plan out.
    pub(crate) fn decide(&mut self) {
        let t0 = Instant::now();
        self.settle_dependencies();
        self.settle_priorities();
        let mut scope = Scope::Touched;
        let (built, inst, plan) = loop {
            let (built, waits) = self.kept_decision(scope);
            self.power.short = self.room_needed(&built.decision.short_of_room);
            self.power.wanted = built.decision.boot.clone();
            if cfg!(debug_assertions) {
                // Debug builds (the tests) hold the kept board to a fresh one at every round.
                let (fresh, _) = self.build_decision(false, scope);
                debug_assert_eq!(built, fresh, "the kept decision board drifted from the records");
            }
            let Some(inst) = built.instance.clone() else {
                self.note_waiting(&built.decision, &waits);
                self.rec.manual_moves.clear();
                return;
            };
            match built.plan.clone().map_or_else(|| plan::solve(&inst), Ok) {
                Ok(p) => {
                    self.note_waiting(&built.decision, &waits);
                    break (built, inst, p);
                }
                // The touched nodes were not enough (a cycle wants a pivot elsewhere): all of them.
                Err(_) if scope == Scope::Touched => scope = Scope::Whole,
                Err(e) => {
                    self.note_waiting(&built.decision, &waits);
                    self.rec.manual_moves.clear();
                    tracing::error!(error = %e, "the planner found no plan; the policy's choice is dropped this round");
                    return;
                }
            }
        };
        self.rec.manual_moves.clear();
        tracing::debug!(
            ms = t0.elapsed().as_millis() as u64,
            actions = plan.actions.len(),
            "planned"
        );
        let decision = built.decision;
        // Pauses and unpauses in memory happen beside the plan (nothing moves).
        let pauses = self.vms_in_phase(decision.pause.iter().map(|(id, _)| *id), VmPhase::Running);
        let unpauses = self.vms_in_phase(decision.run.iter().copied(), VmPhase::Paused);
        if plan.actions.is_empty() && pauses.is_empty() && unpauses.is_empty() {
            return;
        }
        if cfg!(debug_assertions) {
            let errors = vjob_core::check::check(&inst, &plan);
            debug_assert!(errors.is_empty(), "the planner produced an invalid plan: {errors:?}");
        }
        self.record_decision(&decision);
        let vms = PlannedVms {
            refs: &built.vm_refs,
            name: &|id, i| self.rec.jobs[&id].vms[i].name.clone(),
            spec: &|id, i| vm_spec(&self.rec.jobs[&id], i),
            image: &|vm| self.image_path(vm),
        };
        let lowered = lower::lower(&inst.model, &plan, &vms, &pauses, &unpauses);
        tracing::info!(
            actions = plan.actions.len(),
            steps = lowered.steps.len(),
            counts = ?plan.counts(),
            "carrying out a plan"
        );
        self.start_run(Run::new(lowered.steps), lowered.effects, lowered.touched);
    }

    /// What each VM not running of each of these vjobs needs (processors, memory).
    fn room_needed(&self, ids: &[u64]) -> Vec<Vec<[u64; 2]>> {
        let vms = |job: &crate::jobs::Job| -> Vec<[u64; 2]> {
            (job.vms.iter().enumerate())
                .filter(|(_, v)| matches!(v.phase, VmPhase::Ready | VmPhase::Sleeping))
                .map(|(i, _)| {
                    let shape = job.spec.vm.shape(i);
                    [shape.vcpus as u64, shape.memory]
                })
                .collect()
        };
        ids.iter().filter_map(|id| self.rec.jobs.get(id)).map(vms).collect()
    }

    /// The reasons the vjobs wait, the policy's and `waits` (those outside its view), on their
    /// records.
    fn note_waiting(&mut self, decision: &Decision, waits: &[(u64, String)]) {
        let the_policys = decision.waiting.iter().map(|(id, why)| (id, &**why));
        for (id, why) in the_policys.chain(waits.iter().map(|(id, why)| (id, why.as_str()))) {
            if let Some(job) = self.rec.jobs.get_mut(id) {
                if job.reason.as_deref() != Some(why) {
                    job.reason = Some(why.to_string());
                    self.dirty.jobs.insert(*id);
                }
            }
        }
    }

    /// A decision's suspensions, pauses and resumptions, in the jobs' records and history.
    fn record_decision(&mut self, decision: &Decision) {
        let now = now_ms();
        for (id, by) in &decision.suspend {
            if let Some(job) = self.rec.jobs.get_mut(id) {
                let msg = match by {
                    Some(b) => format!("preempted by job {b}: suspending"),
                    None if job.admin_suspended => "suspended by an administrator".to_string(),
                    None => "no room left for its VMs: suspending".to_string(),
                };
                if by.is_some() {
                    job.preemptions += 1;
                }
                // Its VMs stop running now (paused, then saved): so does its clock.
                if job.set_state(JobState::Suspended, now).is_ok() {
                    self.calls.suspending.insert(*id);
                }
                job.reason = Some(msg.clone());
                job.event(now, msg);
                self.dirty.jobs.insert(*id);
            }
        }
        for (id, by) in &decision.pause {
            if let Some(job) = self.rec.jobs.get_mut(id) {
                let msg = format!("preempted by job {by}: paused in memory");
                job.preemptions += 1;
                let _ = job.set_state(JobState::Suspended, now);
                job.reason = Some(msg.clone());
                job.event(now, msg);
                self.dirty.jobs.insert(*id);
            }
        }
        for id in &decision.run {
            if let Some(job) = self.rec.jobs.get(id) {
                if job.state == JobState::Suspended && job.preemptions > 0 {
                    self.calls.resuming.insert(*id);
                }
            }
        }
    }

    /// The VMs of these jobs in `phase`, with their nodes: (job, VM index, node).
    fn vms_in_phase(&self, ids: impl Iterator<Item = u64>, phase: VmPhase) -> Vec<(u64, usize, String)> {
        let mut out = Vec::new();
        for (id, job) in ids.filter_map(|id| Some((id, self.rec.jobs.get(&id)?))) {
            for (i, v) in job.vms.iter().enumerate() {
                if let (true, Some(node)) = (v.phase == phase, &v.node) {
                    out.push((id, i, node.clone()));
                }
            }
        }
        out
    }
}

/// What VM `idx` of `job` boots: its size, its guest and the guest's environment.
pub fn vm_spec(job: &Job, idx: usize) -> VmSpec {
    let mut env = vec![
        ("VJOB_ID".to_string(), job.id.to_string()),
        ("VJOB_NAME".to_string(), job.name.clone()),
        ("VJOB_VM_INDEX".to_string(), idx.to_string()),
        (
            "VJOB_VM_SCRIPT_NAME".to_string(),
            job.spec
                .placement
                .as_ref()
                .and_then(|p| p.names.get(idx).cloned())
                .unwrap_or_default(),
        ),
        ("VJOB_VM_COUNT".to_string(), job.vms.len().to_string()),
        ("VJOB_USER".to_string(), job.user.clone()),
    ];
    if let Some(a) = job.array {
        env.push(("VJOB_ARRAY_ID".to_string(), a.id.to_string()));
        env.push(("VJOB_ARRAY_INDEX".to_string(), a.index.to_string()));
    }
    let shape = job.spec.vm.shape(idx);
    VmSpec {
        name: job.vms[idx].name.clone(),
        vcpus: shape.vcpus,
        memory: shape.memory,
        guest: GuestSpec {
            image: shape.image,
            script: job.spec.run.script.clone(),
            env,
            output: job.spec.run.output.as_ref().map(std::path::PathBuf::from),
            sim_runtime_ms: job.spec.run.sim_runtime_ms,
            sim_exit_code: job.spec.run.sim_exit_code,
        },
    }
}
