//! Accounting fields as `vacct --format` names them, rendered the same way wherever they are
//! (the daemon renders the fields asked for, so that 100,000 records do not cross the socket as
//! objects), and the per-user totals of `vacct --report users`.

use serde::{Deserialize, Serialize};

use crate::display::{hms, size, timestamp};
use crate::{AcctRecord, JobState};

/// Every field `--format` takes: name, header, what it is.
pub const FIELDS: [(&str, &str, &str); 21] = [
    (
        "id",
        "ID",
        "the job as commands name it: 12, or 12[3] for a task of an array",
    ),
    ("jobid", "JOBID", "the job's own id (a task's too)"),
    ("name", "NAME", "the job's name"),
    ("user", "USER", "who submitted it"),
    ("queue", "QUEUE", "its queue"),
    ("state", "STATE", "its state"),
    ("exitcode", "EXIT", "its exit code"),
    ("submit", "SUBMIT", "when it was submitted (UTC)"),
    ("start", "START", "when it first ran"),
    ("end", "END", "when it ended"),
    ("elapsed", "ELAPSED", "from start to end (or now)"),
    ("runtime", "RUNTIME", "time its VMs ran"),
    ("suspended", "SUSPENDED", "time it spent suspended"),
    ("suspends", "SUSPENDS", "times it was suspended"),
    ("resumes", "RESUMES", "times it resumed"),
    ("migrations", "MIGRATIONS", "live migrations of its VMs"),
    ("vcpusec", "VCPU_SEC", "vcpus of its VMs times their running time"),
    (
        "bytesmoved",
        "MOVED",
        "memory written and read by its saves, restores and migrations",
    ),
    ("vms", "VMS", "its VMs"),
    ("energy", "ENERGY_J", "its share of its nodes' energy, joules"),
    ("vcpuhours", "VCPU_H", "vcpu-seconds in hours"),
];

pub const DEFAULT_FIELDS: &str = "id,name,user,queue,state,exitcode,elapsed,suspended";

/// A field's name as given (`JobID`, `Elapsed`, `exit_code`): lowercase, no `_`.
pub fn field_named(name: &str) -> Option<usize> {
    let n: String = name.trim().to_ascii_lowercase().replace(['_', '-'], "");
    let n = match n.as_str() {
        "jobname" => "name",
        "partition" => "queue",
        "timesuspended" => "suspended",
        "cputime" | "vcpuseconds" => "vcpusec",
        "bytes" => "bytesmoved",
        other => other,
    };
    FIELDS.iter().position(|(f, _, _)| *f == n)
}

pub fn value(field: &str, r: &AcctRecord, parsable: bool) -> String {
    let time = |t: Option<f64>| t.map_or("-".into(), timestamp);
    match field {
        "id" => r.id.to_string(),
        "jobid" => r.job_id.to_string(),
        "name" => r.name.clone(),
        "user" => r.user.clone(),
        "queue" => r.queue.clone(),
        "state" => r.state.as_str().to_string(),
        "exitcode" => r.exit_code.map_or("-".into(), |c| c.to_string()),
        "submit" => timestamp(r.submit),
        "start" => time(r.start),
        "end" => time(r.end),
        "elapsed" => hms(r.elapsed_s),
        "runtime" => hms(r.run_s),
        "suspended" => hms(r.suspended_s),
        "suspends" => r.suspends.to_string(),
        "resumes" => r.resumes.to_string(),
        "migrations" => r.migrations.to_string(),
        "vcpusec" => format!("{:.0}", r.vcpu_s),
        "bytesmoved" if parsable => r.bytes_moved.to_string(),
        "bytesmoved" => size(r.bytes_moved),
        "vms" => r.vms.to_string(),
        "energy" => format!("{:.0}", r.energy_j),
        _ => format!("{:.2}", r.vcpu_s / 3600.0),
    }
}

/// One user's totals over the records selected.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct UserTotals {
    pub user: String,
    pub jobs: u64,
    pub completed: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub run_s: f64,
    pub vcpu_s: f64,
    pub suspended_s: f64,
    pub suspends: u64,
    pub migrations: u64,
    pub bytes_moved: u64,
}

impl UserTotals {
    /// Adds a record (of this user).
    pub fn add(&mut self, r: &AcctRecord) {
        self.jobs += 1;
        match r.state {
            JobState::Completed if r.exit_code == Some(0) => self.completed += 1,
            JobState::Completed | JobState::Failed => self.failed += 1,
            JobState::Cancelled => self.cancelled += 1,
            _ => {}
        }
        self.run_s += r.run_s;
        self.vcpu_s += r.vcpu_s;
        self.suspended_s += r.suspended_s;
        self.suspends += r.suspends as u64;
        self.migrations += r.migrations as u64;
        self.bytes_moved += r.bytes_moved;
    }
}
