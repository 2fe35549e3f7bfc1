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

use crossbeam_channel::{select, Receiver};
use vjob_api::{JobState, NodeAdminState, Response};
use vjob_core::model::NodeIdx;
use vjob_hypervisor::duration::Action;
use vjob_hypervisor::{DomainInfo, DurationModel};

use crate::config::{Config, NodeConfig};
use crate::exec::{chain, Call, CallDone, Done, Executor, Run};
use crate::jobs::{parse_vm_name, Job, NodeRecord, Queue, VmPhase};
use crate::lower::Effect;
use crate::reconcile::image_file;
use crate::store::{Batch, Store, StoreError};
use crate::{Answer, Command, Observation};

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
    pub power: crate::power::PowerRecord,
    pub fence: crate::fence::Fence,
}

impl NodeView {
    /// Whether VMs may execute there that vjobd cannot see: it answers, or it is on (as vjobd
    /// knows its power) and silent, so that what it ran may still run. A node switched off,
    /// fenced, booting or failed to boot holds nothing of before.
    pub fn may_hold_vms(&self) -> bool {
        self.up || self.power.state == vjob_core::power::PowerState::On
    }

    /// Whether decisions may place new VMs there: it answers, is online and is on.
    pub fn takes_new_vms(&self) -> bool {
        self.up && self.admin == NodeAdminState::Online && self.power.state == vjob_core::power::PowerState::On
    }
}

/// A call outside plans, with what its success means for the records.
#[derive(Debug, Clone)]
pub struct Cleanup {
    job: u64,
    vm: usize,
    purpose: Purpose,
}

/// What a call outside plans is for.
#[derive(Debug, Clone, PartialEq)]
enum Purpose {
    /// Destroying ended or cancelled VMs, removing images, unpausing; `gone_after`: once it
    /// succeeds, the VM is gone.
    Cleanup { gone_after: bool },
    /// Destroying the stale copy on this node: its record goes once the destroy is confirmed.
    StaleCopy { node: String },
    /// Writing a finished job's output.
    Output,
    /// Switching a node on or off.
    Power { node: String, on: bool },
}

/// The memory of the VM a call is about, if it is one of this cluster's jobs'.
fn op_memory(jobs: &BTreeMap<u64, Job>, cfg: &Config, op: &Call) -> Option<u64> {
    match op {
        Call::Boot { spec, .. } => Some(spec.memory),
        op => parse_vm_name(&cfg.cluster, op.vm()).and_then(|(id, i)| jobs.get(&id).map(|j| j.spec.vm.shape(i).memory)),
    }
}

/// How long a call may take before it is given up on: the configured action timeout, or five
/// times what the model says it takes, if longer (a large VM's save is slow, not hung).
fn call_deadline(jobs: &BTreeMap<u64, Job>, cfg: &Config, model: &DurationModel, op: &Call) -> Duration {
    let memory = op_memory(jobs, cfg, op).unwrap_or(0);
    let modeled = match op {
        Call::Boot { .. } => model.boot(memory),
        Call::Restore { .. } => model.restore(memory),
        Call::Save { .. } => model.save(memory),
        Call::Migrate { .. } => model.migrate(memory),
        Call::Pause { .. } | Call::Unpause { .. } => model.pause(),
        Call::Destroy { .. } => model.destroy(memory),
        Call::RemoveImage { .. } | Call::CollectOutput { .. } | Call::Power { .. } => 0,
    };
    Duration::from_millis(cfg.scheduler.action_timeout_ms.max(modeled.saturating_mul(5)))
}

/// The key of a call in flight: the VM and the node it is made on (`""` for image removals).
fn call_key(op: &Call) -> (String, String) {
    (op.vm().to_string(), op.node().unwrap_or("").to_string())
}

/// The daemon's records: jobs, queues, and what administrators asked of them.
#[derive(Default)]
pub struct Records {
    pub jobs: BTreeMap<u64, Job>,
    /// Jobs not final, or final with VMs or images left to clean up.
    pub active: BTreeSet<u64>,
    pub queues: BTreeMap<String, Queue>,
    pub next_id: u64,
    /// VMs an administrator asked to move: VM name -> node.
    pub manual_moves: BTreeMap<String, String>,
    /// Jobs' JSON for listings, for jobs whose listing does not change by itself (not running);
    /// an entry is dropped whenever its job is written.
    pub json_cache: HashMap<u64, Box<str>>,
}

