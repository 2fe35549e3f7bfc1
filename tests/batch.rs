//! End-to-end tests of the batch features users bring from Slurm and PBS: every spec field as a
//! `vsub` flag, `--wrap`, shell scripts with `#VJOB`/`#SBATCH`/`#PBS` directives, and the small
//! contract workflow tools drive a batch system through (Snakemake's generic cluster executor:
//! submit prints the id, a status command polled until `success` or `failed`, cancel).

mod common;

use std::time::Duration;

use common::{job, sim_running, sim_state, two_nodes, Cluster};

const SECS: fn(u64) -> Duration = Duration::from_secs;

fn submitted(c: &Cluster, args: &[&str]) -> u64 {
    let out = c.ok("vsub", args);
    out.trim()
        .parse()
        .unwrap_or_else(|_| panic!("vsub printed {out:?}, not an id alone"))
}

fn refused(c: &Cluster, args: &[&str]) -> String {
    let o = c.run("vsub", args);
    assert!(!o.status.success(), "vsub {args:?} was accepted");
    assert!(o.stdout.is_empty(), "nothing on stdout when refused");
    String::from_utf8_lossy(&o.stderr).into_owned()
}

#[test]
fn every_spec_field_is_a_flag_and_wrap_runs_a_command_without_a_file() {
    let c = two_nodes("flags");
    let id = submitted(
        &c,
        &[
            "--vms",
            "2",
            "--vcpus",
            "3",
            "--mem",
            "2GiB",
            "-t",
            "1h",
            "-q",
            "express",
            "-N",
            "wrapped",
            "-p",
            "4",
            "--sim-runtime",
            "1s",
            "--wrap",
            "echo hello",
        ],
    );
    let j = c.job(id);
    assert_eq!(
        (
            &j["name"],
            &j["queue"],
            &j["priority"],
            &j["vcpus"],
            &j["memory"],
            &j["walltime_s"]
        ),
        (
            &"wrapped".into(),
            &"express".into(),
            &4.into(),
            &3.into(),
            &(2u64 << 30).into(),
            &3600.0.into()
        ),
        "{j}"
    );
    assert_eq!(j["vms"].as_array().unwrap().len(), 2, "{j}");
    let full = c.ok("vstat", &["-f", &id.to_string()]);
    assert!(full.contains("echo hello"), "{full}");
    c.wait_state(id, "completed", SECS(20));

    // The command line wins over the spec file.
    let spec = c.spec("a.toml", &job("a", "batch", 1, 1, "1GiB", "1s"));
    let id = submitted(&c, &["--vcpus", "2", "--walltime", "10m", spec.to_str().unwrap()]);
    let j = c.job(id);
    assert_eq!(
        (&j["vcpus"], &j["walltime_s"], &j["queue"]),
        (&2.into(), &600.0.into(), &"batch".into())
    );

    // Bad values are refused by vsub, naming the flag; a file is needed without --wrap.
    let e = refused(&c, &["--mem", "4", "--wrap", "true"]);
    assert!(e.contains("--mem 4:") && e.contains("has no unit"), "{e}");
    let e = refused(&c, &["--vcpus", "0", "--wrap", "true"]);
    assert!(e.contains("--vcpus 0: vcpus must be at least 1"), "{e}");
    let e = refused(&c, &["--vms", "2"]);
    assert!(e.contains("<FILE>"), "{e}");
}

