//! `vacct`: accounting records of jobs, ended ones however long ago, in the spirit of `sacct`:
//! filters by job, user, state and time; the fields you name (`--format`); a table, `|`-separated
//! lines (`--parsable`) or JSON; and totals per user (`--report users`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vjob_api::display::{parse_time, size, timestamp};
use vjob_api::{AcctQuery, AcctRecord, JobRef, JobState, Op, Reply};

use crate::client::{call_once, unexpected, ClientError};
use crate::table::{hms, render};
use crate::{fail, out, Exit};

/// Show accounting records of jobs.
#[derive(Parser, Debug)]
#[command(name = "vacct", version)]
pub struct Args {
    /// Only these jobs (`12`, an array's tasks `12`, one task `12[3]`), comma-separated.
    #[arg(short = 'j', long = "jobs", value_delimiter = ',')]
    pub jobs: Vec<JobRef>,
    /// Only these users' jobs, comma-separated.
    #[arg(short = 'u', long = "user", value_delimiter = ',')]
    pub users: Vec<String>,
    /// Only jobs in these states (queued, held, running, suspended, completed, failed,
    /// cancelled; or their letters), comma-separated.
    #[arg(short = 's', long = "state", value_delimiter = ',')]
    pub states: Vec<String>,
    /// Only jobs not ended before this time: `2026-12-03`, `2026-12-03T18:00`, `now-2h` (UTC).
    #[arg(short = 'S', long, value_name = "TIME")]
    pub since: Option<String>,
    /// Only jobs submitted before this time.
    #[arg(short = 'E', long, value_name = "TIME")]
    pub until: Option<String>,
    /// The fields to show, comma-separated (`--format help` lists them).
    #[arg(short = 'o', long, value_name = "FIELDS")]
    pub format: Option<String>,
    /// Fields separated by `|`, each line ending with one, unpadded (as `sacct -p`).
    #[arg(short = 'p', long)]
    pub parsable: bool,
    /// No header line.
    #[arg(short = 'n', long)]
    pub noheader: bool,
    /// Every field of every record, as JSON.
    #[arg(long, conflicts_with_all = ["format", "parsable", "report"])]
    pub json: bool,
    /// Totals instead of records: `users` (per user).
    #[arg(long, value_name = "WHAT", value_parser = ["users"])]
    pub report: Option<String>,
    /// The daemon's socket (default: $VJOB_SOCKET, else /run/vjob/vjobd.sock).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
}

