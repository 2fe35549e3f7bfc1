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
    println!("| trace | cluster | policy | utilization | kWh, all on | kWh, managed without consolidation | kWh, managed | saved | bsld, all on | bsld, managed | bsld cost | migrations (all on / managed) | boots |");
    println!("|---|---|---|---|---|---|---|---|---|---|---|---|---|");
    for t in traces {
        let path = shared.join(t);
        if !path.exists() {
            eprintln!("skipped {t}: no data at {}", path.display());
            continue;
        }
        let p = path.to_str().unwrap();
        // As recorded, on 8-core nodes, and (KTH) on a larger cluster of 8-core nodes, whose
        // utilization is lower, with three nodes always on.
        let mut clusters: Vec<(&str, Vec<&str>, Vec<&str>)> = vec![
            ("as recorded", vec![], vec![]),
            ("8-core nodes", vec!["--cores", "8"], vec![]),
        ];
        if t.starts_with("KTH") {
            let larger = vec!["--cores", "8", "--nodes", "20"];
            clusters.push(("20 nodes x 8 cores, min_on 3", larger.clone(), vec!["--min-on", "3"]));
            clusters.push(("20 nodes x 8 cores, spare 1", larger, vec!["--spare", "1"]));
        }
        for (label, cluster, power) in &clusters {
            for policy in ["easy", "vjob"] {
                let mut base = vec!["--trace", p, "--policy", policy];
                base.extend(cluster);
                let on = vsim(&base);
                let mut managed_args = base.clone();
                managed_args.push("--power");
                managed_args.extend(power);
                let pm = vsim(&managed_args);
                managed_args.push("--no-consolidate");
                let plain = vsim(&managed_args);
                let f = |v: &Value, k: &str| v[k].as_f64().unwrap();
                let (e0, e1) = (f(&on, "energy_kwh"), f(&pm, "energy_kwh"));
                let (b0, b1) = (f(&on, "mean_bounded_slowdown"), f(&pm, "mean_bounded_slowdown"));
                println!(
                    "| {t} | {label} | {policy} | {:.3} | {e0:.0} | {:.0} | {e1:.0} | {:.1}% | {b0:.2} | {b1:.2} | {:+.1}% | {} / {} | {} |",
                    f(&on, "utilization"),
                    f(&plain, "energy_kwh"),
                    100.0 * (1.0 - e1 / e0),
                    100.0 * (b1 / b0 - 1.0),
                    on["migrations"],
                    pm["migrations"],
                    pm["node_boots"]
                );
            }
        }
    }
}
