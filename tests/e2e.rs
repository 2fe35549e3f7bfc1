//! End-to-end tests: a real `vjobd` on a simulated cluster, driven by the real commands.

mod common;

use std::time::Duration;

use common::{job, nodes, two_nodes, Cluster, FAST_HYPERVISOR};

const SECS: fn(u64) -> Duration = Duration::from_secs;

#[test]
fn submit_run_complete_with_exit_codes() {
    let c = two_nodes("complete");
    let ok = c.submit(&c.spec("ok.toml", &job("ok", "batch", 2, 1, "1GiB", "1s")), &[]);
    let bad = c.spec(
        "bad.toml",
        &format!("{}sim_exit_code = 3\n", job("bad", "batch", 1, 1, "1GiB", "1s")),
    );
    let bad = c.submit(&bad, &[]);
    let running = c.wait_state(ok, "running", SECS(10));
    assert_eq!(running["vms"].as_array().unwrap().len(), 2);
    let done = c.wait_state(ok, "completed", SECS(15));
    assert_eq!(done["exit_code"], 0);
    let failed = c.wait_state(bad, "failed", SECS(15));
    assert_eq!(failed["exit_code"], 3);
    // The table and the full view show them.
    let table = c.ok("vstat", &[]);
    assert!(
        table
            .lines()
            .any(|l| l.starts_with(&format!("{ok} ")) && l.contains(" C ")),
        "{table}"
    );
    let full = c.ok("vstat", &["-f", &bad.to_string()]);
    assert!(
        full.contains("exit_code = 3") && full.contains("failed, exit code 3"),
        "{full}"
    );
}

/// The scenario of the foundation issue, with its configuration and spec files as given.
#[test]
fn express_job_preempts_lowprio_which_resumes_and_completes() {
    let demo = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/examples/cluster.toml")).unwrap();
    let body: String = demo
        .lines()
        .filter(|l| !l.starts_with("state_dir") && !l.starts_with("socket"))
        .map(|l| format!("{l}\n"))
        .collect();
    let c = Cluster::new("preempt", &body);
    let examples = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/jobs");
    let low = c.submit(std::path::Path::new(&format!("{examples}/lowprio.toml")), &[]);
    let j = c.wait_state(low, "running", SECS(15));
    assert_eq!(Cluster::nodes_of(&j), vec!["n1", "n2"], "lowprio runs on both nodes");
    let express = c.submit(std::path::Path::new(&format!("{examples}/express.toml")), &[]);
    c.wait_state(low, "suspended", SECS(20));
    c.wait(SECS(20), "lowprio's VMs to be saved to disk", || {
        c.job(low)["vms"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["state"] == "sleeping")
    });
    c.wait_state(express, "running", SECS(20));
    assert_eq!(c.state(low), "suspended");
    let e = c.wait_state(express, "completed", SECS(20));
    assert_eq!(e["exit_code"], 0);
    let j = c.wait_state(low, "running", SECS(20));
    assert_eq!(j["preemptions"], 1);
    c.wait_state(low, "completed", SECS(40));
    let full = c.ok("vstat", &["-f", &low.to_string()]);
    assert!(full.contains(&format!("preempted by job {express}")), "{full}");
    assert!(
        full.contains("states = queued ") && full.contains(" > running ") && full.contains(" > suspended "),
        "{full}"
    );
    let detail = c.ok("vstat", &["-f", "--json", &low.to_string()]);
    let j = &serde_json::from_str::<serde_json::Value>(&detail).unwrap()[0];
    let states: Vec<&str> = (j["detail"]["states"].as_array().unwrap().iter())
        .map(|c| c["state"].as_str().unwrap())
        .collect();
    assert_eq!(states, ["queued", "running", "suspended", "running", "completed"]);
    common::check_state_history(j).unwrap();
}

