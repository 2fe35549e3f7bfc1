//! Generated planner instances at any scale, shaped like BtrPlace's TDSC benchmark: nodes in
//! zones, VMs of a few sizes, applications whose VMs are spread over distinct nodes of one zone
//! (continuous `spread` and `among`), and one of two events to repair:
//! - `li` (load increase): 10% of the VMs need more CPU (`preserve`), overloading some nodes;
//! - `nr` (new requests): 5% more VMs must boot, and 2% of the nodes must go offline.
//!
//! Deterministic: the same parameters give the same instance.

use vjob_core::model::{fits, Model, NodeIdx, VmIdx, VmState, NO_NODE};
use vjob_core::plan::{ActionCosts, Constraint, Instance};

/// Which event the instance asks to repair.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scenario {
    LoadIncrease,
    NewRequests,
}

/// What to generate.
#[derive(Debug, Clone, PartialEq)]
pub struct Params {
    pub nodes: usize,
    pub vms: usize,
    pub scenario: Scenario,
    /// Percentage of VMs in applications under side constraints (spread + among).
    pub constrained_pct: u32,
    pub seed: u64,
}

/// A small, fast, deterministic generator (xorshift64*): the generators of instances and the
/// simulator's scenarios draw from it, so that a seed gives the same run everywhere.
pub struct Rng(u64);

impl Rng {
    /// A generator for `seed` (any value, 0 included).
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Exponentially distributed with this mean (the gaps of a Poisson process).
    pub fn exponential(&mut self, mean: f64) -> f64 {
        -mean * (1.0 - self.unit()).ln()
    }

    /// Normally distributed (Box-Muller).
    pub fn normal(&mut self, mean: f64, std: f64) -> f64 {
        let u = 1.0 - self.unit();
        let v = self.unit();
        mean + std * (-2.0 * u.ln()).sqrt() * (std::f64::consts::TAU * v).cos()
    }
}

const ZONES: usize = 4;
const NODE_CPU: u64 = 200;
const NODE_MEM: u64 = 2400;

/// Generates an instance.
pub fn generate(p: &Params) -> Instance {
    let mut rng = Rng::new(p.seed);
    let mut m = Model::new(vec!["memory".into(), "uCpu".into()]);
    for n in 0..p.nodes {
        m.add_node(n.to_string(), true, &[NODE_MEM, NODE_CPU]);
    }
    let zone_of = |n: usize| n * ZONES / p.nodes.max(1);
    let zone_nodes: Vec<Vec<NodeIdx>> = (0..ZONES)
        .map(|z| {
            (0..p.nodes)
                .filter(|&n| zone_of(n) == z)
                .map(|n| n as NodeIdx)
                .collect()
        })
        .collect();
    let zones: vjob_core::plan::NodeGroups = std::sync::Arc::new(zone_nodes.clone());
    let mut load = vec![0u64; p.nodes * 2];
    let cap = [NODE_MEM, NODE_CPU];
    let place =
        |rng: &mut Rng, d: [u64; 2], candidates: &[NodeIdx], avoid: &[NodeIdx], load: &mut Vec<u64>| -> NodeIdx {
            let ok = |n: NodeIdx, load: &Vec<u64>| {
                !avoid.contains(&n) && fits(&load[n as usize * 2..n as usize * 2 + 2], &d, &cap)
            };
            let mut chosen = NO_NODE;
            for _ in 0..16 {
                let n = candidates[rng.below(candidates.len() as u64) as usize];
                if ok(n, load) {
                    chosen = n;
                    break;
                }
            }
            if chosen == NO_NODE {
                chosen = candidates
                    .iter()
                    .copied()
                    .find(|&n| ok(n, load))
                    .expect("the generated cluster has room");
            }
            load[chosen as usize * 2] += d[0];
            load[chosen as usize * 2 + 1] += d[1];
            chosen
        };
    let size = |rng: &mut Rng| [100 * (1 + rng.below(3)), 5 + rng.below(26)];
    let all: Vec<NodeIdx> = (0..p.nodes as NodeIdx).collect();
    let mut constraints = Vec::new();
    let constrained = p.vms * p.constrained_pct as usize / 100;
    let mut v = 0usize;
    // Applications: 3 to 8 VMs on distinct nodes of one zone.
    while v < constrained {
        let k = (3 + rng.below(6) as usize).min(p.vms - v);
        let z = rng.below(ZONES as u64) as usize;
        let mut hosts = Vec::new();
        let mut vms = Vec::new();
        for _ in 0..k {
            let d = size(&mut rng);
            let h = place(&mut rng, d, &zone_nodes[z], &hosts, &mut load);
            hosts.push(h);
            vms.push(m.add_vm(v.to_string(), VmState::Running, h, &d));
            v += 1;
        }
        constraints.push(Constraint::Spread {
            vms: vms.clone(),
            continuous: true,
        });
        constraints.push(Constraint::Among {
            vms,
            parts: zones.clone(),
            continuous: true,
        });
    }
    while v < p.vms {
        let d = size(&mut rng);
        let h = place(&mut rng, d, &all, &[], &mut load);
        m.add_vm(v.to_string(), VmState::Running, h, &d);
        v += 1;
    }
    match p.scenario {
        Scenario::LoadIncrease => {
            for vm in 0..p.vms as VmIdx {
                if rng.below(10) == 0 {
                    let amount = m.demand(vm)[1] + 20 + rng.below(21);
                    constraints.push(Constraint::Preserve { vm, rc: 1, amount });
                }
            }
        }
        Scenario::NewRequests => {
            for _ in 0..p.vms / 20 {
                let d = size(&mut rng);
                let vm = m.add_vm(m.vms().to_string(), VmState::Ready, NO_NODE, &d);
                constraints.push(Constraint::Running { vm });
            }
            for _ in 0..p.nodes / 50 {
                constraints.push(Constraint::Offline {
                    node: rng.below(p.nodes as u64) as NodeIdx,
                });
            }
            constraints.sort_by_key(|c| matches!(c, Constraint::Offline { .. }));
            constraints.dedup();
        }
    }
    let mut costs = ActionCosts::uniform(&m, 1);
    for vm in 0..m.vms() {
        let mem = m.demand(vm as VmIdx)[0];
        costs.migrate[vm] = mem / 50;
        costs.boot[vm] = 4 + rng.below(6);
        costs.shutdown[vm] = costs.boot[vm] + 1;
    }
    let mut inst = Instance::new(m, constraints);
    inst.costs = costs;
    inst
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_instances_are_valid_at_the_start_and_solvable() {
        for scenario in [Scenario::LoadIncrease, Scenario::NewRequests] {
            let inst = generate(&Params {
                nodes: 200,
                vms: 1200,
                scenario,
                constrained_pct: 50,
                seed: 7,
            });
            assert_eq!(inst.model.nodes(), 200);
            let load = inst.model.load();
            assert!((0..200).all(|n| load[n * 2] <= NODE_MEM && load[n * 2 + 1] <= NODE_CPU));
            let plan = vjob_core::plan::solve(&inst).unwrap();
            assert!(vjob_core::check::check(&inst, &plan).is_empty());
            assert!(!plan.actions.is_empty());
        }
        let a = generate(&Params {
            nodes: 50,
            vms: 300,
            scenario: Scenario::LoadIncrease,
            constrained_pct: 0,
            seed: 1,
        });
        let b = generate(&Params {
            nodes: 50,
            vms: 300,
            scenario: Scenario::LoadIncrease,
            constrained_pct: 0,
            seed: 1,
        });
        assert_eq!(a, b, "deterministic");
    }
}