/// What is changed in the records and not written to the store yet.
#[derive(Default)]
pub struct Dirty {
    pub jobs: BTreeSet<u64>,
    /// Jobs whose records were purged: deleted from the store.
    pub purged: Vec<u64>,
    pub queues: BTreeSet<String>,
    pub deleted_queues: Vec<String>,
    pub nodes: BTreeSet<String>,
}

impl Dirty {
    pub fn is_empty(&self) -> bool {
        self.jobs.is_empty()
            && self.purged.is_empty()
            && self.queues.is_empty()
            && self.deleted_queues.is_empty()
            && self.nodes.is_empty()
    }
}

/// The store's meta key of the next job id (written when records are purged).
const NEXT_ID_KEY: &str = "next_id";

/// vjobd's exit status when it stops because its state could not be written (EX_TEMPFAIL).
pub const EXIT_UNWRITTEN: i32 = 75;

/// The hypervisor calls under way.
#[derive(Default)]
pub struct Calls {
    /// The plan being carried out: its run, each step's effect, the jobs it touches.
    pub run: Option<(Run, Vec<Effect>, BTreeSet<u64>)>,
    /// Jobs being resumed by the current run after a preemption.
    pub resuming: BTreeSet<u64>,
    /// Jobs being suspended by the current run.
    pub suspending: BTreeSet<u64>,
    /// Cleanup calls outside plans, by call id.
    pub cleanups: HashMap<u64, Cleanup>,
    /// Cleanup calls in flight, by (VM, node).
    pub busy: HashSet<(String, String)>,
    /// Calls given up on past their deadline and not returned yet, by (VM, node): their VMs
    /// are busy.
    pub hung: HashSet<(String, String)>,
    /// When each VM last changed by a call of ours: a listing older than that is not its truth.
    pub changed_at: HashMap<String, Instant>,
}

/// When to decide, and how often it was done.
pub struct Pace {
    pub need_decision: bool,
    pub last_decision: Instant,
    pub last_run_end: Instant,
    pub last_obs: Option<Instant>,
    /// Decision rounds taken (the policy consulted) since the daemon started.
    pub rounds: u64,
    /// Node reports taken in since the daemon started.
    pub observations: u64,
    /// When power management last made a pass.
    pub last_power: Instant,
}

/// The core loop's state: it owns everything, and only its thread touches it.
pub struct Core {
    pub(crate) cfg: Config,
    store: Store,
    exec: Executor,
    pub(crate) rec: Records,
    pub(crate) nodes: Vec<NodeView>,
    node_index: HashMap<String, NodeIdx>,
    pub(crate) calls: Calls,
    pub(crate) dirty: Dirty,
    pub(crate) pace: Pace,
    pub(crate) orphans_reported: HashSet<String>,
    /// The action durations the planner uses: the configured model, corrected by every action
    /// measured on the nodes since (kept across restarts while the configured model is unchanged).
    pub(crate) durations: LearnedDurations,
    /// The decision board, kept across rounds.
    pub(crate) board: crate::deciding::BoardCache,
    /// The placement rules of the jobs that have a placement script.
    pub(crate) rules: HashMap<u64, std::sync::Arc<vjob_core::placement::VjobRules>>,
    /// Power management's pace and inputs.
    pub(crate) power: crate::power::PowerBook,
    /// The jobs not started yet that have a dependency, and where it stood at the last round.
    pub(crate) deps_pending: BTreeSet<u64>,
    pub(crate) dep_status: HashMap<u64, crate::dependency::Status>,
    /// Every array's tasks (job ids in index order), by array id ([`crate::arrays`]).
    pub(crate) arrays: BTreeMap<u64, Vec<u64>>,
    /// When old records were last looked at for purging ([`crate::accounting`]).
    pub(crate) purged_at: u64,
    /// Multifactor priority and fair share ([`crate::priority`]).
    pub(crate) fair: crate::priority::FairBook,
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

