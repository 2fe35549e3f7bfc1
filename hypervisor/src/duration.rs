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
}
