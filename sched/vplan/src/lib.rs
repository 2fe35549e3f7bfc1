//! `vplan`: the planner on an instance file, offline.
//!
//! ```text
//! vplan solve INSTANCE.json[.gz] [--out PLAN.json]   # BtrPlace instance in, BtrPlace plan out
//! vplan check INSTANCE.json[.gz] PLAN.json          # independent replay of a plan
//! vplan gen --nodes N --vms M --scenario li|nr [--constrained PCT] --out FILE   # a test instance
//! vplan snapshot [--socket PATH] --out FILE          # what the running vjobd would plan now
//! vplan script FILE.btrp... [--include DIR] [--json]  # evaluate btrpsl scripts
//! vplan solve INSTANCE --script FILE.btrp...          # with a script's constraints added
//! ```
//!
//! A snapshot is an instance like any other: `vplan solve` on it shows what the scheduler would
//! do now (names are kept in the instance's `ns` views).
//!
//! `solve` prints one summary line (solve time, actions by kind, plan duration); an unsatisfiable
//! instance exits 1 and names the constraints in conflict. `check` exits 1 and lists every
//! violation when the plan is not valid.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Instant;

use clap::{Parser, Subcommand};
use vjob_api::{Op, Reply};
use vjob_submit::client::{socket_path, unexpected, Client};

