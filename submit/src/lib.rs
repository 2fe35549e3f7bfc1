//! The commands users and administrators type: `vsub`, `vstat`, `vdel`, `vqmgr`, and the thin
//! client they share. They depend on the API's wire types ([`vjob_api`]) and nothing else of the
//! scheduler: the daemon parses and judges everything, the commands only ask and print.

pub mod client;
pub mod format;
pub mod rows;
pub mod table;
pub mod vacct;
pub mod vdel;
pub mod vqmgr;
pub mod vstat;
pub mod vsub;

use std::process::ExitCode;

/// Exit codes shared by the commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    /// The daemon refused or failed the request.
    Refused = 1,
    /// Bad command-line usage (clap's own code).
    Usage = 2,
    /// The daemon could not be reached.
    Unreachable = 3,
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e as u8)
    }
}

/// Prints an error once, prefixed with the command's name, and returns its exit code.
pub fn fail(cmd: &str, err: &client::ClientError) -> ExitCode {
    eprintln!("{cmd}: {err}");
    err.exit().into()
}

/// Writes to stdout, exiting quietly when the reader went away (`vstat | head`).
pub fn out(text: &str) {
    out_bytes(&[text.as_bytes()]);
}

/// Writes pieces to stdout, as [`out`] does.
pub fn out_bytes(pieces: &[&[u8]]) {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    let written = pieces.iter().try_for_each(|p| stdout.write_all(p));
    if let Err(e) = written.and_then(|_| stdout.flush()) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(0);
        }
        eprintln!("cannot write the output: {e}");
        std::process::exit(1);
    }
}
