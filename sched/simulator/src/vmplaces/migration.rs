//! How long a live migration takes: pre-copy, as SimGrid's live-migration model and QEMU do it.
//!
//! Round 0 sends the whole memory `M` at the bandwidth `B`; while a round is sent the guest
//! dirties memory at rate `D` (proportional to its CPU load), and the next round sends what was
//! dirtied. The rounds stop when what is left could be sent within the allowed downtime, or
//! after [`MAX_ROUNDS`] (a guest that dirties faster than the link sends never converges); then
//! the guest stops and the rest is sent (stop-and-copy). Each round also pays one latency. The
//! VM holds its memory and CPU on both nodes meanwhile.

/// Most pre-copy rounds before stop-and-copy.
pub const MAX_ROUNDS: u32 = 30;

/// What a migration's duration depends on besides the VM.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Bytes per second.
    pub bandwidth: f64,
    /// Seconds, one way.
    pub latency: f64,
}

/// The pre-copy model's parameters.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreCopy {
    /// Bytes per second a guest at full load (100% of a core) dirties.
    pub dirty_rate_at_full_load: f64,
    /// Seconds the guest may be stopped for the last round.
    pub max_downtime: f64,
}

impl Default for PreCopy {
    /// A guest at full load dirties 20 MB/s (SimGrid's default dirty page intensity order of
    /// magnitude for a busy 1 GiB guest); 30 ms of downtime, as QEMU's default.
    fn default() -> Self {
        PreCopy {
            dirty_rate_at_full_load: 20e6,
            max_downtime: 0.030,
        }
    }
}

impl PreCopy {
    /// Seconds to migrate a VM of `memory` bytes at `load` (0 to 100, % of a core) over `link`.
    pub fn duration(&self, memory: u64, load: u32, link: Link) -> f64 {
        let dirty = self.dirty_rate_at_full_load * f64::from(load.min(100)) / 100.0;
        let stop_at = link.bandwidth * self.max_downtime;
        let mut to_send = memory as f64;
        let mut total = 0.0;
        for _ in 0..MAX_ROUNDS {
            let t = to_send / link.bandwidth;
            total += t + link.latency;
            // What was dirtied, never more than the whole memory.
            to_send = (dirty * t).min(memory as f64);
            if to_send <= stop_at {
                break;
            }
        }
        total + to_send / link.bandwidth + link.latency
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;
    const GIGABIT: Link = Link {
        bandwidth: 125e6,
        latency: 0.0001,
    };

    #[test]
    fn an_idle_guest_moves_in_one_round_and_a_busy_one_pays_for_what_it_dirties() {
        let m = PreCopy::default();
        let idle = m.duration(GIB, 0, GIGABIT);
        assert!((idle - GIB as f64 / 125e6).abs() < 0.01, "{idle}");
        let busy = m.duration(GIB, 100, GIGABIT);
        // Round 0 ~8.6 s, then 20/125 of it, and so on: a geometric series of ratio 0.16.
        let expected = GIB as f64 / 125e6 / (1.0 - 0.16);
        assert!((busy - expected).abs() < 0.1, "{busy} vs {expected}");
        assert!(m.duration(GIB, 50, GIGABIT) < busy);
    }

    #[test]
    fn a_guest_dirtying_faster_than_the_link_stops_after_the_last_round() {
        let m = PreCopy {
            dirty_rate_at_full_load: 250e6,
            ..PreCopy::default()
        };
        let d = m.duration(GIB, 100, GIGABIT);
        assert!(d.is_finite() && d > 30.0 * 8.0, "every round resends everything: {d}");
        let slow = Link {
            bandwidth: 12.5e6,
            latency: 0.05,
        };
        assert!(PreCopy::default().duration(GIB, 10, slow) > 10.0 * PreCopy::default().duration(GIB, 10, GIGABIT));
    }
}
