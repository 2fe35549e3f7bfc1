//! The cluster configuration file of `vjobd` (TOML): where state lives, who administers, which
//! hypervisor backend drives which nodes, the initial queues and the scheduler's settings.
//!
//! Unknown keys are errors, and every error names the file, line and field. Queues listed here
//! seed a new state directory; afterwards `vqmgr` manages them and its changes persist.

use std::path::{Path, PathBuf};

use serde::Deserialize;
use toml::Spanned;
use vjob_hypervisor::DurationModel;

use crate::tomlfile::{FileError, Source};
use vjob_api::units::{parse_bandwidth, parse_duration_ms, parse_size};

/// A validated cluster configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// The cluster's name: it prefixes the names of its VMs (`NAME-JOB-INDEX`), so that several
    /// clusters (or test daemons) sharing nodes never take each other's VMs for their own.
    pub cluster: String,
    pub state_dir: PathBuf,
    pub socket: PathBuf,
    /// User names with every right.
    pub admins: Vec<String>,
    /// Members of these groups have every right too.
    pub admin_groups: Vec<String>,
    pub hypervisor: HypervisorConfig,
    pub nodes: Vec<NodeConfig>,
    pub queues: Vec<QueueConfig>,
    pub images: Vec<ImageConfig>,
    pub scheduler: SchedulerConfig,
    /// VM templates that placement scripts declare VMs with (`VM[1..3] : small;`).
    pub templates: Vec<TemplateConfig>,
    /// The datacenter's placement scripts (btrpsl), in order; relative paths are relative to
    /// the configuration file. Their directory is where job scripts' imports are found.
    pub placement: Vec<PathBuf>,
    /// What those scripts state, evaluated when the configuration is read.
    pub datacenter: crate::placement::Datacenter,
    /// What nodes draw, for the energy accounted (the default model without a `[power]` table).
    pub power_model: vjob_core::power::PowerModel,
    /// Power management (`[power]`): idle nodes switched off, booted when queued vjobs need them.
    pub power: Option<vjob_core::power::PowerSettings>,
    /// Multifactor priority and fair share (`[priority]`, `[fairshare]`); `None`: vjobs are
    /// ordered by queue priority, job priority and submission.
    pub ranking: Option<vjob_core::fairshare::Ranking>,
}

