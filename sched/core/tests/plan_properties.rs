//! Property tests of the planner: on many random small instances (overloaded nodes, cycles,
//! continuous constraints, impossible requests), every plan it returns, replayed by the
//! independent checker, keeps every capacity and constraint at every instant; and when no viable
//! configuration exists at all (found by brute force), it returns an error instead of a plan.

use proptest::prelude::*;
use proptest::strategy::ValueTree;
use vjob_core::check::{check, check_configuration};
use vjob_core::model::{Model, NodeIdx, VmIdx, VmState, NO_NODE};
use vjob_core::plan::{solve, ActionCosts, Constraint, Instance, Options, PlanError};

#[derive(Debug, Clone)]
struct Spec {
    caps: Vec<(u64, u64)>,
    vms: Vec<(u64, u64, u8, u8)>,
    constraints: Vec<(u8, Vec<u8>, Vec<u8>, u8)>,
    costs: Vec<u64>,
    suspend_ok: bool,
}

fn spec() -> impl Strategy<Value = Spec> {
    (2usize..=4, 1usize..=6).prop_flat_map(|(n, v)| {
        (
            prop::collection::vec((2u64..=6, 4u64..=12), n),
            prop::collection::vec((1u64..=4, 1u64..=6, 0u8..4, 0u8..8), v),
            prop::collection::vec(
                (
                    0u8..16,
                    prop::collection::vec(0u8..8, 1..4),
                    prop::collection::vec(0u8..8, 1..3),
                    0u8..8,
                ),
                0..4,
            ),
            prop::collection::vec(1u64..=5, v),
            any::<bool>(),
        )
            .prop_map(|(caps, vms, constraints, costs, suspend_ok)| Spec {
                caps,
                vms,
                constraints,
                costs,
                suspend_ok,
            })
    })
}

