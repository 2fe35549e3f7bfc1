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
//! When the free room together would hold a waiting vjob but no node set can as the VMs sit, running
//! VMs are first moved live out of its way, if the moves pay for themselves ([`Defragment`]);
//! only then are others suspended for it.

mod context_switch;

use std::borrow::Cow;
use std::cmp::Reverse;
use std::collections::HashMap;

pub use context_switch::context_switch;
use vjob_hypervisor::DurationModel;

use crate::model::NodeIdx;
use crate::plan::place::Placer;
use crate::resources::MEMORY;

/// The running time assumed of a vjob whose user gave no estimate (walltime): longer than any
/// real one, yet far from overflowing when added to a time.
pub const UNKNOWN_RUNTIME_MS: u64 = u64::MAX / 4;

/// When a running vjob's estimate says it ends: it has been running since `since`, had run
/// `executed_ms` before that, and its user estimated `requested_ms` in all ([`UNKNOWN_RUNTIME_MS`]
/// when unknown).
pub fn expected_end(since: u64, executed_ms: u64, requested_ms: Option<u64>) -> u64 {
    since + requested_ms.unwrap_or(UNKNOWN_RUNTIME_MS).saturating_sub(executed_ms)
}

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
pub struct Candidate<'a> {
    pub id: u64,
    pub queue: &'a str,
    pub queue_priority: i32,
    pub priority: i32,
    pub submit_ms: u64,
    pub user: &'a str,
    pub standing: Standing,
    /// May be started or resumed (queue started, not held, not suspended by hand).
    pub eligible: bool,
    /// May not be suspended now (within its quantum, or switching).
    pub protected: bool,
    /// What each of its VMs needs.
    pub demand: &'a Demands,
    /// How many VMs it has.
    pub vms: usize,
    /// Its VMs that stay where they are (running, or paused in memory), as (VM index, node);
    /// the others must be placed (not started, sleeping, or on a node going offline).
    pub placed: &'a [(usize, NodeIdx)],
    /// The user's estimate of its running time (walltime), for backfilling.
    pub requested_ms: Option<u64>,
    /// For a running vjob: when its estimate says it ends.
    pub expected_end_ms: Option<u64>,
    /// What its placement script asks, if it has one.
    pub rules: Option<&'a crate::placement::VjobRules>,
    /// At most so many vjobs of its group run at once: `(group, most running)` (an array's
    /// throttle). Only the context-switch policy honours it.
    pub group_limit: Option<(u64, u32)>,
    /// Its rank among vjobs of its queue priority ([`crate::decision::VjobInput::rank`]).
    pub rank: i64,
}

impl Candidate<'_> {
    /// What the VMs to place (those not in `placed`) need of resource `k` together.
    pub fn to_place_total(&self, k: usize) -> u64 {
        match self.demand {
            Demands::Alike(d) => d[k] * (self.vms - self.placed.len()) as u64,
            Demands::Each(_) => {
                self.demand.total(k, self.vms) - self.placed.iter().map(|&(vm, _)| self.demand.of(vm)[k]).sum::<u64>()
            }
        }
    }

    /// Whether what is free in all could hold the VMs to place: a counter comparison, checked
    /// before anything is placed (no placement can hold more than is free).
    pub fn may_fit(&self, placer: &Placer) -> bool {
        (0..placer.nres()).all(|k| self.to_place_total(k) <= placer.free(k))
    }

    /// What each VM to place needs (those not in `placed`), in VM order.
    pub fn to_place(&self) -> Vec<&[u64]> {
        match self.demand {
            Demands::Alike(d) => vec![d.as_slice(); self.vms - self.placed.len()],
            Demands::Each(_) => {
                let mut stays = vec![false; self.vms];
                for &(vm, _) in self.placed {
                    stays[vm] = true;
                }
                (0..self.vms)
                    .filter(|&i| !stays[i])
                    .map(|i| self.demand.of(i))
                    .collect()
            }
        }
    }
}

/// What each VM of a vjob needs: one demand for all of them (the common case, said once), or
/// one per VM (a placement script that declares VMs of several templates).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Demands {
    Alike(Vec<u64>),
    Each(Vec<Vec<u64>>),
}

impl Demands {
    /// One per VM, said once when they are all the same.
    pub fn from_each(each: Vec<Vec<u64>>) -> Demands {
        match each.first() {
            Some(first) if each.iter().all(|d| d == first) => Demands::Alike(first.clone()),
            None => Demands::Alike(Vec::new()),
            _ => Demands::Each(each),
        }
    }

