//! `vstat`: shows jobs (a table like qstat, every field with `-f`, JSON with `--json`), nodes
//! (`-n`), queues (`-Q`) and the server (`-B`, as `qstat -B`).
//!
//! Without ids, the job list holds active jobs and those that ended within the daemon's
//! `keep_finished` window; `-x` adds every job that ever ended.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use serde::Deserialize;
use serde_json::value::RawValue;
use vjob_api::display::timestamp;
use vjob_api::{
    ApiError, JobInfo, JobQuery, JobRef, NodeInfo, Op, QueueInfo, Reply, JOBS_LINE_PREFIX, JOBS_LINE_SUFFIX,
};

use crate::client::{socket_path, unexpected, Client, ClientError};
use crate::table::{hms, render, size};
use crate::{fail, out, out_bytes, Exit};

/// Show vjobs, nodes or queues.
#[derive(Parser, Debug)]
#[command(name = "vstat", version)]
pub struct Args {
    /// Every field of the jobs named (or of all listed jobs), with their history.
    #[arg(short = 'f', long = "full")]
    pub full: bool,
    /// Nodes: capacity, use and VMs.
    #[arg(short = 'n', long = "nodes", conflicts_with_all = ["queues", "full"])]
    pub nodes: bool,
    /// Queues: settings and job counts.
    #[arg(short = 'Q', long = "queues", conflicts_with = "full")]
    pub queues: bool,
    /// The server: its cluster, decision rounds and node reports taken, nodes and jobs counted.
    #[arg(short = 'B', long = "server", conflicts_with_all = ["nodes", "queues", "full"])]
    pub server: bool,
    /// Each waiting job's priority and the weighted factors it adds up from (as sprio).
    #[arg(long, conflicts_with_all = ["nodes", "queues", "server", "full"])]
    pub priority: bool,
    /// Each user's shares, usage and fair-share factor (as sshare).
    #[arg(long, conflicts_with_all = ["nodes", "queues", "server", "full", "priority"])]
    pub shares: bool,
    /// Include jobs that ended long ago.
    #[arg(short = 'x', long = "all", visible_alias = "all-states")]
    pub all: bool,
    /// Only this user's jobs.
    #[arg(short = 'u', long = "user")]
    pub user: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Print exactly one word for the job: `running` (queued, held, running or suspended),
    /// `success` (completed with exit code 0) or `failed` (anything else that ended), as
    /// workflow tools poll for it.
    #[arg(long, value_name = "ID", conflicts_with_all = ["nodes", "queues", "server", "full", "json"])]
    pub status: Option<JobRef>,
    /// One line per job in this layout, as squeue's: `%i %t` (id and state letter); fields
    /// `%[.][WIDTH]TYPE` with TYPE one of i j u q t T M l D N R p e.
    #[arg(short = 'o', long, value_name = "LAYOUT", conflicts_with_all = ["nodes", "queues", "server", "full", "json"])]
    pub format: Option<String>,
    /// No header line above the jobs.
    #[arg(long)]
    pub noheader: bool,
    /// Every task of an array on its own line (by default the queued tasks that wait for the
    /// same reason share one, `12[4-99]`, as squeue shows them).
    #[arg(short = 'r', long = "array")]
    pub array: bool,
    /// The daemon's socket (default: $VJOB_SOCKET, else /run/vjob/vjobd.sock).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Jobs to show (default: all): `12`, an array's tasks `12`, one task `12[3]`.
    pub ids: Vec<JobRef>,
}

#[derive(Deserialize)]
struct RawJobsResponse<'a> {
    #[serde(borrow)]
    ok: Option<RawJobs<'a>>,
    error: Option<ApiError>,
}

#[derive(Deserialize)]
struct RawJobs<'a> {
    #[serde(borrow)]
    jobs: &'a RawValue,
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    let layout = match args.format.as_deref().map(crate::format::Layout::parse).transpose() {
        Ok(l) => l,
        Err(e) => {
            eprintln!("vstat: {e}");
            return Exit::Refused.into();
        }
    };
    let mut client = match Client::connect(&socket_path(args.socket.as_deref())) {
        Ok(c) => c,
        Err(e) => return fail("vstat", &e),
    };
    match run(&args, layout.as_ref(), &mut client) {
        Ok(()) => Exit::Ok.into(),
        Err(e) => fail("vstat", &e),
    }
}

