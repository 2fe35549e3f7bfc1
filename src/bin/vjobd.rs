//! `vjobd`: the vjob daemon, in the foreground, logging to stderr. See [`vjob_daemon`].

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// The vjob resource manager's daemon.
#[derive(Parser, Debug)]
#[command(name = "vjobd", version)]
struct Args {
    /// The cluster configuration (TOML).
    #[arg(long, short = 'c', value_name = "FILE")]
    config: PathBuf,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("VJOB_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    match vjob_daemon::run(args.config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // Each cause once, after what failed: `vjobd: cannot listen on X: permission denied`.
            eprintln!("vjobd: {:#}", anyhow::Error::from(e));
            ExitCode::FAILURE
        }
    }
}
