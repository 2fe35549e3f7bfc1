//! End-to-end tests of power management on the simulated backend: idle nodes switched off, the
//! fewest nodes booted for a vjob that needs them, consolidation by live migration, a failed
//! power-on, `kill -9` in the middle of a boot, switches by hand, and the energy accounted.

mod common;

use std::time::Duration;

use common::{job, nodes, Cluster, FAST_HYPERVISOR};
use serde_json::Value;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// `count` nodes of 2 cpus / 4 GiB with a `[power]` table of `power` (its lines), a `small`
/// template (1 vcpu, 1 GiB).
fn powered(tag: &str, count: usize, power: &str) -> Cluster {
    let names: Vec<String> = (1..=count).map(|i| format!("n{i}")).collect();
    let list: Vec<(&str, u32, &str)> = names.iter().map(|n| (n.as_str(), 2, "4GiB")).collect();
    Cluster::new(
        tag,
        &format!(
            "admins = [\"root\"]\n{FAST_HYPERVISOR}\n[power]\n{power}\n\n\
             [[template]]\nname = \"small\"\nvcpus = 1\nmemory = \"1GiB\"\n\n{}",
            nodes(&list)
        ),
    )
}

fn node_list(c: &Cluster) -> Vec<Value> {
    let out = c.ok("vstat", &["-n", "--json"]);
    serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().clone()
}

/// The nodes in power state `state`.
fn in_power(c: &Cluster, state: &str) -> Vec<String> {
    node_list(c)
        .iter()
        .filter(|n| n["power"] == state)
        .map(|n| n["name"].as_str().unwrap().to_string())
        .collect()
}

fn wait_power(c: &Cluster, count: usize, state: &str, within: Duration) -> Vec<String> {
    let mut seen = Vec::new();
    c.wait(within, &format!("{count} nodes {state}"), || {
        seen = in_power(c, state);
        seen.len() == count
    });
    seen
}

#[test]
fn idle_nodes_go_off_and_a_vjob_that_needs_them_boots_exactly_as_many_as_it_needs() {
    let c = powered(
        "idle",
        4,
        "idle_time = \"30s\"\nmin_on = 1\nboot_time = \"2s\"\nshutdown_time = \"1s\"",
    );
    // 30 s idle, then three of the four go off; one stays (min_on).
    let off = wait_power(&c, 3, "off", SECS(90));
    assert_eq!(in_power(&c, "on").len(), 1, "min_on keeps one on");
    let table = c.ok("vstat", &["-n"]);
    assert!(table.contains("4 nodes, 1 on: drawing"), "{table}");

    // 5 VMs of 1 vcpu: the node on has 2 free, so two nodes of 2 must boot, not three.
    let id = c.submit(&c.spec("five.toml", &job("five", "batch", 5, 1, "1GiB", "1h")), &[]);
    let j = c.wait_state(id, "running", SECS(60));
    let still_off = in_power(&c, "off");
    assert_eq!(still_off.len(), 1, "two booted of {off:?}; still off: {still_off:?}");
    let hosts = Cluster::nodes_of(&j);
    assert!(!hosts.contains(&still_off[0]), "{hosts:?}");

    // Energy: every node drew some, the vjob got its share.
    let nodes = node_list(&c);
    assert!(nodes.iter().all(|n| n["energy_j"].as_f64().unwrap() > 0.0), "{nodes:?}");
    c.wait(SECS(10), "five cores busy on three nodes on", || {
        let watts: f64 = node_list(&c).iter().map(|n| n["watts"].as_f64().unwrap()).sum();
        // 3 x 100 W idle + 5 x 75 W per busy core + 5 W for the node off.
        (watts - 680.0).abs() < 1e-6
    });
    c.wait(SECS(10), "the vjob's energy", || {
        let out = c.ok("vstat", &["-f", "--json", &id.to_string()]);
        let v: Value = serde_json::from_str(&out).unwrap();
        v[0]["detail"]["energy_j"].as_f64().unwrap_or(0.0) > 0.0
    });
}

