//! `vsub`: submits a job (a TOML spec, a shell script with `#VJOB`/`#SBATCH`/`#PBS` directives,
//! or a one-line command with `--wrap`); prints the new job's id alone on stdout.
//!
//! ```text
//! vsub [-q QUEUE] [-N NAME] [-p PRIORITY] [--vms N] [--vcpus N] [--mem SIZE] [-t WALLTIME]
//!      [--image NAME] [-o FILE] [-a INDICES] [-d DEPENDENCY] [--hold] [--parsable]
//!      (FILE | --wrap "CMD")
//! ```

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vjob_api::{Op, Reply, SpecFlag, SpecFlags, SubmitRequest};

use crate::client::{call_once, unexpected, ClientError};
use crate::{fail, out, Exit};

/// Submit a vjob: a job spec file (TOML), a shell script whose leading `#VJOB` lines (or
/// `#SBATCH`, `#PBS`) carry these flags, or a command (`--wrap`). Flags given here win over the
/// script's directives, which win over the spec file.
#[derive(Parser, Debug)]
#[command(name = "vsub", version)]
pub struct Args {
    /// Queue to submit to (default: the spec's `queue`, else the default queue).
    #[arg(short = 'q', long = "queue")]
    pub queue: Option<String>,
    /// Job name (default: the spec's `name`, else the file's name).
    #[arg(short = 'N', long = "name")]
    pub name: Option<String>,
    /// Priority within the queue (higher runs first; default: the spec's `priority`, else 0).
    #[arg(short = 'p', long = "priority", allow_negative_numbers = true)]
    pub priority: Option<String>,
    /// VMs in the vjob.
    #[arg(long, value_name = "N")]
    pub vms: Option<String>,
    /// Virtual processors per VM.
    #[arg(long, value_name = "N")]
    pub vcpus: Option<String>,
    /// Memory per VM (`4GiB`).
    #[arg(long, value_name = "SIZE")]
    pub mem: Option<String>,
    /// Most running time (`1h30m`, `01:30:00`).
    #[arg(short = 't', long, value_name = "DURATION")]
    pub walltime: Option<String>,
    /// The guest image of the VMs.
    #[arg(long, value_name = "NAME")]
    pub image: Option<String>,
    /// Where the VMs' console output goes (default `vjob-%j.out` here): `%j` job id, `%A`
    /// array id, `%a` task index, `%x` job name, `%u` user, `%%` a `%`.
    #[arg(short = 'o', long, value_name = "FILE")]
    pub output: Option<String>,
    /// The simulated backend: how long the job runs.
    #[arg(long, value_name = "DURATION")]
    pub sim_runtime: Option<String>,
    /// The simulated backend: the job's exit code.
    #[arg(long, value_name = "CODE", allow_negative_numbers = true)]
    pub sim_exit_code: Option<String>,
    /// What the job waits for, as Slurm spells it: `afterok:12:13`, `afterany`, `afternotok`,
    /// `after` (started), `singleton`; `,` joins terms that must all hold, `?` any one; an
    /// array's id means all of its tasks, `12[3]` one.
    #[arg(short = 'd', long, value_name = "DEPENDENCY")]
    pub dependency: Option<String>,
    /// Cancel the job when its dependency can never be met (else it stays queued, saying so).
    #[arg(long)]
    pub kill_on_invalid_dep: bool,
    /// Submit an array of tasks, one job each: `0-99`, `1,3,5-7`, `0-15:3`, and `%N` to run
    /// at most N at once (`0-99%5`). Prints the array's id; task 3 is then `ID[3]`.
    #[arg(short = 'a', long, value_name = "INDICES")]
    pub array: Option<String>,
    /// Submit held: the job is not scheduled until released.
    #[arg(long)]
    pub hold: bool,
    /// Run this command as the job (a shell script of one line), without a file.
    #[arg(long, value_name = "CMD", conflicts_with = "file")]
    pub wrap: Option<String>,
    /// Print only the id (what vsub always prints on success; errors go to stderr with a
    /// non-zero exit), for workflow tools.
    #[arg(long)]
    pub parsable: bool,
    /// Skip a script's directives that have no meaning in vjob (listed in the job's history)
    /// instead of refusing the job.
    #[arg(long)]
    pub ignore_unknown_directives: bool,
    /// The daemon's socket (default: $VJOB_SOCKET, else /run/vjob/vjobd.sock).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The job spec file or script (`-` for standard input).
    #[arg(required_unless_present = "wrap")]
    pub file: Option<PathBuf>,
}

