//! BtrPlace's JSON formats: instances (`{"model", "constraints", "objective"}`) in, plans
//! (`{"origin", "actions"}`) out, so `vplan` works on the instances BtrPlace users already have.
//!
//! Node and VM ids are BtrPlace's integers; the model names them by their decimal id, and plans
//! are written back with the same ids. Resources come from `shareableResource` views; action
//! durations from the VMs' and nodes' attributes (`boot`, `shutdown`, `migrate`, `suspend`,
//! `resume`, `kill`), 1 when absent, as in BtrPlace.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use serde_json::{json, Map, Value};

use vjob_core::model::{Model, NodeIdx, VmIdx, VmState, NO_NODE};
use vjob_core::plan::{ActionCosts, ActionKind, Constraint, Instance, NodeGroups, Plan};

/// Why an instance could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{file}: {message}")]
pub struct FormatError {
    pub file: String,
    pub message: String,
}

/// An instance read from a file, with what is needed to write its plans back.
pub struct Loaded {
    pub instance: Instance,
    /// The instance's `model`, as it was written, copied into plans as their `origin`.
    pub origin: Box<serde_json::value::RawValue>,
    pub node_ids: Vec<i64>,
    pub vm_ids: Vec<i64>,
}

/// Reads a file, gunzipping it when it is gzipped (by its magic bytes).
pub fn read_maybe_gz(path: &Path) -> std::io::Result<Vec<u8>> {
    let raw = std::fs::read(path)?;
    if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::with_capacity(raw.len() * 8);
        flate2::read::GzDecoder::new(&raw[..]).read_to_end(&mut out)?;
        Ok(out)
    } else {
        Ok(raw)
    }
}

/// Writes a file, gzip-compressed when its name ends in `.gz`.
pub fn write_maybe_gz(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if path.extension().is_some_and(|e| e == "gz") {
        let f = std::fs::File::create(path)?;
        let mut gz = flate2::write::GzEncoder::new(f, flate2::Compression::fast());
        std::io::Write::write_all(&mut gz, bytes)?;
        gz.finish().map(|_| ())
    } else {
        std::fs::write(path, bytes)
    }
}

/// Reads a BtrPlace instance file (`.json` or `.json.gz`).
pub fn load(path: &Path) -> Result<Loaded, FormatError> {
    let file = path.display().to_string();
    let err = |message: String| FormatError {
        file: file.clone(),
        message,
    };
    let bytes = read_maybe_gz(path).map_err(|e| err(format!("cannot read: {e}")))?;
    parse_bytes(&bytes).map_err(err)
}

/// Builds an instance from a file's bytes; the model's text is kept as is for plans' `origin`,
/// and its parsed form is dropped once read (it is ten times the size of the text).
pub fn parse_bytes(bytes: &[u8]) -> Result<Loaded, String> {
    #[derive(serde::Deserialize)]
    struct Top<'a> {
        model: Box<serde_json::value::RawValue>,
        #[serde(default, borrow)]
        constraints: Vec<&'a serde_json::value::RawValue>,
    }
    let top: Top = serde_json::from_slice(bytes).map_err(|e| format!("not a BtrPlace instance: {e}"))?;
    let model: Value = serde_json::from_str(top.model.get()).map_err(|e| format!("model: {e}"))?;
    // One constraint parsed at a time: an instance's constraints, as a tree, can weigh gigabytes.
    let constraints = top
        .constraints
        .iter()
        .map(|c| serde_json::from_str::<Value>(c.get()).map_err(|e| e.to_string()));
    build(&model, constraints, Some(top.model))
}

fn int(v: &Value, what: &str) -> Result<i64, String> {
    v.as_i64()
        .ok_or_else(|| format!("{what}: expected an integer, found {v}"))
}

fn ints(v: Option<&Value>, what: &str) -> Result<Vec<i64>, String> {
    match v {
        None => Ok(Vec::new()),
        Some(Value::Array(a)) => a.iter().map(|x| int(x, what)).collect(),
        Some(other) => Err(format!("{what}: expected an array of ids, found {other}")),
    }
}

/// Reads a JSON array of ids into indices.
type IdList<'a> = dyn Fn(&Value, &str) -> Result<Vec<u32>, String> + 'a;

/// Builds an instance from parsed JSON.
pub fn parse(v: &Value) -> Result<Loaded, String> {
    let model = v.get("model").ok_or("no `model` object")?;
    let constraints = v
        .get("constraints")
        .and_then(|c| c.as_array())
        .map(|a| a.as_slice())
        .unwrap_or(&[]);
    build(model, constraints.iter().map(|c| Ok(c.clone())), None)
}

