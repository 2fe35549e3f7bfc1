//! vjobd on real libvirt nodes: two libvirtd in network namespaces (`hypervisor/guest/lab.sh`)
//! running TCG guests built by `hypervisor/guest/build.sh`, driven through the real commands.
//! Runs when built with `--features libvirt` and `VJOB_LAB` / `VJOB_GUEST` name the lab and the
//! guest (tests/run-all.sh sets them up); skipped, saying so, otherwise.
#![cfg(feature = "libvirt")]

mod common;

use std::path::{Path, PathBuf};
use std::time::Duration;

use common::Cluster;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// The tests share the lab's two small nodes and expect their capacity for themselves: one at a
/// time. (Their daemons have cluster names of their own, so they would leave each other's VMs
/// alone, but not room for each other's placements.)
static LAB: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// The cluster names of the two tests' daemons: they prefix the domains.
const SWITCHES: &str = "lvswitch";
const FAILURES: &str = "lvfail";

/// The lab and the guest, or `None` (the test is skipped; under CI it fails) when either is
/// missing.
fn lab(test: &str) -> Option<(PathBuf, PathBuf)> {
    match common::prerequisite::libvirt_lab() {
        Ok(found) => Some(found),
        Err(what) => {
            common::prerequisite::missing(test, &what);
            None
        }
    }
}

fn config(cluster: &str, lab: &Path, guest: &Path, work: &str) -> String {
    let node = |i: u32| {
        format!(
            "[[node]]\nname = \"node{i}\"\nuri = \"qemu+unix:///system?socket={lab}/node{i}/sock/libvirt-sock\"\nmigration_uri = \"qemu+tcp://10.77.0.{i}/system\"\ncpus = 2\nmemory = \"1GiB\"\n\
             power_off = \"bash {script} node-poweroff {lab} %n\"\npower_on = \"bash {script} node-start {lab} %n\"\n\n",
            lab = lab.display(),
            script = LAB_SH,
        )
    };
    format!(
        "cluster = \"{cluster}\"\nadmins = [\"root\"]\n\n[hypervisor]\nbackend = \"libvirt\"\ndomain_type = \"qemu\"\nshared_storage = true\nimage_dir = \"{work}/images\"\nrun_dir = \"{work}/run\"\nboot_time = \"4s\"\n\n\
         [[image]]\nname = \"tiny\"\nkernel = \"{g}/vmlinuz\"\ninitrd = \"{g}/initrd.gz\"\nmemory = \"96MiB\"\n\n\
         [[image]]\nname = \"tinydisk\"\nkernel = \"{g}/vmlinuz\"\ninitrd = \"{g}/initrd.gz\"\ndisk = \"{g}/disk.qcow2\"\nformat = \"qcow2\"\nmemory = \"96MiB\"\n\n{}{}\
         [[queue]]\nname = \"batch\"\npriority = 10\ndefault = true\n\n[[queue]]\nname = \"express\"\npriority = 100\n\n\
         [scheduler]\npoll_interval = \"300ms\"\nnode_timeout = \"3s\"\nshort_preemption = \"1m\"\n",
        node(1),
        node(2),
        g = guest.display()
    )
}

fn spec(name: &str, queue: &str, count: u32, vcpus: u32, script: &str) -> String {
    format!("name = \"{name}\"\nqueue = \"{queue}\"\n\n[vm]\ncount = {count}\nvcpus = {vcpus}\nimage = \"tiny\"\n\n[run]\nscript = '''\n{script}\n'''\n")
}

