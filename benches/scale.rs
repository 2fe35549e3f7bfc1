//! Replays at scale: `vsim` on large traces made from the shared ones, against a plain
//! event-driven EASY replay written here as the reference (processors counted cluster-wide, no
//! nodes, no VMs, no actions: the least a replay can do), and the same replay keeping jobs on
//! nodes (each job cut as vsim cuts it into VMs, each piece on the node it fits tightest: what
//! placing on nodes costs by itself, still without VMs, boots, events or plans).
//!
//! The large traces are the shared SWF traces laid over themselves (`vsim --overlay K`: K copies,
//! copy i shifted by i/K of the span, on a cluster K times larger, so the recorded load per
//! processor stays): KTH-SP2 x10 on 1,024 one-core nodes (the first 122,000 jobs, the size of
//! the 1994 CM-5 production trace), and KTH-SP2 x82 on 1,024 nodes of 8 cores (the first 447,000
//! jobs, the size of the 2010 RICC trace's 8,192 cores). Loaded ones lay more copies on the same
//! 1,024 one-core nodes: x13, x14 and x15, where EASY's mean bounded slowdown is 12, 30 and 389
//! (the 1994 CM-5 trace's, which these stand for, was 299).
//!
//! `cargo bench --bench scale`; results in BENCHMARKS.md. Medians of 3 runs.

mod common;
use common::{median, vsim};

use std::path::{Path, PathBuf};
use std::time::Instant;

use vjob_simulator::swf::{self, TraceJob};

/// Where the plain replays keep jobs: processors counted cluster-wide, or nodes.
trait Room {
    /// What a job of `procs` processors takes, counted as EASY's reservations count.
    fn size(&self, procs: u32) -> u64;
    /// What is free in all.
    fn free(&self) -> u64;
    /// Starts job `j` of `procs` processors if it fits now; whether it did.
    fn take(&mut self, j: usize, procs: u32) -> bool;
    /// Job `j` of `procs` processors ends.
    fn release(&mut self, j: usize, procs: u32);
}

/// Processors counted cluster-wide: no nodes, no VMs.
struct Processors(u64);

impl Room for Processors {
    fn size(&self, procs: u32) -> u64 {
        procs as u64
    }
    fn free(&self) -> u64 {
        self.0
    }
    fn take(&mut self, _: usize, procs: u32) -> bool {
        let fits = procs as u64 <= self.0;
        if fits {
            self.0 -= procs as u64;
        }
        fits
    }
    fn release(&mut self, _: usize, procs: u32) {
        self.0 += procs as u64;
    }
}

/// Nodes of `cores` cores: a job is cut as vsim cuts it into VMs (as many cores each as a node
/// has, at most its processors) and each piece goes to the node it fits tightest (free-core
/// buckets). Still no VMs, boots, events or plans.
struct Nodes {
    cores: u32,
    /// Per free-core count, the nodes with that many free.
    by_free: Vec<std::collections::BTreeSet<u32>>,
    free_of: Vec<u32>,
    free: u64,
    /// The nodes each running job's pieces are on.
    hosts: Vec<Vec<u32>>,
}

impl Nodes {
    fn new(nodes: u32, cores: u32, jobs: usize) -> Nodes {
        let mut by_free = vec![std::collections::BTreeSet::new(); cores as usize + 1];
        by_free[cores as usize] = (0..nodes).collect();
        Nodes {
            cores,
            by_free,
            free_of: vec![cores; nodes as usize],
            free: nodes as u64 * cores as u64,
            hosts: vec![Vec::new(); jobs],
        }
    }
    fn shape(&self, procs: u32) -> (u32, u32) {
        let vcpus = procs.min(self.cores).max(1);
        (vcpus, procs.div_ceil(vcpus))
    }
    fn move_free(&mut self, n: u32, by: i64) {
        let f = self.free_of[n as usize];
        self.by_free[f as usize].remove(&n);
        let g = (f as i64 + by) as u32;
        self.by_free[g as usize].insert(n);
        self.free_of[n as usize] = g;
        self.free = (self.free as i64 + by) as u64;
    }
}

impl Room for Nodes {
    fn size(&self, procs: u32) -> u64 {
        let (vcpus, pieces) = self.shape(procs);
        vcpus as u64 * pieces as u64
    }
    fn free(&self) -> u64 {
        self.free
    }
    fn take(&mut self, j: usize, procs: u32) -> bool {
        let (vcpus, pieces) = self.shape(procs);
        if self.size(procs) > self.free {
            return false;
        }
        let mut hosts = Vec::with_capacity(pieces as usize);
        for _ in 0..pieces {
            let tightest = (vcpus as usize..=self.cores as usize).find_map(|f| self.by_free[f].first().copied());
            let Some(n) = tightest else {
                for &h in &hosts {
                    self.move_free(h, vcpus as i64);
                }
                return false;
            };
            self.move_free(n, -(vcpus as i64));
            hosts.push(n);
        }
        self.hosts[j] = hosts;
        true
    }
    fn release(&mut self, j: usize, procs: u32) {
        let (vcpus, _) = self.shape(procs);
        for h in std::mem::take(&mut self.hosts[j]) {
            self.move_free(h, vcpus as i64);
        }
    }
}

