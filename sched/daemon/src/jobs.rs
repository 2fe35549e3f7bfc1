//! The daemon's records: jobs (vjobs) with their VMs, queues and node administrative states, and
//! the one place where a job's state changes ([`Job::set_state`]).
//!
//! A vjob is running only when all its VMs run and suspended only when all sleep; while a switch
//! is under way it keeps its previous state, and [`Job::settle_state`] derives the new one from
//! its VMs once they agree.

use serde::{Deserialize, Serialize};
use vjob_api::{JobDetail, JobEvent, JobInfo, JobState, NodeAdminState, QueueInfo, VmInfo};

use crate::spec::JobSpec;

/// Most events kept per job (the oldest are dropped first, except the first).
const MAX_EVENTS: usize = 64;

/// A VM's life as the daemon records it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VmPhase {
    /// Not started yet.
    Ready,
    /// Defined on its node (running, or paused during a switch).
    Running,
    /// Saved to disk.
    Sleeping,
    /// Paused in memory on its node by a short preemption: holds its memory, not its processors.
    Paused,
    /// Its guest ended with this exit code; waiting to be destroyed.
    Ended,
    /// Destroyed, image removed.
    Gone,
}

impl VmPhase {
    pub fn as_str(self) -> &'static str {
        match self {
            VmPhase::Ready => "ready",
            VmPhase::Running => "running",
            VmPhase::Sleeping => "sleeping",
            VmPhase::Paused => "paused",
            VmPhase::Ended => "ended",
            VmPhase::Gone => "gone",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmRecord {
    pub name: String,
    /// The node it runs on, or last ran on.
    pub node: Option<String>,
    pub phase: VmPhase,
    pub exit_code: Option<i32>,
}

/// A job and everything known about it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Job {
    pub id: u64,
    pub user: String,
    pub uid: u32,
    pub queue: String,
    pub name: String,
    pub priority: i32,
    pub state: JobState,
    pub exit_code: Option<i32>,
    pub reason: Option<String>,
    pub submit_ms: u64,
    pub start_ms: Option<u64>,
    pub end_ms: Option<u64>,
    /// Running time accumulated before `running_since`.
    pub run_ms: u64,
    pub running_since: Option<u64>,
    pub preemptions: u32,
    /// Not preempted again before this time (anti-thrashing quantum, or after a suspension
    /// that failed).
    pub protected_until: u64,
    /// Suspensions in a row that failed (the image storage full, say): each protects the vjob
    /// twice as long as the one before ([`suspend_backoff_ms`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub suspend_failures: u32,
    /// Suspended by an administrator: stays suspended until resumed by hand.
    pub admin_suspended: bool,
    pub spec_file: String,
    pub cwd: Option<String>,
    pub spec: JobSpec,
    pub vms: Vec<VmRecord>,
    pub events: Vec<(u64, String)>,
    /// Copies of its VMs left on nodes that went down (VM name, node) after the job was
    /// requeued: destroyed when those nodes answer again, never adopted.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale: Vec<(String, String)>,
    /// Its share of its nodes' energy while its VMs ran there, joules.
    #[serde(default)]
    pub energy_j: f64,
}

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// How long a vjob is not preempted after its `failures`-th suspension in a row failed: 10 s,
/// doubling, at most 5 minutes. A storage that refuses images is not hammered every round, and
/// the victim runs meanwhile.
pub fn suspend_backoff_ms(failures: u32) -> u64 {
    (10_000u64 << failures.saturating_sub(1).min(5)).min(300_000)
}

/// A refused state change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransitionError {
    pub from: JobState,
    pub to: JobState,
}

impl std::fmt::Display for TransitionError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "a {} job cannot become {}", self.from.as_str(), self.to.as_str())
    }
}

/// The name of VM `index` of job `id` of cluster `cluster`, unique across every cluster that
/// shares the nodes (the domain name on libvirt).
pub fn vm_name(cluster: &str, id: u64, index: usize) -> String {
    format!("{cluster}-{id}-{index}")
}

/// The job id and VM index encoded in a VM name, if it is one of cluster `cluster`'s. Names of
/// other clusters never parse: their prefix differs, or what follows it is not exactly two
/// numbers (`a-1-2-0` is cluster `a-1`'s, not `a`'s).
pub fn parse_vm_name(cluster: &str, name: &str) -> Option<(u64, usize)> {
    let rest = name.strip_prefix(cluster)?.strip_prefix('-')?;
    let (id, idx) = rest.split_once('-')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(id) || !digits(idx) {
        return None;
    }
    Some((id.parse().ok()?, idx.parse().ok()?))
}

