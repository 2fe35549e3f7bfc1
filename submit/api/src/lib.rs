//! The wire types of vjobd's API: what the commands send and what the daemon answers.
//!
//! The transport is a Unix stream socket carrying newline-delimited JSON: one [`Request`] a line,
//! answered by one [`Response`] a line, any number of times on one connection. Every request
//! carries the protocol version ([`PROTOCOL_VERSION`]); the daemon refuses versions it does not
//! speak. Who is asking is not part of a request: the daemon learns it from the kernel
//! (`SO_PEERCRED`), so a client cannot claim to be someone else.
//!
//! This crate is all that the commands (`vsub`, `vstat`, `vdel`, `vqmgr`) share with the daemon.

use serde::{Deserialize, Serialize};

pub mod acct;
pub mod array;
pub mod display;
pub mod units;

pub use array::{ArraySpec, JobRef};

/// The version of this protocol. Bumped on any incompatible change.
pub const PROTOCOL_VERSION: u32 = 1;

/// The environment variable naming the daemon's socket.
pub const SOCKET_ENV: &str = "VJOB_SOCKET";

/// Where clients look for the daemon's socket when neither `--socket` nor `VJOB_SOCKET` is given,
/// and where the daemon listens when its configuration names no socket.
pub const DEFAULT_SOCKET: &str = "/run/vjob/vjobd.sock";

/// How every answer to [`Op::Jobs`] begins: the daemon may write it from cached pieces and
/// clients may pass the job array through without parsing it (tested below).
pub const JOBS_LINE_PREFIX: &str = r#"{"v":1,"ok":{"kind":"jobs","jobs":["#;
/// How every answer to [`Op::Jobs`] ends (before the newline).
pub const JOBS_LINE_SUFFIX: &str = "]}}";
/// How every answer of records to [`Op::Accounting`] begins and ends: `vacct --json` prints the
/// array between them without parsing it.
pub const RECORDS_LINE_PREFIX: &str = r#"{"v":1,"ok":{"kind":"accounting","records":"#;
pub const RECORDS_LINE_SUFFIX: &str = "}}";

/// Longest request line the daemon accepts (a job spec travels inside a submission).
pub const MAX_REQUEST_BYTES: usize = 1 << 20;

/// One request line: the version and the operation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Request {
    pub v: u32,
    #[serde(flatten)]
    pub op: Op,
}

impl Request {
    pub fn new(op: Op) -> Request {
        Request {
            v: PROTOCOL_VERSION,
            op,
        }
    }
}

/// What a client may ask. Each variant's doc says who may ask it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// Anyone: the daemon's version and who it thinks the caller is.
    Ping,
    /// Anyone: submit a job spec; answered with [`Reply::Submitted`] once committed to disk.
    Submit(Box<SubmitRequest>),
    /// Anyone: list jobs (everyone's, in summary).
    Jobs(JobQuery),
    /// Anyone: accounting records of jobs, ended ones included, however long ago.
    Accounting(AcctQuery),
    /// Anyone: the priority of each waiting job and the factors it is made of (as `sprio`).
    Priorities,
    /// Anyone: each user's shares, usage and fair-share factor (as `sshare`).
    Shares,
    /// Owner or admin: cancel jobs (an array's id: all of its tasks).
    Delete { ids: Vec<JobRef> },
    /// Owner or admin: hold jobs (never scheduled until released).
    Hold { ids: Vec<JobRef> },
    /// Owner (for their own holds) or admin: release held jobs.
    Release { ids: Vec<JobRef> },
    /// Owner or admin: change an array's throttle (most tasks running at once; `Some(0)`
    /// removes it).
    JobSet { id: JobRef, throttle: Option<u32> },
    /// Anyone: list nodes.
    Nodes,
    /// Anyone: list queues.
    Queues,
    /// Admin: create a queue.
    QueueCreate(QueueSettings),
    /// Admin: delete an empty queue.
    QueueDelete { name: String },
    /// Admin: change a queue's settings (only the fields given).
    QueueSet(QueueSettings),
    /// Admin: change a node's administrative state.
    NodeSet { name: String, state: NodeAdminState },
    /// Admin: switch a node on or off by hand (off is refused while it holds VMs).
    NodePower { name: String, on: bool },
    /// Admin: say that a node which does not answer is off (its VMs gone), so that its vjobs
    /// start over elsewhere without waiting for it to be fenced.
    NodeLost { name: String },
    /// Admin: suspend a running vjob to disk now; it stays suspended until resumed by hand.
    Suspend { id: JobRef },
    /// Admin: let a vjob suspended by hand be resumed by the scheduler.
    Resume { id: JobRef },
    /// Admin: live-migrate one VM (by index) of a running vjob to a node.
    Migrate { id: JobRef, vm: usize, to: String },
    /// Anyone: what the scheduler would do now, as a planner instance in BtrPlace's format
    /// (the current configuration and the constraints the policy's decision adds).
    Snapshot,
    /// Anyone: the server's status: its cluster, how many decision rounds and node reports it
    /// has taken, its nodes and jobs in numbers.
    Status,
    /// Admin: read the datacenter's placement scripts again; refused (the old ones kept) when
    /// one is bad or a vjob not ended could never satisfy them.
    PlacementReload,
}

