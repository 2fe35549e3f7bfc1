//! End-to-end tests of placement constraints in vjobd (sim backend): the datacenter's scripts
//! in the cluster configuration, each job's `[placement]` script, kept at admission, in
//! context switches and evacuations (every plan is replayed by the independent checker in the
//! daemon's debug builds, which these tests run).

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::{job, nodes, Cluster, FAST_HYPERVISOR};
use serde_json::Value;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Four 4-cpu nodes in two racks (n1, n2 | n3, n4), templates `small` (1 vcpu, 1GiB), `medium`
/// (2 vcpus, 2GiB) and `large` (1 vcpu, 4GiB), and `extra` appended to the datacenter's script.
fn racks(tag: &str, extra: &str) -> Cluster {
    let datacenter = format!("namespace datacenter;\n$racks = {{@n[1,2], @n[3,4]}};\nexport $racks to *;\n{extra}");
    Cluster::with_files(
        tag,
        &format!(
            "admins = [\"root\"]\nplacement = [\"datacenter.btrp\"]\n{FAST_HYPERVISOR}\n\
             [[template]]\nname = \"small\"\nvcpus = 1\nmemory = \"1GiB\"\n\n\
             [[template]]\nname = \"medium\"\nvcpus = 2\nmemory = \"2GiB\"\n\n\
             [[template]]\nname = \"large\"\nvcpus = 1\nmemory = \"4GiB\"\n\n{}\
             [[queue]]\nname = \"batch\"\npriority = 10\ndefault = true\n\n[[queue]]\nname = \"express\"\npriority = 100\n",
            nodes(&[("n1", 4, "8GiB"), ("n2", 4, "8GiB"), ("n3", 4, "8GiB"), ("n4", 4, "8GiB")])
        ),
        &[("datacenter.btrp", &datacenter)],
    )
}

/// A spec whose VMs come from a placement script.
fn scripted(name: &str, queue: &str, script: &str, runtime: &str) -> String {
    format!(
        "name = \"{name}\"\nqueue = \"{queue}\"\n\n[placement]\nscript = \"\"\"\n{script}\"\"\"\n\n[run]\nscript = \"echo hi\"\nsim_runtime = \"{runtime}\"\n"
    )
}

