//! `vqmgr`: administration of queues, nodes and jobs (administrators only; the daemon checks).
//!
//! ```text
//! vqmgr queue list | create NAME [settings] | delete NAME | set NAME settings
//! vqmgr queue enable|disable|start|stop NAME
//! vqmgr node list | online|drain|offline NAME
//! vqmgr job hold|release ID... | suspend|resume ID | migrate ID --vm N --to NODE
//! ```

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args as ClapArgs, Parser, Subcommand};
use vjob_api::{JobRef, NodeAdminState, Op, QueueSettings, Reply};

use crate::client::{call_once, unexpected};
use crate::vdel::per_job;
use crate::vstat::{nodes_table, queues_table};
use crate::{fail, out, Exit};

/// Administer vjob: queues, nodes and jobs.
#[derive(Parser, Debug)]
#[command(name = "vqmgr", version)]
pub struct Args {
    /// The daemon's socket (default: $VJOB_SOCKET, else /run/vjob/vjobd.sock).
    #[arg(long, value_name = "PATH", global = true)]
    pub socket: Option<PathBuf>,
    #[command(subcommand)]
    pub what: What,
}

#[derive(Subcommand, Debug)]
pub enum What {
    /// Queues.
    #[command(subcommand)]
    Queue(QueueCmd),
    /// Nodes.
    #[command(subcommand)]
    Node(NodeCmd),
    /// Jobs.
    #[command(subcommand)]
    Job(JobCmd),
    /// The datacenter's placement scripts.
    #[command(subcommand)]
    Placement(PlacementCmd),
}

#[derive(Subcommand, Debug)]
pub enum PlacementCmd {
    /// Read the placement scripts of the cluster configuration again and check them; the old
    /// ones stay when they are bad or when a vjob could never satisfy them.
    Reload,
}

#[derive(ClapArgs, Debug, Default)]
pub struct Settings {
    /// Queue priority: higher-priority queues are served first and may preempt.
    #[arg(long, allow_negative_numbers = true)]
    pub priority: Option<i32>,
    /// Most running vjobs in the queue (0: no limit).
    #[arg(long)]
    pub max_running: Option<u32>,
    /// Most running vjobs per user in the queue (0: no limit).
    #[arg(long)]
    pub max_user_running: Option<u32>,
    /// Make it the default queue.
    #[arg(long)]
    pub default: bool,
}

#[derive(Subcommand, Debug)]
pub enum QueueCmd {
    /// List queues.
    List,
    /// Create a queue.
    Create {
        name: String,
        #[command(flatten)]
        settings: Settings,
        /// Create it disabled (refusing submissions).
        #[arg(long)]
        disabled: bool,
        /// Create it stopped (dispatching nothing).
        #[arg(long)]
        stopped: bool,
    },
    /// Delete a queue that holds no unfinished job.
    Delete { name: String },
    /// Change a queue's settings.
    Set {
        name: String,
        #[command(flatten)]
        settings: Settings,
    },
    /// Accept submissions.
    Enable { name: String },
    /// Refuse submissions (queued jobs stay).
    Disable { name: String },
    /// Dispatch jobs.
    Start { name: String },
    /// Dispatch nothing (running jobs keep running).
    Stop { name: String },
}

#[derive(Subcommand, Debug)]
pub enum NodeCmd {
    /// List nodes.
    List,
    /// Take new VMs again.
    Online { name: String },
    /// Keep the VMs there but take no new ones.
    Drain { name: String },
    /// Empty the node: its VMs migrate away, or their vjobs are suspended.
    Offline { name: String },
    /// Switch the machine on or off by hand (`off` is refused while it holds VMs; a node
    /// switched off by hand stays off until switched on by hand; `on` also retries a failed
    /// boot).
    Power {
        #[arg(value_parser = ["on", "off"])]
        to: String,
        name: String,
    },
    /// Say that a node which does not answer is off and its VMs gone (you made sure of it, say
    /// by pulling its plug): its vjobs start over elsewhere. Needed only when vjobd cannot
    /// switch the node off itself (no `power_off` command).
    Lost { name: String },
}

