//! `vplan`: the planner on an instance file, offline.
//!
//! ```text
//! vplan solve INSTANCE.json[.gz] [--out PLAN.json]   # BtrPlace instance in, BtrPlace plan out
//! vplan check INSTANCE.json[.gz] PLAN.json          # independent replay of a plan
//! ```
//!
//! `solve` prints one summary line (solve time, actions by kind, plan duration); an unsatisfiable
//! instance exits 1 and names the constraints in conflict. `check` exits 1 and lists every
//! violation when the plan is not valid.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};

use crate::btrplace;

/// The vjob planner, offline.
#[derive(Parser, Debug)]
#[command(name = "vplan", version)]
pub struct Args {
    #[command(subcommand)]
    pub cmd: Cmd,
}

#[derive(Subcommand, Debug)]
pub enum Cmd {
    /// Compute a viable configuration and a reconfiguration plan for an instance.
    Solve {
        instance: PathBuf,
        /// Where to write the plan (BtrPlace's JSON format).
        #[arg(long)]
        out: Option<PathBuf>,
        /// Also replay the plan with the independent checker.
        #[arg(long)]
        check: bool,
    },
    /// Replay a plan on its instance and verify every capacity and constraint.
    Check { instance: PathBuf, plan: PathBuf },
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    match run(args.cmd) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("vplan: {e}");
            ExitCode::from(2)
        }
    }
}

fn run(cmd: Cmd) -> Result<ExitCode, String> {
    match cmd {
        Cmd::Solve { instance, out, check } => {
            let t0 = Instant::now();
            let loaded = btrplace::load(&instance).map_err(|e| e.to_string())?;
            let read_s = t0.elapsed().as_secs_f64();
            let t1 = Instant::now();
            let plan = match crate::plan::solve(&loaded.instance) {
                Ok(p) => p,
                Err(e) => {
                    eprintln!("vplan: {}: unsatisfiable: {e}", instance.display());
                    return Ok(ExitCode::from(1));
                }
            };
            let solve_s = t1.elapsed().as_secs_f64();
            let counts: Vec<String> = plan.counts().iter().map(|(k, n)| format!("{k} {n}")).collect();
            let m = &loaded.instance.model;
            println!(
                "{}: {} nodes, {} VMs, {} constraints: solved in {:.3} s (read {:.3} s): {} actions ({}), plan duration {}, sum of completion times {}",
                instance.display(),
                m.nodes(),
                m.vms(),
                loaded.instance.constraints.len(),
                solve_s,
                read_s,
                plan.actions.len(),
                if counts.is_empty() { "none".to_string() } else { counts.join(", ") },
                plan.duration(),
                plan.sum_completion()
            );
            if let Some(out) = out {
                let json = btrplace::plan_json(&loaded, &plan);
                std::fs::write(&out, serde_json::to_vec(&json).expect("plans serialize"))
                    .map_err(|e| format!("{}: cannot write the plan: {e}", out.display()))?;
            }
            if check {
                return Ok(report(&crate::check::check(&loaded.instance, &plan)));
            }
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check { instance, plan } => {
            let loaded = btrplace::load(&instance).map_err(|e| e.to_string())?;
            let bytes = btrplace::read_maybe_gz(&plan).map_err(|e| format!("{}: cannot read: {e}", plan.display()))?;
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: not JSON: {e}", plan.display()))?;
            let p = btrplace::parse_plan(&loaded, &v).map_err(|e| format!("{}: {e}", plan.display()))?;
            Ok(report(&crate::check::check(&loaded.instance, &p)))
        }
    }
}

fn report(errors: &[String]) -> ExitCode {
    if errors.is_empty() {
        println!("plan valid: every capacity and constraint holds at every instant");
        ExitCode::SUCCESS
    } else {
        for e in errors {
            eprintln!("violation: {e}");
        }
        eprintln!("plan invalid: {} violation(s)", errors.len());
        ExitCode::from(1)
    }
}
