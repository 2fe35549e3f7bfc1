//! API benchmark: durable submissions per second from concurrent clients, and `vstat --json`
//! latency with 100,000 jobs in the store. Starts a real `vjobd` (release build) on a simulated
//! cluster whose queue is stopped, so that jobs stay queued and the store grows.
//!
//! Then job arrays and accounting: `vsub --array 0-9999` (one durable commit of 10,000 tasks),
//! and `vacct` over the 100,000 ended jobs that ten such arrays make once cancelled.
//!
//! `cargo bench --bench api` (set `VJOB_BENCH_JOBS` to change the 100,000; `-- arrays` runs the
//! arrays and accounting part alone). Prints a table; results are kept in BENCHMARKS.md.

mod common;
use common::median;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use vjob_api::SubmitRequest;
use vjob_submit::client::Client;

const SPEC: &str =
    "name = \"tiny\"\n[vm]\ncount = 1\nvcpus = 1\nmemory = \"64MiB\"\n[run]\nscript = \"true\"\nsim_runtime = \"1s\"\n";

struct Daemon {
    child: Child,
    socket: PathBuf,
    dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn start(tag: &str) -> Daemon {
    let dir = std::env::temp_dir().join(format!("vjob-bench-{tag}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let socket = dir.join("vjobd.sock");
    let config = dir.join("cluster.toml");
    let mut text = format!(
        "state_dir = \"{}\"\nsocket = \"{}\"\n",
        dir.join("state").display(),
        socket.display()
    );
    for i in 0..16 {
        text.push_str(&format!("[[node]]\nname = \"n{i}\"\ncpus = 32\nmemory = \"128GiB\"\n"));
    }
    text.push_str("[[queue]]\nname = \"batch\"\ndefault = true\nstarted = false\n");
    std::fs::write(&config, text).unwrap();
    let child = Command::new(env!("CARGO_BIN_EXE_vjobd"))
        .arg("--config")
        .arg(&config)
        .env("VJOB_LOG", "warn")
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    while Client::connect(&socket).is_err() {
        assert!(t0.elapsed() < Duration::from_secs(20), "vjobd did not start");
        std::thread::sleep(Duration::from_millis(50));
    }
    Daemon { child, socket, dir }
}

fn request() -> SubmitRequest {
    SubmitRequest {
        file: "tiny.toml".into(),
        spec: SPEC.into(),
        ..Default::default()
    }
}

/// `clients` threads, each with its own connection, submitting `each` jobs; returns jobs/s.
fn submit_library(socket: &Path, clients: usize, each: usize) -> f64 {
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                let mut c = Client::connect(socket).unwrap();
                for _ in 0..each {
                    vjob_submit::vsub::submit(&mut c, request()).unwrap();
                }
            });
        }
    });
    (clients * each) as f64 / t0.elapsed().as_secs_f64()
}

/// `clients` threads each running the `vsub` command `each` times; returns jobs/s.
fn submit_processes(socket: &Path, spec: &Path, clients: usize, each: usize) -> f64 {
    let t0 = Instant::now();
    std::thread::scope(|s| {
        for _ in 0..clients {
            s.spawn(|| {
                for _ in 0..each {
                    let o = Command::new(env!("CARGO_BIN_EXE_vsub"))
                        .arg("--socket")
                        .arg(socket)
                        .arg(spec)
                        .output()
                        .unwrap();
                    assert!(o.status.success());
                }
            });
        }
    });
    (clients * each) as f64 / t0.elapsed().as_secs_f64()
}

fn vstat_ms(socket: &Path, args: &[&str]) -> (f64, usize) {
    command_ms(env!("CARGO_BIN_EXE_vstat"), socket, args)
}

