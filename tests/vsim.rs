//! End-to-end tests of `vsim` on a small trace of the project's own (tests/fixtures/small.swf).

use std::process::Command;

fn vsim(args: &[&str]) -> (bool, String, String) {
    let o = Command::new(env!("CARGO_BIN_EXE_vsim")).args(args).output().unwrap();
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).to_string(),
        String::from_utf8_lossy(&o.stderr).to_string(),
    )
}

const TRACE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/small.swf");

#[test]
fn every_policy_replays_the_trace_with_json_metrics_deterministically() {
    let mut bsld = std::collections::HashMap::new();
    for policy in ["fcfs", "easy", "vjob", "ss"] {
        let (ok, out, err) = vsim(&["--trace", TRACE, "--policy", policy, "--json"]);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        for field in [
            "jobs",
            "skipped",
            "mean_wait_s",
            "mean_bounded_slowdown",
            "max_bounded_slowdown",
            "utilization",
            "makespan_s",
            "suspends",
            "resumes",
            "migrations",
            "bytes_moved",
        ] {
            assert!(v.get(field).is_some(), "{policy}: no {field} in {out}");
        }
        assert_eq!(v["jobs"], 40, "{policy}: {out}");
        assert_eq!(v["skipped"], 1, "the job without a run time");
        let u = v["utilization"].as_f64().unwrap();
        assert!(u > 0.0 && u <= 1.0);
        bsld.insert(policy, v["mean_bounded_slowdown"].as_f64().unwrap());
        // Same input, same output (but the wall-clock fields).
        let (_, again, _) = vsim(&["--trace", TRACE, "--policy", policy, "--json"]);
        let w: serde_json::Value = serde_json::from_str(&again).unwrap();
        assert_eq!(v["mean_bounded_slowdown"], w["mean_bounded_slowdown"]);
        assert_eq!(v["makespan_s"], w["makespan_s"]);
    }
    assert!(bsld["easy"] <= bsld["fcfs"], "{bsld:?}");
}

#[test]
fn summary_svg_and_errors() {
    let svg = std::env::temp_dir().join(format!("vsim-test-{}.svg", std::process::id()));
    let (ok, out, err) = vsim(&["--trace", TRACE, "--policy", "vjob", "--svg", svg.to_str().unwrap()]);
    assert!(ok, "{err}");
    assert!(
        out.contains("mean bounded slowdown") && out.contains("8 nodes x 1 cores"),
        "{out}"
    );
    let drawing = std::fs::read_to_string(&svg).unwrap();
    assert!(
        drawing.starts_with("<svg") && drawing.contains("polyline") && drawing.contains("<rect x="),
        "a Gantt for a small run"
    );
    let _ = std::fs::remove_file(&svg);
    let (ok, _, err) = vsim(&["--trace", TRACE, "--policy", "lottery"]);
    assert!(!ok && err.contains("unknown policy `lottery`"));
    let (ok, _, err) = vsim(&["--trace", "/nonexistent.swf"]);
    assert!(!ok && err.contains("/nonexistent.swf: cannot read"));
}

/// tests/fixtures/fragmented.swf: 4 cores free on two 4-core nodes, none on one node, and a
/// 4-core job waiting. The vjob policy moves the 1-core VM in its way, live; without the moves
/// it waits for a suspension (or an end).
#[test]
fn vjob_moves_a_running_vm_live_to_start_a_job_that_fragmentation_keeps_out() {
    let trace = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/fragmented.swf");
    let run = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["--trace", trace, "--cores", "4", "--json"];
        args.extend_from_slice(extra);
        let (ok, out, err) = vsim(&args);
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let moved = run(&["--policy", "vjob"]);
    assert_eq!(moved["migrations"], 1, "{moved}");
    assert_eq!(moved["suspends"], 0, "{moved}");
    let unmoved = run(&["--policy", "vjob", "--no-defragment"]);
    assert_eq!(unmoved["migrations"], 0, "{unmoved}");
    let easy = run(&["--policy", "easy"]);
    assert_eq!(easy["migrations"], 0);
    let wait = |v: &serde_json::Value| v["mean_wait_s"].as_f64().unwrap();
    // The job starts once its VM's room is made (seconds), not when a neighbour ends (hours).
    assert!(wait(&moved) < 60.0, "{moved}");
    assert!(
        wait(&moved) < wait(&unmoved) && wait(&unmoved) < wait(&easy),
        "{moved} {unmoved} {easy}"
    );
}

