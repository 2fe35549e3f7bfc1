//! Planning with constraints that come from btrpsl scripts: each BtrPlace TDSC instance of the
//! shared reference data with side constraints (spread, among), and generated instances of
//! 10,000 nodes / 80,000 VMs, solved three ways with `vplan solve`: as given (the constraints
//! in the instance's JSON), bare (those constraints removed), and bare plus the same constraints
//! written as a btrpsl script (`--script`). The script names every constrained VM `bench.VM<id>`
//! and every node `@N<id>` through the instance's `ns` views.
//!
//! `cargo bench --bench placement`; results in BENCHMARKS.md. Medians of 3 runs.

mod common;
use common::median;

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{json, Value};

fn vplan(args: &[&str]) -> Value {
    let o = Command::new(env!("CARGO_BIN_EXE_vplan")).args(args).output().unwrap();
    assert!(
        o.status.success(),
        "vplan {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Median solve and read times of 3 runs, and the last run's summary.
fn solve(args: &[&str]) -> (f64, f64, Value) {
    let runs: Vec<Value> = (0..3).map(|_| vplan(args)).collect();
    let solve = median(runs.iter().map(|r| r["solve_s"].as_f64().unwrap()).collect());
    let read = median(runs.iter().map(|r| r["read_s"].as_f64().unwrap()).collect());
    (solve, read, runs.into_iter().last().unwrap())
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_i64).collect())
        .unwrap_or_default()
}

/// The instance without its spread and among constraints, named for scripts, and the script
/// that states them again.
fn split(instance: &Value) -> (Value, String, usize) {
    let mut bare = instance.clone();
    let constraints = bare["constraints"].as_array().cloned().unwrap_or_default();
    let (side, kept): (Vec<Value>, Vec<Value>) = constraints
        .into_iter()
        .partition(|c| c["id"] == "spread" || c["id"] == "among");
    bare["constraints"] = Value::Array(kept);
    let mut vms: Vec<i64> = side.iter().flat_map(|c| ids(&c["vms"])).collect();
    vms.sort_unstable();
    vms.dedup();
    let mut script = String::from("namespace bench;\n");
    if !vms.is_empty() {
        let list: Vec<String> = vms.iter().map(i64::to_string).collect();
        let _ = writeln!(script, "VM[{}] : vm;", list.join(","));
    }
    let set = |v: &Value| -> String {
        let names: Vec<String> = ids(v).iter().map(|i| format!("VM{i}")).collect();
        format!("{{{}}}", names.join(", "))
    };
    // Node groups are few and shared (zones): each one a variable, written once, as an
    // administrator would.
    let mut groups: Vec<Value> = Vec::new();
    for c in &side {
        let discrete = if c["continuous"] == true { "" } else { ">>" };
        if c["id"] == "spread" {
            let _ = writeln!(script, "{discrete}spread({});", set(&c["vms"]));
            continue;
        }
        let g = match groups.iter().position(|g| *g == c["parts"]) {
            Some(g) => g,
            None => {
                let parts: Vec<String> = c["parts"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|p| {
                        let nodes: Vec<String> = ids(p).iter().map(|n| format!("@N{n}")).collect();
                        format!("{{{}}}", nodes.join(", "))
                    })
                    .collect();
                let _ = writeln!(script, "$zones{} = {{{}}};", groups.len(), parts.join(", "));
                groups.push(c["parts"].clone());
                groups.len() - 1
            }
        };
        let _ = writeln!(script, "{discrete}among({}, $zones{g});", set(&c["vms"]));
    }
    // Names for the script: the instance's own `ns` views are replaced.
    let model = &mut bare["model"];
    let mut node_ids: Vec<i64> = model["mapping"]["onlineNodes"]
        .as_object()
        .unwrap()
        .keys()
        .filter_map(|k| k.parse().ok())
        .collect();
    node_ids.extend(ids(&model["mapping"]["offlineNodes"]));
    let vm_map: serde_json::Map<String, Value> = vms.iter().map(|v| (format!("bench.VM{v}"), json!(v))).collect();
    let node_map: serde_json::Map<String, Value> = node_ids.iter().map(|n| (format!("@N{n}"), json!(n))).collect();
    let views = model["views"].as_array_mut().unwrap();
    views.retain(|v| v["id"] != "ns");
    views.push(json!({"id": "ns", "type": "vm", "map": vm_map}));
    views.push(json!({"id": "ns", "type": "node", "map": node_map}));
    (bare, script, side.len())
}

fn row(name: &str, file: &Path, dir: &Path) {
    let bytes = vjob_instances::btrplace::read_maybe_gz(file).unwrap();
    let instance: Value = serde_json::from_slice(&bytes).unwrap();
    let (bare, script, n) = split(&instance);
    if n == 0 {
        return;
    }
    let bare_file = dir.join("bare.json");
    std::fs::write(&bare_file, serde_json::to_vec(&bare).unwrap()).unwrap();
    let script_file = dir.join("bench.btrp");
    std::fs::write(&script_file, &script).unwrap();
    let f = file.to_str().unwrap();
    let b = bare_file.to_str().unwrap();
    let s = script_file.to_str().unwrap();
    let (given, _, g) = solve(&["solve", f, "--json"]);
    let (none, read_bare, _) = solve(&["solve", b, "--json"]);
    let (scripted, read_scripted, sv) = solve(&["solve", b, "--script", s, "--json"]);
    let checked = vplan(&["solve", b, "--script", s, "--json", "--check"])["valid"] == true;
    println!(
        "| {name} | {n} | {:.0} KiB | {given:.3} | {none:.3} | {scripted:.3} | {:.2}x | {:.2}x | {:.3} | {} / {} | {} |",
        script.len() as f64 / 1024.0,
        scripted / given,
        scripted / none,
        read_scripted - read_bare,
        g["actions"],
        sv["actions"],
        if checked { "yes" } else { "NO" }
    );
}

fn main() {
    println!("| instance | side constraints | script | solve s, in the JSON | solve s, none | solve s, from the script | script / JSON | script / none | script evaluation s | actions JSON / script | checked |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let dir = std::env::temp_dir().join(format!("vjob-placement-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/btrplace");
    match std::fs::read_dir(&shared) {
        Ok(entries) => {
            let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok()).map(|e| e.path()).collect();
            files.sort();
            for f in files.iter().filter(|f| f.to_string_lossy().ends_with(".json.gz")) {
                row(f.file_name().unwrap().to_str().unwrap(), f, &dir);
            }
        }
        Err(_) => eprintln!("skipped the shared BtrPlace instances: no data at {}", shared.display()),
    }
    for scenario in ["li", "nr"] {
        let file = dir.join(format!("gen-{scenario}.json"));
        let ok = Command::new(env!("CARGO_BIN_EXE_vplan"))
            .args(["gen", "--nodes", "10000", "--vms", "80000", "--scenario", scenario])
            .args(["--constrained", "50", "--out", file.to_str().unwrap()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "vplan gen failed");
        row(&format!("gen-{scenario}-10000-80000-c50"), &file, &dir);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
