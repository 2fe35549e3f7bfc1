//! The core loop of `vjobd`: the single owner of all state.
//!
//! Each turn it takes what arrived: client commands (answered only once their changes are
//! committed, all those of a turn in one transaction), the results of hypervisor calls, and the
//! nodes' reports. Then, when something changed and no plan is being carried out, it decides:
//! the policy picks the vjobs to run and suspend, the planner computes the plan, the executor
//! carries it out. What the nodes report is the truth: records follow it ([`Core::reconcile`]),
//! so a restart after `kill -9` adopts the VMs that still run and finishes what was half done.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use crossbeam_channel::{select, Receiver};
use vjob_api::{ApiError, JobState, NodeAdminState, Response};
use vjob_hypervisor::duration::Action;
use vjob_hypervisor::{DomainInfo, DomainState, DurationModel, GuestSpec, VmSpec};

use super::{Answer, Command, NodeAnswer, Observation};
use crate::config::{Config, NodeConfig};
use crate::exec::{Backends, Executor, Op, OpDone, Run, Step, StepState};
use crate::jobs::{parse_vm_name, Job, NodeRecord, Queue, VmPhase};
use crate::model::{Model, NodeIdx, VmIdx, VmState, NO_NODE};
use crate::plan::place::Placer;
use crate::plan::{self, ActionKind, Constraint, Instance};
use crate::policy::{self, Candidate, DecisionInstance, Limits, PauseRule, Standing};
use crate::store::{Batch, Store};

/// Where VM `vm` is saved.
fn image_file(image_dir: &std::path::Path, vm: &str) -> PathBuf {
    image_dir.join(format!("{vm}.img"))
}

/// Milliseconds since the Unix epoch.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Shortest time between two decisions: a burst of submissions is decided on together.
const DECISION_SPACING: Duration = Duration::from_millis(100);
/// Most commands handled (and committed) in one turn.
const MAX_BATCH: usize = 4096;

/// A node as the core knows it.
pub struct NodeView {
    pub cfg: NodeConfig,
    pub admin: NodeAdminState,
    /// Its last report succeeded.
    pub up: bool,
    /// When it stopped answering.
    pub down_since: Option<Instant>,
    pub domains: Vec<DomainInfo>,
}

/// What a step of a run changes in the records when it succeeds.
#[derive(Debug, Clone)]
enum Effect {
    None,
    Arrived { job: u64, vm: usize, node: String },
    Migrated { job: u64, vm: usize, node: String },
    Saved { job: u64, vm: usize },
    Paused { job: u64, vm: usize },
    Destroyed { job: u64, vm: usize },
}

/// Writes what a finished job's VMs printed (between the guest's begin and exit markers) to the
/// job's output file, VM after VM; removes the consoles. `None` when the backend keeps no
/// console (the simulated one).
fn collect_output(backends: &Backends, state_dir: &std::path::Path, job: &Job) -> std::io::Result<Option<PathBuf>> {
    let mut text = String::new();
    let mut any = false;
    for (i, v) in job.vms.iter().enumerate() {
        let Some(console) = v
            .node
            .as_ref()
            .and_then(|n| backends.get(n))
            .and_then(|b| b.console_log(&v.name))
        else {
            continue;
        };
        let Ok(raw) = std::fs::read_to_string(&console) else {
            continue;
        };
        any = true;
        if job.vms.len() > 1 {
            text.push_str(&format!("== VM {i} ({}) ==\n", v.name));
        }
        let mut inside = false;
        for line in raw.lines() {
            let line = line.trim_end_matches('\r');
            if line.starts_with("VJOB-BEGIN") {
                inside = true;
            } else if line.starts_with("VJOB-EXIT: ") {
                inside = false;
            } else if inside {
                text.push_str(line);
                text.push('\n');
            }
        }
        let _ = std::fs::remove_file(&console);
    }
    if !any {
        return Ok(None);
    }
    let path = job.output_path(state_dir);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(&path, text)?;
    Ok(Some(path))
}

/// What the scheduler would do now: the policy's decision and the planner's instance.
pub struct PlanInput {
    pub decision: policy::Decision,
    pub instance: Instance,
    pub vm_refs: Vec<Option<(u64, usize)>>,
}

/// A cleanup call outside plans (destroying ended or cancelled VMs, removing images, unpausing,
/// destroying stale copies).
#[derive(Debug, Clone)]
struct Cleanup {
    job: u64,
    vm: usize,
    gone_after: bool,
    /// Destroys the stale copy on this node: its record goes once the destroy is confirmed.
    stale_on: Option<String>,
}

/// Where a VM's copies were found in one round: (node, what the node says), for every node that
/// listed one. Names are unique per node only: a copy left on a node that was down may sit beside
/// the live one elsewhere.
type Found = HashMap<String, Vec<(String, DomainInfo)>>;

/// The copy of a VM to take for the real one: the one on its recorded node, else a running one,
/// else any.
fn pick_copy<'a>(
    copies: Option<&'a Vec<(String, DomainInfo)>>,
    recorded: Option<&str>,
) -> Option<&'a (String, DomainInfo)> {
    let copies = copies?;
    copies
        .iter()
        .find(|(n, _)| Some(n.as_str()) == recorded)
        .or_else(|| copies.iter().find(|(_, d)| d.state == DomainState::Running))
        .or_else(|| copies.first())
}

/// The memory of the VM a call is about, if it is one of this cluster's jobs'.
fn op_memory(jobs: &BTreeMap<u64, Job>, cfg: &Config, op: &Op) -> Option<u64> {
    match op {
        Op::Boot { spec, .. } => Some(spec.memory),
        op => parse_vm_name(&cfg.cluster, op.vm())
            .and_then(|(id, _)| jobs.get(&id))
            .map(|j| j.spec.vm.memory),
    }
}

/// How long a call may take before it is given up on: the configured action timeout, or five
/// times what the model says it takes, if longer (a large VM's save is slow, not hung).
fn call_deadline(jobs: &BTreeMap<u64, Job>, cfg: &Config, model: &DurationModel, op: &Op) -> Duration {
    let memory = op_memory(jobs, cfg, op).unwrap_or(0);
    let modeled = match op {
        Op::Boot { .. } => model.boot(memory),
        Op::Restore { .. } => model.restore(memory),
        Op::Save { .. } => model.save(memory),
        Op::Migrate { .. } => model.migrate(memory),
        Op::Pause { .. } | Op::Unpause { .. } => model.pause(),
        Op::Destroy { .. } => model.destroy(memory),
        Op::RemoveImage { .. } => 0,
    };
    Duration::from_millis(cfg.scheduler.action_timeout_ms.max(modeled.saturating_mul(5)))
}

/// The key of a call in flight: the VM and the node it is made on (`""` for image removals).
fn call_key(op: &Op) -> (String, String) {
    (op.vm().to_string(), op.node().unwrap_or("").to_string())
}