fn build(
    model: &Value,
    constraint_list: impl Iterator<Item = Result<Value, String>>,
    origin: Option<Box<serde_json::value::RawValue>>,
) -> Result<Loaded, String> {
    let ids = read_mapping(model)?;
    let costs = costs_from_attributes(model, &ids.vm_ids, &ids.node_ids);
    let mut groups: HashMap<Vec<Vec<NodeIdx>>, NodeGroups> = HashMap::new();
    let mut constraints = Vec::new();
    for (i, c) in constraint_list.enumerate() {
        let c = &c.map_err(|e| format!("constraint {i}: {e}"))?;
        constraints.push(ids.constraint(i, c, &mut groups)?);
    }
    let Ids {
        model: m,
        node_ids,
        vm_ids,
        ..
    } = ids;
    let mut instance = Instance::new(m, constraints);
    instance.costs = costs;
    let origin = match origin {
        Some(o) => o,
        None => serde_json::value::to_raw_value(model).map_err(|e| e.to_string())?,
    };
    Ok(Loaded {
        instance,
        origin,
        node_ids,
        vm_ids,
    })
}

/// The model of a BtrPlace instance, and how its ids map to the model's indices.
struct Ids {
    model: Model,
    node_ids: Vec<i64>,
    node_of: HashMap<i64, NodeIdx>,
    vm_ids: Vec<i64>,
    vm_of: HashMap<i64, VmIdx>,
}

/// Reads the `mapping` and the `shareableResource` views of an instance's model.
fn read_mapping(model: &Value) -> Result<Ids, String> {
    let mapping = model.get("mapping").ok_or("model: no `mapping` object")?;
    let views: Vec<&Value> = model
        .get("views")
        .and_then(|x| x.as_array())
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let resources: Vec<&Value> = views
        .iter()
        .copied()
        .filter(|x| x["id"] == "shareableResource")
        .collect();
    let names: Vec<String> = resources
        .iter()
        .map(|r| {
            r["rcId"]
                .as_str()
                .map(str::to_string)
                .ok_or("shareableResource view without `rcId`".to_string())
        })
        .collect::<Result<_, _>>()?;
    let mut m = Model::new(names);
    let vm_name = named(&views, "vm");
    let node_name = named(&views, "node");
    let name = |names: &HashMap<i64, String>, id: i64| names.get(&id).cloned().unwrap_or_else(|| id.to_string());

    let mut node_ids: Vec<i64> = Vec::new();
    let mut node_of: HashMap<i64, NodeIdx> = HashMap::new();
    let mut hosted: Vec<(i64, VmState, NodeIdx)> = Vec::new();
    let capacity = |id: i64| -> Vec<u64> {
        resources
            .iter()
            .map(|r| {
                r["nodes"]
                    .get(id.to_string())
                    .and_then(|c| c.as_u64())
                    .unwrap_or_else(|| r["defCapacity"].as_u64().unwrap_or(0))
            })
            .collect()
    };
    let online = mapping
        .get("onlineNodes")
        .and_then(|x| x.as_object())
        .ok_or("mapping: no `onlineNodes` object")?;
    let mut online_ids: Vec<(i64, &Value)> = online
        .iter()
        .map(|(k, entry)| {
            k.parse::<i64>()
                .map(|id| (id, entry))
                .map_err(|_| format!("node id `{k}` is not an integer"))
        })
        .collect::<Result<_, _>>()?;
    online_ids.sort_unstable_by_key(|&(id, _)| id);
    if let Some(w) = online_ids.windows(2).find(|w| w[0].0 == w[1].0) {
        return Err(format!("mapping: node {} is listed twice in `onlineNodes`", w[0].0));
    }
    for (id, entry) in online_ids {
        let n = m.add_node(name(&node_name, id), true, &capacity(id));
        node_of.insert(id, n);
        node_ids.push(id);
        for vm in ints(entry.get("runningVMs"), "runningVMs")? {
            hosted.push((vm, VmState::Running, n));
        }
        for vm in ints(entry.get("sleepingVMs"), "sleepingVMs")? {
            hosted.push((vm, VmState::Sleeping, n));
        }
    }
    for id in ints(mapping.get("offlineNodes"), "offlineNodes")? {
        if node_of.contains_key(&id) {
            return Err(format!(
                "mapping: node {id} is listed twice (online and offline, or offline twice)"
            ));
        }
        let n = m.add_node(name(&node_name, id), false, &capacity(id));
        node_of.insert(id, n);
        node_ids.push(id);
    }
    for vm in ints(mapping.get("readyVMs"), "readyVMs")? {
        hosted.push((vm, VmState::Ready, NO_NODE));
    }
    hosted.sort_by_key(|h| h.0);
    let mut vm_ids: Vec<i64> = Vec::with_capacity(hosted.len());
    let mut vm_of: HashMap<i64, VmIdx> = HashMap::with_capacity(hosted.len());
    for (id, state, host) in hosted {
        if vm_of.contains_key(&id) {
            return Err(format!("VM {id} appears twice in the mapping"));
        }
        let demand: Vec<u64> = resources
            .iter()
            .map(|r| {
                r["vms"]
                    .get(id.to_string())
                    .and_then(|c| c.as_u64())
                    .unwrap_or_else(|| r["defConsumption"].as_u64().unwrap_or(0))
            })
            .collect();
        let v = m.add_vm(name(&vm_name, id), state, host, &demand);
        vm_of.insert(id, v);
        vm_ids.push(id);
    }

    Ok(Ids {
        model: m,
        node_ids,
        node_of,
        vm_ids,
        vm_of,
    })
}

