//! Node power: what a node draws in each state, and when nodes are switched off and on (in the
//! spirit of Slurm's power saving: `SuspendTime` is [`PowerRule::idle_ms`]). Pure, so that the
//! simulator and the daemon decide alike: node states and times in, the nodes to switch out.

use crate::model::NodeIdx;

/// What a node draws: off, on and idle, on and every core busy (linear in between).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerModel {
    pub watts_off: f64,
    pub watts_idle: f64,
    pub watts_busy: f64,
}

impl Default for PowerModel {
    /// A two-socket server of the 2020s: ~100 W idle, ~250 W at full load, 5 W off (its BMC).
    fn default() -> Self {
        PowerModel {
            watts_off: 5.0,
            watts_idle: 100.0,
            watts_busy: 250.0,
        }
    }
}

impl PowerModel {
    /// Watts of `nodes` nodes on with `busy` of their `cores` cores (each) busy in all, and
    /// `off` nodes off (booting and shutting-down nodes count as on and idle).
    pub fn cluster_watts(&self, on: u64, off: u64, busy: u64, cores: u64) -> f64 {
        let per_core = (self.watts_busy - self.watts_idle) / cores.max(1) as f64;
        on as f64 * self.watts_idle + busy as f64 * per_core + off as f64 * self.watts_off
    }
}

/// When nodes are switched off and on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PowerRule {
    /// A node empty this long is switched off.
    pub idle_ms: u64,
    /// Never fewer nodes on (or booting) than this.
    pub min_on: usize,
    /// Empty nodes kept on (or booting) ready for what arrives, booted ahead when fewer are:
    /// arrivals then start without waiting for a boot.
    pub spare: usize,
    /// How long a boot and a shutdown take.
    pub boot_ms: u64,
    pub shutdown_ms: u64,
}

impl PowerRule {
    /// How often consolidation is tried: half the idle time, within 5 s and 5 minutes.
    pub fn consolidation_interval_ms(&self) -> u64 {
        (self.idle_ms / 2).clamp(5_000, 300_000)
    }
}

impl Default for PowerRule {
    fn default() -> Self {
        PowerRule {
            idle_ms: 10 * 60_000,
            min_on: 1,
            spare: 0,
            boot_ms: 120_000,
            shutdown_ms: 30_000,
        }
    }
}

/// A node's power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PowerState {
    #[default]
    On,
    Off,
    Booting,
    ShuttingDown,
    /// Its boot did not answer in time: it takes nothing until an administrator acts.
    FailedToBoot,
    /// Switched off because it stopped answering while it held VMs (so that they could start
    /// over elsewhere without running twice): it takes nothing until an administrator switches
    /// it on again.
    Fenced,
}

impl PowerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::On => "on",
            PowerState::Off => "off",
            PowerState::Booting => "booting",
            PowerState::ShuttingDown => "shutting-down",
            PowerState::FailedToBoot => "failed-to-boot",
            PowerState::Fenced => "fenced",
        }
    }

    /// What a node in this state draws with `busy` of its `cores` cores busy.
    pub fn watts(self, model: &PowerModel, busy: u64, cores: u64) -> f64 {
        match self {
            s if s.draws() => model.cluster_watts(1, 0, busy.min(cores), cores),
            _ => model.watts_off,
        }
    }

    /// Draws power as a node that is on (a boot and a shutdown run the machine).
    pub fn draws(self) -> bool {
        matches!(self, PowerState::On | PowerState::Booting | PowerState::ShuttingDown)
    }
}

/// The nodes to switch off at `now`: on, empty since at least `rule.idle_ms` (`empty_since`),
/// longest empty first, keeping `rule.min_on` nodes on or booting.
pub fn to_switch_off(states: &[PowerState], empty_since: &[Option<u64>], now: u64, rule: &PowerRule) -> Vec<NodeIdx> {
    let staying = states
        .iter()
        .filter(|s| matches!(s, PowerState::On | PowerState::Booting))
        .count();
    let mut idle: Vec<(u64, NodeIdx)> = (0..states.len())
        .filter(|&n| states[n] == PowerState::On)
        .filter_map(|n| {
            empty_since[n]
                .filter(|&t| now.saturating_sub(t) >= rule.idle_ms)
                .map(|t| (t, n as NodeIdx))
        })
        .collect();
    let empty = (0..states.len())
        .filter(|&n| states[n] == PowerState::Booting || (states[n] == PowerState::On && empty_since[n].is_some()))
        .count();
    idle.sort_unstable();
    idle.truncate(
        staying
            .saturating_sub(rule.min_on)
            .min(empty.saturating_sub(rule.spare)),
    );
    idle.into_iter().map(|(_, n)| n).collect()
}

