//! End-to-end tests of the batch features users bring from Slurm and PBS: every spec field as a
//! `vsub` flag, `--wrap`, shell scripts with `#VJOB`/`#SBATCH`/`#PBS` directives, and the small
//! contract workflow tools drive a batch system through (Snakemake's generic cluster executor:
//! submit prints the id, a status command polled until `success` or `failed`, cancel).

mod common;

use std::time::Duration;

use common::{job, two_nodes, Cluster};

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
    // Arrays are refused even then: one job would run where many were asked for.
    let array = c.spec("array.sh", "#!/bin/sh\n#SBATCH --array=0-9\n./task\n");
    let e = refused(&c, &["--ignore-unknown-directives", array.to_str().unwrap()]);
    assert!(
        e.contains("array.sh:2:") && e.contains("job arrays are not supported"),
        "{e}"
    );
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