/// A submission: the spec file's text, as read by the client, plus command-line overrides.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SubmitRequest {
    /// How to name the file in error messages (the path the user typed).
    pub file: String,
    /// The job spec: TOML, or a shell script (first line `#!`) whose leading `#VJOB`, `#SBATCH`
    /// or `#PBS` lines carry flags.
    pub spec: String,
    /// The command line's spec flags: they win over the script's directives, which win over
    /// the spec file.
    #[serde(flatten)]
    pub flags: SpecFlags,
    #[serde(default)]
    pub hold: bool,
    /// A script's directive that vjob cannot honour is skipped (said in the job's history)
    /// instead of refusing the submission.
    #[serde(default)]
    pub ignore_unknown_directives: bool,
    /// The submitter's working directory: relative output paths are relative to it.
    pub cwd: Option<String>,
    /// Files the spec refers to (`[placement] file`), read by the submitter: the path as
    /// written in the spec -> the file's text.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub files: std::collections::BTreeMap<String, String>,
}

/// Every field of a job spec as a flag (`vsub --vcpus 4`, `#VJOB --vcpus 4`); `None`: not given.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct SpecFlags {
    pub queue: Option<String>,
    pub name: Option<String>,
    pub priority: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vms: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    /// Memory per VM, bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub walltime_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    /// Where the VMs' console output goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<String>,
    /// The simulated backend: how long the job runs, and its exit code.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim_runtime_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sim_exit_code: Option<i32>,
    /// What the job waits for (`afterok:12:13`, Slurm's syntax).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency: Option<String>,
    /// Cancel the job when its dependency can never be met (else it stays queued, saying so).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kill_on_invalid_dep: Option<bool>,
    /// Submit an array of tasks, one job each (`0-99%5`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<ArraySpec>,
}

/// One spec flag, as `vsub` and `#VJOB` lines spell it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpecFlag {
    Queue,
    Name,
    Priority,
    Vms,
    Vcpus,
    Memory,
    Walltime,
    Image,
    Output,
    SimRuntime,
    SimExitCode,
    Dependency,
    KillOnInvalidDep,
    Array,
}