fn run(args: &Args, layout: Option<&crate::format::Layout>, client: &mut Client) -> Result<(), ClientError> {
    if let Some(id) = args.status {
        return print_workflow_status(id, client);
    }
    if args.nodes || args.server || args.priority || args.shares || args.queues {
        return print_view(args, client);
    }
    let query = JobQuery {
        ids: args.ids.clone(),
        all: args.all,
        user: args.user.clone(),
        full: args.full,
    };
    if args.json {
        return print_jobs_json(query, client);
    }
    print_jobs(args, layout, query, client)
}

/// `--status ID`: one word, as workflow tools poll for it.
fn print_workflow_status(id: JobRef, client: &mut Client) -> Result<(), ClientError> {
    let query = JobQuery {
        ids: vec![id],
        ..Default::default()
    };
    let jobs = match client.call(Op::Jobs(query))? {
        Reply::Jobs { jobs } => jobs,
        other => return Err(unexpected(&other)),
    };
    if jobs.is_empty() {
        return Err(ClientError::Io(format!("no job {id}")));
    }
    out(&format!("{}\n", workflow_status(&jobs)));
    Ok(())
}

/// `-n`, `-B`, `--priority`, `--shares`, `-Q`: one view of the server other than its jobs, as a
/// table or JSON.
fn print_view(args: &Args, client: &mut Client) -> Result<(), ClientError> {
    let op = if args.nodes {
        Op::Nodes
    } else if args.server {
        Op::Status
    } else if args.priority {
        Op::Priorities
    } else if args.shares {
        Op::Shares
    } else {
        Op::Queues
    };
    let text = match client.call(op)? {
        Reply::Nodes { nodes } if args.json => json(&nodes),
        Reply::Nodes { nodes } => nodes_table(&nodes),
        Reply::Status(status) if args.json => json(&status),
        Reply::Status(status) => server_text(&status),
        Reply::Priorities { jobs, .. } if args.json => json(&jobs),
        Reply::Priorities { configured, jobs } => {
            if !configured {
                eprintln!("vstat: no [priority] or [fairshare] in the cluster configuration: jobs go by queue priority, job priority and submission");
            }
            priority_table(&jobs)
        }
        Reply::Shares { users, .. } if args.json => json(&users),
        Reply::Shares {
            configured,
            half_life_s,
            users,
        } => {
            if !configured {
                eprintln!("vstat: no [fairshare] in the cluster configuration: every user's factor is 1");
            }
            shares_table(&users, half_life_s)
        }
        Reply::Queues { queues } if args.json => json(&queues),
        Reply::Queues { queues } => queues_table(&queues),
        other => return Err(unexpected(&other)),
    };
    out(&text);
    Ok(())
}

/// `--json` of jobs: the daemon's JSON passed through untouched (no parsing of 100,000 jobs
/// twice).
fn print_jobs_json(query: JobQuery, client: &mut Client) -> Result<(), ClientError> {
    let line = client.call_raw(Op::Jobs(query))?;
    // The daemon frames every listing the same way: print the array without parsing it.
    let body = line.strip_suffix(b"\n").unwrap_or(line);
    if let Some(array) = body
        .strip_prefix(JOBS_LINE_PREFIX.as_bytes())
        .and_then(|b| b.strip_suffix(JOBS_LINE_SUFFIX.as_bytes()))
    {
        out_bytes(&[b"[", array, b"]\n"]);
        return Ok(());
    }
    let raw: RawJobsResponse =
        serde_json::from_slice(line).map_err(|e| ClientError::Io(format!("unreadable answer from vjobd: {e}")))?;
    if let Some(e) = raw.error {
        return Err(ClientError::Api(e));
    }
    let jobs = raw
        .ok
        .ok_or_else(|| ClientError::Io("unexpected answer from vjobd".into()))?;
    let mut text = jobs.jobs.get().to_string();
    text.push('\n');
    out(&text);
    Ok(())
}

