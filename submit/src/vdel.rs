//! `vdel`: cancels jobs. Running VMs are destroyed and saved images removed. Only a job's owner
//! or an administrator may cancel it; each refusal is printed and the exit code is non-zero. A
//! job that already ended is left as it is, and is no error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use vjob_api::{JobRef, Op, Reply};

use crate::client::{call_once, unexpected};
use crate::{fail, Exit};

/// Cancel vjobs.
#[derive(Parser, Debug)]
#[command(name = "vdel", version)]
pub struct Args {
    /// The daemon's socket (default: $VJOB_SOCKET, else /run/vjob/vjobd.sock).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Jobs to cancel: `12` (a job, or every task of array 12), `12[3]` (one task).
    #[arg(required = true)]
    pub ids: Vec<JobRef>,
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    per_job("vdel", args.socket.as_deref(), Op::Delete { ids: args.ids }, false)
}

/// Makes a per-job call and prints each refusal; non-zero exit if any job was refused.
pub fn per_job(cmd: &str, socket: Option<&std::path::Path>, op: Op, verbose: bool) -> ExitCode {
    match call_once(socket, op) {
        Ok(Reply::PerJob { outcomes }) => {
            let mut code = Exit::Ok;
            for o in outcomes {
                match o.result {
                    Ok(msg) if verbose => println!("{msg}"),
                    Ok(_) => {}
                    Err(e) => {
                        eprintln!("{cmd}: job {}: {}", o.id, e.message);
                        code = Exit::Refused;
                    }
                }
            }
            code.into()
        }
        Ok(other) => fail(cmd, &unexpected(&other)),
        Err(e) => fail(cmd, &e),
    }
}
