//! What the nodes report is the truth: the records follow it. One round of node reports goes
//! through small steps: node liveness ([`Core::take_reports`]), silent nodes holding VMs fenced
//! ([`crate::fence`]), vjobs with VMs on fenced nodes requeued
//! ([`Core::requeue_from_lost_nodes`]), stale copies destroyed
//! ([`Core::destroy_stale_copies`]), every VM of every active job brought in line
//! ([`reconcile_vm`], pure, and [`Core::reconcile_job`]), jobs whose VMs all ended finished
//! ([`Core::finish_job`]), and this cluster's leftovers destroyed ([`Core::destroy_leftovers`]).
//!
//! So a restart after `kill -9` adopts the VMs that still run and finishes what was half done.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use vjob_core::power::PowerState;

use vjob_api::JobState;
use vjob_hypervisor::{DomainInfo, DomainState};

use crate::core_loop::{now_ms, Core};
use crate::exec::Call;
use crate::jobs::{parse_vm_name, Job, VmPhase};
use crate::{NodeAnswer, NodeReport, Observation};

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

/// What is known of one VM of an active job in a round.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VmSeen<'a> {
    /// Its phase in the records.
    pub phase: VmPhase,
    /// The node the records say it is (or was last) on.
    pub recorded: Option<&'a str>,
    /// Its job is over (completed, failed, cancelled).
    pub job_final: bool,
    /// Its job is running.
    pub job_running: bool,
    /// Its copy found this round: the node and what the node says of it.
    pub copy: Option<(&'a str, DomainState, bool)>,
    /// Its recorded node listed this round (or it has none).
    pub recorded_listed: bool,
    /// Every node listed this round, but those known to hold nothing (switched off, fenced,
    /// lost).
    pub all_listed: bool,
    /// Its saved image exists.
    pub image: bool,
}

/// A call a VM needs, outside plans.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VmCall {
    Destroy { node: String },
    RemoveImage,
    Unpause { node: String },
}

/// What becomes of a VM's records after a round: the new phase (and node, exit code, reason
/// when they change) and the call it needs. `gone_after`: once the call succeeds, it is gone.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct VmVerdict {
    pub phase: Option<VmPhase>,
    pub node: Option<String>,
    /// `Some(code)`: the exit code is now this (`Some(None)`: none, it crashed).
    pub exit_code: Option<Option<i32>>,
    /// What happened to it, as said after "VM NAME ".
    pub reason: Option<String>,
    pub call: Option<(VmCall, bool)>,
}

/// One VM of an active job against what the nodes report. Pure.
pub fn reconcile_vm(v: &VmSeen<'_>) -> VmVerdict {
    let mut out = VmVerdict::default();
    if v.job_final {
        // Tear down what is left of a finished job.
        match v.copy {
            Some((node, ..)) => out.call = Some((VmCall::Destroy { node: node.into() }, true)),
            None if v.image => out.call = Some((VmCall::RemoveImage, true)),
            None if (v.recorded_listed || v.all_listed) && v.phase != VmPhase::Gone => out.phase = Some(VmPhase::Gone),
            None => {}
        }
        return out;
    }
    let destroy = |node: &str| Some((VmCall::Destroy { node: node.into() }, false));
    match (v.phase, v.copy) {
        (VmPhase::Running | VmPhase::Ready | VmPhase::Sleeping, Some((node, state, busy))) => match state {
            DomainState::Running | DomainState::Paused => {
                if v.phase != VmPhase::Running || v.recorded != Some(node) {
                    // Adopted: found running where the records did not say.
                    out.phase = Some(VmPhase::Running);
                    out.node = Some(node.into());
                }
                if state == DomainState::Paused && !busy && v.job_running {
                    out.call = Some((VmCall::Unpause { node: node.into() }, false));
                }
            }
            DomainState::Ended { exit_code } => {
                out.phase = Some(VmPhase::Ended);
                out.exit_code = Some(Some(exit_code));
                out.node = Some(node.into());
                out.call = destroy(node);
            }
            DomainState::Crashed => {
                out.phase = Some(VmPhase::Ended);
                out.exit_code = Some(None);
                out.reason = Some(format!("crashed on {node}"));
                out.call = destroy(node);
            }
        },
        (VmPhase::Running | VmPhase::Paused, None) if v.recorded_listed => {
            if v.image {
                // Saved while the daemon was away.
                out.phase = Some(VmPhase::Sleeping);
            } else {
                out.phase = Some(VmPhase::Gone);
                out.reason = Some(format!("vanished from node {}", v.recorded.unwrap_or("?")));
            }
        }
        (VmPhase::Sleeping, None) if v.all_listed && !v.image => {
            out.phase = Some(VmPhase::Gone);
            out.reason = Some("has lost its saved image".into());
        }
        (VmPhase::Ended | VmPhase::Gone, Some((node, ..))) => out.call = destroy(node),
        _ => {}
    }
    out
}

