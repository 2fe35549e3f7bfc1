//! The context-switch policy, step by step: candidates in order; each one not running is
//! admitted if its limits allow and its VMs fit ([`Round::admit_or_preempt`]); a paused one
//! resumes where it is when its processors are free ([`Round::resume_paused`]); otherwise room is
//! made by suspending (or, for a short preemptor, pausing) running vjobs behind it, lowest first,
//! keeping those that turn out not to be needed ([`Round::victims`]).

use std::collections::{HashMap, HashSet};

use super::{order, Candidate, Decision, Limits, Standing};
use crate::plan::place::Placer;

/// The state of one decision round.
struct Round<'a> {
    cands: &'a [Candidate<'a>],
    order: Vec<usize>,
    placer: &'a mut Placer,
    limits: &'a Limits,
    decision: Decision,
    /// Running vjobs per queue, and per queue and user.
    running_q: HashMap<&'a str, u32>,
    running_qu: HashMap<(&'a str, &'a str), u32>,
    /// Candidates decided to be suspended or paused this round.
    suspended: Vec<bool>,
    /// Shapes (VMs to place, what each needs) that did not fit without preemption this round:
    /// a later candidate of the same shape and no higher priority cannot fit either.
    failed_shapes: HashSet<Shape<'a>>,
    /// Shapes that could not fit even by preemption: a later candidate has fewer possible
    /// victims, so it cannot either (until room is freed).
    hopeless: HashSet<Shape<'a>>,
    /// Some queue has a limit on running vjobs: they are counted.
    limited: bool,
}

/// How many VMs a candidate must place, and what each of them needs (a vjob's VMs are alike).
type Shape<'a> = (usize, &'a [u64]);