pub struct Core {
    pub(super) cfg: Config,
    store: Store,
    exec: Executor,
    backends: Backends,
    pub(super) jobs: BTreeMap<u64, Job>,
    /// Jobs not final, or final with VMs or images left to clean up.
    pub(super) active: BTreeSet<u64>,
    pub(super) queues: BTreeMap<String, Queue>,
    pub(super) nodes: Vec<NodeView>,
    node_index: HashMap<String, NodeIdx>,
    pub(super) next_id: u64,
    run: Option<(Run, Vec<Effect>, BTreeSet<u64>)>,
    /// Jobs being resumed by the current run after a preemption.
    resuming: BTreeSet<u64>,
    /// Jobs being suspended by the current run.
    suspending: BTreeSet<u64>,
    cleanups: HashMap<u64, Cleanup>,
    /// Cleanup calls in flight, by (VM, node).
    busy: HashSet<(String, String)>,
    /// Calls given up on past their deadline and not returned yet, by (VM, node): their VMs
    /// are busy.
    hung: HashSet<(String, String)>,
    changed_at: HashMap<String, Instant>,
    pub(super) dirty_jobs: BTreeSet<u64>,
    pub(super) dirty_queues: BTreeSet<String>,
    pub(super) deleted_queues: Vec<String>,
    pub(super) dirty_nodes: BTreeSet<String>,
    pub(super) need_decision: bool,
    last_decision: Instant,
    last_run_end: Instant,
    last_obs: Option<Instant>,
    /// VMs an administrator asked to move: VM name -> node.
    pub(super) manual_moves: BTreeMap<String, String>,
    orphans_reported: HashSet<String>,
    /// Jobs' JSON for listings, for jobs whose listing does not change by itself (not running);
    /// an entry is dropped whenever its job is written.
    pub(super) json_cache: HashMap<u64, Box<str>>,
    /// The action durations the planner uses: the configured model, corrected by every action
    /// measured on the nodes since (kept across restarts while the configured model is unchanged).
    pub(super) durations: LearnedDurations,
    /// Decision rounds taken (the policy consulted) since the daemon started.
    pub(super) rounds: u64,
    /// Node reports taken in since the daemon started.
    pub(super) observations: u64,
}

/// Action durations learned from measurements, and the configured model they started from.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LearnedDurations {
    pub configured: DurationModel,
    pub learned: DurationModel,
    /// Measurements folded in so far.
    pub samples: u64,
    #[serde(skip)]
    dirty: bool,
}

impl LearnedDurations {
    const KEY: &'static str = "durations";

    fn load(store: &Store, configured: DurationModel) -> anyhow::Result<LearnedDurations> {
        let fresh = LearnedDurations {
            configured,
            learned: configured,
            samples: 0,
            dirty: false,
        };
        let Some(text) = store.meta(Self::KEY)? else {
            return Ok(fresh);
        };
        match serde_json::from_str::<LearnedDurations>(&text) {
            Ok(saved) if saved.configured == configured => Ok(saved),
            Ok(_) => {
                tracing::info!("the configured action durations changed: measurements start over");
                Ok(fresh)
            }
            Err(e) => {
                tracing::warn!(error = %e, "unreadable learned durations: measurements start over");
                Ok(fresh)
            }
        }
    }

    /// Folds in the measured duration of a call that succeeded.
    fn observe(&mut self, op: &Op, memory: u64, ms: u64) {
        let action = match op {
            Op::Boot { .. } => Action::Boot,
            Op::Restore { .. } => Action::Restore,
            Op::Pause { .. } | Op::Unpause { .. } => Action::Pause,
            Op::Save { .. } => Action::Save,
            Op::Migrate { .. } => Action::Migrate,
            Op::Destroy { .. } => Action::Destroy,
            Op::RemoveImage { .. } => return,
        };
        self.learned.observe(action, memory, ms);
        self.samples += 1;
        self.dirty = true;
    }
}