/// The domains of cluster `cluster` on a lab node, as `virsh` lists them.
fn domains(lab: &Path, node: u32, cluster: &str) -> Vec<String> {
    let uri = format!(
        "qemu+unix:///system?socket={}/node{node}/sock/libvirt-sock",
        lab.display()
    );
    let o = std::process::Command::new("virsh")
        .args(["-c", &uri, "list", "--all", "--name"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with(&format!("{cluster}-")))
        .map(String::from)
        .collect()
}

/// What `virsh domstate` says of a domain on a lab node.
fn domstate(lab: &Path, node: u32, name: &str) -> String {
    let uri = format!(
        "qemu+unix:///system?socket={}/node{node}/sock/libvirt-sock",
        lab.display()
    );
    let o = std::process::Command::new("virsh")
        .args(["-c", &uri, "domstate", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn ticks(text: &str, vm: usize) -> Vec<u64> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            (w.next()? == "tick" && w.next()?.parse::<usize>().ok()? == vm).then_some(())?;
            w.next()?.parse().ok()
        })
        .collect()
}

#[test]
fn jobs_run_in_real_guests_are_switched_migrated_and_cleaned_up() {
    let _one_at_a_time = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let Some((lab, guest)) = lab("jobs_run_in_real_guests_are_switched_migrated_and_cleaned_up") else {
        return;
    };
    let work = std::env::temp_dir().join(format!("vjob-e2e-libvirt-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    let c = Cluster::new("libvirt", &config(SWITCHES, &lab, &guest, &work.display().to_string()));

    // 1. A vjob prints a line and exits 3: its output and exit code come back.
    let id = c.submit(
        &c.spec(
            "three.toml",
            &spec("three", "batch", 1, 1, "echo \"line from $VJOB_ID\"\nexit 3"),
        ),
        &[],
    );
    // ... and one booted from a disk image (a copy-on-write overlay of it, the job on a seed).
    let disk_job = c.submit(
        &c.spec(
            "disk.toml",
            &spec("disk", "batch", 1, 1, "mount /dev/vda /mnt && cat /mnt/hello").replace("\"tiny\"", "\"tinydisk\""),
        ),
        &[],
    );
    let j = c.wait_state(id, "failed", SECS(90));
    assert_eq!(j["exit_code"], 3, "{j}");
    let out = std::fs::read_to_string(c.dir.join(format!("vjob-{id}.out"))).unwrap();
    assert_eq!(out.trim(), format!("line from {id}"));
    let j = c.wait_state(disk_job, "completed", SECS(90));
    assert_eq!(j["exit_code"], 0, "{j}");
    let out = std::fs::read_to_string(c.dir.join(format!("vjob-{disk_job}.out"))).unwrap();
    assert!(out.contains("hello from the base image"), "{out}");

    // 2. A 2-VM low-priority vjob is saved to disk for a high-priority one, then resumed on the
    //    other node with its guests' state intact.
    let counter = "i=0\nwhile [ $i -lt 40 ]; do i=$((i+1)); echo \"tick $VJOB_VM_INDEX $i\"; sleep 0.5; done";
    let low = c.submit(&c.spec("low.toml", &spec("low", "batch", 2, 1, counter)), &[]);
    let j = c.wait_state(low, "running", SECS(90));
    let first_nodes = Cluster::nodes_of(&j);
    let console = |vm: usize| work.join("run").join(format!("{SWITCHES}-{low}-{vm}.console"));
    c.wait(SECS(60), "the counters to tick", || {
        std::fs::read_to_string(console(0)).is_ok_and(|t| ticks(&t, 0).len() >= 4)
    });
    let high = c.submit(
        &c.spec("high.toml", &spec("high", "express", 2, 2, "echo high; sleep 6")),
        &[],
    );
    c.wait(SECS(60), "low to be saved to disk", || {
        c.job(low)["vms"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["state"] == "sleeping")
    });
    for vm in 0..2 {
        assert!(
            work.join("images").join(format!("{SWITCHES}-{low}-{vm}.img")).exists(),
            "saved image of VM {vm}"
        );
    }
    c.wait_state(high, "running", SECS(60));
    // Only the node low did not use first may take it back.
    let away = if first_nodes.contains(&"node1".to_string()) {
        "node1"
    } else {
        "node2"
    };
    c.ok("vqmgr", &["node", "drain", away]);
    c.wait_state(high, "completed", SECS(90));
    let j = c.wait_state(low, "running", SECS(90));
    assert!(
        Cluster::nodes_of(&j).iter().all(|n| n != away),
        "resumed away from {away}: {j}"
    );
    c.ok("vqmgr", &["node", "online", away]);
    c.wait_state(low, "completed", SECS(120));
    let out = std::fs::read_to_string(c.dir.join(format!("vjob-{low}.out"))).unwrap();
    for vm in 0..2 {
        assert_eq!(
            ticks(&out, vm),
            (1..=40).collect::<Vec<u64>>(),
            "VM {vm} counted on across the switch:\n{out}"
        );
    }
    for vm in 0..2 {
        assert!(
            !work.join("images").join(format!("{SWITCHES}-{low}-{vm}.img")).exists(),
            "image removed after the resume"
        );
    }

    // 3. A vjob is live-migrated while it runs; vdel leaves no domain and no image behind.
    let long = c.submit(
        &c.spec(
            "long.toml",
            &spec(
                "long",
                "batch",
                1,
                1,
                "i=0; while true; do i=$((i+1)); echo \"tick 0 $i\"; sleep 0.5; done",
            ),
        ),
        &[],
    );
    let j = c.wait_state(long, "running", SECS(90));
    let from = Cluster::nodes_of(&j)[0].clone();
    let to = if from == "node1" { "node2" } else { "node1" };
    c.ok("vqmgr", &["job", "migrate", &long.to_string(), "--vm", "0", "--to", to]);
    c.wait(SECS(60), "the migration", || {
        Cluster::nodes_of(&c.job(long)) == vec![to.to_string()]
    });
    let console = work.join("run").join(format!("{SWITCHES}-{long}-0.console"));
    let before = ticks(&std::fs::read_to_string(&console).unwrap(), 0).len();
    c.wait(SECS(30), "the guest to tick on after the migration", || {
        ticks(&std::fs::read_to_string(&console).unwrap(), 0).len() > before + 3
    });
    let t = ticks(&std::fs::read_to_string(&console).unwrap(), 0);
    assert!(
        t.windows(2).all(|w| w[1] == w[0] + 1),
        "one guest, never restarted: {t:?}"
    );
    // The planner's durations follow what was measured on these nodes: booting a VM here takes
    // well under the configured 4 s (the boot call returns once the domain is created).
    let snap = work.join("snap.json");
    c.snapshot(&snap);
    let snap: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&snap).unwrap()).unwrap();
    let boots: Vec<u64> = snap["model"]["attributes"]["vms"]
        .as_object()
        .expect("per-VM durations in the snapshot")
        .values()
        .filter_map(|a| a["boot"].as_u64())
        .collect();
    assert!(
        !boots.is_empty() && boots.iter().all(|&b| b < 4000),
        "learned boot durations: {boots:?}"
    );
    // Suspended by hand, then deleted: its image goes too.
    c.ok("vqmgr", &["job", "suspend", &long.to_string()]);
    c.wait(SECS(60), "the save", || c.job(long)["vms"][0]["state"] == "sleeping");
    c.ok("vdel", &[&long.to_string()]);
    c.wait(SECS(60), "no domain and no image left", || {
        domains(&lab, 1, SWITCHES).is_empty()
            && domains(&lab, 2, SWITCHES).is_empty()
            && std::fs::read_dir(work.join("images"))
                .map(|d| d.count() == 0)
                .unwrap_or(true)
    });
    // Nor any VM's files (initramfs, overlays, seeds): only the consoles stay, as job output.
    let left: Vec<String> = std::fs::read_dir(work.join("run"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| !n.ends_with(".console"))
        .collect();
    assert!(left.is_empty(), "left in the run directory: {left:?}");
    drop(c);
    let _ = std::fs::remove_dir_all(&work);
}

/// The lab's script: the tests start and stop nodes with it, and vjobd switches them with it.
const LAB_SH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/hypervisor/guest/lab.sh");

fn lab_sh(args: &[&str]) {
    let o = std::process::Command::new("bash")
        .arg(LAB_SH)
        .args(args)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "lab.sh {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
}

#[test]
fn pauses_refusals_restarts_and_node_failures_on_real_nodes() {
    let _one_at_a_time = LAB.lock().unwrap_or_else(|e| e.into_inner());
    let Some((lab, guest)) = lab("pauses_refusals_restarts_and_node_failures_on_real_nodes") else {
        return;
    };
    let work = std::env::temp_dir().join(format!("vjob-e2e-libvirt-fail-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    // Storage not declared shared: libvirt refuses to live-migrate VMs booted from disk images.
    let c = Cluster::new(
        "libvirt-fail",
        &config(FAILURES, &lab, &guest, &work.display().to_string())
            .replace("shared_storage = true", "shared_storage = false"),
    );
    let counter = "i=0; while true; do i=$((i+1)); echo \"tick 0 $i\"; sleep 0.5; done";
    let id = c.submit(&c.spec("t.toml", &spec("t", "batch", 1, 1, counter)), &[]);
    let j = c.wait_state(id, "running", SECS(90));
    let first = Cluster::nodes_of(&j)[0].clone();
    let console = work.join("run").join(format!("{FAILURES}-{id}-0.console"));
    let count = || ticks(&std::fs::read_to_string(&console).unwrap_or_default(), 0).len();
    c.wait(SECS(60), "the guest to tick", || count() >= 3);

    // A short express vjob that needs every processor: the guest is paused in memory, not
    // saved, and goes on where it stopped once the express vjob is over.
    let short = format!(
        "walltime = \"30s\"\n{}",
        spec("short", "express", 2, 2, "echo short; sleep 4")
    );
    let high = c.submit(&c.spec("short.toml", &short), &[]);
    c.wait_state(high, "running", SECS(90));
    let j = c.job(id);
    assert_eq!(
        (j["state"].as_str(), j["vms"][0]["state"].as_str()),
        (Some("suspended"), Some("paused")),
        "{j}"
    );
    assert!(
        std::fs::read_dir(work.join("images")).map_or(true, |d| d.count() == 0),
        "nothing saved"
    );
    let n = |name: &str| name.trim_start_matches("node").parse::<u32>().unwrap();
    assert_eq!(
        domstate(&lab, n(&first), &format!("{FAILURES}-{id}-0")),
        "paused",
        "paused by libvirt"
    );
    let frozen = count();
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(count(), frozen, "a paused guest does not tick");
    c.wait_state(high, "completed", SECS(90));
    c.wait_state(id, "running", SECS(30));
    assert_eq!(Cluster::nodes_of(&c.job(id)), vec![first.clone()]);
    c.wait(SECS(30), "the guest to tick on after the pause", || {
        count() > frozen + 3
    });

    // A migration the node refuses leaves the vjob running where it was, saying why.
    let disk_spec =
        spec("d", "batch", 1, 1, "while true; do echo alive; sleep 0.5; done").replace("\"tiny\"", "\"tinydisk\"");
    let disk = c.submit(&c.spec("d.toml", &disk_spec), &[]);
    let from = Cluster::nodes_of(&c.wait_state(disk, "running", SECS(90)))[0].clone();
    let to = if from == "node1" { "node2" } else { "node1" };
    c.ok("vqmgr", &["job", "migrate", &disk.to_string(), "--vm", "0", "--to", to]);
    c.wait(SECS(60), "the refusal to be reported", || {
        c.ok("vstat", &["-f", &disk.to_string()]).contains("Unsafe migration")
    });
    let j = c.job(disk);
    assert_eq!(
        (j["state"].as_str(), Cluster::nodes_of(&j)),
        (Some("running"), vec![from.clone()]),
        "{j}"
    );
    c.ok("vdel", &[&disk.to_string()]);
    c.wait_state(disk, "cancelled", SECS(30));

    // kill -9 of the daemon: the restarted one adopts the guest, which never stopped.
    c.kill9();
    c.start();
    let before = count();
    c.wait(SECS(30), "the guest to tick on", || count() > before + 3);
    assert_eq!(Cluster::nodes_of(&c.job(id)), vec![first.clone()]);
    let text = std::fs::read_to_string(&console).unwrap();
    assert_eq!(text.matches("VJOB-BEGIN").count(), 1, "started once: {text}");
    let t = ticks(&text, 0);
    assert!(
        t.windows(2).all(|w| w[1] == w[0] + 1),
        "one guest, never restarted: {t:?}"
    );

    // Its node's libvirtd dies (the guest goes on there, unreachable): the node is shown down;
    // past the node timeout vjobd switches it off with its power command (fencing: every
    // process of the node killed), and only then does the vjob start over on the other node.
    lab_sh(&["node-stop", lab.to_str().unwrap(), &first]);
    let other = if first == "node1" { "node2" } else { "node1" };
    c.wait(SECS(20), "the node to be shown down", || {
        c.ok("vstat", &["-n"])
            .lines()
            .any(|l| l.starts_with(first.as_str()) && l.contains("down"))
    });
    c.wait(SECS(90), "the vjob to run again on the other node", || {
        let j = c.job(id);
        j["state"] == "running" && Cluster::nodes_of(&j) == vec![other.to_string()]
    });
    let left = std::process::Command::new("ip")
        .args(["netns", "pids", &format!("vjob-{first}")])
        .output()
        .unwrap();
    assert!(left.stdout.is_empty(), "the fenced node still runs processes: {left:?}");
    let full = c.ok("vstat", &["-f", &id.to_string()]);
    assert!(
        full.contains(&format!(
            "node {first} did not answer for 3 s and was switched off (fenced)"
        )),
        "{full}"
    );

    // Repaired, it is switched on by hand (its power command starts its libvirtd): the stale
    // record goes once it answers, with no domain there.
    c.ok("vqmgr", &["node", "power", "on", &first]);
    c.wait(SECS(60), "the node to answer and the stale record to go", || {
        !c.ok("vstat", &["-f", &id.to_string()]).contains("stale_copies")
            && domains(&lab, n(&first), FAILURES).is_empty()
    });
    assert_eq!(domains(&lab, n(other), FAILURES), vec![format!("{FAILURES}-{id}-0")]);
    assert_eq!(c.state(id), "running");
    c.ok("vdel", &[&id.to_string()]);
    c.wait(SECS(60), "no domain left", || {
        domains(&lab, 1, FAILURES).is_empty() && domains(&lab, 2, FAILURES).is_empty()
    });
    drop(c);
    let _ = std::fs::remove_dir_all(&work);
}
