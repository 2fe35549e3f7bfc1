//! Making room for a VM by moving others out of its way: the one defragmentation step, used by
//! the planner (to repair a target where a VM that must run finds no node) and by the
//! context-switch policy (to start a waiting vjob that the free room together could hold but no
//! node alone can, by live migration rather than suspension).
//!
//! One level deep: the nodes that lack the least room are tried first; on each, the largest
//! movable VMs are lifted until the VM fits, those that turn out not to be needed are put back,
//! and the others must fit elsewhere as they are. What "movable" and "may go" mean is the
//! caller's ([`Relocation`]): the planner's constraint rules, or the policy's view of which VMs
//! run and may move this round.

use super::place::Placer;
use crate::model::{fits, NodeIdx};

/// How many nodes a repair tries before giving up on a VM.
pub const REPAIR_CANDIDATES: usize = 32;

/// What room is made with: the VMs, what they need, where they may be, and the bookkeeping of
/// moving them. The [`Placer`] holds the loads; a `Relocation` holds everything else.
pub trait Relocation {
    /// A VM, as the caller names it.
    type Vm: Copy + Ord;
    /// What `u` needs on a node.
    fn demand(&self, u: Self::Vm) -> &[u64];
    /// The VMs on `n` that may be moved away from it.
    fn movable(&self, n: NodeIdx) -> Vec<Self::Vm>;
    /// Whether `u` may be on `n`, where the other VMs are now.
    fn may_go(&self, u: Self::Vm, n: NodeIdx) -> bool;
    /// `u` is now on `n`.
    fn put(&mut self, u: Self::Vm, n: NodeIdx);
    /// `u` is no longer on `n`.
    fn lift(&mut self, u: Self::Vm, n: NodeIdx);
}

/// The node room was made on, and where each VM moved from it went.
pub type Room<V> = (NodeIdx, Vec<(V, NodeIdx)>);

/// Makes room for `v` on some node by moving VMs there to other nodes: returns the node, now
/// holding `v`, and where each moved VM went (from that node). `None`: no node of the first
/// [`REPAIR_CANDIDATES`] could be freed; the placer and the relocation are left as they were.
pub fn make_room<R: Relocation>(placer: &mut Placer, reloc: &mut R, v: R::Vm) -> Option<Room<R::Vm>> {
    let d = reloc.demand(v).to_vec();
    let r = d.len();
    let mut candidates: Vec<(u64, NodeIdx)> = (0..placer.nodes() as NodeIdx)
        .filter(|&n| placer.accepts(n) && reloc.may_go(v, n))
        .map(|n| {
            let (load, cap) = (placer.load(n), placer.capacity(n));
            let deficit = (0..r)
                .map(|k| ((load[k] + d[k]).saturating_sub(cap[k]) as u128 * 1_000_000 / cap[k].max(1) as u128) as u64)
                .sum();
            (deficit, n)
        })
        .collect();
    candidates.sort_unstable();
    candidates
        .iter()
        .take(REPAIR_CANDIDATES)
        .find_map(|&(_, n)| try_node(placer, reloc, v, n, &d).map(|moved| (n, moved)))
}

/// Frees room for `v` (needing `d`) on `n`; see [`make_room`].
fn try_node<R: Relocation>(
    placer: &mut Placer,
    reloc: &mut R,
    v: R::Vm,
    n: NodeIdx,
    d: &[u64],
) -> Option<Vec<(R::Vm, NodeIdx)>> {
    let mark = placer.mark();
    let mut movable = reloc.movable(n);
    // Largest first: the fewest VMs to move.
    movable.sort_by_key(|&u| (std::cmp::Reverse(reloc.demand(u).iter().sum::<u64>()), u));
    let mut victims = Vec::new();
    for &u in &movable {
        if placer.fits(n, d) {
            break;
        }
        placer.release(n, reloc.demand(u));
        reloc.lift(u, n);
        victims.push(u);
    }
    // Keep only the victims that were needed: give back the smallest that still leave room.
    for i in (0..victims.len()).rev() {
        let u = victims[i];
        placer.take(n, reloc.demand(u));
        let mut with_v = placer.load(n).to_vec();
        with_v.iter_mut().zip(d).for_each(|(l, x)| *l += x);
        if fits(&with_v, &vec![0; d.len()], placer.capacity(n)) {
            reloc.put(u, n);
            victims.remove(i);
        } else {
            placer.release(n, reloc.demand(u));
        }
    }
    let undo = |placer: &mut Placer, reloc: &mut R, victims: &[R::Vm]| {
        placer.rollback(mark);
        for &u in victims {
            reloc.put(u, n);
        }
    };
    if !placer.fits(n, d) || !reloc.may_go(v, n) {
        undo(placer, reloc, &victims);
        return None;
    }
    placer.take(n, d);
    reloc.put(v, n);
    let mut placed = Vec::new();
    for &u in &victims {
        let du = reloc.demand(u).to_vec();
        match placer.best(&du, |x| x != n && reloc.may_go(u, x)) {
            Some(x) => {
                placer.take(x, &du);
                reloc.put(u, x);
                placed.push((u, x));
            }
            None => {
                reloc.lift(v, n);
                for &(p, x) in &placed {
                    reloc.lift(p, x);
                }
                undo(placer, reloc, &victims);
                return None;
            }
        }
    }
    Some(placed)
}
