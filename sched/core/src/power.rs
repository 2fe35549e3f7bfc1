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
    /// How long a boot and a shutdown take.
    pub boot_ms: u64,
    pub shutdown_ms: u64,
}

impl Default for PowerRule {
    fn default() -> Self {
        PowerRule {
            idle_ms: 10 * 60_000,
            min_on: 1,
            boot_ms: 120_000,
            shutdown_ms: 30_000,
        }
    }
}

/// A node's power state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerState {
    On,
    Off,
    Booting,
    ShuttingDown,
    /// Its boot did not answer in time: it takes nothing until an administrator acts.
    FailedToBoot,
}

impl PowerState {
    pub fn as_str(self) -> &'static str {
        match self {
            PowerState::On => "on",
            PowerState::Off => "off",
            PowerState::Booting => "booting",
            PowerState::ShuttingDown => "shutting-down",
            PowerState::FailedToBoot => "failed-to-boot",
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
    idle.sort_unstable();
    idle.truncate(staying.saturating_sub(rule.min_on));
    idle.into_iter().map(|(_, n)| n).collect()
}

/// How many off nodes to boot so that `needed` processors have room: what the open nodes have
/// free (`free`) and the booting ones will bring (`coming`) are counted first; nodes of `cores`
/// processors; at most `off`.
pub fn nodes_to_boot(needed: u64, free: u64, coming: u64, cores: u64, off: usize) -> usize {
    let short = needed.saturating_sub(free + coming);
    (short.div_ceil(cores.max(1)) as usize).min(off)
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

    #[test]
    fn boots_cover_what_free_and_booting_nodes_do_not() {
        assert_eq!(nodes_to_boot(10, 4, 0, 4, 5), 2);
        assert_eq!(nodes_to_boot(10, 4, 4, 4, 5), 1);
        assert_eq!(nodes_to_boot(10, 12, 0, 4, 5), 0);
        assert_eq!(nodes_to_boot(100, 0, 0, 4, 3), 3, "no more than are off");
        let m = PowerModel::default();
        assert_eq!(m.cluster_watts(2, 1, 4, 4), 2.0 * 100.0 + 150.0 + 5.0);
    }
}