#[test]
fn an_sbatch_script_submits_with_its_directives_and_an_unknown_one_fails_with_its_line() {
    let c = two_nodes("directives");
    let script = c.spec(
        "render.sh",
        "#!/bin/bash\n#SBATCH -J render\n#SBATCH --partition=express --time=1:30:00\n\n#SBATCH -N 2 -c 2 --mem=512M\n# a plain comment\n#VJOB --sim-runtime 1s\nsrun ./render\n#SBATCH -c 4\n",
    );
    let id = submitted(&c, &[script.to_str().unwrap()]);
    let j = c.job(id);
    assert_eq!(
        (&j["name"], &j["queue"], &j["vcpus"], &j["memory"], &j["walltime_s"]),
        (
            &"render".into(),
            &"express".into(),
            &2.into(),
            &(512u64 << 20).into(),
            &5400.0.into()
        ),
        "directives read until the first command only: {j}"
    );
    assert_eq!(j["vms"].as_array().unwrap().len(), 2, "{j}");
    assert!(c.ok("vstat", &["-f", &id.to_string()]).contains("srun ./render"));
    c.wait_state(id, "completed", SECS(20));

    // Command-line flags win over directives.
    let id = submitted(&c, &["-q", "batch", "--vcpus", "1", script.to_str().unwrap()]);
    let j = c.job(id);
    assert_eq!((&j["queue"], &j["vcpus"]), (&"batch".into(), &1.into()), "{j}");

    // PBS spells it its own way.
    let pbs = c.spec(
        "sim.pbs",
        "#!/bin/sh\n#PBS -N sim -q batch\n#PBS -l walltime=00:20:00,select=1:ncpus=4:mem=1gb\n#VJOB --sim-runtime 1s\n./sim\n",
    );
    let id = submitted(&c, &[pbs.to_str().unwrap()]);
    let j = c.job(id);
    assert_eq!(
        (&j["name"], &j["vcpus"], &j["memory"], &j["walltime_s"]),
        (&"sim".into(), &4.into(), &(1u64 << 30).into(), &1200.0.into()),
        "{j}"
    );

    // A directive that has no meaning in vjob names its line; skipped when asked, and said so.
    let gpu = c.spec(
        "gpu.sh",
        "#!/bin/sh\n#SBATCH -J gpu\n#SBATCH --gres=gpu:2\n#VJOB --sim-runtime 1s\n./train\n",
    );
    let e = refused(&c, &[gpu.to_str().unwrap()]);
    assert!(
        e.contains("gpu.sh:3: #SBATCH --gres=gpu:2: --gres: has no meaning in vjob"),
        "{e}"
    );
    let id = submitted(&c, &["--ignore-unknown-directives", gpu.to_str().unwrap()]);
    let full = c.ok("vstat", &["-f", &id.to_string()]);
    assert!(
        full.contains("directive on line 3 skipped: --gres: has no meaning in vjob"),
        "{full}"
    );
    // An array directive makes an array; a bad one is refused even then: one job would run
    // where many were asked for.
    let array = c.spec(
        "array.sh",
        "#!/bin/sh\n#SBATCH --array=0-2 -J task\n#VJOB --sim-runtime 100ms\n./task\n",
    );
    let id = submitted(&c, &[array.to_str().unwrap()]);
    c.wait(SECS(30), "the three tasks to complete", || {
        let out = c.ok("vstat", &["--format", "%i %T %j", "--noheader", &id.to_string()]);
        out == format!("{id}[0] completed task\n{id}[1] completed task\n{id}[2] completed task\n")
    });
    let bad = c.spec("bad.sh", "#!/bin/sh\n#SBATCH --array=3-1\n./task\n");
    let e = refused(&c, &["--ignore-unknown-directives", bad.to_str().unwrap()]);
    assert!(e.contains("bad.sh:2:") && e.contains("backwards"), "{e}");
}

/// What Snakemake's generic cluster executor does: `cluster-generic-submit-cmd` prints the id
/// (`--parsable`), `cluster-generic-status-cmd` is polled with it until `success` or `failed`,
/// and `cluster-generic-cancel-cmd` gets several ids at once, some of which may have ended.
#[test]
fn vjob_drives_like_a_batch_system_for_snakemakes_generic_cluster_executor() {
    let c = two_nodes("workflow");
    let submit = |runtime: &str, code: &str| {
        let rule = c.spec(
            "rule.sh",
            "#!/bin/sh\n# properties = {\"rule\": \"align\"}\n#SBATCH -J snakejob.align\nsnakemake --snakefile Snakefile align\n",
        );
        submitted(
            &c,
            &[
                "--parsable",
                "--sim-runtime",
                runtime,
                "--sim-exit-code",
                code,
                rule.to_str().unwrap(),
            ],
        )
    };
    let status = |id: u64| c.ok("vstat", &["--status", &id.to_string()]);
    let (ok, bad) = (submit("1s", "0"), submit("1s", "3"));
    let long = [submit("1h", "0"), submit("1h", "0")];
    for (id, want) in [(ok, "success\n"), (bad, "failed\n")] {
        let mut seen = Vec::new();
        c.wait(SECS(30), &format!("job {id} to end"), || {
            let s = status(id);
            assert!(["running\n", "success\n", "failed\n"].contains(&s.as_str()), "{s:?}");
            seen.push(s.clone());
            s != "running\n"
        });
        assert_eq!(seen.last().map(String::as_str), Some(want), "{seen:?}");
    }
    assert_eq!(status(long[0]), "running\n");
    // Cancel of several ids, one of which ended already: no error.
    c.ok("vdel", &[&long[0].to_string(), &long[1].to_string(), &ok.to_string()]);
    for id in long {
        c.wait_state(id, "cancelled", SECS(10));
        assert_eq!(status(id), "failed\n");
    }
    assert_eq!(status(ok), "success\n", "a job that ended long before still answers");
    let o = c.run("vstat", &["--status", "999"]);
    assert!(!o.status.success() && String::from_utf8_lossy(&o.stderr).contains("no job 999"));
}