/// Every field `--format` takes: name, header, what it is.
const FIELDS: [(&str, &str, &str); 21] = [
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

const DEFAULT_FIELDS: &str = "id,name,user,queue,state,exitcode,elapsed,suspended";

/// A field's name as given (`JobID`, `Elapsed`, `exit_code`): lowercase, no `_`.
fn field_named(name: &str) -> Option<usize> {
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

fn value(field: &str, r: &AcctRecord, parsable: bool) -> String {
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

impl Args {
    fn query(&self) -> Result<AcctQuery, String> {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let states = (self.states.iter())
            .map(|s| {
                JobState::named(s).ok_or_else(|| {
                    format!("--state {s}: not a state (queued, held, running, suspended, completed, failed, cancelled)")
                })
            })
            .collect::<Result<_, _>>()?;
        let time = |flag: &str, t: &Option<String>| {
            t.as_deref()
                .map(|t| parse_time(t, now).map_err(|e| format!("--{flag}: {e}")))
                .transpose()
        };
        Ok(AcctQuery {
            ids: self.jobs.clone(),
            users: self.users.clone(),
            states,
            since: time("since", &self.since)?,
            until: time("until", &self.until)?,
        })
    }

    /// The fields to show, checked.
    fn fields(&self) -> Result<Vec<usize>, String> {
        let text = self.format.as_deref().unwrap_or(DEFAULT_FIELDS);
        if text.trim() == "help" {
            let lines: Vec<String> = FIELDS.iter().map(|(f, _, what)| format!("{f:<11} {what}")).collect();
            return Err(format!("the fields of --format:\n{}", lines.join("\n")));
        }
        (text.split(','))
            .map(|f| field_named(f).ok_or_else(|| format!("--format: no field `{f}` (`--format help` lists them)")))
            .collect()
    }
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    let prepared = args.query().and_then(|q| Ok((q, args.fields()?)));
    let (query, fields) = match prepared {
        Ok(p) => p,
        Err(e) => {
            eprintln!("vacct: {e}");
            return Exit::Refused.into();
        }
    };
    let records = match call_once(args.socket.as_deref(), Op::Accounting(query)) {
        Ok(Reply::Accounting { records }) => records,
        Ok(other) => return fail("vacct", &unexpected(&other)),
        Err(e) => return fail("vacct", &e),
    };
    let text = if args.json {
        let mut s = serde_json::to_string_pretty(&records).map_err(|e| ClientError::Io(e.to_string()));
        if let Ok(s) = s.as_mut() {
            s.push('\n');
        }
        match s {
            Ok(s) => s,
            Err(e) => return fail("vacct", &e),
        }
    } else if args.report.is_some() {
        users_report(&records, args.parsable, args.noheader)
    } else {
        let header: Vec<&str> = fields.iter().map(|&f| FIELDS[f].1).collect();
        let rows: Vec<Vec<String>> = (records.iter())
            .map(|r| fields.iter().map(|&f| value(FIELDS[f].0, r, args.parsable)).collect())
            .collect();
        layout(&header, &rows, args.parsable, args.noheader)
    };
    out(&text);
    Exit::Ok.into()
}

/// Rows as a table, or `|`-separated.
fn layout(header: &[&str], rows: &[Vec<String>], parsable: bool, noheader: bool) -> String {
    if !parsable {
        let table = render(header, rows);
        return match noheader {
            true => table.lines().skip(2).map(|l| format!("{l}\n")).collect(),
            false => table,
        };
    }
    let mut s = String::with_capacity(rows.len() * 64);
    let mut line = |cells: &mut dyn Iterator<Item = &str>| {
        for c in cells {
            s.push_str(c);
            s.push('|');
        }
        s.push('\n');
    };
    if !noheader {
        line(&mut header.iter().copied());
    }
    for r in rows {
        line(&mut r.iter().map(String::as_str));
    }
    s
}

/// Totals per user: jobs by outcome, running time, vcpu-hours, suspended time, context switches.
fn users_report(records: &[AcctRecord], parsable: bool, noheader: bool) -> String {
    #[derive(Default)]
    struct Totals {
        jobs: u64,
        completed: u64,
        failed: u64,
        cancelled: u64,
        run_s: f64,
        vcpu_s: f64,
        suspended_s: f64,
        suspends: u64,
        migrations: u64,
        bytes: u64,
    }
    let mut by_user: std::collections::BTreeMap<&str, Totals> = Default::default();
    for r in records {
        let t = by_user.entry(&r.user).or_default();
        t.jobs += 1;
        match r.state {
            JobState::Completed if r.exit_code == Some(0) => t.completed += 1,
            JobState::Completed | JobState::Failed => t.failed += 1,
            JobState::Cancelled => t.cancelled += 1,
            _ => {}
        }
        t.run_s += r.run_s;
        t.vcpu_s += r.vcpu_s;
        t.suspended_s += r.suspended_s;
        t.suspends += r.suspends as u64;
        t.migrations += r.migrations as u64;
        t.bytes += r.bytes_moved;
    }
    let header = [
        "USER",
        "JOBS",
        "COMPLETED",
        "FAILED",
        "CANCELLED",
        "RUNTIME",
        "VCPU_H",
        "SUSPENDED",
        "SUSPENDS",
        "MIGRATIONS",
        "MOVED",
    ];
    let rows: Vec<Vec<String>> = by_user
        .iter()
        .map(|(u, t)| {
            vec![
                u.to_string(),
                t.jobs.to_string(),
                t.completed.to_string(),
                t.failed.to_string(),
                t.cancelled.to_string(),
                hms(t.run_s),
                format!("{:.2}", t.vcpu_s / 3600.0),
                hms(t.suspended_s),
                t.suspends.to_string(),
                t.migrations.to_string(),
                if parsable { t.bytes.to_string() } else { size(t.bytes) },
            ]
        })
        .collect();
    layout(&header, &rows, parsable, noheader)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_are_named_as_sacct_names_them_and_unknown_ones_are_refused() {
        assert_eq!(field_named("JobID").map(|i| FIELDS[i].0), Some("jobid"));
        assert_eq!(field_named("Elapsed").map(|i| FIELDS[i].0), Some("elapsed"));
        assert_eq!(field_named("exit_code").map(|i| FIELDS[i].0), Some("exitcode"));
        assert_eq!(field_named("Partition").map(|i| FIELDS[i].0), Some("queue"));
        assert_eq!(field_named("colour"), None);
        let rows = vec![vec!["1".to_string(), "a".to_string()]];
        assert_eq!(layout(&["ID", "NAME"], &rows, true, false), "ID|NAME|\n1|a|\n");
        assert_eq!(layout(&["ID", "NAME"], &rows, true, true), "1|a|\n");
    }
}