/// What one round brought, for the steps that follow the liveness step.
struct Round {
    started: std::time::Instant,
    listed: HashSet<String>,
    /// Every node listed, but those known to hold nothing.
    all_listed: bool,
    found: Found,
    images: Option<HashSet<String>>,
}

impl Round {
    fn image_exists(&self, core: &Core, vm: &str) -> bool {
        match &self.images {
            Some(names) => names.contains(&format!("{vm}.img")),
            // The image directory could not be listed this round: ask the file system.
            None => core.image_path(vm).exists(),
        }
    }
}

impl Core {
    /// Brings the records in line with what the nodes report.
    pub(crate) fn reconcile(&mut self, obs: Observation) {
        let now = now_ms();
        self.pace.observations += 1;
        let listed = self.take_reports(obs.nodes);
        self.fence_silent_nodes();
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
        // What a lost node lists says nothing of the VMs the records still put there: they are
        // gone, and their vjobs start over once their calls under way are over.
        let listed: HashSet<String> = listed
            .into_iter()
            .filter(|n| {
                self.node_idx(n)
                    .is_none_or(|i| self.nodes[i as usize].power.lost.is_none())
            })
            .collect();
        // A node switched off, fenced or lost holds no VM: its silence hides nothing. Without
        // this, one node lost for good kept a VM whose image had vanished from being given up
        // on, and its restore was tried for ever (chaos seed 504).
        let all_listed = self.nodes.iter().all(|n| {
            listed.contains(&n.cfg.name)
                || n.power.lost.is_some()
                || matches!(n.power.state, PowerState::Off | PowerState::Fenced)
        });
        let round = Round {
            started: obs.started,
            all_listed,
            listed,
            found,
            images: obs.images,
        };
        let active: Vec<u64> = self.rec.active.iter().copied().collect();
        let mut ours: HashSet<String> = HashSet::new();
        for id in active {
            if let Some(job) = self.rec.jobs.get(&id) {
                ours.extend(job.vms.iter().map(|v| v.name.clone()));
            }
            self.reconcile_job(id, &round, now);
        }
        self.destroy_leftovers(&round.found, &ours);
        self.pace.last_obs = Some(obs.started);
        self.pace.need_decision = true;
    }

    /// Every stale copy of the active jobs' VMs: (VM, node).
    pub(crate) fn stale_copies(&self) -> HashSet<(String, String)> {
        self.rec
            .active
            .iter()
            .filter_map(|id| self.rec.jobs.get(id))
            .flat_map(|j| j.stale.iter().cloned())
            .collect()
    }

