//! DVMS (Quesnel, Lèbre, Südholt, CCPE 2013): no service node; the nodes on a ring. A node that
//! becomes violated starts an *event*: a partition holding it, whose event travels along the
//! ring. A free node the event reaches joins the partition and becomes its leader, which solves
//! the partition alone with the planner; if that yields a plan, the plan is carried out and the
//! partition dissolves; if not, the event goes on to the next node out.
//!
//! - Nodes already in another partition are skipped in one message (the *shortcut*: to the
//!   first node past that partition on the ring).
//! - An event that reaches its own partition went round: if every node is in it, there is no
//!   solution and it dissolves; otherwise the rest is taken by other partitions and it is
//!   *blocked*: it waits, and merges with the next event that reaches it (a blocked partition is
//!   absorbed by the event that finds it), or grows again when a partition dissolves and frees
//!   nodes, or dissolves after [`BLOCKED_TIMEOUT_S`].
//! - A dissolved partition frees its nodes; a freed node still violated starts a new event.
//!
//! The next node out is the ring neighbour, as in the paper (VMPlaceS's DVMS picks a random
//! live node outside the partition instead). Messages: each hop of an event, each join (its
//! acknowledgement to the leader), each migration order, each node freed at dissolution.

use std::collections::BTreeMap;

use super::{micros, Event, Micros, Move, Queue, Scheduler, World};

/// Seconds a blocked partition waits before it dissolves.
pub const BLOCKED_TIMEOUT_S: f64 = 30.0;

/// Seconds between two checks of a node's monitor: a node still violated when an event about
/// it failed starts the next one at its next check.
pub const MONITOR_PERIOD_S: f64 = 1.0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Its event is on its way to a node.
    Growing,
    /// Its leader is computing a plan.
    Solving,
    /// Its plan is being carried out.
    Applying,
    /// Every node out is in another partition: waiting.
    Blocked,
}

#[derive(Debug, Clone)]
struct Partition {
    leader: u32,
    nodes: Vec<u32>,
    state: State,
    since: Micros,
    plan: Vec<Move>,
    /// Bumped at each state change: a timer set in an older state is stale.
    epoch: u32,
}

/// What a scheduler token stands for.
#[derive(Debug, Clone, Copy)]
enum Msg {
    /// Partition `part`'s event reaches node `to`, sent by `from`.
    Arrive { part: u32, from: u32, to: u32 },
    /// Partition `part`'s leader has its plan.
    Solved { part: u32 },
    /// Partition `part` has been blocked since epoch `epoch`.
    Timeout { part: u32, epoch: u32 },
    /// Node `node`'s monitor checks it again.
    Check { node: u32 },
}

/// The order nodes are visited in by the events.
pub trait Overlay {
    /// The next node out of partition `nodes` for an event last at `from`, among those `free`
    /// says are not in this partition; `None` when there is none.
    fn next_out(&self, w: &World, nodes: &[u32], from: u32, outside: &dyn Fn(u32) -> bool) -> Option<u32>;
}

/// The ring of the paper: node `i`'s neighbour is `i + 1`.
pub struct Ring;

impl Overlay for Ring {
    fn next_out(&self, w: &World, _nodes: &[u32], from: u32, outside: &dyn Fn(u32) -> bool) -> Option<u32> {
        let n = w.nodes.len() as u32;
        (1..n).map(|k| (from + k) % n).find(|&m| outside(m))
    }
}

/// The DVMS scheduler over an overlay.
pub struct Dvms<O: Overlay> {
    overlay: O,
    parts: BTreeMap<u32, Partition>,
    next_id: u32,
    /// Per node, the partition it is in.
    member: Vec<Option<u32>>,
    msgs: BTreeMap<u64, Msg>,
    next_token: u64,
}

impl<O: Overlay> Dvms<O> {
    pub fn new(overlay: O, nodes: usize) -> Self {
        Dvms {
            overlay,
            parts: BTreeMap::new(),
            next_id: 0,
            member: vec![None; nodes],
            msgs: BTreeMap::new(),
            next_token: 0,
        }
    }

