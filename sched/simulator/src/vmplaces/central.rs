//! The centralized scheduler, as Entropy and VMPlaceS's centralized resolver run: every period,
//! observe every node; if some node is violated, solve the whole cluster (the solve's time
//! passes in virtual time before anything moves: the world keeps changing meanwhile), carry the
//! plan out, and wait for it to end before the next round.
//!
//! Messages: each round, one observation of every node; each migration, one order.

use super::{micros, Event, Queue, Scheduler, World};

/// Its timers.
const WAKE: u64 = 0;
const PLAN_READY: u64 = 1;

#[derive(Default)]
pub struct Central {
    /// The plan computed and waiting for its solve time to pass.
    pending: Option<Vec<super::Move>>,
    /// When the round under way found violated nodes.
    event_since: super::Micros,
}

impl Central {
    fn next_round(&self, w: &World, q: &mut Queue) {
        q.at(
            w.now + micros(w.scenario.central_period_s),
            Event::Scheduler { token: WAKE },
        );
    }
}

impl Scheduler for Central {
    fn start(&mut self, w: &mut World, q: &mut Queue) {
        q.at(w.now, Event::Scheduler { token: WAKE });
    }

    fn on_event(&mut self, token: u64, w: &mut World, q: &mut Queue) {
        match token {
            WAKE => {
                w.counters.messages += w.nodes.len() as u64;
                if w.violated().next().is_none() {
                    return self.next_round(w, q);
                }
                w.counters.events += 1;
                self.event_since = w.now;
                let all: Vec<u32> = (0..w.nodes.len() as u32).collect();
                match w.solve(&all) {
                    Some(s) => {
                        self.pending = Some(s.moves);
                        q.at(w.now + micros(s.charged_s), Event::Scheduler { token: PLAN_READY });
                    }
                    None => {
                        w.event_ended(self.event_since, w.nodes.len(), false);
                        self.next_round(w, q)
                    }
                }
            }
            PLAN_READY => {
                let moves = self.pending.take().unwrap_or_default();
                w.counters.messages += moves.len() as u64;
                if !w.reconfigure(moves, 0, q) {
                    w.event_ended(self.event_since, w.nodes.len(), true);
                    self.next_round(w, q);
                }
            }
            _ => unreachable!("central's tokens are its two timers"),
        }
    }

    fn on_reconfigured(&mut self, _owner: u64, w: &mut World, q: &mut Queue) {
        w.event_ended(self.event_since, w.nodes.len(), true);
        self.next_round(w, q);
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::small;
    use super::super::*;

    #[test]
    fn the_central_scheduler_repairs_violations_by_checked_migrations() {
        let s = Scenario {
            load_std: 40.0,
            ..small(32)
        };
        let idle = {
            struct Idle;
            impl Scheduler for Idle {
                fn start(&mut self, _: &mut World, _: &mut Queue) {}
                fn on_event(&mut self, _: u64, _: &mut World, _: &mut Queue) {}
                fn on_reconfigured(&mut self, _: u64, _: &mut World, _: &mut Queue) {}
            }
            run_with(&s, &mut Idle, std::time::Instant::now()).report
        };
        let r = run(&s).report;
        assert!(r.events > 0 && r.solved > 0 && r.migrations > 0, "{r:?}");
        assert_eq!(r.plans_rejected, 0);
        assert!(
            r.cumulated_violation_s < idle.cumulated_violation_s / 2.0,
            "repairs cut violation time: {} vs {} without a scheduler",
            r.cumulated_violation_s,
            idle.cumulated_violation_s
        );
        assert_eq!(r.max_partition_size, 32, "central solves the whole cluster");
        assert_eq!(run(&s).report, r, "deterministic for a seed");
    }
}