use vjob_instances::btrplace;

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
        /// Print the summary as one JSON object.
        #[arg(long)]
        json: bool,
        /// Baseline for comparisons: re-place every VM from scratch instead of repairing.
        #[arg(long)]
        from_scratch: bool,
        /// btrpsl scripts whose constraints are added (elements named as in the instance's `ns` views).
        #[arg(long = "script")]
        scripts: Vec<PathBuf>,
        /// Where the scripts' imports are looked for, besides the scripts' own directories.
        #[arg(long)]
        include: Vec<PathBuf>,
    },
    /// Evaluate btrpsl scripts: print each one's namespace, VMs, nodes, exports and constraints.
    Script {
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Where imports are looked for, besides the scripts' own directories.
        #[arg(long)]
        include: Vec<PathBuf>,
        /// One JSON object per script and per line.
        #[arg(long)]
        json: bool,
    },
    /// Ask a running vjobd for the instance it would plan now.
    Snapshot {
        /// The daemon's socket (default: $VJOB_SOCKET, else /run/vjob/vjobd.sock).
        #[arg(long)]
        socket: Option<PathBuf>,
        #[arg(long)]
        out: PathBuf,
    },
    /// Generate an instance shaped like BtrPlace's benchmark, at any scale.
    Gen {
        #[arg(long)]
        nodes: usize,
        #[arg(long)]
        vms: usize,
        /// `li` (load increase) or `nr` (new requests).
        #[arg(long, default_value = "li")]
        scenario: String,
        /// Percentage of VMs under side constraints (continuous spread and among).
        #[arg(long, default_value_t = 0)]
        constrained: u32,
        #[arg(long, default_value_t = 1)]
        seed: u64,
        #[arg(long)]
        out: PathBuf,
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
        Cmd::Solve {
            instance,
            out,
            check,
            json,
            from_scratch,
            scripts,
            include,
        } => solve(instance, out, check, json, from_scratch, scripts, include),
        Cmd::Script { files, include, json } => Ok(script(&files, include, json)),
        Cmd::Snapshot { socket, out } => {
            let instance = snapshot(&socket_path(socket.as_deref()))?;
            std::fs::write(&out, serde_json::to_vec(&instance).expect("instances serialize"))
                .map_err(|e| format!("{}: cannot write: {e}", out.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Gen {
            nodes,
            vms,
            scenario,
            constrained,
            seed,
            out,
        } => {
            let scenario = match scenario.as_str() {
                "li" => vjob_instances::gen::Scenario::LoadIncrease,
                "nr" => vjob_instances::gen::Scenario::NewRequests,
                other => return Err(format!("--scenario {other}: expected `li` or `nr`")),
            };
            if nodes == 0 || vms == 0 || constrained > 100 {
                return Err("--nodes and --vms must be positive, --constrained at most 100".into());
            }
            let inst = vjob_instances::gen::generate(&vjob_instances::gen::Params {
                nodes,
                vms,
                scenario,
                constrained_pct: constrained,
                seed,
            });
            let json = btrplace::instance_json(&inst);
            let bytes = serde_json::to_vec(&json).expect("instances serialize");
            btrplace::write_maybe_gz(&out, &bytes).map_err(|e| format!("{}: cannot write: {e}", out.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Check { instance, plan } => {
            let loaded = btrplace::load(&instance).map_err(|e| e.to_string())?;
            let bytes = btrplace::read_maybe_gz(&plan).map_err(|e| format!("{}: cannot read: {e}", plan.display()))?;
            let v: serde_json::Value =
                serde_json::from_slice(&bytes).map_err(|e| format!("{}: not JSON: {e}", plan.display()))?;
            let p = btrplace::parse_plan(&loaded, &v).map_err(|e| format!("{}: {e}", plan.display()))?;
            Ok(report(&vjob_core::check::check(&loaded.instance, &p), false))
        }
    }
}

/// `vplan solve`: the instance (with the scripts' constraints) solved, summarized, checked.
fn solve(
    instance: PathBuf,
    out: Option<PathBuf>,
    check: bool,
    json: bool,
    from_scratch: bool,
    scripts: Vec<PathBuf>,
    include: Vec<PathBuf>,
) -> Result<ExitCode, String> {
    let t0 = Instant::now();
    let mut loaded = btrplace::load(&instance).map_err(|e| e.to_string())?;
    loaded.instance.options.from_scratch = from_scratch;
    if !scripts.is_empty() {
        match script_constraints(&loaded.instance.model, &scripts, include) {
            Ok(c) => loaded.instance.constraints.extend(c),
            Err(lines) => {
                eprintln!("{lines}");
                return Ok(ExitCode::from(1));
            }
        }
    }
    let read_s = t0.elapsed().as_secs_f64();
    let t1 = Instant::now();
    let plan = match vjob_core::plan::solve(&loaded.instance) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("vplan: {}: unsatisfiable: {e}", instance.display());
            return Ok(ExitCode::from(1));
        }
    };
    let solve_s = t1.elapsed().as_secs_f64();
    let m = &loaded.instance.model;
    let errors = if check {
        Some(vjob_core::check::check(&loaded.instance, &plan))
    } else {
        None
    };
    if json {
        let counts: serde_json::Map<String, serde_json::Value> = plan
            .counts()
            .into_iter()
            .map(|(k, n)| (k.to_string(), n.into()))
            .collect();
        let summary = serde_json::json!({
            "instance": instance.display().to_string(),
            "nodes": m.nodes(), "vms": m.vms(), "constraints": loaded.instance.constraints.len(),
            "solve_s": solve_s, "read_s": read_s, "actions": plan.actions.len(), "counts": counts,
            "migrations": plan.count("migrateVM"), "duration": plan.duration(),
            "sum_completion": plan.sum_completion(), "peak_rss_mib": peak_rss_mib(),
            "valid": errors.as_ref().map(|e| e.is_empty()),
        });
        println!("{summary}");
    } else {
        let counts: Vec<String> = plan.counts().iter().map(|(k, n)| format!("{k} {n}")).collect();
        println!(
            "{}: {} nodes, {} VMs, {} constraints: solved in {:.3} s (read {:.3} s): {} actions ({}), plan duration {}, sum of completion times {}, peak memory {:.0} MiB",
            instance.display(),
            m.nodes(),
            m.vms(),
            loaded.instance.constraints.len(),
            solve_s,
            read_s,
            plan.actions.len(),
            if counts.is_empty() { "none".to_string() } else { counts.join(", ") },
            plan.duration(),
            plan.sum_completion(),
            peak_rss_mib()
        );
    }
    if let Some(out) = out {
        let json = btrplace::plan_json(&loaded, &plan);
        std::fs::write(&out, serde_json::to_vec(&json).expect("plans serialize"))
            .map_err(|e| format!("{}: cannot write the plan: {e}", out.display()))?;
    }
    match errors {
        Some(e) => Ok(report(&e, json)),
        None => Ok(ExitCode::SUCCESS),
    }
}

/// A library whose imports are looked for in `include`, then in the scripts' own directories.
fn library(files: &[PathBuf], mut include: Vec<PathBuf>) -> vjob_btrpsl::Library {
    for f in files {
        let dir = f.parent().map(|p| p.to_path_buf()).unwrap_or_default();
        let dir = if dir.as_os_str().is_empty() {
            PathBuf::from(".")
        } else {
            dir
        };
        if !include.contains(&dir) {
            include.push(dir);
        }
    }
    vjob_btrpsl::Library::new(include, vjob_btrpsl::Context::default())
}

/// `vplan script`: each script evaluated and printed; exit 1 with every error line if one fails.
fn script(files: &[PathBuf], include: Vec<PathBuf>, json: bool) -> ExitCode {
    let mut lib = library(files, include);
    let mut failed = false;
    for f in files {
        match lib.load_file(f) {
            Ok(e) if json => println!("{}", e.to_json()),
            Ok(e) => print!("{}", describe(&e)),
            Err(errors) => {
                eprintln!("{errors}");
                failed = true;
            }
        }
    }
    if failed {
        ExitCode::from(1)
    } else {
        ExitCode::SUCCESS
    }
}

/// A script in words: namespace, elements with their templates, exports, constraints as JSON.
fn describe(e: &vjob_btrpsl::Evaluated) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "namespace {} ({})", e.namespace, e.file);
    let element = |x: &vjob_btrpsl::Element, node: bool| {
        let opts: Vec<String> = x
            .options
            .iter()
            .map(|(k, v)| {
                if *v == serde_json::json!(true) {
                    k.clone()
                } else {
                    format!("{k}={v}")
                }
            })
            .collect();
        format!(
            "{}{}{}{}",
            if node { "@" } else { "" },
            x.name,
            x.template.as_ref().map(|t| format!(" : {t}")).unwrap_or_default(),
            if opts.is_empty() {
                String::new()
            } else {
                format!("<{}>", opts.join(", "))
            }
        )
    };
    let _ = writeln!(out, "  VMs ({}):", e.vms.len());
    for v in &e.vms {
        let _ = writeln!(out, "    {}", element(v, false));
    }
    let _ = writeln!(out, "  nodes ({}):", e.nodes.len());
    for n in &e.nodes {
        let _ = writeln!(out, "    {}", element(n, true));
    }
    let _ = writeln!(out, "  exports ({}):", e.exports.len());
    for x in &e.exports {
        let _ = writeln!(out, "    {} = {} to {}", x.name, x.value, x.to.join(", "));
    }
    let _ = writeln!(out, "  constraints ({}):", e.constraints.len());
    for c in &e.constraints {
        let _ = writeln!(out, "    {}", c.to_json());
    }
    out
}

/// The planner constraints of `scripts` over an instance's model; or every error, one a line.
fn script_constraints(
    model: &vjob_core::model::Model,
    scripts: &[PathBuf],
    include: Vec<PathBuf>,
) -> Result<Vec<vjob_core::instance::Constraint>, String> {
    let mut lib = library(scripts, include);
    let mut names = vjob_core::placement::Names::new(model);
    let mut out = Vec::new();
    let mut errors = Vec::new();
    for f in scripts {
        match lib.load_file(f) {
            Ok(e) => {
                for b in &e.constraints {
                    match names.constraint(b) {
                        Ok(c) => out.push(c),
                        Err(err) => errors.push(err.to_string()),
                    }
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors.join("\n"))
    }
}

/// Asks the daemon at `socket` for its current planner instance, through the commands' client.
fn snapshot(socket: &std::path::Path) -> Result<serde_json::Value, String> {
    let mut client = Client::connect(socket).map_err(|e| e.to_string())?;
    match client.call(Op::Snapshot).map_err(|e| e.to_string())? {
        Reply::Snapshot { instance } => Ok(instance),
        other => Err(unexpected(&other).to_string()),
    }
}

/// This process's peak resident memory (VmHWM), in MiB.
fn peak_rss_mib() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(0.0)
}

fn report(errors: &[String], quiet: bool) -> ExitCode {
    if errors.is_empty() {
        if !quiet {
            println!("plan valid: every capacity and constraint holds at every instant");
        }
        ExitCode::SUCCESS
    } else {
        for e in errors {
            eprintln!("violation: {e}");
        }
        eprintln!("plan invalid: {} violation(s)", errors.len());
        ExitCode::from(1)
    }
}