#[test]
fn a_datacenter_placement_script_bans_nodes_for_every_vjob_in_the_simulation() {
    let dir = std::env::temp_dir().join(format!("vjob-vsim-placement-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("dc.btrp");
    std::fs::write(&script, "namespace dc;\nban($ALL_VMS, @n[1..4]);\n").unwrap();
    let run = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["--trace", TRACE, "--policy", "vjob", "--json"];
        args.extend(extra);
        let (ok, out, err) = vsim(&args);
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let free = run(&[]);
    let banned = run(&["--placement", script.to_str().unwrap()]);
    // Half the 8 nodes are banned: the jobs wider than 4 processors can never run, and the
    // others share 4 nodes.
    assert!(banned["skipped"].as_u64() > free["skipped"].as_u64(), "{banned}");
    assert!(banned["utilization"].as_f64().unwrap() <= 0.5 + 1e-9, "{banned}");
    std::fs::write(&script, "namespace dc;\nban($ALL_VMS, @n9);\n").unwrap();
    let (ok, _, err) = vsim(&["--trace", TRACE, "--placement", script.to_str().unwrap()]);
    assert!(!ok);
    assert!(err.contains("dc.btrp:2:15: unknown node `@n9`"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn the_vmplaces_scenario_runs_every_scheduler_with_the_documented_json_deterministically() {
    let dir = std::env::temp_dir().join(format!("vjob-vsim-vmplaces-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let svg = dir.join("violations.svg");
    let args = [
        "--scenario",
        "vmplaces",
        "--nodes",
        "256",
        "--sites",
        "2",
        "--scheduler",
        "central,dvms,lbo",
        "--load-std",
        "40",
        "--duration",
        "600s",
        "--json",
        "--svg",
        svg.to_str().unwrap(),
    ];
    let (ok, out, err) = vsim(&args);
    assert!(ok, "{err}");
    let runs: Vec<serde_json::Value> = out.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(runs.len(), 3, "{out}");
    for (r, name) in runs.iter().zip(["central", "dvms", "lbo"]) {
        assert_eq!(r["scheduler"], name);
        for key in [
            "nodes",
            "vms",
            "cumulated_violation_s",
            "events",
            "solved",
            "failed",
            "mean_solve_s",
            "p95_solve_s",
            "mean_partition_size",
            "max_partition_size",
            "migrations",
            "inter_site_migrations",
            "messages",
        ] {
            assert!(r.get(key).is_some(), "{name}: no {key} in {r}");
        }
        assert_eq!((r["nodes"].as_u64(), r["vms"].as_u64()), (Some(256), Some(2560)));
        assert!(
            r["events"].as_u64().unwrap() > 0 && r["migrations"].as_u64().unwrap() > 0,
            "{r}"
        );
        assert_eq!(r["plans_rejected"], 0, "every plan passed the checker");
    }
    assert_eq!(runs[0]["max_partition_size"], 256, "central solves the whole cluster");
    assert!(runs[1]["mean_partition_size"].as_f64().unwrap() < 16.0, "{}", runs[1]);
    let picture = std::fs::read_to_string(&svg).unwrap();
    assert!(picture.starts_with("<svg") && picture.matches("<polyline").count() == 3);
    let (_, again, _) = vsim(&args);
    assert_eq!(again, out, "the same seed gives the same JSON");

    let (ok, _, err) = vsim(&["--scenario", "vmplaces", "--scheduler", "hierarchical"]);
    assert!(
        !ok && err.contains("unknown scheduler `hierarchical` (central, dvms, lbo)"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn energy_is_reported_and_power_management_switches_idle_nodes_off_and_back_on() {
    let energy = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["--trace", TRACE, "--policy", "easy", "--json"];
        args.extend_from_slice(extra);
        let (ok, out, err) = vsim(&args);
        assert!(ok, "{err}");
        serde_json::from_str(&out).unwrap()
    };
    let all_on = energy(&[]);
    let kwh = all_on["energy_kwh"].as_f64().unwrap();
    assert!(kwh > 0.0);
    assert_eq!(all_on["energy_kwh_without_power_management"].as_f64(), Some(kwh));
    assert_eq!(
        (all_on["node_boots"].as_u64(), all_on["node_shutdowns"].as_u64()),
        (Some(0), Some(0))
    );

    let managed = energy(&["--power", "--idle-time", "1m", "--boot-time", "2m"]);
    assert_eq!(managed["jobs"], all_on["jobs"], "every job still runs");
    assert!(managed["node_shutdowns"].as_u64().unwrap() > 0 && managed["node_boots"].as_u64().unwrap() > 0);
    assert!(
        managed["energy_kwh"].as_f64().unwrap() < managed["energy_kwh_without_power_management"].as_f64().unwrap(),
        "{managed}"
    );
    let (ok, _, err) = vsim(&["--trace", TRACE, "--power", "--idle-time", "soon"]);
    assert!(!ok && err.contains("--idle-time"), "{err}");
}

/// SWF lines (18 fields): job, submit, wait, run, procs, cpu, mem, req procs, req time, req
/// mem, status, user, group, app, queue, partition, preceding, think.
fn swf_job(id: u32, submit: u64, run: u64, user: u32) -> String {
    format!("{id} {submit} -1 {run} 1 -1 -1 1 {run} -1 1 {user} 1 1 1 1 -1 -1\n")
}

#[test]
fn with_fairshare_a_light_user_is_not_stuck_behind_a_heavy_users_backlog() {
    // One core; user 1 queues six 1000 s jobs, user 2 one job just after.
    let mut trace = String::from("; MaxNodes: 1\n; MaxProcs: 1\n");
    for i in 0..6 {
        trace.push_str(&swf_job(i + 1, i as u64, 1000, 1));
    }
    trace.push_str(&swf_job(7, 10, 1000, 2));
    let path = std::env::temp_dir().join(format!("vjob-vsim-fairshare-{}.swf", std::process::id()));
    std::fs::write(&path, trace).unwrap();
    let p = path.to_str().unwrap();
    let wait_of_2 = |extra: &[&str]| {
        let mut args = vec!["--trace", p, "--policy", "easy", "--json"];
        args.extend_from_slice(extra);
        let (ok, out, err) = vsim(&args);
        assert!(ok, "{err}");
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        v["user_mean_wait_s"]["2"].as_f64().unwrap_or_else(|| panic!("{out}"))
    };
    let fifo = wait_of_2(&[]);
    let fair = wait_of_2(&["--fairshare", "1h"]);
    assert!(fifo > 5000.0, "first come, first served: behind all six ({fifo} s)");
    assert!(fair < 1000.0, "fair share: next after the running job ({fair} s)");
    let (ok, _, err) = vsim(&["--trace", p, "--fairshare", "0s"]);
    assert!(!ok && err.contains("more than zero"), "{err}");
    let _ = std::fs::remove_file(&path);
}