/// The names an `ns` view of `kind` (`vm` or `node`) gives to ids.
fn named(views: &[&Value], kind: &str) -> HashMap<i64, String> {
    views
        .iter()
        .filter(|v| v["id"] == "ns" && v["type"] == kind)
        .filter_map(|v| v["map"].as_object())
        .flat_map(|m| {
            m.iter()
                .filter_map(|(name, id)| id.as_i64().map(|id| (id, name.clone())))
        })
        .collect()
}

/// Action durations from the model's `attributes` (1 where none is given).
fn costs_from_attributes(model: &Value, vm_ids: &[i64], node_ids: &[i64]) -> ActionCosts {
    let attrs = model.get("attributes");
    let attr = |kind: &str, id: i64, key: &str| -> u64 {
        attrs
            .and_then(|a| a.get(kind))
            .and_then(|k| k.get(id.to_string()))
            .and_then(|e| e.get(key))
            .and_then(|x| x.as_u64())
            .unwrap_or(1)
            .max(1)
    };
    let per_vm = |key: &str| vm_ids.iter().map(|&id| attr("vms", id, key)).collect::<Vec<_>>();
    ActionCosts {
        boot: per_vm("boot"),
        shutdown: per_vm("shutdown"),
        migrate: per_vm("migrate"),
        suspend: per_vm("suspend"),
        resume: per_vm("resume"),
        kill: per_vm("kill"),
        allocate: 1,
        boot_node: node_ids.iter().map(|&id| attr("nodes", id, "boot")).collect(),
        shutdown_node: node_ids.iter().map(|&id| attr("nodes", id, "shutdown")).collect(),
    }
}

impl Ids {
    fn vm(&self, x: &Value, what: &str) -> Result<VmIdx, String> {
        let id = int(x, what)?;
        self.vm_of
            .get(&id)
            .copied()
            .ok_or_else(|| format!("{what}: unknown VM {id}"))
    }

    fn node(&self, x: &Value, what: &str) -> Result<NodeIdx, String> {
        let id = int(x, what)?;
        self.node_of
            .get(&id)
            .copied()
            .ok_or_else(|| format!("{what}: unknown node {id}"))
    }

    fn vms(&self, x: &Value, what: &str) -> Result<Vec<VmIdx>, String> {
        x.as_array()
            .ok_or_else(|| format!("{what}: expected an array"))?
            .iter()
            .map(|e| self.vm(e, what))
            .collect()
    }

    fn nodes(&self, x: &Value, what: &str) -> Result<Vec<NodeIdx>, String> {
        x.as_array()
            .ok_or_else(|| format!("{what}: expected an array"))?
            .iter()
            .map(|e| self.node(e, what))
            .collect()
    }

    fn rc(&self, x: &Value, what: &str) -> Result<usize, String> {
        let name = x.as_str().ok_or_else(|| format!("{what}: expected a resource name"))?;
        self.model
            .resource(name)
            .ok_or_else(|| format!("{what}: no resource `{name}` in the model"))
    }

    /// Constraint `i` of the instance; node groups equal to earlier ones are shared.
    fn constraint(
        &self,
        i: usize,
        c: &Value,
        groups: &mut HashMap<Vec<Vec<NodeIdx>>, NodeGroups>,
    ) -> Result<Constraint, String> {
        let id = c["id"].as_str().ok_or_else(|| format!("constraint {i}: no `id`"))?;
        let r = Fields {
            ids: self,
            c,
            what: format!("constraint {i} ({id})"),
            cont: c.get("continuous").and_then(|x| x.as_bool()).unwrap_or(false),
        };
        match r.placement(id, groups)? {
            Some(k) => Ok(k),
            None => r.capacity(id),
        }
    }
}

/// The fields of one constraint, read with the instance's ids.
struct Fields<'a> {
    ids: &'a Ids,
    c: &'a Value,
    what: String,
    cont: bool,
}