/// Builds the instance a spec describes. VM states: 0-1 running, 2 ready, 3 sleeping.
fn build(s: &Spec) -> Instance {
    let mut m = Model::new(vec!["cpu".into(), "mem".into()]);
    for (i, &(c, mm)) in s.caps.iter().enumerate() {
        m.add_node(format!("n{i}"), true, &[c, mm]);
    }
    let nn = s.caps.len() as u8;
    for (i, &(c, mm, st, h)) in s.vms.iter().enumerate() {
        let (state, host) = match st {
            0 | 1 => (VmState::Running, (h % nn) as NodeIdx),
            2 => (VmState::Ready, NO_NODE),
            _ => (VmState::Sleeping, (h % nn) as NodeIdx),
        };
        m.add_vm(format!("v{i}"), state, host, &[c, mm]);
    }
    let nv = s.vms.len() as u8;
    let vm = |x: u8| (x % nv) as VmIdx;
    let node = |x: u8| (x % nn) as NodeIdx;
    let vms = |xs: &[u8]| {
        let mut v: Vec<VmIdx> = xs.iter().map(|&x| vm(x)).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let nodes = |xs: &[u8]| {
        let mut v: Vec<NodeIdx> = xs.iter().map(|&x| node(x)).collect();
        v.sort_unstable();
        v.dedup();
        v
    };
    let mut constraints = Vec::new();
    for (kind, a, b, x) in &s.constraints {
        let cont = x % 2 == 0;
        let c = match kind {
            0 => Constraint::Running { vm: vm(a[0]) },
            1 => Constraint::Sleeping { vm: vm(a[0]) },
            2 => Constraint::Ban {
                vms: vms(a),
                nodes: nodes(b),
            },
            3 => Constraint::Fence {
                vms: vms(a),
                nodes: nodes(b),
            },
            4 => Constraint::Spread {
                vms: vms(a),
                continuous: cont,
            },
            5 => Constraint::Gather {
                vms: vms(a),
                continuous: cont,
            },
            6 => Constraint::Among {
                vms: vms(a),
                parts: vec![nodes(b), (0..nn as NodeIdx).filter(|n| !nodes(b).contains(n)).collect()].into(),
                continuous: cont,
            },
            7 => Constraint::Offline { node: node(b[0]) },
            8 => Constraint::Preserve {
                vm: vm(a[0]),
                rc: 0,
                amount: 1 + *x as u64 % 4,
            },
            9 => Constraint::Root { vm: vm(a[0]) },
            10 => Constraint::Lonely {
                vms: vms(a),
                continuous: cont,
            },
            11 => {
                let p1 = vms(a);
                let p2: Vec<VmIdx> = vms(b).into_iter().filter(|v| !p1.contains(v)).collect();
                Constraint::Split {
                    parts: vec![p1, p2],
                    continuous: cont,
                }
            }
            12 => Constraint::ResourceCapacity {
                nodes: nodes(b),
                rc: 0,
                amount: 2 + *x as u64,
                continuous: cont,
            },
            13 => Constraint::RunningCapacity {
                nodes: nodes(b),
                amount: 1 + *x as u64 % 3,
                continuous: cont,
            },
            14 => Constraint::Killed { vm: vm(a[0]) },
            _ => Constraint::Seq { vms: vms(a) },
        };
        constraints.push(c);
    }
    let mut inst = Instance::new(m, constraints);
    inst.costs = ActionCosts::uniform(&inst.model, 1);
    inst.costs.migrate = s.costs.clone();
    inst.costs.boot = s.costs.iter().map(|c| c + 1).collect();
    inst.options = Options {
        suspend_to_break_cycles: s.suspend_ok,
        ..Default::default()
    };
    inst
}

/// Whether any configuration satisfies the final constraints (states from the constraints or
/// kept, every running VM on some online node).
fn some_viable_configuration(inst: &Instance) -> bool {
    let m = &inst.model;
    let mut want: Vec<VmState> = (0..m.vms() as VmIdx).map(|v| m.state(v)).collect();
    for c in &inst.constraints {
        match *c {
            Constraint::Running { vm } => want[vm as usize] = VmState::Running,
            Constraint::Sleeping { vm } => want[vm as usize] = VmState::Sleeping,
            Constraint::Killed { vm } => want[vm as usize] = VmState::Killed,
            _ => {}
        }
    }
    let mut t = m.clone();
    for c in &inst.constraints {
        match *c {
            Constraint::Offline { node } => t.set_online(node, false),
            Constraint::Preserve { vm, rc, amount } if t.demand(vm)[rc] < amount => t.set_demand(vm, rc, amount),
            _ => {}
        }
    }
    let running: Vec<VmIdx> = (0..m.vms() as VmIdx)
        .filter(|&v| want[v as usize] == VmState::Running)
        .collect();
    for v in 0..m.vms() as VmIdx {
        let s = want[v as usize];
        let host = if s == VmState::Sleeping { m.host(v) } else { NO_NODE };
        t.set_vm(v, s, host);
    }
    let n = m.nodes();
    let total = n.pow(running.len() as u32);
    (0..total).any(|mut code| {
        for &v in &running {
            t.set_vm(v, VmState::Running, (code % n) as NodeIdx);
            code /= n;
        }
        check_configuration(inst, &t).is_empty()
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 3000, .. ProptestConfig::default() })]

    #[test]
    fn every_plan_replays_cleanly(s in spec()) {
        let inst = build(&s);
        match solve(&inst) {
            Ok(plan) => {
                let errors = check(&inst, &plan);
                prop_assert!(errors.is_empty(), "{:?}\nconstraints {:?}\nplan {:?}", errors, inst.constraints, plan.actions);
            }
            Err(e) => {
                // An error must explain itself.
                let msg = e.to_string();
                prop_assert!(!msg.is_empty());
                if let PlanError::Conflict { constraints, .. } = &e {
                    prop_assert!(!constraints.is_empty());
                }
            }
        }
    }

    #[test]
    fn impossible_instances_are_refused(s in spec()) {
        let inst = build(&s);
        if !some_viable_configuration(&inst) {
            prop_assert!(solve(&inst).is_err(), "a plan for an instance without any viable configuration");
        }
    }

    #[test]
    fn nothing_moves_when_nothing_must(s in spec()) {
        let mut inst = build(&s);
        inst.constraints.clear();
        let load = inst.model.load();
        let r = inst.model.nres();
        let overloaded = (0..inst.model.nodes()).any(|n| (0..r).any(|k| load[n * r + k] > inst.model.capacity(n as NodeIdx)[k]));
        if !overloaded {
            let plan = solve(&inst).unwrap();
            prop_assert!(plan.actions.is_empty(), "{:?}", plan.actions);
        }
    }
}

#[test]
fn the_planner_solves_most_satisfiable_instances() {
    // Heuristics may miss a solution; measure how often, on a fixed sample.
    let mut runner = proptest::test_runner::TestRunner::deterministic();
    let (mut viable, mut solved) = (0, 0);
    for _ in 0..2000 {
        let s = spec().new_tree(&mut runner).unwrap().current();
        let inst = build(&s);
        if some_viable_configuration(&inst) {
            viable += 1;
            if solve(&inst).is_ok() {
                solved += 1;
            }
        }
    }
    let rate = solved as f64 / viable as f64;
    eprintln!(
        "solved {solved} of {viable} instances that have a viable configuration ({:.1}%)",
        rate * 100.0
    );
    assert!(rate > 0.9, "only {:.1}% solved", rate * 100.0);
}
