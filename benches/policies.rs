//! Scheduling policies side by side: `vsim` on every SWF trace of the shared reference data (the
//! whole trace, and its first 1,024 jobs as in the published anchors; then on 8-core nodes, as
//! recorded and overlaid), and the synthetic 10,000-node scenario's decision times. `cargo bench --bench policies`; results in BENCHMARKS.md.

mod common;
use common::vsim;

use std::path::{Path, PathBuf};

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
    multi_core(&traces);
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

/// The shared traces on nodes of 8 cores (`--cores 8`), and overlaid to load 8-core clusters
/// (`--overlay K`: K copies of the trace, shifted), with EASY, the vjob policy without moving
/// running VMs (`--no-defragment`), and the vjob policy.
fn multi_core(traces: &[PathBuf]) {
    println!("| run | policy | mean bounded slowdown | utilization | suspends | migrations | data moved | switching s | p99 decision ms | simulated in s |");
    println!("|---|---|---|---|---|---|---|---|---|---|");
    let mut runs: Vec<(String, Vec<String>)> = Vec::new();
    for t in traces {
        let name = t.file_name().unwrap().to_string_lossy().replace(".swf.gz", "");
        let path = t.to_string_lossy().to_string();
        runs.push((
            format!("{name} --cores 8"),
            vec!["--trace".into(), path.clone(), "--cores".into(), "8".into()],
        ));
        let overlay: &[&str] = if name.starts_with("KTH") {
            &["--overlay", "10", "--nodes", "125", "--cores", "8"]
        } else {
            &["--overlay", "4", "--nodes", "128", "--cores", "8"]
        };
        let mut args = vec!["--trace".to_string(), path];
        args.extend(overlay.iter().map(|a| a.to_string()));
        runs.push((format!("{name} {}", overlay.join(" ")), args));
    }
    for (label, args) in &runs {
        for (policy, extra) in [("easy", None), ("vjob", Some("--no-defragment")), ("vjob", None)] {
            let mut a: Vec<&str> = args.iter().map(String::as_str).collect();
            a.extend(["--policy", policy]);
            a.extend(extra);
            let v = vsim(&a);
            println!(
                "| {label} | {policy}{} | {:.2} | {:.3} | {} | {} | {} | {:.0} | {:.2} | {:.1} |",
                extra.map(|e| format!(" {e}")).unwrap_or_default(),
                v["mean_bounded_slowdown"].as_f64().unwrap(),
                v["utilization"].as_f64().unwrap(),
                v["suspends"],
                v["migrations"],
                vjob_api::display::size(v["bytes_moved"].as_u64().unwrap()),
                v["switch_s"].as_f64().unwrap(),
                v["p99_decision_ms"].as_f64().unwrap(),
                v["wall_s"].as_f64().unwrap()
            );
        }
    }
}
