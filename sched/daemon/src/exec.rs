//! The executor: the only code that turns decisions into hypervisor calls.
//!
//! Hypervisor calls block (a save lasts as long as writing the memory), so they run on a pool of
//! worker threads; each result comes back on a channel to the daemon's loop, which owns all
//! state. [`Run`] follows a plan's dependencies: a step starts when every step it depends on has
//! succeeded; when a step fails, every step that depends on it is skipped, and the daemon plans
//! again from what it then observes. Nothing is retried blindly and nothing is left half done
//! without the next plan knowing it.
//!
//! Every call has a deadline. A call not over by then is given up on ([`Executor::overdue`]):
//! it counts as failed, so the loop goes on, and a fresh worker takes its place; the daemon
//! keeps its VM busy until the call does return ([`Executor::finished`] says it came late).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};
use vjob_hypervisor::{HvError, Hypervisor, VmSpec};

/// One hypervisor call.
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// Define and boot a VM, paused.
    Boot {
        node: String,
        spec: Box<VmSpec>,
    },
    /// Restore a saved VM, paused, then remove its image.
    Restore {
        node: String,
        vm: String,
        image: PathBuf,
    },
    Pause {
        node: String,
        vm: String,
    },
    Unpause {
        node: String,
        vm: String,
    },
    /// Save a VM to its image (it leaves the node).
    Save {
        node: String,
        vm: String,
        image: PathBuf,
    },
    Migrate {
        node: String,
        vm: String,
        to: String,
    },
    Destroy {
        node: String,
        vm: String,
    },
    RemoveImage {
        vm: String,
        image: PathBuf,
    },
    /// Write what a finished job's VMs printed on their consoles (between the guest's begin
    /// and exit markers) to the job's output file, VM after VM, and remove the consoles. `vm`
    /// is the job's first VM, the key of the call.
    CollectOutput {
        vm: String,
        /// Each VM's name and the node it last ran on.
        consoles: Vec<(String, Option<String>)>,
        path: PathBuf,
        /// What to write when no VM left a console (the simulated backend keeps none): the
        /// job's environment and history.
        without_console: Option<String>,
        /// The job's owner: the file is written with their permissions, and is theirs.
        owner: u32,
    },
    /// Switch a machine on or off: the site's command if there is one (killed past
    /// `timeout_ms`), then the backend's own switch if it has one (the simulated nodes).
    Power {
        node: String,
        on: bool,
        command: Option<String>,
        timeout_ms: u64,
    },
}

impl Call {
    /// The node the call is made on (`None`: an image removal, made on shared storage).
    pub fn node(&self) -> Option<&str> {
        match self {
            Call::Boot { node, .. }
            | Call::Restore { node, .. }
            | Call::Pause { node, .. }
            | Call::Unpause { node, .. }
            | Call::Save { node, .. }
            | Call::Migrate { node, .. }
            | Call::Destroy { node, .. }
            | Call::Power { node, .. } => Some(node),
            Call::RemoveImage { .. } | Call::CollectOutput { .. } => None,
        }
    }

    /// The VM the call is about.
    pub fn vm(&self) -> &str {
        match self {
            Call::Boot { spec, .. } => &spec.name,
            Call::Restore { vm, .. }
            | Call::Pause { vm, .. }
            | Call::Unpause { vm, .. }
            | Call::Save { vm, .. }
            | Call::Migrate { vm, .. }
            | Call::Destroy { vm, .. }
            | Call::RemoveImage { vm, .. }
            | Call::CollectOutput { vm, .. } => vm,
            // About no VM: keyed by its node alone.
            Call::Power { .. } => "",
        }
    }

    /// The call's kind, as failpoints name it (`exec-save-after`).
    pub fn op_name(&self) -> &'static str {
        match self {
            Call::Boot { .. } => "boot",
            Call::Restore { .. } => "restore",
            Call::Pause { .. } => "pause",
            Call::Unpause { .. } => "unpause",
            Call::Save { .. } => "save",
            Call::Migrate { .. } => "migrate",
            Call::Destroy { .. } => "destroy",
            Call::RemoveImage { .. } => "remove-image",
            Call::CollectOutput { .. } => "output",
            Call::Power { .. } => "power",
        }
    }

    pub fn describe(&self) -> String {
        match self {
            Call::Boot { node, spec } => format!("boot {} on {node}", spec.name),
            Call::Restore { node, vm, .. } => format!("restore {vm} on {node}"),
            Call::Pause { node, vm } => format!("pause {vm} on {node}"),
            Call::Unpause { node, vm } => format!("unpause {vm} on {node}"),
            Call::Save { node, vm, .. } => format!("save {vm} from {node}"),
            Call::Migrate { node, vm, to } => format!("migrate {vm} from {node} to {to}"),
            Call::Destroy { node, vm } => format!("destroy {vm} on {node}"),
            Call::RemoveImage { vm, .. } => format!("remove the image of {vm}"),
            Call::CollectOutput { path, .. } => format!("write the output to {}", path.display()),
            Call::Power { node, on, .. } => format!("switch {node} {}", if *on { "on" } else { "off" }),
        }
    }
}