impl SpecFlag {
    /// Every flag, with its long name (`--vcpus`) and its short one, if any.
    pub const ALL: [(SpecFlag, &'static str, Option<char>); 14] = [
        (SpecFlag::Queue, "queue", Some('q')),
        (SpecFlag::Name, "name", Some('N')),
        (SpecFlag::Priority, "priority", Some('p')),
        (SpecFlag::Vms, "vms", None),
        (SpecFlag::Vcpus, "vcpus", None),
        (SpecFlag::Memory, "mem", None),
        (SpecFlag::Walltime, "walltime", Some('t')),
        (SpecFlag::Image, "image", None),
        (SpecFlag::Output, "output", Some('o')),
        (SpecFlag::SimRuntime, "sim-runtime", None),
        (SpecFlag::SimExitCode, "sim-exit-code", None),
        (SpecFlag::Dependency, "dependency", Some('d')),
        (SpecFlag::KillOnInvalidDep, "kill-on-invalid-dep", None),
        (SpecFlag::Array, "array", Some('a')),
    ];

    /// The flag of a long name (`vcpus`) or a short one (`q`).
    pub fn named(name: &str) -> Option<SpecFlag> {
        SpecFlag::ALL
            .iter()
            .find(|(_, long, short)| *long == name || short.is_some_and(|c| name.len() == 1 && name.starts_with(c)))
            .map(|(f, _, _)| *f)
    }
}

impl SpecFlags {
    /// Sets `flag` from its text as typed, checked: the error says what is wrong with it.
    pub fn set(&mut self, flag: SpecFlag, value: &str) -> Result<(), String> {
        use crate::units::{parse_duration_ms, parse_size};
        let count = |what: &str| -> Result<u32, String> {
            match value.trim().parse::<u32>() {
                Ok(0) => Err(format!("{what} must be at least 1")),
                Ok(n) => Ok(n),
                Err(_) => Err(format!("`{value}` is not a number of {what}")),
            }
        };
        let text = || -> Result<String, String> {
            match value.trim() {
                "" => Err("needs a value".into()),
                v => Ok(v.to_string()),
            }
        };
        match flag {
            SpecFlag::Queue => self.queue = Some(text()?),
            SpecFlag::Name => self.name = Some(text()?),
            SpecFlag::Priority => {
                self.priority = Some(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| format!("`{value}` is not a priority (a whole number)"))?,
                )
            }
            SpecFlag::Vms => self.vms = Some(count("VMs")?),
            SpecFlag::Vcpus => self.vcpus = Some(count("vcpus")?),
            SpecFlag::Memory => self.memory = Some(parse_size(value)?),
            SpecFlag::Walltime => {
                self.walltime_ms = Some(match parse_duration_ms(value)? {
                    0 => return Err("the walltime must be more than zero".into()),
                    ms => ms,
                })
            }
            SpecFlag::Image => self.image = Some(text()?),
            SpecFlag::Output => self.output = Some(text()?),
            SpecFlag::SimRuntime => self.sim_runtime_ms = Some(parse_duration_ms(value)?),
            SpecFlag::SimExitCode => {
                self.sim_exit_code = Some(
                    value
                        .trim()
                        .parse()
                        .map_err(|_| format!("`{value}` is not an exit code"))?,
                )
            }
            SpecFlag::Dependency => self.dependency = Some(text()?),
            SpecFlag::KillOnInvalidDep => {
                self.kill_on_invalid_dep = Some(match value.trim() {
                    "" | "yes" | "true" => true,
                    "no" | "false" => false,
                    v => return Err(format!("`{v}` is not yes or no")),
                })
            }
            SpecFlag::Array => self.array = Some(ArraySpec::parse(value)?),
        }
        Ok(())
    }

    /// These flags, with those of `over` winning where both give one.
    pub fn overridden_by(&self, over: &SpecFlags) -> SpecFlags {
        SpecFlags {
            queue: over.queue.clone().or_else(|| self.queue.clone()),
            name: over.name.clone().or_else(|| self.name.clone()),
            priority: over.priority.or(self.priority),
            vms: over.vms.or(self.vms),
            vcpus: over.vcpus.or(self.vcpus),
            memory: over.memory.or(self.memory),
            walltime_ms: over.walltime_ms.or(self.walltime_ms),
            image: over.image.clone().or_else(|| self.image.clone()),
            output: over.output.clone().or_else(|| self.output.clone()),
            sim_runtime_ms: over.sim_runtime_ms.or(self.sim_runtime_ms),
            sim_exit_code: over.sim_exit_code.or(self.sim_exit_code),
            dependency: over.dependency.clone().or_else(|| self.dependency.clone()),
            kill_on_invalid_dep: over.kill_on_invalid_dep.or(self.kill_on_invalid_dep),
            array: over.array.clone().or_else(|| self.array.clone()),
        }
    }
}

