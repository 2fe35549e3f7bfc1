//! Which vjobs should run: queue ordering and admission, with preemption by suspension.
//!
//! Pure: a list of [`Candidate`]s and a [`Placer`] over the cluster in, a [`Decision`] out; time
//! comes in as a parameter. The daemon and the trace simulator call the same function.
//!
//! The context-switch policy (after the cluster-wide context switch of vjobs, VTDC 2010):
//! candidates are taken in order of queue priority, job priority, then submission. Each one that
//! is not running is admitted whole if all its VMs fit (the very filter-and-score placement the
//! planner uses). If it does not fit, running vjobs *behind it* in that order (lower priority,
//! or equal priority but submitted later, i.e. backfilled while it waited) are suspended whole,
//! lowest first, until it fits; those that turn out not to be needed are kept running. A vjob
//! that was preempted and resumed is not preempted again within the quantum (no thrashing).
//! When the preemption is short (a [`PauseRule`]: the preempting vjob's walltime is short) and
//! giving back processors is enough, the victims are paused in memory instead of saved to disk
//! (Slurm's `PreemptMode=SUSPEND`): no disk traffic either way, and they resume on the same nodes,
//! in a moment, once processors are free there. A paused vjob still holds its memory, so a later
//! vjob that needs it saves it to disk.
//! Running vjobs never move here: defragmentation is the planner's business.

use std::collections::{HashMap, HashSet};

use crate::model::{Model, NodeIdx, VmIdx, VmState};
use crate::plan::place::Placer;
use crate::plan::{ActionCosts, Constraint, Instance, Options};

/// Where a candidate stands now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Waiting,
    Suspended,
    Running,
    /// Paused in memory on its hosts: holds the resources its [`PauseRule`] keeps there.
    Paused,
}

/// A vjob as the policy sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub id: u64,
    pub queue: String,
    pub queue_priority: i32,
    pub priority: i32,
    pub submit_ms: u64,
    pub user: String,
    pub standing: Standing,
    /// May be started or resumed (queue started, not held, not suspended by hand).
    pub eligible: bool,
    /// May not be suspended now (within its quantum, or switching).
    pub protected: bool,
    /// What each of its VMs needs (a vjob's VMs are alike).
    pub demand: Vec<u64>,
    /// Where each VM runs; `None` for a VM that must be placed (not started, sleeping, or on a
    /// node going offline).
    pub hosts: Vec<Option<NodeIdx>>,
    /// The user's estimate of its running time (walltime), for backfilling.
    pub requested_ms: Option<u64>,
    /// For a running vjob: when its estimate says it ends.
    pub expected_end_ms: Option<u64>,
}

/// Limits on running vjobs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Per queue: most running vjobs, and most running vjobs per user.
    pub queues: HashMap<String, (Option<u32>, Option<u32>)>,
    /// Within a queue priority, a vjob may suspend a running one only if its priority is at
    /// least this many times the victim's (the suspension factor of selective suspension);
    /// `None`: any vjob behind it in order.
    pub preempt_ratio: Option<f64>,
    /// When preemptions pause their victims instead of saving them; `None`: never.
    pub pause: Option<PauseRule>,
}

/// Short preemptions pause their victims in memory.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PauseRule {
    /// A vjob whose walltime is at most this long pauses the vjobs it preempts.
    pub max_walltime_ms: u64,
    /// The resources a paused VM keeps (its memory); it gives back the others (processors).
    pub kept: Vec<usize>,
}

impl PauseRule {
    /// The rule of the daemon's and the simulator's models (resource 1 is memory): preemptors
    /// with a walltime of at most `max_walltime_ms` pause; none when it is 0.
    pub fn keeping_memory(max_walltime_ms: u64) -> Option<PauseRule> {
        (max_walltime_ms > 0).then(|| PauseRule {
            max_walltime_ms,
            kept: vec![1],
        })
    }

    /// What pausing a VM of this demand gives back.
    pub fn freed(&self, demand: &[u64]) -> Vec<u64> {
        self.mask(demand, false)
    }

    /// What a paused VM of this demand still holds.
    pub fn held(&self, demand: &[u64]) -> Vec<u64> {
        self.mask(demand, true)
    }

    fn mask(&self, demand: &[u64], kept: bool) -> Vec<u64> {
        demand
            .iter()
            .enumerate()
            .map(|(r, &d)| if self.kept.contains(&r) == kept { d } else { 0 })
            .collect()
    }
}