/// What a call that succeeded did.
#[derive(Debug, Clone, PartialEq)]
pub enum Done {
    /// What was asked.
    Ok,
    /// The output was written there (`None`: the backend keeps no console, as the simulated one).
    Output(Option<PathBuf>),
}

/// Why a call failed.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error(transparent)]
    Hypervisor(#[from] HvError),
    /// Past its deadline: given up on, though it may still be running.
    #[error("no answer after {after_s} s: given up on (the VM stays busy until the call returns)")]
    GivenUp { after_s: u64 },
    #[error(transparent)]
    Injected(#[from] crate::failpoint::Injected),
    #[error("power command `{command}` {message}")]
    PowerCommand { command: String, message: String },
    #[error("cannot write the output to {}", path.display())]
    Output {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The outcome of one call: the call itself (its VM and node) and what came of it.
#[derive(Debug)]
pub struct CallDone {
    pub id: u64,
    pub call: Call,
    pub result: Result<Done, CallError>,
    pub millis: u64,
}

/// The hypervisor connections, by node name.
pub type Backends = Arc<HashMap<String, Arc<dyn Hypervisor>>>;

/// A pool of worker threads making hypervisor calls.
pub struct Executor {
    tx: Sender<(u64, Call)>,
    rx: Receiver<(u64, Call)>,
    done: Sender<CallDone>,
    backends: Backends,
    next_id: u64,
    workers: usize,
    in_flight: HashMap<u64, InFlight>,
}

/// A call submitted and not returned yet.
struct InFlight {
    op: Call,
    submitted: Instant,
    deadline: Duration,
    /// Given up on: reported failed, still running on its worker.
    abandoned: bool,
}

/// Most workers started in all, replacements of hung ones included: past that, a hung call
/// waits for a worker like any other.
const MAX_WORKERS: usize = 256;

impl Executor {
    /// Starts `threads` workers; results arrive on `done`.
    pub fn start(backends: Backends, threads: usize, done: Sender<CallDone>) -> Executor {
        let (tx, rx) = crossbeam_channel::unbounded::<(u64, Call)>();
        let mut exec = Executor {
            tx,
            rx,
            done,
            backends,
            next_id: 1,
            workers: 0,
            in_flight: HashMap::new(),
        };
        for _ in 0..threads.max(1) {
            exec.spawn_worker();
        }
        exec
    }

    fn spawn_worker(&mut self) {
        let (rx, done, backends) = (self.rx.clone(), self.done.clone(), self.backends.clone());
        std::thread::Builder::new()
            .name(format!("exec-{}", self.workers))
            .spawn(move || {
                for (id, call) in rx {
                    let t0 = Instant::now();
                    let result = perform(&backends, &call);
                    let millis = t0.elapsed().as_millis() as u64;
                    if done
                        .send(CallDone {
                            id,
                            call,
                            result,
                            millis,
                        })
                        .is_err()
                    {
                        return;
                    }
                }
            })
            .expect("spawn an executor thread");
        self.workers += 1;
    }

    /// Queues a call that must be over within `deadline` of now; returns its id.
    pub fn submit(&mut self, op: Call, deadline: Duration) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        tracing::debug!(id, op = %op.describe(), "submitting");
        self.in_flight.insert(
            id,
            InFlight {
                op: op.clone(),
                submitted: Instant::now(),
                deadline,
                abandoned: false,
            },
        );
        self.tx
            .send((id, op))
            .expect("executor threads live as long as the daemon");
        id
    }

    /// Gives up on the calls past their deadlines: each is returned as failed (once), and a
    /// fresh worker replaces the one it holds.
    pub fn overdue(&mut self) -> Vec<CallDone> {
        let mut late = Vec::new();
        for (&id, f) in self.in_flight.iter_mut() {
            if !f.abandoned && f.submitted.elapsed() > f.deadline {
                f.abandoned = true;
                late.push(CallDone {
                    id,
                    call: f.op.clone(),
                    result: Err(CallError::GivenUp {
                        after_s: f.deadline.as_secs(),
                    }),
                    millis: f.submitted.elapsed().as_millis() as u64,
                });
            }
        }
        for _ in &late {
            if self.workers < MAX_WORKERS {
                self.spawn_worker();
            }
        }
        late
    }

    /// Takes note that a call returned; `true` when it had been given up on already.
    pub fn finished(&mut self, id: u64) -> bool {
        self.in_flight.remove(&id).is_some_and(|f| f.abandoned)
    }
}

fn backend<'a>(b: &'a Backends, node: &str) -> Result<&'a Arc<dyn Hypervisor>, HvError> {
    b.get(node).ok_or_else(|| HvError::NoSuchNode(node.to_string()))
}