/// Which jobs to list.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct JobQuery {
    /// Only these jobs, whatever their state (empty: the selection below); an array's id
    /// selects all of its tasks.
    #[serde(default)]
    pub ids: Vec<JobRef>,
    /// Include jobs that ended long ago (otherwise only active ones and those that ended within
    /// the daemon's `keep_finished` window).
    #[serde(default)]
    pub all: bool,
    /// Only this user's jobs.
    pub user: Option<String>,
    /// Include every field and the job's event history.
    #[serde(default)]
    pub full: bool,
}

/// Which accounting records to return: all of them by default.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct AcctQuery {
    /// Only these jobs (an array's id: all of its tasks).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ids: Vec<JobRef>,
    /// Only these users' jobs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub users: Vec<String>,
    /// Only jobs in these states.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub states: Vec<JobState>,
    /// Only jobs that existed after this Unix time (seconds): ended after it, or not ended.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub since: Option<f64>,
    /// Only jobs submitted before this Unix time (seconds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<f64>,
    /// Answer these fields of each record, rendered ([`acct::FIELDS`] names), instead of the
    /// records ([`Reply::AcctRows`]).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<String>,
    /// Rendered fields with plain numbers (bytes, not `4GiB`), for `--parsable`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub plain_numbers: bool,
    /// Answer totals per user instead ([`Reply::AcctUsers`]).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub per_user: bool,
}

/// A job's accounting record: what it asked, what it got, what its context switches cost.
/// Times are Unix seconds; durations are seconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AcctRecord {
    /// `12`, or `12[3]` for a task of an array.
    pub id: JobRef,
    pub job_id: u64,
    pub name: String,
    pub user: String,
    pub queue: String,
    pub state: JobState,
    pub exit_code: Option<i32>,
    pub submit: f64,
    pub start: Option<f64>,
    pub end: Option<f64>,
    /// From start to end (or now).
    pub elapsed_s: f64,
    /// Running time (its VMs running), and time suspended.
    pub run_s: f64,
    pub suspended_s: f64,
    pub suspends: u32,
    pub resumes: u32,
    pub migrations: u32,
    /// vcpus of all its VMs times its running time.
    pub vcpu_s: f64,
    /// Memory written and read by its saves, restores and migrations.
    pub bytes_moved: u64,
    pub vms: u32,
    pub energy_j: f64,
}

/// A waiting job's priority and its factors, each already weighted (they add up to it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorityInfo {
    pub id: JobRef,
    pub user: String,
    pub queue: String,
    pub priority: i64,
    pub queue_factor: f64,
    pub job_factor: f64,
    pub age_factor: f64,
    pub fairshare_factor: f64,
    pub size_factor: f64,
}

/// A user's standing in fair share.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShareInfo {
    pub user: String,
    /// Its accounts from the root down (`physics/theory`); empty under the root.
    pub account: String,
    pub shares_raw: f64,
    pub shares_norm: f64,
    /// Decayed core-seconds of running VMs.
    pub usage_raw: f64,
    pub usage_norm: f64,
    pub usage_effective: f64,
    /// 2^(-usage_effective / shares_norm).
    pub factor: f64,
}