/// A node as power management sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct NodePower {
    pub state: PowerState,
    /// Processors and memory.
    pub capacity: [u64; 2],
    /// What is free of them (meaningful when on).
    pub free: [u64; 2],
    /// On and holding nothing (no VM, no action under way) since then.
    pub empty_since: Option<u64>,
    /// Power management may boot it when off (an administrator did not switch it off, it did
    /// not fail to boot, it takes VMs once on).
    pub may_boot: bool,
    /// Takes new VMs (on, online).
    pub accepts: bool,
}

/// The nodes to switch off and on now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Switches {
    pub off: Vec<NodeIdx>,
    pub boot: Vec<NodeIdx>,
}

/// At most `.1` of the nodes `.0` powered at any instant: the datacenter's `maxOnline` rules.
pub type Cap = (Vec<NodeIdx>, u64);

/// The `maxOnline` caps among `constraints`.
pub fn caps(constraints: &[crate::instance::Constraint]) -> Vec<Cap> {
    constraints
        .iter()
        .filter_map(|c| match c {
            crate::instance::Constraint::MaxOnline { nodes, amount, .. } => Some((nodes.clone(), *amount)),
            _ => None,
        })
        .collect()
}

/// The VMs still to place of each vjob that waits for room, in the policy's order, as
/// (processors, memory) demands: what booting nodes could serve.
pub type Short = [Vec<[u64; 2]>];

/// What to switch at `now`, `short` being the vjobs that wait for room and `wanted` the off nodes
/// the policy placed some of them on ([`crate::policy::Decision::boot`]): while some wait, no
/// node goes off, the wanted nodes are booted, then other off nodes, in order, as few as let
/// each waiting vjob in turn fit, VM by VM, first fit, into what the open nodes have free, the
/// booting ones will bring and the ones booted for the vjobs before it (a vjob that would not fit
/// even with every node on boots nothing); otherwise empty nodes idle for `rule.idle_ms` go off
/// ([`to_switch_off`]). Under `caps`, a node whose boot would power more of a capped set than
/// allowed stays off, and empty nodes of a set over its cap go off at once.
pub fn switches(
    nodes: &[NodePower],
    short: &Short,
    wanted: &[NodeIdx],
    now: u64,
    rule: &PowerRule,
    caps: &[Cap],
) -> Switches {
    let powered = |set: &[NodeIdx], extra: &[NodeIdx]| {
        set.iter()
            .filter(|&&n| nodes[n as usize].state.draws() || extra.contains(&n))
            .count() as u64
    };
    // Booting `i` as well as `boot` would power more of a capped set than allowed.
    let capped = |boot: &[NodeIdx], i: NodeIdx| {
        caps.iter()
            .any(|(set, amount)| set.contains(&i) && powered(set, boot) >= *amount)
    };
    let mut off: Vec<NodeIdx> = Vec::new();
    for (set, amount) in caps {
        let mut over = powered(set, &[]).saturating_sub(*amount);
        for &n in set {
            let node = &nodes[n as usize];
            if over > 0 && node.state == PowerState::On && node.empty_since.is_some() && !off.contains(&n) {
                off.push(n);
                over -= 1;
            }
        }
    }
    if short.iter().all(|vms| vms.is_empty()) && wanted.is_empty() {
        let states: Vec<PowerState> = nodes.iter().map(|n| n.state).collect();
        let empty: Vec<Option<u64>> = nodes.iter().map(|n| n.empty_since).collect();
        for n in to_switch_off(&states, &empty, now, rule) {
            if !off.contains(&n) {
                off.push(n);
            }
        }
        let ready = (0..nodes.len())
            .filter(|&i| {
                nodes[i].state == PowerState::Booting || (empty[i].is_some() && !off.contains(&(i as NodeIdx)))
            })
            .count();
        let mut boot = Vec::new();
        for (i, n) in nodes.iter().enumerate() {
            if ready + boot.len() < rule.spare
                && n.state == PowerState::Off
                && n.may_boot
                && !capped(&boot, i as NodeIdx)
            {
                boot.push(i as NodeIdx);
            }
        }
        return Switches { off, boot };
    }
    let mut first: Vec<NodeIdx> = Vec::new();
    for &n in wanted {
        let node = &nodes[n as usize];
        if node.state == PowerState::Off && node.may_boot && !first.contains(&n) && !capped(&first, n) {
            first.push(n);
        }
    }
    let boot = boots_for(nodes, short, &off, first, capped);
    Switches { off, boot }
}

