//! `vsub`: submits a job spec file; prints the new job's id alone on stdout.
//!
//! ```text
//! vsub [-q QUEUE] [-N NAME] [-p PRIORITY] [--hold] FILE
//! ```

use std::io::Read;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vjob_api::{Op, Reply, SubmitRequest};

use crate::client::{call_once, unexpected, ClientError};
use crate::{fail, out, Exit};

/// Submit a vjob: a job spec file (TOML) describing its VMs and what runs inside.
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
    pub priority: Option<i32>,
    /// Submit held: the job is not scheduled until released.
    #[arg(long)]
    pub hold: bool,
    /// The daemon's socket (default: $VJOB_SOCKET, else /run/vjob/vjobd.sock).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// The job spec file (`-` for standard input).
    pub file: PathBuf,
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    let (file, spec) = if args.file.as_os_str() == "-" {
        let mut s = String::new();
        if let Err(e) = std::io::stdin().read_to_string(&mut s) {
            eprintln!("vsub: cannot read the job spec from standard input: {e}");
            return Exit::Refused.into();
        }
        ("<stdin>".to_string(), s)
    } else {
        match std::fs::read_to_string(&args.file) {
            Ok(s) => (args.file.display().to_string(), s),
            Err(e) => {
                eprintln!("vsub: {}: cannot read the job spec: {e}", args.file.display());
                return Exit::Refused.into();
            }
        }
    };
    let files = match referenced_files(&args.file, &spec) {
        Ok(f) => f,
        Err(e) => {
            eprintln!("vsub: {e}");
            return Exit::Refused.into();
        }
    };
    let req = SubmitRequest {
        files,
        file,
        spec,
        queue: args.queue,
        name: args.name,
        priority: args.priority,
        hold: args.hold,
        cwd: std::env::current_dir().ok().map(|d| d.display().to_string()),
    };
    match call_once(args.socket.as_deref(), Op::Submit(req)) {
        Ok(Reply::Submitted { id }) => {
            out(&format!("{id}\n"));
            Exit::Ok.into()
        }
        Ok(other) => fail("vsub", &unexpected(&other)),
        Err(ClientError::TooLarge { bytes, limit }) => {
            eprintln!(
                "vsub: {}: the spec and the files it names make a request of {}, more than vjobd takes ({}); \
                 nothing was submitted: keep large inputs out of the spec (in the guest image, or a directory the VMs read)",
                args.file.display(),
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
    match client.call(Op::Submit(req))? {
        Reply::Submitted { id } => Ok(id),
        other => Err(unexpected(&other)),
    }
}