impl Job {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        cluster: &str,
        id: u64,
        user: String,
        uid: u32,
        queue: String,
        spec: JobSpec,
        spec_file: String,
        cwd: Option<String>,
        hold: bool,
        now: u64,
    ) -> Job {
        let vms = (0..spec.vm.count as usize)
            .map(|i| VmRecord {
                name: vm_name(cluster, id, i),
                node: None,
                phase: VmPhase::Ready,
                exit_code: None,
            })
            .collect();
        let mut job = Job {
            id,
            user,
            uid,
            queue,
            name: spec.name.clone(),
            priority: spec.priority,
            state: if hold { JobState::Held } else { JobState::Queued },
            exit_code: None,
            reason: None,
            submit_ms: now,
            start_ms: None,
            end_ms: None,
            run_ms: 0,
            running_since: None,
            preemptions: 0,
            protected_until: 0,
            suspend_failures: 0,
            admin_suspended: false,
            spec_file,
            cwd,
            spec,
            vms,
            events: Vec::new(),
            stale: Vec::new(),
            energy_j: 0.0,
        };
        job.event(now, if hold { "submitted, held" } else { "submitted" });
        job
    }

    pub fn event(&mut self, now: u64, message: impl Into<String>) {
        if self.events.len() >= MAX_EVENTS {
            self.events.remove(1);
        }
        self.events.push((now, message.into()));
    }

    /// Where the job's output goes: the spec's `output` (relative to the submitter's working
    /// directory), else `STATE_DIR/output/ID.out`.
    pub fn output_path(&self, state_dir: &std::path::Path) -> std::path::PathBuf {
        match &self.spec.run.output {
            Some(o) => {
                let p = std::path::Path::new(o);
                match (&self.cwd, p.is_absolute()) {
                    (Some(cwd), false) => std::path::Path::new(cwd).join(p),
                    _ => p.to_path_buf(),
                }
            }
            None => state_dir.join("output").join(format!("{}.out", self.id)),
        }
    }

    /// Running time so far.
    pub fn elapsed_ms(&self, now: u64) -> u64 {
        self.run_ms + self.running_since.map(|s| now.saturating_sub(s)).unwrap_or(0)
    }

    /// The only way a job's state changes: checks the transition and keeps the clocks.
    pub fn set_state(&mut self, to: JobState, now: u64) -> Result<(), TransitionError> {
        use JobState::*;
        let from = self.state;
        let allowed = match (from, to) {
            (a, b) if a == b => return Ok(()),
            (Completed | Failed | Cancelled, _) => false,
            (Queued, Held | Running | Cancelled | Failed) => true,
            (Held, Queued | Suspended | Cancelled) => true,
            (Running, Suspended | Completed | Failed | Cancelled | Queued) => true,
            (Suspended, Running | Held | Cancelled | Failed) => true,
            _ => false,
        };
        if !allowed {
            return Err(TransitionError { from, to });
        }
        if from == Running {
            self.run_ms = self.elapsed_ms(now);
            self.running_since = None;
        }
        if to == Running {
            self.running_since = Some(now);
            self.start_ms.get_or_insert(now);
        }
        if to.is_final() {
            self.end_ms = Some(now);
        }
        self.state = to;
        Ok(())
    }

    /// Derives the job's state from its VMs once they agree: all running: running; all sleeping:
    /// suspended (held if it was held). Returns whether the state changed.
    pub fn settle_state(&mut self, now: u64) -> bool {
        if self.state.is_final() {
            return false;
        }
        let all = |p: VmPhase| self.vms.iter().all(|v| v.phase == p);
        let to = if all(VmPhase::Running) {
            JobState::Running
        } else if (all(VmPhase::Sleeping) || all(VmPhase::Paused)) && self.state != JobState::Held {
            JobState::Suspended
        } else {
            return false;
        };
        let changed = self.state != to;
        if changed && self.set_state(to, now).is_err() {
            return false;
        }
        changed
    }

    /// Every VM has ended or is gone: nothing of the job runs any more.
    pub fn all_vms_over(&self) -> bool {
        self.vms
            .iter()
            .all(|v| matches!(v.phase, VmPhase::Ended | VmPhase::Gone))
    }

    /// The vjob's exit code: the first non-zero of its VMs', else 0.
    pub fn vms_exit_code(&self) -> i32 {
        self.vms
            .iter()
            .filter_map(|v| v.exit_code)
            .find(|&c| c != 0)
            .unwrap_or(0)
    }

    /// Whether any VM still exists on a node or on disk.
    pub fn has_remains(&self) -> bool {
        self.vms.iter().any(|v| {
            matches!(
                v.phase,
                VmPhase::Running | VmPhase::Paused | VmPhase::Sleeping | VmPhase::Ended
            )
        })
    }

    pub fn info(&self, now: u64, full: bool) -> JobInfo {
        let secs = |ms: u64| ms as f64 / 1000.0;
        JobInfo {
            id: self.id,
            name: self.name.clone(),
            user: self.user.clone(),
            queue: self.queue.clone(),
            state: self.state,
            exiting: self.state == JobState::Running && self.vms.iter().any(|v| v.phase == VmPhase::Ended),
            priority: self.priority,
            exit_code: self.exit_code,
            reason: self.reason.clone(),
            vms: self
                .vms
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    let own = self.spec.vm.each.get(i);
                    VmInfo {
                        name: v.name.clone(),
                        node: v.node.clone(),
                        state: v.phase.as_str().to_string(),
                        script_name: self.spec.placement.as_ref().and_then(|p| p.names.get(i).cloned()),
                        vcpus: own.map(|s| s.vcpus),
                        memory: own.map(|s| s.memory),
                    }
                })
                .collect(),
            vcpus: self.spec.vm.vcpus,
            memory: self.spec.vm.memory,
            submit_time: secs(self.submit_ms),
            start_time: self.start_ms.map(secs),
            end_time: self.end_ms.map(secs),
            elapsed_s: secs(self.elapsed_ms(now)),
            walltime_s: self.spec.walltime_ms.map(secs),
            preemptions: self.preemptions,
            detail: full.then(|| JobDetail {
                uid: self.uid,
                script: self.spec.run.script.clone(),
                image: self.spec.vm.image.clone(),
                output: self.spec.run.output.clone(),
                spec_file: self.spec_file.clone(),
                events: self
                    .events
                    .iter()
                    .map(|(t, m)| JobEvent {
                        time: secs(*t),
                        message: m.clone(),
                    })
                    .collect(),
                stale_copies: self.stale.iter().map(|(vm, node)| format!("{vm} on {node}")).collect(),
                energy_j: self.energy_j,
            }),
        }
    }
}

