//! Test harness: a `vjobd` on a simulated cluster in a private directory, driven through the
//! real commands (`vsub`, `vstat`, `vdel`, `vqmgr`) found via `CARGO_BIN_EXE_*`.

#![allow(dead_code)]

pub mod prerequisite;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const FAST_HYPERVISOR: &str = r#"
[hypervisor]
backend = "sim"
boot_time = "200ms"
pause_time = "10ms"
destroy_time = "10ms"
save_overhead = "100ms"
save_bandwidth = "16GiB/s"
restore_bandwidth = "16GiB/s"
migrate_overhead = "100ms"
migrate_bandwidth = "16GiB/s"
"#;

pub struct Cluster {
    pub dir: PathBuf,
    pub config: PathBuf,
    pub socket: PathBuf,
    daemon: std::sync::Mutex<Option<Child>>,
}

/// Two 4-cpu / 8 GiB nodes, queues batch (10, default) and express (100), fast actions.
pub fn two_nodes(tag: &str) -> Cluster {
    Cluster::new(
        tag,
        &format!(
        "admins = [\"root\"]\n{FAST_HYPERVISOR}\n{}\n{}",
        nodes(&[("n1", 4, "8GiB"), ("n2", 4, "8GiB")]),
        "[[queue]]\nname = \"batch\"\npriority = 10\ndefault = true\n\n[[queue]]\nname = \"express\"\npriority = 100\n"
    ),
    )
}

pub fn nodes(list: &[(&str, u32, &str)]) -> String {
    list.iter()
        .map(|(n, c, m)| format!("[[node]]\nname = \"{n}\"\ncpus = {c}\nmemory = \"{m}\"\n\n"))
        .collect()
}

impl Cluster {
    /// A cluster whose configuration is `body` plus its own state_dir and socket.
    pub fn new(tag: &str, body: &str) -> Cluster {
        Cluster::with_files(tag, body, &[])
    }

    /// As [`Cluster::new`], with `files` (name, text) written beside the configuration first.
    pub fn with_files(tag: &str, body: &str, files: &[(&str, &str)]) -> Cluster {
        let dir = std::env::temp_dir().join(format!("vjob-e2e-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        // Other users (the refusal tests run a client as `nobody`) must reach the socket.
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        for (name, text) in files {
            std::fs::write(dir.join(name), text).unwrap();
        }
        let socket = dir.join("vjobd.sock");
        let config = dir.join("cluster.toml");
        let text = format!(
            "state_dir = \"{}\"\nsocket = \"{}\"\n{body}",
            dir.join("state").display(),
            socket.display()
        );
        std::fs::write(&config, text).unwrap();
        let c = Cluster {
            dir,
            config,
            socket,
            daemon: std::sync::Mutex::new(None),
        };
        c.start();
        c
    }

    pub fn start(&self) {
        self.start_with_env(&[]);
    }

    /// Starts vjobd with these environment variables (failpoints).
    pub fn start_with_env(&self, env: &[(&str, &str)]) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("vjobd.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_vjobd"))
            .arg("--config")
            .arg(&self.config)
            .env("VJOB_LOG", "debug")
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start vjobd");
        *self.daemon.lock().unwrap() = Some(child);
        self.wait(Duration::from_secs(20), "vjobd to answer", || {
            self.cmd("vstat").output().map(|o| o.status.success()).unwrap_or(false)
        });
    }

    /// Waits for the daemon to exit by itself; its status.
    pub fn wait_exit(&self, within: Duration) -> std::process::ExitStatus {
        let mut status = None;
        self.wait(within, "vjobd to exit", || {
            let mut d = self.daemon.lock().unwrap();
            status = d.as_mut().and_then(|c| c.try_wait().unwrap());
            if status.is_some() {
                *d = None;
            }
            status.is_some()
        });
        status.expect("waited for above")
    }

    /// VMs on the nodes (this cluster's and others') and saved images: (VMs, images).
    pub fn left_behind(&self) -> (usize, usize) {
        let out = self.ok("vstat", &["-n", "--json"]);
        let nodes: Value = serde_json::from_str(&out).unwrap();
        let vms = nodes
            .as_array()
            .unwrap()
            .iter()
            .map(|n| n["vms"].as_array().unwrap().len() + n["other_vms"].as_array().map_or(0, |v| v.len()))
            .sum();
        let images = std::fs::read_dir(self.dir.join("state").join("images")).map_or(0, |d| d.count());
        (vms, images)
    }