    fn send(&mut self, at: Micros, m: Msg, q: &mut Queue) {
        self.next_token += 1;
        self.msgs.insert(self.next_token, m);
        q.at(at, Event::Scheduler { token: self.next_token });
    }

    /// Node `n`, violated and free, starts an event.
    fn start_event(&mut self, n: u32, w: &mut World, q: &mut Queue) {
        let id = self.next_id;
        self.next_id += 1;
        self.member[n as usize] = Some(id);
        self.parts.insert(
            id,
            Partition {
                leader: n,
                nodes: vec![n],
                state: State::Growing,
                since: w.now,
                plan: Vec::new(),
                epoch: 0,
            },
        );
        w.counters.events += 1;
        self.forward(id, n, w, q);
    }

    /// Sends partition `id`'s event from `from` to the next node out (past any other
    /// partition in one hop); blocks it or dissolves it when there is none.
    fn forward(&mut self, id: u32, from: u32, w: &mut World, q: &mut Queue) {
        let member = &self.member;
        let p = &self.parts[&id];
        let free = |m: u32| member[m as usize].is_none();
        let next = self
            .overlay
            .next_out(w, &p.nodes, from, &|m| member[m as usize] != Some(id));
        let Some(to) = next else {
            // Every node is in this partition: nothing left to try.
            return self.dissolve(id, false, w, q);
        };
        // Skip other partitions in one message: the event goes straight to the first free node
        // past them, if any; if none is free, it waits blocked.
        let target = if free(to) {
            Some(to)
        } else {
            self.overlay.next_out(w, &p.nodes, from, &free)
        };
        match target {
            Some(t) => {
                let p = self.parts.get_mut(&id).expect("exists");
                p.state = State::Growing;
                p.epoch += 1;
                w.counters.messages += 1;
                let at = w.now + micros(w.link(from, t).latency);
                self.send(at, Msg::Arrive { part: id, from, to: t }, q);
            }
            None => {
                // Blocked: tell the partition in the way, which merges if it is blocked too.
                let other = self.member[to as usize].expect("not free");
                if self.parts[&other].state == State::Blocked {
                    w.counters.messages += 1;
                    let at = w.now + micros(w.link(from, to).latency);
                    return self.send(at, Msg::Arrive { part: id, from, to }, q);
                }
                let p = self.parts.get_mut(&id).expect("exists");
                p.state = State::Blocked;
                p.epoch += 1;
                let epoch = p.epoch;
                self.send(w.now + micros(BLOCKED_TIMEOUT_S), Msg::Timeout { part: id, epoch }, q);
            }
        }
    }

    /// Partition `id`'s event reaches node `to`.
    fn arrive(&mut self, id: u32, from: u32, to: u32, w: &mut World, q: &mut Queue) {
        if !self.parts.contains_key(&id) {
            return; // dissolved or merged meanwhile
        }
        match self.member[to as usize] {
            None => self.join(id, to, w, q),
            Some(other) if other == id => self.forward(id, from, w, q),
            Some(other) if self.parts[&other].state == State::Blocked => {
                self.merge(id, other);
                self.leader_solves(id, to, w, q);
            }
            // Taken meanwhile: on past it.
            Some(_) => self.forward(id, to, w, q),
        }
    }

    /// Free node `n` joins partition `id` and, as its new leader, solves it.
    fn join(&mut self, id: u32, n: u32, w: &mut World, q: &mut Queue) {
        self.member[n as usize] = Some(id);
        self.parts.get_mut(&id).expect("exists").nodes.push(n);
        w.counters.messages += 1;
        self.leader_solves(id, n, w, q);
    }

    /// Partition `other` (blocked) is absorbed by partition `id`.
    fn merge(&mut self, id: u32, other: u32) {
        let o = self.parts.remove(&other).expect("exists");
        for &n in &o.nodes {
            self.member[n as usize] = Some(id);
        }
        let p = self.parts.get_mut(&id).expect("exists");
        p.nodes.extend(o.nodes);
        p.since = p.since.min(o.since);
    }