/// The off nodes to boot, `boot` and more, so that the vjobs of `short` fit in turn
/// ([`switches`]); `capped(boot, n)`: booting `n` as well as `boot` would exceed a cap.
fn boots_for(
    nodes: &[NodePower],
    short: &Short,
    off: &[NodeIdx],
    mut boot: Vec<NodeIdx>,
    capped: impl Fn(&[NodeIdx], NodeIdx) -> bool,
) -> Vec<NodeIdx> {
    // What each node offers: free room when open, all of it when booting or booted here.
    let mut room: Vec<[u64; 2]> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| match n.state {
            PowerState::On if n.accepts && !off.contains(&(i as NodeIdx)) => n.free,
            PowerState::Booting => n.capacity,
            PowerState::Off if boot.contains(&(i as NodeIdx)) => n.capacity,
            _ => [0, 0],
        })
        .collect();
    let mut bootable: Vec<NodeIdx> = (0..nodes.len() as NodeIdx)
        .filter(|&i| nodes[i as usize].state == PowerState::Off && nodes[i as usize].may_boot)
        .filter(|i| !boot.contains(i))
        .collect();
    for vms in short {
        if bootable.is_empty() {
            break;
        }
        let mut vms = vms.clone();
        vms.sort_unstable_by(|a, b| b.cmp(a));
        let mut trial = room.clone();
        let mut booted: Vec<NodeIdx> = Vec::new();
        let fits = vms.iter().all(|d| {
            let fits_in = |r: &[u64; 2]| r[0] >= d[0] && r[1] >= d[1];
            if let Some(r) = trial.iter_mut().find(|r| fits_in(r)) {
                r[0] -= d[0];
                r[1] -= d[1];
                return true;
            }
            let all: Vec<NodeIdx> = boot.iter().chain(&booted).copied().collect();
            let Some(&n) = bootable
                .iter()
                .find(|&&n| !booted.contains(&n) && fits_in(&nodes[n as usize].capacity) && !capped(&all, n))
            else {
                return false;
            };
            let c = nodes[n as usize].capacity;
            trial[n as usize] = [c[0] - d[0], c[1] - d[1]];
            booted.push(n);
            true
        });
        if fits {
            room = trial;
            bootable.retain(|n| !booted.contains(n));
            boot.extend(booted);
        }
    }
    boot.sort_unstable();
    boot
}

/// A node's power as [`boots`] reads it: its state, since when (ms), and whether power
/// management may boot it when off.
pub type PowerSince = (PowerState, u64, bool);

/// What the context-switch policy is told of boots ([`crate::policy::Boots`]): the nodes booting,
/// on at the start of their boot plus `rule.boot_ms`, and the off ones power management may boot
/// and no `maxOnline` cap holds off, on at `now + rule.boot_ms`.
pub fn boots(
    nodes: &[PowerSince],
    now: u64,
    rule: &PowerRule,
    caps: &[Cap],
    durations: vjob_hypervisor::DurationModel,
) -> crate::policy::Boots {
    let mut b = crate::policy::Boots {
        now_ms: now,
        durations,
        ..Default::default()
    };
    for (i, &(state, since, may_boot)) in nodes.iter().enumerate() {
        let n = i as NodeIdx;
        match state {
            PowerState::Booting => b.on_at.push((n, since + rule.boot_ms)),
            PowerState::Off if may_boot && !caps.iter().any(|(set, _)| set.contains(&n)) => {
                b.on_at.push((n, now + rule.boot_ms));
                b.off.push(n);
            }
            _ => {}
        }
    }
    b
}