impl Fields<'_> {
    fn vm(&self) -> Result<VmIdx, String> {
        self.ids.vm(&self.c["vm"], &self.what)
    }
    fn node(&self) -> Result<NodeIdx, String> {
        self.ids.node(&self.c["node"], &self.what)
    }
    fn vms(&self) -> Result<Vec<VmIdx>, String> {
        self.ids.vms(&self.c["vms"], &self.what)
    }
    fn nodes(&self) -> Result<Vec<NodeIdx>, String> {
        self.ids.nodes(&self.c["nodes"], &self.what)
    }
    fn rc(&self) -> Result<usize, String> {
        self.ids.rc(&self.c["rc"], &self.what)
    }
    fn amount(&self) -> Result<u64, String> {
        self.c["amount"]
            .as_u64()
            .ok_or_else(|| format!("{}: `amount` must be a non-negative integer", self.what))
    }
    /// An array of id arrays, each read with `f` (VMs or nodes).
    fn parts(&self, key: &str, f: &IdList) -> Result<Vec<Vec<u32>>, String> {
        self.c[key]
            .as_array()
            .ok_or_else(|| format!("{}: `{key}` must be an array of arrays", self.what))?
            .iter()
            .map(|p| f(p, &self.what))
            .collect()
    }
    fn vm_parts(&self, key: &str) -> Result<Vec<Vec<VmIdx>>, String> {
        self.parts(key, &|x: &Value, w: &str| self.ids.vms(x, w))
    }
    fn node_groups(
        &self,
        key: &str,
        groups: &mut HashMap<Vec<Vec<NodeIdx>>, NodeGroups>,
    ) -> Result<NodeGroups, String> {
        let g = self.parts(key, &|x: &Value, w: &str| self.ids.nodes(x, w))?;
        Ok(groups
            .entry(g)
            .or_insert_with_key(|g| std::sync::Arc::new(g.clone()))
            .clone())
    }

    /// States and placements; `None` for an id of another kind.
    fn placement(
        &self,
        id: &str,
        groups: &mut HashMap<Vec<Vec<NodeIdx>>, NodeGroups>,
    ) -> Result<Option<Constraint>, String> {
        let cont = self.cont;
        Ok(Some(match id {
            "running" => Constraint::Running { vm: self.vm()? },
            "ready" => Constraint::Ready { vm: self.vm()? },
            "sleeping" => Constraint::Sleeping { vm: self.vm()? },
            "killed" => Constraint::Killed { vm: self.vm()? },
            "online" => Constraint::Online { node: self.node()? },
            "offline" => Constraint::Offline { node: self.node()? },
            "root" => Constraint::Root { vm: self.vm()? },
            "ban" => Constraint::Ban {
                vms: self.vms()?,
                nodes: self.nodes()?,
            },
            "fence" => Constraint::Fence {
                vms: self.vms()?,
                nodes: self.nodes()?,
            },
            "spread" => Constraint::Spread {
                vms: self.vms()?,
                continuous: cont,
            },
            "gather" => Constraint::Gather {
                vms: self.vms()?,
                continuous: cont,
            },
            "among" => Constraint::Among {
                vms: self.vms()?,
                parts: self.node_groups("parts", groups)?,
                continuous: cont,
            },
            "lonely" => Constraint::Lonely {
                vms: self.vms()?,
                continuous: cont,
            },
            "split" => Constraint::Split {
                parts: self.vm_parts("parts")?,
                continuous: cont,
            },
            "splitAmong" => Constraint::SplitAmong {
                vparts: self.vm_parts("vParts")?,
                nparts: self.node_groups("pParts", groups)?,
                continuous: cont,
            },
            "quarantine" => Constraint::Quarantine { nodes: self.nodes()? },
            "seq" => Constraint::Seq { vms: self.vms()? },
            _ => return Ok(None),
        }))
    }

    /// Resources and nodes: capacities, overbooking, preserved resources, nodes online.
    fn capacity(&self, id: &str) -> Result<Constraint, String> {
        let cont = self.cont;
        Ok(match id {
            "preserve" => Constraint::Preserve {
                vm: self.vm()?,
                rc: self.rc()?,
                amount: self.amount()?,
            },
            "resourceCapacity" => Constraint::ResourceCapacity {
                nodes: self.nodes()?,
                rc: self.rc()?,
                amount: self.amount()?,
                continuous: cont,
            },
            // BtrPlace's older name for a capacity over all the nodes.
            "runningCapacity" | "cumulatedRunningCapacity" => Constraint::RunningCapacity {
                nodes: self.nodes()?,
                amount: self.amount()?,
                continuous: cont,
            },
            "overbook" => Constraint::Overbook {
                nodes: self.nodes()?,
                rc: self.rc()?,
                ratio: self.c["ratio"]
                    .as_f64()
                    .filter(|r| *r >= 1.0)
                    .ok_or_else(|| format!("{}: `ratio` must be a number of at least 1", self.what))?,
                continuous: cont,
            },
            "maxOnline" => Constraint::MaxOnline {
                nodes: self.nodes()?,
                amount: self.amount()?,
                continuous: cont,
            },
            other => return Err(format!("{}: constraint `{other}` is not supported", self.what)),
        })
    }
}