/// Jobs as a table, in a `--format` layout, or every field with `-f`; the ids asked for that
/// do not exist are said, and fail the command.
fn print_jobs(
    args: &Args,
    layout: Option<&crate::format::Layout>,
    query: JobQuery,
    client: &mut Client,
) -> Result<(), ClientError> {
    let jobs = match client.call(Op::Jobs(query))? {
        Reply::Jobs { jobs } => jobs,
        other => return Err(unexpected(&other)),
    };
    let missing: Vec<&JobRef> = args.ids.iter().filter(|r| !jobs.iter().any(|j| names(r, j))).collect();
    for r in &missing {
        eprintln!("vstat: no job {r}");
    }
    let rows = crate::rows::rows(&jobs, !args.array);
    let text = match (layout, args.full) {
        (Some(l), _) => {
            let mut t = String::new();
            if !args.noheader {
                t.push_str(&l.header());
                t.push('\n');
            }
            for r in &rows {
                t.push_str(&l.line(r));
                t.push('\n');
            }
            t
        }
        (None, true) => full(&jobs),
        (None, false) if args.noheader => jobs_table(&rows).lines().skip(2).map(|l| format!("{l}\n")).collect(),
        (None, false) => jobs_table(&rows),
    };
    out(&text);
    if !missing.is_empty() {
        return Err(ClientError::Io(format!(
            "{} of the jobs asked for do not exist",
            missing.len()
        )));
    }
    Ok(())
}

/// Whether job reference `r` names job `j` (an array's id names each of its tasks).
fn names(r: &JobRef, j: &JobInfo) -> bool {
    match r.index {
        Some(_) => j.job_ref() == *r,
        None => j.id == r.id || j.array_id == Some(r.id),
    }
}

/// Jobs' state as workflow tools know it: `running`, `success` or `failed`. A job whose VMs
/// are ending is still running until its final state is known; an array is running while any
/// task is, else failed if any task failed.
fn workflow_status(jobs: &[JobInfo]) -> &'static str {
    use vjob_api::JobState::*;
    let each = |job: &JobInfo| match (job.state, job.exit_code) {
        (Queued | Held | Running | Suspended, _) => "running",
        (Completed, Some(0)) => "success",
        (Completed | Failed | Cancelled, _) => "failed",
    };
    ["running", "failed"]
        .into_iter()
        .find(|s| jobs.iter().any(|j| each(j) == *s))
        .unwrap_or("success")
}

fn json<T: serde::Serialize>(v: &T) -> String {
    let mut s = serde_json::to_string_pretty(v).expect("serializes");
    s.push('\n');
    s
}

pub(crate) fn nodes_of(j: &JobInfo) -> String {
    let mut nodes: Vec<&str> = j
        .vms
        .iter()
        .filter(|v| v.state == "running")
        .filter_map(|v| v.node.as_deref())
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    if nodes.is_empty() {
        "-".into()
    } else {
        nodes.join(",")
    }
}

/// `--priority`: what each waiting job's priority adds up from.
fn priority_table(jobs: &[vjob_api::PriorityInfo]) -> String {
    let rows: Vec<Vec<String>> = jobs
        .iter()
        .map(|p| {
            vec![
                p.id.to_string(),
                p.user.clone(),
                p.queue.clone(),
                p.priority.to_string(),
                format!("{:.0}", p.queue_factor),
                format!("{:.0}", p.job_factor),
                format!("{:.0}", p.age_factor),
                format!("{:.0}", p.fairshare_factor),
                format!("{:.0}", p.size_factor),
            ]
        })
        .collect();
    render(
        &[
            "ID",
            "USER",
            "QUEUE",
            "PRIORITY",
            "QUEUE_F",
            "JOB_F",
            "AGE",
            "FAIRSHARE",
            "SIZE",
        ],
        &rows,
    )
}

/// `--shares`: where each user stands in fair share.
fn shares_table(users: &[vjob_api::ShareInfo], half_life_s: f64) -> String {
    let rows: Vec<Vec<String>> = users
        .iter()
        .map(|u| {
            vec![
                u.user.clone(),
                if u.account.is_empty() {
                    "-".into()
                } else {
                    u.account.clone()
                },
                format!("{}", u.shares_raw),
                format!("{:.3}", u.shares_norm),
                format!("{:.0}", u.usage_raw),
                format!("{:.3}", u.usage_norm),
                format!("{:.3}", u.usage_effective),
                format!("{:.3}", u.factor),
            ]
        })
        .collect();
    let mut s = render(
        &[
            "USER",
            "ACCOUNT",
            "SHARES",
            "NORM_SHARES",
            "USAGE_CORE_S",
            "NORM_USAGE",
            "EFF_USAGE",
            "FAIRSHARE",
        ],
        &rows,
    );
    if half_life_s > 0.0 {
        s.push_str(&format!("usage decays by half every {}\n", hms(half_life_s)));
    }
    s
}

