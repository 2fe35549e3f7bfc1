//! The daemon's records: jobs (vjobs) with their VMs, queues and node administrative states, and
//! the one place where a job's state changes ([`Job::set_state`]).
//!
//! A vjob is running only when all its VMs run and suspended only when all sleep; while a switch
//! is under way it keeps its previous state, and [`Job::settle_state`] derives the new one from
//! its VMs once they agree.

use serde::{Deserialize, Serialize};
use vjob_api::{JobDetail, JobEvent, JobInfo, JobRef, JobState, JobStateChange, NodeAdminState, QueueInfo, VmInfo};

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
    /// A task of an array: which, and the array's throttle.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<ArrayTask>,
    /// What accounting reports beyond the clocks above.
    #[serde(default)]
    pub acct: Accounting,
    /// Every state it took, in order, with when (the first [`vjob_api::MAX_STATE_CHANGES`]):
    /// what shows that its history is made of legal transitions only, across restarts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<(u64, JobState)>,
}

/// A job's context switches and what they cost, for accounting (`vacct`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Accounting {
    /// Times it went from running to suspended, and back.
    pub suspends: u32,
    pub resumes: u32,
    /// Live migrations of its VMs.
    pub migrations: u32,
    /// Memory written and read by its VMs' saves, restores and migrations, bytes.
    pub bytes_moved: u64,
    /// Time spent suspended (on disk or paused, held or not) before `suspended_since`.
    pub suspended_ms: u64,
    pub suspended_since: Option<u64>,
}

impl Accounting {
    /// Time spent suspended so far.
    pub fn suspended_ms(&self, now: u64) -> u64 {
        self.suspended_ms + self.suspended_since.map_or(0, |s| now.saturating_sub(s))
    }
}

/// What makes a job a task of an array (`ID[INDEX]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArrayTask {
    /// The array's id: its first task's job id.
    pub id: u64,
    pub index: u32,
    /// Most tasks of the array running at once; kept alike in every task.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<u32>,
}