/// Makes a call, with its failpoints before it and after it took effect.
fn perform(b: &Backends, call: &Call) -> Result<Done, CallError> {
    let op = call.op_name();
    crate::failpoint::hit(&format!("exec-{op}-before"))?;
    let done = make_call(b, call)?;
    crate::failpoint::hit(&format!("exec-{op}-after"))?;
    Ok(done)
}

fn make_call(b: &Backends, call: &Call) -> Result<Done, CallError> {
    match call {
        Call::Boot { node, spec } => backend(b, node)?.start(spec, true)?,
        Call::Restore { node, image, .. } => {
            backend(b, node)?.restore(image, true)?;
            vjob_hypervisor::remove_file_if_any(image)?
        }
        Call::Pause { node, vm } => backend(b, node)?.pause(vm)?,
        Call::Unpause { node, vm } => backend(b, node)?.unpause(vm)?,
        Call::Save { node, vm, image } => backend(b, node)?.save(vm, image)?,
        Call::Migrate { node, vm, to } => {
            let target = backend(b, to)?.migration_target();
            backend(b, node)?.migrate(vm, &target)?
        }
        Call::Destroy { node, vm } => backend(b, node)?.destroy(vm)?,
        // Any node can discard an image on the shared image directory.
        Call::RemoveImage { image, .. } => match b.values().next() {
            Some(any) => any.discard_image(image)?,
            None => vjob_hypervisor::remove_file_if_any(image)?,
        },
        Call::Power {
            node,
            on,
            command,
            timeout_ms,
        } => {
            if let Some(c) = command {
                run_power_command(c, node, Duration::from_millis(*timeout_ms))?;
            }
            match backend(b, node)?.power(*on) {
                Err(HvError::Unsupported { .. }) if command.is_some() => {}
                r => r?,
            }
        }
        Call::CollectOutput {
            consoles,
            path,
            without_console,
            owner,
            ..
        } => {
            return collect_output(b, consoles, path, without_console.as_deref(), *owner)
                .map(Done::Output)
                .map_err(|source| CallError::Output {
                    path: path.clone(),
                    source,
                })
        }
    }
    Ok(Done::Ok)
}

/// Runs a site's power command for `node` with `sh -c`: `%n` in it is the node's name, else the
/// name is its last argument (and `VJOB_NODE` in its environment). Fails when it exits non-zero
/// (with what it printed on stderr) or runs past `timeout` (it is killed).
fn run_power_command(command: &str, node: &str, timeout: Duration) -> Result<(), CallError> {
    use std::io::Read;
    use std::process::{Command, Stdio};
    let quoted = format!("'{}'", node.replace('\'', r"'\''"));
    let line = if command.contains("%n") {
        command.replace("%n", &quoted)
    } else {
        format!("{command} {quoted}")
    };
    let fail = |message: String| CallError::PowerCommand {
        command: line.clone(),
        message,
    };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(&line)
        .env("VJOB_NODE", node)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| fail(format!("could not start: {e}")))?;
    let mut stderr = child.stderr.take().expect("piped");
    let reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let began = Instant::now();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if began.elapsed() < timeout => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!(
                    "did not finish within {} s: killed",
                    timeout.as_secs_f64()
                )));
            }
            Err(e) => return Err(fail(format!("could not be waited for: {e}"))),
        }
    };
    let said = reader.join().unwrap_or_default();
    if status.success() {
        return Ok(());
    }
    let said = said.trim();
    let tail: String = said
        .chars()
        .rev()
        .take(400)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .collect();
    Err(fail(match (status.code(), tail.is_empty()) {
        (Some(c), true) => format!("exited with status {c}"),
        (Some(c), false) => format!("exited with status {c}: {tail}"),
        (None, _) => "was killed by a signal".to_string(),
    }))
}