impl Args {
    /// The spec flags of the command line, checked.
    fn flags(&self) -> Result<SpecFlags, String> {
        let mut flags = SpecFlags::default();
        let given = [
            (SpecFlag::Queue, &self.queue),
            (SpecFlag::Name, &self.name),
            (SpecFlag::Priority, &self.priority),
            (SpecFlag::Vms, &self.vms),
            (SpecFlag::Vcpus, &self.vcpus),
            (SpecFlag::Memory, &self.mem),
            (SpecFlag::Walltime, &self.walltime),
            (SpecFlag::Image, &self.image),
            (SpecFlag::Output, &self.output),
            (SpecFlag::SimRuntime, &self.sim_runtime),
            (SpecFlag::SimExitCode, &self.sim_exit_code),
            (SpecFlag::Dependency, &self.dependency),
            (SpecFlag::Array, &self.array),
        ];
        for (flag, value) in given {
            if let Some(v) = value {
                let long = SpecFlag::ALL
                    .iter()
                    .find(|(f, _, _)| *f == flag)
                    .map_or("?", |(_, l, _)| l);
                flags.set(flag, v).map_err(|m| format!("--{long} {v}: {m}"))?;
            }
        }
        if self.kill_on_invalid_dep {
            flags.kill_on_invalid_dep = Some(true);
        }
        Ok(flags)
    }

    /// The spec's name in errors and its text.
    fn spec(&self) -> Result<(String, String), String> {
        if let Some(cmd) = &self.wrap {
            return Ok(("wrap".into(), format!("#!/bin/sh\n{cmd}\n")));
        }
        let path = self.file.as_ref().expect("clap requires a file without --wrap");
        if path.as_os_str() == "-" {
            let mut s = String::new();
            std::io::stdin()
                .read_to_string(&mut s)
                .map_err(|e| format!("cannot read the job spec from standard input: {e}"))?;
            return Ok(("<stdin>".into(), s));
        }
        std::fs::read_to_string(path)
            .map(|s| (path.display().to_string(), s))
            .map_err(|e| format!("{}: cannot read the job spec: {e}", path.display()))
    }
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    let prepared = args.flags().and_then(|flags| {
        let (file, spec) = args.spec()?;
        let files = match &args.file {
            Some(path) if args.wrap.is_none() => referenced_files(path, &spec)?,
            _ => Default::default(),
        };
        Ok((flags, file, spec, files))
    });
    let (flags, file, spec, files) = match prepared {
        Ok(p) => p,
        Err(e) => {
            eprintln!("vsub: {e}");
            return Exit::Refused.into();
        }
    };
    let req = SubmitRequest {
        files,
        file: file.clone(),
        spec,
        flags,
        hold: args.hold,
        ignore_unknown_directives: args.ignore_unknown_directives,
        cwd: std::env::current_dir().ok().map(|d| d.display().to_string()),
    };
    match call_once(args.socket.as_deref(), Op::Submit(Box::new(req))) {
        Ok(Reply::Submitted { id }) => {
            out(&format!("{id}\n"));
            Exit::Ok.into()
        }
        Ok(other) => fail("vsub", &unexpected(&other)),
        Err(ClientError::TooLarge { bytes, limit }) => {
            eprintln!(
                "vsub: {file}: the spec and the files it names make a request of {}, more than vjobd takes ({}); \
                 nothing was submitted: keep large inputs out of the spec (in the guest image, or a directory the VMs read)",
                vjob_api::display::size(bytes as u64),
                vjob_api::display::size(limit as u64)
            );
            Exit::Refused.into()
        }
        Err(e) => fail("vsub", &e),
    }
}

/// The files a spec refers to, read relative to the spec's directory: its `[placement] file`.
/// The daemon judges the spec; this only finds the line `file = "..."` of its `[placement]`
/// table, so that what the daemon cannot read (the user's files) travels with the spec.
fn referenced_files(
    spec_path: &std::path::Path,
    spec: &str,
) -> Result<std::collections::BTreeMap<String, String>, String> {
    let mut out = std::collections::BTreeMap::new();
    let mut in_placement = false;
    for line in spec.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            in_placement = t.trim_start_matches('[').trim_end_matches(']').trim() == "placement";
            continue;
        }
        let Some(rest) = t
            .strip_prefix("file")
            .map(str::trim_start)
            .and_then(|r| r.strip_prefix('='))
        else {
            continue;
        };
        if !in_placement {
            continue;
        }
        let name = rest.trim().trim_matches(|c| c == '"' || c == '\'');
        let dir = spec_path.parent().unwrap_or(std::path::Path::new("."));
        let path = dir.join(name);
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("{}: cannot read the placement script: {e}", path.display()))?;
        out.insert(name.to_string(), text);
    }
    Ok(out)
}

/// Submits with an existing client (for tools that submit many jobs).
pub fn submit(client: &mut crate::client::Client, req: SubmitRequest) -> Result<u64, ClientError> {
    match client.call(Op::Submit(Box::new(req)))? {
        Reply::Submitted { id } => Ok(id),
        other => Err(unexpected(&other)),
    }
}