/// The context-switch policy. `placer` holds the load of the VMs of running candidates that
/// have a host, and of everything else that occupies nodes.
pub fn context_switch(cands: &[Candidate<'_>], placer: &mut Placer, limits: &Limits) -> Decision {
    let mut round = Round {
        cands,
        order: order(cands),
        placer,
        limits,
        decision: Decision::default(),
        running_q: HashMap::new(),
        running_qu: HashMap::new(),
        suspended: vec![false; cands.len()],
        failed_shapes: HashSet::new(),
        hopeless: HashSet::new(),
        limited: limits.queues.values().any(|(q, u)| q.is_some() || u.is_some()),
    };
    if round.limited {
        for c in cands.iter().filter(|c| c.standing == Standing::Running) {
            *round.running_q.entry(c.queue).or_default() += 1;
            *round.running_qu.entry((c.queue, c.user)).or_default() += 1;
        }
    }
    for pos in 0..round.order.len() {
        round.consider(pos);
    }
    round.decision
}

impl<'a> Round<'a> {
    /// The candidate at position `pos` of the order.
    fn consider(&mut self, pos: usize) {
        let i = self.order[pos];
        let c = &self.cands[i];
        let missing = c.vms - c.placed.len();
        if (c.standing == Standing::Running && missing == 0) || self.suspended[i] {
            return;
        }
        if c.standing != Standing::Running {
            if !c.eligible {
                return;
            }
            if let Some(why) = self.over_limit(c).filter(|_| self.limited) {
                self.decision.waiting.push((c.id, why));
                return;
            }
        }
        if c.standing == Standing::Paused {
            self.resume_paused(c);
            return;
        }
        self.admit_or_preempt(pos, i, missing);
    }

    /// Why a queue or user limit keeps `c` from running, if one does.
    fn over_limit(&self, c: &Candidate<'_>) -> Option<String> {
        let (qmax, umax) = self.limits.queues.get(c.queue).copied().unwrap_or((None, None));
        let in_queue = self.running_q.get(c.queue).copied().unwrap_or(0);
        if let Some(m) = qmax.filter(|&m| in_queue >= m) {
            return Some(format!("queue {} is at its limit of {m} running vjobs", c.queue));
        }
        let of_user = self.running_qu.get(&(c.queue, c.user)).copied().unwrap_or(0);
        umax.filter(|&m| of_user >= m).map(|m| {
            format!(
                "user {} is at the limit of {m} running vjobs in queue {}",
                c.user, c.queue
            )
        })
    }

    /// A paused vjob resumes where it is, once its processors are free there; it preempts
    /// nobody.
    fn resume_paused(&mut self, c: &'a Candidate<'a>) {
        let back = self
            .limits
            .pause
            .as_ref()
            .map_or_else(|| c.demand.to_vec(), |r| r.freed(c.demand));
        let mark = self.placer.mark();
        let placer = &mut *self.placer;
        let fits = c.placed.iter().all(|&h| {
            let ok = placer.fits(h, &back);
            if ok {
                placer.take(h, &back);
            }
            ok
        });
        if fits {
            self.admit(c);
        } else {
            self.placer.rollback(mark);
            self.decision
                .waiting
                .push((c.id, "paused in memory: waiting for processors on its nodes".into()));
        }
    }

    /// Candidate `i` (at position `pos`), `missing` of whose VMs must be placed: admitted if
    /// they fit, else by preempting vjobs behind it, else it waits (a running one whose VMs have
    /// nowhere to go is suspended whole).
    fn admit_or_preempt(&mut self, pos: usize, i: usize, missing: usize) {
        let c = &self.cands[i];
        let shape: Shape<'a> = (missing, c.demand);
        if c.standing != Standing::Running && self.hopeless.contains(&shape) {
            self.decision.waiting.push((c.id, "waiting for resources".into()));
            return;
        }
        let demands: Vec<&[u64]> = vec![c.demand; missing];
        if !self.failed_shapes.contains(&shape) {
            if let Some(nodes) = self.placer.place_group(&demands) {
                self.admit(c);
                self.decision.placed.push((c.id, nodes));
                return;
            }
            self.failed_shapes.insert(shape);
        }
        let Some((needed, pausing)) = self.victims(pos, c, &demands) else {
            if c.standing == Standing::Running {
                // Its misplaced VMs have nowhere to go: the whole vjob sleeps.
                self.suspend(i, None);
            } else {
                self.decision.waiting.push((c.id, "waiting for resources".into()));
                self.hopeless.insert(shape);
            }
            return;
        };
        for &j in &needed {
            let v = &self.cands[j];
            self.suspended[j] = true;
            if pausing {
                self.decision.pause.push((v.id, c.id));
            } else {
                self.decision.suspend.push((v.id, Some(c.id)));
            }
            if v.standing == Standing::Running {
                self.count_out(v);
            }
        }
        let nodes = self.placer.place_group(&demands).expect("room was just made");
        self.admit(c);
        self.decision.placed.push((c.id, nodes));
        // Room was freed: shapes that failed may fit now.
        self.failed_shapes.clear();
        self.hopeless.clear();
    }

    /// The vjobs to preempt for `c` (at position `pos`) so that `demands` fit, and whether they
    /// are paused in memory (a short preemptor, when processors are enough) rather than saved.
    /// The placer is left as it was.
    fn victims(&mut self, pos: usize, c: &Candidate<'_>, demands: &[&[u64]]) -> Option<(Vec<usize>, bool)> {
        let short = self
            .limits
            .pause
            .as_ref()
            .filter(|r| c.standing != Standing::Running && c.requested_ms.is_some_and(|w| w <= r.max_walltime_ms));
        for pausing in [true, false] {
            if pausing && short.is_none() {
                continue;
            }
            let mark = self.placer.mark();
            let Some(victims) = self.lowest_first(pos, c, demands, pausing) else {
                self.placer.rollback(mark);
                continue;
            };
            return Some((self.keep_unneeded(&victims, demands, pausing), pausing));
        }
        None
    }

    /// What preempting `v` gives back: all it holds, or (pausing) its processors only; a vjob
    /// already paused that is saved gives back the memory it still holds.
    fn gives_back(&self, v: &Candidate<'_>, pausing: bool) -> Vec<u64> {
        match (pausing, v.standing, self.limits.pause.as_ref()) {
            (true, _, Some(r)) => r.freed(v.demand),
            (false, Standing::Paused, Some(r)) => r.held(v.demand),
            _ => v.demand.to_vec(),
        }
    }

    /// Releases running vjobs behind position `pos` that `c` outranks, lowest first, until
    /// `demands` fit; returns them, or `None` if even all of them are not enough.
    fn lowest_first(&mut self, pos: usize, c: &Candidate<'_>, demands: &[&[u64]], pausing: bool) -> Option<Vec<usize>> {
        let mut victims = Vec::new();
        for &j in self.order[pos + 1..].iter().rev() {
            let v = &self.cands[j];
            let may_go = v.standing == Standing::Running || (!pausing && v.standing == Standing::Paused);
            if !may_go || v.protected || self.suspended[j] {
                continue;
            }
            let outranked = c.queue_priority > v.queue_priority
                || self
                    .limits
                    .preempt_ratio
                    .is_none_or(|r| c.priority as f64 >= r * v.priority as f64);
            if !outranked {
                continue;
            }
            let back = self.gives_back(v, pausing);
            for &h in v.placed {
                self.placer.release(h, &back);
            }
            victims.push(j);
            let trial = self.placer.mark();
            if self.placer.place_group(demands).is_some() {
                self.placer.rollback(trial);
                return Some(victims);
            }
        }
        None
    }

    /// Of the released `victims`, takes back every one that is not needed, highest priority
    /// first; returns those that are.
    fn keep_unneeded(&mut self, victims: &[usize], demands: &[&[u64]], pausing: bool) -> Vec<usize> {
        let mut needed = Vec::new();
        for &j in victims.iter().rev() {
            let v = &self.cands[j];
            let back = self.placer.mark();
            let d = self.gives_back(v, pausing);
            let mut ok = true;
            for &h in v.placed {
                if self.placer.fits(h, &d) {
                    self.placer.take(h, &d);
                } else {
                    ok = false;
                    break;
                }
            }
            let trial = self.placer.mark();
            if ok && self.placer.place_group(demands).is_some() {
                self.placer.rollback(trial);
            } else {
                self.placer.rollback(back);
                needed.push(j);
            }
        }
        needed
    }

    fn admit(&mut self, c: &'a Candidate<'a>) {
        self.decision.run.push(c.id);
        if c.standing != Standing::Running && self.limited {
            *self.running_q.entry(c.queue).or_default() += 1;
            *self.running_qu.entry((c.queue, c.user)).or_default() += 1;
        }
    }

    fn count_out(&mut self, v: &'a Candidate<'a>) {
        if !self.limited {
            return;
        }
        *self.running_q.entry(v.queue).or_default() -= 1;
        *self.running_qu.entry((v.queue, v.user)).or_default() -= 1;
    }

    /// Suspends candidate `i` whole (`by`: the vjob it makes room for).
    fn suspend(&mut self, i: usize, by: Option<u64>) {
        let c = &self.cands[i];
        for &h in c.placed {
            self.placer.release(h, c.demand);
        }
        self.suspended[i] = true;
        self.decision.suspend.push((c.id, by));
        self.count_out(c);
    }
}
