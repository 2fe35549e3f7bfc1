//! Scheduling policies side by side: `vsim` on every SWF trace of the shared reference data (the
//! whole trace, and its first 1,024 jobs as in the published anchors), and the synthetic
//! 10,000-node scenario's decision times. `cargo bench --bench policies`; results in BENCHMARKS.md.

use std::path::{Path, PathBuf};
use std::process::Command;

fn vsim(args: &[&str]) -> serde_json::Value {
    let o = Command::new(env!("CARGO_BIN_EXE_vsim"))
        .args(args)
        .arg("--json")
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "vsim {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

fn main() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/swf");
    let mut traces: Vec<PathBuf> = match std::fs::read_dir(&dir) {
        Ok(e) => e.filter_map(|e| e.ok()).map(|e| e.path()).collect(),
        Err(_) => {
            eprintln!("skipped the traces: no data at {}", dir.display());
            Vec::new()
        }
    };
    traces.sort();
    println!("| trace | jobs | policy | mean wait s | mean bounded slowdown | max bounded slowdown | utilization | suspends | data moved | simulated in s |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    for t in &traces {
        let name = t.file_name().unwrap().to_string_lossy().replace(".swf.gz", "");
        for limit in [None, Some("1024")] {
            for policy in ["fcfs", "easy", "vjob", "ss"] {
                let mut args = vec!["--trace", t.to_str().unwrap(), "--policy", policy];
                if let Some(l) = limit {
                    args.extend(["--limit", l]);
                }
                let v = vsim(&args);
                println!(
                    "| {name} | {} | {policy} | {:.0} | {:.2} | {:.0} | {:.3} | {} | {} | {:.1} |",
                    v["jobs"],
                    v["mean_wait_s"].as_f64().unwrap(),
                    v["mean_bounded_slowdown"].as_f64().unwrap(),
                    v["max_bounded_slowdown"].as_f64().unwrap(),
                    v["utilization"].as_f64().unwrap(),
                    v["suspends"],
                    vjob_api::display::size(v["bytes_moved"].as_u64().unwrap()),
                    v["wall_s"].as_f64().unwrap()
                );
            }
        }
    }
    println!();
    println!("| synthetic scenario | rounds | rounds that planned | median decision ms (planned rounds) | median VMs per planned round | p95 decision ms (all rounds) |");
    println!("|---|---|---|---|---|---|");
    for policy in ["easy", "vjob"] {
        let v = vsim(&["--synthetic", "--policy", policy, "--rounds", "2000"]);
        println!(
            "| 10,000 nodes x 8 cores, {policy} | {} | {} | {:.1} | {:.0} | {:.1} |",
            v["decisions"],
            v["planned_rounds"],
            v["median_planned_round_ms"].as_f64().unwrap(),
            v["median_vms_per_round"].as_f64().unwrap(),
            v["p95_decision_ms"].as_f64().unwrap()
        );
    }
}
