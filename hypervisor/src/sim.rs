//! The simulated backend: a whole cluster of nodes inside the process, moving VMs in real time.
//!
//! Each action takes the time the [`DurationModel`] gives for the VM's memory, holds resources
//! as a real VMM would (a VM being saved keeps its memory until written, a migrating VM occupies
//! both nodes), and refuses to overcommit a node, so planner mistakes surface as errors instead of
//! silently passing. A guest "runs" its program for `sim_runtime_ms` of running time, then ends
//! with `sim_exit_code`, as a real guest powering itself off.
//!
//! The state is a pure function of what is persisted and the wall clock: every record holds the
//! wall-clock time its pending operation ends and how much guest time was left when it last
//! started running, and every call first *settles* the records up to now. So a process that is
//! killed in the middle of a save finds, once restarted, the save finished and the image written,
//! exactly as a real cluster keeps working while its controller is down.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::{DomainInfo, DomainState, DurationModel, HvError, Hypervisor, NodeStats, VmSpec};

/// A node of the simulated cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimNodeConfig {
    pub name: String,
    pub vcpus: u32,
    pub memory: u64,
}

/// Where a copy of a VM left on a node that was down is kept once the VM started elsewhere.
fn stale_key(vm: &str, node: &str) -> String {
    format!("{vm}@{node}")
}