impl Core {
    /// Loads the state and takes a first look at the nodes.
    pub fn open(cfg: Config, exec: Executor, backends: &Backends, first: Observation) -> anyhow::Result<Core> {
        let store = Store::open(&cfg.state_dir)?;
        let mut queues = BTreeMap::new();
        let initialized = store.initialized()?;
        for q in store.queues()? {
            queues.insert(q.name.clone(), q);
        }
        let mut dirty_queues = BTreeSet::new();
        if !initialized {
            for q in &cfg.queues {
                queues.insert(
                    q.name.clone(),
                    Queue {
                        name: q.name.clone(),
                        priority: q.priority,
                        enabled: q.enabled,
                        started: q.started,
                        default: q.default,
                        max_running: q.max_running,
                        max_user_running: q.max_user_running,
                    },
                );
                dirty_queues.insert(q.name.clone());
            }
        }
        let admin_states: HashMap<String, NodeAdminState> =
            store.nodes()?.into_iter().map(|n| (n.name, n.state)).collect();
        let nodes: Vec<NodeView> = cfg
            .nodes
            .iter()
            .map(|n| NodeView {
                cfg: n.clone(),
                admin: admin_states.get(&n.name).copied().unwrap_or(NodeAdminState::Online),
                up: true,
                down_since: None,
                domains: Vec::new(),
            })
            .collect();
        let node_index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.cfg.name.clone(), i as NodeIdx))
            .collect();
        let mut jobs = BTreeMap::new();
        let mut active = BTreeSet::new();
        for j in store.jobs().context("loading the jobs")? {
            if !j.state.is_final() || j.has_remains() {
                active.insert(j.id);
            }
            jobs.insert(j.id, j);
        }
        let next_id = jobs.keys().next_back().map(|id| id + 1).unwrap_or(1);
        tracing::info!(
            jobs = jobs.len(),
            active = active.len(),
            queues = queues.len(),
            nodes = nodes.len(),
            "state loaded"
        );
        let durations = LearnedDurations::load(&store, cfg.hypervisor.durations)?;
        let now = Instant::now();
        let mut core = Core {
            cfg,
            store,
            exec,
            backends: backends.clone(),
            jobs,
            active,
            queues,
            nodes,
            node_index,
            next_id,
            run: None,
            resuming: BTreeSet::new(),
            suspending: BTreeSet::new(),
            cleanups: HashMap::new(),
            busy: HashSet::new(),
            hung: HashSet::new(),
            changed_at: HashMap::new(),
            dirty_jobs: BTreeSet::new(),
            dirty_queues,
            deleted_queues: Vec::new(),
            dirty_nodes: BTreeSet::new(),
            need_decision: true,
            last_decision: now - DECISION_SPACING,
            last_run_end: now,
            last_obs: None,
            manual_moves: BTreeMap::new(),
            orphans_reported: HashSet::new(),
            json_cache: HashMap::new(),
            durations,
            rounds: 0,
            observations: 0,
        };
        // Adopt what runs before deciding anything.
        core.reconcile(first);
        core.flush()
            .context("writing the state after adopting the running VMs")?;
        Ok(core)
    }

    /// The loop: runs until the command channel closes.
    pub fn run(mut self, cmds: Receiver<Command>, obs: Receiver<Observation>, done: Receiver<OpDone>) {
        let tick = Duration::from_millis(self.cfg.scheduler.poll_ms.max(10));
        loop {
            select! {
                recv(cmds) -> c => match c {
                    Ok(c) => {
                        let mut batch = vec![c];
                        while batch.len() < MAX_BATCH {
                            match cmds.try_recv() {
                                Ok(c) => batch.push(c),
                                Err(_) => break,
                            }
                        }
                        self.handle_batch(batch);
                    }
                    Err(_) => {
                        tracing::info!("command channel closed: stopping");
                        let _ = self.flush();
                        return;
                    }
                },
                recv(done) -> d => {
                    if let Ok(d) = d {
                        self.on_done(d);
                        while let Ok(d) = done.try_recv() {
                            self.on_done(d);
                        }
                    }
                },
                recv(obs) -> o => {
                    if let Ok(o) = o {
                        self.reconcile(o);
                        self.check_walltimes();
                    }
                },
                default(tick) => {}
            }
            self.give_up_overdue_calls();
            self.maybe_decide();
            if let Err(e) = self.flush() {
                tracing::error!(error = %e, "cannot write the state; will retry");
            }
        }
    }

    fn handle_batch(&mut self, batch: Vec<Command>) {
        let mut replies = Vec::with_capacity(batch.len());
        let mut submitted = Vec::new();
        for c in batch {
            let answer = match c.op {
                // Large listings are assembled from cached JSON, not built and serialized anew.
                vjob_api::Op::Jobs(q) => Ok(Answer::Line(self.jobs_line(&q))),
                op => self.handle(&c.who, op).map(|r| {
                    if let vjob_api::Reply::Submitted { id } = &r {
                        submitted.push(*id);
                    }
                    Answer::Response(Response::new(Ok(r)))
                }),
            };
            replies.push((c.reply, answer));
        }
        if let Err(e) = self.flush() {
            tracing::error!(error = %e, "cannot commit a batch of requests");
            // Nothing of this batch is acknowledged: forget the jobs it created.
            for id in submitted {
                self.jobs.remove(&id);
                self.active.remove(&id);
                self.dirty_jobs.remove(&id);
            }
            for (reply, _) in replies {
                let err = ApiError::unavailable(format!("the state could not be written: {e}"));
                let _ = reply.send(Answer::Response(Response::new(Err(err))));
            }
            return;
        }
        for (reply, answer) in replies {
            let answer = answer.unwrap_or_else(|e| Answer::Response(Response::new(Err(e))));
            let _ = reply.send(answer);
        }
    }

    /// Writes every pending change in one transaction.
    pub(super) fn flush(&mut self) -> Result<(), crate::store::StoreError> {
        let jobs: Vec<&Job> = self.dirty_jobs.iter().filter_map(|id| self.jobs.get(id)).collect();
        let queues: Vec<&Queue> = self.dirty_queues.iter().filter_map(|n| self.queues.get(n)).collect();
        let node_records: Vec<NodeRecord> = self
            .dirty_nodes
            .iter()
            .filter_map(|n| self.nodes.iter().find(|v| &v.cfg.name == n))
            .map(|v| NodeRecord {
                name: v.cfg.name.clone(),
                state: v.admin,
            })
            .collect();
        let mut meta = Vec::new();
        if self.durations.dirty {
            meta.push((
                LearnedDurations::KEY,
                serde_json::to_string(&self.durations).expect("durations serialize"),
            ));
        }
        let batch = Batch {
            jobs,
            queues,
            deleted_queues: self.deleted_queues.clone(),
            nodes: node_records.iter().collect(),
            meta,
        };
        if batch.is_empty() {
            return Ok(());
        }
        self.store.write(&batch)?;
        for id in &self.dirty_jobs {
            self.json_cache.remove(id);
        }
        self.dirty_jobs.clear();
        self.dirty_queues.clear();
        self.deleted_queues.clear();
        self.dirty_nodes.clear();
        self.durations.dirty = false;
        Ok(())
    }

    pub(super) fn touch(&mut self, id: u64) {
        self.dirty_jobs.insert(id);
    }

    pub(super) fn image_path(&self, vm: &str) -> PathBuf {
        image_file(&self.cfg.hypervisor.image_dir, vm)
    }

    /// The VMs of these jobs in `phase`, with their nodes: (job, VM index, node).
    fn vms_in_phase(&self, ids: impl Iterator<Item = u64>, phase: VmPhase) -> Vec<(u64, usize, String)> {
        let mut out = Vec::new();
        for (id, job) in ids.filter_map(|id| Some((id, self.jobs.get(&id)?))) {
            for (i, v) in job.vms.iter().enumerate() {
                if let (true, Some(node)) = (v.phase == phase, &v.node) {
                    out.push((id, i, node.clone()));
                }
            }
        }
        out
    }

    pub(super) fn node_idx(&self, name: &str) -> Option<NodeIdx> {
        self.node_index.get(name).copied()
    }

    /// Whether a plan is being carried out.
    pub(super) fn plan_running(&self) -> bool {
        self.run.is_some()
    }

    /// Whether a VM has a call in flight, on any node.
    fn is_busy(&self, vm: &str) -> bool {
        self.busy.iter().chain(&self.hung).any(|(v, _)| v == vm)
            || self.run.as_ref().is_some_and(|(r, _, _)| r.touches(vm))
    }

    /// Whether a VM's copy on `node` has a call in flight.
    fn is_busy_at(&self, vm: &str, node: &str) -> bool {
        let key = (vm.to_string(), node.to_string());
        self.busy.contains(&key)
            || self.hung.contains(&key)
            || self.hung.contains(&(vm.to_string(), String::new()))
            || self.run.as_ref().is_some_and(|(r, _, _)| r.touches_at(vm, node))
    }

    // ----- results of hypervisor calls -----

    /// Gives up on the calls past their deadlines: each fails as if the node had refused it,
    /// and its VM stays busy until the call returns.
    fn give_up_overdue_calls(&mut self) {
        for d in self.exec.overdue() {
            tracing::warn!(op = %d.op.describe(), ms = d.millis, "hypervisor call past its deadline: given up on");
            self.hung.insert(call_key(&d.op));
            self.take_result(d);
        }
    }

    /// A call returned.
    fn on_done(&mut self, d: OpDone) {
        if self.exec.finished(d.id) {
            // Given up on earlier: it already counted as failed; what it did, the next listing
            // shows.
            tracing::warn!(op = %d.op.describe(), ms = d.millis, result = ?d.result, "a call given up on returned");
            self.changed_at.insert(d.op.vm().to_string(), Instant::now());
            self.hung.remove(&call_key(&d.op));
            self.need_decision = true;
            return;
        }
        self.take_result(d);
    }

    /// Takes in a call's outcome: the records, the run it belongs to, what it measured.
    fn take_result(&mut self, d: OpDone) {
        let vm = d.op.vm().to_string();
        self.changed_at.insert(vm.clone(), Instant::now());
        if let Err(e) = &d.result {
            tracing::warn!(op = %d.op.describe(), error = %e, "hypervisor call failed");
        } else {
            tracing::debug!(op = %d.op.describe(), ms = d.millis, "hypervisor call done");
            let memory = op_memory(&self.jobs, &self.cfg, &d.op);
            if let Some(memory) = memory {
                self.durations.observe(&d.op, memory, d.millis);
            }
        }
        if let Some(c) = self.cleanups.remove(&d.id) {
            self.busy.remove(&call_key(&d.op));
            if let (Ok(()), Some(node)) = (&d.result, &c.stale_on) {
                self.forget_stale_copy(c.job, &vm, node);
            }
            if d.result.is_ok() && c.gone_after {
                if let Some(job) = self.jobs.get_mut(&c.job) {
                    if let Some(v) = job.vms.get_mut(c.vm) {
                        if v.phase != VmPhase::Ended || job.state.is_final() {
                            v.phase = VmPhase::Gone;
                        }
                    }
                    self.dirty_jobs.insert(c.job);
                }
            }
            return;
        }
        let Some((run, effects, _)) = self.run.as_mut() else {
            return;
        };
        let Some(step) = run.finish(&d) else { return };
        if d.result.is_ok() {
            let effect = effects[step].clone();
            self.apply_effect(effect);
        }
        let max = self.cfg.scheduler.max_parallel_actions;
        let (run, _, _) = self.run.as_mut().expect("checked above");
        let (jobs, cfg, model) = (&self.jobs, &self.cfg, &self.durations.learned);
        run.start_ready(&mut self.exec, max, |op| call_deadline(jobs, cfg, model, op));
        if run.is_over() {
            self.end_run();
        }
    }

    fn apply_effect(&mut self, effect: Effect) {
        let (job, vm) = match &effect {
            Effect::None => return,
            Effect::Arrived { job, vm, .. }
            | Effect::Migrated { job, vm, .. }
            | Effect::Saved { job, vm }
            | Effect::Paused { job, vm }
            | Effect::Destroyed { job, vm } => (*job, *vm),
        };
        let Some(j) = self.jobs.get_mut(&job) else { return };
        let Some(v) = j.vms.get_mut(vm) else { return };
        match effect {
            Effect::Arrived { node, .. } => {
                v.phase = VmPhase::Running;
                v.node = Some(node);
            }
            Effect::Migrated { node, .. } => {
                let msg = format!(
                    "VM {} migrated live from {} to {node}",
                    v.name,
                    v.node.as_deref().unwrap_or("?")
                );
                v.phase = VmPhase::Running;
                v.node = Some(node);
                j.event(now_ms(), msg);
            }
            Effect::Saved { .. } => v.phase = VmPhase::Sleeping,
            Effect::Paused { .. } => v.phase = VmPhase::Paused,
            Effect::Destroyed { .. } => v.phase = VmPhase::Gone,
            Effect::None => {}
        }
        self.dirty_jobs.insert(job);
    }

    fn end_run(&mut self) {
        let Some((run, _, touched)) = self.run.take() else {
            return;
        };
        let now = now_ms();
        let took = run.started_at.map(|t| t.elapsed().as_millis()).unwrap_or(0);
        if run.failures.is_empty() {
            tracing::info!(steps = run.steps.len(), ms = took as u64, "plan carried out");
        } else {
            tracing::warn!(steps = run.steps.len(), failures = ?run.failures, "plan partly failed; planning again from what the nodes report");
        }
        for id in touched {
            let resumed = self.resuming.remove(&id);
            let quantum = self.cfg.scheduler.quantum_ms;
            let suspending = self.suspending.remove(&id);
            let Some(job) = self.jobs.get_mut(&id) else { continue };
            let before = job.state;
            if suspending && job.vms.iter().all(|v| v.phase == VmPhase::Sleeping) {
                job.event(now, "suspended to disk");
            }
            if job.settle_state(now) {
                let nodes: Vec<&str> = job.vms.iter().filter_map(|v| v.node.as_deref()).collect();
                let msg = match job.state {
                    JobState::Running if before == JobState::Queued => format!("started on {}", nodes.join(",")),
                    JobState::Running => format!("resumed on {}", nodes.join(",")),
                    JobState::Suspended => "suspended to disk".to_string(),
                    s => s.as_str().to_string(),
                };
                job.event(now, msg);
                job.reason = None;
            }
            if job.state == JobState::Running && resumed {
                job.protected_until = now + quantum;
            }
            let failed: Vec<String> = run
                .failures
                .iter()
                .filter(|f| job.vms.iter().any(|v| f.contains(&v.name)))
                .cloned()
                .collect();
            for f in failed {
                job.event(now, format!("failed: {f}"));
                job.reason = Some(f);
            }
            self.dirty_jobs.insert(id);
        }
        self.last_run_end = Instant::now();
        self.need_decision = true;
    }

    // ----- what the nodes report -----

    /// Brings the records in line with what the nodes report.
    pub(super) fn reconcile(&mut self, obs: Observation) {
        let now = now_ms();
        self.observations += 1;
        let listed = self.take_reports(obs.nodes);
        self.requeue_from_lost_nodes(now);
        // Copies of requeued jobs' VMs left on nodes: never taken for the real ones.
        let stale = self.stale_copies();
        let mut found: Found = HashMap::new();
        for view in self.nodes.iter().filter(|n| listed.contains(&n.cfg.name)) {
            for d in &view.domains {
                if !stale.contains(&(d.name.clone(), view.cfg.name.clone())) {
                    found
                        .entry(d.name.clone())
                        .or_default()
                        .push((view.cfg.name.clone(), d.clone()));
                }
            }
        }
        self.destroy_stale_copies(&listed);
        let all_listed = listed.len() == self.nodes.len();
        let active: Vec<u64> = self.active.iter().copied().collect();
        let mut ours: HashSet<String> = HashSet::new();
        for id in active {
            let Some(job) = self.jobs.get(&id) else { continue };
            // Fast path: a job that never ran has nothing to reconcile.
            if !job.state.is_final()
                && job
                    .vms
                    .iter()
                    .all(|v| v.phase == VmPhase::Ready && !found.contains_key(&v.name))
            {
                continue;
            }
            let mut job = self.jobs.remove(&id).expect("looked up above");
            let final_state = job.state.is_final();
            let mut ops: Vec<(Op, usize, bool)> = Vec::new();
            let mut changed = false;
            for (i, v) in job.vms.iter_mut().enumerate() {
                ours.insert(v.name.clone());
                if self.is_busy(&v.name) || self.changed_at.get(&v.name).is_some_and(|t| *t > obs.started) {
                    continue;
                }
                let here = pick_copy(found.get(&v.name), v.node.as_deref());
                let recorded_node_listed = v.node.as_ref().is_none_or(|n| listed.contains(n));
                let image = self.image_path(&v.name);
                if final_state {
                    // Tear down what is left of a finished job.
                    match here {
                        Some((node, _)) => ops.push((
                            Op::Destroy {
                                node: node.clone(),
                                vm: v.name.clone(),
                            },
                            i,
                            true,
                        )),
                        None if image.exists() => ops.push((
                            Op::RemoveImage {
                                vm: v.name.clone(),
                                image,
                            },
                            i,
                            true,
                        )),
                        None if (recorded_node_listed || all_listed) && v.phase != VmPhase::Gone => {
                            v.phase = VmPhase::Gone;
                            changed = true;
                        }
                        None => {}
                    }
                    continue;
                }
                match (v.phase, here) {
                    (VmPhase::Running | VmPhase::Ready | VmPhase::Sleeping, Some((node, d))) => match d.state {
                        DomainState::Running | DomainState::Paused => {
                            if v.phase != VmPhase::Running || v.node.as_deref() != Some(node) {
                                tracing::info!(vm = %v.name, node = %node, "adopting a VM found running");
                                v.phase = VmPhase::Running;
                                v.node = Some(node.clone());
                                changed = true;
                            }
                            if d.state == DomainState::Paused && !d.busy && job.state == JobState::Running {
                                ops.push((
                                    Op::Unpause {
                                        node: node.clone(),
                                        vm: v.name.clone(),
                                    },
                                    i,
                                    false,
                                ));
                            }
                        }
                        DomainState::Ended { exit_code } => {
                            v.phase = VmPhase::Ended;
                            v.exit_code = Some(exit_code);
                            v.node = Some(node.clone());
                            changed = true;
                            ops.push((
                                Op::Destroy {
                                    node: node.clone(),
                                    vm: v.name.clone(),
                                },
                                i,
                                false,
                            ));
                        }
                        DomainState::Crashed => {
                            v.phase = VmPhase::Ended;
                            v.exit_code = None;
                            changed = true;
                            job.reason = Some(format!("VM {} crashed on {node}", v.name));
                            ops.push((
                                Op::Destroy {
                                    node: node.clone(),
                                    vm: v.name.clone(),
                                },
                                i,
                                false,
                            ));
                        }
                    },
                    (VmPhase::Running | VmPhase::Paused, None) if recorded_node_listed => {
                        if image.exists() {
                            tracing::info!(vm = %v.name, "found saved while the daemon was away");
                            v.phase = VmPhase::Sleeping;
                        } else {
                            tracing::error!(vm = %v.name, "VM vanished from its node");
                            v.phase = VmPhase::Gone;
                            job.reason = Some(format!(
                                "VM {} vanished from node {}",
                                v.name,
                                v.node.as_deref().unwrap_or("?")
                            ));
                        }
                        changed = true;
                    }
                    (VmPhase::Sleeping, None) if all_listed && !image.exists() => {
                        tracing::error!(vm = %v.name, image = %image.display(), "saved image missing");
                        v.phase = VmPhase::Gone;
                        job.reason = Some(format!("the saved image of VM {} is missing", v.name));
                        changed = true;
                    }
                    (VmPhase::Ended, Some((node, _))) => ops.push((
                        Op::Destroy {
                            node: node.clone(),
                            vm: v.name.clone(),
                        },
                        i,
                        false,
                    )),
                    (VmPhase::Gone, Some((node, _))) => ops.push((
                        Op::Destroy {
                            node: node.clone(),
                            vm: v.name.clone(),
                        },
                        i,
                        false,
                    )),
                    _ => {}
                }
            }
            // A job whose VMs have all ended (or vanished) is over.
            if !job.state.is_final()
                && job
                    .vms
                    .iter()
                    .all(|v| matches!(v.phase, VmPhase::Ended | VmPhase::Gone))
            {
                let lost = job.vms.iter().any(|v| v.exit_code.is_none());
                let code = job.vms_exit_code();
                let (to, msg) = if lost {
                    (
                        JobState::Failed,
                        format!(
                            "failed: {}",
                            job.reason.clone().unwrap_or_else(|| "a VM was lost".into())
                        ),
                    )
                } else if code == 0 {
                    (JobState::Completed, "completed, exit code 0".to_string())
                } else {
                    (JobState::Failed, format!("failed, exit code {code}"))
                };
                if job.set_state(to, now).is_ok() {
                    job.exit_code = (!lost).then_some(code);
                    if to == JobState::Completed {
                        job.reason = None;
                    }
                    job.event(now, msg);
                    match collect_output(&self.backends, &self.cfg.state_dir, &job) {
                        Ok(Some(path)) => job.event(now, format!("output written to {}", path.display())),
                        Ok(None) => {}
                        Err(e) => job.event(now, format!("output lost: {e}")),
                    }
                    changed = true;
                    self.need_decision = true;
                }
            } else if !job.state.is_final()
                && job.state != JobState::Held
                && !self.run.as_ref().is_some_and(|(_, _, touched)| touched.contains(&id))
                && job.settle_state(now)
            {
                changed = true;
            }
            let done = job.state.is_final() && !job.has_remains() && ops.is_empty();
            self.jobs.insert(id, job);
            if changed {
                self.dirty_jobs.insert(id);
            }
            for (op, vm, gone_after) in ops {
                self.start_cleanup(id, vm, op, gone_after);
            }
            if done {
                self.active.remove(&id);
            }
        }
        // Domains that belong to no active job: those of this cluster's finished jobs go; any
        // other (another cluster's, or no cluster's) is never touched.
        for (name, node) in found
            .iter()
            .flat_map(|(name, copies)| copies.iter().map(move |(n, _)| (name, n)))
        {
            if ours.contains(name) || self.orphans_reported.contains(name) {
                continue;
            }
            let parsed = parse_vm_name(&self.cfg.cluster, name);
            match parsed.filter(|(id, _)| self.jobs.get(id).is_some_and(|j| j.state.is_final())) {
                Some((id, idx)) => {
                    if !self.is_busy_at(name, node) {
                        self.start_cleanup(
                            id,
                            idx,
                            Op::Destroy {
                                node: node.clone(),
                                vm: name.clone(),
                            },
                            true,
                        );
                    }
                }
                None if parsed.is_some() => {
                    tracing::warn!(vm = %name, node = %node, "orphan VM: named like this cluster's, but of no job it knows; left alone");
                    self.orphans_reported.insert(name.clone());
                }
                None => {
                    tracing::debug!(vm = %name, node = %node, "a VM of another cluster (or none): counted as load, left alone");
                    self.orphans_reported.insert(name.clone());
                }
            }
        }
        self.last_obs = Some(obs.started);
        self.need_decision = true;
    }

    /// Every stale copy of the active jobs' VMs: (VM, node).
    pub(super) fn stale_copies(&self) -> HashSet<(String, String)> {
        self.active
            .iter()
            .filter_map(|id| self.jobs.get(id))
            .flat_map(|j| j.stale.iter().cloned())
            .collect()
    }

    /// Takes in the nodes' answers: who is up, what each lists. Returns the nodes that listed.
    fn take_reports(&mut self, reports: Vec<super::NodeReport>) -> HashSet<String> {
        let mut listed = HashSet::new();
        for r in reports {
            let Some(view) = self.nodes.iter_mut().find(|n| n.cfg.name == r.node) else {
                continue;
            };
            match r.answer {
                NodeAnswer::Listed(domains) => {
                    if !view.up {
                        tracing::info!(node = %r.node, "node answers again");
                    }
                    view.up = true;
                    view.down_since = None;
                    view.domains = domains;
                    listed.insert(r.node);
                }
                NodeAnswer::Failed(e) => {
                    if view.up {
                        tracing::warn!(node = %r.node, error = %e, "node does not answer; no new VMs go there");
                    }
                    view.up = false;
                    view.down_since.get_or_insert(r.began);
                }
                NodeAnswer::Silent => {
                    if view.up {
                        tracing::warn!(node = %r.node, since_ms = r.began.elapsed().as_millis() as u64, "node is slow to answer; no new VMs go there");
                    }
                    view.up = false;
                    view.down_since.get_or_insert(r.began);
                }
            }
        }
        listed
    }

    /// Requeues the vjobs with VMs on nodes down for longer than the node timeout: those VMs
    /// are lost (their node may come back, but the vjob cannot wait for it), so the vjob starts
    /// over. Every copy of its VMs on a node becomes a stale record, destroyed (on its node) once
    /// that node answers, and forgotten only when the destroy is confirmed; its images are
    /// discarded.
    fn requeue_from_lost_nodes(&mut self, now: u64) {
        let timeout = Duration::from_millis(self.cfg.scheduler.node_timeout_ms);
        let lost: HashSet<String> = self
            .nodes
            .iter()
            .filter(|n| n.down_since.is_some_and(|t| t.elapsed() >= timeout))
            .map(|n| n.cfg.name.clone())
            .collect();
        if lost.is_empty() {
            return;
        }
        let hit: Vec<u64> = self
            .active
            .iter()
            .copied()
            .filter(|id| {
                self.jobs.get(id).is_some_and(|j| {
                    !j.state.is_final()
                        && j.vms.iter().any(|v| {
                            matches!(v.phase, VmPhase::Running | VmPhase::Paused)
                                && v.node.as_deref().is_some_and(|n| lost.contains(n))
                        })
                        && !j.vms.iter().any(|v| self.is_busy(&v.name))
                })
            })
            .collect();
        for id in hit {
            let Some(job) = self.jobs.get_mut(&id) else { continue };
            let mut ops: Vec<(Op, usize)> = Vec::new();
            let mut down: Vec<String> = Vec::new();
            for (i, v) in job.vms.iter_mut().enumerate() {
                match (v.phase, v.node.clone()) {
                    (VmPhase::Running | VmPhase::Paused | VmPhase::Ended, Some(node)) => {
                        if lost.contains(&node) && !down.contains(&node) {
                            down.push(node.clone());
                        }
                        let copy = (v.name.clone(), node);
                        if !job.stale.contains(&copy) {
                            job.stale.push(copy);
                        }
                    }
                    (VmPhase::Sleeping, _) => ops.push((
                        Op::RemoveImage {
                            vm: v.name.clone(),
                            image: image_file(&self.cfg.hypervisor.image_dir, &v.name),
                        },
                        i,
                    )),
                    _ => {}
                }
                v.phase = VmPhase::Ready;
                v.node = None;
                v.exit_code = None;
            }
            let _ = job.set_state(JobState::Queued, now);
            // It starts over: its clock too.
            job.run_ms = 0;
            job.start_ms = None;
            let why = format!(
                "node {} did not answer for {} s: its VMs there are lost",
                down.join(","),
                timeout.as_secs()
            );
            tracing::warn!(job = id, "{why}; requeued");
            job.event(now, format!("{why}; requeued"));
            job.reason = Some(format!("requeued: {why}"));
            self.dirty_jobs.insert(id);
            for (op, vm) in ops {
                self.start_cleanup(id, vm, op, false);
            }
            self.need_decision = true;
        }
    }

    /// Destroys the stale copies on the nodes that listed this round, whether the listing shows
    /// them or not (destroying what is not there is confirmed at once): a record goes only
    /// when its node confirms the destroy.
    fn destroy_stale_copies(&mut self, listed: &HashSet<String>) {
        let mut calls: Vec<(u64, usize, String, String)> = Vec::new();
        for id in &self.active {
            let Some(job) = self.jobs.get(id) else { continue };
            for (vm, node) in &job.stale {
                if listed.contains(node) && !self.is_busy_at(vm, node) {
                    let idx = parse_vm_name(&self.cfg.cluster, vm).map(|(_, i)| i).unwrap_or(0);
                    calls.push((*id, idx, vm.clone(), node.clone()));
                }
            }
        }
        for (id, idx, vm, node) in calls {
            let op = Op::Destroy {
                node: node.clone(),
                vm: vm.clone(),
            };
            self.busy.insert(call_key(&op));
            let deadline = call_deadline(&self.jobs, &self.cfg, &self.durations.learned, &op);
            let call = self.exec.submit(op, deadline);
            self.cleanups.insert(
                call,
                Cleanup {
                    job: id,
                    vm: idx,
                    gone_after: false,
                    stale_on: Some(node),
                },
            );
        }
    }

    /// A stale copy's destroy was confirmed by its node.
    fn forget_stale_copy(&mut self, id: u64, vm: &str, node: &str) {
        let Some(job) = self.jobs.get_mut(&id) else { return };
        let before = job.stale.len();
        job.stale.retain(|(v, n)| !(v == vm && n == node));
        if job.stale.len() != before {
            tracing::info!(vm = %vm, node = %node, "destroyed the stale copy of a requeued VM");
            job.event(now_ms(), format!("stale copy of {vm} destroyed on {node}"));
            self.dirty_jobs.insert(id);
        }
    }

    fn start_cleanup(&mut self, job: u64, vm: usize, op: Op, gone_after: bool) {
        if self.is_busy(op.vm()) {
            return;
        }
        self.busy.insert(call_key(&op));
        let deadline = call_deadline(&self.jobs, &self.cfg, &self.durations.learned, &op);
        let id = self.exec.submit(op, deadline);
        self.cleanups.insert(
            id,
            Cleanup {
                job,
                vm,
                gone_after,
                stale_on: None,
            },
        );
    }

    fn check_walltimes(&mut self) {
        let now = now_ms();
        let over: Vec<u64> = self
            .active
            .iter()
            .filter_map(|id| self.jobs.get(id))
            .filter(|j| j.state == JobState::Running && j.spec.walltime_ms.is_some_and(|w| j.elapsed_ms(now) > w))
            .map(|j| j.id)
            .collect();
        for id in over {
            let job = self.jobs.get_mut(&id).expect("listed above");
            let w = crate::units::format_hms(job.spec.walltime_ms.unwrap_or(0) as f64 / 1000.0);
            if job.set_state(JobState::Failed, now).is_ok() {
                job.reason = Some(format!("killed: walltime {w} exceeded"));
                job.event(now, format!("killed: walltime {w} exceeded"));
                tracing::info!(job = id, "walltime exceeded: killing");
                self.dirty_jobs.insert(id);
                self.need_decision = true;
            }
        }
    }

    // ----- deciding -----

    fn maybe_decide(&mut self) {
        let fresh = self.last_obs.is_some_and(|t| t > self.last_run_end);
        if !self.need_decision || self.run.is_some() || !fresh || self.last_decision.elapsed() < DECISION_SPACING {
            return;
        }
        self.need_decision = false;
        self.last_decision = Instant::now();
        self.rounds += 1;
        self.decide();
    }

    /// The policy's decision and the planner instance that carries it out, with the job and VM
    /// index of each of the instance's VMs (`None`: not a job's). `None` when nothing is to be
    /// done, unless `snapshot` (an administrator asking what the scheduler would do now).
    pub(super) fn plan_input(&mut self, snapshot: bool) -> Option<PlanInput> {
        let now = now_ms();
        let mut model = Model::new(vec!["cpu".into(), "memory".into()]);
        for n in &self.nodes {
            model.add_node(n.cfg.name.clone(), true, &[n.cfg.cpus as u64, n.cfg.memory]);
        }
        let accepts = |n: &NodeView| n.up && n.admin == NodeAdminState::Online;

        // Everything that occupies nodes without being a candidate: VMs of other jobs' remains,
        // orphans. They are load, and do not move.
        let mut vm_refs: Vec<Option<(u64, usize)>> = Vec::new();
        let mut constraints: Vec<Constraint> = Vec::new();
        let mut candidate_vm_names: HashSet<String> = HashSet::new();
        let mut cands: Vec<Candidate> = Vec::new();
        let mut admin_suspend: Vec<u64> = Vec::new();
        let mut stale_waits: Vec<(u64, String)> = Vec::new();
        let stale = self.stale_copies();
        for &id in &self.active {
            let Some(job) = self.jobs.get(&id) else { continue };
            if job.state.is_final()
                || job
                    .vms
                    .iter()
                    .any(|v| v.phase == VmPhase::Ended || v.phase == VmPhase::Gone)
            {
                continue;
            }
            let Some(queue) = self.queues.get(&job.queue) else {
                continue;
            };
            if let Some(v) = job.vms.iter().find(|v| self.hung.iter().any(|(h, _)| h == &v.name)) {
                // A call on one of its VMs never came back: it stays as it is (its VMs count as
                // load) until that call returns.
                stale_waits.push((
                    id,
                    format!("waiting for a hypervisor call on {} that does not answer", v.name),
                ));
                continue;
            }
            let any_running = job.vms.iter().any(|v| v.phase == VmPhase::Running);
            let any_paused = job.vms.iter().any(|v| v.phase == VmPhase::Paused);
            // A copy of one of its VMs on a node that answers is being destroyed: the VM starts
            // again once that is confirmed, never beside it (names are per node).
            let stale_on_up_node = job
                .stale
                .iter()
                .find(|(_, n)| self.node_idx(n).is_some_and(|i| self.nodes[i as usize].up));
            if let (Some((vm, node)), false) = (stale_on_up_node, any_running || any_paused) {
                stale_waits.push((
                    id,
                    format!("waiting for the stale copy of {vm} on {node} to be destroyed"),
                ));
            }
            let eligible =
                queue.started && job.state != JobState::Held && !job.admin_suspended && stale_on_up_node.is_none();
            if !any_running && !any_paused && !eligible {
                // Occupies nothing and may not start: nothing to decide about it.
                continue;
            }
            let standing = if any_running {
                Standing::Running
            } else if any_paused {
                Standing::Paused
            } else if job.vms.iter().any(|v| v.phase == VmPhase::Sleeping) {
                Standing::Suspended
            } else {
                Standing::Waiting
            };
            if job.admin_suspended && any_running {
                admin_suspend.push(id);
            }
            let hosts = job
                .vms
                .iter()
                .map(|v| match (v.phase, v.node.as_deref().and_then(|n| self.node_idx(n))) {
                    (VmPhase::Running, Some(h)) if self.nodes[h as usize].admin != NodeAdminState::Offline => Some(h),
                    (VmPhase::Paused, Some(h)) => Some(h),
                    _ => None,
                })
                .collect();
            job.vms.iter().for_each(|v| {
                candidate_vm_names.insert(v.name.clone());
            });
            cands.push(Candidate {
                id,
                queue: job.queue.clone(),
                queue_priority: queue.priority,
                priority: job.priority,
                submit_ms: job.submit_ms,
                user: job.user.clone(),
                standing,
                eligible,
                protected: now < job.protected_until || job.admin_suspended,
                demand: vec![job.spec.vm.vcpus as u64, job.spec.vm.memory],
                hosts,
                requested_ms: job.spec.walltime_ms,
                expected_end_ms: job
                    .spec
                    .walltime_ms
                    .map(|w| now + w.saturating_sub(job.elapsed_ms(now))),
            });
        }
        // Load outside candidates: every domain on a node that no candidate owns, stale copies
        // among them.
        for (n, view) in self.nodes.iter().enumerate() {
            for d in &view.domains {
                let is_stale = stale.contains(&(d.name.clone(), view.cfg.name.clone()));
                if (candidate_vm_names.contains(&d.name) && !is_stale)
                    || matches!(d.state, DomainState::Ended { .. } | DomainState::Crashed)
                {
                    continue;
                }
                let name = if is_stale {
                    format!("{}@{}", d.name, view.cfg.name)
                } else {
                    d.name.clone()
                };
                let v = model.add_vm(name, VmState::Running, n as NodeIdx, &[d.vcpus as u64, d.memory]);
                constraints.push(Constraint::Root { vm: v });
                vm_refs.push(None);
            }
        }

        // The policy, over a placer holding the load of what runs (and of what is paused).
        let pause_rule = PauseRule::keeping_memory(self.cfg.scheduler.short_preemption_ms);
        let held = |demand: &[u64]| match &pause_rule {
            Some(r) => r.held(demand),
            None => demand.to_vec(),
        };
        let mut placer = {
            let mut m = model.clone();
            for c in &cands {
                if admin_suspend.contains(&c.id) {
                    continue;
                }
                let load = if c.standing == Standing::Paused {
                    held(&c.demand)
                } else {
                    c.demand.clone()
                };
                for &h in c.hosts.iter().flatten() {
                    m.add_vm("", VmState::Running, h, &load);
                }
            }
            let mut p = Placer::from_model(&m);
            for (i, n) in self.nodes.iter().enumerate() {
                if !accepts(n) {
                    p.close(i as NodeIdx);
                }
            }
            p
        };
        let cands_for_policy: Vec<Candidate> = cands
            .iter()
            .filter(|c| !admin_suspend.contains(&c.id))
            .cloned()
            .collect();
        let limits = Limits {
            queues: self
                .queues
                .values()
                .map(|q| (q.name.clone(), (q.max_running, q.max_user_running)))
                .collect(),
            pause: pause_rule.clone(),
            ..Default::default()
        };
        let mut decision = policy::context_switch(&cands_for_policy, &mut placer, &limits);
        for id in admin_suspend {
            decision.suspend.push((id, None));
        }
        for (id, why) in decision.waiting.iter().chain(&stale_waits) {
            if let Some(job) = self.jobs.get_mut(id) {
                if job.reason.as_deref() != Some(why) {
                    job.reason = Some(why.clone());
                    self.dirty_jobs.insert(*id);
                }
            }
        }
        let manual: Vec<(String, String)> = self.manual_moves.iter().map(|(a, b)| (a.clone(), b.clone())).collect();
        if !snapshot
            && decision.run.is_empty()
            && decision.suspend.is_empty()
            && decision.pause.is_empty()
            && manual.is_empty()
            && !self.misplaced()
        {
            return None;
        }

        // The planner: from what runs to what the policy wants.
        let mut build = DecisionInstance::new(model, constraints, &decision, pause_rule.as_ref());
        let mut vm_of: HashMap<String, VmIdx> = HashMap::new();
        let order: Vec<u64> = decision.run.clone();
        let mut job_ids: Vec<u64> = cands.iter().map(|c| c.id).collect();
        // Jobs to run first, in policy order, so the planner places them as the policy did.
        job_ids.sort_by_key(|id| order.iter().position(|o| o == id).unwrap_or(usize::MAX));
        for id in job_ids {
            let job = &self.jobs[&id];
            let demand = [job.spec.vm.vcpus as u64, job.spec.vm.memory];
            for (i, v) in job.vms.iter().enumerate() {
                let (state, host) = match (v.phase, v.node.as_deref().and_then(|n| self.node_idx(n))) {
                    (VmPhase::Running | VmPhase::Paused, Some(h)) => (VmState::Running, h),
                    (VmPhase::Sleeping, _) => (VmState::Sleeping, NO_NODE),
                    (VmPhase::Ready, _) => (VmState::Ready, NO_NODE),
                    _ => continue,
                };
                let paused = v.phase == VmPhase::Paused;
                if let Some(idx) = build.add_vm(id, v.name.clone(), state, host, &demand, paused) {
                    vm_refs.push(Some((id, i)));
                    vm_of.insert(v.name.clone(), idx);
                }
            }
        }
        for (i, n) in self.nodes.iter().enumerate() {
            if n.admin == NodeAdminState::Offline {
                build.constraints.push(Constraint::Offline { node: i as NodeIdx });
            } else if !accepts(n) {
                build.constraints.push(Constraint::NoArrival {
                    nodes: vec![i as NodeIdx],
                });
            }
        }
        for (vm, node) in &manual {
            if let (Some(&v), Some(n)) = (vm_of.get(vm), self.node_idx(node)) {
                build.constraints.push(Constraint::Fence {
                    vms: vec![v],
                    nodes: vec![n],
                });
            }
        }
        if !snapshot {
            self.manual_moves.clear();
        }
        Some(PlanInput {
            instance: build.finish(&self.durations.learned, 1),
            decision,
            vm_refs,
        })
    }

    /// Runs the policy and the planner and starts carrying the plan out.
    fn decide(&mut self) {
        let Some(PlanInput {
            decision,
            instance: inst,
            vm_refs,
        }) = self.plan_input(false)
        else {
            return;
        };
        let now = now_ms();
        let t0 = Instant::now();
        let plan = match plan::solve(&inst) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "the planner found no plan; the policy's choice is dropped this round");
                return;
            }
        };
        tracing::debug!(
            ms = t0.elapsed().as_millis() as u64,
            actions = plan.actions.len(),
            "planned"
        );
        // Pauses and unpauses in memory happen beside the plan (nothing moves).
        let pauses = self.vms_in_phase(decision.pause.iter().map(|(id, _)| *id), VmPhase::Running);
        let unpauses = self.vms_in_phase(decision.run.iter().copied(), VmPhase::Paused);
        if plan.actions.is_empty() && pauses.is_empty() && unpauses.is_empty() {
            return;
        }
        if cfg!(debug_assertions) {
            let errors = crate::check::check(&inst, &plan);
            debug_assert!(errors.is_empty(), "the planner produced an invalid plan: {errors:?}");
        }

        // Record the decision on the jobs.
        for (id, by) in &decision.suspend {
            if let Some(job) = self.jobs.get_mut(id) {
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
                    self.suspending.insert(*id);
                }
                job.reason = Some(msg.clone());
                job.event(now, msg);
                self.dirty_jobs.insert(*id);
            }
        }
        for (id, by) in &decision.pause {
            if let Some(job) = self.jobs.get_mut(id) {
                let msg = format!("preempted by job {by}: paused in memory");
                job.preemptions += 1;
                let _ = job.set_state(JobState::Suspended, now);
                job.reason = Some(msg.clone());
                job.event(now, msg);
                self.dirty_jobs.insert(*id);
            }
        }
        for id in &decision.run {
            if let Some(job) = self.jobs.get(id) {
                if job.state == JobState::Suspended && job.preemptions > 0 {
                    self.resuming.insert(*id);
                }
            }
        }
        self.start_plan(&inst, &plan, &vm_refs, &pauses, &unpauses);
    }

    /// Whether some running VM sits on a node that must be left.
    fn misplaced(&self) -> bool {
        self.active.iter().filter_map(|id| self.jobs.get(id)).any(|j| {
            j.vms.iter().any(|v| {
                v.phase == VmPhase::Running
                    && v.node
                        .as_deref()
                        .and_then(|n| self.node_idx(n))
                        .is_some_and(|h| self.nodes[h as usize].admin == NodeAdminState::Offline)
            })
        })
    }

    /// Turns a plan into executor steps, with the vjob barriers: all VMs of a vjob pause before
    /// any is saved, and none is unpaused before all are booted or restored.
    /// `pauses` and `unpauses` (job, VM index, node) pause VMs in memory before anything of the
    /// plan starts, and unpause paused VMs where they are.
    fn start_plan(
        &mut self,
        inst: &Instance,
        plan: &plan::Plan,
        vm_refs: &[Option<(u64, usize)>],
        pauses: &[(u64, usize, String)],
        unpauses: &[(u64, usize, String)],
    ) {
        let m = &inst.model;
        let mut steps: Vec<Step> = Vec::new();
        let mut effects: Vec<Effect> = Vec::new();
        let mut step_of: Vec<Option<usize>> = vec![None; plan.actions.len()];
        let mut saves: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
        let mut arrivals: BTreeMap<u64, Vec<(usize, String, String)>> = BTreeMap::new();
        let mut touched = BTreeSet::new();
        let node = |n: NodeIdx| m.node_name(n).to_string();
        for (ai, a) in plan.actions.iter().enumerate() {
            let Some(v) = a.kind.vm() else { continue };
            let Some((job_id, idx)) = vm_refs[v as usize] else {
                continue;
            };
            let job = &self.jobs[&job_id];
            let name = job.vms[idx].name.clone();
            let (op, effect) = match a.kind {
                ActionKind::BootVm { on, .. } => (
                    Op::Boot {
                        node: node(on),
                        spec: Box::new(self.vm_spec(job, idx)),
                    },
                    Effect::Arrived {
                        job: job_id,
                        vm: idx,
                        node: node(on),
                    },
                ),
                ActionKind::ResumeVm { to, .. } => (
                    Op::Restore {
                        node: node(to),
                        vm: name.clone(),
                        image: self.image_path(&name),
                    },
                    Effect::Arrived {
                        job: job_id,
                        vm: idx,
                        node: node(to),
                    },
                ),
                ActionKind::SuspendVm { from, .. } => (
                    Op::Save {
                        node: node(from),
                        vm: name.clone(),
                        image: self.image_path(&name),
                    },
                    Effect::Saved { job: job_id, vm: idx },
                ),
                ActionKind::MigrateVm { from, to, .. } => (
                    Op::Migrate {
                        node: node(from),
                        vm: name.clone(),
                        to: node(to),
                    },
                    Effect::Migrated {
                        job: job_id,
                        vm: idx,
                        node: node(to),
                    },
                ),
                ActionKind::KillVm { on, .. } | ActionKind::ShutdownVm { on, .. } if on != NO_NODE => (
                    Op::Destroy {
                        node: node(on),
                        vm: name.clone(),
                    },
                    Effect::Destroyed { job: job_id, vm: idx },
                ),
                _ => continue,
            };
            let s = steps.len();
            match &op {
                Op::Save { .. } => saves.entry(job_id).or_default().push(s),
                Op::Boot { node, .. } | Op::Restore { node, .. } => {
                    arrivals
                        .entry(job_id)
                        .or_default()
                        .push((s, node.clone(), name.clone()))
                }
                _ => {}
            }
            step_of[ai] = Some(s);
            steps.push(Step {
                op,
                deps: Vec::new(),
                state: StepState::Waiting,
            });
            effects.push(effect);
            touched.insert(job_id);
        }
        for (ai, a) in plan.actions.iter().enumerate() {
            if let Some(s) = step_of[ai] {
                steps[s].deps = a.deps.iter().filter_map(|&d| step_of[d as usize]).collect();
            }
        }
        // Pause every VM of a vjob before saving any of them.
        for save_steps in saves.values() {
            let pauses: Vec<usize> = save_steps
                .iter()
                .map(|&s| {
                    let Op::Save { node, vm, .. } = &steps[s].op else {
                        unreachable!()
                    };
                    let op = Op::Pause {
                        node: node.clone(),
                        vm: vm.clone(),
                    };
                    steps.push(Step {
                        op,
                        deps: Vec::new(),
                        state: StepState::Waiting,
                    });
                    effects.push(Effect::None);
                    steps.len() - 1
                })
                .collect();
            for &s in save_steps {
                steps[s].deps.extend(pauses.iter().copied());
            }
        }
        // Paused in memory to free processors: before anything of the plan starts.
        let mut pause_steps = Vec::new();
        for (job, idx, node) in pauses {
            pause_steps.push(steps.len());
            steps.push(Step {
                op: Op::Pause {
                    node: node.clone(),
                    vm: self.jobs[job].vms[*idx].name.clone(),
                },
                deps: Vec::new(),
                state: StepState::Waiting,
            });
            effects.push(Effect::Paused { job: *job, vm: *idx });
            touched.insert(*job);
        }
        if !pause_steps.is_empty() {
            for step in steps.iter_mut().filter(|s| !matches!(s.op, Op::Pause { .. })) {
                step.deps.extend(pause_steps.iter().copied());
            }
        }
        for (job, idx, node) in unpauses {
            steps.push(Step {
                op: Op::Unpause {
                    node: node.clone(),
                    vm: self.jobs[job].vms[*idx].name.clone(),
                },
                deps: Vec::new(),
                state: StepState::Waiting,
            });
            effects.push(Effect::Arrived {
                job: *job,
                vm: *idx,
                node: node.clone(),
            });
            touched.insert(*job);
        }
        // Unpause the VMs of a vjob together, once all have arrived.
        for arrived in arrivals.values() {
            let all: Vec<usize> = arrived.iter().map(|(s, _, _)| *s).collect();
            for (_, node, vm) in arrived {
                steps.push(Step {
                    op: Op::Unpause {
                        node: node.clone(),
                        vm: vm.clone(),
                    },
                    deps: all.clone(),
                    state: StepState::Waiting,
                });
                effects.push(Effect::None);
            }
        }
        tracing::info!(
            actions = plan.actions.len(),
            steps = steps.len(),
            counts = ?plan.counts(),
            "carrying out a plan"
        );
        let mut run = Run::new(steps);
        let (jobs, cfg, model) = (&self.jobs, &self.cfg, &self.durations.learned);
        run.start_ready(&mut self.exec, cfg.scheduler.max_parallel_actions, |op| {
            call_deadline(jobs, cfg, model, op)
        });
        let over = run.is_over();
        self.run = Some((run, effects, touched));
        if over {
            self.end_run();
        }
    }

    fn vm_spec(&self, job: &Job, idx: usize) -> VmSpec {
        let env = vec![
            ("VJOB_ID".to_string(), job.id.to_string()),
            ("VJOB_NAME".to_string(), job.name.clone()),
            ("VJOB_VM_INDEX".to_string(), idx.to_string()),
            ("VJOB_VM_COUNT".to_string(), job.vms.len().to_string()),
            ("VJOB_USER".to_string(), job.user.clone()),
        ];
        VmSpec {
            name: job.vms[idx].name.clone(),
            vcpus: job.spec.vm.vcpus,
            memory: job.spec.vm.memory,
            guest: GuestSpec {
                image: job.spec.vm.image.clone(),
                script: job.spec.run.script.clone(),
                env,
                output: job.spec.run.output.as_ref().map(PathBuf::from),
                sim_runtime_ms: job.spec.run.sim_runtime_ms,
                sim_exit_code: job.spec.run.sim_exit_code,
            },
        }
    }
}

#[cfg(test)]
#[path = "core_tests.rs"]
mod tests;