    /// Takes in the nodes' answers: who is up, what each lists. Returns the nodes that listed.
    fn take_reports(&mut self, reports: Vec<NodeReport>) -> HashSet<String> {
        let mut listed = HashSet::new();
        let mut rebooted = Vec::new();
        for r in reports {
            let Some(i) = self.node_idx(&r.node) else { continue };
            let view = &mut self.nodes[i as usize];
            match r.answer {
                NodeAnswer::Listed(domains, boot_id) => {
                    if !view.up && view.power.state == PowerState::On {
                        tracing::info!(node = %r.node, "node answers again");
                    }
                    if boot_id.is_some() && boot_id != view.power.boot_id {
                        if view.power.boot_id.is_some() {
                            rebooted.push(i as usize);
                        }
                        view.power.boot_id = boot_id;
                        self.dirty.nodes.insert(r.node.clone());
                    }
                    view.up = true;
                    view.down_since = None;
                    if view.domains != domains {
                        view.domains = domains;
                        self.board.listings.insert(i);
                    }
                    listed.insert(r.node);
                    self.power_node_answered(i as usize);
                }
                // A node switched off (or not booted yet) is expected not to answer.
                NodeAnswer::Failed(_) | NodeAnswer::Silent if view.power.state != PowerState::On => {
                    view.up = false;
                    view.down_since = None;
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
        if !rebooted.is_empty() {
            self.lose_rebooted_nodes(&rebooted);
        }
        listed
    }

    /// Nodes that answered with a new boot id rebooted: the VMs the records put there were lost
    /// with the machine, so they count as lost (their vjobs start over, as a fenced node's do),
    /// not as VMs that vanished from a node that kept running (their vjobs would fail).
    fn lose_rebooted_nodes(&mut self, rebooted: &[usize]) {
        let holding = self.nodes_holding_vms();
        for &i in rebooted.iter().filter(|i| holding.contains(i)) {
            tracing::warn!(node = %self.nodes[i].cfg.name, "node rebooted (its boot id changed): the VMs it held are lost");
            let power = &mut self.nodes[i].power;
            if power.lost.is_none() {
                power.lost = Some("rebooted (its boot id changed)".into());
            }
        }
    }

    /// Requeues the vjobs with VMs on fenced nodes ([`crate::fence`]): those VMs are gone, so
    /// the vjob starts over. Every copy of its VMs on a node becomes a stale record, destroyed
    /// (on its node) once that node answers, and forgotten only when the destroy is confirmed;
    /// its images are discarded.
    fn requeue_from_lost_nodes(&mut self, now: u64) {
        let lost: HashMap<String, String> = self
            .nodes
            .iter()
            .filter_map(|n| Some((n.cfg.name.clone(), n.power.lost.clone()?)))
            .collect();
        if lost.is_empty() {
            return;
        }
        let hit: Vec<u64> = self
            .rec
            .active
            .iter()
            .copied()
            .filter(|id| {
                self.rec.jobs.get(id).is_some_and(|j| {
                    !j.state.is_final()
                        && j.vms.iter().any(|v| {
                            matches!(v.phase, VmPhase::Running | VmPhase::Paused)
                                && v.node.as_deref().is_some_and(|n| lost.contains_key(n))
                        })
                        && !j.vms.iter().any(|v| self.is_busy(&v.name))
                })
            })
            .collect();
        for id in hit {
            let image_dir = self.cfg.hypervisor.image_dir.clone();
            let Some(job) = self.rec.jobs.get_mut(&id) else {
                continue;
            };
            let (images, down) = start_over(job, &lost, &image_dir);
            let why = down
                .iter()
                .map(|n| format!("node {n} {}", lost[n]))
                .collect::<Vec<_>>()
                .join("; ");
            let why = format!("{why}: its VMs there are lost");
            let _ = job.set_state(JobState::Queued, now);
            tracing::warn!(job = id, "{why}; requeued");
            job.event(now, format!("{why}; requeued"));
            job.reason = Some(format!("requeued: {why}"));
            self.dirty.jobs.insert(id);
            for (call, vm) in images {
                self.start_cleanup(id, vm, call, false);
            }
            self.pace.need_decision = true;
        }
        // A node stays lost until no record puts a VM of a vjob there any more.
        let holding = self.nodes_holding_vms();
        for i in 0..self.nodes.len() {
            if self.nodes[i].power.lost.is_some() && !holding.contains(&i) {
                self.nodes[i].power.lost = None;
                self.dirty.nodes.insert(self.nodes[i].cfg.name.clone());
            }
        }
    }

    /// Destroys the stale copies on the nodes that listed this round, whether the listing shows
    /// them or not (destroying what is not there is confirmed at once): a record goes only
    /// when its node confirms the destroy.
    fn destroy_stale_copies(&mut self, listed: &HashSet<String>) {
        let mut calls: Vec<(u64, usize, String, String)> = Vec::new();
        for id in &self.rec.active {
            let Some(job) = self.rec.jobs.get(id) else { continue };
            for (vm, node) in &job.stale {
                if listed.contains(node) && !self.is_busy_at(vm, node) {
                    let idx = parse_vm_name(&self.cfg.cluster, vm).map(|(_, i)| i).unwrap_or(0);
                    calls.push((*id, idx, vm.clone(), node.clone()));
                }
            }
        }
        for (id, idx, vm, node) in calls {
            self.start_stale_destroy(id, idx, vm, node);
        }
    }

    /// A stale copy's destroy was confirmed by its node.
    pub(crate) fn forget_stale_copy(&mut self, id: u64, vm: &str, node: &str) {
        let Some(job) = self.rec.jobs.get_mut(&id) else { return };
        let before = job.stale.len();
        job.stale.retain(|(v, n)| !(v == vm && n == node));
        if job.stale.len() != before {
            tracing::info!(vm = %vm, node = %node, "destroyed the stale copy of a requeued VM");
            job.event(now_ms(), format!("stale copy of {vm} destroyed on {node}"));
            self.dirty.jobs.insert(id);
        }
    }

    /// One active job against the round: each VM's verdict applied, the calls it needs started,
    /// the job finished when its VMs all ended.
    fn reconcile_job(&mut self, id: u64, round: &Round, now: u64) {
        let Some(job) = self.rec.jobs.get(&id) else { return };
        // Fast path: a job that never ran has nothing to reconcile.
        if !job.state.is_final()
            && job
                .vms
                .iter()
                .all(|v| v.phase == VmPhase::Ready && !round.found.contains_key(&v.name))
        {
            return;
        }
        let mut job = self.rec.jobs.remove(&id).expect("looked up above");
        let mut calls: Vec<(Call, usize, bool)> = Vec::new();
        let mut changed = false;
        let all_listed = round.all_listed;
        for i in 0..job.vms.len() {
            let v = &job.vms[i];
            if self.is_busy(&v.name) || self.calls.changed_at.get(&v.name).is_some_and(|t| *t > round.started) {
                continue;
            }
            let copy = pick_copy(round.found.get(&v.name), v.node.as_deref());
            let seen = VmSeen {
                phase: v.phase,
                recorded: v.node.as_deref(),
                job_final: job.state.is_final(),
                job_running: job.state == JobState::Running,
                copy: copy.map(|(n, d)| (n.as_str(), d.state, d.busy)),
                recorded_listed: v.node.as_ref().is_none_or(|n| round.listed.contains(n)),
                all_listed,
                image: round.image_exists(self, &v.name),
            };
            let verdict = reconcile_vm(&seen);
            changed |= apply_verdict(&mut job, i, &verdict);
            if let Some((call, gone_after)) = verdict.call {
                calls.push((self.vm_call(&job.vms[i].name, call), i, gone_after));
            }
        }
        if !job.state.is_final() && job.all_vms_over() {
            changed |= self.finish_job(&mut job, now);
        } else if !job.state.is_final()
            && job.state != JobState::Held
            && !self
                .calls
                .run
                .as_ref()
                .is_some_and(|(_, _, touched)| touched.contains(&id))
            && job.settle_state(now)
        {
            changed = true;
        }
        let done = job.state.is_final() && !job.has_remains() && calls.is_empty();
        self.rec.jobs.insert(id, job);
        if changed {
            self.dirty.jobs.insert(id);
        }
        for (call, vm, gone_after) in calls {
            self.start_cleanup(id, vm, call, gone_after);
        }
        if done {
            self.rec.active.remove(&id);
        }
    }

    fn vm_call(&self, vm: &str, call: VmCall) -> Call {
        match call {
            VmCall::Destroy { node } => Call::Destroy { node, vm: vm.into() },
            VmCall::Unpause { node } => Call::Unpause { node, vm: vm.into() },
            VmCall::RemoveImage => Call::RemoveImage {
                vm: vm.into(),
                image: self.image_path(vm),
            },
        }
    }

    /// A job whose VMs have all ended (or vanished) is over: completed when every VM ended with
    /// 0, failed otherwise; its output is collected off this thread. Returns whether it changed.
    fn finish_job(&mut self, job: &mut Job, now: u64) -> bool {
        if matches!(job.state, JobState::Suspended | JobState::Queued | JobState::Held) {
            // Its VMs ran to their end without the records' knowing (restored just before a
            // crash, say, and over before the restart): it ran.
            if job.state == JobState::Held {
                let _ = job.set_state(JobState::Queued, now);
            }
            if job.set_state(JobState::Running, now).is_ok() {
                job.event(now, "its VMs were found ended: they ran while vjobd did not know it");
            }
        }
        let lost = job.vms.iter().any(|v| v.exit_code.is_none());
        let code = job.vms_exit_code();
        let (to, msg) = if lost {
            let why = job.reason.clone().unwrap_or_else(|| "a VM was lost".into());
            (JobState::Failed, format!("failed: {why}"))
        } else if code == 0 {
            (JobState::Completed, "completed, exit code 0".to_string())
        } else {
            (JobState::Failed, format!("failed, exit code {code}"))
        };
        if job.set_state(to, now).is_err() {
            return false;
        }
        job.exit_code = (!lost).then_some(code);
        if to == JobState::Completed {
            job.reason = None;
        }
        job.event(now, msg);
        let simulated = self.cfg.hypervisor.backend == crate::config::Backend::Sim;
        let call = Call::CollectOutput {
            vm: job.vms[0].name.clone(),
            consoles: job.vms.iter().map(|v| (v.name.clone(), v.node.clone())).collect(),
            path: job.output_path(&self.cfg.state_dir),
            without_console: simulated.then(|| job.simulated_output()),
            owner: job.uid,
        };
        self.start_output_collection(job.id, call);
        self.pace.need_decision = true;
        true
    }

    /// Domains that belong to no active job: those of this cluster's finished jobs go; any
    /// other (another cluster's, or no cluster's) is never touched.
    fn destroy_leftovers(&mut self, found: &Found, ours: &HashSet<String>) {
        for (name, node) in found
            .iter()
            .flat_map(|(name, copies)| copies.iter().map(move |(n, _)| (name, n)))
        {
            if ours.contains(name) || self.orphans_reported.contains(name) {
                continue;
            }
            let parsed = parse_vm_name(&self.cfg.cluster, name);
            match parsed.filter(|(id, _)| self.rec.jobs.get(id).is_some_and(|j| j.state.is_final())) {
                Some((id, idx)) => {
                    if !self.is_busy_at(name, node) {
                        let call = Call::Destroy {
                            node: node.clone(),
                            vm: name.clone(),
                        };
                        self.start_cleanup(id, idx, call, true);
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
    }
}

/// Applies a verdict to VM `i` of `job`; returns whether the records changed.
fn apply_verdict(job: &mut Job, i: usize, verdict: &VmVerdict) -> bool {
    let v = &mut job.vms[i];
    let mut changed = false;
    if let Some(phase) = verdict.phase {
        if phase == VmPhase::Running && v.phase != VmPhase::Running {
            tracing::info!(vm = %v.name, node = ?verdict.node, "adopting a VM found running");
        }
        changed |= v.phase != phase;
        v.phase = phase;
    }
    if let Some(node) = &verdict.node {
        changed |= v.node.as_ref() != Some(node);
        v.node = Some(node.clone());
    }
    if let Some(code) = verdict.exit_code {
        v.exit_code = code;
        changed = true;
    }
    if let Some(why) = &verdict.reason {
        let why = format!("VM {} {why}", v.name);
        tracing::error!(vm = %v.name, "{why}");
        job.reason = Some(why);
        changed = true;
    }
    changed
}

/// Sends a job back to the queue from scratch after a node was lost: every copy of its VMs on
/// a node becomes a stale record, its clock starts over. Returns the image removals to make and
/// the lost nodes its VMs were on.
fn start_over(
    job: &mut Job,
    lost: &HashMap<String, String>,
    image_dir: &std::path::Path,
) -> (Vec<(Call, usize)>, Vec<String>) {
    let mut calls = Vec::new();
    let mut down: Vec<String> = Vec::new();
    for (i, v) in job.vms.iter_mut().enumerate() {
        match (v.phase, v.node.clone()) {
            (VmPhase::Running | VmPhase::Paused | VmPhase::Ended, Some(node)) => {
                if lost.contains_key(&node) && !down.contains(&node) {
                    down.push(node.clone());
                }
                let copy = (v.name.clone(), node);
                if !job.stale.contains(&copy) {
                    job.stale.push(copy);
                }
            }
            (VmPhase::Sleeping, _) => calls.push((
                Call::RemoveImage {
                    vm: v.name.clone(),
                    image: image_file(image_dir, &v.name),
                },
                i,
            )),
            _ => {}
        }
        v.phase = VmPhase::Ready;
        v.node = None;
        v.exit_code = None;
    }
    job.run_ms = 0;
    job.start_ms = None;
    (calls, down)
}

/// Where VM `vm` is saved.
pub fn image_file(image_dir: &std::path::Path, vm: &str) -> PathBuf {
    image_dir.join(format!("{vm}.img"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use VmPhase::*;

    const PHASES: [VmPhase; 6] = [Ready, Running, Sleeping, Paused, Ended, Gone];
    const STATES: [Option<DomainState>; 5] = [
        None,
        Some(DomainState::Running),
        Some(DomainState::Paused),
        Some(DomainState::Ended { exit_code: 3 }),
        Some(DomainState::Crashed),
    ];

    fn seen(phase: VmPhase, state: Option<DomainState>, image: bool, listed: bool) -> VmSeen<'static> {
        VmSeen {
            phase,
            recorded: Some("a"),
            job_final: false,
            job_running: true,
            copy: state.map(|s| ("a", s, false)),
            recorded_listed: listed,
            all_listed: listed,
            image,
        }
    }

    fn destroy(gone_after: bool) -> Option<(VmCall, bool)> {
        Some((VmCall::Destroy { node: "a".into() }, gone_after))
    }

    /// The expected verdict of every (phase, what the node lists) of a job that is not over,
    /// its node listed, no image: (new phase, call).
    fn expected(phase: VmPhase, state: Option<DomainState>) -> (Option<VmPhase>, Option<(VmCall, bool)>) {
        use DomainState as D;
        match (phase, state) {
            (Running, Some(D::Running)) => (None, None),
            (Running, Some(D::Paused)) => (None, Some((VmCall::Unpause { node: "a".into() }, false))),
            (Ready | Sleeping, Some(D::Running)) => (Some(Running), None),
            (Ready | Sleeping, Some(D::Paused)) => (Some(Running), Some((VmCall::Unpause { node: "a".into() }, false))),
            (Ready | Running | Sleeping, Some(D::Ended { .. } | D::Crashed)) => (Some(Ended), destroy(false)),
            (Running | Paused, None) => (Some(Gone), None),
            (Sleeping, None) => (Some(Gone), None),
            (Ended | Gone, Some(_)) => (None, destroy(false)),
            (Paused, Some(_)) => (None, None),
            (Ready | Ended | Gone, None) => (None, None),
        }
    }

    #[test]
    fn every_phase_against_every_report_of_a_job_not_over() {
        for phase in PHASES {
            for state in STATES {
                let v = reconcile_vm(&seen(phase, state, false, true));
                let want = expected(phase, state);
                assert_eq!((v.phase, v.call.clone()), want, "{phase:?} found {state:?}");
            }
        }
    }

    #[test]
    fn exit_codes_and_reasons_come_from_what_ended() {
        let v = reconcile_vm(&seen(Running, Some(DomainState::Ended { exit_code: 3 }), false, true));
        assert_eq!(
            (v.exit_code, v.node.as_deref(), v.reason),
            (Some(Some(3)), Some("a"), None)
        );
        let v = reconcile_vm(&seen(Running, Some(DomainState::Crashed), false, true));
        assert_eq!(v.exit_code, Some(None));
        assert_eq!(v.reason.as_deref(), Some("crashed on a"));
        let v = reconcile_vm(&seen(Running, None, false, true));
        assert_eq!(v.reason.as_deref(), Some("vanished from node a"));
    }

    #[test]
    fn an_image_found_means_saved_and_a_missing_one_lost() {
        for phase in [Running, Paused] {
            assert_eq!(reconcile_vm(&seen(phase, None, true, true)).phase, Some(Sleeping));
        }
        assert_eq!(reconcile_vm(&seen(Sleeping, None, true, true)).phase, None);
        let v = reconcile_vm(&seen(Sleeping, None, false, true));
        assert_eq!(v.reason.as_deref(), Some("has lost its saved image"));
    }

    #[test]
    fn nothing_is_concluded_from_a_node_that_did_not_list() {
        for phase in PHASES {
            let v = reconcile_vm(&seen(phase, None, false, false));
            assert_eq!(v, VmVerdict::default(), "{phase:?}");
        }
    }

    #[test]
    fn a_vm_found_elsewhere_is_adopted_there_and_a_paused_one_of_a_job_not_running_stays_paused() {
        let mut s = seen(Running, Some(DomainState::Running), false, true);
        s.copy = Some(("b", DomainState::Running, false));
        assert_eq!(reconcile_vm(&s).node.as_deref(), Some("b"));
        let mut s = seen(Running, Some(DomainState::Paused), false, true);
        s.job_running = false;
        assert_eq!(
            reconcile_vm(&s).call,
            None,
            "a suspended job's paused VM is left paused"
        );
        s.job_running = true;
        s.copy = Some(("a", DomainState::Paused, true));
        assert_eq!(reconcile_vm(&s).call, None, "busy: not now");
    }

    #[test]
    fn what_is_left_of_a_finished_job_goes() {
        for phase in PHASES {
            for state in STATES {
                for image in [false, true] {
                    let mut s = seen(phase, state, image, true);
                    s.job_final = true;
                    let v = reconcile_vm(&s);
                    let want = match (state, image) {
                        (Some(_), _) => (None, destroy(true)),
                        (None, true) => (None, Some((VmCall::RemoveImage, true))),
                        (None, false) if phase != Gone => (Some(Gone), None),
                        (None, false) => (None, None),
                    };
                    assert_eq!((v.phase, v.call), want, "{phase:?} {state:?} image {image}");
                }
            }
        }
    }
}