pub fn jobs_table(rows: &[crate::rows::Row]) -> String {
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|crate::rows::Row { job: j, id }| {
            vec![
                id.clone(),
                j.name.clone(),
                j.user.clone(),
                j.queue.clone(),
                j.letter().to_string(),
                j.vms.len().to_string(),
                nodes_of(j),
                hms(j.elapsed_s),
            ]
        })
        .collect();
    render(&["ID", "NAME", "USER", "QUEUE", "S", "VMS", "NODES", "ELAPSED"], &rows)
}

/// A job's VMs, as `3 x 2 vcpus, 4GiB`, or by shape when they differ
/// (`3 x 1 vcpus, 1GiB + 2 x 4 vcpus, 8GiB`).
fn vm_shapes(j: &JobInfo) -> String {
    let mut shapes: Vec<((u32, u64), usize)> = Vec::new();
    for v in &j.vms {
        let s = (v.vcpus.unwrap_or(j.vcpus), v.memory.unwrap_or(j.memory));
        match shapes.iter_mut().find(|(x, _)| *x == s) {
            Some((_, n)) => *n += 1,
            None => shapes.push((s, 1)),
        }
    }
    if shapes.is_empty() {
        shapes.push(((j.vcpus, j.memory), 0));
    }
    shapes
        .iter()
        .map(|((c, m), n)| format!("{n} x {c} vcpus, {}", size(*m)))
        .collect::<Vec<_>>()
        .join(" + ")
}

fn full(jobs: &[JobInfo]) -> String {
    let mut s = String::new();
    for j in jobs {
        let field = |s: &mut String, k: &str, v: String| s.push_str(&format!("    {k} = {v}\n"));
        s.push_str(&format!("Job {}\n", j.job_ref()));
        if j.array_id.is_some() {
            field(&mut s, "job_id", j.id.to_string());
        }
        field(&mut s, "name", j.name.clone());
        match &j.detail {
            Some(d) => field(&mut s, "user", format!("{} (uid {})", j.user, d.uid)),
            None => field(&mut s, "user", j.user.clone()),
        }
        field(&mut s, "queue", j.queue.clone());
        field(&mut s, "state", format!("{} ({})", j.state.as_str(), j.letter()));
        field(&mut s, "priority", j.priority.to_string());
        if let Some(r) = &j.reason {
            field(&mut s, "reason", r.clone());
        }
        if let Some(c) = j.exit_code {
            field(&mut s, "exit_code", c.to_string());
        }
        field(&mut s, "vms", vm_shapes(j));
        field(&mut s, "submitted", timestamp(j.submit_time));
        if let Some(t) = j.start_time {
            field(&mut s, "started", timestamp(t));
        }
        if let Some(t) = j.end_time {
            field(&mut s, "ended", timestamp(t));
        }
        field(&mut s, "elapsed", hms(j.elapsed_s));
        if let Some(w) = j.walltime_s {
            field(&mut s, "walltime", hms(w));
        }
        field(&mut s, "preemptions", j.preemptions.to_string());
        if let Some(d) = &j.detail {
            field(&mut s, "spec_file", d.spec_file.clone());
            if let Some(i) = &d.image {
                field(&mut s, "image", i.clone());
            }
            if let Some(o) = &d.output {
                field(&mut s, "output", o.clone());
            }
            if let Some(n) = d.array_throttle {
                field(&mut s, "array_throttle", n.to_string());
            }
            if !d.stale_copies.is_empty() {
                field(&mut s, "stale_copies", d.stale_copies.join(", "));
            }
            if d.energy_j > 0.0 {
                field(&mut s, "energy", energy(d.energy_j));
            }
        }
        s.push_str("    vm_list:\n");
        for v in &j.vms {
            let shape = match (v.vcpus, v.memory) {
                (Some(c), Some(m)) => format!("  {c} vcpus, {}", size(m)),
                _ => String::new(),
            };
            s.push_str(&format!(
                "        {}{}{shape}  {}  {}\n",
                v.name,
                v.script_name.as_ref().map(|n| format!(" ({n})")).unwrap_or_default(),
                v.state,
                v.node.as_deref().unwrap_or("-")
            ));
        }
        if let Some(d) = &j.detail {
            s.push_str("    script:\n");
            for line in d.script.lines() {
                s.push_str(&format!("        {line}\n"));
            }
            if !d.states.is_empty() {
                let states: Vec<String> = (d.states.iter())
                    .map(|c| format!("{} {}", c.state.as_str(), timestamp(c.time)))
                    .collect();
                field(&mut s, "states", states.join(" > "));
            }
            s.push_str("    events:\n");
            for e in &d.events {
                s.push_str(&format!("        {}  {}\n", timestamp(e.time), e.message));
            }
        }
        s.push('\n');
    }
    s
}

