//! Fencing: a node that stops answering while it holds VMs is switched off, out of band, before
//! its VMs start over elsewhere, so that no VM ever runs twice.
//!
//! A node that does not answer its hypervisor connection may still be running its VMs (its
//! libvirtd died, its management network is cut): starting them elsewhere would run them twice,
//! two writers on one disk. So past `node_timeout` vjobd switches the node off with the site's
//! power command (`power_off`, the same one power management uses) or the backend's own switch,
//! as Pacemaker's STONITH does. Once the switch is confirmed the node is `fenced`: its VMs are
//! known gone (the node is `lost` until they all started over, even if switched on again
//! meanwhile), its vjobs start over ([`Core::requeue_from_lost_nodes`]), and it takes nothing
//! until an administrator switches it on again (`vqmgr node power on`). A node that cannot be
//! switched off (no power command and a backend that cannot) keeps its VMs waiting: they run
//! again as soon as it answers, or start over once an administrator who made sure it is off says
//! so (`vqmgr node lost NAME`). A failed switch is retried every `node_timeout`.
//!
//! The fenced state is stored with the node's power, so a restart between the switch and the
//! requeue still requeues; a restart during the switch waits `node_timeout` again and switches
//! again, which is harmless.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use vjob_api::ApiError;
use vjob_core::power::PowerState;

use crate::core_loop::{now_ms, Core};
use crate::jobs::VmPhase;

/// A node's fencing as the core keeps it (in memory only: see the module's doc).
#[derive(Debug, Clone, Default)]
pub struct Fence {
    /// A switch-off to fence it is under way.
    pub under_way: bool,
    /// Switch-offs that failed since it stopped answering, and when the last one did.
    pub failures: u32,
    pub failed_at: Option<Instant>,
}

impl Core {
    /// Starts fencing each node that has not answered for `node_timeout` while records put VMs
    /// of vjobs (or stale copies of them) there, unless a switch is under way or the last one
    /// failed less than `node_timeout` ago.
    pub(crate) fn fence_silent_nodes(&mut self) {
        let timeout = Duration::from_millis(self.cfg.scheduler.node_timeout_ms);
        let due: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| {
                let n = &self.nodes[i];
                n.down_since.is_some_and(|t| t.elapsed() >= timeout)
                    && n.fence.failed_at.is_none_or(|t| t.elapsed() >= timeout)
                    && !n.fence.under_way
                    && n.power.state == PowerState::On
            })
            .collect();
        // The records are scanned only when some node is due: not every round.
        if due.is_empty() {
            return;
        }
        // A stale copy counts: it may still run there, and a vjob waits for it.
        let mut holding = self.nodes_holding_vms();
        holding.extend(
            self.stale_copies()
                .iter()
                .filter_map(|(_, n)| self.node_idx(n))
                .map(|i| i as usize),
        );
        for i in due.into_iter().filter(|i| holding.contains(i)) {
            self.start_fence(i, timeout);
        }
    }

    /// The nodes that records put VMs of vjobs not ended on (running or paused there).
    pub(crate) fn nodes_holding_vms(&self) -> BTreeSet<usize> {
        self.rec
            .active
            .iter()
            .filter_map(|id| self.rec.jobs.get(id))
            .filter(|j| !j.state.is_final())
            .flat_map(|j| j.vms.iter())
            .filter(|v| matches!(v.phase, VmPhase::Running | VmPhase::Paused))
            .filter_map(|v| self.node_idx(v.node.as_deref()?))
            .map(|i| i as usize)
            .collect()
    }

    fn start_fence(&mut self, i: usize, timeout: Duration) {
        let name = self.nodes[i].cfg.name.clone();
        let why = format!(
            "node {name} did not answer for {} s: switching it off (fencing) before its VMs start over elsewhere",
            timeout.as_secs()
        );
        tracing::warn!(node = %name, "{why}");
        if self.nodes[i].fence.failures == 0 {
            self.note_on_jobs_at(&name, &why);
        }
        self.nodes[i].fence.under_way = true;
        self.start_power_call(self.power_call(i, false));
    }

    /// A fencing switch-off returned: confirmed, the node is fenced and its vjobs start over
    /// at the next reconciliation; failed, its vjobs wait (said in their history once).
    pub(crate) fn fence_done(&mut self, i: usize, result: Result<(), String>) {
        let name = self.nodes[i].cfg.name.clone();
        let timeout_s = self.cfg.scheduler.node_timeout_ms / 1000;
        let fence = &mut self.nodes[i].fence;
        fence.under_way = false;
        match result {
            Ok(()) => {
                *fence = Fence::default();
                tracing::warn!(node = %name, "node fenced: switched off");
                self.nodes[i].power.shutdowns += 1;
                let why = format!("did not answer for {timeout_s} s and was switched off (fenced)");
                self.nodes[i].power.lost = Some(why.clone());
                self.set_power(i, PowerState::Fenced, Some(why));
            }
            Err(e) => {
                fence.failures += 1;
                fence.failed_at = Some(Instant::now());
                let first = fence.failures == 1;
                tracing::error!(node = %name, error = %e, "fencing failed: the node's VMs wait for it");
                if first {
                    let why = format!(
                        "node {name} cannot be fenced ({e}): its VMs wait for it to answer, or for `vqmgr node lost {name}` once it is off"
                    );
                    self.note_on_jobs_at(&name, &why);
                }
            }
        }
    }

    /// `vqmgr node lost NAME`: an administrator says a node that does not answer is off (its
    /// VMs gone), so that its vjobs start over elsewhere without fencing.
    pub(crate) fn declare_lost(&mut self, name: &str) -> Result<String, ApiError> {
        let i = self
            .node_idx(name)
            .ok_or_else(|| ApiError::not_found(format!("no node {name}")))? as usize;
        let n = &self.nodes[i];
        if n.up {
            return Err(ApiError::conflict(format!(
                "node {name} answers: it is not lost (`vqmgr node offline {name}` moves its VMs away)"
            )));
        }
        if matches!(n.power.state, PowerState::Fenced | PowerState::Off) {
            return Ok(format!("node {name} is already {}", n.power.state.as_str()));
        }
        if n.fence.under_way {
            return Err(ApiError::conflict(format!(
                "node {name} is being fenced; wait for the switch-off to end"
            )));
        }
        tracing::warn!(node = %name, "node declared lost by an administrator");
        self.nodes[i].fence = Fence::default();
        let why = "declared lost by an administrator (switched off)".to_string();
        self.nodes[i].power.lost = Some(why.clone());
        self.set_power(i, PowerState::Fenced, Some(why));
        Ok(format!(
            "node {name} is fenced: its vjobs start over elsewhere; `vqmgr node power on {name}` once it is repaired"
        ))
    }

    /// Adds `message` to the history of every vjob with VMs on node `name`.
    fn note_on_jobs_at(&mut self, name: &str, message: &str) {
        let now = now_ms();
        let ids: Vec<u64> = self.rec.active.iter().copied().collect();
        for id in ids {
            let Some(job) = self.rec.jobs.get_mut(&id) else {
                continue;
            };
            if !job.state.is_final() && job.vms.iter().any(|v| v.node.as_deref() == Some(name)) {
                job.event(now, message);
                self.dirty.jobs.insert(id);
            }
        }
    }
}
