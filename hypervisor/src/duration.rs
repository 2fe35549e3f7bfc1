//! How long each VM action takes, modeled from the VM's memory and the bandwidths involved.
//!
//! One model serves the simulated backend (which sleeps that long), the planner (which schedules
//! actions with these estimates) and the trace simulator (which advances virtual time by them), so
//! the three always agree. Defaults come from measurements of tiny guests on libvirt/QEMU,
//! scaled to the bandwidths of an ordinary cluster node (NVMe disk, 10 GbE link).

use serde::{Deserialize, Serialize};

/// Durations of VM actions, in milliseconds, as functions of the VM's memory.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DurationModel {
    /// Booting a VM up to its guest program.
    pub boot_ms: u64,
    /// Destroying a VM (fixed cost).
    pub destroy_ms: u64,
    /// Pausing or unpausing a VM (fixed cost).
    pub pause_ms: u64,
    /// Fixed cost of a save or a restore (opening files, (re)creating the VMM process).
    pub save_overhead_ms: u64,
    /// Bytes per second written when saving a VM's memory to disk.
    pub save_bandwidth: u64,
    /// Bytes per second read when restoring a VM's memory from disk.
    pub restore_bandwidth: u64,
    /// Fixed cost of a live migration (handshake, final stop-and-copy).
    pub migrate_overhead_ms: u64,
    /// Bytes per second sent over the link during a live migration.
    pub migrate_bandwidth: u64,
}

impl Default for DurationModel {
    fn default() -> Self {
        DurationModel {
            boot_ms: 1_000,
            destroy_ms: 200,
            pause_ms: 40,
            save_overhead_ms: 300,
            save_bandwidth: 1 << 30,
            restore_bandwidth: 1 << 30,
            migrate_overhead_ms: 300,
            migrate_bandwidth: 1_250_000_000,
        }
    }
}

impl DurationModel {
    /// Durations measured with libvirt/QEMU on this project's machines (tiny guests under TCG,
    /// two libvirtd nodes on one host): boot 3.3 s to `/init`; save ~210 MB/s after a 300 ms
    /// overhead; restore ~100 MB/s after 500 ms; live migration ~70 MB/s after 300 ms. Slower
    /// than a production cluster's disks and links: a conservative cost for simulations.
    pub fn libvirt_lab() -> DurationModel {
        DurationModel {
            boot_ms: 3_300,
            destroy_ms: 240,
            pause_ms: 40,
            save_overhead_ms: 300,
            save_bandwidth: 210_000_000,
            restore_bandwidth: 100_000_000,
            migrate_overhead_ms: 300,
            migrate_bandwidth: 70_000_000,
        }
    }
}

fn transfer_ms(bytes: u64, bandwidth: u64) -> u64 {
    if bandwidth == 0 {
        return 0;
    }
    ((bytes as u128 * 1000).div_ceil(bandwidth as u128)) as u64
}

impl DurationModel {
    pub fn boot(&self, _memory: u64) -> u64 {
        self.boot_ms
    }
    pub fn destroy(&self, _memory: u64) -> u64 {
        self.destroy_ms
    }
    /// Suspend to disk: pause, then write the memory.
    pub fn save(&self, memory: u64) -> u64 {
        self.pause_ms + self.save_overhead_ms + transfer_ms(memory, self.save_bandwidth)
    }
    /// Resume from disk: read the memory back.
    pub fn restore(&self, memory: u64) -> u64 {
        self.save_overhead_ms + transfer_ms(memory, self.restore_bandwidth)
    }
    pub fn migrate(&self, memory: u64) -> u64 {
        self.migrate_overhead_ms + transfer_ms(memory, self.migrate_bandwidth)
    }
    pub fn pause(&self) -> u64 {
        self.pause_ms
    }

