//! Plan lowering: a planner's [`Plan`] turned into executor [`Step`]s with the vjob barriers,
//! and what each step changes in the records when it succeeds ([`Effect`]). Pure.
//!
//! The barriers: every VM of a vjob is paused before any of them is saved (a vjob is suspended
//! whole, at one instant of its guests' time); none is unpaused before all are booted or
//! restored (it runs whole). Short preemptions pause VMs in memory before anything of the plan
//! starts (the room they free is what the plan counts on), and unpause paused VMs where they are.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use vjob_core::model::{Model, NodeIdx, NO_NODE};
use vjob_core::plan::{ActionKind, Plan};
use vjob_hypervisor::VmSpec;

use crate::exec::{Call, Step, StepState};

/// What a step of a run changes in the records when it succeeds.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    None,
    Arrived { job: u64, vm: usize, node: String },
    Migrated { job: u64, vm: usize, node: String },
    Saved { job: u64, vm: usize },
    Paused { job: u64, vm: usize },
    Destroyed { job: u64, vm: usize },
}

/// What lowering needs to know of the plan's VMs.
pub struct PlannedVms<'a> {
    /// For each VM of the plan's model: its vjob and VM index, or `None` (load).
    pub refs: &'a [Option<(u64, usize)>],
    pub name: &'a dyn Fn(u64, usize) -> String,
    /// What a VM boots (asked for boots only).
    pub spec: &'a dyn Fn(u64, usize) -> VmSpec,
    /// Where a VM is saved.
    pub image: &'a dyn Fn(&str) -> PathBuf,
}

/// A plan, lowered: steps, their effects (one per step), and the vjobs it touches.
#[derive(Debug)]
pub struct Lowered {
    pub steps: Vec<Step>,
    pub effects: Vec<Effect>,
    pub touched: BTreeSet<u64>,
}

impl Lowered {
    fn push(&mut self, call: Call, deps: Vec<usize>, effect: Effect) -> usize {
        self.steps.push(Step {
            op: call,
            deps,
            state: StepState::Waiting,
        });
        self.effects.push(effect);
        self.steps.len() - 1
    }
}

/// Lowers `plan` (over `model`) into steps. `pauses` and `unpauses` are (vjob, VM index, node)
/// of the VMs to pause in memory, and of the paused VMs to unpause where they are.
pub fn lower(
    model: &Model,
    plan: &Plan,
    vms: &PlannedVms<'_>,
    pauses: &[(u64, usize, String)],
    unpauses: &[(u64, usize, String)],
) -> Lowered {
    let mut out = Lowered {
        steps: Vec::new(),
        effects: Vec::new(),
        touched: BTreeSet::new(),
    };
    let mut step_of: Vec<Option<usize>> = vec![None; plan.actions.len()];
    let mut saves: BTreeMap<u64, Vec<usize>> = BTreeMap::new();
    let mut arrivals: BTreeMap<u64, Vec<(usize, String, String)>> = BTreeMap::new();
    for (ai, a) in plan.actions.iter().enumerate() {
        let Some((job, idx)) = a.kind.vm().and_then(|v| vms.refs[v as usize]) else {
            continue;
        };
        let name = (vms.name)(job, idx);
        let Some((call, effect)) = action_call(model, a.kind, job, idx, &name, vms) else {
            continue;
        };
        match &call {
            Call::Save { .. } => saves.entry(job).or_default().push(out.steps.len()),
            Call::Boot { node, .. } | Call::Restore { node, .. } => {
                arrivals
                    .entry(job)
                    .or_default()
                    .push((out.steps.len(), node.clone(), name.clone()))
            }
            _ => {}
        }
        step_of[ai] = Some(out.push(call, Vec::new(), effect));
        out.touched.insert(job);
    }
    for (ai, a) in plan.actions.iter().enumerate() {
        if let Some(s) = step_of[ai] {
            out.steps[s].deps = a.deps.iter().filter_map(|&d| step_of[d as usize]).collect();
        }
    }
    pause_before_saving(&mut out, &saves);
    pause_first(&mut out, pauses, vms);
    for (job, idx, node) in unpauses {
        let call = Call::Unpause {
            node: node.clone(),
            vm: (vms.name)(*job, *idx),
        };
        let effect = Effect::Arrived {
            job: *job,
            vm: *idx,
            node: node.clone(),
        };
        out.push(call, Vec::new(), effect);
        out.touched.insert(*job);
    }
    // Unpause the VMs of a vjob together, once all have arrived.
    for arrived in arrivals.values() {
        let all: Vec<usize> = arrived.iter().map(|(s, _, _)| *s).collect();
        for (_, node, vm) in arrived {
            let call = Call::Unpause {
                node: node.clone(),
                vm: vm.clone(),
            };
            out.push(call, all.clone(), Effect::None);
        }
    }
    out
}

