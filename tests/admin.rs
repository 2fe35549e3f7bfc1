//! End-to-end tests of administration: queues, limits, holds, nodes, manual context switches,
//! walltimes.

mod common;

use std::time::Duration;

use common::{job, nodes, sim_running, sim_state, two_nodes, Cluster, FAST_HYPERVISOR};
use vjob_hypervisor::sim::{SimCluster, SimPower};

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn stopped_queue_dispatches_nothing_and_disabled_queue_refuses() {
    let c = two_nodes("queues");
    c.ok("vqmgr", &["queue", "stop", "batch"]);
    let id = c.submit(&c.spec("a.toml", &job("a", "batch", 1, 1, "1GiB", "1s")), &[]);
    c.decided_since_now();
    assert_eq!(c.state(id), "queued");
    c.ok("vqmgr", &["queue", "start", "batch"]);
    c.wait_state(id, "completed", SECS(10));

    c.ok("vqmgr", &["queue", "disable", "express"]);
    let o = c.run(
        "vsub",
        &[c.spec("b.toml", &job("b", "express", 1, 1, "1GiB", "1s"))
            .to_str()
            .unwrap()],
    );
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("queue `express` is disabled"));
    let queues = c.ok("vstat", &["-Q"]);
    assert!(
        queues.lines().any(|l| l.starts_with("express") && l.contains(" no ")),
        "{queues}"
    );

    // Create, set and delete queues.
    c.ok(
        "vqmgr",
        &["queue", "create", "long", "--priority", "5", "--max-running", "1"],
    );
    let a = c.submit(&c.spec("l1.toml", &job("l1", "long", 1, 1, "1GiB", "1h")), &[]);
    let b = c.submit(&c.spec("l2.toml", &job("l2", "long", 1, 1, "1GiB", "1h")), &[]);
    c.wait_state(a, "running", SECS(10));
    c.decided_since_now();
    assert_eq!(c.state(b), "queued", "max_running = 1");
    let full = c.ok("vstat", &["-f", &b.to_string()]);
    assert!(full.contains("queue long is at its limit of 1 running vjobs"), "{full}");
    let o = c.run("vqmgr", &["queue", "delete", "long"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("still holds 2 unfinished jobs"));
    c.ok("vqmgr", &["queue", "set", "long", "--max-running", "0"]);
    c.wait_state(b, "running", SECS(10));
    c.ok("vdel", &[&a.to_string(), &b.to_string()]);
    c.ok("vqmgr", &["queue", "delete", "long"]);
    assert!(!c.ok("vqmgr", &["queue", "list"]).contains("long"));
}

#[test]
fn per_user_limits_hold_and_release() {
    let c = two_nodes("limits");
    c.ok("vqmgr", &["queue", "set", "batch", "--max-user-running", "1"]);
    let a = c.submit(&c.spec("a.toml", &job("a", "batch", 1, 1, "1GiB", "2s")), &[]);
    let b = c.submit(&c.spec("b.toml", &job("b", "batch", 1, 1, "1GiB", "1s")), &[]);
    c.wait_state(a, "running", SECS(10));
    assert_eq!(c.state(b), "queued");
    c.wait_state(b, "running", SECS(10));

    let h = c.submit(&c.spec("h.toml", &job("h", "batch", 1, 1, "1GiB", "1s")), &["--hold"]);
    assert_eq!(c.state(h), "held");
    c.decided_since_now();
    assert_eq!(c.state(h), "held");
    c.ok("vqmgr", &["job", "release", &h.to_string()]);
    c.wait_state(h, "completed", SECS(15));
    let o = c.run("vqmgr", &["job", "release", &h.to_string()]);
    assert!(!o.status.success(), "releasing a completed job is refused");
}