#[derive(Subcommand, Debug)]
pub enum JobCmd {
    /// Hold jobs: never scheduled until released (`12`: every task of array 12; `12[3]`: one).
    Hold { ids: Vec<JobRef> },
    /// Release held jobs.
    Release { ids: Vec<JobRef> },
    /// Change an array: `--throttle N`, at most N of its tasks running at once (0: no limit).
    Set {
        id: JobRef,
        #[arg(long, value_name = "N")]
        throttle: Option<u32>,
    },
    /// Suspend a running vjob to disk; it stays suspended until resumed by hand.
    Suspend { id: JobRef },
    /// Let a vjob suspended by hand resume when room allows.
    Resume { id: JobRef },
    /// Live-migrate one VM of a running vjob.
    Migrate {
        id: JobRef,
        /// Index of the VM in the vjob (0-based).
        #[arg(long, default_value_t = 0)]
        vm: usize,
        /// Destination node.
        #[arg(long)]
        to: String,
    },
}

fn settings(name: String, s: Settings) -> QueueSettings {
    QueueSettings {
        name,
        priority: s.priority,
        max_running: s.max_running,
        max_user_running: s.max_user_running,
        default: s.default.then_some(true),
        ..Default::default()
    }
}

pub fn main() -> ExitCode {
    let args = Args::parse();
    let socket = args.socket.as_deref();
    let op = match args.what {
        What::Queue(QueueCmd::List) => Op::Queues,
        What::Queue(QueueCmd::Create {
            name,
            settings: s,
            disabled,
            stopped,
        }) => {
            let mut q = settings(name, s);
            q.enabled = Some(!disabled);
            q.started = Some(!stopped);
            Op::QueueCreate(q)
        }
        What::Queue(QueueCmd::Delete { name }) => Op::QueueDelete { name },
        What::Queue(QueueCmd::Set { name, settings: s }) => Op::QueueSet(settings(name, s)),
        What::Queue(QueueCmd::Enable { name }) => Op::QueueSet(QueueSettings {
            name,
            enabled: Some(true),
            ..Default::default()
        }),
        What::Queue(QueueCmd::Disable { name }) => Op::QueueSet(QueueSettings {
            name,
            enabled: Some(false),
            ..Default::default()
        }),
        What::Queue(QueueCmd::Start { name }) => Op::QueueSet(QueueSettings {
            name,
            started: Some(true),
            ..Default::default()
        }),
        What::Queue(QueueCmd::Stop { name }) => Op::QueueSet(QueueSettings {
            name,
            started: Some(false),
            ..Default::default()
        }),
        What::Node(NodeCmd::List) => Op::Nodes,
        What::Node(NodeCmd::Online { name }) => Op::NodeSet {
            name,
            state: NodeAdminState::Online,
        },
        What::Node(NodeCmd::Drain { name }) => Op::NodeSet {
            name,
            state: NodeAdminState::Drain,
        },
        What::Node(NodeCmd::Offline { name }) => Op::NodeSet {
            name,
            state: NodeAdminState::Offline,
        },
        What::Node(NodeCmd::Power { to, name }) => Op::NodePower { name, on: to == "on" },
        What::Node(NodeCmd::Lost { name }) => Op::NodeLost { name },
        What::Job(JobCmd::Hold { ids }) => return per_job("vqmgr", socket, Op::Hold { ids }, true),
        What::Job(JobCmd::Release { ids }) => return per_job("vqmgr", socket, Op::Release { ids }, true),
        What::Job(JobCmd::Set { id, throttle }) => Op::JobSet { id, throttle },
        What::Job(JobCmd::Suspend { id }) => Op::Suspend { id },
        What::Job(JobCmd::Resume { id }) => Op::Resume { id },
        What::Job(JobCmd::Migrate { id, vm, to }) => Op::Migrate { id, vm, to },
        What::Placement(PlacementCmd::Reload) => Op::PlacementReload,
    };
    match call_once(socket, op) {
        Ok(Reply::Done { message }) => {
            out(&format!("{message}\n"));
            Exit::Ok.into()
        }
        Ok(Reply::Queues { queues }) => {
            out(&queues_table(&queues));
            Exit::Ok.into()
        }
        Ok(Reply::Nodes { nodes }) => {
            out(&nodes_table(&nodes));
            Exit::Ok.into()
        }
        Ok(other) => fail("vqmgr", &unexpected(&other)),
        Err(e) => fail("vqmgr", &e),
    }
}