/// The call of one plan action on VM `idx` of `job`, and its effect; `None` for actions the
/// executor has nothing to do for.
fn action_call(
    model: &Model,
    kind: ActionKind,
    job: u64,
    idx: usize,
    name: &str,
    vms: &PlannedVms<'_>,
) -> Option<(Call, Effect)> {
    let node = |n: NodeIdx| model.node_name(n).to_string();
    let vm = name.to_string();
    Some(match kind {
        ActionKind::BootVm { on, .. } => (
            Call::Boot {
                node: node(on),
                spec: Box::new((vms.spec)(job, idx)),
            },
            Effect::Arrived {
                job,
                vm: idx,
                node: node(on),
            },
        ),
        ActionKind::ResumeVm { to, .. } => (
            Call::Restore {
                node: node(to),
                image: (vms.image)(name),
                vm,
            },
            Effect::Arrived {
                job,
                vm: idx,
                node: node(to),
            },
        ),
        ActionKind::SuspendVm { from, .. } => (
            Call::Save {
                node: node(from),
                image: (vms.image)(name),
                vm,
            },
            Effect::Saved { job, vm: idx },
        ),
        ActionKind::MigrateVm { from, to, .. } => (
            Call::Migrate {
                node: node(from),
                vm,
                to: node(to),
            },
            Effect::Migrated {
                job,
                vm: idx,
                node: node(to),
            },
        ),
        ActionKind::KillVm { on, .. } | ActionKind::ShutdownVm { on, .. } if on != NO_NODE => {
            (Call::Destroy { node: node(on), vm }, Effect::Destroyed { job, vm: idx })
        }
        _ => return None,
    })
}

/// Pause every VM of a vjob before saving any of them.
fn pause_before_saving(out: &mut Lowered, saves: &BTreeMap<u64, Vec<usize>>) {
    for save_steps in saves.values() {
        let pauses: Vec<usize> = save_steps
            .iter()
            .map(|&s| {
                let Call::Save { node, vm, .. } = &out.steps[s].op else {
                    unreachable!("only saves are listed")
                };
                let call = Call::Pause {
                    node: node.clone(),
                    vm: vm.clone(),
                };
                out.push(call, Vec::new(), Effect::None)
            })
            .collect();
        for &s in save_steps {
            out.steps[s].deps.extend(pauses.iter().copied());
        }
    }
}