    fn leader_solves(&mut self, id: u32, leader: u32, w: &mut World, q: &mut Queue) {
        let nodes = self.parts[&id].nodes.clone();
        match w.solve(&nodes) {
            Some(s) => {
                let p = self.parts.get_mut(&id).expect("exists");
                p.leader = leader;
                p.state = State::Solving;
                p.epoch += 1;
                p.plan = s.moves;
                self.send(w.now + micros(s.charged_s), Msg::Solved { part: id }, q);
            }
            None => {
                self.parts.get_mut(&id).expect("exists").leader = leader;
                self.forward(id, leader, w, q);
            }
        }
    }

    /// The partition ends: its nodes are free again (a blocked partition may grow into them,
    /// a node still violated starts a new event).
    fn dissolve(&mut self, id: u32, solved: bool, w: &mut World, q: &mut Queue) {
        let Some(p) = self.parts.remove(&id) else { return };
        for &n in &p.nodes {
            self.member[n as usize] = None;
        }
        w.counters.messages += p.nodes.len() as u64;
        w.event_ended(p.since, p.nodes.len(), solved);
        let blocked: Vec<(u32, u32)> = self
            .parts
            .iter()
            .filter(|(_, b)| b.state == State::Blocked)
            .map(|(&b, x)| (b, x.leader))
            .collect();
        for (b, leader) in blocked {
            self.forward(b, leader, w, q);
        }
        for &n in &p.nodes {
            if w.is_violated(n) {
                match solved {
                    true => self.check(n, w, q),
                    false => self.send(w.now + micros(MONITOR_PERIOD_S), Msg::Check { node: n }, q),
                }
            }
        }
    }

    /// Node `n`'s monitor: violated and free, it starts an event.
    fn check(&mut self, n: u32, w: &mut World, q: &mut Queue) {
        if w.is_violated(n) && self.member[n as usize].is_none() {
            self.start_event(n, w, q);
        }
    }

    /// Partitions not over yet (for tests).
    pub fn open_partitions(&self) -> usize {
        self.parts.len()
    }
}

impl<O: Overlay> Scheduler for Dvms<O> {
    fn start(&mut self, _: &mut World, _: &mut Queue) {}

    fn on_event(&mut self, token: u64, w: &mut World, q: &mut Queue) {
        let Some(m) = self.msgs.remove(&token) else { return };
        match m {
            Msg::Arrive { part, from, to } => self.arrive(part, from, to, w, q),
            Msg::Solved { part } => {
                let Some(p) = self.parts.get_mut(&part) else { return };
                let plan = std::mem::take(&mut p.plan);
                w.counters.messages += plan.len() as u64;
                p.state = State::Applying;
                if !w.reconfigure(plan, part as u64, q) {
                    // Nothing to move: the violation is gone (or was solved by the loads).
                    self.dissolve(part, true, w, q);
                }
            }
            Msg::Check { node } => self.check(node, w, q),
            Msg::Timeout { part, epoch } => {
                let stale = self
                    .parts
                    .get(&part)
                    .is_none_or(|p| p.state != State::Blocked || p.epoch != epoch);
                if !stale {
                    self.dissolve(part, false, w, q);
                }
            }
        }
    }

    fn on_violation(&mut self, node: u32, w: &mut World, q: &mut Queue) {
        self.check(node, w, q);
    }