/// Writes what the VMs printed (between the guest's begin and exit markers) to `path`, VM after
/// VM; removes the consoles. Without any console, writes `without_console` if given, else
/// nothing (`None`).
fn collect_output(
    b: &Backends,
    consoles: &[(String, Option<String>)],
    path: &std::path::Path,
    without_console: Option<&str>,
    owner: u32,
) -> std::io::Result<Option<PathBuf>> {
    let mut text = String::new();
    let mut any = false;
    for (i, (vm, node)) in consoles.iter().enumerate() {
        let Some(console) = node.as_ref().and_then(|n| b.get(n)).and_then(|h| h.console_log(vm)) else {
            continue;
        };
        let Ok(raw) = std::fs::read_to_string(&console) else {
            continue;
        };
        any = true;
        if consoles.len() > 1 {
            text.push_str(&format!("== VM {i} ({vm}) ==\n"));
        }
        let mut inside = false;
        for line in raw.lines() {
            let line = line.trim_end_matches('\r');
            if line.starts_with("VJOB-BEGIN") {
                inside = true;
            } else if line.starts_with("VJOB-EXIT: ") {
                inside = false;
            } else if inside {
                text.push_str(line);
                text.push('\n');
            }
        }
        let _ = std::fs::remove_file(&console);
    }
    match (any, without_console) {
        (false, None) => return Ok(None),
        (false, Some(t)) => text = t.to_string(),
        (true, _) => {}
    }
    as_user(owner, || {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, text)
    })?;
    Ok(Some(path.to_path_buf()))
}

/// Runs `f` with the file-system identity of user `uid` (and their primary group) when vjobd
/// runs as root: a job's output goes only where its owner may write, and is theirs, as
/// slurmd writes it. Linux's fsuid is the calling thread's own, so the other threads (and the
/// core loop) keep root's.
fn as_user<T>(uid: u32, f: impl FnOnce() -> std::io::Result<T>) -> std::io::Result<T> {
    use nix::unistd::{geteuid, setfsgid, setfsuid, Gid, Uid, User};
    if !geteuid().is_root() || uid == 0 {
        return f();
    }
    let gid = User::from_uid(Uid::from_raw(uid))
        .ok()
        .flatten()
        .map_or(Gid::from_raw(65534), |u| u.gid);
    /// Root's identity back, even if `f` panics.
    struct Back;
    impl Drop for Back {
        fn drop(&mut self) {
            setfsuid(Uid::from_raw(0));
            setfsgid(Gid::from_raw(0));
        }
    }
    let _back = Back;
    setfsgid(gid);
    setfsuid(Uid::from_raw(uid));
    f()
}

/// The state of one step of a [`Run`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepState {
    Waiting,
    Started(u64),
    Done,
    Failed,
    Skipped,
}

/// A step: a call and the steps it waits for.
#[derive(Debug, Clone)]
pub struct Step {
    pub op: Call,
    pub deps: Vec<usize>,
    pub state: StepState,
}

/// A step that failed: its VM and what went wrong, rendered with its causes.
#[derive(Debug, Clone, PartialEq)]
pub struct Failure {
    pub vm: String,
    pub node: Option<String>,
    /// The call and its error, e.g. `boot x on b: node b: not enough vcpus ...`.
    pub message: String,
}

/// An error and its causes, each once: `a: b: c`.
pub fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cause = c.source();
    }
    s
}

/// A plan being carried out, step by step, as dependencies allow.
#[derive(Debug, Default)]
pub struct Run {
    pub steps: Vec<Step>,
    /// Steps each step unblocks.
    dependents: Vec<Vec<usize>>,
    missing: Vec<usize>,
    by_call: HashMap<u64, usize>,
    pub failures: Vec<Failure>,
    pub started_at: Option<Instant>,
}

