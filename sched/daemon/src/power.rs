//! Node power in vjobd: each node's power state (on, off, booting, shutting down, failed to
//! boot), the switches power management makes (the shared rule of [`vjob_core::power`]: idle
//! nodes off, the fewest nodes booted for what queued vjobs wait for, consolidation by live
//! migration), the switches administrators make by hand, and the energy accounted per node
//! and per vjob.
//!
//! A switch is an executor call ([`Call::Power`]: the site's command, then the backend's own
//! switch), so a command that fails or hangs costs the loop nothing: the call fails (or is given
//! up on past its deadline) and the node is marked accordingly. A booted node is on once it
//! answers its hypervisor connection; one that does not within `boot_timeout` has failed to boot,
//! and takes nothing until an administrator switches it on again. Power states are written to
//! the store with the node, so a restart in the middle of a boot waits for the same boot.

use std::time::{Duration, Instant};

use vjob_api::{ApiError, JobState, NodeAdminState};
use vjob_core::model::NodeIdx;
use vjob_core::power::{self, NodePower, PowerState, Resident};
use vjob_hypervisor::DomainState;

use crate::core_loop::{now_ms, Core, NodeView};
use crate::exec::Call;
use crate::jobs::{parse_vm_name, VmPhase};

/// A node's power as stored and as the core keeps it.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PowerRecord {
    pub state: PowerState,
    /// Since when it is in that state, ms since the epoch.
    pub since_ms: u64,
    /// Why it is in that state, when that needs saying (a failed boot, a switch by hand).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Switched off by an administrator: power management does not boot it.
    #[serde(default)]
    pub by_hand: bool,
    /// Energy it drew since the state directory was made, joules.
    #[serde(default)]
    pub energy_j: f64,
    /// Fenced or declared lost, and why: the VMs the records put there are gone. Kept (a
    /// switch-on by hand notwithstanding) until every vjob with VMs there has started over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lost: Option<String>,
    /// The boot id it last answered with (its backend's
    /// [`vjob_hypervisor::Hypervisor::boot_id`]): a new one means it rebooted, and the VMs the
    /// records put there were lost with it. Stored, so a reboot while vjobd was down is seen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub boot_id: Option<String>,
    /// Times it was switched on and off.
    #[serde(default)]
    pub boots: u64,
    #[serde(default)]
    pub shutdowns: u64,
}

impl Default for PowerRecord {
    fn default() -> Self {
        PowerRecord {
            state: PowerState::On,
            since_ms: now_ms(),
            reason: None,
            by_hand: false,
            lost: None,
            boot_id: None,
            energy_j: 0.0,
            boots: 0,
            shutdowns: 0,
        }
    }
}

/// Power management's own pace and what the last decision left waiting.
pub struct PowerBook {
    /// What the VMs of each vjob the last decision left waiting for room need (processors,
    /// memory), in the policy's order.
    pub short: Vec<Vec<[u64; 2]>>,
    /// The off nodes the last decision placed vjobs on, to boot.
    pub wanted: Vec<NodeIdx>,
    /// When energy was last accounted.
    accounted: Instant,
    /// When the nodes' energy and the jobs' shares were last written.
    persisted: Instant,
    /// When consolidation was last tried.
    consolidated: Instant,
    /// Each node's last time with something on it (or its switch on), ms: idleness is counted
    /// from there.
    pub busy_at: Vec<u64>,
}

impl PowerBook {
    pub fn new(nodes: usize) -> PowerBook {
        let now = Instant::now();
        PowerBook {
            short: Vec::new(),
            wanted: Vec::new(),
            accounted: now,
            persisted: now,
            consolidated: now,
            busy_at: vec![now_ms(); nodes],
        }
    }
}

/// How often energy is written to the store (it is kept in memory in between).
const PERSIST_EVERY: Duration = Duration::from_secs(60);