/// What should change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// Vjobs to start or resume (or whose misplaced VMs to re-place), in order.
    pub run: Vec<u64>,
    /// Running vjobs to suspend, with the vjob they make room for (`None`: no room left for
    /// their misplaced VMs).
    pub suspend: Vec<(u64, Option<u64>)>,
    /// Running vjobs to pause in memory, with the vjob they make room for.
    pub pause: Vec<(u64, u64)>,
    /// Why each waiting candidate waits.
    pub waiting: Vec<(u64, String)>,
}

/// The planner instance that carries a [`Decision`] out, built VM by VM: the daemon and the
/// simulator say where each VM of a candidate stands, this says how the planner must see it
/// (what it holds over the plan, and the constraints that carry the decision out).
pub struct DecisionInstance<'a> {
    pub model: Model,
    pub constraints: Vec<Constraint>,
    place_first: Vec<VmIdx>,
    run: HashSet<u64>,
    sleep: HashSet<u64>,
    pause: HashSet<u64>,
    rule: Option<&'a PauseRule>,
}

impl<'a> DecisionInstance<'a> {
    /// Starts from `model` and `constraints` (what is not a candidate's: load, nodes).
    pub fn new(
        model: Model,
        constraints: Vec<Constraint>,
        decision: &Decision,
        rule: Option<&'a PauseRule>,
    ) -> DecisionInstance<'a> {
        DecisionInstance {
            model,
            constraints,
            place_first: Vec::new(),
            run: decision.run.iter().copied().collect(),
            sleep: decision.suspend.iter().map(|(id, _)| *id).collect(),
            pause: decision.pause.iter().map(|(id, _)| *id).collect(),
            rule,
        }
    }

    /// Adds VM `name` of candidate `id`, which stands in `state` on `host` (paused in memory
    /// there when `paused`) and needs `demand` to run. Add the VMs of the vjobs to run first, in
    /// the decision's order, so that the planner places them as the policy did. `None`: the plan
    /// has nothing to do with this VM (it is not on a node and is not to run).
    pub fn add_vm(
        &mut self,
        id: u64,
        name: String,
        state: VmState,
        host: NodeIdx,
        demand: &[u64],
        paused: bool,
    ) -> Option<VmIdx> {
        let to_run = self.run.contains(&id);
        if state != VmState::Running && !to_run {
            return None;
        }
        let to_sleep = self.sleep.contains(&id);
        // Paused in memory (or about to be): it stays where it is, holding what its rule keeps,
        // unless it is unpaused now.
        let in_memory = paused || self.pause.contains(&id);
        let held = match (in_memory && !to_run, self.rule) {
            (true, Some(r)) => r.held(demand),
            _ => demand.to_vec(),
        };
        let v = self.model.add_vm(name, state, host, &held);
        if to_run {
            self.constraints.push(Constraint::Running { vm: v });
            self.place_first.push(v);
        } else if to_sleep && state == VmState::Running {
            self.constraints.push(Constraint::Sleeping { vm: v });
        }
        if in_memory && !to_sleep {
            self.constraints.push(Constraint::Root { vm: v });
        }
        Some(v)
    }

    /// The instance, with action costs from `durations` (VM memory is resource `mem_rc`).
    pub fn finish(self, durations: &vjob_hypervisor::DurationModel, mem_rc: usize) -> Instance {
        let costs = ActionCosts::from_durations(&self.model, durations, mem_rc);
        Instance {
            model: self.model,
            constraints: self.constraints,
            place_first: self.place_first,
            costs,
            options: Options {
                suspend_to_break_cycles: true,
                ..Default::default()
            },
        }
    }
}

/// The order in which candidates are considered: queue priority, job priority, submission, id.
pub fn order(cands: &[Candidate]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..cands.len()).collect();
    idx.sort_by_key(|&i| {
        let c = &cands[i];
        (
            std::cmp::Reverse(c.queue_priority),
            std::cmp::Reverse(c.priority),
            c.submit_ms,
            c.id,
        )
    });
    idx
}

