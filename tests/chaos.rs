//! Chaos runs on the simulated backend: vjobs preempting one another while vjobd is killed -9
//! and restarted and nodes go down and come back, at random from a seed. Once the faults stop,
//! every acknowledged vjob completes with exit code 0 and no VM or image is left.
//!
//! `VJOB_CHAOS_SEEDS=1,2,3` (the default) and `VJOB_CHAOS_FAULTS=8` (faults per seed); a longer
//! soak by hand: `VJOB_CHAOS_SEEDS=$(seq -s, 1 10) VJOB_CHAOS_FAULTS=24 cargo test --test chaos`.
//! A failure names its seed and the faults it made, in order.

mod common;

use std::time::Duration;

use common::{job, nodes, Cluster, FAST_HYPERVISOR};
use serde_json::Value;
use vjob_instances::gen::Rng;

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

/// One seed's run; the faults made, in order, for the report.
fn run(seed: u64, faults: u64) -> Vec<String> {
    let names = ["n1", "n2", "n3", "n4"];
    let list: Vec<(&str, u32, &str)> = names.iter().map(|&n| (n, 4, "8GiB")).collect();
    let c = Cluster::new(
        &format!("chaos-{seed}"),
        &format!(
            "admins = [\"root\"]\n{FAST_HYPERVISOR}\n{}\n[scheduler]\nnode_timeout = \"3s\"\nquantum = \"2s\"\n\n\
             [[queue]]\nname = \"batch\"\npriority = 10\ndefault = true\n\n[[queue]]\nname = \"express\"\npriority = 100\n",
            nodes(&list)
        ),
    );
    let mut rng = Rng::new(seed);
    let mut ids = Vec::new();
    for k in 0..20 {
        let queue = if rng.below(4) == 0 { "express" } else { "batch" };
        let vms = 1 + rng.below(3) as u32;
        let vcpus = 1 + rng.below(2) as u32;
        let runtime = format!("{}s", 2 + rng.below(5));
        let spec = c.spec(
            &format!("j{k}.toml"),
            &job(&format!("j{k}"), queue, vms, vcpus, "1GiB", &runtime),
        );
        ids.push(c.submit(&spec, &[]));
    }
    let marker = |n: &str| c.dir.join("state").join("sim").join(format!("{n}.down"));
    let mut made = Vec::new();
    for _ in 0..faults {
        std::thread::sleep(Duration::from_millis(300 + rng.below(1700)));
        if rng.below(2) == 0 {
            made.push("kill -9 of vjobd".to_string());
            c.kill9();
            std::thread::sleep(Duration::from_millis(rng.below(1000)));
            c.start();
        } else {
            let n = names[rng.below(4) as usize];
            let down_ms = 500 + rng.below(5000);
            made.push(format!("{n} down {down_ms} ms"));
            std::fs::write(marker(n), "").unwrap();
            std::thread::sleep(Duration::from_millis(down_ms));
            std::fs::remove_file(marker(n)).unwrap();
        }
    }
    let report = || format!("seed {seed}, faults: {made:?}");
    c.wait(
        Duration::from_secs(180),
        &format!("every vjob completed ({})", report()),
        || ids.iter().all(|&id| state(&c, id).as_deref() == Some("completed")),
    );
    for &id in &ids {
        assert_eq!(c.job(id)["exit_code"], 0, "{}: {}", report(), c.job(id));
    }
    c.wait(Duration::from_secs(30), &format!("nothing left ({})", report()), || {
        c.left_behind() == (0, 0)
    });
    made
}

#[test]
fn vjobs_preempting_one_another_complete_through_kills_and_lost_nodes_and_leave_nothing() {
    let seeds = env_list("VJOB_CHAOS_SEEDS", "1,2,3");
    let faults = env_list("VJOB_CHAOS_FAULTS", "8")[0];
    // Three seeds at a time side by side, each on its own cluster (more would starve two cores).
    let mut failed = Vec::new();
    for chunk in seeds.chunks(3) {
        let runs: Vec<_> = chunk
            .iter()
            .map(|&seed| (seed, std::thread::spawn(move || run(seed, faults))))
            .collect();
        for (seed, r) in runs {
            match r.join() {
                Ok(made) => {
                    let kills = made.iter().filter(|f| f.starts_with("kill")).count();
                    eprintln!(
                        "seed {seed}: {} faults ({kills} kill -9, {} nodes down), 20 vjobs completed, nothing left",
                        made.len(),
                        made.len() - kills
                    )
                }
                Err(_) => failed.push(seed),
            }
        }
    }
    assert!(failed.is_empty(), "seeds {failed:?} failed (their panics above)");
}