#[test]
fn drain_takes_no_new_vms_and_offline_evacuates_by_migration() {
    let c = two_nodes("nodes");
    c.ok("vqmgr", &["node", "drain", "n1"]);
    let a = c.submit(&c.spec("a.toml", &job("a", "batch", 1, 2, "1GiB", "1h")), &[]);
    let j = c.wait_state(a, "running", SECS(10));
    assert_eq!(Cluster::nodes_of(&j), vec!["n2"], "drained n1 takes no new VM");
    c.ok("vqmgr", &["node", "online", "n1"]);
    let b = c.submit(&c.spec("b.toml", &job("b", "batch", 1, 2, "1GiB", "1h")), &[]);
    c.wait_state(b, "running", SECS(10));
    // Taking n2 offline moves what runs there to n1 by live migration.
    c.ok("vqmgr", &["node", "offline", "n2"]);
    c.wait(SECS(15), "n2 to be empty", || {
        let ja = c.job(a);
        let jb = c.job(b);
        Cluster::nodes_of(&ja) == vec!["n1"] && Cluster::nodes_of(&jb) == vec!["n1"]
    });
    assert_eq!(c.state(a), "running");
    assert_eq!(c.state(b), "running");
    let nodes = c.ok("vstat", &["-n"]);
    assert!(
        nodes
            .lines()
            .any(|l| l.starts_with("n2") && l.contains("offline") && l.contains("0/4")),
        "{nodes}"
    );
    for id in [a, b] {
        let full = c.ok("vstat", &["-f", &id.to_string()]);
        assert!(
            full.contains("migrated live from n2 to n1"),
            "evacuated by migration: {full}"
        );
    }
    // With no room left anywhere, a vjob on a node going offline is suspended.
    let d = c.submit(&c.spec("d.toml", &job("d", "batch", 1, 4, "1GiB", "1h")), &[]);
    c.ok("vqmgr", &["node", "online", "n2"]);
    c.wait_state(d, "running", SECS(10));
    c.ok("vqmgr", &["node", "offline", "n2"]);
    c.wait_state(d, "suspended", SECS(15));
    c.ok("vqmgr", &["node", "online", "n2"]);
    c.wait_state(d, "running", SECS(15));
}

/// Four cores free on two 4-core nodes, but no node has them: the scheduler moves the 1-core
/// VM in the way live, rather than leave a 4-core job waiting behind jobs it may not preempt.
#[test]
fn a_running_vm_moves_live_to_start_a_job_that_fragmentation_keeps_out() {
    let c = two_nodes("defragment");
    let a = c.submit(&c.spec("a.toml", &job("a", "batch", 1, 3, "1GiB", "1h")), &[]);
    c.wait_state(a, "running", SECS(10));
    let b = c.submit(&c.spec("b.toml", &job("b", "batch", 1, 3, "1GiB", "1h")), &[]);
    c.wait_state(b, "running", SECS(10));
    let small = c.submit(&c.spec("s.toml", &job("s", "batch", 1, 1, "1GiB", "1h")), &[]);
    let js = c.wait_state(small, "running", SECS(10));
    let (from, to) = match Cluster::nodes_of(&js)[0].as_str() {
        "n1" => ("n1", "n2"),
        _ => ("n2", "n1"),
    };
    // End the 3-core job beside the small one: 3 cores free there, 1 on the other node.
    let beside = if Cluster::nodes_of(&c.job(a)) == vec![from] {
        a
    } else {
        b
    };
    c.ok("vdel", &[&beside.to_string()]);
    c.wait_state(beside, "cancelled", SECS(10));
    let big = c.submit(&c.spec("big.toml", &job("big", "batch", 1, 4, "1GiB", "1h")), &[]);
    let jbig = c.wait_state(big, "running", SECS(15));
    assert_eq!(Cluster::nodes_of(&jbig), vec![from]);
    assert_eq!(Cluster::nodes_of(&c.job(small)), vec![to]);
    assert_eq!(c.state(small), "running");
    let full = c.ok("vstat", &["-f", &small.to_string()]);
    assert!(full.contains(&format!("migrated live from {from} to {to}")), "{full}");
    assert!(!full.contains("suspend"), "moved, never suspended: {full}");
}