    /// Folds one measured action into the model, so that plans follow what the nodes really
    /// do: fixed costs move toward the measurement, and for the actions that move memory the
    /// time beyond the fixed overhead becomes a bandwidth sample. Each sample has weight
    /// [`OBSERVATION_WEIGHT`], so a single odd measurement cannot swing the model.
    pub fn observe(&mut self, action: Action, memory: u64, ms: u64) {
        fn blend(old: u64, sample: u64) -> u64 {
            let w = OBSERVATION_WEIGHT;
            (old as f64 * (1.0 - w) + sample as f64 * w).round() as u64
        }
        // Blended as time per byte: a transfer hidden in the overhead (a nearly empty guest)
        // counts as very fast, not as an infinite bandwidth.
        fn blend_bandwidth(old: u64, memory: u64, transfer_ms: u64) -> u64 {
            let w = OBSERVATION_WEIGHT;
            let old_rate = if old == 0 { 0.0 } else { 1000.0 / old as f64 };
            let rate = old_rate * (1.0 - w) + (transfer_ms as f64 / memory as f64) * w;
            if rate <= 0.0 {
                return MAX_BANDWIDTH;
            }
            ((1000.0 / rate) as u64).min(MAX_BANDWIDTH)
        }
        let after_overhead = |overhead: u64| ms.saturating_sub(overhead);
        match action {
            Action::Boot => self.boot_ms = blend(self.boot_ms, ms),
            Action::Destroy => self.destroy_ms = blend(self.destroy_ms, ms),
            Action::Pause => self.pause_ms = blend(self.pause_ms, ms),
            _ if memory == 0 => {}
            Action::Save => {
                let t = after_overhead(self.save_overhead_ms);
                self.save_bandwidth = blend_bandwidth(self.save_bandwidth, memory, t);
            }
            Action::Restore => {
                let t = after_overhead(self.save_overhead_ms);
                self.restore_bandwidth = blend_bandwidth(self.restore_bandwidth, memory, t);
            }
            Action::Migrate => {
                let t = after_overhead(self.migrate_overhead_ms);
                self.migrate_bandwidth = blend_bandwidth(self.migrate_bandwidth, memory, t);
            }
        }
    }
}

/// The weight of one measurement in [`DurationModel::observe`].
pub const OBSERVATION_WEIGHT: f64 = 0.25;

/// Bandwidths are capped here (1 TB/s): a transfer too short to measure is not free.
const MAX_BANDWIDTH: u64 = 1_000_000_000_000;

/// The kinds of VM actions the model times.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    Boot,
    Destroy,
    Pause,
    Save,
    Restore,
    Migrate,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_grow_with_memory() {
        let m = DurationModel::default();
        let gib = 1u64 << 30;
        assert_eq!(m.save(gib), 40 + 300 + 1000);
        assert_eq!(m.restore(4 * gib), 300 + 4000);
        assert!(m.migrate(2 * gib) > m.migrate(gib));
        assert_eq!(transfer_ms(1, 0), 0);
    }

    #[test]
    fn measurements_pull_the_model_toward_what_the_nodes_do() {
        let mut m = DurationModel::default();
        let gib = 1u64 << 30;
        // A node saving at 100 MB/s, much slower than the model's 1 GiB/s.
        let measured = m.save_overhead_ms + transfer_ms(gib, 100_000_000);
        let first = {
            let mut once = m;
            once.observe(Action::Save, gib, measured);
            once.save_bandwidth
        };
        assert!(
            first < 1 << 30 && first > 100_000_000,
            "one sample moves it part of the way: {first}"
        );
        for _ in 0..40 {
            m.observe(Action::Save, gib, measured);
        }
        let bw = m.save_bandwidth as f64;
        assert!(
            (bw / 100_000_000.0 - 1.0).abs() < 0.01,
            "converged to the measured 100 MB/s: {bw}"
        );
        assert!((m.save(gib) as f64 / (measured + m.pause_ms) as f64 - 1.0).abs() < 0.01);
        // Fixed costs blend directly.
        m.observe(Action::Boot, gib, 5_000);
        assert_eq!(m.boot_ms, 2_000);
        // A transfer hidden in the overhead is fast, not free nor infinitely fast.
        m.observe(Action::Migrate, gib, 10);
        assert!(m.migrate_bandwidth > 1_250_000_000 && m.migrate_bandwidth <= MAX_BANDWIDTH);
        assert!(m.migrate(gib) >= m.migrate_overhead_ms);
    }
}
