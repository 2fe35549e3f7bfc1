//! The context-switch policy, step by step: candidates in order; each one not running is
//! admitted if its limits allow and its VMs fit ([`Round::admit_or_preempt`]); a paused one
//! resumes where it is when its processors are free ([`Round::resume_paused`]); otherwise room is
//! made by moving running VMs live out of its way when that pays ([`Round::defragment`]), else by
//! suspending (or, for a short preemptor, pausing) running vjobs behind it, lowest first,
//! keeping those that turn out not to be needed ([`Round::victims`]).

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};

use super::{order, Candidate, Decision, Defragment, Limits, Move, Standing};
use crate::hash::WordHash;
use crate::model::NodeIdx;
use crate::plan::place::Placer;
use crate::plan::room::{make_room, Relocation};
use crate::resources::{CPU, MEMORY};

/// The state of one decision round.
struct Round<'a> {
    cands: &'a [Candidate<'a>],
    order: Vec<usize>,
    /// The positions in `order` of the candidates that may be preempted (running or paused,
    /// not protected), in order: under load most candidates wait, and a search for victims
    /// passes over them.
    preemptible: Vec<usize>,
    /// For each entry of `preemptible`, the index of the first of its run of equal queue
    /// priority and rank: within a run, priorities fall in order.
    run_start: Vec<usize>,
    placer: &'a mut Placer,
    limits: &'a Limits,
    decision: Decision,
    /// Running vjobs per queue, and per queue and user.
    running_q: HashMap<&'a str, u32>,
    running_qu: HashMap<(&'a str, &'a str), u32>,
    /// Running vjobs per group of candidates with a group limit.
    running_g: HashMap<u64, u32>,
    /// Candidates decided to be suspended or paused this round.
    suspended: Vec<bool>,
    /// Shapes (VMs to place, what each needs) that did not fit without preemption this round:
    /// a later candidate of the same shape and no higher priority cannot fit either.
    failed_shapes: HashSet<Shape<'a>, WordHash>,
    /// Shapes that could not fit even by preemption: a later candidate has fewer possible
    /// victims, so it cannot either (until room is freed).
    hopeless: HashSet<Shape<'a>, WordHash>,
    /// Some queue has a limit on running vjobs: they are counted.
    limited: bool,
    /// Per node, the VMs of running candidates there, (candidate, index in its `placed`):
    /// built the first time running VMs may be moved this round.
    running_on: Option<Vec<Vec<(usize, usize)>>>,
    /// Where the VMs moved this round are now.
    moved_to: HashMap<(usize, usize), NodeIdx, WordHash>,
    /// Candidates some VM of which moves this round: they are not also suspended in it.
    moved: Vec<bool>,
    /// The placement rules of the candidate being admitted, when it has some.
    rules: Option<&'a crate::placement::VjobRules>,
}

/// VM `k` of running candidate `j` moves: ((j, k), from, to).
type SlotMove = ((usize, usize), NodeIdx, NodeIdx);

/// How many VMs a candidate must place, and what each of them needs (of a vjob whose VMs are
/// alike).
type Shape<'a> = (usize, &'a [u64]);