/// The context-switch policy. `placer` holds the load of the VMs of running candidates that
/// have a host, and of everything else that occupies nodes.
pub fn context_switch(cands: &[Candidate], placer: &mut Placer, limits: &Limits) -> Decision {
    let order = order(cands);
    let mut rank = vec![0usize; cands.len()];
    for (r, &i) in order.iter().enumerate() {
        rank[i] = r;
    }
    let mut decision = Decision::default();
    let mut running_q: HashMap<&str, u32> = HashMap::new();
    let mut running_qu: HashMap<(&str, &str), u32> = HashMap::new();
    // Running candidates that are fully placed and may still be suspended.
    let mut suspended = vec![false; cands.len()];
    for c in cands.iter().filter(|c| c.standing == Standing::Running) {
        *running_q.entry(&c.queue).or_default() += 1;
        *running_qu.entry((&c.queue, &c.user)).or_default() += 1;
    }
    // Shapes that did not fit without preemption this round: a later candidate of the same
    // shape and no higher priority cannot fit either.
    let mut failed_shapes: Vec<(Vec<Vec<u64>>, usize)> = Vec::new();
    // Shapes that could not fit even by preemption: a later candidate has fewer possible
    // victims, so it cannot either (until room is freed).
    let mut hopeless: Vec<Vec<Vec<u64>>> = Vec::new();

    for (pos, &i) in order.iter().enumerate() {
        let c = &cands[i];
        let missing: Vec<&[u64]> = vec![c.demand.as_slice(); c.hosts.iter().filter(|h| h.is_none()).count()];
        if c.standing == Standing::Running && missing.is_empty() {
            continue;
        }
        if suspended[i] {
            continue;
        }
        if c.standing != Standing::Running {
            if !c.eligible {
                continue;
            }
            let (qmax, umax) = limits.queues.get(&c.queue).copied().unwrap_or((None, None));
            if qmax.is_some_and(|m| running_q.get(c.queue.as_str()).copied().unwrap_or(0) >= m) {
                decision.waiting.push((
                    c.id,
                    format!("queue {} is at its limit of {} running vjobs", c.queue, qmax.unwrap()),
                ));
                continue;
            }
            if umax.is_some_and(|m| {
                running_qu
                    .get(&(c.queue.as_str(), c.user.as_str()))
                    .copied()
                    .unwrap_or(0)
                    >= m
            }) {
                decision.waiting.push((
                    c.id,
                    format!(
                        "user {} is at the limit of {} running vjobs in queue {}",
                        c.user,
                        umax.unwrap(),
                        c.queue
                    ),
                ));
                continue;
            }
        }
        if c.standing == Standing::Paused {
            // It resumes where it is, once its processors are free there; it preempts nobody.
            let back = limits
                .pause
                .as_ref()
                .map_or_else(|| c.demand.clone(), |r| r.freed(&c.demand));
            let mark = placer.mark();
            let fits = c.hosts.iter().flatten().all(|&h| {
                let ok = placer.fits(h, &back);
                if ok {
                    placer.take(h, &back);
                }
                ok
            });
            if fits {
                admit(c, i, &mut decision, &mut running_q, &mut running_qu);
            } else {
                placer.rollback(mark);
                decision
                    .waiting
                    .push((c.id, "paused in memory: waiting for processors on its nodes".into()));
            }
            continue;
        }
        let shape: Vec<Vec<u64>> = missing.iter().map(|d| d.to_vec()).collect();
        if c.standing != Standing::Running && hopeless.contains(&shape) {
            decision.waiting.push((c.id, "waiting for resources".into()));
            continue;
        }
        let known_misfit = failed_shapes.iter().any(|(s, _)| *s == shape);
        if !known_misfit {
            if placer.place_group(&missing).is_some() {
                admit(c, i, &mut decision, &mut running_q, &mut running_qu);
                continue;
            }
            failed_shapes.push((shape.clone(), pos));
        }
        // Preemption: suspend running vjobs behind this one, lowest first; pause them instead
        // when the preemption is short and processors are enough.
        let short = limits
            .pause
            .as_ref()
            .filter(|r| c.standing != Standing::Running && c.requested_ms.is_some_and(|w| w <= r.max_walltime_ms));
        let mut chosen: Option<(Vec<usize>, bool)> = None;
        for pausing in [true, false] {
            if pausing && short.is_none() {
                continue;
            }
            let gives_back = |v: &Candidate| -> Vec<u64> {
                match (pausing, v.standing, limits.pause.as_ref()) {
                    (true, _, Some(r)) => r.freed(&v.demand),
                    (false, Standing::Paused, Some(r)) => r.held(&v.demand),
                    _ => v.demand.clone(),
                }
            };
            let mark = placer.mark();
            let mut victims: Vec<usize> = Vec::new();
            let mut fits = false;
            for &j in order[pos + 1..].iter().rev() {
                let v = &cands[j];
                let may_go = v.standing == Standing::Running || (!pausing && v.standing == Standing::Paused);
                if !may_go || v.protected || suspended[j] {
                    continue;
                }
                let outranked = c.queue_priority > v.queue_priority
                    || limits
                        .preempt_ratio
                        .is_none_or(|r| c.priority as f64 >= r * v.priority as f64);
                if !outranked {
                    continue;
                }
                for &h in v.hosts.iter().flatten() {
                    placer.release(h, &gives_back(v));
                }
                victims.push(j);
                let trial = placer.mark();
                if placer.place_group(&missing).is_some() {
                    placer.rollback(trial);
                    fits = true;
                    break;
                }
            }
            if !fits {
                placer.rollback(mark);
                continue;
            }
            // Keep every victim that is not needed, highest priority first.
            let mut needed = Vec::new();
            for &j in victims.iter().rev() {
                let v = &cands[j];
                let back = placer.mark();
                let mut ok = true;
                for &h in v.hosts.iter().flatten() {
                    let d = gives_back(v);
                    if placer.fits(h, &d) {
                        placer.take(h, &d);
                    } else {
                        ok = false;
                        break;
                    }
                }
                let trial = placer.mark();
                if ok && placer.place_group(&missing).is_some() {
                    placer.rollback(trial);
                } else {
                    placer.rollback(back);
                    needed.push(j);
                }
            }
            chosen = Some((needed, pausing));
            break;
        }
        let Some((needed, pausing)) = chosen else {
            if c.standing == Standing::Running {
                // Its misplaced VMs have nowhere to go: the whole vjob sleeps.
                suspend_vjob(
                    c,
                    i,
                    None,
                    placer,
                    &mut suspended,
                    &mut decision,
                    &mut running_q,
                    &mut running_qu,
                );
            } else {
                decision.waiting.push((c.id, "waiting for resources".into()));
                hopeless.push(shape);
            }
            continue;
        };
        for &j in &needed {
            suspended[j] = true;
            let v = &cands[j];
            if pausing {
                decision.pause.push((v.id, c.id));
            } else {
                decision.suspend.push((v.id, Some(c.id)));
            }
            if v.standing == Standing::Running {
                *running_q.entry(&v.queue).or_default() -= 1;
                *running_qu.entry((&v.queue, &v.user)).or_default() -= 1;
            }
        }
        placer.place_group(&missing).expect("room was just made");
        admit(c, i, &mut decision, &mut running_q, &mut running_qu);
        // Room was freed: shapes that failed may fit now.
        failed_shapes.clear();
        hopeless.clear();
    }
    placer.commit();
    decision
}

