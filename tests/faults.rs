//! Faults in the middle of a context switch, made on purpose through vjobd's failpoints (debug
//! builds): a crash once a save took effect and before its answer, a restore that hangs past its
//! deadline. After each, every vjob completes and nothing is left behind.

mod common;

use std::time::Duration;

use common::{job, nodes, two_nodes, Cluster, FAST_HYPERVISOR};
use serde_json::Value;

const SECS: fn(u64) -> Duration = Duration::from_secs;

/// Failpoints exist in debug builds only: elsewhere the test says it is skipped.
fn no_failpoints() -> bool {
    if !cfg!(debug_assertions) {
        eprintln!("skipped: failpoints exist in debug builds only");
    }
    !cfg!(debug_assertions)
}

/// No VM on any node and no saved image left.
fn assert_nothing_left(c: &Cluster) {
    c.wait(SECS(20), "no VM and no image left", || c.left_behind() == (0, 0));
}

/// A low-priority vjob on both nodes, then an express one that preempts it.
fn preemption(c: &Cluster) -> (u64, u64) {
    let low = c.submit(&c.spec("low.toml", &job("low", "batch", 2, 4, "1GiB", "6s")), &[]);
    c.wait_state(low, "running", SECS(20));
    let high = c.submit(&c.spec("high.toml", &job("high", "express", 1, 4, "1GiB", "2s")), &[]);
    (low, high)
}

#[test]
fn a_crash_after_a_save_took_effect_and_before_its_answer_loses_nothing() {
    if no_failpoints() {
        return;
    }
    let c = two_nodes("crash-after-save");
    c.kill9();
    c.start_with_env(&[("VJOB_FAILPOINTS", "exec-save-after=abort")]);
    let (low, high) = preemption(&c);
    let status = c.wait_exit(SECS(30));
    assert_eq!(status.code(), None, "vjobd died of the abort: {status:?}");
    c.start();
    for id in [low, high] {
        let j = c.wait_state(id, "completed", SECS(60));
        assert_eq!(j["exit_code"], 0, "{j}");
    }
    assert_nothing_left(&c);
}

/// A request whose commit fails is not acted on: vjobd stops unanswered (exit status 75) rather
/// than keep in memory what the disk does not hold, and starts again from the disk.
#[test]
fn a_failed_commit_of_a_request_stops_vjobd_and_the_request_never_takes_effect() {
    if no_failpoints() {
        return;
    }
    let c = two_nodes("failed-commit");
    c.kill9();
    // The first batch that changes something (the submission) commits; the second (vdel) fails.
    c.start_with_env(&[("VJOB_FAILPOINTS", "request-commit=error@2")]);
    let id = c.submit(
        &c.spec("held.toml", &job("held", "batch", 1, 1, "1GiB", "2s")),
        &["--hold"],
    );
    assert_eq!(c.state(id), "held");
    let o = c.run("vdel", &[&id.to_string()]);
    assert!(!o.status.success(), "vdel was not acknowledged");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("without answering"), "{err}");
    let status = c.wait_exit(SECS(20));
    assert_eq!(status.code(), Some(75), "{status:?}");
    assert!(
        c.log().contains("cannot write the state: vjobd stops"),
        "{}",
        c.log_tail()
    );
    c.start();
    assert_eq!(c.state(id), "held", "the deletion was never written, so never done");
    c.ok("vqmgr", &["job", "release", &id.to_string()]);
    let j = c.wait_state(id, "completed", SECS(30));
    assert_eq!(j["exit_code"], 0, "{j}");
}

#[test]
fn a_restore_that_hangs_past_its_deadline_is_given_up_on_and_the_vjob_still_completes() {
    if no_failpoints() {
        return;
    }
    let c = Cluster::new(
        "hung-restore",
        &format!(
            "admins = [\"root\"]\n{FAST_HYPERVISOR}\n{}\n[scheduler]\naction_timeout = \"1s\"\n\n\
             [[queue]]\nname = \"batch\"\npriority = 10\ndefault = true\n\n[[queue]]\nname = \"express\"\npriority = 100\n",
            nodes(&[("n1", 4, "8GiB"), ("n2", 4, "8GiB")])
        ),
    );
    c.kill9();
    // The first restore sleeps 4 s before it takes effect: given up on after 1 s.
    c.start_with_env(&[("VJOB_FAILPOINTS", "exec-restore-before=sleep:4000@1")]);
    let (low, high) = preemption(&c);
    c.wait_state(high, "completed", SECS(30));
    let j = c.wait_state(low, "completed", SECS(90));
    assert_eq!(j["exit_code"], 0, "{j}");
    assert_eq!(j["preemptions"], 1, "{j}");
    let full: Value = serde_json::from_str(&c.ok("vstat", &["-f", "--json", &low.to_string()])).unwrap();
    let events = full[0]["detail"]["events"].to_string();
    assert!(events.contains("given up on"), "the restore was given up on: {events}");
    assert_nothing_left(&c);
}