/// A VM as consolidation sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Resident {
    /// The caller's key for it.
    pub key: usize,
    pub demand: [u64; 2],
    /// Running, with no action under way, in a vjob that may move.
    pub movable: bool,
    /// How long its vjob is expected to run still (`None`: unknown, as long as it pleases).
    pub remaining_ms: Option<u64>,
    /// How long a live migration of it takes.
    pub migrate_ms: u64,
}

/// Consolidation: one node that on nodes can empty by live-migrating its VMs elsewhere (onto the
/// fullest nodes they fit, largest VM first), when the energy that saves pays for the moves:
/// the node would otherwise stay on until its last VM ends (drawing `watts_idle - watts_off`
/// more than off), and each move keeps two nodes busy for its duration (`2 x watts_idle`). The
/// least loaded node that qualifies; `None` when none does. `residents[n]` are node `n`'s VMs.
pub fn consolidation(
    nodes: &[NodePower],
    residents: &[Vec<Resident>],
    model: &PowerModel,
) -> Option<(NodeIdx, Vec<(usize, NodeIdx)>)> {
    let mut candidates: Vec<NodeIdx> = (0..nodes.len())
        .filter(|&n| nodes[n].state == PowerState::On && !residents[n].is_empty())
        .filter(|&n| residents[n].iter().all(|r| r.movable))
        .map(|n| n as NodeIdx)
        .collect();
    let used = |n: NodeIdx| residents[n as usize].iter().map(|r| r.demand[0]).sum::<u64>();
    candidates.sort_by_key(|&n| (used(n), n));
    for c in candidates {
        let mut free: Vec<[u64; 2]> = nodes.iter().map(|n| n.free).collect();
        let mut vms: Vec<&Resident> = residents[c as usize].iter().collect();
        vms.sort_by_key(|r| std::cmp::Reverse(r.demand));
        let mut moves = Vec::with_capacity(vms.len());
        for r in &vms {
            // The fullest node it fits on that is not empty (an empty node may be going off).
            let target = (0..nodes.len())
                .filter(|&t| t != c as usize && nodes[t].accepts && !residents[t].is_empty())
                .filter(|&t| free[t][0] >= r.demand[0] && free[t][1] >= r.demand[1])
                .min_by_key(|&t| (free[t][0] - r.demand[0], t));
            let Some(t) = target else { break };
            free[t][0] -= r.demand[0];
            free[t][1] -= r.demand[1];
            moves.push((r.key, t as NodeIdx));
        }
        if moves.len() < vms.len() {
            continue;
        }
        let stays_s = vms
            .iter()
            .map(|r| r.remaining_ms.unwrap_or(u64::MAX / 2))
            .max()
            .unwrap_or(0) as f64
            / 1000.0;
        let gain_j = stays_s * (model.watts_idle - model.watts_off);
        let cost_j: f64 = vms
            .iter()
            .map(|r| r.migrate_ms as f64 / 1000.0 * 2.0 * model.watts_idle)
            .sum();
        if gain_j > cost_j {
            return Some((c, moves));
        }
    }
    None
}

/// Everything the `[power]` table of a cluster configuration says.
#[derive(Debug, Clone, PartialEq)]
pub struct PowerSettings {
    pub model: PowerModel,
    pub rule: PowerRule,
    /// A node booted and not answering after this long has failed to boot.
    pub boot_timeout_ms: u64,
    /// The shell commands that switch a node on and off (`%n`: the node's name, else it is
    /// their last argument); `None`: the backend's own (the simulated nodes).
    pub power_on: Option<String>,
    pub power_off: Option<String>,
    /// A power command not over after this long has failed (it is killed).
    pub command_timeout_ms: u64,
    /// Move running vjobs live so that nodes can go off.
    pub consolidate: bool,
}