    /// What VM `vm` needs.
    pub fn of(&self, vm: usize) -> &[u64] {
        match self {
            Demands::Alike(d) => d,
            Demands::Each(e) => &e[vm],
        }
    }

    /// The one demand of every VM, when they are alike.
    pub fn alike(&self) -> Option<&[u64]> {
        match self {
            Demands::Alike(d) => Some(d),
            Demands::Each(_) => None,
        }
    }

    /// How many resources a demand counts.
    pub fn resources(&self) -> usize {
        match self {
            Demands::Alike(d) => d.len(),
            Demands::Each(e) => e.first().map_or(0, Vec::len),
        }
    }

    /// What all `count` VMs need of resource `r` together.
    pub fn total(&self, r: usize, count: usize) -> u64 {
        match self {
            Demands::Alike(d) => d[r] * count as u64,
            Demands::Each(e) => e.iter().take(count).map(|d| d[r]).sum(),
        }
    }
}

impl From<Vec<u64>> for Demands {
    fn from(d: Vec<u64>) -> Demands {
        Demands::Alike(d)
    }
}

/// Places `c`'s VMs (`demands`): with its placement rules when it has some and all its VMs are
/// to be placed, else by capacity alone.
pub fn place(placer: &mut Placer, c: &Candidate<'_>, demands: &[&[u64]]) -> Option<Vec<NodeIdx>> {
    match c.rules {
        Some(r) if demands.len() == c.vms => r.place(placer, demands),
        _ => placer.place_group(demands),
    }
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
    /// When running VMs are moved live out of a waiting vjob's way; `None`: never.
    pub defragment: Option<Defragment>,
    /// Nodes being switched on; `None`: power is not managed.
    pub boots: Option<Boots>,
}

/// Nodes being switched on, and off nodes that could be. A vjob that could preempt waits for
/// them instead when they will hold it sooner than its victims would be saved: it starts where
/// it starts soonest, and nobody is suspended for room that a boot brings as soon.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Boots {
    /// The time of the decision.
    pub now_ms: u64,
    /// Each node booting or that power management may boot, and when it would take VMs.
    pub on_at: Vec<(NodeIdx, u64)>,
    /// Those of them that are off (the decision asks for their boot in [`Decision::boot`]).
    pub off: Vec<NodeIdx>,
    /// How long saving a victim's VMs takes.
    pub durations: DurationModel,
}

