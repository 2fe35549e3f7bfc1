//! Planner benchmark: every BtrPlace instance of the shared reference data, and generated
//! instances up to 10,000 nodes / 80,000 VMs with and without side constraints. For each: solve
//! time (median of 3 runs of `vplan solve`), peak memory of the process, actions, migrations,
//! plan duration and sum of completion times, whether the independent checker accepts the plan,
//! and the same figures for a naive re-placement from scratch (`--from-scratch`).
//!
//! `cargo bench --bench planner`. Prints a Markdown table; results are kept in BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

fn vplan(args: &[&str]) -> Option<Value> {
    let o = Command::new(env!("CARGO_BIN_EXE_vplan")).args(args).output().unwrap();
    if !o.status.success() {
        eprintln!("vplan {args:?} failed: {}", String::from_utf8_lossy(&o.stderr).trim());
        return None;
    }
    serde_json::from_slice(&o.stdout).ok()
}

fn row(name: &str, file: &Path) {
    let f = file.to_str().unwrap();
    let mut runs: Vec<Value> = (0..3).filter_map(|_| vplan(&["solve", f, "--json"])).collect();
    if runs.is_empty() {
        println!("| {name} | unsatisfiable | | | | | | | |");
        return;
    }
    runs.sort_by(|a, b| a["solve_s"].as_f64().partial_cmp(&b["solve_s"].as_f64()).unwrap());
    let med = &runs[runs.len() / 2];
    let checked = vplan(&["solve", f, "--json", "--check"])
        .and_then(|v| v["valid"].as_bool())
        .unwrap_or(false);
    let naive = vplan(&["solve", f, "--json", "--from-scratch", "--check"]);
    let (nm, nd, ns, nv) = match &naive {
        Some(n) => (
            n["migrations"].to_string(),
            n["duration"].to_string(),
            n["sum_completion"].to_string(),
            n["valid"].as_bool() == Some(true),
        ),
        None => ("failed".into(), "-".into(), "-".into(), false),
    };
    println!(
        "| {name} | {}/{} | {} | {:.3} | {:.0} | {} | {} | {} / {} | {} | {nm} / {nd} / {ns}{} |",
        med["nodes"],
        med["vms"],
        med["constraints"],
        med["solve_s"].as_f64().unwrap(),
        med["peak_rss_mib"].as_f64().unwrap(),
        med["actions"],
        med["migrations"],
        med["duration"],
        med["sum_completion"],
        if checked { "yes" } else { "NO" },
        if naive.is_some() && !nv { " (invalid)" } else { "" },
    );
}

fn main() {
    println!("| instance | nodes/VMs | constraints | solve s (median of 3) | peak MiB | actions | migrations | plan duration / sum of completion | checked | from scratch: migrations / duration / sum |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/btrplace");
    match std::fs::read_dir(&shared) {
        Ok(entries) => {
            let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
            files.sort();
            for f in files.iter().filter(|f| f.to_string_lossy().ends_with(".json.gz")) {
                row(f.file_name().unwrap().to_str().unwrap(), f);
            }
        }
        Err(_) => eprintln!("skipped the shared BtrPlace instances: no data at {}", shared.display()),
    }
    let dir = std::env::temp_dir().join(format!("vjob-planner-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for (nodes, vms) in [(5_000, 30_000), (10_000, 80_000)] {
        for scenario in ["li", "nr"] {
            for constrained in [0, 50] {
                let name = format!("gen-{scenario}-{nodes}-{vms}-c{constrained}");
                let file = dir.join(format!("{name}.json.gz"));
                let ok = Command::new(env!("CARGO_BIN_EXE_vplan"))
                    .args([
                        "gen",
                        "--nodes",
                        &nodes.to_string(),
                        "--vms",
                        &vms.to_string(),
                        "--scenario",
                        scenario,
                    ])
                    .args([
                        "--constrained",
                        &constrained.to_string(),
                        "--out",
                        file.to_str().unwrap(),
                    ])
                    .status()
                    .unwrap()
                    .success();
                assert!(ok, "vplan gen failed");
                row(&name, &file);
                let _ = std::fs::remove_file(&file);
            }
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