impl Core {
    /// One pass of power management: energy accounted, boots timed out, shutdowns over, then
    /// (with a `[power]` table, while no plan runs) idle nodes switched off, nodes booted for
    /// waiting vjobs, or one node emptied by consolidation.
    pub(crate) fn manage_power(&mut self) {
        self.account_energy();
        let Some(settings) = self.cfg.power.clone() else { return };
        let now = now_ms();
        for i in 0..self.nodes.len() {
            let p = &self.nodes[i].power;
            let waited = now.saturating_sub(p.since_ms);
            let busy = self.switching(i);
            match p.state {
                PowerState::Booting if !busy && waited > settings.boot_timeout_ms => {
                    let why = format!(
                        "no answer {} after it was switched on (boot_timeout)",
                        vjob_api::display::hms(settings.boot_timeout_ms as f64 / 1000.0)
                    );
                    tracing::warn!(node = %self.nodes[i].cfg.name, "{why}: failed to boot");
                    self.set_power(i, PowerState::FailedToBoot, Some(why));
                }
                PowerState::ShuttingDown if !busy && waited >= settings.rule.shutdown_ms => {
                    self.set_power(i, PowerState::Off, None);
                }
                _ => {}
            }
        }
        if self.plan_running() || !self.rec.manual_moves.is_empty() {
            return;
        }
        let view = self.power_view(now);
        let caps = power::caps(&self.cfg.datacenter.constraints);
        let switches = power::switches(&view, &self.power.short, &self.power.wanted, now, &settings.rule, &caps);
        for &n in &switches.off {
            self.switch(n as usize, false, "idle");
        }
        for &n in &switches.boot {
            self.switch(n as usize, true, "queued vjobs need room");
        }
        let interval = Duration::from_millis(settings.rule.consolidation_interval_ms());
        if settings.consolidate
            && self.power.short.is_empty()
            && switches == power::Switches::default()
            && self.power.consolidated.elapsed() >= interval
        {
            self.power.consolidated = Instant::now();
            self.consolidate(&view);
        }
    }

    /// Whether a switch of node `i` is under way (its call keyed by the node alone).
    fn switching(&self, i: usize) -> bool {
        self.calls
            .busy
            .contains(&(String::new(), self.nodes[i].cfg.name.clone()))
    }

    /// Each node as power management sees it, idleness counted from `busy_at`.
    fn power_view(&mut self, now: u64) -> Vec<NodePower> {
        let occupied = self.occupied_nodes();
        (0..self.nodes.len())
            .map(|i| {
                let n = &self.nodes[i];
                let on = n.power.state == PowerState::On;
                if !on || occupied[i] {
                    self.power.busy_at[i] = now;
                }
                let used = self.used_on(i);
                NodePower {
                    state: n.power.state,
                    capacity: [n.cfg.cpus as u64, n.cfg.memory],
                    free: [
                        (n.cfg.cpus as u64).saturating_sub(used[0]),
                        n.cfg.memory.saturating_sub(used[1]),
                    ],
                    empty_since: (on && !occupied[i] && n.admin != NodeAdminState::Drain)
                        .then_some(self.power.busy_at[i]),
                    may_boot: !n.power.by_hand && n.admin == NodeAdminState::Online,
                    accepts: on && n.up && n.admin == NodeAdminState::Online,
                }
            })
            .collect()
    }

    /// Processors and memory taken on node `i` by what it lists.
    fn used_on(&self, i: usize) -> [u64; 2] {
        self.nodes[i]
            .domains
            .iter()
            .filter(|d| !matches!(d.state, DomainState::Ended { .. } | DomainState::Crashed))
            .fold([0, 0], |a, d| [a[0] + d.vcpus as u64, a[1] + d.memory])
    }

    /// Nodes holding something: a VM they list, a VM the records put there, a call under way.
    fn occupied_nodes(&self) -> Vec<bool> {
        let mut occupied: Vec<bool> = self.nodes.iter().map(|n| !n.domains.is_empty()).collect();
        for job in self.rec.active.iter().filter_map(|id| self.rec.jobs.get(id)) {
            let nodes = job
                .vms
                .iter()
                .filter(|v| v.phase != VmPhase::Gone)
                .filter_map(|v| v.node.as_deref())
                .chain(job.stale.iter().map(|(_, n)| n.as_str()));
            for n in nodes {
                if let Some(i) = self.node_idx(n) {
                    occupied[i as usize] = true;
                }
            }
        }
        for (_, node) in self.calls.busy.iter().chain(&self.calls.hung) {
            if let Some(i) = self.node_idx(node) {
                occupied[i as usize] = true;
            }
        }
        if let Some((run, _, _)) = &self.calls.run {
            for i in run.steps.iter().filter_map(|s| self.node_idx(s.op.node()?)) {
                occupied[i as usize] = true;
            }
        }
        occupied
    }

    /// Starts switching node `i`: the state shows it at once; the call's outcome settles it.
    fn switch(&mut self, i: usize, on: bool, why: &str) {
        tracing::info!(node = %self.nodes[i].cfg.name, on, why, "switching a node");
        let state = if on {
            PowerState::Booting
        } else {
            PowerState::ShuttingDown
        };
        self.set_power(i, state, None);
        let p = &mut self.nodes[i].power;
        if on {
            p.boots += 1;
        } else {
            p.shutdowns += 1;
        }
        self.start_power_call(self.power_call(i, on));
    }