/// The context-switch policy. `placer` holds the load of the VMs of running candidates that
/// have a host, and of everything else that occupies nodes.
pub fn context_switch(cands: &[Candidate<'_>], placer: &mut Placer, limits: &Limits) -> Decision {
    let order = order(cands);
    let (preemptible, run_start) = preemptible_runs(cands, &order);
    let mut round = Round {
        cands,
        order,
        preemptible,
        run_start,
        placer,
        limits,
        decision: Decision::default(),
        running_q: HashMap::new(),
        running_qu: HashMap::new(),
        running_g: HashMap::new(),
        suspended: vec![false; cands.len()],
        failed_shapes: HashSet::default(),
        hopeless: HashSet::default(),
        limited: limits.queues.values().any(|(q, u)| q.is_some() || u.is_some())
            || cands.iter().any(|c| c.group_limit.is_some()),
        running_on: None,
        moved_to: HashMap::default(),
        moved: vec![false; cands.len()],
        rules: None,
    };
    if round.limited {
        for c in cands.iter().filter(|c| c.standing == Standing::Running) {
            round.count_in(c);
        }
    }
    for pos in 0..round.order.len() {
        round.consider(pos);
    }
    round.decision
}

/// The positions in `order` of the candidates that may be preempted (running or paused, not
/// protected), and for each the index (in that list) of the first of its run of equal queue
/// priority and rank. See [`Round::preemptible`].
fn preemptible_runs(cands: &[Candidate<'_>], order: &[usize]) -> (Vec<usize>, Vec<usize>) {
    let preemptible: Vec<usize> = (order.iter().enumerate())
        .filter(|&(_, &i)| matches!(cands[i].standing, Standing::Running | Standing::Paused) && !cands[i].protected)
        .map(|(pos, _)| pos)
        .collect();
    let run_of = |k: usize| {
        let c = &cands[order[preemptible[k]]];
        (c.queue_priority, c.rank)
    };
    let mut run_start = Vec::with_capacity(preemptible.len());
    for k in 0..preemptible.len() {
        let same = k > 0 && run_of(k - 1) == run_of(k);
        run_start.push(if same { run_start[k - 1] } else { k });
    }
    (preemptible, run_start)
}

impl<'a> Round<'a> {
    /// Places the VMs of the candidate being admitted, with its rules if it has some.
    fn place(&mut self, demands: &[&[u64]]) -> Option<Vec<NodeIdx>> {
        place_with(self.placer, self.rules, demands)
    }

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
                self.decision.waiting.push((c.id, why.into()));
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
        if let Some(m) = umax.filter(|&m| of_user >= m) {
            return Some(format!(
                "user {} is at the limit of {m} running vjobs in queue {}",
                c.user, c.queue
            ));
        }
        let (group, most) = c.group_limit?;
        let in_group = self.running_g.get(&group).copied().unwrap_or(0);
        (in_group >= most).then(|| format!("array {group} is at its throttle of {most} running tasks"))
    }

    /// A paused vjob resumes where it is, once its processors are free there; it preempts
    /// nobody.
    fn resume_paused(&mut self, c: &'a Candidate<'a>) {
        let rule = self.limits.pause.as_ref();
        let mark = self.placer.mark();
        let placer = &mut *self.placer;
        let fits = c.placed.iter().all(|&(vm, h)| {
            let d = c.demand.of(vm);
            let back = rule.map_or_else(|| d.to_vec(), |r| r.freed(d));
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
        self.rules = c.rules.filter(|_| missing == c.vms);
        let shape: Option<Shape<'a>> = c.demand.alike().map(|d| (missing, d));
        // A constrained vjob's fit is its own, and so is one of VMs of several shapes: shapes
        // say nothing about them.
        let by_shape = self.rules.is_none() && shape.is_some();
        let shape = shape.unwrap_or((missing, &[]));
        if by_shape && c.standing != Standing::Running && self.hopeless.contains(&shape) {
            self.decision.waiting.push((c.id, "waiting for resources".into()));
            self.decision.short_of_room.push(c.id);
            return;
        }
        let demands = c.to_place();
        if !by_shape || !self.failed_shapes.contains(&shape) {
            if let Some(nodes) = self.place(&demands) {
                self.admit(c);
                self.decision.placed.push((c.id, nodes));
                return;
            }
            if let Some(nodes) = self.defragment(c, &demands) {
                self.admit(c);
                self.decision.placed.push((c.id, nodes));
                return;
            }
            if by_shape {
                self.failed_shapes.insert(shape);
            }
        }
        let Some((needed, pausing)) = self.victims(pos, c, &demands) else {
            if c.standing == Standing::Running {
                // Its misplaced VMs have nowhere to go: the whole vjob sleeps.
                self.suspend(i, None);
            } else {
                let why = match c.rules {
                    Some(r) => r.why_not(self.placer, c.demand).into(),
                    None => "waiting for resources".into(),
                };
                self.decision.waiting.push((c.id, why));
                self.decision.short_of_room.push(c.id);
                if by_shape {
                    self.hopeless.insert(shape);
                }
            }
            return;
        };
        if !pausing && c.standing != Standing::Running {
            if let Some(nodes) = self.boots_sooner(&demands, &needed) {
                self.decision.waiting.push((
                    c.id,
                    "waiting for nodes being switched on (sooner than preempting)".into(),
                ));
                self.decision.short_of_room.push(c.id);
                for n in nodes {
                    if !self.decision.boot.contains(&n) {
                        self.decision.boot.push(n);
                    }
                }
                return;
            }
        }
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
        let nodes = self.place(&demands).expect("room was just made");
        self.admit(c);
        self.decision.placed.push((c.id, nodes));
        // Room was freed: shapes that failed may fit now.
        self.failed_shapes.clear();
        self.hopeless.clear();
    }

    /// Starts `c` (waiting or suspended) by moving running VMs out of its way, when the
    /// [`Defragment`] rule allows and the moves pay for themselves; returns where its VMs go,
    /// the moves recorded in the decision and taken on the placer. `None`: no moves (the placer
    /// is left as it was).
    fn defragment(&mut self, c: &Candidate<'_>, demands: &[&[u64]]) -> Option<Vec<NodeIdx>> {
        let rule = self.limits.defragment.as_ref()?;
        // Moves are planned by capacity: a constrained vjob waits or preempts instead.
        if c.standing == Standing::Running || self.rules.is_some() || !self.placer.room_for(demands) {
            return None;
        }
        let (nodes, moves) = self.moves_for(demands)?;
        let moved_cpu: u64 = moves.iter().map(|&((j, k), ..)| self.slot_demand(j, k)[CPU]).sum();
        let moves_ms: u64 = moves
            .iter()
            .map(|&((j, k), ..)| rule.durations.migrate(self.slot_demand(j, k)[MEMORY]))
            .sum();
        let started_cpu: u64 = demands.iter().map(|d| d[CPU]).sum();
        if moved_cpu * 2 > started_cpu || self.room_comes_by(demands, rule, moves_ms) {
            return None;
        }
        for &((j, k), from, to) in &moves {
            let v = &self.cands[j];
            let d = v.demand.of(v.placed[k].0);
            self.placer.release(from, d);
            self.placer.take(to, d);
            self.moved_to.insert((j, k), to);
            self.moved[j] = true;
            self.decision.migrate.push(Move {
                vjob: v.id,
                from,
                to,
                for_vjob: c.id,
            });
        }
        for (d, &n) in demands.iter().zip(&nodes) {
            self.placer.take(n, d);
        }
        Some(nodes)
    }

    /// Where `c`'s VMs would go, one by one, each on a node with room or on one that room is
    /// made on, and the moves that make it: (VM, from, to). The placer and the VMs' places are
    /// left as they were.
    #[allow(clippy::type_complexity)]
    fn moves_for(&mut self, demands: &[&[u64]]) -> Option<(Vec<NodeIdx>, Vec<SlotMove>)> {
        if self.running_on.is_none() {
            self.running_on = Some(self.index_running());
        }
        let mark = self.placer.mark();
        let before = self.moved_to.clone();
        let mut nodes = Vec::with_capacity(demands.len());
        let mut moves = Vec::new();
        for &d in demands {
            if let Some(n) = self.placer.best_any(d) {
                self.placer.take(n, d);
                nodes.push(n);
                continue;
            }
            let mut running = RunningVms {
                cands: self.cands,
                on: self.running_on.as_deref().expect("indexed above"),
                moved_to: &mut self.moved_to,
                gone: &self.suspended,
                arriving: d,
            };
            let Some((n, moved)) = make_room(self.placer, &mut running, Slot::Arriving) else {
                nodes.clear();
                break;
            };
            nodes.push(n);
            moves.extend(moved.into_iter().filter_map(|(u, to)| match u {
                Slot::Vm(j, k) => Some(((j, k), n, to)),
                Slot::Arriving => None,
            }));
        }
        self.placer.rollback(mark);
        self.moved_to = before;
        (nodes.len() == demands.len()).then_some((nodes, moves))
    }

    /// Per node, the VMs of the running candidates there.
    fn index_running(&self) -> Vec<Vec<(usize, usize)>> {
        let mut on = vec![Vec::new(); self.placer.nodes()];
        for (j, v) in self.cands.iter().enumerate() {
            if v.standing == Standing::Running {
                for (k, &(_, h)) in v.placed.iter().enumerate() {
                    on[h as usize].push((j, k));
                }
            }
        }
        on
    }

    /// Whether running vjobs are expected (by their estimates) to end and leave room for
    /// `demands` within `wait_ms`: then waiting costs less than moving.
    fn room_comes_by(&mut self, demands: &[&[u64]], rule: &Defragment, wait_ms: u64) -> bool {
        let deadline = rule.now_ms.saturating_add(wait_ms);
        let mut ending: Vec<(u64, usize)> = (0..self.cands.len())
            .filter(|&j| self.cands[j].standing == Standing::Running && !self.suspended[j] && !self.moved[j])
            .filter_map(|j| self.cands[j].expected_end_ms.filter(|&e| e <= deadline).map(|e| (e, j)))
            .collect();
        ending.sort_unstable();
        let mark = self.placer.mark();
        let mut comes = false;
        for &(_, j) in &ending {
            let v = &self.cands[j];
            for &(vm, h) in v.placed {
                self.placer.release(h, v.demand.of(vm));
            }
            let trial = self.placer.mark();
            if self.place(demands).is_some() {
                self.placer.rollback(trial);
                comes = true;
                break;
            }
        }
        self.placer.rollback(mark);
        comes
    }

    /// Where nodes being switched on, or that could be, will hold `demands` before `victims`
    /// would be saved ([`Boots`]): the nodes of that placement that are off, to switch on (none
    /// when booting ones are enough). The placer is left as it was.
    fn boots_sooner(&mut self, demands: &[&[u64]], victims: &[usize]) -> Option<Vec<NodeIdx>> {
        let boots = self.limits.boots.as_ref().filter(|b| !b.on_at.is_empty())?;
        let saved_by = victims
            .iter()
            .flat_map(|&j| {
                let v = &self.cands[j];
                v.placed.iter().map(move |&(vm, _)| v.demand.of(vm)[MEMORY])
            })
            .map(|memory| boots.durations.save(memory))
            .max()
            .unwrap_or(0);
        let by = boots.now_ms.saturating_add(saved_by);
        let opened: Vec<NodeIdx> = (boots.on_at.iter())
            .filter(|&&(n, at)| at <= by && !self.placer.accepts(n))
            .map(|&(n, _)| n)
            .collect();
        if opened.is_empty() {
            return None;
        }
        for &n in &opened {
            self.placer.open(n);
        }
        let mark = self.placer.mark();
        let nodes = self.place(demands);
        self.placer.rollback(mark);
        for &n in &opened {
            self.placer.close(n);
        }
        let mut nodes = nodes?;
        nodes.retain(|n| boots.off.contains(n));
        nodes.sort_unstable();
        nodes.dedup();
        Some(nodes)
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

    /// What preempting `v` gives back of a VM that needs `d`: all it holds, or (pausing) its
    /// processors only; a vjob already paused that is saved gives back the memory it still
    /// holds.
    fn gives_back<'d>(&self, v: &Candidate<'_>, d: &'d [u64], pausing: bool) -> Cow<'d, [u64]> {
        match (pausing, v.standing, self.limits.pause.as_ref()) {
            (true, _, Some(r)) => Cow::Owned(r.freed(d)),
            (false, Standing::Paused, Some(r)) => Cow::Owned(r.held(d)),
            _ => Cow::Borrowed(d),
        }
    }

    /// What VM `k` (of its `placed`) of candidate `j` needs.
    fn slot_demand(&self, j: usize, k: usize) -> &'a [u64] {
        let v = &self.cands[j];
        v.demand.of(v.placed[k].0)
    }

    /// Releases running vjobs behind position `pos` that `c` outranks, lowest first, until
    /// `demands` fit; returns them, or `None` if even all of them are not enough.
    fn lowest_first(&mut self, pos: usize, c: &Candidate<'_>, demands: &[&[u64]], pausing: bool) -> Option<Vec<usize>> {
        let mut victims = Vec::new();
        let behind = self.preemptible.partition_point(|&p| p <= pos);
        let mut k = self.preemptible.len();
        while k > behind {
            k -= 1;
            let j = self.order[self.preemptible[k]];
            let v = &self.cands[j];
            let may_go = v.standing == Standing::Running || (!pausing && v.standing == Standing::Paused);
            if !may_go || self.suspended[j] || self.moved[j] {
                continue;
            }
            let by_queue = c.queue_priority > v.queue_priority;
            let by_ratio = (self.limits.preempt_ratio).is_none_or(|r| c.priority as f64 >= r * v.priority as f64);
            if !by_queue && !by_ratio {
                // The rest of its run, ahead of it, have priorities higher still.
                k = self.run_start[k].max(behind);
                continue;
            }
            if !by_queue && super::seniority(c) >= super::seniority(v) {
                continue;
            }
            for &(vm, h) in v.placed {
                let back = self.gives_back(v, v.demand.of(vm), pausing);
                self.placer.release(h, &back);
            }
            victims.push(j);
            let trial = self.placer.mark();
            if place_with(self.placer, self.rules, demands).is_some() {
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
            let mut ok = true;
            for &(vm, h) in v.placed {
                let d = self.gives_back(v, v.demand.of(vm), pausing);
                if self.placer.fits(h, &d) {
                    self.placer.take(h, &d);
                } else {
                    ok = false;
                    break;
                }
            }
            let trial = self.placer.mark();
            if ok && self.place(demands).is_some() {
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
            self.count_in(c);
        }
    }

    /// `c` runs: it counts against its queue's, its user's and its group's limits.
    fn count_in(&mut self, c: &'a Candidate<'a>) {
        *self.running_q.entry(c.queue).or_default() += 1;
        *self.running_qu.entry((c.queue, c.user)).or_default() += 1;
        if let Some((g, _)) = c.group_limit {
            *self.running_g.entry(g).or_default() += 1;
        }
    }

    fn count_out(&mut self, v: &'a Candidate<'a>) {
        if !self.limited {
            return;
        }
        *self.running_q.entry(v.queue).or_default() -= 1;
        *self.running_qu.entry((v.queue, v.user)).or_default() -= 1;
        if let Some((g, _)) = v.group_limit {
            *self.running_g.entry(g).or_default() -= 1;
        }
    }

    /// Suspends candidate `i` whole (`by`: the vjob it makes room for).
    fn suspend(&mut self, i: usize, by: Option<u64>) {
        let c = &self.cands[i];
        for &(vm, h) in c.placed {
            self.placer.release(h, c.demand.of(vm));
        }
        self.suspended[i] = true;
        self.decision.suspend.push((c.id, by));
        self.count_out(c);
    }
}

/// A VM as the policy moves it: the one room is made for, or VM `k` (of its `placed`) of
/// running candidate `j`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Slot {
    Arriving,
    Vm(usize, usize),
}

/// The running VMs of a round, for [`make_room`]: any VM of a running vjob not suspended in
/// this round may move, once, to any node that takes VMs.
struct RunningVms<'r> {
    cands: &'r [Candidate<'r>],
    on: &'r [Vec<(usize, usize)>],
    moved_to: &'r mut HashMap<(usize, usize), NodeIdx, WordHash>,
    gone: &'r [bool],
    arriving: &'r [u64],
}

impl RunningVms<'_> {
    fn home(&self, j: usize, k: usize) -> NodeIdx {
        self.cands[j].placed[k].1
    }
}

impl Relocation for RunningVms<'_> {
    type Vm = Slot;

    fn demand(&self, u: Slot) -> &[u64] {
        match u {
            Slot::Arriving => self.arriving,
            Slot::Vm(j, k) => self.cands[j].demand.of(self.cands[j].placed[k].0),
        }
    }

    fn movable(&self, n: NodeIdx) -> Vec<Slot> {
        self.on[n as usize]
            .iter()
            .filter(|&&(j, k)| !self.gone[j] && !self.moved_to.contains_key(&(j, k)))
            .map(|&(j, k)| Slot::Vm(j, k))
            .collect()
    }

    fn may_go(&self, u: Slot, n: NodeIdx) -> bool {
        match u {
            Slot::Arriving => true,
            Slot::Vm(j, k) => n != self.home(j, k),
        }
    }

    fn put(&mut self, u: Slot, n: NodeIdx) {
        if let Slot::Vm(j, k) = u {
            if n == self.home(j, k) {
                self.moved_to.remove(&(j, k));
            } else {
                self.moved_to.insert((j, k), n);
            }
        }
    }

    /// Where a lifted VM is matters only once it is put down again.
    fn lift(&mut self, _: Slot, _: NodeIdx) {}
}

/// Places VMs (`demands`) with placement rules when there are some, else by capacity alone.
fn place_with(
    placer: &mut Placer,
    rules: Option<&crate::placement::VjobRules>,
    demands: &[&[u64]],
) -> Option<Vec<NodeIdx>> {
    match rules {
        Some(r) => r.place(placer, demands),
        None => placer.place_group(demands),
    }
}