    /// Whether the daemon exited by itself (it is then forgotten, and can be started again).
    pub fn exited(&self) -> bool {
        let mut d = self.daemon.lock().unwrap();
        let gone = d.as_mut().is_some_and(|c| c.try_wait().unwrap().is_some());
        if gone {
            *d = None;
        }
        gone
    }

    /// `kill -9` the daemon.
    pub fn kill9(&self) {
        if let Some(mut c) = self.daemon.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("vjobd.log")).unwrap_or_default()
    }

    /// One of the commands, pointed at this cluster's socket.
    pub fn cmd(&self, name: &str) -> Command {
        let bin = match name {
            "vsub" => env!("CARGO_BIN_EXE_vsub"),
            "vstat" => env!("CARGO_BIN_EXE_vstat"),
            "vdel" => env!("CARGO_BIN_EXE_vdel"),
            "vqmgr" => env!("CARGO_BIN_EXE_vqmgr"),
            "vacct" => env!("CARGO_BIN_EXE_vacct"),
            other => panic!("no command {other}"),
        };
        let mut c = Command::new(bin);
        // Submitted jobs write their output files (`vjob-ID.out`) where they were submitted.
        c.env("VJOB_SOCKET", &self.socket).current_dir(&self.dir);
        c
    }

    pub fn run(&self, name: &str, args: &[&str]) -> Output {
        self.cmd(name).args(args).output().expect("run a command")
    }

    /// Runs a command that must succeed; returns its stdout.
    pub fn ok(&self, name: &str, args: &[&str]) -> String {
        let o = self.run(name, args);
        assert!(
            o.status.success(),
            "{name} {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&o.stderr),
            self.log_tail()
        );
        String::from_utf8(o.stdout).unwrap()
    }

    pub fn log_tail(&self) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Writes a job spec into the cluster's directory.
    pub fn spec(&self, name: &str, text: &str) -> PathBuf {
        let p = self.dir.join(name);
        std::fs::write(&p, text).unwrap();
        p
    }

    pub fn submit(&self, spec: &Path, extra: &[&str]) -> u64 {
        let mut args: Vec<&str> = extra.to_vec();
        let s = spec.to_str().unwrap();
        args.push(s);
        let out = self.ok("vsub", &args);
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("vsub printed {out:?}, not an id"))
    }

    pub fn jobs(&self) -> Vec<Value> {
        let out = self.ok("vstat", &["--json", "-x"]);
        serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().clone()
    }

    /// The default listing (`vstat --json`): active jobs and those that ended lately.
    pub fn jobs_listed(&self) -> Vec<Value> {
        let out = self.ok("vstat", &["--json"]);
        serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap().clone()
    }

    pub fn job(&self, id: u64) -> Value {
        let out = self.ok("vstat", &["--json", &id.to_string()]);
        serde_json::from_str::<Value>(&out).unwrap().as_array().unwrap()[0].clone()
    }

    pub fn state(&self, id: u64) -> String {
        self.job(id)["state"].as_str().unwrap().to_string()
    }

    /// Waits until `id` is in `state`.
    pub fn wait_state(&self, id: u64, state: &str, within: Duration) -> Value {
        let mut last = Value::Null;
        self.wait(within, &format!("job {id} to be {state}"), || {
            last = self.job(id);
            last["state"] == state
        });
        last
    }

    /// The server's status (`vstat -B --json`).
    pub fn status(&self) -> Value {
        serde_json::from_str(&self.ok("vstat", &["-B", "--json"])).unwrap()
    }

    /// Waits until the daemon has taken a decision round after everything committed so far and
    /// carried out what it decided: a check that "nothing happened" after this is meaningful,
    /// whatever the daemon's speed.
    pub fn decided_since_now(&self) {
        let before = self.status()["rounds"].as_u64().unwrap();
        self.wait(Duration::from_secs(30), "a decision round, carried out", || {
            let s = self.status();
            s["rounds"].as_u64().unwrap() > before && s["busy"] == false
        });
    }

    pub fn wait(&self, within: Duration, what: &str, mut cond: impl FnMut() -> bool) {
        let t0 = Instant::now();
        while t0.elapsed() < within {
            if cond() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        panic!(
            "timed out after {within:?} waiting for {what}\n--- daemon log ---\n{}",
            self.log_tail()
        );
    }

    /// Nodes of a job's running VMs.
    /// `vplan snapshot` of the running daemon into `out`.
    pub fn snapshot(&self, out: &Path) {
        let o = Command::new(env!("CARGO_BIN_EXE_vplan"))
            .args([
                "snapshot",
                "--socket",
                self.socket.to_str().unwrap(),
                "--out",
                out.to_str().unwrap(),
            ])
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }

    pub fn nodes_of(job: &Value) -> Vec<String> {
        let mut n: Vec<String> = job["vms"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|v| v["state"] == "running")
            .map(|v| v["node"].as_str().unwrap().to_string())
            .collect();
        n.sort();
        n
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(mut c) = self.daemon.lock().unwrap().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// A job spec with `count` VMs of `vcpus` and `mem`, running `runtime` in the simulator.
pub fn job(name: &str, queue: &str, count: u32, vcpus: u32, mem: &str, runtime: &str) -> String {
    format!("name = \"{name}\"\nqueue = \"{queue}\"\n\n[vm]\ncount = {count}\nvcpus = {vcpus}\nmemory = \"{mem}\"\n\n[run]\nscript = \"echo hi\"\nsim_runtime = \"{runtime}\"\n")
}

/// The simulated cluster's state as its backend writes it (`sim-cluster.json` in `sim_dir`),
/// or `None` when it cannot be read.
pub fn sim_state(sim_dir: &Path) -> Option<Value> {
    std::fs::read(sim_dir.join("sim-cluster.json"))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
}

/// The simulated cluster's VMs that execute (not paused, not ended) in `state`
/// ([`sim_state`]), by name: the nodes each runs on. A VM on two nodes at once runs twice.
pub fn sim_running(state: &Value) -> std::collections::BTreeMap<String, Vec<String>> {
    let mut running: std::collections::BTreeMap<String, Vec<String>> = Default::default();
    for (key, vm) in state["vms"].as_object().into_iter().flatten() {
        // A copy left on a node that was cut off is kept as `NAME@NODE`.
        let name = key.split('@').next().unwrap_or(key);
        if vm["exec"].get("Running").is_some() {
            running
                .entry(name.to_string())
                .or_default()
                .push(vm["node"].as_str().unwrap_or("?").to_string());
        }
    }
    running
}

/// Checks a job's recorded states (`detail.states` of `vstat -f --json`) against the legal
/// transitions, as written here apart from the daemon's own table: it starts queued or held,
/// each change is one the state machine allows, times never go back, and (unless the record
/// is full) it ends in the job's current state.
pub fn check_state_history(job: &Value) -> Result<(), String> {
    let legal = |from: &str, to: &str| match from {
        "queued" => matches!(to, "held" | "running" | "cancelled" | "failed"),
        "held" => matches!(to, "queued" | "suspended" | "cancelled"),
        "running" => matches!(to, "suspended" | "completed" | "failed" | "cancelled" | "queued"),
        "suspended" => matches!(to, "running" | "held" | "cancelled" | "failed"),
        _ => false,
    };
    let states: Vec<(f64, &str)> = (job["detail"]["states"].as_array().into_iter().flatten())
        .map(|c| {
            (
                c["time"].as_f64().unwrap_or(f64::NAN),
                c["state"].as_str().unwrap_or("?"),
            )
        })
        .collect();
    let id = &job["id"];
    let Some(&(_, first)) = states.first() else {
        return Err(format!("job {id}: no recorded state"));
    };
    if !matches!(first, "queued" | "held") {
        return Err(format!("job {id}: its first state is {first}"));
    }
    for w in states.windows(2) {
        let ((t0, from), (t1, to)) = (w[0], w[1]);
        if !legal(from, to) {
            return Err(format!(
                "job {id}: {from} -> {to} is not a legal transition: {states:?}"
            ));
        }
        if t1 < t0 {
            return Err(format!("job {id}: {from} -> {to} goes back in time: {states:?}"));
        }
    }
    let last = states.last().map(|s| s.1);
    if states.len() < vjob_api::MAX_STATE_CHANGES && last != job["state"].as_str() {
        return Err(format!("job {id}: its states end in {last:?}, it is {}", job["state"]));
    }
    Ok(())
}
