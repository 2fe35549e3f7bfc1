//! btrpsl's constraint catalog: each call checked against its signature and built into BtrPlace
//! constraints (some calls expand into one constraint per VM or per node, as in btrpsl).
//!
//! Continuity follows btrpsl: a call is continuous (kept at every instant of a reconfiguration)
//! when the constraint can be, unless it is prefixed with `>>`, which makes it discrete (kept at
//! the end of the reconfiguration); `>>` on a constraint that can only be continuous is an error.
//! Entropy's older names are accepted: `capacity` and `cumulatedRunningCapacity` are
//! `runningCapacity`, `singleRunningCapacity` is one `runningCapacity` per node, and Plasma's
//! `latency` is `among`.

use serde_json::{json, Map, Value as Json};

use crate::value::Value;

/// One field of a built constraint, elements by their full names (nodes without `@`).
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Vm(String),
    Vms(Vec<String>),
    Node(String),
    Nodes(Vec<String>),
    VmParts(Vec<Vec<String>>),
    NodeParts(Vec<Vec<String>>),
    Rc(String),
    Amount(u64),
    Ratio(f64),
}

/// A constraint as BtrPlace defines it, with where it was stated.
#[derive(Debug, Clone, PartialEq)]
pub struct Built {
    /// BtrPlace's id of the constraint (`spread`, `ban`, ...).
    pub id: &'static str,
    /// `None` for constraints that have no discrete/continuous choice.
    pub continuous: Option<bool>,
    pub fields: Vec<(&'static str, Field)>,
    /// The script, line and statement it comes from, for messages (`spread($T1) at app.btrp:4`).
    pub file: String,
    pub line: u32,
    pub text: String,
}

impl Built {
    /// BtrPlace's JSON of the constraint, with element names in place of ids; nodes are written
    /// with their `@`, as in scripts.
    pub fn to_json(&self) -> Json {
        let mut o = Map::new();
        o.insert("id".into(), json!(self.id));
        let node = |n: &String| json!(format!("@{n}"));
        for (k, f) in &self.fields {
            let v = match f {
                Field::Vm(v) => json!(v),
                Field::Vms(v) => json!(v),
                Field::Node(n) => node(n),
                Field::Nodes(n) => Json::Array(n.iter().map(node).collect()),
                Field::VmParts(p) => json!(p),
                Field::NodeParts(p) => {
                    Json::Array(p.iter().map(|g| Json::Array(g.iter().map(node).collect())).collect())
                }
                Field::Rc(r) => json!(r),
                Field::Amount(a) => json!(a),
                Field::Ratio(r) => json!(r),
            };
            o.insert((*k).into(), v);
        }
        if let Some(c) = self.continuous {
            o.insert("continuous".into(), json!(c));
        }
        Json::Object(o)
    }

    /// The VMs the constraint names.
    pub fn vms(&self) -> Vec<&str> {
        let mut out = Vec::new();
        for (_, f) in &self.fields {
            match f {
                Field::Vm(v) => out.push(v.as_str()),
                Field::Vms(v) => out.extend(v.iter().map(String::as_str)),
                Field::VmParts(p) => out.extend(p.iter().flatten().map(String::as_str)),
                _ => {}
            }
        }
        out
    }
}

/// What a parameter takes.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Param {
    /// A set of VMs, or one VM.
    Vms,
    Nodes,
    /// A set of sets of VMs.
    VmParts,
    NodeParts,
    Str,
    Num,
}

impl Param {
    fn name(self) -> &'static str {
        match self {
            Param::Vms => "set<VM>",
            Param::Nodes => "set<node>",
            Param::VmParts => "set<set<VM>>",
            Param::NodeParts => "set<set<node>>",
            Param::Str => "string",
            Param::Num => "number",
        }
    }
}

/// Which continuity a constraint accepts.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Continuity {
    /// Either; continuous unless `>>`.
    Both,
    /// Only discrete (kept at the end): `>>` is accepted and changes nothing.
    Discrete,
    /// Only continuous: `>>` is an error.
    Continuous,
}

