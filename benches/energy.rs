//! Energy with and without power management: `vsim --power` against the same policy with every
//! node on, for EASY and vjob, on the shared traces as recorded and on 8-core nodes. Runs are
//! deterministic (one run each).
//!
//! `cargo bench --bench energy`; results in BENCHMARKS.md.

mod common;
use common::vsim;

use std::path::Path;

use serde_json::Value;

fn main() {
    let shared = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/swf");
    let traces = ["KTH-SP2-1996-2.1-cln.swf.gz", "lublin_256.swf.gz"];
    println!("| trace | nodes | policy | utilization | kWh, all on | kWh, power managed | saved | bsld, all on | bsld, managed | bsld cost | boots |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for t in traces {
        let path = shared.join(t);
        if !path.exists() {
            eprintln!("skipped {t}: no data at {}", path.display());
            continue;
        }
        let p = path.to_str().unwrap();
        for cores in [None, Some("8")] {
            for policy in ["easy", "vjob"] {
                let mut base = vec!["--trace", p, "--policy", policy];
                if let Some(c) = cores {
                    base.extend(["--cores", c]);
                }
                let on = vsim(&base);
                let mut managed_args = base.clone();
                managed_args.push("--power");
                let pm = vsim(&managed_args);
                let f = |v: &Value, k: &str| v[k].as_f64().unwrap();
                let (e0, e1) = (f(&on, "energy_kwh"), f(&pm, "energy_kwh"));
                let (b0, b1) = (f(&on, "mean_bounded_slowdown"), f(&pm, "mean_bounded_slowdown"));
                println!(
                    "| {t} | {} | {policy} | {:.3} | {e0:.0} | {e1:.0} | {:.1}% | {b0:.2} | {b1:.2} | {:+.1}% | {} |",
                    cores.map_or("as recorded".to_string(), |c| format!("{c}-core nodes")),
                    f(&on, "utilization"),
                    100.0 * (1.0 - e1 / e0),
                    100.0 * (b1 / b0 - 1.0),
                    pm["node_boots"]
                );
            }
        }
    }
}