/// Joules as `12.3 kJ (0.003 kWh)`.
fn energy(j: f64) -> String {
    let kwh = j / 3.6e6;
    match j {
        j if j < 1e3 => format!("{j:.0} J ({kwh:.3} kWh)"),
        j if j < 1e6 => format!("{:.1} kJ ({kwh:.3} kWh)", j / 1e3),
        j => format!("{:.1} MJ ({kwh:.1} kWh)", j / 1e6),
    }
}

/// The nodes, then what they draw and have drawn in all.
pub fn nodes_table(nodes: &[NodeInfo]) -> String {
    let rows: Vec<Vec<String>> = nodes
        .iter()
        .map(|n| {
            vec![
                n.name.clone(),
                if n.up || n.power != "on" {
                    n.state.as_str().to_string()
                } else {
                    format!("{} (down)", n.state.as_str())
                },
                match &n.power_reason {
                    Some(r) => format!("{} ({r})", n.power),
                    None => n.power.clone(),
                },
                format!("{:.0}", n.watts),
                format!("{}/{}", n.cpus_used, n.cpus),
                format!("{}/{}", size(n.memory_used), size(n.memory)),
                n.vms.len().to_string(),
                match (n.vms.is_empty(), n.other_vms.len()) {
                    (true, 0) => "-".into(),
                    (false, 0) => n.vms.join(","),
                    (true, k) => format!("(+{k} not ours)"),
                    (false, k) => format!("{} (+{k} not ours)", n.vms.join(",")),
                },
            ]
        })
        .collect();
    let mut table = render(
        &["NODE", "STATE", "POWER", "WATTS", "CPUS", "MEMORY", "NVMS", "VMS"],
        &rows,
    );
    let watts: f64 = nodes.iter().map(|n| n.watts).sum();
    let joules: f64 = nodes.iter().map(|n| n.energy_j).sum();
    table.push_str(&format!(
        "{} nodes, {} on: drawing {watts:.0} W; {} drawn\n",
        nodes.len(),
        nodes.iter().filter(|n| n.power == "on").count(),
        energy(joules)
    ));
    table
}

pub fn queues_table(queues: &[QueueInfo]) -> String {
    let limit = |l: Option<u32>| l.map(|v| v.to_string()).unwrap_or_else(|| "-".into());
    let rows: Vec<Vec<String>> = queues
        .iter()
        .map(|q| {
            vec![
                format!("{}{}", q.name, if q.default { " *" } else { "" }),
                q.priority.to_string(),
                if q.enabled { "yes" } else { "no" }.into(),
                if q.started { "yes" } else { "no" }.into(),
                limit(q.max_running),
                limit(q.max_user_running),
                q.queued.to_string(),
                q.running.to_string(),
                q.suspended.to_string(),
                q.held.to_string(),
            ]
        })
        .collect();
    render(
        &[
            "QUEUE", "PRIO", "ENABLED", "STARTED", "MAX", "MAX/USER", "Q", "R", "S", "H",
        ],
        &rows,
    )
}

fn server_text(s: &vjob_api::ServerStatus) -> String {
    let jobs: Vec<String> = s.jobs.iter().map(|(state, n)| format!("{n} {state}")).collect();
    format!(
        "cluster: {}\nversion: {}\nbackend: {}\nnodes: {} up, {} down\njobs: {}\ndecision rounds: {}\nnode reports: {}\nplan running: {}\n",
        s.cluster,
        s.version,
        s.backend,
        s.nodes_up,
        s.nodes_down,
        if jobs.is_empty() { "none active".to_string() } else { jobs.join(", ") },
        s.rounds,
        s.observations,
        if s.busy { "yes" } else { "no" },
    )
}