/// A queue's settings as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Queue {
    pub name: String,
    pub priority: i32,
    pub enabled: bool,
    pub started: bool,
    pub default: bool,
    pub max_running: Option<u32>,
    pub max_user_running: Option<u32>,
}

impl Queue {
    pub fn info(&self, jobs: &[&Job]) -> QueueInfo {
        let count = |s: JobState| jobs.iter().filter(|j| j.queue == self.name && j.state == s).count() as u32;
        QueueInfo {
            name: self.name.clone(),
            priority: self.priority,
            enabled: self.enabled,
            started: self.started,
            default: self.default,
            max_running: self.max_running,
            max_user_running: self.max_user_running,
            queued: count(JobState::Queued),
            running: count(JobState::Running),
            suspended: count(JobState::Suspended),
            held: count(JobState::Held),
        }
    }
}

/// A node's administrative state as stored.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeRecord {
    pub name: String,
    pub state: NodeAdminState,
    /// Its power, as power management last left it.
    #[serde(default)]
    pub power: crate::power::PowerRecord,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::JobSpec;

    #[test]
    fn a_failed_suspension_protects_twice_as_long_as_the_one_before_up_to_five_minutes() {
        let b: Vec<u64> = (1..=8).map(suspend_backoff_ms).collect();
        assert_eq!(b, [10_000, 20_000, 40_000, 80_000, 160_000, 300_000, 300_000, 300_000]);
    }

    fn job() -> Job {
        let spec = JobSpec::parse("j.toml", "[vm]\ncount = 2\n[run]\nscript = 'x'\n").unwrap();
        Job::new(
            "vjob",
            7,
            "u".into(),
            1000,
            "batch".into(),
            spec,
            "j.toml".into(),
            None,
            false,
            1_000,
        )
    }

    #[test]
    fn running_time_counts_only_while_running() {
        let mut j = job();
        j.set_state(JobState::Running, 2_000).unwrap();
        j.set_state(JobState::Suspended, 5_000).unwrap();
        assert_eq!(j.elapsed_ms(9_000), 3_000);
        j.set_state(JobState::Running, 10_000).unwrap();
        assert_eq!(j.elapsed_ms(11_000), 4_000);
        assert_eq!(j.start_ms, Some(2_000));
        j.set_state(JobState::Completed, 12_000).unwrap();
        assert_eq!(j.end_ms, Some(12_000));
        assert_eq!(
            j.set_state(JobState::Running, 13_000),
            Err(TransitionError {
                from: JobState::Completed,
                to: JobState::Running
            })
        );
    }

    #[test]
    fn state_follows_the_vms_once_they_agree() {
        let mut j = job();
        j.vms[0].phase = VmPhase::Running;
        assert!(!j.settle_state(1));
        assert_eq!(j.state, JobState::Queued);
        j.vms[1].phase = VmPhase::Running;
        assert!(j.settle_state(2));
        assert_eq!(j.state, JobState::Running);
        j.vms.iter_mut().for_each(|v| v.phase = VmPhase::Sleeping);
        assert!(j.settle_state(3));
        assert_eq!(j.state, JobState::Suspended);
    }

    #[test]
    fn vm_names_round_trip() {
        assert_eq!(parse_vm_name("vjob", &vm_name("vjob", 12, 3)), Some((12, 3)));
        assert_eq!(parse_vm_name("vjob", "other"), None);
        // Clusters whose names extend one another never read each other's VMs.
        assert_eq!(parse_vm_name("a", &vm_name("a-1", 2, 0)), None);
        assert_eq!(parse_vm_name("a-1", &vm_name("a", 1, 2)), None);
        assert_eq!(parse_vm_name("a", "a-1-+2"), None);
        assert_eq!(parse_vm_name("a", "ab-1-2"), None);
        let mut j = job();
        j.vms[0].exit_code = Some(0);
        j.vms[1].exit_code = Some(3);
        assert_eq!(j.vms_exit_code(), 3);
    }
}