/// The catalog: name, parameters, continuity.
const CATALOG: &[(&str, &[Param], Continuity)] = &[
    ("among", &[Param::Vms, Param::NodeParts], Continuity::Both),
    ("latency", &[Param::Vms, Param::NodeParts], Continuity::Both),
    ("ban", &[Param::Vms, Param::Nodes], Continuity::Both),
    ("fence", &[Param::Vms, Param::Nodes], Continuity::Both),
    ("gather", &[Param::Vms], Continuity::Both),
    ("lonely", &[Param::Vms], Continuity::Both),
    ("spread", &[Param::Vms], Continuity::Both),
    ("split", &[Param::VmParts], Continuity::Both),
    ("splitAmong", &[Param::VmParts, Param::NodeParts], Continuity::Both),
    ("quarantine", &[Param::Nodes], Continuity::Continuous),
    ("root", &[Param::Vms], Continuity::Continuous),
    ("seq", &[Param::Vms], Continuity::Continuous),
    ("running", &[Param::Vms], Continuity::Discrete),
    ("ready", &[Param::Vms], Continuity::Discrete),
    ("sleeping", &[Param::Vms], Continuity::Discrete),
    ("killed", &[Param::Vms], Continuity::Discrete),
    ("online", &[Param::Nodes], Continuity::Discrete),
    ("offline", &[Param::Nodes], Continuity::Discrete),
    ("overbook", &[Param::Nodes, Param::Str, Param::Num], Continuity::Both),
    ("preserve", &[Param::Vms, Param::Str, Param::Num], Continuity::Discrete),
    (
        "resourceCapacity",
        &[Param::Nodes, Param::Str, Param::Num],
        Continuity::Both,
    ),
    ("runningCapacity", &[Param::Nodes, Param::Num], Continuity::Both),
    (
        "cumulatedRunningCapacity",
        &[Param::Nodes, Param::Num],
        Continuity::Both,
    ),
    ("capacity", &[Param::Nodes, Param::Num], Continuity::Both),
    ("singleRunningCapacity", &[Param::Nodes, Param::Num], Continuity::Both),
    ("maxOnline", &[Param::Nodes, Param::Num], Continuity::Both),
];

/// An argument once checked against its parameter.
enum Arg {
    Names(Vec<String>),
    Parts(Vec<Vec<String>>),
    Str(String),
    Num(f64),
}

/// Builds the constraints of one call; the error says what is wrong with it.
pub fn build(name: &str, discrete: bool, args: &[Value]) -> Result<Vec<Built>, String> {
    let Some(&(_, params, continuity)) = CATALOG.iter().find(|(n, _, _)| *n == name) else {
        let mut known: Vec<&str> = CATALOG.iter().map(|(n, _, _)| *n).collect();
        known.sort_unstable();
        return Err(format!("unknown constraint `{name}` (known: {})", known.join(", ")));
    };
    let signature = || {
        format!(
            "{name}({})",
            params.iter().map(|p| p.name()).collect::<Vec<_>>().join(", ")
        )
    };
    if args.len() != params.len() {
        return Err(format!(
            "`{name}` takes {} argument{} ({}), not {}",
            params.len(),
            if params.len() == 1 { "" } else { "s" },
            signature(),
            args.len()
        ));
    }
    let mut checked = Vec::new();
    for (i, (a, p)) in args.iter().zip(params.iter()).enumerate() {
        checked.push(check(a, *p).map_err(|e| {
            format!(
                "argument {} of `{name}` must be a {} ({}): {e}",
                i + 1,
                p.name(),
                signature()
            )
        })?);
    }
    let continuous = match (continuity, discrete) {
        (Continuity::Continuous, true) => {
            return Err(format!(
                "`{name}` can only be continuous: remove the `>>` (discrete) prefix"
            ))
        }
        (Continuity::Continuous, false) => None,
        (Continuity::Discrete, _) => Some(false),
        (Continuity::Both, d) => Some(!d),
    };
    assemble(name, continuous, checked)
}

