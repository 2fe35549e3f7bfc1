//! What the benchmarks share: running `vsim` for its JSON, and medians.

#![allow(dead_code)]

use std::process::Command;

/// `vsim ARGS --json`, its one JSON object; panics with vsim's error if it fails.
pub fn vsim(args: &[&str]) -> serde_json::Value {
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

/// The median of some measures (the upper one of an even count).
pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[v.len() / 2]
}