/// A `[[template]]`: what a VM declared with it gets.
#[derive(Debug, Clone, PartialEq)]
pub struct TemplateConfig {
    pub name: String,
    pub vcpus: u32,
    pub memory: u64,
    pub image: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HypervisorConfig {
    pub backend: Backend,
    /// Where suspended VMs' images are written; shared by all nodes.
    pub image_dir: PathBuf,
    /// libvirt: per-VM initramfs and console files; shared by all nodes.
    pub run_dir: PathBuf,
    /// libvirt: `kvm`, `qemu` (TCG) or `test`.
    pub domain_type: String,
    /// libvirt: the run directory is shared by the nodes even if libvirt cannot tell (it
    /// recognizes NFS, GlusterFS, Ceph, ...; not several nodes on one host): live migration of
    /// VMs booted from disk images goes ahead.
    pub shared_storage: bool,
    /// sim: where the simulated nodes keep their state. Daemons given the same directory share
    /// the nodes, as clusters sharing hosts do.
    pub sim_dir: PathBuf,
    pub durations: DurationModel,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sim,
    Libvirt,
}

/// A guest image (libvirt backend): a kernel and an initramfs, as `hypervisor/guest/build.sh`
/// makes them, or a disk image (qcow2 or raw, e.g. a cloud image with cloud-init) that each VM
/// boots from through its own copy-on-write overlay, optionally with a given kernel.
#[derive(Debug, Clone, PartialEq)]
pub struct ImageConfig {
    pub name: String,
    pub kernel: Option<PathBuf>,
    pub initrd: Option<PathBuf>,
    pub disk: Option<PathBuf>,
    /// `qcow2` or `raw`.
    pub format: String,
    pub cmdline: Option<String>,
    /// Memory of VMs of this image whose spec gives none.
    pub memory: Option<u64>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct NodeConfig {
    pub name: String,
    pub cpus: u32,
    pub memory: u64,
    /// libvirt: how the daemon reaches the node.
    pub uri: Option<String>,
    /// libvirt: how peers reach the node for live migration (default: `uri`).
    pub migration_uri: Option<String>,
    /// The commands that switch this node on and off, instead of `[power]`'s.
    pub power_on: Option<String>,
    pub power_off: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    pub name: String,
    pub priority: i32,
    pub default: bool,
    pub enabled: bool,
    pub started: bool,
    pub max_running: Option<u32>,
    pub max_user_running: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SchedulerConfig {
    /// A vjob resumed after a preemption is not preempted again for this long.
    pub quantum_ms: u64,
    /// Finished jobs stay in the default `vstat` listing for this long.
    pub keep_finished_ms: u64,
    /// The records of jobs that ended longer ago than this are deleted (accounting keeps
    /// them otherwise); `None`: kept for ever.
    pub purge_after_ms: Option<u64>,
    /// How often the nodes are polled for their VMs' states.
    pub poll_ms: u64,
    /// How many VM actions may run at once across the cluster.
    pub max_parallel_actions: usize,
    /// A node that does not answer for this long is down: the vjobs that ran there lost those
    /// VMs and are requeued.
    pub node_timeout_ms: u64,
    /// A vjob whose walltime is at most this long pauses the vjobs it preempts in memory
    /// instead of saving them to disk, when their processors are enough; 0: always save.
    pub short_preemption_ms: u64,
    /// A hypervisor call not over after this long (or after 5 times its modeled duration, if
    /// longer) counts as failed, so that one hung call never holds up the loop; the VM stays busy
    /// until the call returns.
    pub action_timeout_ms: u64,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            quantum_ms: 60_000,
            keep_finished_ms: 300_000,
            purge_after_ms: None,
            poll_ms: 500,
            max_parallel_actions: 32,
            node_timeout_ms: 60_000,
            short_preemption_ms: 0,
            action_timeout_ms: 120_000,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    cluster: Option<Spanned<String>>,
    state_dir: Spanned<String>,
    socket: Option<String>,
    #[serde(default)]
    admins: Vec<String>,
    #[serde(default)]
    admin_groups: Vec<String>,
    hypervisor: Option<RawHypervisor>,
    #[serde(default, rename = "node")]
    nodes: Vec<RawNode>,
    #[serde(default, rename = "queue")]
    queues: Vec<RawQueue>,
    #[serde(default, rename = "image")]
    images: Vec<RawImage>,
    scheduler: Option<RawScheduler>,
    #[serde(default, rename = "template")]
    templates: Vec<RawTemplate>,
    #[serde(default)]
    placement: Vec<String>,
    power: Option<vjob_core::power::PowerTable>,
    priority: Option<vjob_core::fairshare::PriorityTable>,
    fairshare: Option<vjob_core::fairshare::FairshareTable>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTemplate {
    name: Spanned<String>,
    vcpus: Option<Spanned<u32>>,
    memory: Option<Spanned<String>>,
    image: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawImage {
    name: Spanned<String>,
    kernel: Option<String>,
    initrd: Option<Spanned<String>>,
    disk: Option<String>,
    format: Option<Spanned<String>>,
    cmdline: Option<String>,
    memory: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawHypervisor {
    backend: Option<Spanned<String>>,
    image_dir: Option<String>,
    run_dir: Option<String>,
    domain_type: Option<Spanned<String>>,
    #[serde(default)]
    shared_storage: bool,
    sim_dir: Option<String>,
    boot_time: Option<Spanned<String>>,
    destroy_time: Option<Spanned<String>>,
    pause_time: Option<Spanned<String>>,
    save_overhead: Option<Spanned<String>>,
    save_bandwidth: Option<Spanned<String>>,
    restore_bandwidth: Option<Spanned<String>>,
    migrate_overhead: Option<Spanned<String>>,
    migrate_bandwidth: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawNode {
    name: Spanned<String>,
    cpus: Spanned<u32>,
    memory: Spanned<String>,
    uri: Option<String>,
    migration_uri: Option<String>,
    power_on: Option<String>,
    power_off: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawQueue {
    name: Spanned<String>,
    #[serde(default)]
    priority: i32,
    default: Option<Spanned<bool>>,
    enabled: Option<bool>,
    started: Option<bool>,
    max_running: Option<u32>,
    max_user_running: Option<u32>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScheduler {
    quantum: Option<Spanned<String>>,
    keep_finished: Option<Spanned<String>>,
    purge_after: Option<Spanned<String>>,
    poll_interval: Option<Spanned<String>>,
    max_parallel_actions: Option<Spanned<usize>>,
    node_timeout: Option<Spanned<String>>,
    short_preemption: Option<Spanned<String>>,
    action_timeout: Option<Spanned<String>>,
}

/// The cluster name of configurations that give none (VM names `vjob-JOB-INDEX`).
pub const DEFAULT_CLUSTER: &str = "vjob";

/// Checks a cluster name: it starts VM names, so a letter first, then letters, digits, `-`
/// and `_`, at most 32 characters.
pub fn check_cluster_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 32 {
        return Err("a cluster name must be 1 to 32 characters long".into());
    }
    if !name.starts_with(|c: char| c.is_ascii_alphabetic()) {
        return Err(format!(
            "`{name}` must start with a letter (it starts the names of the cluster's VMs)"
        ));
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
    {
        return Err(format!(
            "`{name}` contains `{c}`; cluster names may use letters, digits, `-` and `_`"
        ));
    }
    Ok(())
}

/// Checks a name used in commands and VM names: letters, digits, `-`, `_`, `.`.
pub fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.len() > 64 {
        return Err("a name must be 1 to 64 characters long".into());
    }
    if let Some(c) = name
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')))
    {
        return Err(format!(
            "`{name}` contains `{c}`; names may use letters, digits, `-`, `_` and `.`"
        ));
    }
    Ok(())
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, FileError> {
        let file = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|e| FileError {
            file: file.clone(),
            line: None,
            field: None,
            message: format!("cannot read the configuration: {e}"),
        })?;
        Config::parse(&file, &text)
    }

    /// Validates a configuration's text; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<Config, FileError> {
        let src = Source { file, text };
        let raw: RawConfig = src.parse()?;
        let cluster = match &raw.cluster {
            None => DEFAULT_CLUSTER.to_string(),
            Some(c) => {
                check_cluster_name(c.get_ref()).map_err(|m| src.at(c, "cluster", m))?;
                c.get_ref().clone()
            }
        };
        let state_dir = PathBuf::from(raw.state_dir.get_ref());
        if !state_dir.is_absolute() {
            return Err(src.at(
                &raw.state_dir,
                "state_dir",
                "must be an absolute path, so that the daemon finds it whatever its working directory",
            ));
        }
        let socket = raw
            .socket
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from(vjob_api::DEFAULT_SOCKET));
        let hypervisor = hypervisor(&src, raw.hypervisor.unwrap_or_default(), &state_dir)?;
        let power = match &raw.power {
            None => None,
            Some(t) => Some(t.settings().map_err(|e| src.error(e.span, &e.field, e.message))?),
        };
        let nodes = nodes(&src, &raw.nodes, hypervisor.backend)?;
        let ranking = vjob_core::fairshare::ranking(raw.priority.as_ref(), raw.fairshare.as_ref())
            .map_err(|e| src.error(e.span, &e.field, e.message))?;
        if let (Some(p), Backend::Libvirt) = (&power, hypervisor.backend) {
            if let Some(n) = nodes.iter().find(|n| {
                n.power_on.as_ref().or(p.power_on.as_ref()).is_none()
                    || n.power_off.as_ref().or(p.power_off.as_ref()).is_none()
            }) {
                return Err(src.error(
                    None,
                    "power.power_on",
                    format!(
                        "node `{}` has no power_on or power_off command: libvirt cannot switch a machine, give the commands that do (e.g. `ipmitool -H %n-bmc chassis power on`)",
                        n.name
                    ),
                ));
            }
        }
        let mut cfg = Config {
            cluster,
            state_dir,
            socket,
            admins: raw.admins,
            admin_groups: raw.admin_groups,
            images: images(&src, &raw.images)?,
            nodes,
            queues: queues(&src, &raw.queues)?,
            scheduler: scheduler(&src, raw.scheduler.as_ref())?,
            hypervisor,
            templates: templates(&src, &raw.templates)?,
            placement: {
                let base = Path::new(file).parent().unwrap_or(Path::new("."));
                raw.placement.iter().map(|p| base.join(p)).collect()
            },
            datacenter: Default::default(),
            power_model: power.as_ref().map(|p| p.model).unwrap_or_default(),
            power,
            ranking,
        };
        // The placement scripts are read here, so that a bad one stops the daemon at start.
        cfg.datacenter = crate::placement::datacenter(&cfg).map_err(|message| FileError {
            file: file.to_string(),
            line: None,
            field: Some("placement".into()),
            message: format!("a placement script is not valid:\n{message}"),
        })?;
        Ok(cfg)
    }
}

/// A duration field, or its default.
fn duration(src: &Source<'_>, v: &Option<Spanned<String>>, field: &str, default: u64) -> Result<u64, FileError> {
    match v {
        None => Ok(default),
        Some(s) => parse_duration_ms(s.get_ref()).map_err(|m| src.at(s, field, m)),
    }
}

/// A bandwidth field (more than zero), or its default.
fn bandwidth(src: &Source<'_>, v: &Option<Spanned<String>>, field: &str, default: u64) -> Result<u64, FileError> {
    match v {
        None => Ok(default),
        Some(s) => match parse_bandwidth(s.get_ref()) {
            Ok(0) => Err(src.at(s, field, "a bandwidth must be more than zero")),
            r => r.map_err(|m| src.at(s, field, m)),
        },
    }
}

/// The `[hypervisor]` table: the backend, its directories and the action durations.
fn hypervisor(src: &Source<'_>, hv: RawHypervisor, state_dir: &Path) -> Result<HypervisorConfig, FileError> {
    let backend = match &hv.backend {
        None => Backend::Sim,
        Some(b) => match b.get_ref().as_str() {
            "sim" => Backend::Sim,
            "libvirt" if cfg!(feature = "libvirt") => Backend::Libvirt,
            "libvirt" => {
                return Err(src.at(
                    b,
                    "hypervisor.backend",
                    "this vjobd was built without the libvirt backend: build it with `--features libvirt`",
                ))
            }
            other => {
                return Err(src.at(
                    b,
                    "hypervisor.backend",
                    format!("unknown backend `{other}` (expected `sim` or `libvirt`)"),
                ))
            }
        },
    };
    let domain_type = match &hv.domain_type {
        None => "kvm".to_string(),
        Some(t) if ["kvm", "qemu", "test"].contains(&t.get_ref().as_str()) => t.get_ref().clone(),
        Some(t) => {
            return Err(src.at(
                t,
                "hypervisor.domain_type",
                format!("`{}`: expected kvm, qemu (software emulation) or test", t.get_ref()),
            ))
        }
    };
    let durations = durations(src, &hv)?;
    let dir = |d: Option<String>, default: &str| d.map(PathBuf::from).unwrap_or_else(|| state_dir.join(default));
    Ok(HypervisorConfig {
        backend,
        image_dir: dir(hv.image_dir, "images"),
        run_dir: dir(hv.run_dir, "run"),
        sim_dir: dir(hv.sim_dir, "sim"),
        domain_type,
        shared_storage: hv.shared_storage,
        durations,
    })
}

/// The action durations of the `[hypervisor]` table.
fn durations(src: &Source<'_>, hv: &RawHypervisor) -> Result<DurationModel, FileError> {
    let d = DurationModel::default();
    let time = |v: &Option<Spanned<String>>, field: &str, default: u64| duration(src, v, field, default);
    let rate = |v: &Option<Spanned<String>>, field: &str, default: u64| bandwidth(src, v, field, default);
    Ok(DurationModel {
        boot_ms: time(&hv.boot_time, "hypervisor.boot_time", d.boot_ms)?,
        destroy_ms: time(&hv.destroy_time, "hypervisor.destroy_time", d.destroy_ms)?,
        pause_ms: time(&hv.pause_time, "hypervisor.pause_time", d.pause_ms)?,
        save_overhead_ms: time(&hv.save_overhead, "hypervisor.save_overhead", d.save_overhead_ms)?,
        save_bandwidth: rate(&hv.save_bandwidth, "hypervisor.save_bandwidth", d.save_bandwidth)?,
        restore_bandwidth: rate(
            &hv.restore_bandwidth,
            "hypervisor.restore_bandwidth",
            d.restore_bandwidth,
        )?,
        migrate_overhead_ms: time(
            &hv.migrate_overhead,
            "hypervisor.migrate_overhead",
            d.migrate_overhead_ms,
        )?,
        migrate_bandwidth: rate(
            &hv.migrate_bandwidth,
            "hypervisor.migrate_bandwidth",
            d.migrate_bandwidth,
        )?,
    })
}

/// The `[[template]]` tables.
fn templates(src: &Source<'_>, raw: &[RawTemplate]) -> Result<Vec<TemplateConfig>, FileError> {
    let mut out: Vec<TemplateConfig> = Vec::new();
    for t in raw {
        check_name(t.name.get_ref()).map_err(|m| src.at(&t.name, "template.name", m))?;
        if out.iter().any(|o| &o.name == t.name.get_ref()) {
            return Err(src.at(
                &t.name,
                "template.name",
                format!("template `{}` is listed twice", t.name.get_ref()),
            ));
        }
        let vcpus = match &t.vcpus {
            None => 1,
            Some(v) if *v.get_ref() == 0 => return Err(src.at(v, "template.vcpus", "a VM needs at least one vcpu")),
            Some(v) => *v.get_ref(),
        };
        let memory = match &t.memory {
            None => crate::spec::DEFAULT_VM_MEMORY,
            Some(m) => match parse_size(m.get_ref()) {
                Ok(b) if b < (1 << 20) => return Err(src.at(m, "template.memory", "a VM needs at least 1MiB")),
                Ok(b) => b,
                Err(e) => return Err(src.at(m, "template.memory", e)),
            },
        };
        out.push(TemplateConfig {
            name: t.name.get_ref().clone(),
            vcpus,
            memory,
            image: t.image.as_ref().map(|i| i.get_ref().clone()),
        });
    }
    Ok(out)
}

/// The `[[image]]` tables.
fn images(src: &Source<'_>, raw: &[RawImage]) -> Result<Vec<ImageConfig>, FileError> {
    let mut images: Vec<ImageConfig> = Vec::new();
    for i in raw {
        check_name(i.name.get_ref()).map_err(|m| src.at(&i.name, "image.name", m))?;
        if images.iter().any(|o| &o.name == i.name.get_ref()) {
            return Err(src.at(
                &i.name,
                "image.name",
                format!("image `{}` is listed twice", i.name.get_ref()),
            ));
        }
        let memory = match &i.memory {
            None => None,
            Some(m) => Some(parse_size(m.get_ref()).map_err(|e| src.at(m, "image.memory", e))?),
        };
        if i.kernel.is_none() && i.disk.is_none() {
            return Err(src.at(
                &i.name,
                "image",
                format!(
                    "image `{}` needs a `kernel` (with an `initrd`) or a `disk`",
                    i.name.get_ref()
                ),
            ));
        }
        if i.disk.is_none() && i.initrd.is_none() {
            return Err(src.at(
                &i.name,
                "image.initrd",
                format!(
                    "image `{}` has a kernel but no `initrd`: vjob passes the job in the initramfs (or give a `disk`)",
                    i.name.get_ref()
                ),
            ));
        }
        if let (Some(initrd), None) = (&i.initrd, &i.kernel) {
            return Err(src.at(initrd, "image.initrd", "an `initrd` needs a `kernel`"));
        }
        let format = match &i.format {
            None => "qcow2".to_string(),
            Some(f) if i.disk.is_none() => {
                return Err(src.at(
                    f,
                    "image.format",
                    "`format` is the format of the `disk`, and there is none",
                ))
            }
            Some(f) if matches!(f.get_ref().as_str(), "qcow2" | "raw") => f.get_ref().clone(),
            Some(f) => {
                return Err(src.at(
                    f,
                    "image.format",
                    format!("unknown disk format `{}` (expected qcow2 or raw)", f.get_ref()),
                ))
            }
        };
        images.push(ImageConfig {
            name: i.name.get_ref().clone(),
            kernel: i.kernel.clone().map(PathBuf::from),
            initrd: i.initrd.as_ref().map(|p| PathBuf::from(p.get_ref())),
            disk: i.disk.clone().map(PathBuf::from),
            format,
            cmdline: i.cmdline.clone(),
            memory,
        });
    }

    Ok(images)
}

/// The `[[node]]` tables: at least one.
fn nodes(src: &Source<'_>, raw: &[RawNode], backend: Backend) -> Result<Vec<NodeConfig>, FileError> {
    if raw.is_empty() {
        return Err(src.error(
            None,
            "node",
            "the cluster has no node: add a [[node]] table with name, cpus and memory",
        ));
    }
    let mut nodes: Vec<NodeConfig> = Vec::with_capacity(raw.len());
    for n in raw {
        check_name(n.name.get_ref()).map_err(|m| src.at(&n.name, "node.name", m))?;
        if nodes.iter().any(|o| &o.name == n.name.get_ref()) {
            return Err(src.at(
                &n.name,
                "node.name",
                format!("node `{}` is listed twice", n.name.get_ref()),
            ));
        }
        if *n.cpus.get_ref() == 0 {
            return Err(src.at(&n.cpus, "node.cpus", "a node needs at least one cpu"));
        }
        let memory = parse_size(n.memory.get_ref()).map_err(|m| src.at(&n.memory, "node.memory", m))?;
        if memory == 0 {
            return Err(src.at(&n.memory, "node.memory", "a node needs some memory"));
        }
        if backend == Backend::Libvirt && n.uri.is_none() {
            return Err(src.at(
                &n.name,
                "node.uri",
                format!(
                    "node `{}` needs a libvirt `uri` (e.g. qemu:///system)",
                    n.name.get_ref()
                ),
            ));
        }
        nodes.push(NodeConfig {
            name: n.name.get_ref().clone(),
            cpus: *n.cpus.get_ref(),
            memory,
            uri: n.uri.clone(),
            migration_uri: n.migration_uri.clone(),
            power_on: n.power_on.clone().filter(|c| !c.trim().is_empty()),
            power_off: n.power_off.clone().filter(|c| !c.trim().is_empty()),
        });
    }

    Ok(nodes)
}

/// The `[[queue]]` tables: the queues a new state directory starts with (a default one if none).
fn queues(src: &Source<'_>, raw: &[RawQueue]) -> Result<Vec<QueueConfig>, FileError> {
    let mut queues: Vec<QueueConfig> = Vec::with_capacity(raw.len());
    for q in raw {
        check_name(q.name.get_ref()).map_err(|m| src.at(&q.name, "queue.name", m))?;
        if queues.iter().any(|o| &o.name == q.name.get_ref()) {
            return Err(src.at(
                &q.name,
                "queue.name",
                format!("queue `{}` is listed twice", q.name.get_ref()),
            ));
        }
        let is_default = q.default.as_ref().is_some_and(|d| *d.get_ref());
        if is_default && queues.iter().any(|o| o.default) {
            let d = q.default.as_ref().expect("is_default implies a value");
            return Err(src.at(d, "queue.default", "only one queue may be the default"));
        }
        queues.push(QueueConfig {
            name: q.name.get_ref().clone(),
            priority: q.priority,
            default: is_default,
            enabled: q.enabled.unwrap_or(true),
            started: q.started.unwrap_or(true),
            max_running: q.max_running.filter(|&m| m > 0),
            max_user_running: q.max_user_running.filter(|&m| m > 0),
        });
    }
    if queues.is_empty() {
        queues.push(QueueConfig {
            name: "batch".into(),
            priority: 0,
            default: true,
            enabled: true,
            started: true,
            max_running: None,
            max_user_running: None,
        });
    }
    if !queues.iter().any(|q| q.default) {
        queues[0].default = true;
    }

    Ok(queues)
}

/// The `[scheduler]` table.
fn scheduler(src: &Source<'_>, raw: Option<&RawScheduler>) -> Result<SchedulerConfig, FileError> {
    let mut scheduler = SchedulerConfig::default();
    if let Some(s) = raw {
        scheduler.quantum_ms = duration(src, &s.quantum, "scheduler.quantum", scheduler.quantum_ms)?;
        scheduler.keep_finished_ms = duration(
            src,
            &s.keep_finished,
            "scheduler.keep_finished",
            scheduler.keep_finished_ms,
        )?;
        if let Some(purge) = &s.purge_after {
            let ms = duration(src, &s.purge_after, "scheduler.purge_after", 0)?;
            if ms < scheduler.keep_finished_ms {
                return Err(src.at(
                    purge,
                    "scheduler.purge_after",
                    "must be at least scheduler.keep_finished: a record cannot go before the job leaves the listing",
                ));
            }
            scheduler.purge_after_ms = Some(ms);
        }
        scheduler.poll_ms = duration(src, &s.poll_interval, "scheduler.poll_interval", scheduler.poll_ms)?;
        scheduler.node_timeout_ms = duration(
            src,
            &s.node_timeout,
            "scheduler.node_timeout",
            scheduler.node_timeout_ms,
        )?;
        scheduler.short_preemption_ms = duration(
            src,
            &s.short_preemption,
            "scheduler.short_preemption",
            scheduler.short_preemption_ms,
        )?;
        scheduler.action_timeout_ms = duration(
            src,
            &s.action_timeout,
            "scheduler.action_timeout",
            scheduler.action_timeout_ms,
        )?;
        if scheduler.poll_ms == 0 {
            return Err(src.at(
                s.poll_interval.as_ref().unwrap(),
                "scheduler.poll_interval",
                "must be more than zero",
            ));
        }
        if let Some(m) = &s.max_parallel_actions {
            if *m.get_ref() == 0 {
                return Err(src.at(m, "scheduler.max_parallel_actions", "must be at least 1"));
            }
            scheduler.max_parallel_actions = *m.get_ref();
        }
    }

    Ok(scheduler)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The configuration of the foundation issue, which must be accepted as is.
    pub const DEMO: &str = r#"state_dir = "/tmp/vjob-demo/state"
socket = "/tmp/vjob-demo/vjobd.sock"
admins = ["root"]

[hypervisor]
backend = "sim"

[[node]]
name = "n1"
cpus = 4
memory = "8GiB"

[[node]]
name = "n2"
cpus = 4
memory = "8GiB"

[[queue]]
name = "batch"
priority = 10
default = true

[[queue]]
name = "express"
priority = 100
"#;

    #[test]
    fn accepts_the_demo_configuration() {
        let c = Config::parse("demo.toml", DEMO).unwrap();
        assert_eq!(c.nodes.len(), 2);
        assert_eq!(c.nodes[1].memory, 8 << 30);
        assert_eq!(c.queues[0].name, "batch");
        assert!(c.queues[0].default && !c.queues[1].default);
        assert_eq!(c.queues[1].priority, 100);
        assert_eq!(c.socket, PathBuf::from("/tmp/vjob-demo/vjobd.sock"));
        assert_eq!(c.hypervisor.image_dir, PathBuf::from("/tmp/vjob-demo/state/images"));
    }

    fn err(text: &str) -> String {
        Config::parse("c.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn the_power_table_and_per_node_commands_are_read_with_their_errors_located() {
        let base = "state_dir = \"/s\"\n[[node]]\nname = \"a\"\ncpus = 2\nmemory = \"1GiB\"\npower_on = \"wake %n\"\n";
        let c = Config::parse("c.toml", base).unwrap();
        assert!(c.power.is_none(), "no [power] table: no power management");
        assert_eq!(c.nodes[0].power_on.as_deref(), Some("wake %n"));
        let c = Config::parse(
            "c.toml",
            &format!("{base}[power]\nidle_time = \"30s\"\nwatts_idle = 80.0\n"),
        )
        .unwrap();
        let p = c.power.unwrap();
        assert_eq!((p.rule.idle_ms, c.power_model.watts_idle), (30_000, 80.0));
        assert_eq!(
            err(&format!("{base}[power]\nidle_time = \"later\"\n")),
            "c.toml: line 8: field power.idle_time: `later` is not a duration: write it like 90s, 5m, 1h30m or 01:30:00"
        );
        assert!(
            err(&format!("{base}[power]\nidle = \"1m\"\n")).contains("line 8: field power.idle: unknown field `idle`")
        );
        assert!(
            err(&format!("{base}[power]\nwatts_idle = 900.0\n")).contains("field power.watts_idle: watts must grow")
        );
    }

    #[test]
    fn rejects_mistakes_with_their_place() {
        let base = "state_dir = \"/s\"\n[[node]]\nname = \"a\"\ncpus = 2\nmemory = \"1GiB\"\n";
        assert!(Config::parse("c.toml", base).is_ok());
        assert_eq!(
            err(&base.replace("\"1GiB\"", "\"1 parsec\"")),
            "c.toml: line 5: field node.memory: `1 parsec`: unknown size unit `parsec` (use B, KiB, MiB, GiB or TiB)"
        );
        assert!(err(&format!("{base}colour = 1\n")).contains("unknown field `colour`"));
        assert!(
            err(&format!("{base}[[node]]\nname = \"a\"\ncpus = 1\nmemory = \"1GiB\"\n"))
                .starts_with("c.toml: line 7: field node.name: node `a` is listed twice")
        );
        assert!(err("state_dir = \"rel\"\n").contains("absolute"));
        assert!(err("state_dir = \"/s\"\n").contains("no node"));
        assert!(err(&format!("{base}[hypervisor]\nbackend = \"xen\"\n"))
            .contains("line 7: field hypervisor.backend: unknown backend"));
        assert!(err(&format!("{base}[scheduler]\nquantum = \"soon\"\n")).contains("line 7: field scheduler.quantum"));
        assert!(err(&format!("cluster = \"9lives\"\n{base}"))
            .contains("line 1: field cluster: `9lives` must start with a letter"));
        assert!(err(&format!("cluster = \"a.b\"\n{base}")).contains("field cluster: `a.b` contains `.`"));
    }

    #[test]
    fn the_cluster_name_defaults_to_vjob_and_the_sim_nodes_live_in_the_state_dir() {
        let base = "state_dir = \"/s\"\n[[node]]\nname = \"a\"\ncpus = 2\nmemory = \"1GiB\"\n";
        let c = Config::parse("c.toml", base).unwrap();
        assert_eq!(
            (c.cluster.as_str(), c.hypervisor.sim_dir.as_path()),
            ("vjob", Path::new("/s/sim"))
        );
        let c = Config::parse(
            "c.toml",
            &format!("cluster = \"east-2\"\n{base}[hypervisor]\nsim_dir = \"/shared\"\n"),
        )
        .unwrap();
        assert_eq!(
            (c.cluster.as_str(), c.hypervisor.sim_dir.as_path()),
            ("east-2", Path::new("/shared"))
        );
    }

    #[cfg(feature = "libvirt")]
    #[test]
    fn accepts_the_libvirt_example() {
        let text = include_str!("../../../examples/libvirt-cluster.toml");
        let c = Config::parse("libvirt-cluster.toml", text).unwrap();
        assert_eq!(c.hypervisor.backend, Backend::Libvirt);
        assert!(c.hypervisor.shared_storage);
        assert_eq!(c.images.len(), 2);
        assert_eq!(
            c.images[1].disk.as_deref(),
            Some(Path::new("/tmp/vjob-guest/disk.qcow2"))
        );
        assert_eq!(c.nodes[1].migration_uri.as_deref(), Some("qemu+tcp://10.77.0.2/system"));
        assert_eq!(
            (c.scheduler.node_timeout_ms, c.scheduler.short_preemption_ms),
            (30_000, 120_000)
        );
        let spec =
            crate::spec::JobSpec::parse("guest.toml", include_str!("../../../examples/jobs/guest.toml")).unwrap();
        assert_eq!((spec.vm.count, spec.vm.image.as_deref()), (2, Some("tiny")));
    }

    #[test]
    fn images_are_a_kernel_with_an_initrd_or_a_disk() {
        let base = "state_dir = \"/s\"\n[[node]]\nname = \"a\"\ncpus = 2\nmemory = \"1GiB\"\n[[image]]\nname = \"i\"\n";
        let c = Config::parse(
            "c.toml",
            &format!("{base}kernel = \"/k\"\ninitrd = \"/i\"\nmemory = \"96MiB\"\n"),
        )
        .unwrap();
        assert_eq!(c.images[0].kernel.as_deref(), Some(Path::new("/k")));
        assert_eq!(c.images[0].memory, Some(96 << 20));
        let c = Config::parse("c.toml", &format!("{base}disk = \"/cloud.img\"\nformat = \"raw\"\n")).unwrap();
        assert_eq!(
            (c.images[0].disk.as_deref(), c.images[0].format.as_str()),
            (Some(Path::new("/cloud.img")), "raw")
        );
        let c = Config::parse(
            "c.toml",
            &format!("{base}disk = \"/d.qcow2\"\nkernel = \"/k\"\ncmdline = \"root=/dev/vda\"\n"),
        )
        .unwrap();
        assert_eq!(c.images[0].format, "qcow2");
        assert_eq!(c.images[0].cmdline.as_deref(), Some("root=/dev/vda"));
        assert!(err(base).contains("line 7: field image: image `i` needs a `kernel` (with an `initrd`) or a `disk`"));
        assert!(err(&format!("{base}kernel = \"/k\"\n"))
            .contains("field image.initrd: image `i` has a kernel but no `initrd`"));
        assert!(err(&format!("{base}disk = \"/d\"\ninitrd = \"/i\"\n"))
            .contains("line 9: field image.initrd: an `initrd` needs a `kernel`"));
        assert!(err(&format!("{base}disk = \"/d\"\nformat = \"vmdk\"\n"))
            .contains("line 9: field image.format: unknown disk format `vmdk`"));
    }

    #[test]
    fn a_default_queue_exists_even_when_none_is_configured() {
        let c = Config::parse(
            "c.toml",
            "state_dir = \"/s\"\n[[node]]\nname = \"a\"\ncpus = 2\nmemory = \"1GiB\"\n",
        )
        .unwrap();
        assert_eq!(c.queues.len(), 1);
        assert!(c.queues[0].default);
    }
}