/// Defragmentation by live migration. A waiting vjob that the free room of the cluster could
/// hold, but no set of nodes can as the VMs sit, starts after running VMs are moved out of its
/// way (before anything is suspended for it), when the moves pay for themselves:
/// - they move at most half the processors the vjob starts (a move buys at least twice what it
///   moves; measured against a bound of all of them and of a quarter, on the shared traces on
///   8-core nodes and on overlaid traces, half did best), and a running VM moves at most once a
///   round;
/// - they are done before the vjob could otherwise start: no running vjob is expected (by its
///   estimate) to end, and leave room enough, before the moves would be over.
#[derive(Debug, Clone, PartialEq)]
pub struct Defragment {
    /// The time of the decision, to compare with the running vjobs' expected ends.
    pub now_ms: u64,
    /// How long a live migration takes.
    pub durations: DurationModel,
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
    /// The rule of the daemon's and the simulator's models: preemptors with a walltime of at
    /// most `max_walltime_ms` pause their victims, which keep their memory; none when it is 0.
    pub fn keeping_memory(max_walltime_ms: u64) -> Option<PauseRule> {
        (max_walltime_ms > 0).then(|| PauseRule {
            max_walltime_ms,
            kept: vec![MEMORY],
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
    /// Why each waiting candidate waits. Most reasons are fixed phrases, borrowed: a decision
    /// names every waiting vjob, and a long queue would otherwise cost a string each.
    pub waiting: Vec<(u64, Cow<'static, str>)>,
    /// Where the policy placed the VMs it placed, for each vjob of `run` that had some to
    /// place (the planner is free to choose otherwise; a plan of the nodes touched keeps to
    /// these, and so does every plan of a vjob that running VMs move for).
    pub placed: Vec<(u64, Vec<NodeIdx>)>,
    /// Running VMs to move live out of the way of a vjob of `run` ([`Defragment`]).
    pub migrate: Vec<Move>,
    /// The waiting vjobs that wait for room (not for a limit, nor for their own nodes): what
    /// switching nodes on could serve.
    pub short_of_room: Vec<u64>,
    /// Off nodes to switch on for vjobs that wait for them rather than preempt ([`Boots`]).
    pub boot: Vec<NodeIdx>,
    /// EASY stopped at this candidate, nothing being free to start any more: it and every
    /// eligible candidate after it in [`order`] wait for resources behind the reservation,
    /// short of room. They are in neither `waiting` nor `short_of_room`, as a long queue would
    /// cost two entries a vjob at every decision; a board lists them when asked
    /// ([`crate::decision::Ask::list_waiting`]).
    pub unreached_from: Option<u64>,
}

/// One VM of a running vjob to move live: some VM of `vjob` on node `from` goes to `to`, to make
/// room for vjob `for_vjob`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Move {
    pub vjob: u64,
    pub from: NodeIdx,
    pub to: NodeIdx,
    pub for_vjob: u64,
}

/// Where a candidate stands in [`order`]: the smaller, the sooner.
pub type OrderKey = (Reverse<i32>, Reverse<i64>, Reverse<i32>, u64, u64);

/// A candidate's place in [`order`]: queue priority, rank, job priority, submission, id.
pub fn order_key(c: &Candidate<'_>) -> OrderKey {
    let (_, priority, submit_ms, id) = seniority(c);
    (Reverse(c.queue_priority), Reverse(c.rank), priority, submit_ms, id)
}

/// The order in which candidates are considered: queue priority, rank, job priority,
/// submission, id.
pub fn order(cands: &[Candidate<'_>]) -> Vec<usize> {
    // Each key made once and sorted beside its index: a long queue is sorted at every
    // decision, and a key made at each comparison cost more than the comparisons. The id makes
    // keys unique, so an unstable sort orders as a stable one.
    let mut keyed: Vec<(OrderKey, usize)> = (cands.iter().enumerate()).map(|(i, c)| (order_key(c), i)).collect();
    keyed.sort_unstable();
    keyed.into_iter().map(|(_, i)| i).collect()
}

/// `cands` in [`order`], for the policies that take their candidates one by one.
pub fn in_order<'s, 'c>(cands: &'s [Candidate<'c>]) -> impl Iterator<Item = Candidate<'c>> + 's {
    order(cands).into_iter().map(|i| cands[i].clone())
}

/// Who outranks whom without ranks: higher queue priority, then higher job priority, then
/// earlier submission. A vjob preempts only vjobs it precedes both in [`order`] and by this,
/// so that a rank (fair share, age) orders who starts first but never preempts by itself.
pub fn seniority(c: &Candidate<'_>) -> (Reverse<i32>, Reverse<i32>, u64, u64) {
    (Reverse(c.queue_priority), Reverse(c.priority), c.submit_ms, c.id)
}

/// First come, first served: waiting vjobs start in order while they fit; the first that does
/// not fit blocks all the others. No preemption. The baseline every scheduler is compared with.
/// `cands` come in [`order`] ([`in_order`]); those after the first that waits are not read.
pub fn fcfs<'c>(cands: impl Iterator<Item = Candidate<'c>>, placer: &mut Placer) -> Decision {
    let mut decision = Decision::default();
    for c in cands {
        let c = &c;
        if c.standing == Standing::Running || !c.eligible {
            continue;
        }
        let placed = c.may_fit(placer).then(|| place(placer, c, &c.to_place())).flatten();
        if let Some(nodes) = placed {
            decision.run.push(c.id);
            decision.placed.push((c.id, nodes));
        } else {
            decision
                .waiting
                .push((c.id, "waiting for resources (first come, first served)".into()));
            decision.short_of_room.push(c.id);
            break;
        }
    }
    decision
}

/// EASY backfilling (Lifka 1995; the default of Maui and Slurm's backfill): vjobs start in order
/// while they fit; the first that does not fit gets a reservation at the earliest time enough
/// running vjobs are expected to have ended (by their walltime estimates); later vjobs may jump
/// ahead if they fit now and either end before that time or leave enough room for it. No
/// preemption. Resource counts for the reservation are aggregate (`rc` = the resource counted,
/// e.g. cpu); fits are checked node by node.
///
/// `running` is what runs, as (expected end, amount of `rc` it frees), in order of end: the
/// caller keeps it across decisions (the board does), so that a decision costs the vjobs that
/// wait, not those that run. Running vjobs among `cands` are passed over.
///
/// `cands` come in [`order`] ([`in_order`]). Once a reservation is held and nothing of `rc` is
/// free, no later candidate can start (every VM needs some): they are not read, and the
/// decision says where it stopped ([`Decision::unreached_from`]) instead of listing each.
pub fn easy<'c>(
    cands: impl Iterator<Item = Candidate<'c>>,
    running: impl IntoIterator<Item = (u64, u64)>,
    placer: &mut Placer,
    now: u64,
    rc: usize,
) -> Decision {
    let mut decision = Decision::default();
    let size = |c: &Candidate<'_>| -> u64 { c.demand.total(rc, c.vms) };
    // Expected ends of what this decision starts, as (time, amount freed).
    let mut started: Vec<(u64, u64)> = Vec::new();
    let mut running = Some(running);
    let mut reservation: Option<(u64, u64)> = None;
    for c in cands {
        let c = &c;
        if c.standing == Standing::Running || !c.eligible {
            continue;
        }
        if reservation.is_some() && placer.free(rc) == 0 {
            debug_assert!(c.to_place_total(rc) > 0, "vjob {} has VMs that need no {rc}", c.id);
            decision.unreached_from = Some(c.id);
            break;
        }
        // Without an estimate, a waiting vjob is taken to run longer than any running one
        // without an estimate: it never backfills in time ahead of one.
        let estimate_end = now.saturating_add(c.requested_ms.unwrap_or(2 * UNKNOWN_RUNTIME_MS));
        match reservation {
            None => {
                if let Some(nodes) = c.may_fit(placer).then(|| place(placer, c, &c.to_place())).flatten() {
                    decision.run.push(c.id);
                    decision.placed.push((c.id, nodes));
                    started.push((estimate_end, size(c)));
                    continue;
                }
                // The head: reserve the earliest time enough is expected to be free.
                started.sort_unstable();
                let ends = merge_sorted(running.take().into_iter().flatten(), started.iter().copied());
                reservation = Some(shadow(ends, placer.free(rc), size(c)));
                decision.waiting.push((c.id, EASY_HEAD.into()));
                decision.short_of_room.push(c.id);
            }
            Some((shadow, extra)) => {
                let fits_in_time = estimate_end <= shadow;
                let fits_in_extra = size(c) <= extra;
                let placed = ((fits_in_time || fits_in_extra) && c.may_fit(placer))
                    .then(|| place(placer, c, &c.to_place()))
                    .flatten();
                if let Some(nodes) = placed {
                    decision.run.push(c.id);
                    decision.placed.push((c.id, nodes));
                    if !fits_in_time {
                        reservation = Some((shadow, extra - size(c)));
                    }
                } else {
                    decision.waiting.push((c.id, EASY_BACKFILL.into()));
                    decision.short_of_room.push(c.id);
                }
            }
        }
    }
    decision
}

/// Why EASY's head waits.
const EASY_HEAD: &str = "waiting for resources (holds the reservation)";
/// Why a vjob behind EASY's head waits.
pub const EASY_BACKFILL: &str = "waiting for resources (backfilling)";

/// EASY's reservation for a head that needs `need` with `free` free now: the earliest end
/// (of `ends`, in order) by which enough is expected to be free, and what is left over then.
fn shadow(ends: impl Iterator<Item = (u64, u64)>, mut free: u64, need: u64) -> (u64, u64) {
    let mut shadow = u64::MAX;
    for (t, amount) in ends {
        if free >= need {
            break;
        }
        free += amount;
        shadow = t;
    }
    (shadow, free.saturating_sub(need))
}

/// Two sorted sequences as one, in order.
fn merge_sorted<T: Ord + Copy>(a: impl Iterator<Item = T>, b: impl Iterator<Item = T>) -> impl Iterator<Item = T> {
    let (mut a, mut b) = (a.peekable(), b.peekable());
    std::iter::from_fn(move || match (a.peek(), b.peek()) {
        (Some(x), Some(y)) if y < x => b.next(),
        (Some(_), _) => a.next(),
        (None, _) => b.next(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Model, VmState};

    fn cluster(nodes: usize) -> Model {
        let mut m = Model::cpu_and_memory();
        for i in 0..nodes {
            m.add_node(format!("n{i}"), true, &[4, 8]);
        }
        m
    }

    /// What runs among `cands`, as [`easy`] takes it: (expected end, amount of `rc`), in order.
    fn running_ends(cands: &[Candidate<'_>], rc: usize) -> Vec<(u64, u64)> {
        let mut ends: Vec<(u64, u64)> = (cands.iter())
            .filter(|c| c.standing == Standing::Running)
            .map(|c| (c.expected_end_ms.unwrap_or(u64::MAX), c.demand.total(rc, c.vms)))
            .collect();
        ends.sort_unstable();
        ends
    }

    /// A candidate whose slices live as long as the test (leaked).
    fn cand(
        id: u64,
        qprio: i32,
        submit: u64,
        standing: Standing,
        vms: &[(u64, Option<NodeIdx>)],
    ) -> Candidate<'static> {
        Candidate {
            id,
            queue: if qprio > 10 { "express" } else { "batch" },
            queue_priority: qprio,
            priority: 0,
            submit_ms: submit,
            user: "u",
            standing,
            eligible: true,
            protected: false,
            requested_ms: None,
            expected_end_ms: None,
            rules: None,
            group_limit: None,
            rank: 0,
            demand: Box::leak(Box::new(Demands::Alike(vec![vms[0].0, 4]))),
            vms: vms.len(),
            placed: Box::leak(
                vms.iter()
                    .enumerate()
                    .filter_map(|(i, &(_, h))| h.map(|h| (i, h)))
                    .collect::<Vec<_>>()
                    .into_boxed_slice(),
            ),
        }
    }

    /// A placer whose loads hold the running candidates' VMs.
    fn placer(m: &mut Model, cands: &[Candidate<'_>]) -> Placer {
        for c in cands {
            for &(k, h) in c.placed {
                m.add_vm(format!("{}-{k}", c.id), VmState::Running, h, c.demand.of(k));
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
    fn a_vjob_waits_for_a_booting_node_that_holds_it_sooner_than_its_victim_is_saved() {
        let m = cluster(3);
        let cands = vec![
            cand(1, 10, 0, Standing::Running, &[(4, Some(0)), (4, Some(1))]),
            cand(2, 100, 5, Standing::Waiting, &[(4, None)]),
        ];
        let decide = |on_in_ms: u64, off: Vec<NodeIdx>| {
            let mut m = m.clone();
            let mut p = placer(&mut m, &cands);
            p.close(2);
            let limits = Limits {
                boots: Some(Boots {
                    now_ms: 1_000,
                    on_at: vec![(2, 1_000 + on_in_ms)],
                    off: off.clone(),
                    durations: DurationModel::default(),
                }),
                ..Limits::default()
            };
            let d = context_switch(&cands, &mut p, &limits);
            assert!(!p.accepts(2), "the booting node is closed again");
            d
        };
        // Saving vjob 1's VMs takes 341 ms (pause, overhead, 4 bytes).
        let d = decide(200, vec![]);
        assert_eq!((d.run.clone(), d.suspend.clone()), (vec![], vec![]));
        assert_eq!(
            (d.short_of_room, d.boot),
            (vec![2], vec![]),
            "node 2 is booting already"
        );
        assert!(d.waiting[0].1.contains("switched on"), "{:?}", d.waiting);
        let d = decide(200, vec![2]);
        assert_eq!(
            (d.run.clone(), d.boot),
            (vec![], vec![2]),
            "node 2 is off: its boot is asked for"
        );
        let d = decide(120_000, vec![2]);
        assert_eq!((d.run, d.suspend), (vec![2], vec![(1, Some(2))]), "the boot is slower");
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
        let decide = |cands: &[Candidate<'_>]| {
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
            demand: &Demands::Alike(vec![4, 8]),
            ..short.clone()
        };
        let d = decide(&[batch.clone(), big]);
        assert_eq!((d.pause, d.suspend), (vec![], vec![(1, Some(2))]));

        // A paused vjob holds its memory where it is and resumes there once processors are free.
        let paused = cand(1, 10, 0, Standing::Paused, &[(4, Some(0)), (4, Some(1))]);
        let with_held = |others: &[Candidate<'_>]| {
            let mut m = cluster(2);
            for &(k, h) in paused.placed {
                m.add_vm(format!("p-{k}"), VmState::Running, h, &rule.held(paused.demand.of(k)));
            }
            let mut p = placer(&mut m, others);
            let mut all = vec![paused.clone()];
            all.extend_from_slice(others);
            context_switch(&all, &mut p, &limits)
        };
        let running_short = Candidate {
            standing: Standing::Running,
            vms: 1,
            placed: &[(0, 0)],
            ..short.clone()
        };
        let d = with_held(&[running_short]);
        assert!(d.run.is_empty() && d.suspend.is_empty() && d.pause.is_empty());
        assert_eq!(
            d.waiting,
            vec![(1, "paused in memory: waiting for processors on its nodes".into())]
        );
        assert_eq!(with_held(&[]).run, vec![1]);
        // A job that needs its memory saves it to disk.
        let hungry = Candidate {
            demand: &Demands::Alike(vec![1, 8]),
            ..cand(3, 100, 9, Standing::Waiting, &[(1, None)])
        };
        let running_short = Candidate {
            standing: Standing::Running,
            vms: 1,
            placed: &[(0, 0)],
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
        assert_eq!(d.waiting, vec![(2, "waiting for resources".into())]);
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
    fn a_group_limit_lets_only_so_many_of_its_vjobs_run_and_a_preempted_one_frees_its_slot() {
        // Tasks 1..=4 of array 1 with a throttle of 2 on a roomy cluster; task 1 runs.
        let mut m = cluster(2);
        let task = |id, standing, vms: &[(u64, Option<NodeIdx>)]| Candidate {
            group_limit: Some((1, 2)),
            ..cand(id, 10, id, standing, vms)
        };
        let cands = vec![
            task(1, Standing::Running, &[(1, Some(0))]),
            task(2, Standing::Waiting, &[(1, None)]),
            task(3, Standing::Waiting, &[(1, None)]),
            task(4, Standing::Waiting, &[(1, None)]),
            cand(5, 10, 5, Standing::Waiting, &[(1, None)]),
        ];
        let mut p = placer(&mut m, &cands);
        let d = context_switch(&cands, &mut p, &Limits::default());
        assert_eq!(d.run, vec![2, 5], "one more task, and the job outside the array");
        assert!(
            d.waiting
                .iter()
                .any(|(id, why)| *id == 3 && why.contains("throttle of 2")),
            "{:?}",
            d.waiting
        );
        // An express job takes the whole cluster: the running tasks are suspended, and a slot
        // freed by a suspension is not given to a task that cannot fit anyway.
        let mut m = cluster(1);
        let cands = vec![
            task(1, Standing::Running, &[(4, Some(0))]),
            task(2, Standing::Waiting, &[(4, None)]),
            cand(9, 100, 9, Standing::Waiting, &[(4, None)]),
        ];
        let mut p = placer(&mut m, &cands);
        let d = context_switch(&cands, &mut p, &Limits::default());
        assert_eq!((d.run, d.suspend), (vec![9], vec![(1, Some(9))]));
    }

    #[test]
    fn a_rank_orders_who_starts_first_but_never_preempts_by_itself() {
        // One 4-cpu node: job 1 runs; 2 (earlier) and 3 (ranked higher) wait for it.
        let mut m = cluster(1);
        let ranked = |id, submit, rank, standing, vms: &[(u64, Option<NodeIdx>)]| Candidate {
            rank,
            ..cand(id, 10, submit, standing, vms)
        };
        let cands = vec![
            ranked(1, 0, 0, Standing::Running, &[(4, Some(0))]),
            ranked(2, 1, 100, Standing::Waiting, &[(4, None)]),
            ranked(3, 2, 900, Standing::Waiting, &[(4, None)]),
        ];
        let mut p = placer(&mut m, &cands);
        let d = context_switch(&cands, &mut p, &Limits::default());
        assert_eq!(
            (d.run.clone(), d.suspend.clone()),
            (vec![], vec![]),
            "job 1 keeps running"
        );
        // Once job 1 is gone, the higher rank starts first although submitted later.
        let mut m = cluster(1);
        let mut p = placer(&mut m, &cands[1..]);
        let d = context_switch(&cands[1..], &mut p, &Limits::default());
        assert_eq!(d.run, vec![3]);
        // A higher job priority still preempts, when the rank agrees.
        let mut urgent = ranked(4, 3, 950, Standing::Waiting, &[(4, None)]);
        urgent.priority = 5;
        let cands = vec![cands[0].clone(), urgent];
        let mut m = cluster(1);
        let mut p = placer(&mut m, &cands);
        let d = context_switch(&cands, &mut p, &Limits::default());
        assert_eq!((d.run, d.suspend), (vec![4], vec![(1, Some(4))]));
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
        let d = fcfs(in_order(&cands), &mut p);
        assert!(d.run.is_empty(), "the head does not fit: nothing starts");
        let mut m = cluster(2);
        let mut p = placer(&mut m, &cands);
        let d = easy(in_order(&cands), running_ends(&cands, 0), &mut p, 0, 0);
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

    fn defragmenting(now_ms: u64) -> Limits {
        Limits {
            defragment: Some(Defragment {
                now_ms,
                durations: DurationModel::default(),
            }),
            ..Default::default()
        }
    }

    #[test]
    fn a_waiting_vjob_that_only_fragmentation_keeps_out_starts_after_moves_that_pay() {
        // Two 4-cpu nodes, each half taken by a 2-cpu VM of running vjob 1 (priority above
        // the waiting vjob 2, so no suspension may help): 4 cpus free, none on one node.
        let running = cand(1, 100, 0, Standing::Running, &[(2, Some(0)), (2, Some(1))]);
        let waiting = cand(2, 10, 5, Standing::Waiting, &[(4, None)]);
        let decide = |cands: &[Candidate<'_>], limits: &Limits| {
            let mut m = cluster(2);
            let mut p = placer(&mut m, cands);
            context_switch(cands, &mut p, limits)
        };
        let cands = [running.clone(), waiting.clone()];
        let d = decide(&cands, &Limits::default());
        assert!(d.run.is_empty() && d.migrate.is_empty(), "without the rule it waits");
        let d = decide(&cands, &defragmenting(0));
        assert_eq!(d.run, vec![2]);
        assert!(d.suspend.is_empty());
        assert_eq!(d.migrate.len(), 1);
        let m = d.migrate[0];
        assert_eq!((m.vjob, m.for_vjob), (1, 2));
        assert_eq!((m.from, m.to), (d.placed[0].1[0], 1 - d.placed[0].1[0]));

        // When vjob 1 is expected to end before the move would be over, waiting is cheaper.
        let ending = Candidate {
            expected_end_ms: Some(100),
            ..running.clone()
        };
        let d = decide(&[ending, waiting.clone()], &defragmenting(0));
        assert!(d.run.is_empty() && d.migrate.is_empty());
        // Ending long after the move, it does not stop it.
        let later = Candidate {
            expected_end_ms: Some(3_600_000),
            ..running.clone()
        };
        assert_eq!(decide(&[later, waiting.clone()], &defragmenting(0)).migrate.len(), 1);

        // Moves carry at most half the processors they start: a 2-cpu vjob that only fits
        // where a 3-cpu VM would have to leave waits.
        let full = cand(1, 100, 0, Standing::Running, &[(3, Some(0)), (3, Some(1))]);
        let small_gap = cand(3, 10, 5, Standing::Waiting, &[(2, None)]);
        let d = decide(&[full, small_gap], &defragmenting(0));
        assert!(d.run.is_empty() && d.migrate.is_empty(), "{d:?}");
    }

    #[test]
    fn memory_limits_where_a_suspended_vjob_resumes() {
        // Node 0 has processors but not the memory; node 1 has both.
        let mut m = Model::cpu_and_memory();
        m.add_node("n0", true, &[4, 8]);
        m.add_node("n1", true, &[4, 8]);
        m.add_vm("hog", VmState::Running, 0, &[0, 6]);
        let suspended = Candidate {
            demand: &Demands::Alike(vec![2, 4]),
            ..cand(1, 10, 0, Standing::Suspended, &[(2, None)])
        };
        let mut p = Placer::from_model(&m);
        let d = context_switch(std::slice::from_ref(&suspended), &mut p, &Limits::default());
        assert_eq!(d.placed, vec![(1, vec![1])], "resumed where its memory fits");
        m.add_vm("hog2", VmState::Running, 1, &[0, 6]);
        let mut p = Placer::from_model(&m);
        let d = context_switch(&[suspended], &mut p, &Limits::default());
        assert!(d.run.is_empty(), "no node has its memory: it stays suspended");
    }
}
