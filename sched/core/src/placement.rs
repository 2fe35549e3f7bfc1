//! Placement constraints stated in btrpsl scripts, turned into the planner's constraints over a
//! model: each element named by its full name (`app.VM1`, node `n1`) becomes the model's index.
//!
//! Scripts speak of the datacenter (nodes, racks) and of vjobs (their VMs); the planner sees only
//! indices. This is the one place where one becomes the other, for `vplan solve --script`, the
//! daemon and the simulator alike.

use std::collections::HashMap;

use vjob_btrpsl::constraints::{Built, Field};

use crate::instance::{Constraint, NodeGroups};
use crate::model::{Model, NodeIdx, VmIdx, VmState, NO_NODE};
use crate::plan::place::Placer;
use crate::policy::Demands;

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
    /// Node groups already resolved, by their names: scripts reuse a few (racks, zones) in
    /// many constraints.
    named_groups: HashMap<Vec<Vec<String>>, NodeGroups>,
}

impl<'m> Names<'m> {
    pub fn new(model: &'m Model) -> Names<'m> {
        Names {
            model,
            vms: (0..model.vms() as VmIdx).map(|v| (model.vm_name(v), v)).collect(),
            nodes: (0..model.nodes() as NodeIdx).map(|n| (model.node_name(n), n)).collect(),
            groups: HashMap::new(),
            named_groups: HashMap::new(),
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
        if let Some(g) = self.named_groups.get(parts) {
            return Ok(g.clone());
        }
        let g = parts
            .iter()
            .map(|p| p.iter().map(|n| self.node(n)).collect::<Result<Vec<_>, _>>())
            .collect::<Result<Vec<_>, _>>()?;
        let g = self
            .groups
            .entry(g)
            .or_insert_with_key(|g| std::sync::Arc::new(g.clone()))
            .clone();
        self.named_groups.insert(parts.to_vec(), g.clone());
        Ok(g)
    }

    /// The planner's constraint for a script's constraint.
    pub fn constraint(&mut self, b: &Built) -> Result<Constraint, PlacementError> {
        self.convert(b).map_err(|message| PlacementError {
            file: b.file.clone(),
            line: b.line,
            message: format!("{}: {message}", b.text),
        })
    }

    fn field_vm(&self, b: &Built) -> Result<VmIdx, String> {
        match field(b, "vm") {
            Some(Field::Vm(v)) => self.vm(v),
            _ => Err("no `vm`".to_string()),
        }
    }

    fn field_vms(&self, b: &Built) -> Result<Vec<VmIdx>, String> {
        match field(b, "vms") {
            Some(Field::Vms(v)) => v.iter().map(|x| self.vm(x)).collect(),
            _ => Ok(vec![self.field_vm(b)?]),
        }
    }

    fn field_node(&self, b: &Built) -> Result<NodeIdx, String> {
        match field(b, "node") {
            Some(Field::Node(n)) => self.node(n),
            _ => Err("no `node`".to_string()),
        }
    }

    fn field_nodes(&self, b: &Built) -> Result<Vec<NodeIdx>, String> {
        match field(b, "nodes") {
            Some(Field::Nodes(n)) => n.iter().map(|x| self.node(x)).collect(),
            _ => Ok(vec![self.field_node(b)?]),
        }
    }

    fn field_rc(&self, b: &Built) -> Result<usize, String> {
        match field(b, "rc") {
            Some(Field::Rc(r)) => self.rc(r),
            _ => Err("no `rc`".to_string()),
        }
    }

    fn field_vm_parts(&self, b: &Built, k: &str) -> Result<Vec<Vec<VmIdx>>, String> {
        match field(b, k) {
            Some(Field::VmParts(p)) => p.iter().map(|g| g.iter().map(|x| self.vm(x)).collect()).collect(),
            _ => Err(format!("no `{k}`")),
        }
    }

    fn field_groups(&mut self, b: &Built, k: &str) -> Result<NodeGroups, String> {
        match field(b, k) {
            Some(Field::NodeParts(p)) => self.groups(p),
            _ => Err(format!("no `{k}`")),
        }
    }

    /// Placements and states.
    fn convert(&mut self, b: &Built) -> Result<Constraint, String> {
        let vms = || self.field_vms(b);
        let nodes = || self.field_nodes(b);
        let node = || self.field_node(b);
        let vm = || self.field_vm(b);
        let continuous = b.continuous.unwrap_or(false);
        Ok(match b.id {
            "among" => Constraint::Among {
                vms: vms()?,
                parts: self.field_groups(b, "parts")?,
                continuous,
            },
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
                parts: self.field_vm_parts(b, "parts")?,
                continuous,
            },
            "splitAmong" => Constraint::SplitAmong {
                vparts: self.field_vm_parts(b, "vParts")?,
                nparts: self.field_groups(b, "pParts")?,
                continuous,
            },
            "quarantine" => Constraint::Quarantine { nodes: nodes()? },
            "online" => Constraint::Online { node: node()? },
            "offline" => Constraint::Offline { node: node()? },
            "root" => Constraint::Root { vm: vm()? },
            "running" => Constraint::Running { vm: vm()? },
            "ready" => Constraint::Ready { vm: vm()? },
            "sleeping" => Constraint::Sleeping { vm: vm()? },
            "killed" => Constraint::Killed { vm: vm()? },
            _ => return self.convert_capacity(b),
        })
    }

    /// Resources and node counts.
    fn convert_capacity(&self, b: &Built) -> Result<Constraint, String> {
        let nodes = || self.field_nodes(b);
        let rc = || self.field_rc(b);
        let amount = || match field(b, "amount") {
            Some(Field::Amount(a)) => Ok(*a),
            _ => Err("no `amount`".to_string()),
        };
        let continuous = b.continuous.unwrap_or(false);
        Ok(match b.id {
            "preserve" => Constraint::Preserve {
                vm: self.field_vm(b)?,
                rc: rc()?,
                amount: amount()?,
            },
            "overbook" => Constraint::Overbook {
                nodes: nodes()?,
                rc: rc()?,
                ratio: match field(b, "ratio") {
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

/// A field of a built constraint.
fn field<'b>(b: &'b Built, k: &str) -> Option<&'b Field> {
    b.fields.iter().find(|(n, _)| *n == k).map(|(_, f)| f)
}

/// What a vjob's placement script asks, in the vjob's own terms: VM `i` is the vjob's i-th VM
/// (in the order the script declares them), nodes are the cluster's indices. The policy places
/// the vjob with it ([`VjobRules::place`]); the decision builder hands its constraints to the
/// planner, which keeps them at every instant of the plan.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct VjobRules {
    /// The btrpsl name of each VM (`VM1`), by vjob VM index.
    pub names: Vec<String>,
    /// The constraints, VMs and nodes as above.
    pub constraints: Vec<Constraint>,
    /// Where each constraint comes from, for messages: `spread($T1); (app.btrp:4)`.
    pub origins: Vec<String>,
}

impl VjobRules {
    /// The rules of an evaluated script whose VMs are a vjob's, over a cluster whose nodes are
    /// `nodes` (by index).
    pub fn from_script(script: &vjob_btrpsl::Evaluated, nodes: &[String]) -> Result<VjobRules, PlacementError> {
        let mut m = Model::new(vec!["cpu".into(), "memory".into()]);
        for n in nodes {
            m.add_node(n.clone(), true, &[0, 0]);
        }
        for v in &script.vms {
            m.add_vm(v.name.clone(), VmState::Ready, NO_NODE, &[0, 0]);
        }
        let mut names = Names::new(&m);
        let mut rules = VjobRules {
            names: script
                .vms
                .iter()
                .map(|v| v.name.rsplit('.').next().unwrap_or(&v.name).to_string())
                .collect(),
            ..VjobRules::default()
        };
        for b in &script.constraints {
            rules.constraints.push(names.constraint(b)?);
            rules.origins.push(format!("{} ({}:{})", b.text, b.file, b.line));
        }
        Ok(rules)
    }

    /// Whether VM `vm` may run on node `n` by the bans and fences.
    pub fn allows(&self, vm: usize, n: NodeIdx) -> bool {
        let vm = vm as VmIdx;
        self.constraints.iter().all(|c| match c {
            Constraint::Ban { vms, nodes } => !vms.contains(&vm) || !nodes.contains(&n),
            Constraint::Fence { vms, nodes } => !vms.contains(&vm) || nodes.contains(&n),
            _ => true,
        })
    }

    /// Places all the vjob's VMs (`demands`, one a VM, in order) where its rules allow, all or
    /// none: bans and fences, spreads (distinct nodes), gathers (one node), and the first
    /// `among` (the VMs within one of its groups, tried in turn). What else the script asks
    /// (lonely, split, capacities) the planner keeps.
    pub fn place(&self, placer: &mut Placer, demands: &[&[u64]]) -> Option<Vec<NodeIdx>> {
        if !placer.room_for(demands) {
            return None;
        }
        let among = self.constraints.iter().find_map(|c| match c {
            Constraint::Among { vms, parts, .. } => Some((vms.clone(), parts.clone())),
            _ => None,
        });
        let groups: Vec<Option<&[NodeIdx]>> = match &among {
            Some((_, parts)) => parts.iter().map(|p| Some(p.as_slice())).collect(),
            None => vec![None],
        };
        for group in groups {
            let mark = placer.mark();
            let mut hosts: Vec<NodeIdx> = Vec::with_capacity(demands.len());
            for (i, d) in demands.iter().enumerate() {
                let in_among = among.as_ref().is_some_and(|(vms, _)| vms.contains(&(i as VmIdx)));
                let n = placer.best(d, |n| {
                    self.allows(i, n)
                        && (!in_among || group.is_none_or(|g| g.contains(&n)))
                        && self.with_others(i, n, &hosts)
                });
                match n {
                    Some(n) => {
                        placer.take(n, d);
                        hosts.push(n);
                    }
                    None => break,
                }
            }
            if hosts.len() == demands.len() {
                return Some(hosts);
            }
            placer.rollback(mark);
        }
        None
    }

    /// Whether VM `i` on `n` agrees with where the VMs before it went: apart from those it is
    /// spread with, beside those it is gathered with.
    fn with_others(&self, i: usize, n: NodeIdx, hosts: &[NodeIdx]) -> bool {
        let i = i as VmIdx;
        self.constraints.iter().all(|c| match c {
            Constraint::Spread { vms, .. } if vms.contains(&i) => vms
                .iter()
                .all(|&j| (j as usize) >= hosts.len() || j == i || hosts[j as usize] != n),
            Constraint::Gather { vms, .. } if vms.contains(&i) => vms
                .iter()
                .all(|&j| (j as usize) >= hosts.len() || j == i || hosts[j as usize] == n),
            _ => true,
        })
    }

    /// Why the vjob's VMs (needing `demand`) find no place on `placer` as it is: the first
    /// constraint short of room, with its origin.
    pub fn why_not(&self, placer: &mut Placer, demand: &Demands) -> String {
        let room = |placer: &Placer, vm: VmIdx| -> Vec<NodeIdx> {
            (0..placer.nodes() as NodeIdx)
                .filter(|&n| placer.fits(n, demand.of(vm as usize)) && self.allows(vm as usize, n))
                .collect()
        };
        for (c, origin) in self.constraints.iter().zip(&self.origins) {
            match c {
                Constraint::Spread { vms, .. } => {
                    let mut any: Vec<NodeIdx> = vms.iter().flat_map(|&v| room(placer, v)).collect();
                    any.sort_unstable();
                    any.dedup();
                    if any.len() < vms.len() {
                        return format!(
                            "waiting: {origin} needs {} nodes with room, {} {} it",
                            vms.len(),
                            any.len(),
                            if any.len() == 1 { "has" } else { "have" }
                        );
                    }
                }
                Constraint::Ban { vms, .. } | Constraint::Fence { vms, .. } => {
                    if let Some(&v) = vms.iter().find(|&&v| room(placer, v).is_empty()) {
                        let name = self.names.get(v as usize).map(String::as_str).unwrap_or("a VM");
                        return format!("waiting: {origin} leaves no node with room for {name}");
                    }
                }
                Constraint::Among { vms, parts, .. } => {
                    let fits = parts.iter().any(|p| {
                        let mark = placer.mark();
                        let all = vms
                            .iter()
                            .all(|&v| match placer.best(demand.of(v as usize), |n| p.contains(&n)) {
                                Some(n) => {
                                    placer.take(n, demand.of(v as usize));
                                    true
                                }
                                None => false,
                            });
                        placer.rollback(mark);
                        all
                    });
                    if !fits {
                        return format!(
                            "waiting: {origin}: no group of nodes has room for its {} VMs",
                            vms.len()
                        );
                    }
                }
                _ => {}
            }
        }
        "waiting for nodes where its placement constraints hold together".to_string()
    }

    /// Why the vjob can never run on these nodes, even empty (`capacity` of each, what its VMs
    /// need): the first constraint that cannot hold, with its origin. Never a false alarm: for
    /// VMs of several shapes only what no placement could escape is reported.
    pub fn never_fits(
        &self,
        capacity: &[Vec<u64>],
        demand: &Demands,
        open: &dyn Fn(NodeIdx) -> bool,
    ) -> Option<String> {
        let holds = |vm: VmIdx, n: NodeIdx| fits_empty(demand.of(vm as usize), &capacity[n as usize]);
        let hosts = |vm: VmIdx| -> Vec<NodeIdx> {
            (0..capacity.len() as NodeIdx)
                .filter(|&n| open(n) && holds(vm, n) && self.allows(vm as usize, n))
                .collect()
        };
        for (c, origin) in self.constraints.iter().zip(&self.origins) {
            match c {
                Constraint::Spread { vms, .. } => {
                    let mut any: Vec<NodeIdx> = vms.iter().flat_map(|&v| hosts(v)).collect();
                    any.sort_unstable();
                    any.dedup();
                    if any.len() < vms.len() {
                        return Some(format!(
                            "{origin}: spreads {} VMs over distinct nodes, but only {} node{} can host them",
                            vms.len(),
                            any.len(),
                            if any.len() == 1 { "" } else { "s" }
                        ));
                    }
                }
                Constraint::Ban { vms, .. } | Constraint::Fence { vms, .. } => {
                    if let Some(v) = vms.iter().find(|&&v| hosts(v).is_empty()) {
                        return Some(format!(
                            "{origin}: leaves no node that can host {}",
                            self.names.get(*v as usize).map(String::as_str).unwrap_or("a VM")
                        ));
                    }
                }
                Constraint::Among { vms, parts, .. } => {
                    // Spread too, its VMs need as many nodes of one group as there are VMs.
                    let spread = self
                        .constraints
                        .iter()
                        .any(|s| matches!(s, Constraint::Spread { vms: sv, .. } if vms.iter().all(|v| sv.contains(v))));
                    let usable = |p: &[NodeIdx]| -> Vec<NodeIdx> {
                        p.iter()
                            .copied()
                            .filter(|&n| open(n) && vms.iter().all(|&v| self.allows(v as usize, n)))
                            .collect()
                    };
                    let fits = parts
                        .iter()
                        .any(|p| group_may_hold(&usable(p), vms, spread, demand, capacity));
                    if !fits {
                        return Some(format!(
                            "{origin}: no group of nodes is large enough for its {} VMs",
                            vms.len()
                        ));
                    }
                }
                _ => {}
            }
        }
        None
    }
}

/// Whether a VM of demand `d` fits a node of capacity `cap` left empty.
fn fits_empty(d: &[u64], cap: &[u64]) -> bool {
    crate::model::fits(&vec![0; d.len()], d, cap)
}

/// Whether the empty `nodes` could hold `vms` (on distinct nodes when `spread`): exact for VMs
/// alike (slots a node offers, summed), necessary conditions otherwise (every VM has a node,
/// the group holds their sum, enough distinct nodes).
fn group_may_hold(nodes: &[NodeIdx], vms: &[VmIdx], spread: bool, demand: &Demands, capacity: &[Vec<u64>]) -> bool {
    if let Some(d) = demand.alike() {
        let slots: u64 = nodes
            .iter()
            .map(|&n| {
                let cap = &capacity[n as usize];
                if spread {
                    return u64::from(fits_empty(d, cap));
                }
                (0..d.len())
                    .filter(|&k| d[k] > 0)
                    .map(|k| cap[k] / d[k])
                    .min()
                    .unwrap_or(u64::MAX)
            })
            .sum();
        return slots >= vms.len() as u64;
    }
    let each_has_a_node = vms.iter().all(|&v| {
        nodes
            .iter()
            .any(|&n| fits_empty(demand.of(v as usize), &capacity[n as usize]))
    });
    let sums_fit = (0..demand.resources()).all(|k| {
        let need: u64 = vms.iter().map(|&v| demand.of(v as usize)[k]).sum();
        need <= nodes.iter().map(|&n| capacity[n as usize][k]).sum()
    });
    let enough_nodes = !spread
        || nodes
            .iter()
            .filter(|&&n| {
                vms.iter()
                    .any(|&v| fits_empty(demand.of(v as usize), &capacity[n as usize]))
            })
            .count()
            >= vms.len();
    each_has_a_node && sums_fit && enough_nodes
}

/// The name of the VM that btrpsl's `$ALL_VMS` holds while a datacenter script is evaluated:
/// a constraint on it is a constraint on every VM of every vjob.
pub const ALL_VMS_NAME: &str = "*";

/// `$ALL_VMS`, as a global variable of the scripts' context.
pub fn all_vms_global() -> (String, vjob_btrpsl::Value) {
    (
        "ALL_VMS".to_string(),
        vjob_btrpsl::Value::Set(vec![vjob_btrpsl::Value::Vm(ALL_VMS_NAME.into())]),
    )
}

/// The datacenter's rules, over the nodes' indices; [`crate::decision::ALL_VMS`] stands for
/// every VM.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Datacenter {
    pub constraints: Vec<Constraint>,
    pub origins: Vec<String>,
}

impl Datacenter {
    /// The rules of evaluated datacenter scripts over nodes named `nodes` (by index); every
    /// error, one a line. They declare no VM (vjobs bring theirs) and apply to VMs only through
    /// `$ALL_VMS`, with `ban` or `fence`.
    pub fn from_scripts(scripts: &[&vjob_btrpsl::Evaluated], nodes: &[String]) -> Result<Datacenter, String> {
        use crate::decision::ALL_VMS;
        let mut model = Model::new(vec!["cpu".into(), "memory".into()]);
        for n in nodes {
            model.add_node(n.clone(), true, &[0, 0]);
        }
        model.add_vm(ALL_VMS_NAME, VmState::Ready, NO_NODE, &[0, 0]);
        let mut names = Names::new(&model);
        let mut dc = Datacenter::default();
        let mut errors = Vec::new();
        for script in scripts {
            if let Some(v) = script.vms.first() {
                errors.push(format!(
                    "{}:{}: a datacenter script declares no VM (`{}`): vjobs bring their own",
                    script.file, v.line, v.name
                ));
            }
            for b in &script.constraints {
                let c = match names.constraint(b) {
                    Ok(c) => c,
                    Err(e) => {
                        errors.push(e.to_string());
                        continue;
                    }
                };
                if b.vms().contains(&ALL_VMS_NAME) && !matches!(c, Constraint::Ban { .. } | Constraint::Fence { .. }) {
                    errors.push(format!(
                        "{}:{}: {}: only `ban` and `fence` apply to $ALL_VMS",
                        b.file, b.line, b.text
                    ));
                    continue;
                }
                if let Some(c) = remap(&c, &|_| Some(ALL_VMS), &Some) {
                    dc.constraints.push(c);
                    dc.origins.push(format!("{} ({}:{})", b.text, b.file, b.line));
                }
            }
        }
        if errors.is_empty() {
            Ok(dc)
        } else {
            Err(errors.join("\n"))
        }
    }

    /// The nodes no vjob VM may use.
    pub fn banned(&self) -> Vec<NodeIdx> {
        let mut out = Vec::new();
        for c in &self.constraints {
            if let Constraint::Ban { vms, nodes } = c {
                if vms == &[crate::decision::ALL_VMS] {
                    out.extend(nodes.iter().copied());
                }
            }
        }
        out
    }
}

/// A constraint with its VMs and nodes renamed (`vm`, `node`); elements without a new name are
/// left out, and a constraint left with no VM (or no node where it needs one) is dropped.
pub fn remap(
    c: &Constraint,
    vm: &dyn Fn(VmIdx) -> Option<VmIdx>,
    node: &dyn Fn(NodeIdx) -> Option<NodeIdx>,
) -> Option<Constraint> {
    let vms = |v: &[VmIdx]| -> Option<Vec<VmIdx>> {
        let out: Vec<VmIdx> = v.iter().filter_map(|&x| vm(x)).collect();
        (!out.is_empty()).then_some(out)
    };
    let nodes = |v: &[NodeIdx]| -> Vec<NodeIdx> { v.iter().filter_map(|&x| node(x)).collect() };
    let groups = |g: &NodeGroups| -> NodeGroups { std::sync::Arc::new(g.iter().map(|p| nodes(p)).collect()) };
    let vm_parts = |p: &[Vec<VmIdx>]| -> Vec<Vec<VmIdx>> { p.iter().filter_map(|x| vms(x)).collect() };
    use Constraint as C;
    Some(match c {
        C::Running { vm: v } => C::Running { vm: vm(*v)? },
        C::Ready { vm: v } => C::Ready { vm: vm(*v)? },
        C::Sleeping { vm: v } => C::Sleeping { vm: vm(*v)? },
        C::Killed { vm: v } => C::Killed { vm: vm(*v)? },
        C::Root { vm: v } => C::Root { vm: vm(*v)? },
        C::Preserve { vm: v, rc, amount } => C::Preserve {
            vm: vm(*v)?,
            rc: *rc,
            amount: *amount,
        },
        C::Online { node: n } => C::Online { node: node(*n)? },
        C::Offline { node: n } => C::Offline { node: node(*n)? },
        C::Ban { vms: v, nodes: n } => C::Ban {
            vms: vms(v)?,
            nodes: nodes(n),
        },
        C::Fence { vms: v, nodes: n } => C::Fence {
            vms: vms(v)?,
            nodes: nodes(n),
        },
        C::Spread { vms: v, continuous } => C::Spread {
            vms: vms(v)?,
            continuous: *continuous,
        },
        C::Gather { vms: v, continuous } => C::Gather {
            vms: vms(v)?,
            continuous: *continuous,
        },
        C::Lonely { vms: v, continuous } => C::Lonely {
            vms: vms(v)?,
            continuous: *continuous,
        },
        C::Seq { vms: v } => C::Seq { vms: vms(v)? },
        C::Among {
            vms: v,
            parts,
            continuous,
        } => C::Among {
            vms: vms(v)?,
            parts: groups(parts),
            continuous: *continuous,
        },
        C::Split { parts, continuous } => C::Split {
            parts: vm_parts(parts),
            continuous: *continuous,
        },
        C::SplitAmong {
            vparts,
            nparts,
            continuous,
        } => C::SplitAmong {
            vparts: vm_parts(vparts),
            nparts: groups(nparts),
            continuous: *continuous,
        },
        C::NoArrival { nodes: n } => C::NoArrival { nodes: nodes(n) },
        C::Quarantine { nodes: n } => C::Quarantine { nodes: nodes(n) },
        C::ResourceCapacity {
            nodes: n,
            rc,
            amount,
            continuous,
        } => C::ResourceCapacity {
            nodes: nodes(n),
            rc: *rc,
            amount: *amount,
            continuous: *continuous,
        },
        C::RunningCapacity {
            nodes: n,
            amount,
            continuous,
        } => C::RunningCapacity {
            nodes: nodes(n),
            amount: *amount,
            continuous: *continuous,
        },
        C::Overbook {
            nodes: n,
            rc,
            ratio,
            continuous,
        } => C::Overbook {
            nodes: nodes(n),
            rc: *rc,
            ratio: *ratio,
            continuous: *continuous,
        },
        C::MaxOnline {
            nodes: n,
            amount,
            continuous,
        } => C::MaxOnline {
            nodes: nodes(n),
            amount: *amount,
            continuous: *continuous,
        },
    })
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