/// A plan in BtrPlace's format.
pub fn plan_json(loaded: &Loaded, plan: &Plan) -> Value {
    let vm = |v: VmIdx| json!(loaded.vm_ids[v as usize]);
    let node = |n: NodeIdx| {
        if n == NO_NODE {
            Value::Null
        } else {
            json!(loaded.node_ids[n as usize])
        }
    };
    let actions: Vec<Value> = plan
        .actions
        .iter()
        .map(|a| {
            let mut o = Map::new();
            o.insert("id".into(), json!(a.kind.name()));
            match a.kind {
                ActionKind::MigrateVm { vm: v, from, to } => {
                    o.insert("vm".into(), vm(v));
                    o.insert("from".into(), node(from));
                    o.insert("to".into(), node(to));
                }
                ActionKind::BootVm { vm: v, on }
                | ActionKind::ShutdownVm { vm: v, on }
                | ActionKind::KillVm { vm: v, on } => {
                    o.insert("vm".into(), vm(v));
                    o.insert("on".into(), node(on));
                }
                ActionKind::SuspendVm { vm: v, from } => {
                    o.insert("vm".into(), vm(v));
                    o.insert("from".into(), node(from));
                    o.insert("to".into(), node(from));
                }
                ActionKind::ResumeVm { vm: v, from, to } => {
                    o.insert("vm".into(), vm(v));
                    o.insert("from".into(), node(from));
                    o.insert("to".into(), node(to));
                }
                ActionKind::Allocate { vm: v, on, rc, amount } => {
                    o.insert("vm".into(), vm(v));
                    o.insert("on".into(), node(on));
                    o.insert("rc".into(), json!(loaded.instance.model.resources()[rc]));
                    o.insert("amount".into(), json!(amount));
                }
                ActionKind::BootNode { node: n } | ActionKind::ShutdownNode { node: n } => {
                    o.insert("node".into(), node(n));
                }
            }
            o.insert("start".into(), json!(a.start));
            o.insert("end".into(), json!(a.end));
            Value::Object(o)
        })
        .collect();
    json!({ "origin": loaded.origin, "actions": actions })
}

/// Reads a plan in BtrPlace's format against its instance.
pub fn parse_plan(loaded: &Loaded, v: &Value) -> Result<Plan, String> {
    let m = &loaded.instance.model;
    let vm_of: HashMap<i64, VmIdx> = loaded
        .vm_ids
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i as VmIdx))
        .collect();
    let node_of: HashMap<i64, NodeIdx> = loaded
        .node_ids
        .iter()
        .enumerate()
        .map(|(i, &id)| (id, i as NodeIdx))
        .collect();
    let actions = v
        .get("actions")
        .and_then(|a| a.as_array())
        .ok_or("no `actions` array")?;
    let mut target = m.clone();
    let mut out = Vec::with_capacity(actions.len());
    for (i, a) in actions.iter().enumerate() {
        let what = format!("action {i}");
        let vm = |k: &str| -> Result<VmIdx, String> {
            let id = int(&a[k], &what)?;
            vm_of
                .get(&id)
                .copied()
                .ok_or_else(|| format!("{what}: unknown VM {id}"))
        };
        let node = |k: &str| -> Result<NodeIdx, String> {
            if a[k].is_null() {
                return Ok(NO_NODE);
            }
            let id = int(&a[k], &what)?;
            node_of
                .get(&id)
                .copied()
                .ok_or_else(|| format!("{what}: unknown node {id}"))
        };
        let kind = match a["id"].as_str().unwrap_or("") {
            "migrateVM" => ActionKind::MigrateVm {
                vm: vm("vm")?,
                from: node("from")?,
                to: node("to")?,
            },
            "bootVM" => ActionKind::BootVm {
                vm: vm("vm")?,
                on: node("on")?,
            },
            "shutdownVM" => ActionKind::ShutdownVm {
                vm: vm("vm")?,
                on: node("on")?,
            },
            "killVM" => ActionKind::KillVm {
                vm: vm("vm")?,
                on: node("on")?,
            },
            "suspendVM" => ActionKind::SuspendVm {
                vm: vm("vm")?,
                from: node("from")?,
            },
            "resumeVM" => ActionKind::ResumeVm {
                vm: vm("vm")?,
                from: node("from")?,
                to: node("to")?,
            },
            "allocate" => ActionKind::Allocate {
                vm: vm("vm")?,
                on: node("on")?,
                rc: a["rc"]
                    .as_str()
                    .and_then(|r| m.resource(r))
                    .ok_or_else(|| format!("{what}: unknown resource"))?,
                amount: a["amount"].as_u64().ok_or_else(|| format!("{what}: no amount"))?,
            },
            "bootNode" => ActionKind::BootNode { node: node("node")? },
            "shutdownNode" => ActionKind::ShutdownNode { node: node("node")? },
            other => return Err(format!("{what}: unknown action `{other}`")),
        };
        let start = a["start"].as_u64().ok_or_else(|| format!("{what}: no start"))?;
        let end = a["end"].as_u64().ok_or_else(|| format!("{what}: no end"))?;
        out.push((start, kind, end));
    }
    // The target is what the actions lead to, in time order.
    let mut order: Vec<usize> = (0..out.len()).collect();
    order.sort_by_key(|&i| (out[i].2, i));
    for &i in &order {
        match out[i].1 {
            ActionKind::MigrateVm { vm, to, .. } => target.set_vm(vm, VmState::Running, to),
            ActionKind::BootVm { vm, on } => target.set_vm(vm, VmState::Running, on),
            ActionKind::ResumeVm { vm, to, .. } => target.set_vm(vm, VmState::Running, to),
            ActionKind::ShutdownVm { vm, .. } => target.set_vm(vm, VmState::Ready, NO_NODE),
            ActionKind::KillVm { vm, .. } => target.set_vm(vm, VmState::Killed, NO_NODE),
            ActionKind::SuspendVm { vm, from } => target.set_vm(vm, VmState::Sleeping, from),
            ActionKind::Allocate { vm, rc, amount, .. } => target.set_demand(vm, rc, amount),
            ActionKind::BootNode { node } => target.set_online(node, true),
            ActionKind::ShutdownNode { node } => target.set_online(node, false),
        }
    }
    // Demands the plan does not allocate explicitly (preserve) are the instance's targets.
    for c in &loaded.instance.constraints {
        if let Constraint::Preserve { vm, rc, amount } = *c {
            if target.state(vm) == VmState::Running && target.demand(vm)[rc] < amount && target.host(vm) != m.host(vm) {
                target.set_demand(vm, rc, amount);
            }
        }
    }
    let actions = out
        .into_iter()
        .map(|(start, kind, end)| vjob_core::plan::Action {
            kind,
            start,
            end,
            deps: Vec::new(),
        })
        .collect();
    Ok(Plan { target, actions })
}