    fn load(store: &Store, configured: DurationModel) -> Result<LearnedDurations, StoreError> {
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
    fn observe(&mut self, op: &Call, memory: u64, ms: u64) {
        let action = match op {
            Call::Boot { .. } => Action::Boot,
            Call::Restore { .. } => Action::Restore,
            Call::Pause { .. } | Call::Unpause { .. } => Action::Pause,
            Call::Save { .. } => Action::Save,
            Call::Migrate { .. } => Action::Migrate,
            Call::Destroy { .. } => Action::Destroy,
            Call::RemoveImage { .. } | Call::CollectOutput { .. } | Call::Power { .. } => return,
        };
        self.learned.observe(action, memory, ms);
        self.samples += 1;
        self.dirty = true;
    }
}

/// The stored queues, or on a new state directory the configured ones (to be written: the
/// second set returned).
fn load_queues(store: &Store, cfg: &Config) -> Result<(BTreeMap<String, Queue>, BTreeSet<String>), StoreError> {
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
    Ok((queues, dirty_queues))
}

/// The configured nodes, each with its stored administrative state and power.
fn load_nodes(store: &Store, cfg: &Config) -> Result<Vec<NodeView>, StoreError> {
    let mut stored: HashMap<String, NodeRecord> = store.nodes()?.into_iter().map(|n| (n.name.clone(), n)).collect();
    Ok(cfg
        .nodes
        .iter()
        .map(|n| {
            let rec = stored.remove(&n.name);
            NodeView {
                cfg: n.clone(),
                admin: rec.as_ref().map(|r| r.state).unwrap_or(NodeAdminState::Online),
                up: true,
                down_since: None,
                domains: Vec::new(),
                power: rec.map(|r| r.power).unwrap_or_default(),
                fence: Default::default(),
            }
        })
        .collect())
}

/// The stored jobs, and those still active: not over, with remains left, or with an image of
/// their VMs left.
fn load_jobs(store: &Store, cfg: &Config) -> Result<(BTreeMap<u64, Job>, BTreeSet<u64>), StoreError> {
    let mut jobs = BTreeMap::new();
    let mut active = BTreeSet::new();
    // An image whose VM's record says otherwise (a restore that completed while vjobd was
    // down, the VM then adopted) keeps its job active until reconciling removes it.
    let images: HashSet<String> = std::fs::read_dir(cfg.state_dir.join("images"))
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    for j in store.jobs()? {
        let imaged = || j.vms.iter().any(|v| images.contains(&format!("{}.img", v.name)));
        if !j.state.is_final() || j.has_remains() || imaged() {
            active.insert(j.id);
        }
        jobs.insert(j.id, j);
    }
    Ok((jobs, active))
}

impl Core {
    /// The placement rules of the jobs not ended, from their scripts (evaluated again: the
    /// datacenter's scripts may have changed since they were submitted).
    fn load_rules(&mut self) {
        for &id in &self.rec.active {
            let job = &self.rec.jobs[&id];
            let Some(p) = &job.spec.placement else { continue };
            match crate::placement::job(&self.cfg, &job.spec.name, p) {
                Ok(jp) => {
                    self.rules.insert(id, std::sync::Arc::new(jp.rules));
                }
                Err(e) => {
                    tracing::warn!(job = id, error = %e, "the placement script no longer evaluates: the job is placed without it")
                }
            }
        }
    }

