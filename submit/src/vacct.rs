//! `vacct`: accounting records of jobs, ended ones however long ago, in the spirit of `sacct`:
//! filters by job, user, state and time; the fields you name (`--format`); a table, `|`-separated
//! lines (`--parsable`) or JSON; and totals per user (`--report users`).

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vjob_api::acct::{field_named, UserTotals, DEFAULT_FIELDS, FIELDS};
use vjob_api::display::{parse_time, size};
use vjob_api::{AcctQuery, JobRef, JobState, Op, Reply, RECORDS_LINE_PREFIX, RECORDS_LINE_SUFFIX};

use crate::client::{socket_path, unexpected, Client, ClientError};
use crate::table::{hms, render};
use crate::{fail, out, out_bytes, Exit};

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
            fields: match self.json || self.report.is_some() {
                true => Vec::new(),
                false => self.fields()?.iter().map(|&f| FIELDS[f].0.to_string()).collect(),
            },
            plain_numbers: self.parsable,
            per_user: self.report.is_some(),
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
    let query = match args.query() {
        Ok(q) => q,
        Err(e) => {
            eprintln!("vacct: {e}");
            return Exit::Refused.into();
        }
    };
    match run(&args, query) {
        Ok(()) => Exit::Ok.into(),
        Err(e) => fail("vacct", &e),
    }
}

fn run(args: &Args, query: AcctQuery) -> Result<(), ClientError> {
    let mut client = Client::connect(&socket_path(args.socket.as_deref()))?;
    if args.json {
        // The daemon frames the records the same way every time: print them without parsing.
        let fields = query.fields.clone();
        let line = client.call_raw(Op::Accounting(query))?;
        let body = line.strip_suffix(b"\n").unwrap_or(line);
        if let Some(array) = body
            .strip_prefix(RECORDS_LINE_PREFIX.as_bytes())
            .and_then(|b| b.strip_suffix(RECORDS_LINE_SUFFIX.as_bytes()))
        {
            out_bytes(&[array, b"\n"]);
            return Ok(());
        }
        debug_assert!(fields.is_empty());
        let r: vjob_api::Response =
            serde_json::from_slice(line).map_err(|e| ClientError::Io(format!("unreadable answer from vjobd: {e}")))?;
        return Err(match r.into_result() {
            Err(e) => ClientError::Api(e),
            Ok(other) => unexpected(&other),
        });
    }
    let text = match client.call(Op::Accounting(query.clone()))? {
        Reply::AcctUsers { users } => users_report(&users, args.parsable, args.noheader),
        Reply::AcctRows { rows } => {
            let header: Vec<&str> = (query.fields.iter())
                .filter_map(|f| field_named(f))
                .map(|i| FIELDS[i].1)
                .collect();
            layout(&header, &rows, args.parsable, args.noheader)
        }
        other => return Err(unexpected(&other)),
    };
    out(&text);
    Ok(())
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
fn users_report(users: &[UserTotals], parsable: bool, noheader: bool) -> String {
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
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|t| {
            vec![
                t.user.clone(),
                t.jobs.to_string(),
                t.completed.to_string(),
                t.failed.to_string(),
                t.cancelled.to_string(),
                hms(t.run_s),
                format!("{:.2}", t.vcpu_s / 3600.0),
                hms(t.suspended_s),
                t.suspends.to_string(),
                t.migrations.to_string(),
                if parsable {
                    t.bytes_moved.to_string()
                } else {
                    size(t.bytes_moved)
                },
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