fn check(v: &Value, p: Param) -> Result<Arg, String> {
    let elements = |v: &Value, want_vm: bool| -> Result<Vec<String>, String> {
        let set = match v {
            Value::Set(s) => s.clone(),
            other => vec![other.clone()],
        };
        if set.is_empty() {
            return Err("the set is empty".into());
        }
        set.into_iter()
            .map(|e| match (e, want_vm) {
                (Value::Vm(n), true) | (Value::Node(n), false) => Ok(n),
                (other, _) => Err(format!("found {} ({other})", other.kind())),
            })
            .collect()
    };
    match p {
        Param::Vms | Param::Nodes => Ok(Arg::Names(elements(v, p == Param::Vms)?)),
        Param::VmParts | Param::NodeParts => match v {
            Value::Set(parts) if !parts.is_empty() && parts.iter().all(|x| matches!(x, Value::Set(_))) => {
                Ok(Arg::Parts(
                    parts
                        .iter()
                        .map(|x| elements(x, p == Param::VmParts))
                        .collect::<Result<_, _>>()?,
                ))
            }
            other => Err(format!("found {}", other.kind())),
        },
        Param::Str => match v {
            Value::Str(s) => Ok(Arg::Str(s.clone())),
            other => Err(format!("found {}", other.kind())),
        },
        Param::Num => match v {
            Value::Int(i) => Ok(Arg::Num(*i as f64)),
            Value::Float(x) => Ok(Arg::Num(*x)),
            other => Err(format!("found {}", other.kind())),
        },
    }
}

fn names(a: Option<&Arg>) -> Vec<String> {
    match a {
        Some(Arg::Names(n)) => n.clone(),
        _ => Vec::new(),
    }
}
fn parts(a: Option<&Arg>) -> Vec<Vec<String>> {
    match a {
        Some(Arg::Parts(p)) => p.clone(),
        _ => Vec::new(),
    }
}
fn text(a: Option<&Arg>) -> String {
    match a {
        Some(Arg::Str(s)) => s.clone(),
        _ => String::new(),
    }
}
fn num(a: Option<&Arg>) -> f64 {
    match a {
        Some(Arg::Num(x)) => *x,
        _ => 0.0,
    }
}

fn amount(x: f64, what: &str) -> Result<u64, String> {
    if x < 0.0 || x.fract() != 0.0 || !x.is_finite() {
        return Err(format!("{what} must be a non-negative integer, not {x}"));
    }
    Ok(x as u64)
}