    /// Loads the state and takes a first look at the nodes.
    pub fn open(cfg: Config, exec: Executor, first: Observation) -> Result<Core, StoreError> {
        let store = Store::open(&cfg.state_dir)?;
        let (queues, dirty_queues) = load_queues(&store, &cfg)?;
        let nodes = load_nodes(&store, &cfg)?;
        let node_index = nodes
            .iter()
            .enumerate()
            .map(|(i, n)| (n.cfg.name.clone(), i as NodeIdx))
            .collect();
        let (jobs, active) = load_jobs(&store, &cfg)?;
        let stored_next: u64 = store.meta(NEXT_ID_KEY)?.and_then(|v| v.parse().ok()).unwrap_or(1);
        let next_id = jobs.keys().next_back().map(|id| id + 1).unwrap_or(1).max(stored_next);
        let arrays = Core::index_arrays(&jobs);
        tracing::info!(
            jobs = jobs.len(),
            active = active.len(),
            queues = queues.len(),
            nodes = nodes.len(),
            "state loaded"
        );
        let durations = LearnedDurations::load(&store, cfg.hypervisor.durations)?;
        let usage = match store.meta(crate::priority::USAGE_KEY)? {
            None => Default::default(),
            Some(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "unreadable fair-share usage: it starts from nothing");
                Default::default()
            }),
        };
        let fair = crate::priority::FairBook::new(cfg.ranking.clone(), usage);
        let now = Instant::now();
        let cfg_nodes = nodes.len();
        let mut core = Core {
            cfg,
            store,
            exec,
            rec: Records {
                jobs,
                active,
                queues,
                next_id,
                ..Default::default()
            },
            nodes,
            node_index,
            calls: Calls::default(),
            dirty: Dirty {
                queues: dirty_queues,
                ..Default::default()
            },
            pace: Pace {
                need_decision: true,
                last_decision: now - DECISION_SPACING,
                last_run_end: now,
                last_obs: None,
                rounds: 0,
                observations: 0,
                last_power: now,
            },
            orphans_reported: HashSet::new(),
            durations,
            board: Default::default(),
            rules: HashMap::new(),
            power: crate::power::PowerBook::new(cfg_nodes),
            deps_pending: BTreeSet::new(),
            dep_status: HashMap::new(),
            arrays,
            purged_at: 0,
            fair,
        };
        core.deps_pending = (core.rec.active.iter().copied())
            .filter(|id| core.rec.jobs[id].spec.dependency.is_some())
            .collect();
        core.load_rules();
        // Adopt what runs before deciding anything.
        core.reconcile(first);
        core.flush()?;
        Ok(core)
    }

    /// The loop: runs until the command channel closes.
    pub fn run(mut self, cmds: Receiver<Command>, obs: Receiver<Observation>, done: Receiver<CallDone>) {
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
            self.maybe_manage_power();
            self.maybe_purge();
            if let Err(e) = self.flush() {
                self.stop_unwritten(&e);
            }
        }
    }

    /// A commit failed: memory now holds what the disk does not, and answers may have promised
    /// otherwise. vjobd stops at once, unanswered, so that it starts again from what is on
    /// disk and what the nodes run, as after a crash (its supervisor restarts it; one that still
    /// cannot write stops again): nothing it did not write is acted on or acknowledged.
    fn stop_unwritten(&self, e: &StoreError) -> ! {
        tracing::error!(
            error = %chain(e),
            "cannot write the state: vjobd stops so that it starts again from what is on disk \
             (free or repair the state directory's disk if this repeats)"
        );
        std::process::exit(EXIT_UNWRITTEN)
    }

    fn handle_batch(&mut self, batch: Vec<Command>) {
        let mut replies = Vec::with_capacity(batch.len());
        for c in batch {
            let answer = match c.op {
                // Large listings are assembled from cached JSON, not built and serialized anew.
                vjob_api::Op::Jobs(q) => Ok(Answer::Line(self.jobs_line(&q))),
                op => self.handle(&c.who, op).map(|r| Answer::Response(Response::new(Ok(r)))),
            };
            replies.push((c.reply, answer));
        }
        // Only a batch that changed something commits (and counts for the failpoint).
        if !self.dirty.is_empty() || self.durations.dirty {
            let written = crate::failpoint::hit("request-commit")
                .map_err(StoreError::from)
                .and_then(|()| self.flush());
            if let Err(e) = written {
                self.stop_unwritten(&e);
            }
        }
        for (reply, answer) in replies {
            let answer = answer.unwrap_or_else(|e| Answer::Response(Response::new(Err(e))));
            let _ = reply.send(answer);
        }
    }

    /// Writes every pending change in one transaction.
    pub(super) fn flush(&mut self) -> Result<(), StoreError> {
        let jobs: Vec<&Job> = self.dirty.jobs.iter().filter_map(|id| self.rec.jobs.get(id)).collect();
        let queues: Vec<&Queue> = self
            .dirty
            .queues
            .iter()
            .filter_map(|n| self.rec.queues.get(n))
            .collect();
        let node_records: Vec<NodeRecord> = self
            .dirty
            .nodes
            .iter()
            .filter_map(|n| self.nodes.iter().find(|v| &v.cfg.name == n))
            .map(|v| NodeRecord {
                name: v.cfg.name.clone(),
                state: v.admin,
                power: v.power.clone(),
            })
            .collect();
        let mut meta = Vec::new();
        if !self.dirty.purged.is_empty() {
            // Ids are never given again, even when the newest records are gone.
            meta.push((NEXT_ID_KEY, self.rec.next_id.to_string()));
        }
        if self.fair.usage_dirty {
            meta.push((
                crate::priority::USAGE_KEY,
                serde_json::to_string(&self.fair.usage).expect("usage serializes"),
            ));
        }
        if self.durations.dirty {
            meta.push((
                LearnedDurations::KEY,
                serde_json::to_string(&self.durations).expect("durations serialize"),
            ));
        }
        let batch = Batch {
            jobs,
            deleted_jobs: self.dirty.purged.clone(),
            queues,
            deleted_queues: self.dirty.deleted_queues.clone(),
            nodes: node_records.iter().collect(),
            meta,
        };
        if batch.is_empty() {
            return Ok(());
        }
        self.store.write(&batch)?;
        for id in &self.dirty.jobs {
            self.rec.json_cache.remove(id);
        }
        self.board.jobs.extend(self.dirty.jobs.iter().copied());
        if !self.dirty.queues.is_empty() || !self.dirty.deleted_queues.is_empty() {
            self.board.rebuild = true;
        }
        self.dirty.jobs.clear();
        self.dirty.purged.clear();
        self.dirty.queues.clear();
        self.dirty.deleted_queues.clear();
        self.dirty.nodes.clear();
        self.durations.dirty = false;
        self.fair.usage_dirty = false;
        Ok(())
    }

    pub(super) fn touch(&mut self, id: u64) {
        self.dirty.jobs.insert(id);
    }

    pub(super) fn image_path(&self, vm: &str) -> PathBuf {
        image_file(&self.cfg.hypervisor.image_dir, vm)
    }

    pub(super) fn node_idx(&self, name: &str) -> Option<NodeIdx> {
        self.node_index.get(name).copied()
    }

    /// The job of VM `vm` must be seen again by the decision board.
    fn board_job_changed(&mut self, vm: &str) {
        if let Some((id, _)) = parse_vm_name(&self.cfg.cluster, vm) {
            self.board.jobs.insert(id);
        }
    }

    /// Whether a plan is being carried out.
    pub(super) fn plan_running(&self) -> bool {
        self.calls.run.is_some()
    }

    /// Whether a VM has a call in flight, on any node.
    pub(crate) fn is_busy(&self, vm: &str) -> bool {
        self.calls.busy.iter().chain(&self.calls.hung).any(|(v, _)| v == vm)
            || self.calls.run.as_ref().is_some_and(|(r, _, _)| r.touches(vm))
    }

    /// Whether a VM's copy on `node` has a call in flight.
    pub(crate) fn is_busy_at(&self, vm: &str, node: &str) -> bool {
        let key = (vm.to_string(), node.to_string());
        self.calls.busy.contains(&key)
            || self.calls.hung.contains(&key)
            || self.calls.hung.contains(&(vm.to_string(), String::new()))
            || self.calls.run.as_ref().is_some_and(|(r, _, _)| r.touches_at(vm, node))
    }

    // ----- results of hypervisor calls -----

    /// Gives up on the calls past their deadlines: each fails as if the node had refused it,
    /// and its VM stays busy until the call returns.
    fn give_up_overdue_calls(&mut self) {
        for d in self.exec.overdue() {
            tracing::warn!(op = %d.call.describe(), ms = d.millis, "hypervisor call past its deadline: given up on");
            self.calls.hung.insert(call_key(&d.call));
            self.board_job_changed(d.call.vm());
            self.take_result(d);
        }
    }

    /// A call returned.
    fn on_done(&mut self, d: CallDone) {
        if self.exec.finished(d.id) {
            // Given up on earlier: it already counted as failed; what it did, the next listing
            // shows.
            tracing::warn!(op = %d.call.describe(), ms = d.millis, result = ?d.result, "a call given up on returned");
            self.calls.changed_at.insert(d.call.vm().to_string(), Instant::now());
            self.calls.hung.remove(&call_key(&d.call));
            self.board_job_changed(d.call.vm());
            self.pace.need_decision = true;
            return;
        }
        self.take_result(d);
    }

    /// Takes in a call's outcome: the records, the run it belongs to, what it measured.
    fn take_result(&mut self, d: CallDone) {
        let vm = d.call.vm().to_string();
        self.calls.changed_at.insert(vm.clone(), Instant::now());
        if let Err(e) = &d.result {
            tracing::warn!(op = %d.call.describe(), error = %chain(e), "hypervisor call failed");
        } else {
            tracing::debug!(op = %d.call.describe(), ms = d.millis, "hypervisor call done");
            let memory = op_memory(&self.rec.jobs, &self.cfg, &d.call);
            if let Some(memory) = memory {
                self.durations.observe(&d.call, memory, d.millis);
            }
        }
        if let Some(c) = self.calls.cleanups.remove(&d.id) {
            self.calls.busy.remove(&call_key(&d.call));
            self.cleanup_done(c, &d);
            return;
        }
        let Some((run, effects, _)) = self.calls.run.as_mut() else {
            return;
        };
        let Some(step) = run.finish(&d) else { return };
        if d.result.is_ok() {
            let effect = effects[step].clone();
            self.apply_effect(effect);
        }
        let max = self.cfg.scheduler.max_parallel_actions;
        let (run, _, _) = self.calls.run.as_mut().expect("checked above");
        let (jobs, cfg, model) = (&self.rec.jobs, &self.cfg, &self.durations.learned);
        run.start_ready(&mut self.exec, max, |op| call_deadline(jobs, cfg, model, op));
        if run.is_over() {
            self.end_run();
        }
    }

    /// What a call outside plans changes in the records.
    fn cleanup_done(&mut self, c: Cleanup, d: &CallDone) {
        let vm = d.call.vm();
        match (&c.purpose, &d.result) {
            (Purpose::StaleCopy { node }, Ok(_)) => self.forget_stale_copy(c.job, vm, node),
            (Purpose::Cleanup { gone_after: true }, Ok(_)) => {
                if let Some(job) = self.rec.jobs.get_mut(&c.job) {
                    if let Some(v) = job.vms.get_mut(c.vm) {
                        if v.phase != VmPhase::Ended || job.state.is_final() {
                            v.phase = VmPhase::Gone;
                        }
                    }
                    self.dirty.jobs.insert(c.job);
                }
            }
            (Purpose::Power { node, on }, result) => {
                let result = result.as_ref().map(|_| ()).map_err(|e| chain(e));
                let (node, on) = (node.clone(), *on);
                self.power_call_done(&node, on, result);
            }
            (Purpose::Output, result) => {
                if let Some(job) = self.rec.jobs.get_mut(&c.job) {
                    match result {
                        Ok(Done::Output(Some(path))) => {
                            job.event(now_ms(), format!("output written to {}", path.display()))
                        }
                        Ok(_) => {}
                        Err(e) => job.event(now_ms(), format!("output lost: {}", chain(e))),
                    }
                    self.dirty.jobs.insert(c.job);
                }
            }
            _ => {}
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
        let Some(j) = self.rec.jobs.get_mut(&job) else { return };
        if vm >= j.vms.len() {
            return;
        }
        let memory = j.spec.vm.shape(vm).memory;
        match (&effect, j.vms[vm].phase) {
            (Effect::Arrived { .. }, VmPhase::Sleeping) | (Effect::Saved { .. }, _) => j.acct.bytes_moved += memory,
            (Effect::Migrated { .. }, _) => {
                j.acct.migrations += 1;
                j.acct.bytes_moved += memory;
            }
            _ => {}
        }
        let v = &mut j.vms[vm];
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
        self.dirty.jobs.insert(job);
    }

    fn end_run(&mut self) {
        let Some((run, _, touched)) = self.calls.run.take() else {
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
            let resumed = self.calls.resuming.remove(&id);
            let quantum = self.cfg.scheduler.quantum_ms;
            let suspending = self.calls.suspending.remove(&id);
            let Some(job) = self.rec.jobs.get_mut(&id) else {
                continue;
            };
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
                .filter(|f| job.vms.iter().any(|v| v.name == f.vm))
                .map(|f| f.message.clone())
                .collect();
            let suspended = job.vms.iter().all(|v| v.phase == VmPhase::Sleeping);
            let suspend_failed = suspending && !failed.is_empty() && !suspended;
            for f in failed {
                job.event(now, format!("failed: {f}"));
                job.reason = Some(f);
            }
            if suspend_failed {
                job.suspend_failures += 1;
                let backoff = crate::jobs::suspend_backoff_ms(job.suspend_failures);
                job.protected_until = job.protected_until.max(now + backoff);
                job.event(
                    now,
                    format!(
                        "suspending failed ({} in a row): not preempted again for {}",
                        job.suspend_failures,
                        vjob_api::display::hms(backoff as f64 / 1000.0)
                    ),
                );
            } else if suspending && suspended {
                job.suspend_failures = 0;
            }
            self.dirty.jobs.insert(id);
        }
        self.pace.last_run_end = Instant::now();
        self.pace.need_decision = true;
    }

    /// A call outside plans: VM `vm` of `job`, unless that VM is busy.
    pub(crate) fn start_cleanup(&mut self, job: u64, vm: usize, call: Call, gone_after: bool) {
        if !self.is_busy(call.vm()) {
            self.start_call(
                call,
                Cleanup {
                    job,
                    vm,
                    purpose: Purpose::Cleanup { gone_after },
                },
            );
        }
    }

    /// Destroys the stale copy of VM `vm` (index `idx` of `job`) on `node`.
    pub(crate) fn start_stale_destroy(&mut self, job: u64, idx: usize, vm: String, node: String) {
        let call = Call::Destroy { node: node.clone(), vm };
        self.start_call(
            call,
            Cleanup {
                job,
                vm: idx,
                purpose: Purpose::StaleCopy { node },
            },
        );
    }

    /// Collects a finished job's output, off this thread.
    pub(crate) fn start_output_collection(&mut self, job: u64, call: Call) {
        self.start_call(
            call,
            Cleanup {
                job,
                vm: 0,
                purpose: Purpose::Output,
            },
        );
    }

    /// Switches a node on or off, off this thread.
    pub(crate) fn start_power_call(&mut self, call: Call) {
        let Call::Power { node, on, .. } = &call else {
            unreachable!("only power calls come here")
        };
        let purpose = Purpose::Power {
            node: node.clone(),
            on: *on,
        };
        self.start_call(call, Cleanup { job: 0, vm: 0, purpose });
    }

    fn start_call(&mut self, call: Call, cleanup: Cleanup) {
        self.calls.busy.insert(call_key(&call));
        let deadline = call_deadline(&self.rec.jobs, &self.cfg, &self.durations.learned, &call);
        let id = self.exec.submit(call, deadline);
        self.calls.cleanups.insert(id, cleanup);
    }

    fn check_walltimes(&mut self) {
        let now = now_ms();
        let over: Vec<u64> = self
            .rec
            .active
            .iter()
            .filter_map(|id| self.rec.jobs.get(id))
            .filter(|j| j.state == JobState::Running && j.spec.walltime_ms.is_some_and(|w| j.elapsed_ms(now) > w))
            .map(|j| j.id)
            .collect();
        for id in over {
            let job = self.rec.jobs.get_mut(&id).expect("listed above");
            let w = vjob_api::display::hms(job.spec.walltime_ms.unwrap_or(0) as f64 / 1000.0);
            if job.set_state(JobState::Failed, now).is_ok() {
                job.reason = Some(format!("killed: walltime {w} exceeded"));
                job.event(now, format!("killed: walltime {w} exceeded"));
                tracing::info!(job = id, "walltime exceeded: killing");
                self.dirty.jobs.insert(id);
                self.pace.need_decision = true;
            }
        }
    }

    // ----- deciding -----

    /// Power management, at most twice a second.
    fn maybe_manage_power(&mut self) {
        if self.pace.last_power.elapsed() >= Duration::from_millis(500) {
            self.pace.last_power = Instant::now();
            self.manage_power();
        }
    }

    fn maybe_decide(&mut self) {
        let fresh = self.pace.last_obs.is_some_and(|t| t > self.pace.last_run_end);
        if !self.pace.need_decision
            || self.calls.run.is_some()
            || !fresh
            || self.pace.last_decision.elapsed() < DECISION_SPACING
        {
            return;
        }
        self.pace.need_decision = false;
        self.pace.last_decision = Instant::now();
        self.pace.rounds += 1;
        self.decide();
    }

    /// Starts carrying a lowered plan out.
    pub(crate) fn start_run(&mut self, mut run: Run, effects: Vec<Effect>, touched: BTreeSet<u64>) {
        let (jobs, cfg, model) = (&self.rec.jobs, &self.cfg, &self.durations.learned);
        run.start_ready(&mut self.exec, cfg.scheduler.max_parallel_actions, |call| {
            call_deadline(jobs, cfg, model, call)
        });
        let over = run.is_over();
        self.calls.run = Some((run, effects, touched));
        if over {
            self.end_run();
        }
    }
}

#[cfg(test)]
#[path = "core_loop_tests.rs"]
mod tests;