/// Milliseconds since the Unix epoch, the simulated cluster's clock.
fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Exec {
    /// Executing since this wall-clock time.
    Running {
        since: u64,
    },
    Paused,
    Ended {
        exit_code: i32,
    },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum PendingOp {
    /// Booting or restoring; executes (or stays paused) once done.
    Starting { done_at: u64, paused: bool },
    /// Writing the memory to `image`; the VM leaves the node once done. A write that fails
    /// (the image directory full) leaves it as it was, running if `was_running`.
    Saving {
        done_at: u64,
        image: PathBuf,
        #[serde(default)]
        was_running: bool,
    },
    /// Live-migrating to node `to`; the VM moves once done.
    Migrating { done_at: u64, to: String },
}

impl PendingOp {
    fn done_at(&self) -> u64 {
        match self {
            PendingOp::Starting { done_at, .. }
            | PendingOp::Saving { done_at, .. }
            | PendingOp::Migrating { done_at, .. } => *done_at,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SimVm {
    spec: VmSpec,
    node: String,
    exec: Exec,
    /// Guest running time left as of the last change of `exec` (`None`: runs until destroyed).
    remaining_ms: Option<u64>,
    op: Option<PendingOp>,
    /// Why its last save failed, for the call that waits on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    save_failed: Option<String>,
}

/// What a saved image holds: the VM and its guest's progress.
#[derive(Debug, Serialize, Deserialize)]
struct SavedImage {
    spec: VmSpec,
    remaining_ms: Option<u64>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct SimNodeState {
    vcpus: u32,
    memory: u64,
    up: bool,
    #[serde(default)]
    power: SimPower,
    /// Times the machine was switched on: its boot id.
    #[serde(default)]
    boots: u64,
}

/// A simulated machine's power: it answers only when on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SimPower {
    #[default]
    On,
    Off,
    Booting {
        done_at: u64,
    },
    ShuttingDown {
        done_at: u64,
    },
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct SimState {
    nodes: BTreeMap<String, SimNodeState>,
    vms: BTreeMap<String, SimVm>,
    /// Every request refused because it would have overcommitted a node, as its error says
    /// (the last [`MAX_REFUSALS`]), and how many in all: a correct scheduler causes none.
    #[serde(default)]
    refusals: Vec<String>,
    #[serde(default)]
    refused: u64,
}

/// Refusals kept word for word in the state file.
const MAX_REFUSALS: usize = 100;

impl SimVm {
    /// Stops the guest clock at `t`, keeping how much guest time is left.
    fn freeze(&mut self, t: u64) {
        if let Exec::Running { since } = self.exec {
            if let Some(rem) = self.remaining_ms.as_mut() {
                *rem = rem.saturating_sub(t.saturating_sub(since));
            }
            self.exec = Exec::Paused;
        }
    }

    /// When the guest program would end if left running.
    fn guest_end(&self) -> Option<u64> {
        match self.exec {
            Exec::Running { since } => self.remaining_ms.map(|r| since + r),
            _ => None,
        }
    }

    fn uses_processors(&self) -> bool {
        matches!(self.exec, Exec::Running { .. }) || self.op.is_some()
    }

    fn holds_resources(&self) -> bool {
        !matches!(self.exec, Exec::Ended { .. })
    }
}

impl SimState {
    /// Applies every event (guest end, end of a pending operation) that happened up to `now`, in
    /// time order per VM. Saved images are written here (unless `image_fault`), so a save
    /// finished while the process was down is found written afterwards. Returns whether anything
    /// happened.
    fn settle(&mut self, now: u64, image_fault: Option<ImageFault>) -> bool {
        let mut changed = false;
        for n in self.nodes.values_mut() {
            n.power = match n.power {
                SimPower::Booting { done_at } if done_at <= now => SimPower::On,
                SimPower::ShuttingDown { done_at } if done_at <= now => SimPower::Off,
                p => p,
            };
        }
        let names: Vec<String> = self.vms.keys().cloned().collect();
        for name in names {
            while let Some(vm) = self.vms.get_mut(&name) {
                let guest_end = vm.guest_end().filter(|&t| t <= now);
                let op_end = vm.op.as_ref().map(|o| o.done_at()).filter(|&t| t <= now);
                if guest_end.is_some() || op_end.is_some() {
                    changed = true;
                }
                match (guest_end, op_end) {
                    (None, None) => break,
                    (Some(g), o) if o.is_none_or(|o| g < o) => {
                        vm.exec = Exec::Ended {
                            exit_code: vm.spec.guest.sim_exit_code,
                        };
                        vm.remaining_ms = Some(0);
                        // A guest that ends while migrating stays on its source node.
                        if matches!(vm.op, Some(PendingOp::Migrating { .. })) {
                            vm.op = None;
                        }
                    }
                    (_, Some(t)) => {
                        let op = vm.op.take().expect("op_end implies an op");
                        match op {
                            PendingOp::Starting { paused, .. } => {
                                vm.exec = if paused {
                                    Exec::Paused
                                } else {
                                    Exec::Running { since: t }
                                };
                            }
                            PendingOp::Migrating { to, .. } => vm.node = to,
                            PendingOp::Saving { image, was_running, .. } => {
                                let saved = SavedImage {
                                    spec: vm.spec.clone(),
                                    remaining_ms: vm.remaining_ms,
                                };
                                // A failure leaves the VM as it was (as libvirt resumes a domain
                                // whose save failed), so nothing is lost.
                                let written = match &image_fault {
                                    Some(f) => Err(f.error()),
                                    None => write_atomically(&image, &serde_json::to_vec(&saved).unwrap()),
                                };
                                match written {
                                    Ok(()) => {
                                        self.vms.remove(&name);
                                    }
                                    Err(e) => {
                                        tracing::error!(vm = %name, image = %image.display(), error = %e, "simulated save could not write its image; the VM goes on as it was");
                                        if was_running {
                                            vm.exec = Exec::Running { since: t };
                                        }
                                        vm.save_failed = Some(e.to_string());
                                    }
                                }
                            }
                        }
                    }
                    (Some(_), None) => unreachable!("covered by the guard above"),
                }
            }
        }
        changed
    }

    fn used(&self, node: &str) -> (u32, u64, u32) {
        let (mut cpu, mut mem, mut n) = (0u32, 0u64, 0u32);
        for vm in self.vms.values() {
            let here = vm.node == node || matches!(&vm.op, Some(PendingOp::Migrating { to, .. }) if to == node);
            if here && vm.holds_resources() {
                // A paused VM keeps its memory but not its processors.
                if vm.uses_processors() {
                    cpu += vm.spec.vcpus;
                }
                mem += vm.spec.memory;
                if vm.node == node {
                    n += 1;
                }
            }
        }
        (cpu, mem, n)
    }

    fn check_room(&self, node: &str, spec: &VmSpec, op: &'static str) -> Result<(), HvError> {
        let n = self
            .nodes
            .get(node)
            .ok_or_else(|| HvError::NoSuchNode(node.to_string()))?;
        let (cpu, mem, _) = self.used(node);
        let free_cpu = n.vcpus.saturating_sub(cpu);
        if spec.vcpus > free_cpu {
            return Err(HvError::NoRoom {
                node: node.into(),
                vm: spec.name.clone(),
                op,
                resource: "vcpus",
                needed: spec.vcpus as u64,
                free: free_cpu as u64,
            });
        }
        let free_mem = n.memory.saturating_sub(mem);
        if spec.memory > free_mem {
            return Err(HvError::NoRoom {
                node: node.into(),
                vm: spec.name.clone(),
                op,
                resource: "memory",
                needed: spec.memory,
                free: free_mem,
            });
        }
        Ok(())
    }
}

fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    let written = std::fs::write(&tmp, bytes).and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        // Nothing half-written is left behind.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// A fault of the simulated nodes' image storage, while [`SimCluster::image_fault_marker`]
/// exists: its text says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImageFault {
    /// `full`: a save fails once its memory is written (no space left), the VM goes on.
    Full,
    /// `read-only`: a save fails at once, the VM untouched.
    ReadOnly,
}

impl ImageFault {
    fn error(self) -> std::io::Error {
        // ENOSPC and EROFS, worded as the system words them.
        std::io::Error::from_raw_os_error(match self {
            ImageFault::Full => 28,
            ImageFault::ReadOnly => 30,
        })
    }
}

struct Shared {
    state: Mutex<Cached>,
    state_file: PathBuf,
    /// Held (flock) while a caller works on the state, by every process sharing the directory.
    lock_file: PathBuf,
    durations: DurationModel,
    /// How long a simulated machine takes to boot and to shut down.
    boot_ms: std::sync::atomic::AtomicU64,
    shutdown_ms: std::sync::atomic::AtomicU64,
}

/// The state as this process last read or wrote it, and which version of the file that was.
struct Cached {
    state: SimState,
    seen: Option<FileVersion>,
}

/// What tells one write of the state file from another: it is replaced (a new inode) on every
/// write.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileVersion {
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

fn file_version(path: &Path) -> std::io::Result<Option<FileVersion>> {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata(path) {
        Ok(m) => Ok(Some(FileVersion {
            ino: m.ino(),
            len: m.len(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

fn read_state(path: &Path) -> std::io::Result<SimState> {
    match std::fs::read(path) {
        Ok(bytes) => serde_json::from_slice(&bytes).map_err(|e| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "{}: not a simulated cluster state ({e}); move it away to start afresh",
                    path.display()
                ),
            )
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(SimState::default()),
        Err(e) => Err(e),
    }
}

/// Exclusive use of the simulated cluster's state: this process's lock, the directory's file
/// lock (so that several daemons can share the simulated nodes), and the state read afresh if
/// another process changed it.
struct SimGuard<'a> {
    cached: MutexGuard<'a, Cached>,
    state_file: &'a Path,
    _flock: Option<std::fs::File>,
}

impl std::ops::Deref for SimGuard<'_> {
    type Target = SimState;
    fn deref(&self) -> &SimState {
        &self.cached.state
    }
}

impl std::ops::DerefMut for SimGuard<'_> {
    fn deref_mut(&mut self) -> &mut SimState {
        &mut self.cached.state
    }
}

impl SimGuard<'_> {
    /// Records a refusal to overcommit (persisted at once) and hands its error back.
    fn refuse(&mut self, e: HvError) -> HvError {
        if self.refusals.len() >= MAX_REFUSALS {
            self.refusals.remove(0);
        }
        self.refusals.push(e.to_string());
        self.refused += 1;
        self.persist();
        e
    }

    /// Writes the state for the next call, in this process or another.
    fn persist(&mut self) {
        let bytes = serde_json::to_vec(&self.cached.state).expect("sim state serializes");
        match write_atomically(self.state_file, &bytes) {
            Ok(()) => self.cached.seen = file_version(self.state_file).ok().flatten(),
            Err(e) => {
                tracing::error!(file = %self.state_file.display(), error = %e, "cannot persist the simulated cluster")
            }
        }
    }
}

/// The simulated cluster: owns the state of all nodes; hands out one [`SimNode`] per node.
///
/// Its state lives in a directory; processes that open the same directory share the nodes (each
/// call takes a file lock and reads what the others wrote), as clusters sharing hosts do.
#[derive(Clone)]
pub struct SimCluster {
    shared: Arc<Shared>,
}

impl SimCluster {
    /// Opens (or creates) the simulated cluster persisted in `dir`. The node list comes from the
    /// configuration: nodes may be added or resized between runs; the VMs found are kept.
    pub fn open(dir: &Path, nodes: &[SimNodeConfig], durations: DurationModel) -> std::io::Result<SimCluster> {
        std::fs::create_dir_all(dir)?;
        let state_file = dir.join("sim-cluster.json");
        let cluster = SimCluster {
            shared: Arc::new(Shared {
                state: Mutex::new(Cached {
                    state: SimState::default(),
                    seen: None,
                }),
                lock_file: dir.join("sim-cluster.lock"),
                state_file,
                durations,
                boot_ms: 120_000.into(),
                shutdown_ms: 30_000.into(),
            }),
        };
        let mut st = cluster.try_lock()?;
        for n in nodes {
            let (up, power, boots) =
                st.nodes
                    .get(&n.name)
                    .map(|s| (s.up, s.power, s.boots))
                    .unwrap_or((true, SimPower::On, 0));
            st.nodes.insert(
                n.name.clone(),
                SimNodeState {
                    vcpus: n.vcpus,
                    memory: n.memory,
                    up,
                    power,
                    boots,
                },
            );
        }
        st.persist();
        drop(st);
        Ok(cluster)
    }

    /// A connection to one node.
    pub fn node(&self, name: &str) -> Result<SimNode, HvError> {
        if !self.lock().nodes.contains_key(name) {
            return Err(HvError::NoSuchNode(name.to_string()));
        }
        Ok(SimNode {
            cluster: self.clone(),
            name: name.to_string(),
        })
    }

    /// Simulates a node failure (or its repair): a node that is down answers every call with
    /// [`HvError::Unreachable`]; its VMs go on as a real node's do when its libvirtd is down. A
    /// node is also down while the file [`SimCluster::down_marker`] exists, so that operators
    /// and tests can fail a node of a running daemon.
    pub fn set_node_up(&self, name: &str, up: bool) -> Result<(), HvError> {
        let mut st = self.lock();
        st.nodes
            .get_mut(name)
            .ok_or_else(|| HvError::NoSuchNode(name.to_string()))?
            .up = up;
        st.persist();
        Ok(())
    }

    /// How long the simulated machines take to boot and to shut down (2 minutes and 30 s
    /// unless set).
    pub fn set_power_times(&self, boot_ms: u64, shutdown_ms: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        self.shared.boot_ms.store(boot_ms, Relaxed);
        self.shared.shutdown_ms.store(shutdown_ms, Relaxed);
    }

    /// Node `name`'s power.
    pub fn power(&self, name: &str) -> Result<SimPower, HvError> {
        let st = self.lock();
        let n = st
            .nodes
            .get(name)
            .ok_or_else(|| HvError::NoSuchNode(name.to_string()))?;
        Ok(n.power)
    }

    /// Switches node `name` on (it answers once booted) or off (as pulling the plug: its VMs
    /// are lost, and it stops answering at once); switching it to the state it is in or going
    /// to does nothing.
    pub fn switch(&self, name: &str, on: bool) -> Result<(), HvError> {
        use std::sync::atomic::Ordering::Relaxed;
        let mut st = self.lock();
        let now = now_ms();
        let n = st
            .nodes
            .get_mut(name)
            .ok_or_else(|| HvError::NoSuchNode(name.to_string()))?;
        let next = match (n.power, on) {
            (SimPower::Off | SimPower::ShuttingDown { .. }, true) => SimPower::Booting {
                done_at: now + self.shared.boot_ms.load(Relaxed),
            },
            (SimPower::On | SimPower::Booting { .. }, false) => SimPower::ShuttingDown {
                done_at: now + self.shared.shutdown_ms.load(Relaxed),
            },
            (p, _) => p,
        };
        if next == n.power {
            return Ok(());
        }
        n.power = next;
        if on {
            n.boots += 1;
        } else {
            st.vms.retain(|_, v| v.node != name);
        }
        st.persist();
        Ok(())
    }

    /// The file that slows node `name` down while it exists: its actions take as many times
    /// longer as the number it holds says (a node with a failing disk or a saturated link).
    pub fn slow_marker(&self, name: &str) -> PathBuf {
        self.shared.state_file.with_file_name(format!("{name}.slow"))
    }

    /// The file that makes the image storage fail while it exists: `full` or `read-only`
    /// ([`ImageFault`]; anything else counts as full).
    pub fn image_fault_marker(&self) -> PathBuf {
        self.shared.state_file.with_file_name("images.fault")
    }

    fn image_fault(&self) -> Option<ImageFault> {
        let text = std::fs::read_to_string(self.image_fault_marker()).ok()?;
        Some(match text.trim() {
            "read-only" => ImageFault::ReadOnly,
            _ => ImageFault::Full,
        })
    }

    /// The file whose existence takes node `name` down.
    pub fn down_marker(&self, name: &str) -> PathBuf {
        self.shared.state_file.with_file_name(format!("{name}.down"))
    }

    fn reachable(&self, name: &str, up: bool) -> bool {
        up && !self.down_marker(name).exists()
    }

    fn answers(&self, name: &str, n: &SimNodeState) -> bool {
        n.power == SimPower::On && self.reachable(name, n.up)
    }

    pub fn durations(&self) -> &DurationModel {
        &self.shared.durations
    }

    /// [`SimCluster::try_lock`], going on with what this process knows when the shared files
    /// cannot be read (said in the log).
    fn lock(&self) -> SimGuard<'_> {
        match self.try_lock() {
            Ok(g) => g,
            Err(e) => {
                tracing::error!(dir = %self.shared.state_file.display(), error = %e, "cannot read the shared simulated cluster; going on with this process's copy");
                let mut g = SimGuard {
                    cached: self.cached(),
                    state_file: &self.shared.state_file,
                    _flock: None,
                };
                g.settle(now_ms(), self.image_fault());
                g
            }
        }
    }

    fn cached(&self) -> MutexGuard<'_, Cached> {
        // A panic in another caller leaves consistent records (each change is a single assignment
        // sequence under the lock), so a poisoned lock is still usable.
        self.shared
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Takes the state for one call: locks it, reads it again if another process wrote it since,
    /// and settles it up to now (written back if that changed it, so that every process sees
    /// the same events happen once).
    fn try_lock(&self) -> std::io::Result<SimGuard<'_>> {
        let cached = self.cached();
        let flock = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&self.shared.lock_file)?;
        flock.lock()?;
        let mut g = SimGuard {
            cached,
            state_file: &self.shared.state_file,
            _flock: Some(flock),
        };
        let version = file_version(&self.shared.state_file)?;
        if version.is_none() || version != g.cached.seen {
            g.cached.state = read_state(&self.shared.state_file)?;
            g.cached.seen = version;
        }
        if g.settle(now_ms(), self.image_fault()) {
            g.persist();
        }
        Ok(g)
    }
}

/// One node of a [`SimCluster`].
pub struct SimNode {
    cluster: SimCluster,
    name: String,
}

fn sleep_until(t: u64) {
    let now = now_ms();
    if t > now {
        std::thread::sleep(Duration::from_millis(t - now));
    }
}

fn state_name(vm: &SimVm) -> String {
    match (&vm.op, &vm.exec) {
        (Some(PendingOp::Starting { .. }), _) => "starting".into(),
        (Some(PendingOp::Saving { .. }), _) => "being saved".into(),
        (Some(PendingOp::Migrating { to, .. }), _) => format!("migrating to {to}"),
        (None, Exec::Running { .. }) => "running".into(),
        (None, Exec::Paused) => "paused".into(),
        (None, Exec::Ended { exit_code }) => format!("ended (exit code {exit_code})"),
    }
}

impl SimNode {
    /// How long this node's actions take: the cluster's model, slowed by the node's
    /// [`SimCluster::slow_marker`] while it exists.
    fn durations(&self) -> DurationModel {
        let d = *self.cluster.durations();
        let factor = std::fs::read_to_string(self.cluster.slow_marker(&self.name))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .filter(|&f| f > 1);
        match factor {
            None => d,
            Some(f) => DurationModel {
                boot_ms: d.boot_ms * f,
                destroy_ms: d.destroy_ms * f,
                pause_ms: d.pause_ms * f,
                save_overhead_ms: d.save_overhead_ms * f,
                save_bandwidth: d.save_bandwidth / f,
                restore_bandwidth: d.restore_bandwidth / f,
                migrate_overhead_ms: d.migrate_overhead_ms * f,
                migrate_bandwidth: d.migrate_bandwidth / f,
            },
        }
    }

    fn locked(&self) -> Result<SimGuard<'_>, HvError> {
        let st = self.cluster.lock();
        match st.nodes.get(&self.name) {
            Some(n) if self.cluster.answers(&self.name, n) => Ok(st),
            Some(_) => Err(HvError::Unreachable {
                node: self.name.clone(),
            }),
            None => Err(HvError::NoSuchNode(self.name.clone())),
        }
    }

    /// Finds a VM of this node that no operation is busy with.
    fn idle_vm<'a>(&self, st: &'a mut SimState, vm: &str, op: &'static str) -> Result<&'a mut SimVm, HvError> {
        match st.vms.get_mut(vm) {
            Some(v) if v.node == self.name => {
                if v.op.is_some() {
                    return Err(HvError::WrongState {
                        node: self.name.clone(),
                        vm: vm.into(),
                        op,
                        state: state_name(v),
                    });
                }
                Ok(v)
            }
            _ => Err(HvError::NoSuchVm {
                node: self.name.clone(),
                vm: vm.into(),
            }),
        }
    }

    /// Waits for the pending operation that ends at `done_at`, then reports whether the VM ended up
    /// as `expect` says.
    fn wait(
        &self,
        vm: &str,
        done_at: u64,
        op: &'static str,
        expect: impl Fn(Option<&SimVm>) -> bool,
    ) -> Result<(), HvError> {
        sleep_until(done_at);
        let mut st = self.cluster.lock();
        let ok = expect(st.vms.get(vm));
        st.persist();
        if ok {
            Ok(())
        } else {
            Err(HvError::Backend {
                node: self.name.clone(),
                vm: vm.into(),
                op,
                code: None,
                message: match st.vms.get(vm) {
                    Some(v) => format!("the VM is {} on {}", state_name(v), v.node),
                    None => "the VM was destroyed meanwhile".into(),
                },
            })
        }
    }

    fn begin_start(
        &self,
        spec: VmSpec,
        remaining_ms: Option<u64>,
        paused: bool,
        duration_ms: u64,
        op: &'static str,
    ) -> Result<u64, HvError> {
        let mut st = self.locked()?;
        if let Some(existing) = st.vms.get(&spec.name) {
            let node = existing.node.clone();
            if st.nodes.get(&node).is_some_and(|n| self.cluster.answers(&node, n)) {
                return Err(HvError::AlreadyExists { node, vm: spec.name });
            }
            // The VM is being started again elsewhere while its node is down, as on a real
            // cluster (names are per node there): the old copy stays on its node, under another
            // key, until destroyed.
            let old = st.vms.remove(&spec.name).expect("looked up above");
            st.vms.insert(stale_key(&spec.name, &node), old);
        }
        if let Err(e) = st.check_room(&self.name, &spec, op) {
            return Err(st.refuse(e));
        }
        let done_at = now_ms() + duration_ms;
        st.vms.insert(
            spec.name.clone(),
            SimVm {
                spec,
                node: self.name.clone(),
                exec: Exec::Paused,
                remaining_ms,
                op: Some(PendingOp::Starting { done_at, paused }),
                save_failed: None,
            },
        );
        st.persist();
        Ok(done_at)
    }
}

impl Hypervisor for SimNode {
    fn node(&self) -> &str {
        &self.name
    }

    fn migration_target(&self) -> String {
        self.name.clone()
    }

    fn start(&self, spec: &VmSpec, paused: bool) -> Result<(), HvError> {
        let d = self.durations().boot(spec.memory);
        let done_at = self.begin_start(spec.clone(), spec.guest.sim_runtime_ms, paused, d, "start")?;
        let node = self.name.clone();
        self.wait(&spec.name, done_at, "start", |v| {
            v.is_some_and(|v| v.node == node && v.op.is_none())
        })
    }

    fn pause(&self, vm: &str) -> Result<(), HvError> {
        let mut st = self.locked()?;
        let now = now_ms();
        let v = self.idle_vm(&mut st, vm, "pause")?;
        match v.exec {
            Exec::Running { .. } => v.freeze(now),
            Exec::Paused => {}
            Exec::Ended { .. } => {
                return Err(HvError::WrongState {
                    node: self.name.clone(),
                    vm: vm.into(),
                    op: "pause",
                    state: state_name(v),
                })
            }
        }
        st.persist();
        drop(st);
        std::thread::sleep(Duration::from_millis(self.durations().pause()));
        Ok(())
    }

    fn unpause(&self, vm: &str) -> Result<(), HvError> {
        let mut st = self.locked()?;
        let now = now_ms();
        let v = self.idle_vm(&mut st, vm, "unpause")?;
        if v.exec == Exec::Paused {
            // It takes its processors back: they must be free.
            let mut spec = v.spec.clone();
            spec.memory = 0;
            if let Err(e) = st.check_room(&self.name, &spec, "unpause") {
                return Err(st.refuse(e));
            }
        }
        let v = self.idle_vm(&mut st, vm, "unpause")?;
        match v.exec {
            Exec::Paused => v.exec = Exec::Running { since: now },
            Exec::Running { .. } => {}
            Exec::Ended { .. } => {
                return Err(HvError::WrongState {
                    node: self.name.clone(),
                    vm: vm.into(),
                    op: "unpause",
                    state: state_name(v),
                })
            }
        }
        st.persist();
        drop(st);
        std::thread::sleep(Duration::from_millis(self.durations().pause()));
        Ok(())
    }

    fn save(&self, vm: &str, image: &Path) -> Result<(), HvError> {
        let mut st = self.locked()?;
        let now = now_ms();
        let image_error = |source| HvError::Image {
            path: image.to_path_buf(),
            source,
        };
        if let Some(dir) = image.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(image_error)?;
        }
        if self.cluster.image_fault() == Some(ImageFault::ReadOnly) {
            return Err(image_error(ImageFault::ReadOnly.error()));
        }
        let durations = self.durations();
        let v = self.idle_vm(&mut st, vm, "save")?;
        if matches!(v.exec, Exec::Ended { .. }) {
            return Err(HvError::WrongState {
                node: self.name.clone(),
                vm: vm.into(),
                op: "save",
                state: state_name(v),
            });
        }
        let was_running = matches!(v.exec, Exec::Running { .. });
        v.freeze(now);
        v.save_failed = None;
        let done_at = now + durations.save(v.spec.memory);
        v.op = Some(PendingOp::Saving {
            done_at,
            image: image.to_path_buf(),
            was_running,
        });
        st.persist();
        drop(st);
        let waited = self.wait(vm, done_at, "save", |v| v.is_none());
        if waited.is_err() {
            let mut st = self.cluster.lock();
            if let Some(why) = st.vms.get_mut(vm).and_then(|v| v.save_failed.take()) {
                st.persist();
                return Err(image_error(std::io::Error::other(why)));
            }
        }
        // Gone without an image: its node was switched off (the plug pulled) during the save,
        // and the VM with it. Nothing was saved.
        if waited.is_ok() && !image.exists() {
            return Err(HvError::Backend {
                node: self.name.clone(),
                vm: vm.into(),
                op: "save",
                code: None,
                message: "the node went off during the save: the VM is lost, nothing was saved".into(),
            });
        }
        waited
    }

    fn restore(&self, image: &Path, paused: bool) -> Result<String, HvError> {
        let bytes = std::fs::read(image).map_err(|source| HvError::Image {
            path: image.to_path_buf(),
            source,
        })?;
        let saved: SavedImage = serde_json::from_slice(&bytes).map_err(|e| HvError::Image {
            path: image.to_path_buf(),
            source: std::io::Error::new(std::io::ErrorKind::InvalidData, e),
        })?;
        let name = saved.spec.name.clone();
        let d = self.durations().restore(saved.spec.memory);
        let done_at = self.begin_start(saved.spec, saved.remaining_ms, paused, d, "restore")?;
        let node = self.name.clone();
        self.wait(&name, done_at, "restore", |v| {
            v.is_some_and(|v| v.node == node && v.op.is_none())
        })?;
        Ok(name)
    }

    fn migrate(&self, vm: &str, target: &str) -> Result<(), HvError> {
        let mut st = self.locked()?;
        let now = now_ms();
        if target == self.name {
            return Err(HvError::Backend {
                node: self.name.clone(),
                vm: vm.into(),
                op: "migrate",
                message: "source and destination are the same node".into(),
                code: None,
            });
        }
        match st.nodes.get(target) {
            None => return Err(HvError::NoSuchNode(target.into())),
            Some(n) if !self.cluster.answers(target, n) => return Err(HvError::Unreachable { node: target.into() }),
            Some(_) => {}
        }
        let spec = self.idle_vm(&mut st, vm, "migrate")?.spec.clone();
        if let Err(e) = st.check_room(target, &spec, "migrate") {
            return Err(st.refuse(e));
        }
        let durations = self.durations();
        let v = self.idle_vm(&mut st, vm, "migrate")?;
        if matches!(v.exec, Exec::Ended { .. }) {
            return Err(HvError::WrongState {
                node: self.name.clone(),
                vm: vm.into(),
                op: "migrate",
                state: state_name(v),
            });
        }
        let done_at = now + durations.migrate(v.spec.memory);
        v.op = Some(PendingOp::Migrating {
            done_at,
            to: target.into(),
        });
        st.persist();
        drop(st);
        let target = target.to_string();
        self.wait(vm, done_at, "migrate", |v| v.is_some_and(|v| v.node == target))
    }

    fn destroy(&self, vm: &str) -> Result<(), HvError> {
        let mut st = self.locked()?;
        let key = if st.vms.get(vm).is_some_and(|v| v.node == self.name) {
            Some(vm.to_string())
        } else {
            Some(stale_key(vm, &self.name)).filter(|k| st.vms.contains_key(k))
        };
        if let Some(key) = key {
            st.vms.remove(&key);
            st.persist();
            drop(st);
            std::thread::sleep(Duration::from_millis(self.durations().destroy(0)));
        }
        Ok(())
    }

    fn power(&self, on: bool) -> Result<(), HvError> {
        self.cluster.switch(&self.name, on)
    }

    fn list(&self) -> Result<Vec<DomainInfo>, HvError> {
        let st = self.locked()?;
        Ok(st
            .vms
            .values()
            .filter(|v| v.node == self.name)
            .map(|v| DomainInfo {
                name: v.spec.name.clone(),
                state: match v.exec {
                    Exec::Running { .. } => DomainState::Running,
                    Exec::Paused => DomainState::Paused,
                    Exec::Ended { exit_code } => DomainState::Ended { exit_code },
                },
                vcpus: v.spec.vcpus,
                memory: v.spec.memory,
                busy: v.op.is_some(),
            })
            .collect())
    }

    fn boot_id(&self) -> Result<Option<String>, HvError> {
        let st = self.locked()?;
        Ok(Some(st.nodes[&self.name].boots.to_string()))
    }

    fn stats(&self) -> Result<NodeStats, HvError> {
        let st = self.locked()?;
        let n = &st.nodes[&self.name];
        let (cpu, mem, vms) = st.used(&self.name);
        Ok(NodeStats {
            vcpus_total: n.vcpus,
            memory_total: n.memory,
            vcpus_used: cpu,
            memory_used: mem,
            vms,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::GuestSpec;

    const MIB: u64 = 1 << 20;

    fn fast() -> DurationModel {
        DurationModel {
            boot_ms: 20,
            destroy_ms: 0,
            pause_ms: 0,
            save_overhead_ms: 10,
            save_bandwidth: 1 << 30,
            restore_bandwidth: 1 << 30,
            migrate_overhead_ms: 10,
            migrate_bandwidth: 1 << 30,
        }
    }

    fn tmpdir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("vjob-sim-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    fn cluster(dir: &Path) -> SimCluster {
        let nodes = ["a", "b"].map(|n| SimNodeConfig {
            name: n.into(),
            vcpus: 4,
            memory: 1024 * MIB,
        });
        SimCluster::open(dir, &nodes, fast()).unwrap()
    }

    fn spec(name: &str, vcpus: u32, runtime: Option<u64>) -> VmSpec {
        VmSpec {
            name: name.into(),
            vcpus,
            memory: 256 * MIB,
            guest: GuestSpec {
                sim_runtime_ms: runtime,
                sim_exit_code: 3,
                ..Default::default()
            },
        }
    }

    #[test]
    fn guest_ends_after_its_running_time_with_its_exit_code() {
        let dir = tmpdir("ends");
        let c = cluster(&dir);
        let a = c.node("a").unwrap();
        a.start(&spec("v", 1, Some(50)), false).unwrap();
        assert_eq!(a.list().unwrap()[0].state, DomainState::Running);
        std::thread::sleep(Duration::from_millis(80));
        assert_eq!(a.list().unwrap()[0].state, DomainState::Ended { exit_code: 3 });
        assert_eq!(a.stats().unwrap().vcpus_used, 0);
    }

    #[test]
    fn save_then_restore_elsewhere_keeps_guest_progress() {
        let dir = tmpdir("save");
        let c = cluster(&dir);
        let (a, b) = (c.node("a").unwrap(), c.node("b").unwrap());
        a.start(&spec("v", 2, Some(300)), false).unwrap();
        std::thread::sleep(Duration::from_millis(100));
        let img = dir.join("img/v.img");
        a.save("v", &img).unwrap();
        assert!(a.list().unwrap().is_empty());
        assert!(img.exists());
        // Time spent on disk does not count as running time.
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(b.restore(&img, false).unwrap(), "v");
        assert_eq!(b.list().unwrap()[0].state, DomainState::Running);
        std::thread::sleep(Duration::from_millis(100));
        assert_eq!(b.list().unwrap()[0].state, DomainState::Running);
        std::thread::sleep(Duration::from_millis(200));
        assert!(matches!(b.list().unwrap()[0].state, DomainState::Ended { .. }));
    }

    /// Chaos seed 504: a node lost for good (switched off) in the middle of a save; the save
    /// answered success with no image written, and vjobd tried to restore it for ever.
    #[test]
    fn regression_a_save_cut_short_by_its_node_switching_off_fails() {
        let dir = tmpdir("save-off");
        let c = cluster(&dir);
        let a = c.node("a").unwrap();
        a.start(&spec("v", 2, None), false).unwrap();
        let img = dir.join("img/v.img");
        let saving = {
            let (a, img) = (c.node("a").unwrap(), img.clone());
            std::thread::spawn(move || a.save("v", &img))
        };
        std::thread::sleep(Duration::from_millis(20));
        c.switch("a", false).unwrap();
        let e = saving.join().unwrap().unwrap_err();
        assert!(e.to_string().contains("went off during the save"), "{e}");
        assert!(!img.exists());
    }

    #[test]
    fn a_save_to_full_or_read_only_storage_fails_and_the_vm_goes_on_running_with_nothing_written() {
        let dir = tmpdir("imgfault");
        let c = cluster(&dir);
        let a = c.node("a").unwrap();
        a.start(&spec("v", 2, Some(400)), false).unwrap();
        let img = dir.join("img/v.img");
        std::fs::write(c.image_fault_marker(), "read-only").unwrap();
        let chain = |e: HvError| {
            format!(
                "{e}: {}",
                std::error::Error::source(&e).map(|s| s.to_string()).unwrap_or_default()
            )
        };
        let e = chain(a.save("v", &img).unwrap_err());
        assert!(e.contains("Read-only file system"), "{e}");
        assert_eq!(a.list().unwrap()[0].state, DomainState::Running, "untouched");

        std::fs::write(c.image_fault_marker(), "full").unwrap();
        let e = chain(a.save("v", &img).unwrap_err());
        assert!(e.contains("No space left on device"), "{e}");
        assert_eq!(a.list().unwrap()[0].state, DomainState::Running, "resumed");
        let left: Vec<_> = std::fs::read_dir(dir.join("img")).unwrap().collect();
        assert!(left.is_empty(), "nothing half-written: {left:?}");
        // The guest's clock went on from where it was: it still ends.
        std::fs::remove_file(c.image_fault_marker()).unwrap();
        std::thread::sleep(Duration::from_millis(450));
        assert!(matches!(a.list().unwrap()[0].state, DomainState::Ended { .. }));
    }

    #[test]
    fn a_node_slowed_by_its_marker_takes_that_many_times_longer_and_only_while_it_exists() {
        let dir = tmpdir("slow");
        let c = cluster(&dir);
        let (a, b) = (c.node("a").unwrap(), c.node("b").unwrap());
        let base = *c.durations();
        std::fs::write(c.slow_marker("a"), "4\n").unwrap();
        let slow = a.durations();
        assert_eq!(
            (slow.boot_ms, slow.save(1 << 30)),
            (base.boot_ms * 4, {
                let q = DurationModel {
                    save_bandwidth: base.save_bandwidth / 4,
                    pause_ms: base.pause_ms * 4,
                    save_overhead_ms: base.save_overhead_ms * 4,
                    ..base
                };
                q.save(1 << 30)
            })
        );
        assert_eq!(b.durations(), base, "the other node is not slowed");
        std::fs::remove_file(c.slow_marker("a")).unwrap();
        assert_eq!(a.durations(), base);
    }

    #[test]
    fn refuses_to_overcommit_a_node() {
        let dir = tmpdir("room");
        let c = cluster(&dir);
        let a = c.node("a").unwrap();
        a.start(&spec("v1", 3, None), false).unwrap();
        let err = a.start(&spec("v2", 2, None), false).unwrap_err();
        assert!(matches!(err, HvError::NoRoom { resource: "vcpus", .. }), "{err}");
        let b = c.node("b").unwrap();
        b.start(&spec("v3", 2, None), false).unwrap();
        let err = b.migrate("v3", "a").unwrap_err();
        assert!(matches!(err, HvError::NoRoom { .. }), "{err}");
        let st = c.lock();
        assert_eq!(
            (st.refused, st.refusals.len()),
            (2, 2),
            "counted, for chaos runs to check"
        );
        assert!(st.refusals[1].contains("migrate"), "{:?}", st.refusals);
    }

    #[test]
    fn migration_occupies_both_nodes_then_moves() {
        let dir = tmpdir("mig");
        let c = cluster(&dir);
        let (a, b) = (c.node("a").unwrap(), c.node("b").unwrap());
        a.start(&spec("v", 2, None), false).unwrap();
        let b2 = c.node("b").unwrap();
        let h = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(3));
            b2.stats().unwrap().vcpus_used
        });
        a.migrate("v", "b").unwrap();
        assert_eq!(h.join().unwrap(), 2, "destination reserved during migration");
        assert!(a.list().unwrap().is_empty());
        assert_eq!(b.list().unwrap().len(), 1);
    }

    #[test]
    fn state_survives_reopening_and_pending_saves_complete() {
        let dir = tmpdir("reopen");
        {
            let c = cluster(&dir);
            let a = c.node("a").unwrap();
            a.start(&spec("keep", 1, None), false).unwrap();
            a.start(&spec("gone", 1, None), true).unwrap();
            // Begin a save and "crash" before it finishes: only the record remains.
            let mut st = c.lock();
            let v = st.vms.get_mut("gone").unwrap();
            v.op = Some(PendingOp::Saving {
                done_at: now_ms() + 30,
                image: dir.join("gone.img"),
                was_running: false,
            });
            st.persist();
        }
        std::thread::sleep(Duration::from_millis(50));
        let c = cluster(&dir);
        let a = c.node("a").unwrap();
        let names: Vec<_> = a.list().unwrap().into_iter().map(|d| d.name).collect();
        assert_eq!(names, vec!["keep"]);
        assert!(dir.join("gone.img").exists());
    }

    #[test]
    fn a_machine_switched_off_loses_its_vms_and_answers_again_once_booted() {
        let dir = tmpdir("power");
        let c = cluster(&dir);
        c.set_power_times(150, 50);
        let a = c.node("a").unwrap();
        a.start(&spec("v", 1, None), false).unwrap();
        let first_boot = a.boot_id().unwrap();
        c.switch("a", false).unwrap();
        assert!(matches!(c.power("a").unwrap(), SimPower::ShuttingDown { .. }));
        assert!(matches!(a.list(), Err(HvError::Unreachable { .. })), "off at once");
        std::thread::sleep(Duration::from_millis(60));
        assert_eq!(c.power("a").unwrap(), SimPower::Off);
        c.switch("a", true).unwrap();
        assert!(matches!(a.list(), Err(HvError::Unreachable { .. })), "booting");
        std::thread::sleep(Duration::from_millis(160));
        assert_eq!(c.power("a").unwrap(), SimPower::On);
        assert_eq!(a.list().unwrap(), vec![], "its VM was lost with the power");
        let second_boot = a.boot_id().unwrap();
        assert!(
            first_boot.is_some() && second_boot != first_boot,
            "{first_boot:?} then {second_boot:?}"
        );
        c.switch("a", true).unwrap();
        assert_eq!(a.boot_id().unwrap(), second_boot, "no new boot");
        assert_eq!(
            c.power("a").unwrap(),
            SimPower::On,
            "switching on a node that is on does nothing"
        );
    }

    #[test]
    fn a_node_that_is_down_is_unreachable() {
        let dir = tmpdir("down");
        let c = cluster(&dir);
        c.set_node_up("b", false).unwrap();
        let b = c.node("b").unwrap();
        assert!(matches!(b.list(), Err(HvError::Unreachable { .. })));
        let a = c.node("a").unwrap();
        a.start(&spec("v", 1, None), false).unwrap();
        assert!(matches!(a.migrate("v", "b"), Err(HvError::Unreachable { .. })));
        // Down while its marker file exists; its VMs still there when it comes back.
        c.set_node_up("b", true).unwrap();
        std::fs::write(c.down_marker("a"), "").unwrap();
        assert!(matches!(a.list(), Err(HvError::Unreachable { .. })));
        assert!(matches!(b.list(), Ok(v) if v.is_empty()));
        // Started again elsewhere while its node is down, then the stale copy destroyed.
        b.start(&spec("v", 1, None), false).unwrap();
        std::fs::remove_file(c.down_marker("a")).unwrap();
        let names = |n: &SimNode| n.list().unwrap().into_iter().map(|d| d.name).collect::<Vec<_>>();
        assert_eq!((names(&a), names(&b)), (vec!["v".to_string()], vec!["v".to_string()]));
        a.destroy("v").unwrap();
        assert_eq!((names(&a), names(&b)), (vec![], vec!["v".to_string()]));
    }

    #[test]
    fn two_openings_of_one_directory_share_the_nodes() {
        let dir = tmpdir("shared");
        let (one, two) = (cluster(&dir), cluster(&dir));
        let (a1, a2) = (one.node("a").unwrap(), two.node("a").unwrap());
        a1.start(&spec("mine", 3, None), false).unwrap();
        assert_eq!(a2.list().unwrap().len(), 1, "the other opening sees the VM");
        let err = a2.start(&spec("theirs", 2, None), false).unwrap_err();
        assert!(matches!(err, HvError::NoRoom { resource: "vcpus", .. }), "{err}");
        a2.start(&spec("theirs", 1, None), false).unwrap();
        let names = |n: &SimNode| n.list().unwrap().into_iter().map(|d| d.name).collect::<Vec<_>>();
        assert_eq!(names(&a1), vec!["mine", "theirs"]);
        a1.destroy("mine").unwrap();
        assert_eq!(names(&a2), vec!["theirs"]);
    }
}