/// The `[power]` table as written: read by vjobd's configuration and by `vsim --power-config`.
#[derive(Debug, Clone, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PowerTable {
    idle_time: Option<toml::Spanned<String>>,
    boot_time: Option<toml::Spanned<String>>,
    shutdown_time: Option<toml::Spanned<String>>,
    boot_timeout: Option<toml::Spanned<String>>,
    command_timeout: Option<toml::Spanned<String>>,
    min_on: Option<usize>,
    spare: Option<usize>,
    watts_idle: Option<toml::Spanned<f64>>,
    watts_busy: Option<f64>,
    watts_off: Option<f64>,
    power_on: Option<String>,
    power_off: Option<String>,
    consolidate: Option<bool>,
}

/// A bad value in a `[power]` table: where (a byte range of the file), which field, what.
#[derive(Debug, Clone, PartialEq)]
pub struct TableError {
    pub span: Option<std::ops::Range<usize>>,
    pub field: String,
    pub message: String,
}

impl PowerTable {
    /// The settings, defaults filled in, validated.
    pub fn settings(&self) -> Result<PowerSettings, TableError> {
        let duration = |v: &Option<toml::Spanned<String>>, field: &str, default: u64| match v {
            None => Ok(default),
            Some(s) => vjob_api::units::parse_duration_ms(s.get_ref()).map_err(|message| TableError {
                span: Some(s.span()),
                field: format!("power.{field}"),
                message,
            }),
        };
        let d = PowerRule::default();
        let rule = PowerRule {
            idle_ms: duration(&self.idle_time, "idle_time", d.idle_ms)?,
            boot_ms: duration(&self.boot_time, "boot_time", d.boot_ms)?,
            shutdown_ms: duration(&self.shutdown_time, "shutdown_time", d.shutdown_ms)?,
            min_on: self.min_on.unwrap_or(d.min_on),
            spare: self.spare.unwrap_or(d.spare),
        };
        let m = PowerModel::default();
        let model = PowerModel {
            watts_idle: self.watts_idle.as_ref().map_or(m.watts_idle, |w| *w.get_ref()),
            watts_busy: self.watts_busy.unwrap_or(m.watts_busy),
            watts_off: self.watts_off.unwrap_or(m.watts_off),
        };
        if !(model.watts_off >= 0.0 && model.watts_off <= model.watts_idle && model.watts_idle <= model.watts_busy) {
            return Err(TableError {
                span: self.watts_idle.as_ref().map(|w| w.span()),
                field: "power.watts_idle".into(),
                message: format!(
                    "watts must grow from off ({}) to idle ({}) to busy ({})",
                    model.watts_off, model.watts_idle, model.watts_busy
                ),
            });
        }
        let boot_timeout_ms = duration(&self.boot_timeout, "boot_timeout", (rule.boot_ms * 3).max(300_000))?;
        if boot_timeout_ms == 0 {
            let span = self.boot_timeout.as_ref().map(|s| s.span());
            return Err(TableError {
                span,
                field: "power.boot_timeout".into(),
                message: "must be more than zero".into(),
            });
        }
        Ok(PowerSettings {
            model,
            rule,
            boot_timeout_ms,
            power_on: self.power_on.clone().filter(|c| !c.trim().is_empty()),
            power_off: self.power_off.clone().filter(|c| !c.trim().is_empty()),
            command_timeout_ms: duration(&self.command_timeout, "command_timeout", 60_000)?,
            consolidate: self.consolidate.unwrap_or(true),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn idle_nodes_go_off_longest_idle_first_and_min_on_stay() {
        use PowerState::*;
        let rule = PowerRule {
            idle_ms: 100,
            min_on: 2,
            ..PowerRule::default()
        };
        let states = [On, On, On, Off, On];
        let empty = [Some(0), None, Some(50), None, Some(10)];
        // Nodes 0, 2 and 4 are empty; 0 and 4 long enough; four on, two must stay.
        assert_eq!(to_switch_off(&states, &empty, 150, &rule), vec![0, 4]);
        assert_eq!(to_switch_off(&states, &empty, 120, &rule), vec![0, 4]);
        assert_eq!(
            to_switch_off(&states, &empty, 200, &rule),
            vec![0, 4],
            "min_on keeps 2 on"
        );
        let rule = PowerRule { min_on: 3, ..rule };
        assert_eq!(to_switch_off(&states, &empty, 200, &rule), vec![0]);
    }

    fn node(state: PowerState, cpus: u64, free: u64) -> NodePower {
        NodePower {
            state,
            capacity: [cpus, cpus * 2],
            free: [free, free * 2],
            empty_since: None,
            may_boot: true,
            accepts: state == PowerState::On,
        }
    }

    #[test]
    fn boots_cover_what_free_and_booting_nodes_do_not_and_no_node_goes_off_meanwhile() {
        use PowerState::*;
        let rule = PowerRule::default();
        let mut nodes = vec![node(On, 4, 4), node(Off, 4, 0), node(Off, 4, 0), node(Off, 4, 0)];
        nodes[0].empty_since = Some(0);
        let at = |nodes: &[NodePower], short: &[Vec<[u64; 2]>]| switches(nodes, short, &[], 1 << 40, &rule, &[]);
        let vjob = |cpus: &[u64]| cpus.iter().map(|&c| [c, 0]).collect::<Vec<_>>();
        let ten = [vjob(&[4, 4, 2])];
        assert_eq!(at(&nodes, &ten).boot, vec![1, 2], "4 free + 2 nodes of 4");
        assert_eq!(at(&nodes, &ten).off, Vec::<NodeIdx>::new());
        assert_eq!(at(&nodes, &[vjob(&[4])]).boot, Vec::<NodeIdx>::new());
        assert_eq!(
            at(&nodes, &[vec![[2, 8], [1, 1]]]).boot,
            vec![1],
            "memory short alone boots"
        );
        let fragments = [vjob(&[3]), vjob(&[2]), vjob(&[2])];
        assert_eq!(
            at(&nodes, &fragments).boot,
            vec![1],
            "7 processors wanted, 4 free, but a VM of 2 does not fit in the 1 left: one boot serves both"
        );
        let four = [vjob(&[4]), vjob(&[4]), vjob(&[4]), vjob(&[4]), vjob(&[4])];
        assert_eq!(at(&nodes, &four).boot, vec![1, 2, 3], "no more than are off");
        assert_eq!(
            at(&nodes, &[vjob(&[4; 10]), vjob(&[4])]).boot,
            Vec::<NodeIdx>::new(),
            "a vjob that cannot fit with every node on boots nothing; the next one fits"
        );
        assert_eq!(
            at(&nodes, &[vjob(&[5])]).boot,
            Vec::<NodeIdx>::new(),
            "bigger than any node"
        );
        let wanted = |short: &[Vec<[u64; 2]>], wanted: &[NodeIdx]| switches(&nodes, short, wanted, 1 << 40, &rule, &[]);
        assert_eq!(
            wanted(&[vjob(&[4]), vjob(&[4])], &[3]).boot,
            vec![3],
            "the node the policy placed a vjob on, and its room serves the next"
        );
        assert_eq!(wanted(&[], &[3, 0]).boot, vec![3], "an open node is not booted");
        nodes[1].state = Booting;
        nodes[2].may_boot = false;
        assert_eq!(
            at(&nodes, &ten).boot,
            vec![3],
            "a booting node counts, one that may not boot is skipped"
        );
        assert_eq!(
            at(&nodes, &[]).off,
            vec![0],
            "idle long enough; the booting one keeps min_on"
        );
        let m = PowerModel::default();
        assert_eq!(m.cluster_watts(2, 1, 4, 4), 2.0 * 100.0 + 150.0 + 5.0);
    }

    #[test]
    fn max_online_caps_the_nodes_powered_and_switches_empty_ones_off_at_once() {
        use PowerState::*;
        let rule = PowerRule::default();
        let mut nodes = vec![node(On, 4, 0), node(On, 4, 4), node(Off, 4, 0), node(Off, 4, 0)];
        nodes[1].empty_since = Some(1 << 40);
        let caps = vec![(vec![0, 1, 2], 1)];
        // Two of {0, 1, 2} on, one allowed: the empty one goes off now, not after idle_time.
        let s = switches(&nodes, &[], &[], 1 << 40, &rule, &caps);
        assert_eq!(s.off, vec![1]);
        // Room wanted: node 2 is capped, node 3 is not.
        let s = switches(&nodes, &[vec![[4, 0]]], &[], 1 << 40, &rule, &caps);
        assert_eq!((s.off, s.boot), (vec![1], vec![3]));
        let s = switches(&nodes, &[], &[2], 1 << 40, &rule, &caps);
        assert_eq!(s.boot, Vec::<NodeIdx>::new(), "a wanted node is capped too");
        assert_eq!(caps_of_none(), Vec::<Cap>::new());
    }

    #[test]
    fn spare_empty_nodes_stay_on_and_are_booted_ahead_when_fewer() {
        use PowerState::*;
        let rule = PowerRule {
            idle_ms: 100,
            min_on: 1,
            spare: 1,
            ..PowerRule::default()
        };
        let mut nodes = vec![node(On, 4, 0), node(On, 4, 4), node(On, 4, 4), node(Off, 4, 0)];
        nodes[1].empty_since = Some(0);
        nodes[2].empty_since = Some(50);
        // Two empty for long enough; one stays as the spare (the latest emptied).
        let s = switches(&nodes, &[], &[], 1000, &rule, &[]);
        assert_eq!((s.off, s.boot), (vec![1], vec![]));
        // No empty node left on: the off one is booted ahead.
        nodes[1].empty_since = None;
        nodes[2].empty_since = None;
        let s = switches(&nodes, &[], &[], 1000, &rule, &[]);
        assert_eq!((s.off, s.boot), (vec![], vec![3]));
    }

    fn caps_of_none() -> Vec<Cap> {
        caps(&[])
    }

    fn resident(key: usize, cpus: u64, remaining_ms: Option<u64>) -> Resident {
        Resident {
            key,
            demand: [cpus, cpus],
            movable: true,
            remaining_ms,
            migrate_ms: 15_000,
        }
    }

    #[test]
    fn a_lone_small_vm_moves_to_the_fullest_node_it_fits_when_that_pays() {
        use PowerState::*;
        let nodes = vec![node(On, 4, 1), node(On, 4, 3), node(On, 4, 2), node(On, 4, 4)];
        let residents = vec![
            vec![resident(0, 3, None)],
            vec![resident(1, 1, Some(3_600_000))],
            vec![resident(2, 2, None)],
            vec![],
        ];
        let m = PowerModel::default();
        // Node 1 holds least; its VM fits on node 0 (1 free) and node 2 (2 free): the fullest.
        assert_eq!(consolidation(&nodes, &residents, &m), Some((1, vec![(1, 0)])));
        // A VM that ends in 20 s is not worth a 15 s move (2 x 15 s x 100 W > 20 s x 95 W).
        let mut soon = vec![
            vec![resident(0, 3, None)],
            vec![resident(1, 1, Some(20_000))],
            vec![],
            vec![],
        ];
        soon[0][0].movable = false;
        let nodes2 = vec![node(On, 4, 1), node(On, 4, 3), node(On, 4, 4), node(On, 4, 4)];
        assert_eq!(consolidation(&nodes2, &soon, &m), None);
        // A VM that cannot move keeps its node.
        let mut stuck = residents.clone();
        stuck[1][0].movable = false;
        // Then node 2 (2 used) is the least loaded that can go: its VM to node 1 (3 free).
        assert_eq!(consolidation(&nodes, &stuck, &m), Some((2, vec![(2, 1)])));
    }

    #[test]
    fn the_power_table_reads_with_defaults_and_locates_bad_values() {
        let t: PowerTable =
            toml::from_str("idle_time = '30s'\nmin_on = 2\npower_on = 'ipmitool power on %n'\n").unwrap();
        let s = t.settings().unwrap();
        assert_eq!((s.rule.idle_ms, s.rule.min_on), (30_000, 2));
        assert_eq!(s.power_on.as_deref(), Some("ipmitool power on %n"));
        assert!(s.consolidate);
        assert_eq!(s.boot_timeout_ms, 360_000, "three boots, at least 5 minutes");
        let t: PowerTable = toml::from_str("boot_timeout = 'soon'").unwrap();
        let e = t.settings().unwrap_err();
        assert_eq!(e.field, "power.boot_timeout");
        assert!(e.span.is_some() && e.message.contains("not a duration"), "{e:?}");
        let t: PowerTable = toml::from_str("watts_idle = 300.0").unwrap();
        assert!(t.settings().unwrap_err().message.contains("watts must grow"));
        assert!(toml::from_str::<PowerTable>("idle = '1m'").is_err());
    }
}