/// A job's state. Letters in tables: Q H R S C F X, and E for a running job whose VMs are
/// ending (see [`JobInfo::exiting`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Held,
    Running,
    Suspended,
    Completed,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn letter(self) -> char {
        match self {
            JobState::Queued => 'Q',
            JobState::Held => 'H',
            JobState::Running => 'R',
            JobState::Suspended => 'S',
            JobState::Completed => 'C',
            JobState::Failed => 'F',
            JobState::Cancelled => 'X',
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Held => "held",
            JobState::Running => "running",
            JobState::Suspended => "suspended",
            JobState::Completed => "completed",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    /// The state named `word` (`completed`), or by its letter (`C`) or Slurm's (`CD`).
    pub fn named(word: &str) -> Option<JobState> {
        use JobState::*;
        let all = [Queued, Held, Running, Suspended, Completed, Failed, Cancelled];
        let w = word.trim();
        all.into_iter().find(|s| {
            s.as_str().eq_ignore_ascii_case(w)
                || w.eq_ignore_ascii_case(&s.letter().to_string())
                || match s {
                    Queued => w.eq_ignore_ascii_case("PD") || w.eq_ignore_ascii_case("pending"),
                    Completed => w.eq_ignore_ascii_case("CD"),
                    Cancelled => w.eq_ignore_ascii_case("CA") || w.eq_ignore_ascii_case("canceled"),
                    Suspended => w.eq_ignore_ascii_case("S"),
                    _ => false,
                }
        })
    }

    /// Completed, failed or cancelled: nothing will happen to this job any more.
    pub fn is_final(self) -> bool {
        matches!(self, JobState::Completed | JobState::Failed | JobState::Cancelled)
    }
}

impl JobInfo {
    /// How commands name it: `12`, or `12[3]` for a task of an array.
    pub fn job_ref(&self) -> JobRef {
        match (self.array_id, self.array_index) {
            (Some(a), Some(i)) => JobRef::task(a, i),
            _ => JobRef::job(self.id),
        }
    }

    /// The state letter shown in tables.
    pub fn letter(&self) -> char {
        if self.exiting {
            'E'
        } else {
            self.state.letter()
        }
    }
}

/// One VM of a job, as shown to users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmInfo {
    pub name: String,
    /// The node it runs on (or last ran on).
    pub node: Option<String>,
    /// `ready`, `running`, `sleeping` or `gone`.
    pub state: String,
    /// Its name in the job's placement script (`VM4`), if the job has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub script_name: Option<String>,
    /// Its own processors and memory (bytes), when the job's VMs differ (a placement script
    /// with several templates); otherwise the job's `vcpus` and `memory` say them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vcpus: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<u64>,
}

/// A job as shown to users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobInfo {
    pub id: u64,
    /// A task of an array: the array's id and the task's index (the task is `ARRAY[INDEX]`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_id: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_index: Option<u32>,
    pub name: String,
    pub user: String,
    pub queue: String,
    pub state: JobState,
    /// The job's VMs have ended and are being torn down; its final state comes next.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub exiting: bool,
    pub priority: i32,
    pub exit_code: Option<i32>,
    /// Why the job is in its state (waiting for room, held by, failed because, ...).
    pub reason: Option<String>,
    pub vms: Vec<VmInfo>,
    /// Processors per VM (of the first when they differ: each [`VmInfo`] then says its own).
    pub vcpus: u32,
    /// Memory per VM, in bytes (of the first when they differ).
    pub memory: u64,
    /// Unix times in seconds.
    pub submit_time: f64,
    pub start_time: Option<f64>,
    pub end_time: Option<f64>,
    /// Seconds spent running so far.
    pub elapsed_s: f64,
    pub walltime_s: Option<f64>,
    pub preemptions: u32,
    /// Only with [`JobQuery::full`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<JobDetail>,
}

/// The fields of a job shown by `vstat -f` only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobDetail {
    pub uid: u32,
    pub script: String,
    pub image: Option<String>,
    pub output: Option<String>,
    pub spec_file: String,
    pub events: Vec<JobEvent>,
    /// Copies of its VMs left on nodes that were lost, to be destroyed there once they answer:
    /// `VM on NODE`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub stale_copies: Vec<String>,
    /// Its share of its nodes' energy while it ran, joules.
    #[serde(default)]
    pub energy_j: f64,
    /// A task of an array: the array's throttle (most tasks running at once).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array_throttle: Option<u32>,
    /// Every state it took, in order, from its submission (the first
    /// [`MAX_STATE_CHANGES`] only: a job that thrashes stops adding to it).
    #[serde(default)]
    pub states: Vec<JobStateChange>,
}

/// How many state changes of a job are kept.
pub const MAX_STATE_CHANGES: usize = 256;

/// A job entered `state` at `time`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct JobStateChange {
    pub time: f64,
    pub state: JobState,
}

/// Something that happened to a job.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobEvent {
    pub time: f64,
    pub message: String,
}