/// Paused in memory to free processors: before anything of the plan starts.
fn pause_first(out: &mut Lowered, pauses: &[(u64, usize, String)], vms: &PlannedVms<'_>) {
    let mut pause_steps = Vec::new();
    for (job, idx, node) in pauses {
        let call = Call::Pause {
            node: node.clone(),
            vm: (vms.name)(*job, *idx),
        };
        pause_steps.push(out.push(call, Vec::new(), Effect::Paused { job: *job, vm: *idx }));
        out.touched.insert(*job);
    }
    if !pause_steps.is_empty() {
        for step in out.steps.iter_mut().filter(|s| !matches!(s.op, Call::Pause { .. })) {
            step.deps.extend(pause_steps.iter().copied());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use vjob_core::plan::Action;
    use vjob_core::resources::cpu_memory;
    use vjob_hypervisor::GuestSpec;

    /// Two nodes; vjob 1 has VMs 0 and 1, vjob 2 has VMs 2 and 3.
    fn model() -> Model {
        let mut m = Model::cpu_and_memory();
        m.add_node("a", true, &cpu_memory(4, 4 << 30));
        m.add_node("b", true, &cpu_memory(4, 4 << 30));
        for i in 0..4 {
            m.add_vm(
                format!("v{i}"),
                vjob_core::model::VmState::Running,
                i % 2,
                &cpu_memory(1, 1 << 30),
            );
        }
        m
    }

    const REFS: [Option<(u64, usize)>; 4] = [Some((1, 0)), Some((1, 1)), Some((2, 0)), Some((2, 1))];

    fn lowered(
        actions: Vec<ActionKind>,
        pauses: &[(u64, usize, String)],
        unpauses: &[(u64, usize, String)],
    ) -> Lowered {
        let m = model();
        let plan = Plan {
            target: m.clone(),
            actions: actions
                .into_iter()
                .map(|kind| Action {
                    kind,
                    start: 0,
                    end: 1,
                    deps: Vec::new(),
                })
                .collect(),
        };
        let vms = PlannedVms {
            refs: &REFS,
            name: &|job, i| format!("j{job}-{i}"),
            spec: &|job, i| VmSpec {
                name: format!("j{job}-{i}"),
                vcpus: 1,
                memory: 1 << 30,
                guest: GuestSpec::default(),
            },
            image: &|vm| PathBuf::from(format!("/img/{vm}")),
        };
        lower(&m, &plan, &vms, pauses, unpauses)
    }

    fn index_of(l: &Lowered, f: impl Fn(&Call) -> bool) -> Vec<usize> {
        (0..l.steps.len()).filter(|&i| f(&l.steps[i].op)).collect()
    }

    #[test]
    fn every_vm_of_a_vjob_pauses_before_any_is_saved() {
        let l = lowered(
            vec![
                ActionKind::SuspendVm { vm: 0, from: 0 },
                ActionKind::SuspendVm { vm: 1, from: 1 },
            ],
            &[],
            &[],
        );
        let pauses = index_of(&l, |c| matches!(c, Call::Pause { .. }));
        let saves = index_of(&l, |c| matches!(c, Call::Save { .. }));
        assert_eq!((pauses.len(), saves.len()), (2, 2));
        for s in saves {
            for p in &pauses {
                assert!(l.steps[s].deps.contains(p), "save {s} waits for pause {p}");
            }
            assert!(matches!(l.effects[s], Effect::Saved { job: 1, .. }));
        }
        assert!(matches!(&l.steps[0].op, Call::Save { image, .. } if image == &PathBuf::from("/img/j1-0")));
        assert_eq!(l.touched, BTreeSet::from([1]));
    }

    #[test]
    fn no_vm_of_a_vjob_is_unpaused_before_all_have_arrived() {
        let l = lowered(
            vec![
                ActionKind::BootVm { vm: 2, on: 0 },
                ActionKind::ResumeVm { vm: 3, from: 1, to: 1 },
            ],
            &[],
            &[],
        );
        let arrivals = index_of(&l, |c| matches!(c, Call::Boot { .. } | Call::Restore { .. }));
        let unpauses = index_of(&l, |c| matches!(c, Call::Unpause { .. }));
        assert_eq!((arrivals.len(), unpauses.len()), (2, 2));
        for u in unpauses {
            assert_eq!(l.steps[u].deps, arrivals, "unpause {u} waits for every arrival");
            assert_eq!(l.effects[u], Effect::None);
        }
        assert_eq!(
            l.effects[arrivals[0]],
            Effect::Arrived {
                job: 2,
                vm: 0,
                node: "a".into()
            }
        );
    }

    #[test]
    fn short_preemptions_pause_before_anything_else_starts_and_unpauses_stand_alone() {
        let l = lowered(
            vec![
                ActionKind::BootVm { vm: 2, on: 0 },
                ActionKind::MigrateVm { vm: 3, from: 1, to: 0 },
            ],
            &[(1, 0, "a".into())],
            &[(1, 1, "b".into())],
        );
        let pause = index_of(&l, |c| matches!(c, Call::Pause { vm, .. } if vm == "j1-0"));
        assert_eq!(pause.len(), 1);
        assert_eq!(l.effects[pause[0]], Effect::Paused { job: 1, vm: 0 });
        for i in index_of(&l, |c| matches!(c, Call::Boot { .. } | Call::Migrate { .. })) {
            assert!(
                l.steps[i].deps.contains(&pause[0]),
                "step {i} ({:?}) starts after the pause",
                l.steps[i].op
            );
        }
        let unpause = index_of(&l, |c| matches!(c, Call::Unpause { vm, .. } if vm == "j1-1"));
        assert!(
            l.steps[unpause[0]].deps.is_empty(),
            "unpausing in place waits for nothing"
        );
        assert_eq!(
            l.effects[unpause[0]],
            Effect::Arrived {
                job: 1,
                vm: 1,
                node: "b".into()
            }
        );
        let migrate = index_of(&l, |c| matches!(c, Call::Migrate { .. }));
        assert!(matches!(l.effects[migrate[0]], Effect::Migrated { job: 2, vm: 1, .. }));
    }

    #[test]
    fn the_plans_dependencies_carry_over_and_load_is_left_out() {
        let m = model();
        let plan = Plan {
            target: m.clone(),
            actions: vec![
                Action {
                    kind: ActionKind::MigrateVm { vm: 0, from: 0, to: 1 },
                    start: 0,
                    end: 1,
                    deps: vec![],
                },
                Action {
                    kind: ActionKind::MigrateVm { vm: 1, from: 1, to: 0 },
                    start: 1,
                    end: 2,
                    deps: vec![0],
                },
            ],
        };
        let refs = [None, Some((1, 1)), None, None];
        let vms = PlannedVms {
            refs: &refs,
            name: &|job, i| format!("j{job}-{i}"),
            spec: &|_, _| unreachable!("no boot"),
            image: &|vm| PathBuf::from(vm),
        };
        let l = lower(&m, &plan, &vms, &[], &[]);
        assert_eq!(l.steps.len(), 1, "the load's migration is not carried out");
        assert!(l.steps[0].deps.is_empty(), "its dependency was on no step");
    }
}