#[test]
fn dependencies_wait_for_their_jobs_and_one_that_can_never_be_met_waits_or_is_cancelled() {
    let c = two_nodes("deps");
    let wrap = |args: &[&str]| {
        let mut all = vec!["--vcpus", "1", "--mem", "1GiB"];
        all.extend_from_slice(args);
        submitted(&c, &all)
    };
    let bad = wrap(&["--sim-runtime", "1s", "--sim-exit-code", "2", "--wrap", "false"]);
    let good = wrap(&["--sim-runtime", "1s", "--wrap", "true"]);
    let after_bad = wrap(&[
        "-d",
        &format!("afterok:{bad}"),
        "--sim-runtime",
        "1s",
        "--wrap",
        "never",
    ]);
    let killed = wrap(&[
        "-d",
        &format!("afterok:{bad}"),
        "--kill-on-invalid-dep",
        "--sim-runtime",
        "1s",
        "--wrap",
        "x",
    ]);
    let on_failure = wrap(&[
        "-d",
        &format!("afternotok:{bad}"),
        "--sim-runtime",
        "1s",
        "--wrap",
        "cleanup",
    ]);
    let both = wrap(&[
        "-d",
        &format!("afterok:{good},afterany:{bad}"),
        "--sim-runtime",
        "1s",
        "--wrap",
        "next",
    ]);
    assert_eq!(c.state(both), "queued", "waits while its jobs run");
    c.wait_state(bad, "failed", SECS(20));
    for id in [good, on_failure, both] {
        let j = c.wait_state(id, "completed", SECS(30));
        assert_eq!(j["exit_code"], 0, "{j}");
    }
    c.wait_state(killed, "cancelled", SECS(10));
    let full = c.ok("vstat", &["-f", &killed.to_string()]);
    assert!(
        full.contains(&format!("its dependency can never be met: job {bad} failed")),
        "{full}"
    );
    // afterok on a failed job never runs: queued, saying why.
    assert_eq!(c.state(after_bad), "queued");
    let j = c.job(after_bad);
    assert!(
        j["reason"]
            .as_str()
            .unwrap_or("")
            .contains(&format!("its dependency can never be met: job {bad} failed")),
        "{j}"
    );
    assert!(j["start_time"].is_null(), "{j}");

    // singleton: one unfinished job per user and name at a time.
    let first = wrap(&["-N", "solo", "--sim-runtime", "2s", "--wrap", "a"]);
    let second = wrap(&["-N", "solo", "-d", "singleton", "--sim-runtime", "1s", "--wrap", "b"]);
    c.wait_state(first, "running", SECS(10));
    c.wait(SECS(10), "the singleton to say why it waits", || {
        let j = c.job(second);
        j["state"] == "queued" && j["reason"].as_str().unwrap_or("").contains("singleton")
    });
    let second_started = c.wait_state(second, "completed", SECS(30))["start_time"]
        .as_f64()
        .unwrap();
    let first_ended = c.job(first)["end_time"].as_f64().unwrap();
    assert!(second_started >= first_ended, "{second_started} < {first_ended}");

    // Bad dependencies are refused at submission.
    let e = refused(&c, &["-d", "afterok:999", "--wrap", "x"]);
    assert!(e.contains("--dependency: no job 999"), "{e}");
    let e = refused(&c, &["-d", "before:1", "--wrap", "x"]);
    assert!(e.contains("unknown kind `before`"), "{e}");
    // And directives carry them too.
    let script = c.spec(
        "dep.sh",
        &format!("#!/bin/sh\n#SBATCH --dependency=afterany:{bad}\n#VJOB --sim-runtime 1s\nrun\n"),
    );
    let id = submitted(&c, &[script.to_str().unwrap()]);
    c.wait_state(id, "completed", SECS(20));
}