#[test]
fn vdel_by_the_owner_cancels_and_cleans_up() {
    let c = two_nodes("vdel");
    let id = c.submit(&c.spec("long.toml", &job("long", "batch", 2, 2, "1GiB", "1h")), &[]);
    c.wait_state(id, "running", SECS(10));
    let queued = c.submit(&c.spec("q.toml", &job("q", "batch", 2, 4, "1GiB", "1h")), &[]);
    c.ok("vdel", &[&id.to_string(), &queued.to_string()]);
    assert_eq!(c.state(id), "cancelled");
    assert_eq!(c.state(queued), "cancelled");
    c.wait(SECS(10), "the VMs to be destroyed", || {
        let nodes = c.ok("vstat", &["-n", "--json"]);
        let v: serde_json::Value = serde_json::from_str(&nodes).unwrap();
        v.as_array()
            .unwrap()
            .iter()
            .all(|n| n["vms"].as_array().unwrap().is_empty())
    });
    c.wait(SECS(10), "the VM records to be gone", || {
        c.job(id)["vms"]
            .as_array()
            .unwrap()
            .iter()
            .all(|v| v["state"] == "gone")
    });
    // Deleting again is no error, and changes nothing.
    c.ok("vdel", &[&id.to_string()]);
    assert_eq!(c.state(id), "cancelled");
    let o = c.run("vdel", &["999"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no job 999"));
}

#[test]
fn another_user_may_not_delete_or_administer() {
    if !nix::unistd::geteuid().is_root() {
        common::prerequisite::missing(
            "another_user_may_not_delete_or_administer",
            "running a client as another user needs root",
        );
        return;
    }
    use std::os::unix::process::CommandExt;
    let c = two_nodes("perm");
    let id = c.submit(&c.spec("long.toml", &job("long", "batch", 1, 2, "1GiB", "1h")), &[]);
    c.wait_state(id, "running", SECS(10));
    // Copies of the commands where `nobody` can surely run them, whatever the checkout's modes.
    let bin = c.dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    for (name, path) in [
        ("vdel", env!("CARGO_BIN_EXE_vdel")),
        ("vqmgr", env!("CARGO_BIN_EXE_vqmgr")),
        ("vstat", env!("CARGO_BIN_EXE_vstat")),
        ("vsub", env!("CARGO_BIN_EXE_vsub")),
    ] {
        std::fs::copy(path, bin.join(name)).unwrap();
    }
    let as_nobody = |name: &str, args: &[&str]| {
        let mut cmd = std::process::Command::new(bin.join(name));
        cmd.env("VJOB_SOCKET", &c.socket)
            .current_dir(&c.dir)
            .args(args)
            .uid(65534)
            .gid(65534);
        cmd.output().unwrap()
    };
    let o = as_nobody("vdel", &[&id.to_string()]);
    assert!(!o.status.success(), "vdel by nobody must fail");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("job {id} belongs to root")) && err.contains("only its owner or an administrator"),
        "{err}"
    );
    assert_eq!(c.state(id), "running", "the job is untouched");
    let o = as_nobody("vqmgr", &["queue", "stop", "batch"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("needs an administrator"));
    // nobody may look, and submit a job of their own, and delete that one.
    let o = as_nobody("vstat", &[]);
    assert!(o.status.success());
    let spec = c.spec("mine.toml", &job("mine", "batch", 1, 1, "1GiB", "1h"));
    let o = as_nobody("vsub", &[spec.to_str().unwrap()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let mine: u64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
    assert_eq!(c.job(mine)["user"], "nobody");
    let o = as_nobody("vdel", &[&mine.to_string()]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(c.state(mine), "cancelled");
    // vjobd (root) writes a job's output as its owner: where they may, and theirs.
    use std::os::unix::fs::MetadataExt;
    let theirs = std::env::temp_dir().join(format!("vjob-nobody-{}.out", std::process::id()));
    let forbidden = format!("/root/vjob-nobody-{}.out", std::process::id());
    for out in [theirs.to_str().unwrap(), &forbidden] {
        let o = as_nobody("vsub", &["-o", out, "--sim-runtime", "100ms", "--wrap", "true"]);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let id: u64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
        c.wait(SECS(20), "the output to be written or lost", || {
            let full = c.ok("vstat", &["-f", &id.to_string()]);
            full.contains("output written") || full.contains("output lost")
        });
    }
    assert_eq!(std::fs::metadata(&theirs).unwrap().uid(), 65534, "the file is nobody's");
    assert!(
        !std::path::Path::new(&forbidden).exists(),
        "nobody may not write in /root"
    );
    let _ = std::fs::remove_file(&theirs);
    // The owner (root here) may.
    c.ok("vdel", &[&id.to_string()]);
    assert_eq!(c.state(id), "cancelled");
}

#[test]
fn malformed_and_impossible_specs_are_refused_with_their_place() {
    let c = two_nodes("malformed");
    let refuse = |text: &str| {
        let p = c.spec("bad.toml", text);
        let o = c.run("vsub", &[p.to_str().unwrap()]);
        assert!(!o.status.success());
        assert!(o.stdout.is_empty(), "nothing on stdout");
        String::from_utf8_lossy(&o.stderr).to_string()
    };
    let e = refuse("name = \"x\"\n\n[vm]\ncount = \"two\"\n[run]\nscript = \"x\"\n");
    assert!(e.contains("bad.toml: line 4: field vm.count"), "{e}");
    let e = refuse("[vm]\ncount = 1\ncolour = \"red\"\n[run]\nscript = \"x\"\n");
    assert!(e.contains("line 3: field vm.colour: unknown field `colour`"), "{e}");
    let e = refuse("[vm\n");
    assert!(e.contains("bad.toml: line 1"), "{e}");
    let e = refuse(&job("big", "batch", 1, 8, "1GiB", "1s"));
    assert!(e.contains("bigger than every node"), "{e}");
    let e = refuse(&job("wide", "batch", 3, 4, "1GiB", "1s"));
    assert!(e.contains("cannot all fit in the whole cluster"), "{e}");
    let e = refuse(&job("nowhere", "nosuch", 1, 1, "1GiB", "1s"));
    assert!(e.contains("no queue named `nosuch`"), "{e}");
    // A 14 MB script: refused by vsub itself, the limit named, the connection never broken.
    let huge = format!(
        "name = \"huge\"\n[vm]\ncount = 1\n[run]\nscript = \"\"\"\n{}\"\"\"\n",
        "echo 0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\n".repeat(200_000)
    );
    let e = refuse(&huge);
    assert!(
        e.contains("bad.toml: the spec and the files it names make a request of"),
        "{e}"
    );
    assert!(
        e.contains("more than vjobd takes (1MiB)") && !e.contains("Broken pipe"),
        "{e}"
    );
    assert!(c.jobs().is_empty(), "no job was created");
    let o = c.run("vsub", &["/nonexistent/job.toml"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("/nonexistent/job.toml: cannot read"));
}

#[test]
fn kill9_and_restart_keep_running_and_suspended_vjobs() {
    let c = two_nodes("restart");
    let low = c.submit(&c.spec("low.toml", &job("low", "batch", 2, 4, "2GiB", "8s")), &[]);
    c.wait_state(low, "running", SECS(10));
    let high = c.submit(&c.spec("high.toml", &job("high", "express", 1, 4, "2GiB", "1h")), &[]);
    c.wait_state(high, "running", SECS(15));
    assert_eq!(c.state(low), "suspended");
    let queued = c.submit(&c.spec("q.toml", &job("q", "batch", 1, 1, "1GiB", "1s")), &["--hold"]);
    c.kill9();
    c.start();
    assert_eq!(c.state(high), "running");
    assert_eq!(c.state(low), "suspended");
    assert_eq!(c.state(queued), "held");
    // The restarted daemon adopted the running VM: it does not start it twice.
    c.decided_since_now();
    let full = c.ok("vstat", &["-f", &high.to_string()]);
    assert_eq!(full.matches("started on").count(), 1, "booted once: {full}");
    assert!(!full.contains("failed"), "{full}");
    // And it keeps scheduling: when high goes, low resumes and completes.
    c.ok("vdel", &[&high.to_string()]);
    c.wait_state(low, "running", SECS(15));
    c.wait_state(low, "completed", SECS(20));
    c.ok("vqmgr", &["job", "release", &queued.to_string()]);
    c.wait_state(queued, "completed", SECS(15));
}

#[test]
fn a_thousand_concurrent_submissions_survive_kill9() {
    let c = two_nodes("thousand");
    let spec = c.spec("tiny.toml", &job("tiny", "batch", 1, 1, "64MiB", "1h"));
    let acked = std::sync::Mutex::new(Vec::<u64>::new());
    let attempts = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|s| {
        for _ in 0..4 {
            s.spawn(|| {
                let mut mine = 0;
                while mine < 250 {
                    attempts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    let o = c.cmd("vsub").args(["--hold", spec.to_str().unwrap()]).output().unwrap();
                    if o.status.success() {
                        let id: u64 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
                        acked.lock().unwrap().push(id);
                        mine += 1;
                    } else {
                        std::thread::sleep(Duration::from_millis(20));
                    }
                }
            });
        }
        // Kill the daemon in the middle of the stream, then bring it back.
        c.wait(SECS(60), "300 acknowledged submissions", || {
            acked.lock().unwrap().len() >= 300
        });
        c.kill9();
        std::thread::sleep(Duration::from_millis(300));
        c.start();
    });
    let acked = acked.into_inner().unwrap();
    assert_eq!(acked.len(), 1000);
    let mut unique = acked.clone();
    unique.sort_unstable();
    unique.dedup();
    assert_eq!(unique.len(), 1000, "ids are never reused");
    let present: std::collections::HashSet<u64> = c.jobs().iter().map(|j| j["id"].as_u64().unwrap()).collect();
    let missing: Vec<&u64> = acked.iter().filter(|id| !present.contains(id)).collect();
    assert!(missing.is_empty(), "acknowledged but lost: {missing:?}");
}

#[test]
fn a_short_preemption_pauses_in_memory_and_resumes_in_place() {
    let c = Cluster::new(
        "pause",
        &format!(
            "admins = [\"root\"]\n{FAST_HYPERVISOR}\n{}\n[scheduler]\nshort_preemption = \"1m\"\n\n\
             [[queue]]\nname = \"batch\"\npriority = 10\ndefault = true\n\n[[queue]]\nname = \"express\"\npriority = 100\n",
            nodes(&[("n1", 4, "8GiB"), ("n2", 4, "8GiB")])
        ),
    );
    // low takes every processor, a quarter of the memory.
    let low = c.submit(&c.spec("low.toml", &job("low", "batch", 2, 4, "2GiB", "4s")), &[]);
    let first = Cluster::nodes_of(&c.wait_state(low, "running", SECS(10)));
    // A short express job (30 s walltime) needs processors only: low is paused, not saved.
    let short = format!("walltime = \"30s\"\n{}", job("short", "express", 1, 4, "2GiB", "2s"));
    let high = c.submit(&c.spec("high.toml", &short), &[]);
    c.wait_state(high, "running", SECS(10));
    let j = c.job(low);
    assert_eq!(j["state"], "suspended", "{j}");
    assert!(
        j["vms"].as_array().unwrap().iter().all(|v| v["state"] == "paused"),
        "{j}"
    );
    let mut paused_on: Vec<String> = j["vms"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["node"].as_str().unwrap().to_string())
        .collect();
    paused_on.sort();
    assert_eq!(paused_on, first, "paused where they ran");
    let full = c.ok("vstat", &["-f", &low.to_string()]);
    assert!(
        full.contains(&format!("preempted by job {high}: paused in memory")),
        "{full}"
    );
    assert!(
        std::fs::read_dir(c.dir.join("state").join("images")).map_or(true, |d| d.count() == 0),
        "nothing written to disk"
    );
    // The express job ends: low resumes in place, and its guest time goes on to completion.
    c.wait_state(high, "completed", SECS(10));
    let j = c.wait_state(low, "running", SECS(10));
    assert_eq!(Cluster::nodes_of(&j), first);
    c.wait_state(low, "completed", SECS(15));
    let full = c.ok("vstat", &["-f", &low.to_string()]);
    assert!(!full.contains("suspended to disk"), "never saved to disk: {full}");
    // A long job saves it to disk as before.
    let again = c.submit(&c.spec("low2.toml", &job("low2", "batch", 2, 4, "2GiB", "1h")), &[]);
    c.wait_state(again, "running", SECS(10));
    let long = format!("walltime = \"2h\"\n{}", job("long", "express", 1, 4, "2GiB", "3s"));
    let long = c.submit(&c.spec("long.toml", &long), &[]);
    c.wait_state(long, "running", SECS(15));
    let all_in = |id: u64, state: &str| c.job(id)["vms"].as_array().unwrap().iter().all(|v| v["state"] == state);
    assert!(all_in(again, "sleeping"), "{}", c.job(again));
    c.wait_state(long, "completed", SECS(15));
    c.wait_state(again, "running", SECS(15));
    // (Resumed after a preemption, it is protected for a quantum: a fresh vjob takes its place.)
    c.ok("vdel", &[&again.to_string()]);
    c.wait_state(again, "cancelled", SECS(10));
    let again = c.submit(&c.spec("low3.toml", &job("low3", "batch", 2, 4, "2GiB", "1h")), &[]);
    c.wait_state(again, "running", SECS(10));
    // A paused vjob still holds its memory: a vjob that needs it saves the paused one to disk.
    let short = format!("walltime = \"30s\"\n{}", job("short2", "express", 1, 4, "2GiB", "6s"));
    let short = c.submit(&c.spec("short2.toml", &short), &[]);
    c.wait_state(short, "running", SECS(10));
    assert!(all_in(again, "paused"), "{}", c.job(again));
    let hungry = c.submit(
        &c.spec("hungry.toml", &job("hungry", "express", 1, 4, "7GiB", "1s")),
        &[],
    );
    c.wait_state(hungry, "running", SECS(15));
    assert!(all_in(again, "sleeping"), "{}", c.job(again));
    let full = c.ok("vstat", &["-f", &again.to_string()]);
    assert!(
        full.contains(&format!("preempted by job {hungry}: suspending")),
        "{full}"
    );
    c.wait_state(again, "running", SECS(30));
}

#[test]
fn two_daemons_with_different_cluster_names_on_the_same_nodes_leave_each_other_alone() {
    let shared = std::env::temp_dir().join(format!("vjob-e2e-shared-nodes-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&shared);
    let daemon = |name: &str| {
        let hv = FAST_HYPERVISOR.replace(
            "backend = \"sim\"",
            &format!("backend = \"sim\"\nsim_dir = \"{}\"", shared.display()),
        );
        Cluster::new(
            &format!("shared-{name}"),
            &format!(
                "cluster = \"{name}\"\nadmins = [\"root\"]\n{hv}\n{}",
                nodes(&[("n1", 4, "8GiB"), ("n2", 4, "8GiB")])
            ),
        )
    };
    let (alpha, beta) = (daemon("alpha"), daemon("beta"));
    let a = alpha.submit(&alpha.spec("a.toml", &job("a", "batch", 1, 4, "1GiB", "1h")), &[]);
    let a_node = Cluster::nodes_of(&alpha.wait_state(a, "running", SECS(10)))[0].clone();
    // beta plans around alpha's VM: its own goes to the other node, and a third finds no room.
    let b = beta.submit(&beta.spec("b.toml", &job("b", "batch", 1, 4, "1GiB", "1h")), &[]);
    let b_node = Cluster::nodes_of(&beta.wait_state(b, "running", SECS(10)))[0].clone();
    assert_ne!(a_node, b_node);
    let nodes_seen: serde_json::Value = serde_json::from_str(&beta.ok("vstat", &["-n", "--json"])).unwrap();
    let seen = nodes_seen
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["name"] == a_node.as_str())
        .unwrap();
    assert_eq!(seen["other_vms"], serde_json::json!([format!("alpha-{a}-0")]), "{seen}");
    assert_eq!(seen["cpus_used"], 4, "another cluster's VM is load: {seen}");
    let c = beta.submit(&beta.spec("c.toml", &job("c", "batch", 1, 1, "1GiB", "1h")), &[]);
    beta.decided_since_now();
    assert_eq!(beta.state(c), "queued", "no room left on either node");
    // A restarted beta adopts nothing of alpha's; cancelling its jobs destroys its VMs only.
    beta.kill9();
    beta.start();
    beta.decided_since_now();
    assert_eq!(Cluster::nodes_of(&beta.job(b)), vec![b_node.clone()]);
    beta.ok("vdel", &[&b.to_string(), &c.to_string()]);
    beta.wait(SECS(10), "beta's VM to be gone", || {
        let n: serde_json::Value = serde_json::from_str(&beta.ok("vstat", &["-n", "--json"])).unwrap();
        n.as_array()
            .unwrap()
            .iter()
            .all(|n| n["vms"].as_array().is_none_or(|v| v.is_empty()))
    });
    beta.decided_since_now();
    let j = alpha.job(a);
    assert_eq!(
        (j["state"].as_str(), Cluster::nodes_of(&j)),
        (Some("running"), vec![a_node.clone()]),
        "{j}"
    );
    alpha.ok("vdel", &[&a.to_string()]);
    alpha.wait_state(a, "cancelled", SECS(10));
    drop((alpha, beta));
    let _ = std::fs::remove_dir_all(&shared);
}

#[test]
fn a_panic_in_the_core_ends_vjobd_so_that_it_can_be_started_again() {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: failpoints exist in debug builds only");
        return;
    }
    let c = two_nodes("core-panic");
    let before = c.submit(&c.spec("a.toml", &job("a", "batch", 1, 1, "1GiB", "1h")), &[]);
    c.kill9();
    c.start_with_env(&[("VJOB_FAILPOINTS", "core-submit=panic")]);
    let o = c.run(
        "vsub",
        &[c.spec("b.toml", &job("b", "batch", 1, 1, "1GiB", "1h"))
            .to_str()
            .unwrap()],
    );
    assert!(!o.status.success(), "the submission is not acknowledged");
    let status = c.wait_exit(SECS(20));
    assert_eq!(
        status.code(),
        Some(70),
        "vjobd exits instead of answering 'stopping' forever"
    );
    assert!(c.log().contains("the core thread panicked"), "{}", c.log_tail());
    c.start();
    let ids: Vec<u64> = c.jobs().iter().map(|j| j["id"].as_u64().unwrap()).collect();
    assert_eq!(
        ids,
        vec![before],
        "what was acknowledged is there; the refused one is not"
    );
}