/// The default output file, relative to the submitter's working directory (as sbatch's).
pub const DEFAULT_OUTPUT: &str = "vjob-%j.out";

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
            array: None,
            acct: Accounting::default(),
            states: Vec::new(),
        };
        job.states.push((now, job.state));
        job.event(now, if hold { "submitted, held" } else { "submitted" });
        job
    }

    pub fn event(&mut self, now: u64, message: impl Into<String>) {
        if self.events.len() >= MAX_EVENTS {
            self.events.remove(1);
        }
        self.events.push((now, message.into()));
    }

    /// How commands name it: `12`, or `12[3]` for task 3 of array 12.
    pub fn label(&self) -> JobRef {
        match self.array {
            Some(a) => JobRef::task(a.id, a.index),
            None => JobRef::job(self.id),
        }
    }

    /// Where the job's output goes: the spec's `output`, else [`DEFAULT_OUTPUT`], with its
    /// patterns filled in ([`Job::expand_pattern`]), relative to the submitter's working
    /// directory; `STATE_DIR/output/` when the submitter had none.
    pub fn output_path(&self, state_dir: &std::path::Path) -> std::path::PathBuf {
        let pattern = self.spec.run.output.as_deref().unwrap_or(DEFAULT_OUTPUT);
        let p = std::path::PathBuf::from(self.expand_pattern(pattern));
        match (&self.cwd, p.is_absolute()) {
            (_, true) => p,
            (Some(cwd), false) => std::path::Path::new(cwd).join(p),
            (None, false) => state_dir.join("output").join(p),
        }
    }

    /// A file name pattern as sbatch's `-o`: `%j` the job id, `%A` the array's id (the job's
    /// own outside arrays), `%a` the task's index (`0` outside arrays), `%x` the job's name,
    /// `%u` its user, `%%` a `%`. Any other `%` stays as it is.
    pub fn expand_pattern(&self, pattern: &str) -> String {
        let mut out = String::with_capacity(pattern.len() + 8);
        let mut chars = pattern.chars().peekable();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.peek().copied() {
                Some('j') => out.push_str(&self.id.to_string()),
                Some('A') => out.push_str(&self.array.map_or(self.id, |a| a.id).to_string()),
                Some('a') => out.push_str(&self.array.map_or(0, |a| a.index).to_string()),
                Some('x') => out.push_str(&self.name),
                Some('u') => out.push_str(&self.user),
                Some('%') => out.push('%'),
                _ => {
                    out.push('%');
                    continue;
                }
            }
            chars.next();
        }
        out
    }

    /// The output file of a job on the simulated backend, where no guest prints anything: the
    /// environment its VMs were given, then its history, a line per state change.
    pub fn simulated_output(&self) -> String {
        let mut s = format!(
            "# vjob {} ({}), simulated: no guest ran, so this is its environment and its history\n",
            self.label(),
            self.name
        );
        for (k, v) in crate::deciding::vm_spec(self, 0).guest.env {
            s.push_str(&format!("{k}={v}\n"));
        }
        for (t, m) in &self.events {
            s.push_str(&format!("{} {m}\n", vjob_api::display::timestamp(*t as f64 / 1000.0)));
        }
        s
    }

    /// Its vcpus, all VMs together.
    pub fn vcpus(&self) -> u64 {
        (0..self.vms.len()).map(|i| self.spec.vm.shape(i).vcpus as u64).sum()
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
        match (from, to) {
            (Running, Suspended) => {
                self.acct.suspends += 1;
                self.acct.suspended_since = Some(now);
            }
            (Suspended, Running) => self.acct.resumes += 1,
            _ => {}
        }
        // Suspended time runs on while a suspended vjob is held, and ends with any other state.
        if !matches!(to, Suspended | Held) {
            if let Some(since) = self.acct.suspended_since.take() {
                self.acct.suspended_ms += now.saturating_sub(since);
            }
        }
        if to == Running {
            self.running_since = Some(now);
            self.start_ms.get_or_insert(now);
        }
        if to.is_final() {
            self.end_ms = Some(now);
        }
        self.state = to;
        if self.states.len() < vjob_api::MAX_STATE_CHANGES {
            self.states.push((now, to));
        }
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
            array_id: self.array.map(|a| a.id),
            array_index: self.array.map(|a| a.index),
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
                array_throttle: self.array.and_then(|a| a.throttle),
                states: (self.states.iter())
                    .map(|&(t, state)| JobStateChange { time: secs(t), state })
                    .collect(),
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
    fn every_state_taken_is_recorded_with_its_time_and_a_refused_one_is_not() {
        use JobState::*;
        let mut j = job();
        j.set_state(Running, 2_000).unwrap();
        j.set_state(Running, 2_500).unwrap();
        j.set_state(Suspended, 3_000).unwrap();
        assert!(j.set_state(Completed, 3_500).is_err());
        j.set_state(Running, 4_000).unwrap();
        j.set_state(Completed, 5_000).unwrap();
        assert_eq!(
            j.states,
            [
                (1_000, Queued),
                (2_000, Running),
                (3_000, Suspended),
                (4_000, Running),
                (5_000, Completed)
            ]
        );
        let detail = j.info(6_000, true).detail.unwrap();
        assert_eq!(detail.states.len(), 5);
        assert_eq!((detail.states[1].time, detail.states[1].state), (2.0, Running));
    }

    #[test]
    fn a_thrashing_job_keeps_its_first_state_changes_only() {
        let mut j = job();
        for k in 0..1_000u64 {
            let to = if k % 2 == 0 {
                JobState::Running
            } else {
                JobState::Suspended
            };
            j.set_state(to, 2_000 + k).unwrap();
        }
        assert_eq!(j.states.len(), vjob_api::MAX_STATE_CHANGES);
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
    fn suspended_time_counts_while_suspended_or_held_after_a_suspension() {
        let mut j = job();
        j.set_state(JobState::Running, 1_000).unwrap();
        j.set_state(JobState::Suspended, 2_000).unwrap();
        j.set_state(JobState::Held, 3_000).unwrap();
        assert_eq!(j.acct.suspended_ms(4_000), 2_000);
        j.set_state(JobState::Suspended, 5_000).unwrap();
        j.set_state(JobState::Running, 6_000).unwrap();
        j.set_state(JobState::Completed, 9_000).unwrap();
        assert_eq!((j.acct.suspends, j.acct.resumes), (1, 1));
        assert_eq!(j.acct.suspended_ms(20_000), 4_000);
        assert_eq!(j.elapsed_ms(20_000), 4_000);
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
    fn output_patterns_fill_in_as_sbatch_does() {
        let mut j = job();
        j.name = "sweep".into();
        j.cwd = Some("/home/u".into());
        let state = std::path::Path::new("/var/lib/vjob");
        assert_eq!(j.output_path(state), std::path::Path::new("/home/u/vjob-7.out"));
        j.spec.run.output = Some("logs/%x-%A_%a.%u.out".into());
        assert_eq!(
            j.output_path(state),
            std::path::Path::new("/home/u/logs/sweep-7_0.u.out")
        );
        j.array = Some(ArrayTask {
            id: 5,
            index: 2,
            throttle: None,
        });
        assert_eq!(j.expand_pattern("/o/%A-%a-%j-100%%-%q%"), "/o/5-2-7-100%-%q%");
        assert_eq!(j.label().to_string(), "5[2]");
        j.cwd = None;
        j.spec.run.output = None;
        assert_eq!(
            j.output_path(state),
            std::path::Path::new("/var/lib/vjob/output/vjob-7.out")
        );
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
