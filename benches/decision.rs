//! vjobd's decision round at scale: 10,000 simulated nodes of 10 processors, each running a vjob
//! of 8 one-processor VMs (80,000 VMs), and one job arriving. The round as the daemon takes it
//! (its decision board kept across rounds, brought up to date with what changed, and a plan of
//! the nodes the decision touches), against the same decision on a board built afresh from the
//! records with every node and VM in the planner's instance (a full re-plan).
//!
//! `cargo bench --bench decision`; results in BENCHMARKS.md.

use vjob_daemon::bench::DecisionBench;

fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn quantile(v: &mut [f64], q: f64) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap());
    v[((v.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let t0 = std::time::Instant::now();
    let mut bench = DecisionBench::new(10_000, 10, 8);
    eprintln!("set up in {:.1} s", t0.elapsed().as_secs_f64());
    let rounds = 41;
    let (mut kept, mut fresh) = (Vec::new(), Vec::new());
    let mut actions = 0;
    for _ in 0..rounds {
        let r = bench.round();
        kept.push(ms(r.kept));
        fresh.push(ms(r.fresh));
        actions = r.actions;
    }
    println!("| round | runs | median ms | p95 ms | plan actions |");
    println!("|---|---|---|---|---|");
    println!(
        "| one arrival, kept board, touched nodes | {rounds} | {:.2} | {:.2} | {actions} |",
        quantile(&mut kept, 0.5),
        quantile(&mut kept, 0.95)
    );
    println!(
        "| one arrival, fresh board, whole cluster | {rounds} | {:.2} | {:.2} | |",
        quantile(&mut fresh, 0.5),
        quantile(&mut fresh, 0.95)
    );
}
