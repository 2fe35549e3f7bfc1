//! `vjobd`: the resource manager's daemon. It wires the pieces together and nothing else:
//! the API server (a Unix socket, [`server`]) feeds commands to the core loop ([`core`]), which
//! owns all state, observes the nodes, decides with the policy and the planner, carries plans out
//! with the executor and writes every change to the store.
//!
//! Threads: the tokio runtime serves clients; one thread runs the core loop; one polls the nodes;
//! the executor's workers make the blocking hypervisor calls. They talk over channels only.

#[doc(hidden)]
mod accounting;
mod arrays;
pub mod bench;
pub mod config;
pub mod core_loop;
mod deciding;
pub mod dependency;
pub mod directives;
pub mod error;
pub mod exec;
pub mod failpoint;
mod fence;
pub mod jobs;
pub mod lower;
pub mod placement;
pub mod poll;
mod power;
mod priority;
pub mod reconcile;
mod requests;
pub mod server;
pub mod spec;
pub mod store;
pub mod tomlfile;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use vjob_api::Response;
use vjob_hypervisor::sim::{SimCluster, SimNodeConfig};
use vjob_hypervisor::{DomainInfo, Hypervisor};

use crate::config::{Backend, Config};
pub use crate::error::DaemonError;
use crate::exec::Backends;

/// Who is asking, as the kernel says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub uid: u32,
    pub user: String,
    pub admin: bool,
}

/// A client request on its way to the core, with where to send the answer.
pub struct Command {
    pub who: Identity,
    pub op: vjob_api::Op,
    pub reply: tokio::sync::oneshot::Sender<Answer>,
}

/// An answer from the core: a response to serialize, or a line already serialized (large job
/// listings are assembled from cached pieces).
pub enum Answer {
    Response(Response),
    Line(String),
}

/// What the nodes reported in one polling round.
pub struct Observation {
    /// When the oldest listing of the round began: changes made after it may not be reflected.
    pub started: Instant,
    pub nodes: Vec<NodeReport>,
    /// The files in the image directory, listed after the nodes (an image written before a
    /// node stopped listing its VM is seen); `None` when it could not be read.
    pub images: Option<std::collections::HashSet<String>>,
}

/// One node's part of a round.
pub struct NodeReport {
    pub node: String,
    /// When the listing began (an answer that arrives rounds later still tells when it was true).
    pub began: Instant,
    pub answer: NodeAnswer,
}

/// What a node answered.
pub enum NodeAnswer {
    /// The VMs defined there, and the node's boot id when its backend tells one
    /// ([`vjob_hypervisor::Hypervisor::boot_id`]).
    Listed(Vec<DomainInfo>, Option<String>),
    /// The listing failed (the node refused the connection, the hypervisor answered an error).
    Failed(String),
    /// The listing began a while ago and is not over: the node may be hung.
    Silent,
}

/// Opens the hypervisor connections of the configured nodes.
pub fn open_backends(cfg: &Config) -> Result<Backends, DaemonError> {
    let mut map: HashMap<String, Arc<dyn Hypervisor>> = HashMap::new();
    match cfg.hypervisor.backend {
        Backend::Sim => {
            let nodes: Vec<SimNodeConfig> = cfg
                .nodes
                .iter()
                .map(|n| SimNodeConfig {
                    name: n.name.clone(),
                    vcpus: n.cpus,
                    memory: n.memory,
                })
                .collect();
            let dir = cfg.hypervisor.sim_dir.clone();
            let cluster =
                SimCluster::open(&dir, &nodes, cfg.hypervisor.durations).map_err(|source| DaemonError::SimCluster {
                    path: dir.clone(),
                    source,
                })?;
            if let Some(p) = &cfg.power {
                cluster.set_power_times(p.rule.boot_ms, p.rule.shutdown_ms);
            }
            for n in &cfg.nodes {
                map.insert(n.name.clone(), Arc::new(cluster.node(&n.name)?));
            }
        }
        #[cfg(feature = "libvirt")]
        Backend::Libvirt => {
            use vjob_hypervisor::libvirt::{GuestImage, LibvirtNode, LibvirtSettings};
            let settings = Arc::new(LibvirtSettings {
                domain_type: cfg.hypervisor.domain_type.clone(),
                run_dir: cfg.hypervisor.run_dir.clone(),
                shared_storage: cfg.hypervisor.shared_storage,
                images: cfg
                    .images
                    .iter()
                    .map(|i| {
                        (
                            i.name.clone(),
                            GuestImage {
                                kernel: i.kernel.clone(),
                                initrd: i.initrd.clone(),
                                disk: i.disk.clone(),
                                disk_format: i.format.clone(),
                                cmdline: i.cmdline.clone(),
                            },
                        )
                    })
                    .collect(),
            });
            for n in &cfg.nodes {
                let uri = n.uri.as_deref().expect("the configuration requires a uri with libvirt");
                let node = LibvirtNode::new(&n.name, uri, n.migration_uri.as_deref(), settings.clone());
                map.insert(n.name.clone(), Arc::new(node));
            }
        }
        #[cfg(not(feature = "libvirt"))]
        Backend::Libvirt => return Err(DaemonError::NoLibvirt),
    }
    Ok(Arc::new(map))
}