#[test]
fn a_node_whose_power_on_command_fails_shows_failed_to_boot_and_its_vjob_runs_elsewhere() {
    let c = powered(
        "failboot",
        3,
        "idle_time = \"1s\"\nmin_on = 1\nboot_time = \"1s\"\nshutdown_time = \"200ms\"\n\
         power_on = \"echo no power for %n >&2; test %n != n1\"",
    );
    wait_power(&c, 2, "off", SECS(30));
    let on = in_power(&c, "on");
    assert_eq!(on, vec!["n3"], "the longest idle go first, in order");
    // Needs 3 cpus: n3 has 2, one node must boot; n1 (first) fails, n2 is booted instead.
    let id = c.submit(&c.spec("three.toml", &job("three", "batch", 3, 1, "1GiB", "1h")), &[]);
    let j = c.wait_state(id, "running", SECS(60));
    assert_eq!(
        Cluster::nodes_of(&j)
            .into_iter()
            .collect::<std::collections::BTreeSet<_>>()
            .len(),
        2
    );
    assert!(!Cluster::nodes_of(&j).contains(&"n1".to_string()));
    let n1 = node_list(&c).into_iter().find(|n| n["name"] == "n1").unwrap();
    assert_eq!(n1["power"], "failed-to-boot", "{n1}");
    let why = n1["power_reason"].as_str().unwrap();
    assert!(
        why.contains("exited with status 1") && why.contains("no power for n1"),
        "{why}"
    );
    let table = c.ok("vstat", &["-n"]);
    assert!(table.contains("failed-to-boot (switching it on failed"), "{table}");
    // Power management never retries it; an administrator does.
    let o = c.run("vqmgr", &["node", "power", "on", "n1"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    c.wait(SECS(20), "n1 failing again", || {
        node_list(&c)
            .iter()
            .any(|n| n["name"] == "n1" && n["power"] == "failed-to-boot")
    });
}

#[test]
fn consolidation_moves_a_lone_small_vjob_so_that_a_node_can_go_off() {
    let c = powered(
        "consolidate",
        2,
        "idle_time = \"3s\"\nmin_on = 1\nboot_time = \"1s\"\nshutdown_time = \"200ms\"",
    );
    // A short pair spread on both nodes, and two long single VMs beside it: once the pair
    // ends, each node holds one long VM and one of them can take both.
    let pair = c.spec(
        "pair.toml",
        "name = \"pair\"\n[placement]\nscript = \"VM[1..2] : small;\\nspread($me);\\n\"\n\
         [run]\nscript = \"true\"\nsim_runtime = \"4s\"\n",
    );
    let p = c.submit(&pair, &[]);
    let long = |name: &str| {
        let text = job(name, "batch", 1, 1, "1GiB", "1h")
            .replace("queue = \"batch\"\n", "queue = \"batch\"\nwalltime = \"2h\"\n");
        c.submit(&c.spec(&format!("{name}.toml"), &text), &[])
    };
    let (a, b) = (long("a"), long("b"));
    for id in [p, a, b] {
        c.wait_state(id, "running", SECS(20));
    }
    let (na, nb) = (Cluster::nodes_of(&c.job(a)), Cluster::nodes_of(&c.job(b)));
    assert_ne!(na, nb, "the pair's spread kept them apart");
    c.wait_state(p, "completed", SECS(20));
    // Consolidation moves one of them live; the emptied node goes off.
    let off = wait_power(&c, 1, "off", SECS(60));
    let (na, nb) = (Cluster::nodes_of(&c.job(a)), Cluster::nodes_of(&c.job(b)));
    assert_eq!(na, nb, "packed on one node");
    assert_ne!(na, off, "not on the node that went off");
    let moved = [a, b]
        .iter()
        .map(|&id| {
            let v: Value = serde_json::from_str(&c.ok("vstat", &["-f", "--json", &id.to_string()])).unwrap();
            v[0]["detail"]["events"].to_string()
        })
        .filter(|e| e.contains("consolidation") && e.contains("migrated live"))
        .count();
    assert_eq!(moved, 1, "one of them moved live, for consolidation");
    assert_eq!(c.state(a), "running");
    assert_eq!(c.state(b), "running");
}

#[test]
fn kill_9_of_vjobd_during_a_boot_resumes_it_and_the_vjob_runs() {
    let c = powered(
        "killboot",
        2,
        "idle_time = \"1s\"\nmin_on = 1\nboot_time = \"5s\"\nshutdown_time = \"200ms\"",
    );
    wait_power(&c, 1, "off", SECS(30));
    let id = c.submit(&c.spec("three.toml", &job("three", "batch", 3, 1, "1GiB", "1h")), &[]);
    wait_power(&c, 1, "booting", SECS(20));
    c.kill9();
    c.start();
    let booting = in_power(&c, "booting");
    assert_eq!(booting.len(), 1, "the boot is still under way after the restart");
    c.wait_state(id, "running", SECS(30));
    assert_eq!(in_power(&c, "on").len(), 2);
    let count = |what: &str| node_list(&c).iter().map(|n| n[what].as_u64().unwrap()).sum::<u64>();
    assert_eq!(
        (count("boots"), count("shutdowns")),
        (1, 1),
        "booted once, not again after the restart"
    );
}

#[test]
fn a_node_is_switched_by_hand_never_with_vms_on_it_and_stays_off_until_switched_on() {
    let c = powered(
        "byhand",
        2,
        "idle_time = \"1h\"\nmin_on = 1\nboot_time = \"1s\"\nshutdown_time = \"200ms\"",
    );
    let id = c.submit(&c.spec("two.toml", &job("two", "batch", 1, 2, "1GiB", "1h")), &[]);
    let j = c.wait_state(id, "running", SECS(20));
    let busy = Cluster::nodes_of(&j)[0].clone();
    let o = c.run("vqmgr", &["node", "power", "off", &busy]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("node {busy} cannot be switched off")), "{err}");
    let o = c.run("vqmgr", &["node", "power", "sideways", &busy]);
    assert!(!o.status.success());
    let idle = if busy == "n1" { "n2" } else { "n1" };
    c.ok("vqmgr", &["node", "power", "off", idle]);
    wait_power(&c, 1, "off", SECS(20));
    // A vjob that needs it waits: power management does not boot a node switched off by hand.
    let more = c.submit(&c.spec("more.toml", &job("more", "batch", 1, 2, "1GiB", "1h")), &[]);
    c.decided_since_now();
    c.decided_since_now();
    assert_eq!(c.state(more), "queued");
    assert_eq!(in_power(&c, "off"), vec![idle.to_string()]);
    c.ok("vqmgr", &["node", "power", "on", idle]);
    let j = c.wait_state(more, "running", SECS(20));
    assert_eq!(Cluster::nodes_of(&j), vec![idle.to_string()]);
}

#[test]
fn a_hung_power_command_and_a_boot_past_boot_timeout_fail_the_boot_without_holding_up_the_loop() {
    let names = ["n1", "n2", "n3"];
    let list: Vec<(&str, u32, &str)> = names.iter().map(|&n| (n, 2, "4GiB")).collect();
    let c = Cluster::new(
        "hungpower",
        &format!(
            "admins = [\"root\"]\n{FAST_HYPERVISOR}\n[power]\nidle_time = \"1s\"\nmin_on = 1\n\
             boot_time = \"1m\"\nboot_timeout = \"3s\"\nshutdown_time = \"200ms\"\ncommand_timeout = \"1s\"\n\n{}",
            nodes(&list).replacen(
                "[[node]]\nname = \"n1\"\n",
                "[[node]]\nname = \"n1\"\npower_on = \"sleep 60 # %n\"\n",
                1
            )
        ),
    );
    wait_power(&c, 2, "off", SECS(30));
    // 6 cpus wanted, 2 free on n3: both others are switched on; n1's command hangs (killed
    // after 1 s), n2 boots for a minute, past its 3 s boot_timeout.
    let id = c.submit(&c.spec("six.toml", &job("six", "batch", 6, 1, "1GiB", "1h")), &[]);
    let failed = wait_power(&c, 2, "failed-to-boot", SECS(30));
    assert_eq!(failed, vec!["n1", "n2"]);
    let reasons: Vec<String> = node_list(&c)
        .iter()
        .filter_map(|n| n["power_reason"].as_str().map(String::from))
        .collect();
    assert!(
        reasons[0].contains("`sleep 60 # 'n1'` did not finish within 1 s: killed"),
        "{reasons:?}"
    );
    assert!(
        reasons[1].contains("no answer 00:00:03 after it was switched on (boot_timeout)"),
        "{reasons:?}"
    );
    // The loop went on meanwhile: other requests were answered, the vjob waits with a reason.
    let j = c.job(id);
    assert_eq!(j["state"], "queued");
    assert!(j["reason"].as_str().unwrap().contains("waiting for resources"), "{j}");
}

/// A preemptor starts where it starts soonest: on a node switched on for it when the boot is
/// quicker than saving its victim, by suspending the victim when it is not.
#[test]
fn a_preemptor_waits_for_a_boot_quicker_than_saving_its_victim_and_preempts_when_slower() {
    for (boot, preempts) in [("1s", false), ("2m", true)] {
        // Saving the 2 GiB victim takes ~10 s at 200 MiB/s.
        let hypervisor = FAST_HYPERVISOR.replace("save_bandwidth = \"16GiB/s\"", "save_bandwidth = \"200MiB/s\"");
        assert_ne!(hypervisor, FAST_HYPERVISOR);
        let c = Cluster::new(
            &format!("sooner{}", boot.trim_end_matches(char::is_alphabetic)),
            &format!(
                "admins = [\"root\"]\n{hypervisor}\n[power]\nidle_time = \"1s\"\nmin_on = 1\n\
                 boot_time = \"{boot}\"\nshutdown_time = \"200ms\"\n\n\
                 [[queue]]\nname = \"batch\"\npriority = 10\ndefault = true\n\n\
                 [[queue]]\nname = \"express\"\npriority = 100\n\n{}",
                nodes(&[("n1", 2, "4GiB"), ("n2", 2, "4GiB")])
            ),
        );
        let off = wait_power(&c, 1, "off", SECS(30));
        let batch = c.submit(&c.spec("batch.toml", &job("batch", "batch", 1, 2, "2GiB", "1h")), &[]);
        c.wait_state(batch, "running", SECS(30));
        let express = c.submit(
            &c.spec("express.toml", &job("express", "express", 1, 2, "1GiB", "1h")),
            &[],
        );
        let j = c.wait_state(express, "running", SECS(60));
        let batch_events = c.ok("vstat", &["-f", &batch.to_string()]);
        if preempts {
            assert_ne!(Cluster::nodes_of(&j), off, "it took the victim's node");
            assert!(batch_events.contains("preempted by job"), "{batch_events}");
        } else {
            assert_eq!(Cluster::nodes_of(&j), off, "it ran on the node booted for it");
            assert_eq!(c.state(batch), "running");
            assert!(!batch_events.contains("preempted"), "{batch_events}");
        }
    }
}