fn assemble(name: &str, continuous: Option<bool>, args: Vec<Arg>) -> Result<Vec<Built>, String> {
    let one = |id: &'static str, fields: Vec<(&'static str, Field)>| Built {
        id,
        continuous,
        fields,
        file: String::new(),
        line: 0,
        text: String::new(),
    };
    let a = names(args.first());
    let b = names(args.get(1));
    let ap = parts(args.first());
    let bp = parts(args.get(1));
    let bs = text(args.get(1));
    let bn = num(args.get(1));
    let cn = num(args.get(2));
    // One constraint per element of the first argument (VMs or nodes), with `extra` fields.
    let each =
        |id: &'static str, key: &'static str, element: fn(String) -> Field, extra: Vec<(&'static str, Field)>| {
            a.iter()
                .map(|x| {
                    let mut f = vec![(key, element(x.clone()))];
                    f.extend(extra.iter().cloned());
                    one(id, f)
                })
                .collect::<Vec<Built>>()
        };
    let per_vm = |id, extra| each(id, "vm", Field::Vm, extra);
    let per_node = |id, extra| each(id, "node", Field::Node, extra);
    Ok(match name {
        "among" | "latency" => vec![one(
            "among",
            vec![("vms", Field::Vms(a.clone())), ("parts", Field::NodeParts(bp.clone()))],
        )],
        "ban" | "fence" => per_vm(
            if name == "ban" { "ban" } else { "fence" },
            vec![("nodes", Field::Nodes(b.clone()))],
        ),
        "gather" => vec![one("gather", vec![("vms", Field::Vms(a.clone()))])],
        "lonely" => vec![one("lonely", vec![("vms", Field::Vms(a.clone()))])],
        "spread" => vec![one("spread", vec![("vms", Field::Vms(a.clone()))])],
        "seq" => vec![one("seq", vec![("vms", Field::Vms(a.clone()))])],
        "split" => vec![one("split", vec![("parts", Field::VmParts(ap.clone()))])],
        "splitAmong" => vec![one(
            "splitAmong",
            vec![
                ("vParts", Field::VmParts(ap.clone())),
                ("pParts", Field::NodeParts(bp.clone())),
            ],
        )],
        "quarantine" => per_node("quarantine", vec![]),
        "online" => per_node("online", vec![]),
        "offline" => per_node("offline", vec![]),
        "root" => per_vm("root", vec![]),
        "running" => per_vm("running", vec![]),
        "ready" => per_vm("ready", vec![]),
        "sleeping" => per_vm("sleeping", vec![]),
        "killed" => per_vm("killed", vec![]),
        "preserve" => per_vm(
            "preserve",
            vec![
                ("rc", Field::Rc(bs.clone())),
                ("amount", Field::Amount(amount(cn, "the amount")?)),
            ],
        ),
        "overbook" => {
            let ratio = cn;
            if !(ratio >= 1.0 && ratio.is_finite()) {
                return Err(format!(
                    "the ratio of `overbook` must be a number of at least 1, not {ratio}"
                ));
            }
            per_node(
                "overbook",
                vec![("rc", Field::Rc(bs.clone())), ("ratio", Field::Ratio(ratio))],
            )
        }
        "resourceCapacity" => vec![one(
            "resourceCapacity",
            vec![
                ("nodes", Field::Nodes(a.clone())),
                ("rc", Field::Rc(bs.clone())),
                ("amount", Field::Amount(amount(cn, "the amount")?)),
            ],
        )],
        "runningCapacity" | "cumulatedRunningCapacity" | "capacity" | "maxOnline" => {
            let id = if name == "maxOnline" {
                "maxOnline"
            } else {
                "runningCapacity"
            };
            vec![one(
                id,
                vec![
                    ("nodes", Field::Nodes(a.clone())),
                    ("amount", Field::Amount(amount(bn, "the amount")?)),
                ],
            )]
        }
        "singleRunningCapacity" => {
            let n = amount(bn, "the amount")?;
            a.iter()
                .map(|node| {
                    one(
                        "runningCapacity",
                        vec![
                            ("nodes", Field::Nodes(vec![node.clone()])),
                            ("amount", Field::Amount(n)),
                        ],
                    )
                })
                .collect()
        }
        other => return Err(format!("constraint `{other}` has no builder")),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vms(n: &[&str]) -> Value {
        Value::Set(n.iter().map(|s| Value::Vm(s.to_string())).collect())
    }
    fn nodes(n: &[&str]) -> Value {
        Value::Set(n.iter().map(|s| Value::Node(s.to_string())).collect())
    }

    #[test]
    fn ban_expands_per_vm_and_is_continuous_unless_discrete() {
        let b = build("ban", false, &[vms(&["a.VM1", "a.VM2"]), nodes(&["n1"])]).unwrap();
        assert_eq!(b.len(), 2);
        assert_eq!(
            b[1].to_json(),
            json!({"id": "ban", "vm": "a.VM2", "nodes": ["@n1"], "continuous": true})
        );
        let b = build("ban", true, &[Value::Vm("a.VM1".into()), Value::Node("n1".into())]).unwrap();
        assert_eq!(b[0].continuous, Some(false));
    }

    #[test]
    fn signatures_are_checked_and_named() {
        let e = build("among", false, &[vms(&["a.VM1"]), nodes(&["n1"])]).unwrap_err();
        assert!(e.contains("argument 2 of `among` must be a set<set<node>>"), "{e}");
        let e = build("spread", false, &[vms(&["a"]), vms(&["b"])]).unwrap_err();
        assert!(e.contains("takes 1 argument"), "{e}");
        let e = build("root", true, &[vms(&["a"])]).unwrap_err();
        assert!(e.contains("only be continuous"), "{e}");
        let e = build("runningCapacity", false, &[nodes(&["n"]), Value::Float(1.5)]).unwrap_err();
        assert!(e.contains("non-negative integer"), "{e}");
        assert!(build("nope", false, &[])
            .unwrap_err()
            .contains("unknown constraint `nope`"));
    }

    #[test]
    fn entropy_names_are_running_capacities() {
        let b = build("capacity", false, &[nodes(&["n1", "n2"]), Value::Int(10)]).unwrap();
        assert_eq!(b[0].id, "runningCapacity");
        let b = build("singleRunningCapacity", false, &[nodes(&["n1", "n2"]), Value::Int(3)]).unwrap();
        assert_eq!(b.len(), 2);
        let b = build("latency", false, &[vms(&["v"]), Value::Set(vec![nodes(&["n1"])])]).unwrap();
        assert_eq!(b[0].id, "among");
    }
}