    /// The call that switches node `i` on or off: the node's own power command, else the
    /// `[power]` table's, then the backend's switch.
    pub(crate) fn power_call(&self, i: usize, on: bool) -> Call {
        let settings = self.cfg.power.clone().unwrap_or_else(|| {
            vjob_core::power::PowerTable::default()
                .settings()
                .expect("the defaults are valid")
        });
        let cfg = &self.nodes[i].cfg;
        let command = if on {
            cfg.power_on.clone().or(settings.power_on)
        } else {
            cfg.power_off.clone().or(settings.power_off)
        };
        Call::Power {
            node: cfg.name.clone(),
            on,
            command,
            timeout_ms: settings.command_timeout_ms,
        }
    }

    /// Node `i` enters `state`, with `reason`.
    pub(crate) fn set_power(&mut self, i: usize, state: PowerState, reason: Option<String>) {
        let p = &mut self.nodes[i].power;
        if p.state == state && p.reason == reason {
            return;
        }
        p.state = state;
        p.since_ms = now_ms();
        p.reason = reason;
        self.power.busy_at[i] = p.since_ms;
        self.dirty.nodes.insert(self.nodes[i].cfg.name.clone());
        self.pace.need_decision = true;
    }

    /// A switch call returned: an `on` that failed is a failed boot; an `off` that failed
    /// leaves the node on, saying why.
    pub(crate) fn power_call_done(&mut self, node: &str, on: bool, result: Result<(), String>) {
        let Some(i) = self.node_idx(node).map(|i| i as usize) else {
            return;
        };
        if !on && self.nodes[i].fence.under_way {
            return self.fence_done(i, result);
        }
        match (on, result) {
            (_, Ok(())) => {
                // Booting until it answers; shutting down for the modeled shutdown time.
                self.nodes[i].power.since_ms = now_ms();
            }
            (true, Err(e)) => {
                tracing::warn!(node, error = %e, "switching a node on failed");
                self.set_power(
                    i,
                    PowerState::FailedToBoot,
                    Some(format!("switching it on failed: {e}")),
                );
            }
            (false, Err(e)) => {
                tracing::warn!(node, error = %e, "switching a node off failed");
                self.set_power(i, PowerState::On, Some(format!("switching it off failed: {e}")));
            }
        }
    }

    /// A node listed its VMs: a booting one is on.
    pub(crate) fn power_node_answered(&mut self, i: usize) {
        if self.nodes[i].power.state == PowerState::Booting && !self.switching(i) {
            tracing::info!(node = %self.nodes[i].cfg.name, "node booted");
            self.set_power(i, PowerState::On, None);
        }
    }

    /// `vqmgr node power on|off NAME`: off is refused while the node holds anything; on clears
    /// a failed boot and a switch-off by hand.
    pub(crate) fn power_by_hand(&mut self, name: &str, on: bool) -> Result<String, ApiError> {
        let i = self
            .node_idx(name)
            .ok_or_else(|| ApiError::not_found(format!("no node {name}")))? as usize;
        let state = self.nodes[i].power.state;
        if on {
            self.nodes[i].power.by_hand = false;
            if matches!(state, PowerState::On | PowerState::Booting) {
                return Ok(format!("node {name} is already {}", state.as_str()));
            }
            self.switch(i, true, "by hand");
            return Ok(format!("node {name}: switching on"));
        }
        if self.occupied_nodes()[i] || self.plan_running() {
            let what = if self.plan_running() {
                "a plan is being carried out"
            } else {
                "it holds VMs or has actions under way"
            };
            return Err(ApiError::conflict(format!(
                "node {name} cannot be switched off: {what}; `vqmgr node offline {name}` moves its VMs away first"
            )));
        }
        self.nodes[i].power.by_hand = true;
        self.dirty.nodes.insert(name.to_string());
        if matches!(state, PowerState::Off | PowerState::ShuttingDown) {
            return Ok(format!("node {name} is already {}", state.as_str()));
        }
        self.switch(i, false, "by hand");
        self.nodes[i].power.reason = Some("switched off by an administrator".into());
        Ok(format!("node {name}: switching off"))
    }