/// An instance in BtrPlace's format (ids are the model's indices; names go to `ns` views when
/// they are not those indices).
pub fn instance_json(inst: &Instance) -> Value {
    let m = &inst.model;
    let (online, offline, ready) = mapping_json(m);
    let (node_attrs, vm_attrs) = attributes_json(inst);
    let constraints: Vec<Value> = inst.constraints.iter().filter_map(|c| constraint_json(c, m)).collect();
    json!({
        "model": {
            "mapping": {"onlineNodes": online, "offlineNodes": offline, "readyVMs": ready},
            "attributes": {"nodes": node_attrs, "vms": vm_attrs},
            "views": views_json(m),
        },
        "constraints": constraints,
        "objective": {"id": "minimizeMTTR"},
    })
}

/// The mapping: online nodes with their running and sleeping VMs, offline nodes, ready VMs.
fn mapping_json(m: &Model) -> (Map<String, Value>, Vec<Value>, Vec<Value>) {
    let mut online = Map::new();
    let mut offline = Vec::new();
    for n in 0..m.nodes() as NodeIdx {
        if m.is_online(n) {
            online.insert(n.to_string(), json!({"runningVMs": [], "sleepingVMs": []}));
        } else {
            offline.push(json!(n));
        }
    }
    let mut ready = Vec::new();
    // BtrPlace keeps a sleeping VM on a node; vjob's images are on shared storage, so a VM
    // sleeping nowhere in particular is written on the first online node.
    let first_online = (0..m.nodes() as NodeIdx).find(|&n| m.is_online(n));
    for v in 0..m.vms() as VmIdx {
        let (key, host) = match (m.state(v), m.host(v), first_online) {
            (VmState::Running, h, _) => ("runningVMs", h),
            (VmState::Sleeping, h, _) if h != NO_NODE => ("sleepingVMs", h),
            (VmState::Sleeping, _, Some(n)) => ("sleepingVMs", n),
            (VmState::Killed, _, _) => continue,
            _ => {
                ready.push(json!(v));
                continue;
            }
        };
        let entry = online
            .entry(host.to_string())
            .or_insert_with(|| json!({"runningVMs": [], "sleepingVMs": []}));
        entry[key].as_array_mut().expect("an array").push(json!(v));
    }
    (online, offline, ready)
}

/// The resource views, and the names of nodes and VMs that are not their indices.
fn views_json(m: &Model) -> Vec<Value> {
    let mut views: Vec<Value> = (0..m.nres())
        .map(|k| {
            let nodes: Map<String, Value> = (0..m.nodes() as NodeIdx).map(|n| (n.to_string(), json!(m.capacity(n)[k]))).collect();
            let vms: Map<String, Value> = (0..m.vms() as VmIdx).map(|v| (v.to_string(), json!(m.demand(v)[k]))).collect();
            json!({"id": "shareableResource", "rcId": m.resources()[k], "defCapacity": 0, "defConsumption": 0, "nodes": nodes, "vms": vms})
        })
        .collect();
    let named_vms: Map<String, Value> = (0..m.vms() as VmIdx)
        .filter(|&v| m.vm_name(v) != v.to_string())
        .map(|v| (m.vm_name(v).to_string(), json!(v)))
        .collect();
    if !named_vms.is_empty() {
        views.push(json!({"id": "ns", "type": "vm", "map": named_vms}));
    }
    let named_nodes: Map<String, Value> = (0..m.nodes() as NodeIdx)
        .filter(|&n| m.node_name(n) != n.to_string())
        .map(|n| (m.node_name(n).to_string(), json!(n)))
        .collect();
    if !named_nodes.is_empty() {
        views.push(json!({"id": "ns", "type": "node", "map": named_nodes}));
    }
    views
}