/// First come, first served: waiting vjobs start in order while they fit; the first that does
/// not fit blocks all the others. No preemption. The baseline every scheduler is compared with.
pub fn fcfs(cands: &[Candidate], placer: &mut Placer) -> Decision {
    let mut decision = Decision::default();
    for i in order(cands) {
        let c = &cands[i];
        if c.standing == Standing::Running || !c.eligible {
            continue;
        }
        let demands: Vec<&[u64]> = vec![c.demand.as_slice(); c.hosts.len()];
        if placer.place_group(&demands).is_some() {
            decision.run.push(c.id);
        } else {
            decision
                .waiting
                .push((c.id, "waiting for resources (first come, first served)".into()));
            break;
        }
    }
    placer.commit();
    decision
}

/// EASY backfilling (Lifka 1995; the default of Maui and Slurm's backfill): vjobs start in order
/// while they fit; the first that does not fit gets a reservation at the earliest time enough
/// running vjobs are expected to have ended (by their walltime estimates); later vjobs may jump
/// ahead if they fit now and either end before that time or leave enough room for it. No
/// preemption. Resource counts for the reservation are aggregate (`rc` = the resource counted,
/// e.g. cpu); fits are checked node by node.
pub fn easy(cands: &[Candidate], placer: &mut Placer, now: u64, rc: usize) -> Decision {
    let mut decision = Decision::default();
    let total_free = |p: &Placer| -> u64 {
        (0..p.nodes() as NodeIdx)
            .filter(|&n| p.accepts(n))
            .map(|n| p.capacity(n)[rc].saturating_sub(p.load(n)[rc]))
            .sum()
    };
    let size = |c: &Candidate| -> u64 { c.demand[rc] * c.hosts.len() as u64 };
    // Expected ends of what runs, as (time, amount freed).
    let mut ends: Vec<(u64, u64)> = cands
        .iter()
        .filter(|c| c.standing == Standing::Running)
        .map(|c| (c.expected_end_ms.unwrap_or(u64::MAX), size(c)))
        .collect();
    let mut reservation: Option<(u64, u64)> = None;
    for i in order(cands) {
        let c = &cands[i];
        if c.standing == Standing::Running || !c.eligible {
            continue;
        }
        let demands: Vec<&[u64]> = vec![c.demand.as_slice(); c.hosts.len()];
        let estimate_end = now.saturating_add(c.requested_ms.unwrap_or(u64::MAX / 2));
        match reservation {
            None => {
                if placer.place_group(&demands).is_some() {
                    decision.run.push(c.id);
                    ends.push((estimate_end, size(c)));
                    continue;
                }
                // The head: reserve the earliest time enough is expected to be free.
                ends.sort_unstable();
                let need = size(c);
                let mut free = total_free(placer);
                let mut shadow = u64::MAX;
                for &(t, amount) in &ends {
                    if free >= need {
                        break;
                    }
                    free += amount;
                    shadow = t;
                }
                let extra = free.saturating_sub(need);
                reservation = Some((shadow, extra));
                decision
                    .waiting
                    .push((c.id, "waiting for resources (holds the reservation)".into()));
            }
            Some((shadow, extra)) => {
                let fits_in_time = estimate_end <= shadow;
                let fits_in_extra = size(c) <= extra;
                if (fits_in_time || fits_in_extra) && placer.place_group(&demands).is_some() {
                    decision.run.push(c.id);
                    if !fits_in_time {
                        reservation = Some((shadow, extra - size(c)));
                    }
                } else {
                    decision
                        .waiting
                        .push((c.id, "waiting for resources (backfilling)".into()));
                }
            }
        }
    }
    placer.commit();
    decision
}