    /// Consolidation: one node emptied by moving its VMs live onto other nodes, when that
    /// pays ([`power::consolidation`]); the moves go through the next decision as manual moves.
    fn consolidate(&mut self, view: &[NodePower]) {
        let now = now_ms();
        let mut residents: Vec<Vec<Resident>> = vec![Vec::new(); self.nodes.len()];
        let mut keys: Vec<(u64, usize)> = Vec::new();
        for job in self.rec.active.iter().filter_map(|id| self.rec.jobs.get(id)) {
            let movable = job.state == JobState::Running && !self.rules.contains_key(&job.id);
            let remaining_ms = job.spec.walltime_ms.map(|w| w.saturating_sub(job.elapsed_ms(now)));
            for (idx, v) in job.vms.iter().enumerate() {
                let Some(n) = v.node.as_deref().and_then(|n| self.node_idx(n)) else {
                    continue;
                };
                if v.phase == VmPhase::Gone {
                    continue;
                }
                let shape = job.spec.vm.shape(idx);
                residents[n as usize].push(Resident {
                    key: keys.len(),
                    demand: [shape.vcpus as u64, shape.memory],
                    movable: movable && v.phase == VmPhase::Running && !self.is_busy(&v.name),
                    remaining_ms,
                    migrate_ms: self.durations.learned.migrate(shape.memory),
                });
                keys.push((job.id, idx));
            }
        }
        // Other clusters' VMs and stale copies never move: a node holding one stays.
        for (i, n) in self.nodes.iter().enumerate() {
            let ours = |name: &str| parse_vm_name(&self.cfg.cluster, name).is_some();
            if n.domains.iter().any(|d| !ours(&d.name)) {
                residents[i].push(Resident {
                    key: usize::MAX,
                    demand: [0, 0],
                    movable: false,
                    remaining_ms: None,
                    migrate_ms: 0,
                });
            }
        }
        let Some((node, moves)) = power::consolidation(view, &residents, &self.cfg.power_model) else {
            return;
        };
        let from = self.nodes[node as usize].cfg.name.clone();
        for (key, to) in moves {
            let (id, idx) = keys[key];
            let to = self.nodes[to as usize].cfg.name.clone();
            let job = self.rec.jobs.get_mut(&id).expect("listed above");
            let vm = job.vms[idx].name.clone();
            job.event(
                now,
                format!("consolidation: VM {vm} moves live to {to} so that {from} can be switched off"),
            );
            self.dirty.jobs.insert(id);
            self.rec.manual_moves.insert(vm, to);
        }
        tracing::info!(node = %from, "consolidation: emptying a node so that it can be switched off");
        self.pace.need_decision = true;
    }

    /// Adds the energy drawn since the last pass to each node and to the vjobs running there
    /// (each VM's share of its node by vcpus); written to the store every minute.
    fn account_energy(&mut self) {
        let dt = self.power.accounted.elapsed().as_secs_f64();
        self.power.accounted = Instant::now();
        let model = self.cfg.power_model;
        let mut shares: Vec<(u64, f64)> = Vec::new();
        for n in &mut self.nodes {
            let busy: u64 = running(n).map(|(_, c)| c).sum();
            let joules = dt * n.power.state.watts(&model, busy, n.cfg.cpus as u64);
            n.power.energy_j += joules;
            for (vm, vcpus) in running(n) {
                if let Some((id, _)) = parse_vm_name(&self.cfg.cluster, vm) {
                    shares.push((id, joules * vcpus as f64 / busy as f64));
                }
            }
        }
        let persist = self.power.persisted.elapsed() >= PERSIST_EVERY;
        for (id, j) in shares {
            if let Some(job) = self.rec.jobs.get_mut(&id) {
                job.energy_j += j;
                if persist {
                    self.dirty.jobs.insert(id);
                }
            }
        }
        if persist {
            self.power.persisted = Instant::now();
            self.dirty.nodes.extend(self.nodes.iter().map(|n| n.cfg.name.clone()));
        }
    }

    /// Watts node `i` draws now.
    pub(crate) fn node_watts(&self, i: NodeIdx) -> f64 {
        let n = &self.nodes[i as usize];
        let busy: u64 = running(n).map(|(_, c)| c).sum();
        n.power.state.watts(&self.cfg.power_model, busy, n.cfg.cpus as u64)
    }
}

/// The VMs a node lists as running, with their vcpus: what makes its cores busy.
fn running(n: &NodeView) -> impl Iterator<Item = (&str, u64)> {
    n.domains
        .iter()
        .filter(|d| d.state == DomainState::Running)
        .map(|d| (d.name.as_str(), d.vcpus as u64))
}