/// Per-node and per-VM action durations.
fn attributes_json(inst: &Instance) -> (Map<String, Value>, Map<String, Value>) {
    let m = &inst.model;
    let c = &inst.costs;
    let vm_attrs: Map<String, Value> = (0..m.vms())
        .map(|v| {
            let get = |x: &Vec<u64>| x.get(v).copied().unwrap_or(1);
            (
                v.to_string(),
                json!({"boot": get(&c.boot), "shutdown": get(&c.shutdown), "migrate": get(&c.migrate),
                       "suspend": get(&c.suspend), "resume": get(&c.resume), "kill": get(&c.kill)}),
            )
        })
        .collect();
    let node_attrs: Map<String, Value> = (0..m.nodes())
        .map(|n| {
            let get = |x: &Vec<u64>| x.get(n).copied().unwrap_or(1);
            (
                n.to_string(),
                json!({"boot": get(&c.boot_node), "shutdown": get(&c.shutdown_node)}),
            )
        })
        .collect();
    (node_attrs, vm_attrs)
}

/// One constraint in BtrPlace's format (`None`: nothing to write).
fn constraint_json(c: &Constraint, m: &Model) -> Option<Value> {
    let rc = |k: usize| json!(m.resources()[k]);
    Some(match c {
        Constraint::Running { vm } => json!({"id": "running", "vm": vm}),
        Constraint::Ready { vm } => json!({"id": "ready", "vm": vm}),
        Constraint::Sleeping { vm } => json!({"id": "sleeping", "vm": vm}),
        Constraint::Killed { vm } => json!({"id": "killed", "vm": vm}),
        Constraint::Online { node } => json!({"id": "online", "node": node}),
        Constraint::Offline { node } => json!({"id": "offline", "node": node}),
        Constraint::Root { vm } => json!({"id": "root", "vm": vm}),
        Constraint::Ban { vms, nodes } => json!({"id": "ban", "vms": vms, "nodes": nodes}),
        Constraint::Fence { vms, nodes } => json!({"id": "fence", "vms": vms, "nodes": nodes}),
        Constraint::Spread { vms, continuous } => json!({"id": "spread", "vms": vms, "continuous": continuous}),
        Constraint::Gather { vms, continuous } => json!({"id": "gather", "vms": vms, "continuous": continuous}),
        Constraint::Lonely { vms, continuous } => json!({"id": "lonely", "vms": vms, "continuous": continuous}),
        Constraint::Among { vms, parts, continuous } => {
            json!({"id": "among", "vms": vms, "parts": parts, "continuous": continuous})
        }
        Constraint::Split { parts, continuous } => json!({"id": "split", "parts": parts, "continuous": continuous}),
        Constraint::SplitAmong {
            vparts,
            nparts,
            continuous,
        } => {
            json!({"id": "splitAmong", "vParts": vparts, "pParts": nparts, "continuous": continuous})
        }
        Constraint::Preserve { vm, rc: k, amount } => {
            json!({"id": "preserve", "vm": vm, "rc": rc(*k), "amount": amount})
        }
        Constraint::Quarantine { nodes } => json!({"id": "quarantine", "nodes": nodes}),
        Constraint::ResourceCapacity {
            nodes,
            rc: k,
            amount,
            continuous,
        } => {
            json!({"id": "resourceCapacity", "nodes": nodes, "rc": rc(*k), "amount": amount, "continuous": continuous})
        }
        Constraint::RunningCapacity {
            nodes,
            amount,
            continuous,
        } => {
            json!({"id": "runningCapacity", "nodes": nodes, "amount": amount, "continuous": continuous})
        }
        Constraint::Overbook {
            nodes,
            rc: k,
            ratio,
            continuous,
        } => {
            json!({"id": "overbook", "nodes": nodes, "rc": rc(*k), "ratio": ratio, "continuous": continuous})
        }
        Constraint::MaxOnline {
            nodes,
            amount,
            continuous,
        } => {
            json!({"id": "maxOnline", "nodes": nodes, "amount": amount, "continuous": continuous})
        }
        Constraint::Seq { vms } => json!({"id": "seq", "vms": vms}),
        // vjob's drain has no BtrPlace equivalent; written as a ban of the VMs not there.
        Constraint::NoArrival { nodes } => {
            let away: Vec<VmIdx> = (0..m.vms() as VmIdx)
                .filter(|&v| !(m.state(v) == VmState::Running && nodes.contains(&m.host(v))))
                .collect();
            if away.is_empty() {
                return None;
            }
            json!({"id": "ban", "vms": away, "nodes": nodes})
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMALL: &str = r#"{"model": {"mapping": {"onlineNodes": {"0": {"runningVMs": [0, 1], "sleepingVMs": []},
        "1": {"runningVMs": [], "sleepingVMs": []}}, "offlineNodes": [2], "readyVMs": [2]},
        "attributes": {"nodes": {}, "vms": {"2": {"boot": 7}}},
        "views": [{"id": "shareableResource", "rcId": "cpu", "defCapacity": 4, "defConsumption": 1,
                   "nodes": {"1": 2}, "vms": {"0": 3}}]},
      "constraints": [{"id": "running", "vm": 2}, {"id": "spread", "vms": [0, 1], "continuous": false},
                      {"id": "offline", "node": 2}],
      "objective": {"id": "minimizeMTTR"}}"#;

    #[test]
    fn reads_solves_writes_and_reads_back() {
        let v: Value = serde_json::from_str(SMALL).unwrap();
        let loaded = parse(&v).unwrap();
        let m = &loaded.instance.model;
        assert_eq!((m.nodes(), m.vms()), (3, 3));
        assert_eq!(m.capacity(1), &[2]);
        assert_eq!(m.demand(0), &[3]);
        assert_eq!(loaded.instance.costs.boot[2], 7);
        let plan = vjob_core::plan::solve(&loaded.instance).unwrap();
        assert_eq!(
            vjob_core::check::check(&loaded.instance, &plan),
            Vec::<String>::new(),
            "{:?}",
            plan.actions
        );
        let out = plan_json(&loaded, &plan);
        assert_eq!(out["origin"], v["model"]);
        let again = parse_bytes(SMALL.as_bytes()).unwrap();
        assert_eq!(again.instance.model, loaded.instance.model);
        let back = parse_plan(&loaded, &out).unwrap();
        assert_eq!(back.actions.len(), plan.actions.len());
        assert!(vjob_core::check::check(&loaded.instance, &back).is_empty());
    }

    /// Found by fuzzing: `"-0"` is node 0 spelled otherwise; looking its entry up again by the
    /// canonical spelling panicked.
    #[test]
    fn regression_a_node_id_spelled_minus_zero_or_listed_twice_is_an_error_not_a_panic() {
        let minus = SMALL.replacen("\"0\": {\"runningVMs\"", "\"-0\": {\"runningVMs\"", 1);
        assert_ne!(minus, SMALL);
        assert_eq!(parse_bytes(minus.as_bytes()).unwrap().instance.model.nodes(), 3);
        let twice = SMALL.replacen("\"1\": {", "\"-0\": {", 1);
        let e = parse_bytes(twice.as_bytes()).err().unwrap();
        assert!(e.contains("node 0 is listed twice"), "{e}");
        let both = SMALL.replacen("\"offlineNodes\": [2]", "\"offlineNodes\": [1]", 1);
        let e = parse_bytes(both.as_bytes()).err().unwrap();
        assert!(e.contains("node 1 is listed twice"), "{e}");
    }

    #[test]
    fn instances_round_trip() {
        let v: Value = serde_json::from_str(SMALL).unwrap();
        let loaded = parse(&v).unwrap();
        let again = parse(&instance_json(&loaded.instance)).unwrap();
        assert_eq!(again.instance.model, loaded.instance.model);
        assert_eq!(again.instance.constraints, loaded.instance.constraints);
        assert_eq!(again.instance.costs.boot, loaded.instance.costs.boot);
    }

    #[test]
    fn every_constraint_of_the_catalog_is_written_and_read_back() {
        let v: Value = serde_json::from_str(SMALL).unwrap();
        let mut inst = parse(&v).unwrap().instance;
        let groups: NodeGroups = std::sync::Arc::new(vec![vec![0], vec![1, 2]]);
        inst.constraints = vec![
            Constraint::Running { vm: 0 },
            Constraint::Ready { vm: 2 },
            Constraint::Sleeping { vm: 1 },
            Constraint::Killed { vm: 2 },
            Constraint::Online { node: 0 },
            Constraint::Offline { node: 2 },
            Constraint::Root { vm: 0 },
            Constraint::Ban {
                vms: vec![0],
                nodes: vec![1],
            },
            Constraint::Fence {
                vms: vec![1],
                nodes: vec![0, 1],
            },
            Constraint::Spread {
                vms: vec![0, 1],
                continuous: true,
            },
            Constraint::Gather {
                vms: vec![0, 1],
                continuous: false,
            },
            Constraint::Among {
                vms: vec![0, 1],
                parts: groups.clone(),
                continuous: true,
            },
            Constraint::Preserve {
                vm: 0,
                rc: 0,
                amount: 2,
            },
            Constraint::Lonely {
                vms: vec![0],
                continuous: true,
            },
            Constraint::Split {
                parts: vec![vec![0], vec![1]],
                continuous: false,
            },
            Constraint::SplitAmong {
                vparts: vec![vec![0], vec![1]],
                nparts: groups,
                continuous: true,
            },
            Constraint::Quarantine { nodes: vec![1] },
            Constraint::ResourceCapacity {
                nodes: vec![0, 1],
                rc: 0,
                amount: 5,
                continuous: true,
            },
            Constraint::RunningCapacity {
                nodes: vec![0],
                amount: 2,
                continuous: false,
            },
            Constraint::Overbook {
                nodes: vec![0],
                rc: 0,
                ratio: 1.5,
                continuous: false,
            },
            Constraint::MaxOnline {
                nodes: vec![0, 1, 2],
                amount: 2,
                continuous: true,
            },
            Constraint::Seq { vms: vec![0, 1] },
        ];
        let back = parse(&instance_json(&inst)).unwrap();
        assert_eq!(back.instance.constraints, inst.constraints);
    }

    #[test]
    fn unknown_ids_are_errors() {
        let v: Value = serde_json::from_str(&SMALL.replace(r#""vm": 2}"#, r#""vm": 9}"#)).unwrap();
        assert_eq!(parse(&v).err().unwrap(), "constraint 0 (running): unknown VM 9");
    }
}
