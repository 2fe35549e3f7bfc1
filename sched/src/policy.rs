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
//! Running vjobs never move here: defragmentation is the planner's business.

use std::collections::HashMap;

use crate::model::NodeIdx;
use crate::plan::place::Placer;

/// Where a candidate stands now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Standing {
    Waiting,
    Suspended,
    Running,
}

/// One VM of a candidate: its demand and, for a running VM, its host (`None`: it must be placed,
/// e.g. its node is going offline, or it is the sleeping part of a half-switched vjob).
#[derive(Debug, Clone, PartialEq)]
pub struct CandidateVm {
    pub demand: Vec<u64>,
    pub host: Option<NodeIdx>,
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
    pub vms: Vec<CandidateVm>,
}

/// Limits on running vjobs.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Limits {
    /// Per queue: most running vjobs, and most running vjobs per user.
    pub queues: HashMap<String, (Option<u32>, Option<u32>)>,
}

/// What should change.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Decision {
    /// Vjobs to start or resume (or whose misplaced VMs to re-place), in order.
    pub run: Vec<u64>,
    /// Running vjobs to suspend, with the vjob they make room for (`None`: no room left for
    /// their misplaced VMs).
    pub suspend: Vec<(u64, Option<u64>)>,
    /// Why each waiting candidate waits.
    pub waiting: Vec<(u64, String)>,
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
        let missing: Vec<&[u64]> = c
            .vms
            .iter()
            .filter(|v| v.host.is_none())
            .map(|v| v.demand.as_slice())
            .collect();
        if c.standing == Standing::Running && missing.is_empty() {
            continue;
        }
        if c.standing == Standing::Running && suspended[i] {
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
        // Preemption: suspend running vjobs behind this one, lowest first.
        let mark = placer.mark();
        let mut victims: Vec<usize> = Vec::new();
        let mut fits = false;
        for &j in order[pos + 1..].iter().rev() {
            let v = &cands[j];
            if v.standing != Standing::Running || v.protected || suspended[j] {
                continue;
            }
            for vm in &v.vms {
                if let Some(h) = vm.host {
                    placer.release(h, &vm.demand);
                }
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
        }
        // Keep running every victim that is not needed, highest priority first.
        let mut needed = Vec::new();
        for &j in victims.iter().rev() {
            let v = &cands[j];
            let back = placer.mark();
            let mut ok = true;
            for vm in &v.vms {
                if let Some(h) = vm.host {
                    if placer.fits(h, &vm.demand) {
                        placer.take(h, &vm.demand);
                    } else {
                        ok = false;
                        break;
                    }
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
        for &j in &needed {
            suspended[j] = true;
            let v = &cands[j];
            decision.suspend.push((v.id, Some(c.id)));
            *running_q.entry(&v.queue).or_default() -= 1;
            *running_qu.entry((&v.queue, &v.user)).or_default() -= 1;
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
    for vm in &c.vms {
        if let Some(h) = vm.host {
            placer.release(h, &vm.demand);
        }
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
            vms: vms
                .iter()
                .map(|&(cpu, host)| CandidateVm {
                    demand: vec![cpu, 4],
                    host,
                })
                .collect(),
        }
    }

    /// A placer whose loads hold the running candidates' VMs.
    fn placer(m: &mut Model, cands: &[Candidate]) -> Placer {
        for c in cands {
            for (k, vm) in c.vms.iter().enumerate() {
                if let Some(h) = vm.host {
                    m.add_vm(format!("{}-{k}", c.id), VmState::Running, h, &vm.demand);
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
        };
        let d = context_switch(&cands, &mut p, &limits);
        assert_eq!(d.run, vec![1]);
        assert!(d.waiting[0].1.contains("limit of 1"));
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