/// Every kind of step of a preemption (boot, pause, save, restore, destroy, the store's commit),
/// failed or crashed at, before and after it takes effect: once vjobd runs again (restarted if
/// it died), both vjobs complete and nothing is left.
#[test]
fn a_preemption_survives_a_fault_at_every_step() {
    if no_failpoints() {
        return;
    }
    let cases = [
        "exec-boot-after=abort@2",
        "exec-pause-after=abort",
        "exec-save-before=abort",
        "exec-save-before=error@1",
        "exec-restore-before=error@1",
        "exec-restore-after=abort",
        "exec-destroy-after=abort@1",
        "store-commit=abort@12",
    ];
    for (k, fault) in cases.iter().enumerate() {
        let c = two_nodes(&format!("fault-{k}"));
        c.kill9();
        c.start_with_env(&[("VJOB_FAILPOINTS", fault)]);
        let low = c.submit(&c.spec("low.toml", &job("low", "batch", 2, 4, "1GiB", "6s")), &[]);
        // Once low runs, high preempts it; whenever the fault kills vjobd, it is started again
        // (plainly), and a submission it did not acknowledge is made again.
        let mut high = None;
        // The fault showed: vjobd died, a submission was refused, or a job's history says so.
        let mut fired = false;
        c.wait(SECS(90), &format!("{fault}: both vjobs completed"), || {
            if c.exited() {
                fired = true;
                c.start();
            }
            let state = |id: u64| {
                let o = c.run("vstat", &["--json", &id.to_string()]);
                o.status
                    .success()
                    .then(|| serde_json::from_slice::<Value>(&o.stdout).ok())
                    .flatten()
                    .and_then(|v| v[0]["state"].as_str().map(String::from))
            };
            let low_state = state(low);
            if high.is_none() && low_state.as_deref() == Some("running") {
                let spec = c.spec("high.toml", &job("high", "express", 1, 4, "1GiB", "2s"));
                let o = c.run("vsub", &[spec.to_str().unwrap()]);
                high = o
                    .status
                    .success()
                    .then(|| String::from_utf8_lossy(&o.stdout).trim().parse().unwrap());
                fired |= !o.status.success();
            }
            high.is_some_and(|h| state(h).as_deref() == Some("completed")) && low_state.as_deref() == Some("completed")
        });
        c.kill9();
        c.start();
        for id in [low, high.unwrap()] {
            assert_eq!(c.job(id)["exit_code"], 0, "{fault}: {}", c.job(id));
            let full = c.ok("vstat", &["-f", "--json", &id.to_string()]);
            fired |= full.contains("injected error");
        }
        assert!(fired, "{fault}: the fault never happened");
        assert_nothing_left(&c);
        eprintln!("{fault}: both vjobs completed, nothing left");
    }
}

/// The image storage full (or read-only) while a preemption needs to save its victim: the
/// victim goes on running (never half-saved) and is not tried again for a while, the preemptor
/// waits, saying why; once the storage recovers the preemption happens and both complete,
/// leaving nothing.
fn image_storage_fault(fault: &'static str) {
    let c = two_nodes(&format!("image-{fault}"));
    let sim_dir = c.dir.join("state").join("sim");
    let marker = sim_dir.join("images.fault");
    std::fs::write(&marker, fault).unwrap();
    let low = c.submit(&c.spec("low.toml", &job("low", "batch", 2, 4, "1GiB", "20s")), &[]);
    c.wait_state(low, "running", SECS(20));
    let high = c.submit(&c.spec("high.toml", &job("high", "express", 1, 4, "1GiB", "2s")), &[]);
    let reason = if fault == "full" {
        "No space left on device"
    } else {
        "Read-only file system"
    };
    c.wait(SECS(30), "the failed save to be told", || {
        c.ok("vstat", &["-f", &low.to_string()]).contains(reason)
    });
    c.wait(SECS(10), "both VMs of the victim to execute again", || {
        common::sim_state(&sim_dir).is_some_and(|v| common::sim_running(&v).len() == 2)
    });
    let full = c.ok("vstat", &["-f", &low.to_string()]);
    assert_eq!(c.state(low), "running", "{fault}: {full}");
    assert!(
        full.contains("suspending failed (1 in a row): not preempted again for"),
        "{fault}: {full}"
    );
    assert_eq!(c.state(high), "queued");
    std::fs::remove_file(&marker).unwrap();
    for id in [high, low] {
        let j = c.wait_state(id, "completed", SECS(60));
        assert_eq!(j["exit_code"], 0, "{fault}: {j}");
    }
    let full = c.ok("vstat", &["-f", &low.to_string()]);
    assert!(
        full.contains("suspended to disk"),
        "{fault}: preempted in the end: {full}"
    );
    assert_nothing_left(&c);
}

#[test]
fn a_save_to_full_or_read_only_image_storage_leaves_the_victim_running_and_the_preemption_waits() {
    let runs = ["full", "read-only"].map(|f| std::thread::spawn(move || image_storage_fault(f)));
    for r in runs {
        r.join().expect("passes (its panic above)");
    }
}