impl Run {
    pub fn new(steps: Vec<Step>) -> Run {
        let mut dependents = vec![Vec::new(); steps.len()];
        for (i, s) in steps.iter().enumerate() {
            for &d in &s.deps {
                dependents[d].push(i);
            }
        }
        let missing = steps.iter().map(|s| s.deps.len()).collect();
        Run {
            steps,
            dependents,
            missing,
            by_call: HashMap::new(),
            failures: Vec::new(),
            started_at: Some(Instant::now()),
        }
    }

    /// Starts every step whose dependencies are all done, up to `max_in_flight` at once, each
    /// with the deadline `deadline` gives it.
    pub fn start_ready(&mut self, exec: &mut Executor, max_in_flight: usize, deadline: impl Fn(&Call) -> Duration) {
        let mut in_flight = self
            .steps
            .iter()
            .filter(|s| matches!(s.state, StepState::Started(_)))
            .count();
        for i in 0..self.steps.len() {
            if in_flight >= max_in_flight {
                break;
            }
            if self.steps[i].state == StepState::Waiting && self.missing[i] == 0 {
                let id = exec.submit(self.steps[i].op.clone(), deadline(&self.steps[i].op));
                self.steps[i].state = StepState::Started(id);
                self.by_call.insert(id, i);
                in_flight += 1;
            }
        }
    }

    /// Records a call's outcome; returns the step it belonged to, if any.
    pub fn finish(&mut self, done: &CallDone) -> Option<usize> {
        let i = self.by_call.remove(&done.id)?;
        match &done.result {
            Ok(_) => {
                self.steps[i].state = StepState::Done;
                for j in self.dependents[i].clone() {
                    self.missing[j] -= 1;
                }
            }
            Err(e) => {
                self.steps[i].state = StepState::Failed;
                self.failures.push(Failure {
                    vm: done.call.vm().to_string(),
                    node: done.call.node().map(str::to_string),
                    message: format!("{}: {}", done.call.describe(), chain(e)),
                });
                self.skip_dependents(i);
            }
        }
        Some(i)
    }

    fn skip_dependents(&mut self, i: usize) {
        let mut stack = self.dependents[i].clone();
        while let Some(j) = stack.pop() {
            if self.steps[j].state == StepState::Waiting {
                self.steps[j].state = StepState::Skipped;
                stack.extend(self.dependents[j].iter().copied());
            }
        }
    }

    /// No step is waiting or in flight.
    pub fn is_over(&self) -> bool {
        self.steps
            .iter()
            .all(|s| matches!(s.state, StepState::Done | StepState::Failed | StepState::Skipped))
    }

    /// Whether a VM has a step not yet over.
    pub fn touches(&self, vm: &str) -> bool {
        self.steps
            .iter()
            .any(|s| matches!(s.state, StepState::Waiting | StepState::Started(_)) && s.op.vm() == vm)
    }