/// A node's administrative state, set with `vqmgr node`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeAdminState {
    /// Takes new VMs.
    Online,
    /// Keeps its VMs but takes no new ones.
    Drain,
    /// Must hold no VM: they are migrated away, or their vjobs suspended.
    Offline,
}

impl NodeAdminState {
    pub fn as_str(self) -> &'static str {
        match self {
            NodeAdminState::Online => "online",
            NodeAdminState::Drain => "drain",
            NodeAdminState::Offline => "offline",
        }
    }
}

/// A node as shown to users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NodeInfo {
    pub name: String,
    pub state: NodeAdminState,
    /// The node answers its hypervisor connection.
    pub up: bool,
    pub cpus: u32,
    pub memory: u64,
    pub cpus_used: u32,
    pub memory_used: u64,
    pub vms: Vec<String>,
    /// VMs on the node that are not this cluster's (another cluster's, or stale copies of its
    /// own left by a lost node): load it plans around, and never touches but to destroy its own
    /// stale copies. Their use is in `cpus_used` and `memory_used`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub other_vms: Vec<String>,
    /// `on`, `off`, `booting`, `shutting-down` or `failed-to-boot`.
    #[serde(default = "power_on")]
    pub power: String,
    /// Why it is in that power state, when that needs saying (a failed boot).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub power_reason: Option<String>,
    /// What it draws now, watts, and has drawn, joules.
    #[serde(default)]
    pub watts: f64,
    #[serde(default)]
    pub energy_j: f64,
    /// Times power management or an administrator switched it on and off.
    #[serde(default)]
    pub boots: u64,
    #[serde(default)]
    pub shutdowns: u64,
}

fn power_on() -> String {
    "on".into()
}

/// A queue's settings; in [`Op::QueueSet`], absent fields are left unchanged.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct QueueSettings {
    pub name: String,
    pub priority: Option<i32>,
    pub enabled: Option<bool>,
    pub started: Option<bool>,
    pub default: Option<bool>,
    /// Maximum running vjobs in this queue; `Some(0)` removes the limit.
    pub max_running: Option<u32>,
    /// Maximum running vjobs per user in this queue; `Some(0)` removes the limit.
    pub max_user_running: Option<u32>,
}

/// A queue as shown to users.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QueueInfo {
    pub name: String,
    pub priority: i32,
    /// Accepts submissions.
    pub enabled: bool,
    /// Dispatches its jobs.
    pub started: bool,
    pub default: bool,
    pub max_running: Option<u32>,
    pub max_user_running: Option<u32>,
    pub queued: u32,
    pub running: u32,
    pub suspended: u32,
    pub held: u32,
}

/// The outcome of an operation on one job of a multi-job request.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobOutcome {
    pub id: JobRef,
    pub result: Result<String, ApiError>,
}

/// A successful answer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reply {
    Pong {
        version: String,
        user: String,
        uid: u32,
        admin: bool,
    },
    Submitted {
        id: u64,
    },
    Jobs {
        jobs: Vec<JobInfo>,
    },
    Accounting {
        records: Vec<AcctRecord>,
    },
    /// The fields asked for ([`AcctQuery::fields`]) of each record, rendered.
    AcctRows {
        rows: Vec<Vec<String>>,
    },
    AcctUsers {
        users: Vec<acct::UserTotals>,
    },
    Priorities {
        /// Whether ranking is configured (`[priority]` or `[fairshare]`).
        configured: bool,
        jobs: Vec<PriorityInfo>,
    },
    Shares {
        /// Whether fair share is configured; the half-life, seconds.
        configured: bool,
        half_life_s: f64,
        users: Vec<ShareInfo>,
    },
    Nodes {
        nodes: Vec<NodeInfo>,
    },
    Queues {
        queues: Vec<QueueInfo>,
    },
    /// Per-job outcomes of `Delete`, `Hold` and `Release`.
    PerJob {
        outcomes: Vec<JobOutcome>,
    },
    /// An administrative change was made.
    Done {
        message: String,
    },
    /// A planner instance (BtrPlace's JSON format).
    Snapshot {
        instance: serde_json::Value,
    },
    Status(ServerStatus),
}