/// Polls every node's VMs forever, one round every `interval`.
pub fn spawn_observer(mut poller: poll::Poller, names: Vec<String>, interval: Duration, tx: Sender<Observation>) {
    std::thread::Builder::new()
        .name("observer".into())
        .spawn(move || loop {
            let obs = poller.round(&names);
            if tx.send(obs).is_err() {
                return;
            }
            std::thread::sleep(interval);
        })
        .expect("spawn the observer thread");
}

/// How long a polling round waits for a node: half the node timeout, within 0.5 to 10 s.
fn answer_deadline(cfg: &Config) -> Duration {
    Duration::from_millis((cfg.scheduler.node_timeout_ms / 2).clamp(500, 10_000))
}

/// Runs the daemon in the foreground until SIGINT or SIGTERM.
pub fn run(config_path: PathBuf) -> Result<(), DaemonError> {
    let cfg = Config::load(&config_path)?;
    std::fs::create_dir_all(&cfg.state_dir).map_err(|source| DaemonError::StateDir {
        path: cfg.state_dir.clone(),
        source,
    })?;
    let backends = open_backends(&cfg)?;
    let (cmd_tx, cmd_rx) = crossbeam_channel::bounded::<Command>(65_536);
    let (obs_tx, obs_rx) = crossbeam_channel::bounded::<Observation>(4);
    let (done_tx, done_rx) = crossbeam_channel::unbounded();
    let exec = crate::exec::Executor::start(backends.clone(), cfg.scheduler.max_parallel_actions, done_tx);
    let names: Vec<String> = cfg.nodes.iter().map(|n| n.name.clone()).collect();
    let mut poller = poll::Poller::start(
        backends.clone(),
        names.len().min(16),
        answer_deadline(&cfg),
        cfg.hypervisor.image_dir.clone(),
    );
    // Adopt what runs before deciding anything.
    let first = poller.round(&names);
    let core = core_loop::Core::open(cfg.clone(), exec, first)?;
    spawn_observer(poller, names, Duration::from_millis(cfg.scheduler.poll_ms), obs_tx);
    let core_thread = std::thread::Builder::new()
        .name("core".into())
        .spawn(move || {
            // A panic here would leave a server that answers "stopping" to every client:
            // end the process instead, so that its supervisor starts it again (what was
            // acknowledged is in the store, as after a kill -9).
            let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| core.run(cmd_rx, obs_rx, done_rx)));
            if ran.is_err() {
                tracing::error!("the core thread panicked: vjobd exits so that it can be started again");
                std::process::exit(70);
            }
        })
        .map_err(|source| DaemonError::Start {
            what: "start the core thread",
            source,
        })?;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|source| DaemonError::Start {
            what: "start the async runtime",
            source,
        })?;
    let result = rt.block_on(server::serve(cfg.clone(), cmd_tx));
    // Dropping the command sender ends the core loop once it has drained what it holds.
    drop(rt);
    let _ = core_thread.join();
    result
}
