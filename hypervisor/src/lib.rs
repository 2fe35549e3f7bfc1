//! The hypervisor boundary: everything vjob asks of a node's VMM, and nothing more.
//!
//! A [`Hypervisor`] is one connection to one node. It defines, starts, pauses, saves, restores,
//! live-migrates and destroys VMs, and lists what runs there. It knows nothing of jobs, queues or
//! scheduling: the scheduler's executor is its only caller, and it turns plans into these calls.
//!
//! Every call blocks until the operation is over (a save returns once the image is written), so
//! callers run them on worker threads, never on an async reactor. Backends:
//! - [`sim`]: an in-process simulated cluster whose actions take the time a real one would
//!   (modeled by [`DurationModel`]) and whose state survives a restart of the process;
//! - `libvirt` (cargo feature `libvirt`): real QEMU/KVM nodes through libvirt.

pub mod duration;
#[cfg(feature = "libvirt")]
pub mod libvirt;
pub mod seed;
pub mod sim;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use duration::DurationModel;

/// What runs inside a VM: the guest program and its environment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
pub struct GuestSpec {
    /// Name of the guest image (from the cluster configuration), if the backend needs one.
    pub image: Option<String>,
    /// Shell script the guest runs once booted.
    pub script: String,
    /// Environment of the script (`VJOB_ID`, `VJOB_VM_INDEX`, ...).
    pub env: Vec<(String, String)>,
    /// Where the guest's console output goes, on the controller's host.
    pub output: Option<PathBuf>,
    /// Simulated backend only: how long the guest program runs, in milliseconds of running time
    /// (time paused or saved to disk does not count). `None` runs until destroyed.
    pub sim_runtime_ms: Option<u64>,
    /// Simulated backend only: the exit code the guest program ends with.
    pub sim_exit_code: i32,
}

/// A VM to define: its identity, size and guest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmSpec {
    /// Unique name across the cluster (the domain name on libvirt).
    pub name: String,
    pub vcpus: u32,
    /// Memory in bytes.
    pub memory: u64,
    pub guest: GuestSpec,
}

/// The state of a VM as its node reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DomainState {
    /// Defined and executing.
    Running,
    /// Defined, holding its memory, not executing.
    Paused,
    /// Its guest program ended with this exit code; the VM holds no resources any more and
    /// waits to be destroyed.
    Ended { exit_code: i32 },
    /// The VM died without a guest exit code (crash, killed QEMU).
    Crashed,
}

/// One VM present on a node.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DomainInfo {
    pub name: String,
    pub state: DomainState,
    pub vcpus: u32,
    pub memory: u64,
    /// An operation is in progress on this VM (migration away, save, boot).
    pub busy: bool,
}

/// Resource use of a node, as the node sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct NodeStats {
    pub vcpus_total: u32,
    pub memory_total: u64,
    pub vcpus_used: u32,
    pub memory_used: u64,
    pub vms: u32,
}

/// Why a hypervisor call failed. The operation and the VM are part of every variant, so a caller
/// can log the error alone; the backend's own detail is the source.
#[derive(Debug, thiserror::Error)]
pub enum HvError {
    #[error("node {node}: no VM named {vm}")]
    NoSuchVm { node: String, vm: String },
    #[error("node {node}: a VM named {vm} already exists")]
    AlreadyExists { node: String, vm: String },
    #[error("node {node}: cannot {op} VM {vm}: it is {state}")]
    WrongState {
        node: String,
        vm: String,
        op: &'static str,
        state: String,
    },
    #[error("node {node}: not enough {resource} to {op} VM {vm} (needs {needed}, {free} free)")]
    NoRoom {
        node: String,
        vm: String,
        op: &'static str,
        resource: &'static str,
        needed: u64,
        free: u64,
    },
    #[error("node {node}: this backend cannot {op}")]
    Unsupported { node: String, op: &'static str },
    #[error("no node named {0} in this cluster")]
    NoSuchNode(String),
    #[error("node {node} is unreachable")]
    Unreachable { node: String },
    #[error("saved image {}", path.display())]
    Image {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("node {node}: {op} of VM {vm} failed: {message}")]
    Backend {
        node: String,
        vm: String,
        op: &'static str,
        message: String,
        /// The backend's own error number (libvirt's `virErrorNumber`), when it gives one.
        code: Option<i32>,
    },
}

/// One connection to one node's VMM. Every method blocks until its operation is over.
pub trait Hypervisor: Send + Sync {
    /// The node's name in the cluster configuration.
    fn node(&self) -> &str;

    /// How peers address this node as a live-migration destination.
    fn migration_target(&self) -> String;

    /// Defines and boots a VM. With `paused`, the VM is created but does not execute until
    /// [`Hypervisor::unpause`], so that all VMs of a vjob can be released together.
    fn start(&self, spec: &VmSpec, paused: bool) -> Result<(), HvError>;

    /// Stops executing a VM; it keeps its memory on this node.
    fn pause(&self, vm: &str) -> Result<(), HvError>;

    /// Resumes executing a paused VM.
    fn unpause(&self, vm: &str) -> Result<(), HvError>;

    /// Saves a running or paused VM to `image` and removes it from the node; its resources are
    /// held until the image is written.
    fn save(&self, vm: &str, image: &Path) -> Result<(), HvError>;

    /// Restores a VM saved by [`Hypervisor::save`] (on any node) onto this node, paused when asked.
    /// Returns the VM's name. The image is left in place; the caller removes it.
    fn restore(&self, image: &Path, paused: bool) -> Result<String, HvError>;

    /// Live-migrates a VM to the node addressed by `target` (see
    /// [`Hypervisor::migration_target`]). The VM occupies both nodes until it is over.
    fn migrate(&self, vm: &str, target: &str) -> Result<(), HvError>;

    /// Stops a VM at once and forgets it. Destroying a VM that is not there is not an error.
    fn destroy(&self, vm: &str) -> Result<(), HvError>;

    /// The VMs defined on this node.
    fn list(&self) -> Result<Vec<DomainInfo>, HvError>;

    /// What tells this boot of the machine from the next: it changes each time the node boots,
    /// and with it every VM the node held is gone. A VM missing from a node that answers has
    /// vanished; missing from a node whose boot id changed, it was lost with the machine, and
    /// its vjob starts over. `None` when the backend cannot tell.
    fn boot_id(&self) -> Result<Option<String>, HvError> {
        Ok(None)
    }

    /// The node's capacity and use.
    fn stats(&self) -> Result<NodeStats, HvError>;

    /// Deletes the image of a saved VM that will not be restored, with whatever else the VM
    /// left on shared storage. Discarding an image that is not there is not an error.
    fn discard_image(&self, image: &Path) -> Result<(), HvError> {
        remove_file_if_any(image)
    }

    /// Where a VM's console output (its job's stdout and stderr) is written, if the backend
    /// keeps one.
    fn console_log(&self, _vm: &str) -> Option<PathBuf> {
        None
    }

    /// Switches the machine on (returns once asked; the node answers once booted) or off (its
    /// VMs are lost). Backends that cannot switch machines answer [`HvError::Unsupported`]:
    /// a site's power commands do it for them.
    fn power(&self, _on: bool) -> Result<(), HvError> {
        Err(HvError::Unsupported {
            node: self.node().to_string(),
            op: "switch the machine",
        })
    }
}

/// Removes a file; one that is not there is not an error.
pub fn remove_file_if_any(path: &Path) -> Result<(), HvError> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(HvError::Image {
            path: path.to_path_buf(),
            source,
        }),
    }
}