    /// Whether a VM's copy on `node` has a step not yet over (a migration touches both ends).
    pub fn touches_at(&self, vm: &str, node: &str) -> bool {
        self.steps.iter().any(|s| {
            matches!(s.state, StepState::Waiting | StepState::Started(_))
                && s.op.vm() == vm
                && (s.op.node().is_none_or(|n| n == node) || matches!(&s.op, Call::Migrate { to, .. } if to == node))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;
    use vjob_hypervisor::sim::{SimCluster, SimNodeConfig};
    use vjob_hypervisor::{DurationModel, GuestSpec};

    fn backends(dir: &Path) -> Backends {
        let nodes = ["a", "b"].map(|n| SimNodeConfig {
            name: n.into(),
            vcpus: 2,
            memory: 1 << 30,
        });
        let fast = DurationModel {
            boot_ms: 5,
            destroy_ms: 0,
            pause_ms: 0,
            save_overhead_ms: 5,
            migrate_overhead_ms: 5,
            ..Default::default()
        };
        let c = SimCluster::open(dir, &nodes, fast).unwrap();
        let mut map: HashMap<String, Arc<dyn Hypervisor>> = HashMap::new();
        for n in ["a", "b"] {
            map.insert(n.into(), Arc::new(c.node(n).unwrap()));
        }
        Arc::new(map)
    }

    fn spec(name: &str) -> Box<VmSpec> {
        Box::new(VmSpec {
            name: name.into(),
            vcpus: 2,
            memory: 600 << 20,
            guest: GuestSpec::default(),
        })
    }

    #[test]
    fn a_failed_step_skips_what_depends_on_it() {
        let dir = std::env::temp_dir().join(format!("vjob-exec-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut exec = Executor::start(backends(&dir), 2, tx);
        let step = |op, deps| Step {
            op,
            deps,
            state: StepState::Waiting,
        };
        let mut run = Run::new(vec![
            step(
                Call::Boot {
                    node: "a".into(),
                    spec: spec("v"),
                },
                vec![],
            ),
            step(
                Call::Unpause {
                    node: "a".into(),
                    vm: "v".into(),
                },
                vec![0],
            ),
            // b has 1 GiB: a second 600 MiB VM there fails...
            step(
                Call::Boot {
                    node: "b".into(),
                    spec: spec("w"),
                },
                vec![],
            ),
            step(
                Call::Boot {
                    node: "b".into(),
                    spec: spec("x"),
                },
                vec![2],
            ),
            // ... and what depends on it is skipped.
            step(
                Call::Unpause {
                    node: "b".into(),
                    vm: "x".into(),
                },
                vec![3],
            ),
        ]);
        while !run.is_over() {
            run.start_ready(&mut exec, 8, |_| Duration::from_secs(60));
            let done = rx.recv().unwrap();
            assert!(!exec.finished(done.id));
            run.finish(&done);
        }
        let states: Vec<StepState> = run.steps.iter().map(|s| s.state).collect();
        assert!(
            matches!(
                states[..],
                [
                    StepState::Done,
                    StepState::Done,
                    StepState::Done,
                    StepState::Failed,
                    StepState::Skipped
                ]
            ),
            "{states:?}"
        );
        assert_eq!(run.failures.len(), 1);
        assert_eq!(run.failures[0].vm, "x");
        assert!(run.failures[0].message.contains("boot x on b"), "{:?}", run.failures);
    }

    /// A node whose calls never return.
    struct Hung;

    impl Hypervisor for Hung {
        fn node(&self) -> &str {
            "hung"
        }
        fn migration_target(&self) -> String {
            "hung".into()
        }
        fn start(&self, _: &VmSpec, _: bool) -> Result<(), HvError> {
            std::thread::sleep(Duration::from_secs(3600));
            Ok(())
        }
        fn pause(&self, _: &str) -> Result<(), HvError> {
            unimplemented!("only started")
        }
        fn unpause(&self, _: &str) -> Result<(), HvError> {
            unimplemented!("only started")
        }
        fn save(&self, _: &str, _: &Path) -> Result<(), HvError> {
            unimplemented!("only started")
        }
        fn restore(&self, _: &Path, _: bool) -> Result<String, HvError> {
            unimplemented!("only started")
        }
        fn migrate(&self, _: &str, _: &str) -> Result<(), HvError> {
            unimplemented!("only started")
        }
        fn destroy(&self, _: &str) -> Result<(), HvError> {
            Ok(())
        }
        fn list(&self) -> Result<Vec<vjob_hypervisor::DomainInfo>, HvError> {
            unimplemented!("only started")
        }
        fn stats(&self) -> Result<vjob_hypervisor::NodeStats, HvError> {
            unimplemented!("only started")
        }
    }

    #[test]
    fn a_call_past_its_deadline_is_given_up_on_and_its_worker_replaced() {
        let map: HashMap<String, Arc<dyn Hypervisor>> =
            [("hung".to_string(), Arc::new(Hung) as Arc<dyn Hypervisor>)].into();
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut exec = Executor::start(Arc::new(map), 1, tx);
        let boot = Call::Boot {
            node: "hung".into(),
            spec: spec("v"),
        };
        let id = exec.submit(boot, Duration::from_millis(50));
        assert!(exec.overdue().is_empty(), "not before its deadline");
        std::thread::sleep(Duration::from_millis(80));
        let late = exec.overdue();
        assert_eq!(late.len(), 1);
        assert_eq!(late[0].id, id);
        assert!(matches!(late[0].result, Err(CallError::GivenUp { .. })));
        assert!(exec.overdue().is_empty(), "given up on once");
        // The only worker is hung: a fresh one takes the next call.
        let destroy = Call::Destroy {
            node: "hung".into(),
            vm: "w".into(),
        };
        let next = exec.submit(destroy, Duration::from_secs(60));
        let done = rx.recv_timeout(Duration::from_secs(5)).expect("a replacement worker");
        assert_eq!((done.id, done.result.is_ok()), (next, true));
        assert!(!exec.finished(next));
    }
}