/// Runs a command once (its output read whole); its wall time in ms and output bytes.
fn command_ms(bin: &str, socket: &Path, args: &[&str]) -> (f64, usize) {
    let t0 = Instant::now();
    let o = Command::new(bin)
        .arg("--socket")
        .arg(socket)
        .args(args)
        .output()
        .unwrap();
    let ms = t0.elapsed().as_secs_f64() * 1000.0;
    assert!(
        o.status.success(),
        "{bin} {args:?}: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    (ms, o.stdout.len())
}

/// 10,000-task arrays submitted with `vsub` (each one commit), then cancelled, then `vacct`
/// over the ended jobs.
fn arrays_and_accounting() {
    let d = start("arrays");
    let spec = d.dir.join("tiny.toml");
    std::fs::write(&spec, SPEC).unwrap();
    let spec = spec.to_str().unwrap();
    let vsub = env!("CARGO_BIN_EXE_vsub");
    let one: Vec<f64> = (0..10).map(|_| command_ms(vsub, &d.socket, &[spec]).0).collect();
    let mut arrays = Vec::new();
    let runs: Vec<f64> = (0..10)
        .map(|_| {
            let t0 = Instant::now();
            let o = Command::new(vsub)
                .arg("--socket")
                .arg(&d.socket)
                .args(["--array", "0-9999", spec])
                .output()
                .unwrap();
            let ms = t0.elapsed().as_secs_f64() * 1000.0;
            assert!(o.status.success());
            arrays.push(String::from_utf8(o.stdout).unwrap().trim().to_string());
            ms
        })
        .collect();
    println!(
        "| `vsub` of one job (baseline, same daemon) | 10 | {:.1} | ms |",
        median(one)
    );
    println!(
        "| `vsub --array 0-9999`: 10,000 tasks in one durable commit | 10 | {:.0} | ms |",
        median(runs)
    );
    let vdel = env!("CARGO_BIN_EXE_vdel");
    let runs: Vec<f64> = arrays.iter().map(|a| command_ms(vdel, &d.socket, &[a]).0).collect();
    println!(
        "| `vdel ARRAY`: 10,000 queued tasks cancelled | 10 | {:.0} | ms |",
        median(runs)
    );
    let vacct = env!("CARGO_BIN_EXE_vacct");
    for (what, args) in [
        ("`vacct` (table, default fields)", vec![]),
        (
            "`vacct -p -o id,state,elapsed,suspended`",
            vec!["-p", "-o", "id,state,elapsed,suspended"],
        ),
        ("`vacct --json`", vec!["--json"]),
        ("`vacct --report users`", vec!["--report", "users"]),
        ("`vacct -s completed` (none match)", vec!["-s", "completed"]),
    ] {
        let mut bytes = 0;
        let runs: Vec<f64> = (0..7)
            .map(|_| {
                let (ms, b) = command_ms(vacct, &d.socket, &args);
                bytes = b;
                ms
            })
            .collect();
        println!(
            "| {what} over 100,000 ended jobs ({:.1} MB out) | 7 | {:.0} | ms |",
            bytes as f64 / 1e6,
            median(runs)
        );
    }
}

fn main() {
    let total: usize = std::env::var("VJOB_BENCH_JOBS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    println!("| measurement | runs | median | unit |");
    println!("|---|---|---|---|");
    if std::env::args().any(|a| a == "arrays") {
        arrays_and_accounting();
        return;
    }

    let d = start("submit");
    let spec = d.dir.join("tiny.toml");
    std::fs::write(&spec, SPEC).unwrap();
    for clients in [1, 4, 16] {
        let runs: Vec<f64> = (0..5)
            .map(|_| submit_library(&d.socket, clients, 2000 / clients))
            .collect();
        println!(
            "| durable submissions, {clients} client connection(s), 2,000 jobs a run | 5 | {:.0} | jobs/s |",
            median(runs)
        );
    }
    let runs: Vec<f64> = (0..5).map(|_| submit_processes(&d.socket, &spec, 4, 250)).collect();
    println!(
        "| durable submissions, 4 concurrent `vsub` processes, 1,000 jobs a run | 5 | {:.0} | jobs/s |",
        median(runs)
    );
    drop(d);

    let d = start("vstat");
    let t0 = Instant::now();
    let mut left = total;
    while left > 0 {
        let n = left.min(8 * 1000);
        submit_library(&d.socket, 8, n / 8);
        left -= n;
    }
    eprintln!("loaded {total} jobs in {:.1} s", t0.elapsed().as_secs_f64());
    let mut bytes = 0;
    let runs: Vec<f64> = (0..7)
        .map(|_| {
            let (ms, b) = vstat_ms(&d.socket, &["--json", "-x"]);
            bytes = b;
            ms
        })
        .collect();
    println!(
        "| `vstat --json -x` with {total} jobs in the store ({:.1} MB of JSON) | 7 | {:.0} | ms |",
        bytes as f64 / 1e6,
        median(runs)
    );
    let runs: Vec<f64> = (0..7).map(|_| vstat_ms(&d.socket, &["--json"]).0).collect();
    println!(
        "| `vstat --json` (default listing) with {total} jobs | 7 | {:.0} | ms |",
        median(runs)
    );
    let runs: Vec<f64> = (0..7).map(|_| vstat_ms(&d.socket, &["42"]).0).collect();
    println!(
        "| `vstat 42` (one job) with {total} jobs | 7 | {:.1} | ms |",
        median(runs)
    );
    drop(d);
    arrays_and_accounting();
}