/// The tasks of array `id` as `vstat -r` lists them: (`ID[INDEX]`, state), in index order.
fn tasks(c: &Cluster, id: u64) -> Vec<(String, String)> {
    let out = c.ok(
        "vstat",
        &["-r", "--format", "%i %T", "--all-states", "--noheader", &id.to_string()],
    );
    out.lines()
        .map(|l| {
            let (i, s) = l
                .split_once(' ')
                .unwrap_or_else(|| panic!("a line of two fields: {l:?}"));
            (i.to_string(), s.to_string())
        })
        .collect()
}

#[test]
fn a_throttled_array_never_runs_more_than_its_throttle_and_every_task_completes_with_its_index_in_its_output() {
    let c = two_nodes("array");
    let id = submitted(
        &c,
        &[
            "--array",
            "0-99%5",
            "-o",
            "out/%x-%A_%a.out",
            "-N",
            "sweep",
            "--sim-runtime",
            "300ms",
            "--wrap",
            "./step",
        ],
    );
    // Sampled on the simulated nodes themselves, not on the records.
    let sim_dir = c.dir.join("state").join("sim");
    let mut most = 0;
    c.wait(SECS(240), "every task to complete", || {
        let running = sim_state(&sim_dir).map(|v| sim_running(&v)).unwrap_or_default();
        let array_vms = running.keys().filter(|vm| vm.starts_with("vjob-")).count();
        most = most.max(array_vms);
        assert!(array_vms <= 5, "{array_vms} tasks run at once: {running:?}");
        let t = tasks(&c, id);
        t.len() == 100 && t.iter().all(|(_, s)| s == "completed")
    });
    assert!(
        most >= 2,
        "the throttle let at most {most} run: tasks ran one at a time"
    );
    let listed = tasks(&c, id);
    assert_eq!(listed[0].0, format!("{id}[0]"));
    assert_eq!(listed[99].0, format!("{id}[99]"));
    for i in [0, 42, 99] {
        let path = c.dir.join(format!("out/sweep-{id}_{i}.out"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert!(text.contains(&format!("VJOB_ARRAY_INDEX={i}\n")), "{text}");
        assert!(text.contains(&format!("VJOB_ARRAY_ID={id}\n")), "{text}");
        assert!(
            text.contains("completed, exit code 0"),
            "a line per state change: {text}"
        );
    }
    assert_eq!(c.ok("vstat", &["--status", &id.to_string()]).trim(), "success");
    // A job without -o writes vjob-ID.out where it was submitted.
    let one = submitted(&c, &["--sim-runtime", "100ms", "--wrap", "true"]);
    c.wait_state(one, "completed", SECS(20));
    c.wait(SECS(10), "the default output file", || {
        c.dir.join(format!("vjob-{one}.out")).exists()
    });
}

#[test]
fn array_tasks_are_named_id_index_in_every_command_and_the_throttle_changes_with_vqmgr() {
    let c = two_nodes("array-refs");
    let id = submitted(&c, &["--array", "0-9%1", "--sim-runtime", "1h", "--wrap", "./long"]);
    let running = |c: &Cluster| tasks(c, id).iter().filter(|(_, s)| s == "running").count();
    c.wait(SECS(20), "one task to run", || running(&c) == 1);
    assert_eq!(tasks(&c, id).len(), 10);
    // Without -r the queued tasks waiting alike share a line, as squeue shows them.
    let folded = c.ok("vstat", &["--format", "%i %T", "--noheader", &id.to_string()]);
    assert!(folded.lines().count() < 10, "{folded}");
    assert!(
        folded
            .lines()
            .any(|l| l.starts_with(&format!("{id}[")) && l.contains("-") && l.ends_with("] queued")),
        "{folded}"
    );
    let j = c.job(id);
    assert_eq!((&j["array_id"], &j["array_index"]), (&id.into(), &0.into()), "{j}");
    assert!(c
        .ok("vstat", &["-f", &format!("{id}[0]")])
        .contains("array_throttle = 1"));

    // One task by its index, the whole array by its id.
    c.ok("vqmgr", &["job", "hold", &format!("{id}[5]")]);
    c.ok("vdel", &[&format!("{id}[3]")]);
    let t = tasks(&c, id);
    assert_eq!((t[3].1.as_str(), t[5].1.as_str()), ("cancelled", "held"), "{t:?}");
    let o = c.run("vdel", &[&format!("{id}[10]")]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains(&format!("array {id} has no task 10 (its tasks: 0-9)")));
    let o = c.run("vqmgr", &["job", "suspend", &id.to_string()]);
    assert!(String::from_utf8_lossy(&o.stderr).contains("is an array of 10 tasks: name one"));

    c.ok("vqmgr", &["job", "set", &id.to_string(), "--throttle", "3"]);
    c.wait(SECS(20), "three tasks to run", || running(&c) == 3);
    c.decided_since_now();
    assert_eq!(running(&c), 3, "never more than the new throttle");
    let e = c.run("vqmgr", &["job", "set", &format!("{id}[1]"), "--throttle", "2"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("applies to a whole array"));

    // A dependency on one task waits for that task only, in either spelling.
    let first = tasks(&c, id)
        .iter()
        .position(|(_, s)| s == "running")
        .expect("a task runs");
    let after_one = submitted(
        &c,
        &[
            "-d",
            &format!("afterany:{id}_{first}:{id}[{first}]"),
            "--sim-runtime",
            "100ms",
            "--wrap",
            "one",
        ],
    );
    c.decided_since_now();
    assert_eq!(c.state(after_one), "queued");
    c.ok("vdel", &[&format!("{id}[{first}]")]);
    c.wait_state(after_one, "completed", SECS(20));
    assert!(running(&c) > 0, "the rest of the array still runs");
    let e = refused(&c, &["-d", &format!("afterok:{id}[10]"), "--wrap", "x"]);
    assert!(e.contains(&format!("--dependency: array {id} has no task 10")), "{e}");

    // A dependency on the array waits for every task.
    let after = submitted(
        &c,
        &[
            "-d",
            &format!("afterany:{id}"),
            "--sim-runtime",
            "100ms",
            "--wrap",
            "next",
        ],
    );
    c.decided_since_now();
    assert_eq!(c.state(after), "queued");
    c.ok("vdel", &[&id.to_string()]);
    c.wait(SECS(20), "every task to be cancelled", || {
        tasks(&c, id).iter().all(|(_, s)| s == "cancelled")
    });
    assert_eq!(c.ok("vstat", &["--status", &id.to_string()]).trim(), "failed");
    c.wait_state(after, "completed", SECS(20));

    // Accounting names tasks the same way.
    let acct = c.ok("vacct", &["-j", &id.to_string(), "--format", "id,state", "-p", "-n"]);
    let lines: Vec<&str> = acct.lines().collect();
    assert_eq!(lines.len(), 10, "{acct}");
    assert_eq!(lines[3], format!("{id}[3]|cancelled|"));
}

#[test]
fn vacct_reports_suspended_time_and_keeps_records_past_the_listing_until_they_are_purged() {
    let c = common::Cluster::new(
        "acct",
        &format!(
            "admins = [\"root\"]\n{}\n{}\n[[queue]]\nname = \"batch\"\npriority = 10\ndefault = true\n\n[[queue]]\nname = \"express\"\npriority = 100\n\n[scheduler]\nkeep_finished = \"1s\"\npurge_after = \"6s\"\n",
            common::FAST_HYPERVISOR,
            common::nodes(&[("n1", 4, "8GiB"), ("n2", 4, "8GiB")]),
        ),
    );
    let low = c.submit(&c.spec("low.toml", &job("low", "batch", 2, 4, "1GiB", "3s")), &[]);
    c.wait_state(low, "running", SECS(20));
    let express = c.submit(
        &c.spec("express.toml", &job("urgent", "express", 1, 4, "1GiB", "1s")),
        &[],
    );
    c.wait_state(low, "suspended", SECS(20));
    c.wait_state(express, "completed", SECS(20));
    c.wait_state(low, "completed", SECS(30));

    let records: serde_json::Value = serde_json::from_str(&c.ok("vacct", &["--json", "-j", &low.to_string()])).unwrap();
    let r = &records[0];
    assert_eq!(
        (&r["suspends"], &r["resumes"], &r["state"]),
        (&1.into(), &1.into(), &"completed".into()),
        "{r}"
    );
    let suspended = r["suspended_s"].as_f64().unwrap();
    let (elapsed, run) = (r["elapsed_s"].as_f64().unwrap(), r["run_s"].as_f64().unwrap());
    assert!(suspended > 0.0 && run >= 3.0, "{r}");
    assert!(
        (elapsed - run - suspended).abs() < 1.5,
        "elapsed = running + suspended (+ switches): {r}"
    );
    assert_eq!(
        r["bytes_moved"],
        serde_json::Value::from(4u64 << 30),
        "two VMs saved and restored: {r}"
    );

    // Past keep_finished the jobs leave vstat's listing, not accounting.
    c.wait(SECS(10), "the jobs to leave the listing", || c.jobs_listed().is_empty());
    let all = c.ok("vacct", &["-s", "completed", "--format", "jobid,name", "-p", "-n"]);
    assert_eq!(all, format!("{low}|low|\n{express}|urgent|\n"));
    let report = c.ok("vacct", &["--report", "users", "-p"]);
    assert!(report.lines().nth(1).unwrap().starts_with("root|2|2|0|0|"), "{report}");
    assert_eq!(
        c.ok("vacct", &["-S", "now-1h", "-E", "now", "-n", "-p", "-o", "jobid"])
            .lines()
            .count(),
        2
    );
    assert_eq!(c.ok("vacct", &["-E", "2000-01-01", "-n"]), "");
    let e = c.run("vacct", &["-o", "colour"]);
    assert!(String::from_utf8_lossy(&e.stderr).contains("no field `colour`"));

    // Past purge_after the records go; ids are never given again, even after a restart.
    c.wait(SECS(90), "the records to be purged", || {
        c.ok("vacct", &["-n"]).is_empty()
    });
    c.kill9();
    c.start();
    let next = submitted(&c, &["--sim-runtime", "100ms", "--wrap", "true"]);
    assert!(next > express, "job {next} reuses an id");
}

#[test]
fn with_fair_share_the_user_with_less_usage_gets_the_next_free_slot_and_vstat_priority_shows_why() {
    use std::os::unix::process::CommandExt;
    let c = common::Cluster::new(
        "fairshare",
        &format!(
            "admins = [\"root\"]\n{}\n{}\n[fairshare]\nhalf_life = \"1h\"\n[priority]\nrecalc = \"200ms\"\n",
            common::FAST_HYPERVISOR,
            common::nodes(&[("n1", 4, "8GiB")]),
        ),
    );
    // A copy of vsub that `nobody` can surely run, whatever the checkout's modes.
    let bin = c.dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::fs::copy(env!("CARGO_BIN_EXE_vsub"), bin.join("vsub")).unwrap();
    let as_nobody = |args: &[&str]| -> u64 {
        let o = std::process::Command::new(bin.join("vsub"))
            .env("VJOB_SOCKET", &c.socket)
            .current_dir(&c.dir)
            .args(args)
            .uid(65534)
            .gid(65534)
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        String::from_utf8_lossy(&o.stdout).trim().parse().unwrap()
    };
    // root uses the whole node for a while: its usage grows.
    let first = submitted(&c, &["--vcpus", "4", "--sim-runtime", "3s", "--wrap", "work"]);
    c.wait_state(first, "running", SECS(20));
    let root_next = submitted(&c, &["--vcpus", "4", "--sim-runtime", "1s", "--wrap", "more"]);
    let nobody_next = as_nobody(&["--vcpus", "4", "--sim-runtime", "1s", "--wrap", "mine"]);
    c.wait(SECS(20), "both waiting jobs to be ranked, nobody's first", || {
        let p: serde_json::Value = serde_json::from_str(&c.ok("vstat", &["--priority", "--json"])).unwrap();
        let ids: Vec<&str> = p
            .as_array()
            .unwrap()
            .iter()
            .map(|j| j["id"].as_str().unwrap())
            .collect();
        ids == [nobody_next.to_string(), root_next.to_string()]
    });
    let table = c.ok("vstat", &["--priority"]);
    assert!(table.contains("FAIRSHARE"), "{table}");
    let shares: serde_json::Value = serde_json::from_str(&c.ok("vstat", &["--shares", "--json"])).unwrap();
    let of = |u: &str| {
        shares
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["user"] == u)
            .cloned()
            .unwrap()
    };
    assert!(of("root")["usage_raw"].as_f64().unwrap() > 0.0, "{shares}");
    assert!(of("root")["factor"].as_f64().unwrap() < 1.0, "{shares}");
    assert_eq!(of("nobody")["factor"], 1.0, "{shares}");
    // Submitted later, nobody's job gets the node first; root's running job was not preempted.
    let nobody_started = c.wait_state(nobody_next, "completed", SECS(30))["start_time"]
        .as_f64()
        .unwrap();
    let root_started = c.wait_state(root_next, "completed", SECS(30))["start_time"]
        .as_f64()
        .unwrap();
    assert!(nobody_started < root_started, "{nobody_started} >= {root_started}");
    assert_eq!(c.job(first)["preemptions"], 0);
    assert!(c
        .ok("vstat", &["--shares"])
        .contains("usage decays by half every 01:00:00"));
}