    fn on_reconfigured(&mut self, owner: u64, w: &mut World, q: &mut Queue) {
        self.dissolve(owner as u32, true, w, q);
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::super::*;
    use super::*;

    /// A world of `n` nodes whose loads never change within the test's time, with the loads
    /// given per node (each node's VMs share it evenly).
    pub(crate) fn fixed(loads: &[u32], sites: usize) -> (World, Queue) {
        let s = Scenario {
            nodes: loads.len(),
            sites,
            vms_per_node: 4,
            load_period_s: 1e9,
            duration_s: 3600.0,
            ..Scenario::default()
        };
        let mut w = World::new(s);
        for (n, &l) in loads.iter().enumerate() {
            let vms = w.nodes[n].vms.clone();
            for (k, &v) in vms.iter().enumerate() {
                let share = l / 4 + u32::from((k as u32) < l % 4);
                w.set_load(v, share);
            }
        }
        (w, Queue::default())
    }

    /// Runs the events up to `horizon` seconds.
    pub(crate) fn drive<O: Overlay>(w: &mut World, q: &mut Queue, d: &mut Dvms<O>, horizon: f64) {
        let tell = |w: &mut World, d: &mut Dvms<O>, q: &mut Queue| {
            for n in std::mem::take(&mut w.newly_violated) {
                if w.is_violated(n) {
                    d.on_violation(n, w, q);
                }
            }
        };
        tell(w, d, q);
        while let Some((t, e)) = q.pop() {
            if t > micros(horizon) {
                break;
            }
            w.now = t;
            match e {
                Event::Load { .. } => {}
                Event::Moved { reconfig, mv } => {
                    if let Some(owner) = w.end_move(reconfig, mv, q) {
                        d.on_reconfigured(owner, w, q);
                    }
                }
                Event::Scheduler { token } => d.on_event(token, w, q),
            }
            tell(w, d, q);
        }
    }

    #[test]
    fn a_partition_solves_an_overload_on_a_small_ring() {
        // Node 1 asks 1000% of its 800%; node 2 has room for the rest.
        let (mut w, mut q) = fixed(&[700, 1000, 200, 700], 1);
        assert!(w.is_violated(1));
        let mut d = Dvms::new(Ring, 4);
        drive(&mut w, &mut q, &mut d, 3600.0);
        assert!(!w.violated().any(|_| true), "repaired");
        assert_eq!((w.counters.events, w.counters.solved, w.counters.failed), (1, 1, 0));
        assert!(w.counters.migrations >= 1);
        assert_eq!(w.partition_sizes, vec![2], "the ring neighbour was enough");
        assert_eq!(d.open_partitions(), 0);
        assert!(d.member.iter().all(Option::is_none));
    }

    #[test]
    fn a_partition_that_goes_round_without_a_solution_dissolves_and_frees_its_nodes() {
        // 3,300% asked of 3,200%: no configuration holds.
        let (mut w, mut q) = fixed(&[800, 900, 800, 800], 1);
        let mut d = Dvms::new(Ring, 4);
        // Within the first second: one event, before the monitor tries again.
        drive(&mut w, &mut q, &mut d, 0.5);
        assert_eq!(w.counters.events, 1);
        assert_eq!((w.counters.solved, w.counters.failed), (0, w.counters.events));
        assert_eq!(w.partition_sizes[0], 4, "it grew to the whole ring first");
        assert_eq!(d.open_partitions(), 0);
        assert!(d.member.iter().all(Option::is_none), "its nodes are free");
        assert_eq!(w.counters.migrations, 0);
    }

    #[test]
    fn partitions_that_meet_do_not_deadlock() {
        // Two violated nodes far apart; each needs two neighbours' room, so their partitions
        // grow into each other and must get past one another.
        // Node 0 and node 4 each must shed a VM of 225%; only node 7 has room, so node 0's
        // partition runs into node 4's, waits blocked, and grows past it once it dissolves.
        let (mut w, mut q) = fixed(&[900, 700, 700, 700, 900, 700, 700, 100], 1);
        let mut d = Dvms::new(Ring, 8);
        drive(&mut w, &mut q, &mut d, 3600.0);
        assert_eq!((w.counters.events, w.counters.solved), (2, 2), "{:?}", w.counters);
        assert_eq!(
            w.partition_sizes,
            vec![4, 8],
            "node 4's partition first; node 0's grew past it after"
        );
        assert_eq!(d.open_partitions(), 0, "every partition ended");
        assert_eq!(w.counters.events, w.counters.solved + w.counters.failed);
        assert!(!w.violated().any(|_| true), "both repaired");
        assert_eq!(w.counters.plans_rejected, 0);
    }
}