/// What `vstat -B` shows: the server and its counters.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServerStatus {
    pub version: String,
    /// The cluster's name (it prefixes its VMs' names).
    pub cluster: String,
    pub backend: String,
    /// Decision rounds taken since the daemon started: each consulted the policy on the state
    /// of its time. A change committed before a status answer is seen by every round counted
    /// after it.
    pub rounds: u64,
    /// Node reports taken in since the daemon started.
    pub observations: u64,
    /// A plan is being carried out.
    pub busy: bool,
    pub nodes_up: u32,
    pub nodes_down: u32,
    /// Jobs by state (queued, running, ...), active ones only.
    pub jobs: std::collections::BTreeMap<String, u32>,
}

/// What kind of refusal an error is; commands map it to an exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorKind {
    /// The request or the spec is malformed or impossible.
    Invalid,
    /// The caller may not do this.
    Permission,
    /// No such job, queue or node.
    NotFound,
    /// The object is not in a state that allows this.
    Conflict,
    /// The daemon cannot do it now (storage failure, shutting down); retry later.
    Unavailable,
}

/// A refusal, with a message meant for the user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub message: String,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            message: message.into(),
        }
    }
    pub fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Invalid, message)
    }
    pub fn permission(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Permission, message)
    }
    pub fn not_found(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::NotFound, message)
    }
    pub fn conflict(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Conflict, message)
    }
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::Unavailable, message)
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ApiError {}

/// One response line.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Response {
    pub v: u32,
    #[serde(flatten)]
    pub result: ResponseBody,
}

/// `{"ok": ...}` or `{"error": ...}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResponseBody {
    Ok(Reply),
    Error(ApiError),
}

impl Response {
    pub fn new(result: Result<Reply, ApiError>) -> Response {
        Response {
            v: PROTOCOL_VERSION,
            result: match result {
                Ok(r) => ResponseBody::Ok(r),
                Err(e) => ResponseBody::Error(e),
            },
        }
    }

    pub fn into_result(self) -> Result<Reply, ApiError> {
        match self.result {
            ResponseBody::Ok(r) => Ok(r),
            ResponseBody::Error(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_flat_tagged_json() {
        let r = Request::new(Op::Delete {
            ids: vec![3.into(), JobRef::task(4, 2)],
        });
        let s = serde_json::to_string(&r).unwrap();
        assert_eq!(s, r#"{"v":1,"op":"delete","ids":["3","4[2]"]}"#);
        assert_eq!(serde_json::from_str::<Request>(&s).unwrap(), r);
    }

    #[test]
    fn responses_round_trip() {
        let ok = Response::new(Ok(Reply::Submitted { id: 7 }));
        let s = serde_json::to_string(&ok).unwrap();
        assert_eq!(s, r#"{"v":1,"ok":{"kind":"submitted","id":7}}"#);
        assert_eq!(serde_json::from_str::<Response>(&s).unwrap(), ok);
        let err = Response::new(Err(ApiError::permission("no")));
        let s = serde_json::to_string(&err).unwrap();
        assert_eq!(serde_json::from_str::<Response>(&s).unwrap(), err);
    }

    #[test]
    fn jobs_answers_have_the_documented_frame() {
        let line = serde_json::to_string(&Response::new(Ok(Reply::Jobs { jobs: vec![] }))).unwrap();
        assert_eq!(line, format!("{JOBS_LINE_PREFIX}{JOBS_LINE_SUFFIX}"));
        let line = serde_json::to_string(&Response::new(Ok(Reply::Accounting { records: vec![] }))).unwrap();
        assert_eq!(line, format!("{RECORDS_LINE_PREFIX}[]{RECORDS_LINE_SUFFIX}"));
    }

    #[test]
    fn job_states_serialize_as_lowercase_words() {
        assert_eq!(serde_json::to_string(&JobState::Suspended).unwrap(), "\"suspended\"");
        assert_eq!(JobState::Cancelled.letter(), 'X');
    }
}
