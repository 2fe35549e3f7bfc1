//! Replays at scale: `vsim` on large traces made from the shared ones, against a plain
//! event-driven EASY replay written here as the reference (processors counted cluster-wide, no
//! nodes, no VMs, no actions: the least a replay can do).
//!
//! The large traces are the shared SWF traces laid over themselves (`vsim --overlay K`: K copies,
//! copy i shifted by i/K of the span, on a cluster K times larger, so the recorded load per
//! processor stays): KTH-SP2 x10 on 1,024 one-core nodes (the first 122,000 jobs, the size of
//! the 1994 CM-5 production trace), and KTH-SP2 x82 on 1,024 nodes of 8 cores (the first 447,000
//! jobs, the size of the 2010 RICC trace's 8,192 cores).
//!
//! `cargo bench --bench scale`; results in BENCHMARKS.md. Medians of 3 runs.

mod common;
use common::{median, vsim};

use std::path::{Path, PathBuf};
use std::time::Instant;

use vjob_simulator::swf::{self, TraceJob};

/// The plain replay: FCFS order, EASY backfilling on the users' estimates, processors only.
/// Returns the mean wait, in seconds.
fn plain_easy(jobs: &[TraceJob], procs: u64) -> f64 {
    use std::cmp::Reverse;
    use std::collections::{BinaryHeap, VecDeque};
    let mut running: BinaryHeap<Reverse<(u64, u64, u64)>> = BinaryHeap::new(); // (end, estimate end, procs)
    let mut queue: VecDeque<usize> = VecDeque::new();
    let mut free = procs;
    let mut wait_sum = 0u64;
    let mut next = 0usize;
    let est = |j: &TraceJob| j.requested_s.unwrap_or(u64::MAX / 4);
    while next < jobs.len() || !running.is_empty() {
        let t_arrive = jobs.get(next).map(|j| j.submit_s).unwrap_or(u64::MAX);
        let t_end = running.peek().map(|Reverse((e, _, _))| *e).unwrap_or(u64::MAX);
        let now = t_arrive.min(t_end);
        while running.peek().is_some_and(|Reverse((e, _, _))| *e == now) {
            let Reverse((_, _, p)) = running.pop().expect("peeked");
            free += p;
        }
        while next < jobs.len() && jobs[next].submit_s == now {
            if jobs[next].procs as u64 <= procs {
                queue.push_back(next);
            }
            next += 1;
        }
        // Start the head while it fits; then reserve for it and backfill.
        while let Some(&h) = queue.front() {
            let j = &jobs[h];
            if j.procs as u64 > free {
                break;
            }
            free -= j.procs as u64;
            wait_sum += now - j.submit_s;
            running.push(Reverse((now + j.run_s, now.saturating_add(est(j)), j.procs as u64)));
            queue.pop_front();
        }
        let Some(&h) = queue.front() else { continue };
        let mut ends: Vec<(u64, u64)> = running.iter().map(|Reverse((_, e, p))| (*e, *p)).collect();
        ends.sort_unstable();
        let (mut avail, mut shadow) = (free, u64::MAX);
        for (e, p) in ends {
            if avail >= jobs[h].procs as u64 {
                break;
            }
            avail += p;
            shadow = e;
        }
        let mut extra = avail.saturating_sub(jobs[h].procs as u64);
        let mut i = 1;
        while i < queue.len() && free > 0 {
            let j = &jobs[queue[i]];
            let p = j.procs as u64;
            let in_time = now.saturating_add(est(j)) <= shadow;
            if p <= free && (in_time || p <= extra) {
                free -= p;
                if !in_time {
                    extra -= p;
                }
                wait_sum += now - j.submit_s;
                running.push(Reverse((now + j.run_s, now.saturating_add(est(j)), p)));
                queue.remove(i);
            } else {
                i += 1;
            }
        }
    }
    wait_sum as f64 / jobs.len().max(1) as f64
}

/// One large replay: the plain EASY reference, then vsim with EASY and with the vjob policy.
fn row(trace: &Path, overlay: u32, nodes: u32, cores: u32, limit: usize) {
    let text = String::from_utf8_lossy(&vjob_instances::btrplace::read_maybe_gz(trace).unwrap()).into_owned();
    let parsed = swf::parse(&trace.display().to_string(), &text)
        .unwrap()
        .overlay(overlay);
    let jobs: Vec<TraceJob> = parsed.jobs.into_iter().take(limit).collect();
    let procs = nodes as u64 * cores as u64;
    let mut plain_wait = 0.0;
    let plain = median(
        (0..3)
            .map(|_| {
                let t0 = Instant::now();
                plain_wait = plain_easy(&jobs, procs);
                t0.elapsed().as_secs_f64()
            })
            .collect(),
    );
    let name = trace.file_name().unwrap().to_string_lossy().replace(".swf.gz", "");
    let (o, n, c, l) = (
        overlay.to_string(),
        nodes.to_string(),
        cores.to_string(),
        limit.to_string(),
    );
    let mut cells = vec![
        format!("{name} x{overlay}"),
        format!("{}", jobs.len()),
        format!("{nodes} x {cores}"),
    ];
    cells.push(format!("{plain:.2} (wait {plain_wait:.0} s)"));
    let mut easy_s = 0.0;
    for policy in ["easy", "vjob"] {
        let args = [
            "--trace",
            trace.to_str().unwrap(),
            "--overlay",
            &o,
            "--nodes",
            &n,
            "--cores",
            &c,
            "--limit",
            &l,
            "--policy",
            policy,
        ];
        let runs: Vec<serde_json::Value> = (0..3).map(|_| vsim(&args)).collect();
        let wall = median(runs.iter().map(|v| v["wall_s"].as_f64().unwrap()).collect());
        let v = &runs[0];
        if policy == "easy" {
            easy_s = wall;
        }
        let ratio = if policy == "easy" { wall / plain } else { wall / easy_s };
        cells.push(format!(
            "{wall:.2} ({ratio:.1}x {}; bsld {:.2}, util {:.3}, {} suspends, {} migrations)",
            if policy == "easy" { "plain" } else { "easy" },
            v["mean_bounded_slowdown"].as_f64().unwrap(),
            v["utilization"].as_f64().unwrap(),
            v["suspends"],
            v["migrations"]
        ));
    }
    println!("| {} |", cells.join(" | "));
}

fn main() {
    let kth: PathBuf = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/data/swf/KTH-SP2-1996-2.1-cln.swf.gz");
    if !kth.exists() {
        eprintln!("skipped: no trace at {}", kth.display());
        return;
    }
    println!("| trace | jobs | nodes x cores | plain EASY replay s | vsim easy s | vsim vjob s |");
    println!("|---|---|---|---|---|---|");
    row(&kth, 10, 1024, 1, 122_000);
    row(&kth, 82, 1024, 8, 447_000);
}
