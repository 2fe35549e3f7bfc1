//! Chaos runs on the simulated backend, at random from a seed: vjobs preempting one another while
//! vjobd is killed -9 and restarted, nodes are cut off for a while (fenced by vjobd past the node
//! timeout, and switched on again by hand), slowed down, or lost for good (switched off: their VMs
//! die), the image storage is full or read-only for a while, and administrators drain nodes,
//! migrate, suspend, hold and cancel vjobs. Throughout, a sampler reads the simulated cluster's own state: no VM may run on
//! two nodes at once, and the backend must never have refused a request for lack of room (it
//! refuses to overcommit, so a capacity the scheduler got wrong shows there). Once the faults stop
//! and the administrators' actions are undone: every acknowledged vjob completed with exit code 0
//! (or was cancelled, when it was the one cancelled), and no VM or image is left.
//!
//! `VJOB_CHAOS_SEEDS=1,2,3` (the default) and `VJOB_CHAOS_FAULTS=8` (faults per seed), or a soak:
//! `VJOB_CHAOS_MINUTES=30` runs seed after seed (`VJOB_CHAOS_SEEDS` gives the first) for that
//! long. A failure names its seed and the faults it made, in order, and the shortest prefix of
//! them that still fails (replayed one prefix at a time, longest first dropped).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{check_state_history, job, nodes, sim_running, sim_state, Cluster, FAST_HYPERVISOR};
use serde_json::Value;
use vjob_hypervisor::sim::SimCluster;
use vjob_instances::gen::Rng;

const NODES: [&str; 4] = ["n1", "n2", "n3", "n4"];
const VJOBS: usize = 20;

fn env_list(name: &str, default: &str) -> Vec<u64> {
    std::env::var(name)
        .unwrap_or_else(|_| default.into())
        .split(',')
        .map(|s| s.trim().parse().expect("a number"))
        .collect()
}

/// A vjob's state, or `None` while vjobd does not answer.
fn state(c: &Cluster, id: u64) -> Option<String> {
    let o = c.run("vstat", &["--json", &id.to_string()]);
    let v: Value = serde_json::from_slice(&o.stdout).ok()?;
    v[0]["state"].as_str().map(String::from)
}

/// Whether a command's failure says vjobd did not answer (down, restarting), rather than that
/// it refused.
fn unanswered(o: &std::process::Output) -> bool {
    let err = String::from_utf8_lossy(&o.stderr);
    [
        "cannot reach vjobd",
        "without answering",
        "connection to vjobd broke",
        "stopping",
    ]
    .iter()
    .any(|m| err.contains(m))
}

/// What the sampler saw of the simulated cluster.
#[derive(Default)]
struct Seen {
    samples: u64,
    /// A VM executing on two nodes at once, as first seen.
    twice: Vec<String>,
    /// Requests the backend refused for lack of room, as it worded them.
    refused: u64,
    refusals: Vec<String>,
}