/// The node of each running VM of a job, by its name in the script.
fn placed(job: &Value) -> HashMap<String, String> {
    job["vms"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["state"] == "running")
        .map(|v| {
            (
                v["script_name"].as_str().unwrap().to_string(),
                v["node"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

fn distinct(p: &HashMap<String, String>, vms: &[&str]) -> bool {
    let mut n: Vec<&String> = vms.iter().map(|v| &p[*v]).collect();
    n.sort();
    n.dedup();
    n.len() == vms.len()
}

fn rack(node: &str) -> u32 {
    if node == "n1" || node == "n2" {
        1
    } else {
        2
    }
}

/// Entropy's 3-tier HA application, as in Plasma's papers: each tier spread, the third within
/// one rack.
const THREE_TIER: &str = "import datacenter;\nVM[1..3] : small; VM[4..7] : medium; VM[8..9] : large;\n\
    $T1 = VM[1..3]; $T2 = VM[4..7]; $T3 = VM[8..9];\n\
    for $t in {$T1, $T2, $T3} { spread($t); }\n\
    latency($T3, $datacenter.racks);\n";

/// The same with a middle tier of three, so that it still holds on three nodes.
const THREE_TIER_ON_THREE: &str = "import datacenter;\nVM[1..3] : small; VM[4..6] : medium; VM[7..8] : large;\n\
    $T1 = VM[1..3]; $T2 = VM[4..6]; $T3 = VM[7..8];\n\
    for $t in {$T1, $T2, $T3} { spread($t); }\n\
    latency($T3, $datacenter.racks);\n";

/// The tiers of a running 3-tier job (`tiers`: the VMs of each, by script name) hold.
fn tiers_hold(job: &Value, tiers: [&[&str]; 3]) {
    let p = placed(job);
    assert_eq!(p.len(), tiers.iter().map(|t| t.len()).sum::<usize>(), "{job}");
    for t in tiers {
        assert!(distinct(&p, t), "{t:?} spread: {p:?}");
    }
    let t3 = tiers[2];
    assert!(
        t3.iter().all(|v| rack(&p[*v]) == rack(&p[t3[0]])),
        "T3 in one rack: {p:?}"
    );
}

const TIERS: [&[&str]; 3] = [&["VM1", "VM2", "VM3"], &["VM4", "VM5", "VM6", "VM7"], &["VM8", "VM9"]];
const TIERS_ON_THREE: [&[&str]; 3] = [&["VM1", "VM2", "VM3"], &["VM4", "VM5", "VM6"], &["VM7", "VM8"]];

/// Processors used on the nodes, as `vstat -n` counts them.
fn cpus_used(c: &Cluster) -> u64 {
    let nodes: Value = serde_json::from_str(&c.ok("vstat", &["-n", "--json"])).unwrap();
    nodes
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["cpus_used"].as_u64().unwrap())
        .sum()
}

#[test]
fn a_three_tier_application_keeps_its_constraints_through_suspend_resume_and_an_offline_node() {
    let c = racks("three-tier", "");
    let id = c.submit(&c.spec("app.toml", &scripted("app", "batch", THREE_TIER, "1h")), &[]);
    let j = c.wait_state(id, "running", SECS(20));
    tiers_hold(&j, TIERS);
    // Each VM has its template's shape: 3 small, 4 medium, 2 large.
    let vcpus: Vec<u64> = j["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["vcpus"].as_u64().unwrap())
        .collect();
    assert_eq!(vcpus, vec![1, 1, 1, 2, 2, 2, 2, 1, 1], "{j}");
    assert_eq!(cpus_used(&c), 13);
    let full = c.ok("vstat", &["-f", &id.to_string()]);
    assert!(full.contains(&format!("vjob-{id}-3 (VM4)  2 vcpus, 2GiB")), "{full}");
    assert!(
        full.contains("vms = 3 x 1 vcpus, 1GiB + 4 x 2 vcpus, 2GiB + 2 x 1 vcpus, 4GiB"),
        "{full}"
    );

    c.ok("vqmgr", &["job", "suspend", &id.to_string()]);
    c.wait_state(id, "suspended", SECS(20));
    c.ok("vqmgr", &["job", "resume", &id.to_string()]);
    tiers_hold(&c.wait_state(id, "running", SECS(20)), TIERS);
    c.ok("vdel", &[&id.to_string()]);
    c.wait_state(id, "cancelled", SECS(20));

    let id = c.submit(
        &c.spec("app3.toml", &scripted("app3", "batch", THREE_TIER_ON_THREE, "1h")),
        &[],
    );
    tiers_hold(&c.wait_state(id, "running", SECS(20)), TIERS_ON_THREE);

    // A node of the rack T3 is not in empties: its VMs go where the tiers still hold. (T3's
    // own rack could not be left: `latency` is continuous, its VMs may never be apart.)
    let p = placed(&c.job(id));
    let t3 = rack(&p["VM7"]);
    let off = ["n1", "n2", "n3", "n4"].into_iter().find(|n| rack(n) != t3).unwrap();
    c.ok("vqmgr", &["node", "offline", off]);
    c.wait(SECS(30), "the node to be empty", || {
        let j = c.job(id);
        j["state"] == "running" && placed(&j).len() == 8 && placed(&j).values().all(|n| n != off)
    });
    tiers_hold(&c.job(id), TIERS_ON_THREE);
    c.ok("vdel", &[&id.to_string()]);
}

#[test]
fn constraints_that_can_never_hold_are_refused_at_submission_naming_them() {
    let c = racks("refused", "");
    let spec = c.spec(
        "five.toml",
        &scripted("five", "batch", "VM[1..5] : small;\nspread($me);\n", "1s"),
    );
    let o = c.run("vsub", &[spec.to_str().unwrap()]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("spread($me);"), "{err}");
    assert!(err.contains("five.toml:7"), "the spec's line: {err}");
    assert!(
        err.contains("spreads 5 VMs over distinct nodes, but only 4 nodes can host them"),
        "{err}"
    );

    let spec = c.spec(
        "bad.toml",
        &scripted("bad", "batch", "VM1 : huge;\nban(VM1, @n9);\n", "1s"),
    );
    let o = c.run("vsub", &[spec.to_str().unwrap()]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("bad.toml:6:1: unknown template `huge`"), "{err}");
    assert!(err.contains("bad.toml:7:10: unknown node `@n9`"), "{err}");

    // A script in a file of its own, beside the spec.
    std::fs::write(c.dir.join("pair.btrp"), "VM[1..2] : small;\ngather($me);\n").unwrap();
    let spec = c.spec(
        "pair.toml",
        "name = \"pair\"\n[placement]\nfile = \"pair.btrp\"\n[run]\nscript = \"true\"\nsim_runtime = \"1s\"\n",
    );
    let id = c.submit(&spec, &[]);
    let j = c.wait_state(id, "running", SECS(20));
    let p = placed(&j);
    assert_eq!(p["VM1"], p["VM2"], "gathered: {p:?}");
}

#[test]
fn a_ban_of_a_node_keeps_every_vjob_off_it() {
    let c = racks("ban", "ban($ALL_VMS, @n4);\n");
    let a = c.submit(&c.spec("a.toml", &job("a", "batch", 3, 4, "1GiB", "1h")), &[]);
    c.wait_state(a, "running", SECS(20));
    let b = c.submit(&c.spec("b.toml", &job("b", "batch", 1, 1, "1GiB", "1h")), &[]);
    c.decided_since_now();
    let nodes: Vec<String> = c
        .jobs()
        .iter()
        .filter(|j| j["state"] == "running")
        .flat_map(Cluster::nodes_of)
        .collect();
    assert!(!nodes.contains(&"n4".to_string()), "{nodes:?}");
    assert_eq!(c.state(b), "queued", "n4 is free but banned");
    c.ok("vdel", &[&a.to_string(), &b.to_string()]);
}

#[test]
fn a_vjob_waits_on_its_constraints_saying_so_and_preempts_only_when_its_placement_then_holds() {
    let c = racks("preempt", "");
    c.ok("vqmgr", &["node", "drain", "n4"]);
    // Four VMs spread while only three nodes take VMs: it waits, and says why.
    let s = c.submit(
        &c.spec(
            "s.toml",
            &scripted("s", "batch", "VM[1..4] : small;\nspread($me);\n", "1s"),
        ),
        &[],
    );
    c.decided_since_now();
    assert_eq!(c.state(s), "queued");
    let full = c.ok("vstat", &["-f", &s.to_string()]);
    assert!(full.contains("s.toml:7) needs 4 nodes with room, 3 have it"), "{full}");

    // A low-priority vjob fills one node; an express vjob spread over four nodes would not
    // fit even if it were suspended: nobody is preempted for nothing.
    let low = c.submit(&c.spec("low.toml", &job("low", "batch", 1, 4, "1GiB", "1h")), &[]);
    let j = c.wait_state(low, "running", SECS(20));
    let x = Cluster::nodes_of(&j)[0].clone();
    let e = c.submit(
        &c.spec(
            "e.toml",
            &scripted("e", "express", "VM[1..4] : small;\nspread($me);\n", "1h"),
        ),
        &[],
    );
    c.decided_since_now();
    assert_eq!(c.state(low), "running", "no preemption that cannot help");
    assert_eq!(c.state(e), "queued");
    c.ok("vdel", &[&e.to_string(), &s.to_string()]);

    // Fenced to the low vjob's node: preempting it makes the placement hold, so it does.
    let f = c.submit(
        &c.spec(
            "f.toml",
            &scripted("f", "express", &format!("VM1 : small;\nfence($me, @{x});\n"), "1h"),
        ),
        &[],
    );
    let j = c.wait_state(f, "running", SECS(20));
    assert_eq!(Cluster::nodes_of(&j), vec![x.clone()]);
    assert_eq!(c.state(low), "suspended");
    c.ok("vqmgr", &["node", "online", "n4"]);
    c.ok("vdel", &[&f.to_string(), &low.to_string()]);
}

#[test]
fn placement_reload_checks_the_new_scripts_and_keeps_the_old_ones_when_they_are_bad() {
    let c = racks("reload", "");
    let id = c.submit(
        &c.spec(
            "app.toml",
            &scripted("app", "batch", "VM[1..3] : small;\nspread($me);\n", "1h"),
        ),
        &[],
    );
    c.wait_state(id, "running", SECS(20));
    let dc = c.dir.join("datacenter.btrp");
    let head = "namespace datacenter;\n$racks = {@n[1,2], @n[3,4]};\nexport $racks to *;\n";

    std::fs::write(&dc, format!("{head}ban($ALL_VMS, @n[1,2]\n")).unwrap();
    let o = c.run("vqmgr", &["placement", "reload"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success() && err.contains("datacenter.btrp:5:1: expected `)`"),
        "{err}"
    );

    std::fs::write(&dc, format!("{head}ban($ALL_VMS, @n[1,2,3]);\n")).unwrap();
    let o = c.run("vqmgr", &["placement", "reload"]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "a running vjob could never satisfy it");
    assert!(
        err.contains(&format!("job {id} could never run")) && err.contains("spreads 3 VMs"),
        "{err}"
    );

    // A ban the vjob can live with: accepted, and its VM on n4, if any, leaves.
    std::fs::write(&dc, format!("{head}ban($ALL_VMS, @n4);\n")).unwrap();
    let out = c.ok("vqmgr", &["placement", "reload"]);
    assert!(out.contains("placement reloaded: 1 datacenter constraints"), "{out}");
    c.wait(SECS(30), "no VM on n4", || {
        let j = c.job(id);
        let p = placed(&j);
        j["state"] == "running" && p.len() == 3 && p.values().all(|n| n != "n4")
    });
    assert!(distinct(&placed(&c.job(id)), &["VM1", "VM2", "VM3"]));
}
