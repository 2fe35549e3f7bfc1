//! The VMPlaceS scenario at scale: `vsim --scenario vmplaces` with the central, DVMS and LBO
//! schedulers at 128 to 8,192 nodes (10 VMs each), with the load law (mean 60%, std
//! 20%) and a heavier one (std 40%, VMPlaceS's later setting), and DVMS against LBO on 4
//! sites. Every run is deterministic for its seed; wall times are medians of 3 runs.
//!
//! `cargo bench --bench vmplaces`; results in BENCHMARKS.md. `VMPLACES_MAX_NODES` caps the
//! sizes (for a quick look).

mod common;
use common::median;

use std::process::Command;
use std::time::Instant;

use serde_json::Value;

fn vsim(args: &[String]) -> (Vec<Value>, f64) {
    let mut walls = Vec::new();
    let mut out = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        let o = Command::new(env!("CARGO_BIN_EXE_vsim")).args(args).output().unwrap();
        walls.push(t.elapsed().as_secs_f64());
        assert!(
            o.status.success(),
            "vsim {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        let runs: Vec<Value> = String::from_utf8_lossy(&o.stdout)
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        if !out.is_empty() {
            assert_eq!(out, runs, "runs of one seed differ");
        }
        out = runs;
    }
    (out, median(walls))
}

fn row(r: &Value, wall: f64, extra: &str) {
    println!(
        "| {} | {}{extra} | {} | {:.0} | {} | {} / {} | {:.2} / {:.2} | {:.2} / {} | {} | {} | {} | {:.1} |",
        r["nodes"],
        r["scheduler"].as_str().unwrap(),
        r["vms"],
        r["cumulated_violation_s"].as_f64().unwrap(),
        r["events"],
        r["solved"],
        r["failed"],
        r["mean_solve_s"].as_f64().unwrap(),
        r["p95_solve_s"].as_f64().unwrap(),
        r["mean_partition_size"].as_f64().unwrap(),
        r["max_partition_size"],
        r["migrations"],
        r["inter_site_migrations"],
        r["messages"],
        wall
    );
}

fn header(title: &str) {
    println!("\n{title}\n");
    println!("| nodes | scheduler | VMs | cumulated violation s | events | solved / failed | time to solve s, mean / p95 | partition size, mean / max | migrations | inter-site | messages | wall s (3 schedulers in one run, median of 3) |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|");
}

/// Runs the vmplaces scenario at `nodes` with these further arguments and prints its rows.
fn rows(nodes: usize, extra: &[&str], label: &str) {
    let mut args: Vec<String> = ["--scenario", "vmplaces", "--duration", "1800s", "--json", "--nodes"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    args.push(nodes.to_string());
    args.extend(extra.iter().map(|s| s.to_string()));
    let (runs, wall) = vsim(&args);
    for r in &runs {
        row(r, wall, label);
    }
}

fn main() {
    let max: usize = std::env::var("VMPLACES_MAX_NODES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8192);
    for std in ["20", "40"] {
        header(&format!("Load law: mean 60%, std {std}%; one site; 1800 s simulated."));
        for nodes in [128usize, 512, 1024, 4096, 8192].into_iter().filter(|&n| n <= max) {
            rows(nodes, &["--scheduler", "central,dvms,lbo", "--load-std", std], "");
        }
    }
    header("DVMS against LBO on 4 sites (10 ms and 100 Mb/s between sites): mean load 75%, std 20%.");
    for nodes in [1024usize, 4096].into_iter().filter(|&n| n <= max) {
        rows(
            nodes,
            &["--sites", "4", "--scheduler", "dvms,lbo", "--load-mean", "75"],
            ", 4 sites",
        );
    }
}