/// The plain replay: FCFS order, EASY backfilling on the users' estimates (the reservation
/// counted on sizes, fits checked by the room). Returns the mean wait, in seconds.
fn plain_easy(jobs: &[TraceJob], room: &mut impl Room, total: u64) -> f64 {
    use std::cmp::Reverse;
    use std::collections::{BinaryHeap, VecDeque};
    // (end, estimate end, job)
    let mut running: BinaryHeap<Reverse<(u64, u64, usize)>> = BinaryHeap::new();
    let mut queue: VecDeque<usize> = VecDeque::new();
    let mut wait_sum = 0u64;
    let mut next = 0usize;
    let est = |j: &TraceJob| j.requested_s.unwrap_or(u64::MAX / 4);
    while next < jobs.len() || !running.is_empty() {
        let t_arrive = jobs.get(next).map(|j| j.submit_s).unwrap_or(u64::MAX);
        let t_end = running.peek().map(|Reverse((e, _, _))| *e).unwrap_or(u64::MAX);
        let now = t_arrive.min(t_end);
        while running.peek().is_some_and(|Reverse((e, _, _))| *e == now) {
            let Reverse((_, _, j)) = running.pop().expect("peeked");
            room.release(j, jobs[j].procs);
        }
        while next < jobs.len() && jobs[next].submit_s == now {
            if room.size(jobs[next].procs) <= total {
                queue.push_back(next);
            }
            next += 1;
        }
        let mut start = |j: usize, running: &mut BinaryHeap<_>| {
            wait_sum += now - jobs[j].submit_s;
            running.push(Reverse((now + jobs[j].run_s, now.saturating_add(est(&jobs[j])), j)));
        };
        // Start the head while it fits; then reserve for it and backfill.
        while let Some(&h) = queue.front() {
            if !room.take(h, jobs[h].procs) {
                break;
            }
            start(h, &mut running);
            queue.pop_front();
        }
        let Some(&h) = queue.front() else { continue };
        let need = room.size(jobs[h].procs);
        let mut ends: Vec<(u64, u64)> = (running.iter())
            .map(|Reverse((_, e, j))| (*e, room.size(jobs[*j].procs)))
            .collect();
        ends.sort_unstable();
        let (mut avail, mut shadow) = (room.free(), u64::MAX);
        for (e, p) in ends {
            if avail >= need {
                break;
            }
            avail += p;
            shadow = e;
        }
        let mut extra = avail.saturating_sub(need);
        let mut i = 1;
        while i < queue.len() && room.free() > 0 {
            let j = queue[i];
            let p = room.size(jobs[j].procs);
            let in_time = now.saturating_add(est(&jobs[j])) <= shadow;
            if (in_time || p <= extra) && room.take(j, jobs[j].procs) {
                if !in_time {
                    extra -= p;
                }
                start(j, &mut running);
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
        .overlay(overlay, limit);
    let jobs: Vec<TraceJob> = parsed.jobs.into_iter().take(limit).collect();
    let procs = nodes as u64 * cores as u64;
    let timed = |replay: &mut dyn FnMut() -> f64| -> (f64, f64) {
        let mut wait = 0.0;
        let runs = (0..3)
            .map(|_| {
                let t0 = Instant::now();
                wait = replay();
                t0.elapsed().as_secs_f64()
            })
            .collect();
        (median(runs), wait)
    };
    let (plain, plain_wait) = timed(&mut || plain_easy(&jobs, &mut Processors(procs), procs));
    let (on_nodes, nodes_wait) = timed(&mut || plain_easy(&jobs, &mut Nodes::new(nodes, cores, jobs.len()), procs));
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
    cells.push(format!("{plain:.3} (wait {plain_wait:.0} s)"));
    cells.push(format!("{on_nodes:.3} (wait {nodes_wait:.0} s)"));
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
        let ratio = match policy {
            "easy" => format!("{:.1}x plain, {:.1}x plain on nodes", wall / plain, wall / on_nodes),
            _ => format!("{:.1}x easy", wall / easy_s),
        };
        cells.push(format!(
            "{wall:.2} ({ratio}; bsld {:.2}, util {:.3}, {} suspends, {} migrations)",
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
    println!("| trace | jobs | nodes x cores | plain EASY replay s | plain EASY replay on nodes s | vsim easy s | vsim vjob s |");
    println!("|---|---|---|---|---|---|---|");
    // The recorded load (x10), then more copies on the same nodes: loads 0.87, 0.94 and 0.97.
    for overlay in [10, 13, 14, 15] {
        row(&kth, overlay, 1024, 1, 122_000);
    }
    row(&kth, 82, 1024, 8, 447_000);
}
