//! Placement constraints stated in btrpsl scripts, turned into the planner's constraints over a
//! model: each element named by its full name (`app.VM1`, node `n1`) becomes the model's index.
//!
//! Scripts speak of the datacenter (nodes, racks) and of vjobs (their VMs); the planner sees only
//! indices. This is the one place where one becomes the other, for `vplan solve --script`, the
//! daemon and the simulator alike.

use std::collections::HashMap;

use vjob_btrpsl::constraints::{Built, Field};

use crate::instance::{Constraint, NodeGroups};
use crate::model::{Model, NodeIdx, VmIdx};

/// Why a script's constraint cannot be put on a model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}: {message}")]
pub struct PlacementError {
    pub file: String,
    pub line: u32,
    pub message: String,
}

/// Element names to the model's indices.
pub struct Names<'m> {
    model: &'m Model,
    vms: HashMap<&'m str, VmIdx>,
    nodes: HashMap<&'m str, NodeIdx>,
    groups: HashMap<Vec<Vec<NodeIdx>>, NodeGroups>,
}

impl<'m> Names<'m> {
    pub fn new(model: &'m Model) -> Names<'m> {
        Names {
            model,
            vms: (0..model.vms() as VmIdx).map(|v| (model.vm_name(v), v)).collect(),
            nodes: (0..model.nodes() as NodeIdx).map(|n| (model.node_name(n), n)).collect(),
            groups: HashMap::new(),
        }
    }

    fn vm(&self, name: &str) -> Result<VmIdx, String> {
        self.vms
            .get(name)
            .copied()
            .ok_or_else(|| format!("VM `{name}` is not in the instance"))
    }

    fn node(&self, name: &str) -> Result<NodeIdx, String> {
        // Instances may name nodes with or without btrpsl's `@`.
        self.nodes
            .get(name)
            .or_else(|| self.nodes.get(format!("@{name}").as_str()))
            .copied()
            .ok_or_else(|| format!("node `@{name}` is not in the instance"))
    }

    fn rc(&self, name: &str) -> Result<usize, String> {
        self.model.resource(name).ok_or_else(|| {
            format!(
                "no resource `{name}` (the instance has {})",
                self.model.resources().join(", ")
            )
        })
    }

    fn groups(&mut self, parts: &[Vec<String>]) -> Result<NodeGroups, String> {
        let g = parts
            .iter()
            .map(|p| p.iter().map(|n| self.node(n)).collect::<Result<Vec<_>, _>>())
            .collect::<Result<Vec<_>, _>>()?;
        Ok(self
            .groups
            .entry(g)
            .or_insert_with_key(|g| std::sync::Arc::new(g.clone()))
            .clone())
    }

    /// The planner's constraint for a script's constraint.
    pub fn constraint(&mut self, b: &Built) -> Result<Constraint, PlacementError> {
        self.convert(b).map_err(|message| PlacementError {
            file: b.file.clone(),
            line: b.line,
            message: format!("{}: {message}", b.text),
        })
    }

    fn convert(&mut self, b: &Built) -> Result<Constraint, String> {
        let field = |k: &str| b.fields.iter().find(|(n, _)| *n == k).map(|(_, f)| f);
        let vm = || match field("vm") {
            Some(Field::Vm(v)) => self.vm(v),
            _ => Err("no `vm`".to_string()),
        };
        let vms = || match field("vms") {
            Some(Field::Vms(v)) => v.iter().map(|x| self.vm(x)).collect::<Result<Vec<_>, _>>(),
            _ => match field("vm") {
                Some(Field::Vm(v)) => Ok(vec![self.vm(v)?]),
                _ => Err("no `vms`".to_string()),
            },
        };
        let node = || match field("node") {
            Some(Field::Node(n)) => self.node(n),
            _ => Err("no `node`".to_string()),
        };
        let nodes = || match field("nodes") {
            Some(Field::Nodes(n)) => n.iter().map(|x| self.node(x)).collect::<Result<Vec<_>, _>>(),
            _ => Ok(vec![node()?]),
        };
        let rc = || match field("rc") {
            Some(Field::Rc(r)) => self.rc(r),
            _ => Err("no `rc`".to_string()),
        };
        let amount = || match field("amount") {
            Some(Field::Amount(a)) => Ok(*a),
            _ => Err("no `amount`".to_string()),
        };
        let vm_parts = |k: &str| match field(k) {
            Some(Field::VmParts(p)) => p
                .iter()
                .map(|g| g.iter().map(|x| self.vm(x)).collect::<Result<Vec<_>, _>>())
                .collect::<Result<Vec<_>, _>>(),
            _ => Err(format!("no `{k}`")),
        };
        let node_parts = |k: &str| match field(k) {
            Some(Field::NodeParts(p)) => Ok(p.clone()),
            _ => Err(format!("no `{k}`")),
        };
        let continuous = b.continuous.unwrap_or(false);
        Ok(match b.id {
            "among" => {
                let (vms, parts) = (vms()?, node_parts("parts")?);
                Constraint::Among {
                    vms,
                    parts: self.groups(&parts)?,
                    continuous,
                }
            }
            "ban" => Constraint::Ban {
                vms: vms()?,
                nodes: nodes()?,
            },
            "fence" => Constraint::Fence {
                vms: vms()?,
                nodes: nodes()?,
            },
            "gather" => Constraint::Gather {
                vms: vms()?,
                continuous,
            },
            "lonely" => Constraint::Lonely {
                vms: vms()?,
                continuous,
            },
            "spread" => Constraint::Spread {
                vms: vms()?,
                continuous,
            },
            "seq" => Constraint::Seq { vms: vms()? },
            "split" => Constraint::Split {
                parts: vm_parts("parts")?,
                continuous,
            },
            "splitAmong" => {
                let (vparts, nparts) = (vm_parts("vParts")?, node_parts("pParts")?);
                Constraint::SplitAmong {
                    vparts,
                    nparts: self.groups(&nparts)?,
                    continuous,
                }
            }
            "quarantine" => Constraint::Quarantine { nodes: nodes()? },
            "online" => Constraint::Online { node: node()? },
            "offline" => Constraint::Offline { node: node()? },
            "root" => Constraint::Root { vm: vm()? },
            "running" => Constraint::Running { vm: vm()? },
            "ready" => Constraint::Ready { vm: vm()? },
            "sleeping" => Constraint::Sleeping { vm: vm()? },
            "killed" => Constraint::Killed { vm: vm()? },
            "preserve" => Constraint::Preserve {
                vm: vm()?,
                rc: rc()?,
                amount: amount()?,
            },
            "overbook" => Constraint::Overbook {
                nodes: nodes()?,
                rc: rc()?,
                ratio: match field("ratio") {
                    Some(Field::Ratio(r)) => *r,
                    _ => return Err("no `ratio`".into()),
                },
                continuous,
            },
            "resourceCapacity" => Constraint::ResourceCapacity {
                nodes: nodes()?,
                rc: rc()?,
                amount: amount()?,
                continuous,
            },
            "runningCapacity" => Constraint::RunningCapacity {
                nodes: nodes()?,
                amount: amount()?,
                continuous,
            },
            "maxOnline" => Constraint::MaxOnline {
                nodes: nodes()?,
                amount: amount()?,
                continuous,
            },
            other => return Err(format!("the planner has no constraint `{other}`")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{VmState, NO_NODE};

    #[test]
    fn a_scripts_constraints_name_the_models_elements() {
        let mut m = Model::new(vec!["cpu".into()]);
        for n in ["n1", "n2", "n3"] {
            m.add_node(n, true, &[4]);
        }
        for v in ["app.VM1", "app.VM2"] {
            m.add_vm(v, VmState::Ready, NO_NODE, &[1]);
        }
        let mut lib = vjob_btrpsl::Library::new(Vec::new(), Default::default());
        let s = lib
            .load_text(
                "app.btrp",
                "namespace app; VM[1..2] : t;\nspread($me);\nban(VM1, @n3);\namong($me, {@n[1,2], {@n3}});\n>>resourceCapacity(@n[1..3], \"cpu\", 5);",
            )
            .unwrap();
        let mut names = Names::new(&m);
        let c: Vec<Constraint> = s.constraints.iter().map(|b| names.constraint(b).unwrap()).collect();
        assert_eq!(
            c[0],
            Constraint::Spread {
                vms: vec![0, 1],
                continuous: true
            }
        );
        assert_eq!(
            c[1],
            Constraint::Ban {
                vms: vec![0],
                nodes: vec![2]
            }
        );
        assert!(matches!(&c[2], Constraint::Among { parts, .. } if **parts == vec![vec![0, 1], vec![2]]));
        assert!(matches!(
            &c[3],
            Constraint::ResourceCapacity {
                amount: 5,
                continuous: false,
                ..
            }
        ));
        let s = lib.load_text("b.btrp", "namespace b; VM1 : t;\nroot(VM1);").unwrap();
        let e = names.constraint(&s.constraints[0]).unwrap_err();
        assert_eq!(e.to_string(), "b.btrp:2: root(VM1);: VM `b.VM1` is not in the instance");
    }
}