/// Reads the simulated cluster's state file every 50 ms until `stop`.
fn sample(sim_dir: PathBuf, stop: Arc<AtomicBool>, seen: Arc<Mutex<Seen>>) {
    while !stop.load(Ordering::Relaxed) {
        if let Some(v) = sim_state(&sim_dir) {
            let running = sim_running(&v);
            let mut s = seen.lock().unwrap();
            s.samples += 1;
            for (name, on) in running.iter().filter(|(_, on)| on.len() > 1) {
                if s.twice.len() < 10 {
                    s.twice.push(format!("{name} running on {on:?}"));
                }
            }
            s.refused = v["refused"].as_u64().unwrap_or(0);
            s.refusals = (v["refusals"].as_array().into_iter().flatten())
                .filter_map(|r| r.as_str().map(String::from))
                .collect();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A fault or an administrator's action, drawn from the seed.
#[derive(Debug, Clone)]
enum Fault {
    Kill9 {
        restart_after_ms: u64,
    },
    CutOff {
        node: usize,
        ms: u64,
    },
    Slow {
        node: usize,
        factor: u64,
        ms: u64,
    },
    Lose {
        node: usize,
    },
    Drain {
        node: usize,
    },
    Migrate {
        job: usize,
        to: usize,
    },
    Suspend {
        job: usize,
    },
    Hold {
        job: usize,
    },
    Cancel {
        job: usize,
    },
    /// The image storage full (or read-only) for `ms`.
    Storage {
        read_only: bool,
        ms: u64,
    },
}

/// The faults of seed `seed`: [`draw`]'s, with storage faults among them when `storage` (drawn
/// from a stream of their own, so that a seed's other faults stay what they were before storage
/// faults existed).
fn faults_of(seed: u64, count: u64, storage: bool) -> Vec<(u64, Fault)> {
    let faults = draw(&mut Rng::new(seed ^ 0x5eed), count);
    if !storage {
        return faults;
    }
    let mut rng = Rng::new(seed ^ 0xd15c);
    let mut out = Vec::new();
    for f in faults {
        if rng.below(6) == 0 {
            let read_only = rng.below(2) == 0;
            out.push((
                300 + rng.below(1000),
                Fault::Storage {
                    read_only,
                    ms: 1000 + rng.below(4000),
                },
            ));
        }
        out.push(f);
    }
    out
}

/// The faults of one run: `count` of them, each after a pause (ms); at most one node lost.
fn draw(rng: &mut Rng, count: u64) -> Vec<(u64, Fault)> {
    let mut lost = None;
    let mut out = Vec::new();
    for _ in 0..count {
        let pause = 300 + rng.below(1700);
        let node = loop {
            let n = rng.below(NODES.len() as u64) as usize;
            if Some(n) != lost {
                break n;
            }
        };
        let job = rng.below(VJOBS as u64) as usize;
        let f = match rng.below(20) {
            0..=5 => Fault::Kill9 {
                restart_after_ms: rng.below(1000),
            },
            6..=10 => Fault::CutOff {
                node,
                ms: 500 + rng.below(5000),
            },
            11..=12 => Fault::Slow {
                node,
                factor: 3 + rng.below(8),
                ms: 1000 + rng.below(4000),
            },
            13 if lost.is_none() => {
                lost = Some(node);
                Fault::Lose { node }
            }
            13 | 14 => Fault::Drain { node },
            15 => Fault::Migrate {
                job,
                to: rng.below(NODES.len() as u64) as usize,
            },
            16 => Fault::Suspend { job },
            17 => Fault::Hold { job },
            _ => Fault::Cancel { job },
        };
        out.push((pause, f));
    }
    out
}

/// What the administrators' actions left to undo or to expect.
#[derive(Default)]
struct Admin {
    drained: Vec<usize>,
    suspended: Vec<u64>,
    held: Vec<u64>,
    /// Vjobs a `vdel` was sent for: they end cancelled, or completed if it came too late.
    cancelled: Vec<u64>,
    lost: Option<usize>,
}

/// One run: the vjobs, the faults, then the checks. Panics with the report on a violation.
fn run(seed: u64, faults: &[(u64, Fault)]) {
    let list: Vec<(&str, u32, &str)> = NODES.iter().map(|&n| (n, 4, "8GiB")).collect();
    let c = Cluster::new(
        &format!("chaos-{seed}-{}", faults.len()),
        &format!(
            "admins = [\"root\"]\n{FAST_HYPERVISOR}\n{}\n[scheduler]\nnode_timeout = \"3s\"\nquantum = \"2s\"\n\n\
             [power]\nboot_time = \"300ms\"\nidle_time = \"1h\"\nconsolidate = false\n\n\
             [[queue]]\nname = \"batch\"\npriority = 10\ndefault = true\n\n[[queue]]\nname = \"express\"\npriority = 100\n",
            nodes(&list)
        ),
    );
    let sim_dir = c.dir.join("state").join("sim");
    let stop = Arc::new(AtomicBool::new(false));
    let seen = Arc::new(Mutex::new(Seen::default()));
    let sampler = {
        let (dir, stop, seen) = (sim_dir.clone(), stop.clone(), seen.clone());
        std::thread::spawn(move || sample(dir, stop, seen))
    };
    let mut rng = Rng::new(seed);
    let ids = submit_all(&c, &mut rng);
    let mut admin = Admin::default();
    for (pause, f) in faults {
        std::thread::sleep(Duration::from_millis(*pause));
        make(&c, &sim_dir, &ids, f, &mut admin);
        repair_fenced(&c, &admin);
    }
    let report = || format!("seed {seed}, faults: {faults:?}");
    undo(&c, &admin, &report());
    c.wait(
        Duration::from_secs(180),
        &format!("every vjob ended ({})", report()),
        || {
            ids.iter()
                .all(|&id| matches!(state(&c, id).as_deref(), Some("completed" | "cancelled" | "failed")))
        },
    );
    for &id in &ids {
        let j = c.job(id);
        if admin.cancelled.contains(&id) && j["state"] == "cancelled" {
            continue;
        }
        assert_eq!(j["state"], "completed", "{}: {j}", report());
        assert_eq!(j["exit_code"], 0, "{}: {j}", report());
    }
    // Every state change each job went through, across the restarts, is a legal transition.
    for &id in &ids {
        let out = c.ok("vstat", &["-f", "--json", &id.to_string()]);
        let j = &serde_json::from_str::<Value>(&out).unwrap()[0];
        if let Err(e) = check_state_history(j) {
            panic!("{e} ({})", report());
        }
    }
    // What the backend itself holds (a node lost for good included: its VMs died with it), and
    // the images.
    let left = || {
        let vms = sim_state(&sim_dir).map_or(usize::MAX, |v| v["vms"].as_object().map_or(0, |m| m.len()));
        let images = std::fs::read_dir(c.dir.join("state").join("images")).map_or(0, |d| d.count());
        (vms, images)
    };
    let t = Instant::now();
    while left() != (0, 0) {
        assert!(
            t.elapsed() < Duration::from_secs(30),
            "left behind after 30 s ({}): (VMs, images) {:?}\n{}",
            report(),
            left(),
            c.ok("vstat", &["-n"]),
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    let s = seen.lock().unwrap();
    assert!(s.samples > 0, "the sampler read the cluster's state ({})", report());
    assert!(s.twice.is_empty(), "a VM ran twice: {:?} ({})", s.twice, report());
    assert_eq!(s.refused, 0, "the backend refused: {:?} ({})", s.refusals, report());
}

fn submit_all(c: &Cluster, rng: &mut Rng) -> Vec<u64> {
    (0..VJOBS)
        .map(|k| {
            let queue = if rng.below(4) == 0 { "express" } else { "batch" };
            let vms = 1 + rng.below(3) as u32;
            let vcpus = 1 + rng.below(2) as u32;
            let runtime = format!("{}s", 2 + rng.below(5));
            let spec = c.spec(
                &format!("j{k}.toml"),
                &job(&format!("j{k}"), queue, vms, vcpus, "1GiB", &runtime),
            );
            c.submit(&spec, &[])
        })
        .collect()
}

/// Makes one fault or action happen, noting what must be undone or expected.
fn make(c: &Cluster, sim_dir: &Path, ids: &[u64], f: &Fault, admin: &mut Admin) {
    let marker = |n: usize, ext: &str| sim_dir.join(format!("{}.{ext}", NODES[n]));
    let vq = |args: &[&str]| c.run("vqmgr", args);
    match *f {
        Fault::Kill9 { restart_after_ms } => {
            c.kill9();
            std::thread::sleep(Duration::from_millis(restart_after_ms));
            c.start();
        }
        Fault::CutOff { node, ms } => {
            std::fs::write(marker(node, "down"), "").unwrap();
            std::thread::sleep(Duration::from_millis(ms));
            std::fs::remove_file(marker(node, "down")).unwrap();
        }
        Fault::Storage { read_only, ms } => {
            let marker = sim_dir.join("images.fault");
            std::fs::write(&marker, if read_only { "read-only" } else { "full" }).unwrap();
            std::thread::sleep(Duration::from_millis(ms));
            std::fs::remove_file(&marker).unwrap();
        }
        Fault::Slow { node, factor, ms } => {
            std::fs::write(marker(node, "slow"), factor.to_string()).unwrap();
            std::thread::sleep(Duration::from_millis(ms));
            std::fs::remove_file(marker(node, "slow")).unwrap();
        }
        Fault::Lose { node } => {
            let sim = SimCluster::open(sim_dir, &[], Default::default()).unwrap();
            sim.switch(NODES[node], false).unwrap();
            admin.lost = Some(node);
            admin.drained.retain(|&n| n != node);
        }
        Fault::Drain { node } => {
            // One node drained at a time: a second drain undoes the first.
            if let Some(&was) = admin.drained.first() {
                if vq(&["node", "online", NODES[was]]).status.success() {
                    admin.drained.clear();
                }
            } else if vq(&["node", "drain", NODES[node]]).status.success() {
                admin.drained.push(node);
            }
        }
        Fault::Migrate { job, to } => {
            let _ = vq(&["job", "migrate", &ids[job].to_string(), "--vm", "0", "--to", NODES[to]]);
        }
        Fault::Suspend { job } => {
            if vq(&["job", "suspend", &ids[job].to_string()]).status.success() {
                admin.suspended.push(ids[job]);
            }
        }
        Fault::Hold { job } => {
            if vq(&["job", "hold", &ids[job].to_string()]).status.success() {
                admin.held.push(ids[job]);
            }
        }
        Fault::Cancel { job } => {
            let o = c.run("vdel", &[&ids[job].to_string()]);
            if o.status.success() || unanswered(&o) {
                admin.cancelled.push(ids[job]);
            }
        }
    }
}

/// The nodes vjobd fenced (switched off when they stopped answering), the node lost for good
/// aside, switched on again by hand as an administrator does once they are repaired. Returns
/// whether vjobd answered and showed every node but the lost one on and answering.
fn repair_fenced(c: &Cluster, admin: &Admin) -> bool {
    let o = c.run("vstat", &["-n", "--json"]);
    let Ok(nodes) = serde_json::from_slice::<Value>(&o.stdout) else {
        return false;
    };
    let mut all_up = true;
    for n in (nodes.as_array().into_iter().flatten()).filter(|n| admin.lost.is_none_or(|l| NODES[l] != n["name"])) {
        if n["power"] == "fenced" {
            let _ = c.run("vqmgr", &["node", "power", "on", n["name"].as_str().unwrap_or("?")]);
        }
        all_up &= n["power"] == "on" && n["up"] == true;
    }
    all_up
}

/// Undoes the administrators' actions (retrying while vjobd is not answering): fenced nodes
/// switched on, drained nodes online, vjobs suspended by hand resumed, held ones released.
fn undo(c: &Cluster, admin: &Admin, report: &str) {
    c.wait(Duration::from_secs(60), &format!("every node back ({report})"), || {
        repair_fenced(c, admin)
    });
    let mut todo: Vec<Vec<String>> = Vec::new();
    for &n in admin.drained.iter().filter(|&&n| Some(n) != admin.lost) {
        todo.push(vec!["node".into(), "online".into(), NODES[n].into()]);
    }
    for id in &admin.suspended {
        todo.push(vec!["job".into(), "resume".into(), id.to_string()]);
    }
    for id in &admin.held {
        todo.push(vec!["job".into(), "release".into(), id.to_string()]);
    }
    for args in todo {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        // Done once vjobd answers: yes, or no (a vjob that ended meanwhile, say).
        c.wait(
            Duration::from_secs(60),
            &format!("vqmgr {args:?} answered ({report})"),
            || !unanswered(&c.run("vqmgr", &args)),
        );
    }
}

/// The shortest prefix of `faults` that still fails, replayed one length at a time from the
/// shortest: the fault sequence to turn into a regression test.
fn shrink(seed: u64, faults: &[(u64, Fault)]) -> usize {
    (1..faults.len())
        .find(|&k| std::panic::catch_unwind(|| run(seed, &faults[..k])).is_err())
        .unwrap_or(faults.len())
}

/// Runs one seed; on failure, shrinks it and panics with both reports.
fn seed_run(seed: u64, count: u64, storage: bool) -> Vec<(u64, Fault)> {
    let faults = faults_of(seed, count, storage);
    if std::panic::catch_unwind(|| run(seed, &faults)).is_err() {
        let k = if std::env::var_os("VJOB_CHAOS_NO_SHRINK").is_some() {
            faults.len()
        } else {
            shrink(seed, &faults)
        };
        panic!("seed {seed} failed; its shortest failing prefix: {:?}", &faults[..k]);
    }
    faults
}

/// A line of the summary: faults by kind.
fn tally(runs: &[Vec<(u64, Fault)>]) -> String {
    let mut by: BTreeMap<&str, usize> = BTreeMap::new();
    for (_, f) in runs.iter().flatten() {
        let kind = match f {
            Fault::Kill9 { .. } => "kill -9",
            Fault::CutOff { .. } => "node cut off",
            Fault::Slow { .. } => "node slowed",
            Fault::Lose { .. } => "node lost for good",
            Fault::Drain { .. } => "drain or online",
            Fault::Migrate { .. } => "migration by hand",
            Fault::Suspend { .. } => "suspension by hand",
            Fault::Hold { .. } => "hold",
            Fault::Cancel { .. } => "cancel",
            Fault::Storage { read_only: false, .. } => "image storage full",
            Fault::Storage { read_only: true, .. } => "image storage read-only",
        };
        *by.entry(kind).or_default() += 1;
    }
    let total: usize = by.values().sum();
    format!("{} runs, {total} faults and actions: {by:?}", runs.len())
}

/// The chaos runs take the machine: one test at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

#[test]
fn vjobs_complete_through_kills_lost_slow_and_cut_off_nodes_and_admin_actions_and_leave_nothing() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let seeds = env_list("VJOB_CHAOS_SEEDS", "1,2,3");
    let count = env_list("VJOB_CHAOS_FAULTS", "8")[0];
    let minutes = env_list("VJOB_CHAOS_MINUTES", "0")[0];
    let t0 = Instant::now();
    let mut done = Vec::new();
    let mut next = seeds.clone();
    loop {
        // Three seeds at a time side by side, each on its own cluster (more starve two cores).
        let chunk: Vec<u64> = next.drain(..next.len().min(3)).collect();
        let runs: Vec<_> = chunk
            .iter()
            .map(|&seed| (seed, std::thread::spawn(move || seed_run(seed, count, true))))
            .collect();
        let mut failed = Vec::new();
        for (seed, r) in runs {
            match r.join() {
                Ok(faults) => done.push(faults),
                Err(_) => failed.push(seed),
            }
        }
        assert!(failed.is_empty(), "seeds {failed:?} failed (their panics above)");
        if minutes > 0 && t0.elapsed() < Duration::from_secs(60 * minutes) {
            let last = chunk.iter().max().copied().unwrap_or(0);
            next = (last + 1..last + 4).collect();
        } else if next.is_empty() {
            break;
        }
    }
    eprintln!(
        "chaos: {} in {:.0} s; every vjob ended as expected, no VM ran twice, no refusal, nothing left",
        tally(&done),
        t0.elapsed().as_secs_f64()
    );
}

/// Seeds 11 and 12 with 12 faults each ran a VM twice: a node cut off past the node timeout
/// kept running its VMs while vjobd started them over elsewhere. Nodes are now fenced first.
#[test]
fn regression_a_node_cut_off_past_the_timeout_ran_its_vms_twice() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let runs: Vec<_> = [11, 12]
        .map(|seed| std::thread::spawn(move || seed_run(seed, 12, false)))
        .into_iter()
        .map(|r| r.join().expect("the seed passes (its panic above)"))
        .collect();
    assert!(tally(&runs).contains("node cut off"), "{}", tally(&runs));
}

/// Seed 821 with 12 faults failed a vjob (in 5 of 6 runs): the node lost for good was switched on
/// again and listed no VM before vjobd had taken its VMs for lost, and a VM missing from a node
/// that answers counted as vanished. vjobd now reads each node's boot id: a node that rebooted
/// lost its VMs, and their vjobs start over.
#[test]
fn regression_a_vjob_on_a_node_that_rebooted_started_over_rather_than_failed() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let made = tally(&[seed_run(821, 12, true)]);
    assert!(made.contains("node lost for good"), "{made}");
}