fn admit<'a>(
    c: &'a Candidate,
    _i: usize,
    decision: &mut Decision,
    running_q: &mut HashMap<&'a str, u32>,
    running_qu: &mut HashMap<(&'a str, &'a str), u32>,
) {
    decision.run.push(c.id);
    if c.standing != Standing::Running {
        *running_q.entry(&c.queue).or_default() += 1;
        *running_qu.entry((&c.queue, &c.user)).or_default() += 1;
    }
}

#[allow(clippy::too_many_arguments)]
fn suspend_vjob<'a>(
    c: &'a Candidate,
    i: usize,
    by: Option<u64>,
    placer: &mut Placer,
    suspended: &mut [bool],
    decision: &mut Decision,
    running_q: &mut HashMap<&'a str, u32>,
    running_qu: &mut HashMap<(&'a str, &'a str), u32>,
) {
    for &h in c.hosts.iter().flatten() {
        placer.release(h, &c.demand);
    }
    suspended[i] = true;
    decision.suspend.push((c.id, by));
    *running_q.entry(&c.queue).or_default() -= 1;
    *running_qu.entry((&c.queue, &c.user)).or_default() -= 1;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Model, VmState};

    fn cluster(nodes: usize) -> Model {
        let mut m = Model::new(vec!["cpu".into(), "memory".into()]);
        for i in 0..nodes {
            m.add_node(format!("n{i}"), true, &[4, 8]);
        }
        m
    }

    fn cand(id: u64, qprio: i32, submit: u64, standing: Standing, vms: &[(u64, Option<NodeIdx>)]) -> Candidate {
        Candidate {
            id,
            queue: if qprio > 10 { "express".into() } else { "batch".into() },
            queue_priority: qprio,
            priority: 0,
            submit_ms: submit,
            user: "u".into(),
            standing,
            eligible: true,
            protected: false,
            requested_ms: None,
            expected_end_ms: None,
            demand: vec![vms[0].0, 4],
            hosts: vms.iter().map(|&(_, h)| h).collect(),
        }
    }

    /// A placer whose loads hold the running candidates' VMs.
    fn placer(m: &mut Model, cands: &[Candidate]) -> Placer {
        for c in cands {
            for (k, h) in c.hosts.iter().enumerate() {
                if let Some(h) = *h {
                    m.add_vm(format!("{}-{k}", c.id), VmState::Running, h, &c.demand);
                }
            }
        }
        Placer::from_model(m)
    }

    #[test]
    fn express_job_preempts_the_batch_job_whole() {
        let mut m = cluster(2);
        let cands = vec![
            cand(1, 10, 0, Standing::Running, &[(4, Some(0)), (4, Some(1))]),
            cand(2, 100, 5, Standing::Waiting, &[(4, None)]),
        ];
        let mut p = placer(&mut m, &cands);
        let d = context_switch(&cands, &mut p, &Limits::default());
        assert_eq!(d.run, vec![2]);
        assert_eq!(d.suspend, vec![(1, Some(2))]);
    }

    #[test]
    fn short_preemptions_pause_in_memory_when_processors_are_enough() {
        let rule = PauseRule {
            max_walltime_ms: 60_000,
            kept: vec![1],
        };
        let limits = Limits {
            pause: Some(rule.clone()),
            ..Default::default()
        };
        let batch = cand(1, 10, 0, Standing::Running, &[(4, Some(0)), (4, Some(1))]);
        let short = Candidate {
            requested_ms: Some(30_000),
            ..cand(2, 100, 5, Standing::Waiting, &[(4, None)])
        };
        let decide = |cands: &[Candidate]| {
            let mut m = cluster(2);
            let mut p = placer(&mut m, cands);
            context_switch(cands, &mut p, &limits)
        };
        // Batch holds every processor and half the memory: the short job pauses it.
        let d = decide(&[batch.clone(), short.clone()]);
        assert_eq!((d.run, d.pause, d.suspend), (vec![2], vec![(1, 2)], vec![]));
        // A long job saves it to disk.
        let long = Candidate {
            requested_ms: Some(3_600_000),
            ..short.clone()
        };
        let d = decide(&[batch.clone(), long]);
        assert_eq!((d.run, d.pause, d.suspend), (vec![2], vec![], vec![(1, Some(2))]));
        // So does a short one that needs the memory too.
        let big = Candidate {
            demand: vec![4, 8],
            ..short.clone()
        };
        let d = decide(&[batch.clone(), big]);
        assert_eq!((d.pause, d.suspend), (vec![], vec![(1, Some(2))]));

        // A paused vjob holds its memory where it is and resumes there once processors are free.
        let paused = cand(1, 10, 0, Standing::Paused, &[(4, Some(0)), (4, Some(1))]);
        let with_held = |others: &[Candidate]| {
            let mut m = cluster(2);
            for (k, h) in paused.hosts.iter().enumerate() {
                m.add_vm(
                    format!("p-{k}"),
                    VmState::Running,
                    h.unwrap(),
                    &rule.held(&paused.demand),
                );
            }
            let mut p = placer(&mut m, others);
            let mut all = vec![paused.clone()];
            all.extend_from_slice(others);
            context_switch(&all, &mut p, &limits)
        };
        let running_short = Candidate {
            standing: Standing::Running,
            hosts: vec![Some(0)],
            ..short.clone()
        };
        let d = with_held(&[running_short]);
        assert!(d.run.is_empty() && d.suspend.is_empty() && d.pause.is_empty());
        assert_eq!(
            d.waiting,
            vec![(1, "paused in memory: waiting for processors on its nodes".to_string())]
        );
        assert_eq!(with_held(&[]).run, vec![1]);
        // A job that needs its memory saves it to disk.
        let hungry = Candidate {
            demand: vec![1, 8],
            ..cand(3, 100, 9, Standing::Waiting, &[(1, None)])
        };
        let running_short = Candidate {
            standing: Standing::Running,
            hosts: vec![Some(0)],
            ..short
        };
        let d = with_held(&[running_short, hungry]);
        assert_eq!((d.run, d.suspend), (vec![3], vec![(1, Some(3))]));
    }

    #[test]
    fn suspended_job_resumes_when_room_returns_and_protection_holds() {
        let mut m = cluster(2);
        let mut cands = vec![cand(1, 10, 0, Standing::Suspended, &[(4, None), (4, None)])];
        let mut p = placer(&mut m, &cands);
        assert_eq!(context_switch(&cands, &mut p, &Limits::default()).run, vec![1]);
        // Once resumed and protected, an express job cannot take its place.
        let mut m = cluster(2);
        cands = vec![
            Candidate {
                protected: true,
                ..cand(1, 10, 0, Standing::Running, &[(4, Some(0)), (4, Some(1))])
            },
            cand(2, 100, 5, Standing::Waiting, &[(4, None)]),
        ];
        let mut p = placer(&mut m, &cands);
        let d = context_switch(&cands, &mut p, &Limits::default());
        assert!(d.run.is_empty() && d.suspend.is_empty());
        assert_eq!(d.waiting, vec![(2, "waiting for resources".to_string())]);
    }

    #[test]
    fn only_the_needed_victims_are_suspended() {
        let mut m = cluster(2);
        let cands = vec![
            cand(1, 10, 0, Standing::Running, &[(2, Some(0))]),
            cand(2, 10, 1, Standing::Running, &[(4, Some(1))]),
            cand(3, 10, 2, Standing::Running, &[(2, Some(0))]),
            cand(4, 100, 9, Standing::Waiting, &[(2, None)]),
        ];
        let mut p = placer(&mut m, &cands);
        let d = context_switch(&cands, &mut p, &Limits::default());
        assert_eq!(d.run, vec![4]);
        // The lowest (latest) vjob, 3, frees exactly what is needed; 2 stays.
        assert_eq!(d.suspend, vec![(3, Some(4))]);
    }

    #[test]
    fn equal_priority_never_preempts_earlier_work_and_limits_hold() {
        let mut m = cluster(1);
        let cands = vec![
            cand(1, 10, 0, Standing::Running, &[(4, Some(0))]),
            cand(2, 10, 5, Standing::Waiting, &[(4, None)]),
        ];
        let mut p = placer(&mut m, &cands);
        let d = context_switch(&cands, &mut p, &Limits::default());
        assert!(d.suspend.is_empty() && d.run.is_empty());

        let mut m = cluster(2);
        let cands = vec![
            cand(1, 10, 0, Standing::Waiting, &[(1, None)]),
            cand(2, 10, 1, Standing::Waiting, &[(1, None)]),
        ];
        let mut p = placer(&mut m, &cands);
        let limits = Limits {
            queues: [("batch".to_string(), (Some(1), None))].into(),
            ..Default::default()
        };
        let d = context_switch(&cands, &mut p, &limits);
        assert_eq!(d.run, vec![1]);
        assert!(d.waiting[0].1.contains("limit of 1"));
    }

    #[test]
    fn fcfs_blocks_behind_the_head_and_easy_backfills_only_what_keeps_its_reservation() {
        // Two 4-cpu nodes; a 4-cpu job runs until t=100 by its estimate.
        let mut m = cluster(2);
        let mut running = cand(1, 10, 0, Standing::Running, &[(4, Some(0))]);
        running.expected_end_ms = Some(100);
        let mut head = cand(2, 10, 1, Standing::Waiting, &[(4, None), (4, None)]);
        head.requested_ms = Some(1000);
        let mut short = cand(3, 10, 2, Standing::Waiting, &[(2, None)]);
        short.requested_ms = Some(50);
        let mut long = cand(4, 10, 3, Standing::Waiting, &[(2, None)]);
        long.requested_ms = Some(500);
        let cands = vec![running, head, short, long];
        let mut p = placer(&mut m, &cands);
        let d = fcfs(&cands, &mut p);
        assert!(d.run.is_empty(), "the head does not fit: nothing starts");
        let mut m = cluster(2);
        let mut p = placer(&mut m, &cands);
        let d = easy(&cands, &mut p, 0, 0);
        // The head is reserved for t=100; the short job ends before, the long one would delay it.
        assert_eq!(d.run, vec![3]);
    }

    #[test]
    fn a_running_vjob_whose_vms_have_nowhere_to_go_is_suspended() {
        let mut m = cluster(1);
        let cands = vec![cand(1, 10, 0, Standing::Running, &[(4, Some(0)), (4, None)])];
        let mut p = placer(&mut m, &cands);
        let d = context_switch(&cands, &mut p, &Limits::default());
        assert_eq!(d.suspend, vec![(1, None)]);
    }
}