#[test]
fn manual_suspend_resume_and_migrate() {
    let c = two_nodes("manual");
    let a = c.submit(&c.spec("a.toml", &job("a", "batch", 2, 1, "1GiB", "1h")), &[]);
    c.wait_state(a, "running", SECS(10));
    c.ok("vqmgr", &["job", "suspend", &a.to_string()]);
    c.wait(SECS(10), "a's VMs to sleep", || {
        c.job(a)["vms"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["state"] == "sleeping")
    });
    c.decided_since_now();
    assert_eq!(c.state(a), "suspended", "stays suspended until resumed by hand");
    c.ok("vqmgr", &["job", "resume", &a.to_string()]);
    let j = c.wait_state(a, "running", SECS(10));
    let vm0_node = j["vms"][0]["node"].as_str().unwrap().to_string();
    let other = if vm0_node == "n1" { "n2" } else { "n1" };
    c.ok("vqmgr", &["job", "migrate", &a.to_string(), "--vm", "0", "--to", other]);
    c.wait(SECS(10), "VM 0 to move", || c.job(a)["vms"][0]["node"] == other);
    assert_eq!(c.state(a), "running");
    let o = c.run("vqmgr", &["job", "migrate", &a.to_string(), "--vm", "0", "--to", "n9"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no node named `n9`"));
}

#[test]
fn walltime_kills_with_a_reason() {
    let c = two_nodes("walltime");
    let spec = format!("walltime = \"2s\"\n{}", job("w", "batch", 1, 1, "1GiB", "1h"));
    let id = c.submit(&c.spec("w.toml", &spec), &[]);
    let j = c.wait_state(id, "failed", SECS(15));
    assert!(
        j["reason"].as_str().unwrap().contains("walltime 00:00:02 exceeded"),
        "{j}"
    );
    c.wait(SECS(10), "the VM to be destroyed", || {
        c.job(id)["vms"][0]["state"] == "gone"
    });
}

#[test]
fn snapshot_shows_what_the_scheduler_would_plan() {
    let c = two_nodes("snapshot");
    let a = c.submit(&c.spec("a.toml", &job("a", "batch", 2, 2, "1GiB", "1h")), &[]);
    c.wait_state(a, "running", SECS(10));
    let snap = c.dir.join("snap.json");
    c.snapshot(&snap);
    let o = std::process::Command::new(env!("CARGO_BIN_EXE_vplan"))
        .args(["solve", snap.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success(), "{out}{}", String::from_utf8_lossy(&o.stderr));
    // Both VMs run and nothing needs to change: the plan is empty and valid.
    assert!(
        out.contains("2 nodes, 2 VMs") && out.contains("0 actions") && out.contains("plan valid"),
        "{out}"
    );
}

#[test]
fn a_node_that_stops_answering_is_fenced_and_its_vjobs_start_over_elsewhere() {
    let c = Cluster::new(
        "nodedown",
        &format!(
            "admins = [\"root\"]\n{FAST_HYPERVISOR}\n{}\n[scheduler]\nnode_timeout = \"2s\"\n\n\
             [power]\nboot_time = \"300ms\"\nidle_time = \"1h\"\nconsolidate = false\n\n\
             [[queue]]\nname = \"batch\"\ndefault = true\n",
            nodes(&[("n1", 4, "8GiB"), ("n2", 4, "8GiB")])
        ),
    );
    c.ok("vqmgr", &["node", "drain", "n1"]);
    let a = c.submit(&c.spec("a.toml", &job("a", "batch", 1, 2, "1GiB", "1h")), &[]);
    let j = c.wait_state(a, "running", SECS(10));
    assert_eq!(Cluster::nodes_of(&j), vec!["n2"]);
    c.ok("vqmgr", &["node", "online", "n1"]);

    // n2's hypervisor stops answering (its VMs go on, as QEMU does when libvirtd dies).
    let sim_dir = c.dir.join("state").join("sim");
    let marker = sim_dir.join("n2.down");
    std::fs::write(&marker, "").unwrap();
    c.wait(SECS(10), "n2 to be shown down", || {
        c.ok("vstat", &["-n"])
            .lines()
            .any(|l| l.starts_with("n2") && l.contains("down"))
    });
    // Past the node timeout n2 is switched off (fenced), and only then does the vjob start over
    // on n1: at no instant does its VM run on both.
    let sim = SimCluster::open(&sim_dir, &[], Default::default()).unwrap();
    c.wait(SECS(20), "the vjob to run again, on n1", || {
        let running = sim_state(&sim_dir).map(|v| sim_running(&v)).unwrap_or_default();
        assert!(running.values().all(|on| on.len() <= 1), "a VM runs twice: {running:?}");
        let j = c.job(a);
        j["state"] == "running" && Cluster::nodes_of(&j) == vec!["n1"]
    });
    assert!(!matches!(sim.power("n2").unwrap(), SimPower::On), "n2 was switched off");
    let full = c.ok("vstat", &["-f", &a.to_string()]);
    assert!(
        full.contains("node n2 did not answer for 2 s: switching it off (fencing)")
            && full.contains(
                "node n2 did not answer for 2 s and was switched off (fenced): its VMs there are lost; requeued"
            ),
        "{full}"
    );
    assert!(full.contains(&format!("stale_copies = vjob-{a}-0 on n2")), "{full}");
    let n2 = c.ok("vstat", &["-n"]);
    assert!(n2.lines().any(|l| l.starts_with("n2") && l.contains("fenced")), "{n2}");

    // Repaired and switched on by hand, n2 answers again: the stale record goes, and n2 takes
    // VMs again.
    std::fs::remove_file(&marker).unwrap();
    c.ok("vqmgr", &["node", "power", "on", "n2"]);
    c.wait(SECS(15), "the stale record to go and n2 to be on", || {
        !c.ok("vstat", &["-f", &a.to_string()]).contains("stale_copies")
            && c.ok("vstat", &["-n"])
                .lines()
                .any(|l| l.starts_with("n2") && l.contains("0/4") && !l.contains("not ours") && !l.contains("down"))
    });
    assert_eq!(Cluster::nodes_of(&c.job(a)), vec!["n1"]);
    assert_eq!(c.state(a), "running");
    c.ok("vdel", &[&a.to_string()]);
    c.wait_state(a, "cancelled", SECS(10));
}

#[test]
fn a_silent_node_that_cannot_be_fenced_keeps_its_vjobs_until_an_admin_declares_it_lost() {
    // A power command that fails: vjobd cannot make sure n2 is off.
    let c = Cluster::new(
        "nofence",
        &format!(
            "admins = [\"root\"]\n{FAST_HYPERVISOR}\n{}\n[scheduler]\nnode_timeout = \"1s\"\n\n\
             [power]\npower_off = \"echo no BMC answers for %n >&2; exit 3\"\nidle_time = \"1h\"\nconsolidate = false\n\n\
             [[queue]]\nname = \"batch\"\ndefault = true\n",
            nodes(&[("n1", 4, "8GiB"), ("n2", 4, "8GiB")])
        ),
    );
    c.ok("vqmgr", &["node", "drain", "n1"]);
    let a = c.submit(&c.spec("a.toml", &job("a", "batch", 1, 2, "1GiB", "1h")), &[]);
    c.wait_state(a, "running", SECS(10));
    c.ok("vqmgr", &["node", "online", "n1"]);
    let sim_dir = c.dir.join("state").join("sim");
    std::fs::write(sim_dir.join("n2.down"), "").unwrap();
    c.wait(SECS(20), "the failed fencing to be told", || {
        c.ok("vstat", &["-f", &a.to_string()])
            .contains("node n2 cannot be fenced (power command `echo no BMC answers")
    });
    let full = c.ok("vstat", &["-f", &a.to_string()]);
    assert!(
        full.contains("no BMC answers for n2") && full.contains("`vqmgr node lost n2`"),
        "{full}"
    );
    // It waits: still on n2, where its VM still runs, and nowhere else.
    assert_eq!(c.state(a), "running");
    assert_eq!(Cluster::nodes_of(&c.job(a)), vec!["n2"]);
    let running = sim_state(&sim_dir).map(|v| sim_running(&v)).unwrap_or_default();
    assert_eq!(running[&format!("vjob-{a}-0")], vec!["n2".to_string()]);

    // A node that answers cannot be declared lost.
    let o = c.run("vqmgr", &["node", "lost", "n1"]);
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && e.contains("node n1 answers: it is not lost"),
        "{e}"
    );
    // The administrator pulls n2's plug and says so: the vjob starts over on n1.
    SimCluster::open(&sim_dir, &[], Default::default())
        .unwrap()
        .switch("n2", false)
        .unwrap();
    let said = c.ok("vqmgr", &["node", "lost", "n2"]);
    assert!(
        said.contains("node n2 is fenced: its vjobs start over elsewhere"),
        "{said}"
    );
    c.wait(SECS(20), "the vjob to run again, on n1", || {
        let j = c.job(a);
        j["state"] == "running" && Cluster::nodes_of(&j) == vec!["n1"]
    });
    let full = c.ok("vstat", &["-f", &a.to_string()]);
    assert!(full.contains("node n2 declared lost by an administrator"), "{full}");
    c.ok("vdel", &[&a.to_string()]);
    c.wait_state(a, "cancelled", SECS(10));
}
