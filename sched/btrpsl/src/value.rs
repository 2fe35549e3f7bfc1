//! The values a btrpsl expression computes: numbers, booleans, strings, VMs, nodes and sets of
//! them (sets nest: a set of node sets is how racks are written), and their JSON form.

use serde_json::{json, Value as Json};

/// A value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    /// A VM, by its fully qualified name (`namespace.VM1`).
    Vm(String),
    /// A node, by its name without the `@`.
    Node(String),
    /// An ordered set: no element twice, in the order elements were first added.
    Set(Vec<Value>),
}

impl Value {
    /// What kind of value this is, for error messages.
    pub fn kind(&self) -> String {
        match self {
            Value::Int(_) | Value::Float(_) => "a number".into(),
            Value::Bool(_) => "a boolean".into(),
            Value::Str(_) => "a string".into(),
            Value::Vm(_) => "a VM".into(),
            Value::Node(_) => "a node".into(),
            Value::Set(v) => match v.first() {
                None => "an empty set".into(),
                Some(e) => format!("a set of {}", plural(&e.kind())),
            },
        }
    }

    /// The value as a set: a set itself, or a single element as a set of one.
    pub fn into_set(self) -> Vec<Value> {
        match self {
            Value::Set(v) => v,
            other => vec![other],
        }
    }

    /// Its depth as a set: 0 for an element, 1 for a set of elements, 2 for a set of sets.
    pub fn depth(&self) -> usize {
        match self {
            Value::Set(v) => 1 + v.first().map(Value::depth).unwrap_or(0),
            _ => 0,
        }
    }

    /// Every element at any depth, in order.
    pub fn flatten(&self, out: &mut Vec<Value>) {
        match self {
            Value::Set(v) => v.iter().for_each(|x| x.flatten(out)),
            other => out.push(other.clone()),
        }
    }

    /// As the JSON of `vplan script --json`: numbers, booleans, strings, element names, sets as
    /// arrays nested as deep as the set. Nodes are written with their `@`, as in scripts.
    pub fn to_json(&self) -> Json {
        match self {
            Value::Int(i) => json!(i),
            Value::Float(x) => json!(x),
            Value::Bool(b) => json!(b),
            Value::Str(s) => json!(s),
            Value::Vm(n) => json!(n),
            Value::Node(n) => json!(format!("@{n}")),
            Value::Set(v) => Json::Array(v.iter().map(Value::to_json).collect()),
        }
    }
}

impl std::fmt::Display for Value {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Value::Int(i) => write!(f, "{i}"),
            Value::Float(x) => write!(f, "{x}"),
            Value::Bool(b) => write!(f, "{b}"),
            Value::Str(s) => write!(f, "{s:?}"),
            Value::Vm(n) => write!(f, "{n}"),
            Value::Node(n) => write!(f, "@{n}"),
            Value::Set(v) => {
                write!(f, "{{")?;
                for (i, x) in v.iter().enumerate() {
                    if i > 0 {
                        write!(f, ", ")?;
                    }
                    write!(f, "{x}")?;
                }
                write!(f, "}}")
            }
        }
    }
}

fn plural(kind: &str) -> String {
    let k = kind.trim_start_matches("a ").trim_start_matches("an ");
    if let Some(rest) = k.strip_prefix("set of ") {
        format!("sets of {rest}")
    } else {
        format!("{k}s")
    }
}

/// Adds `v` to `set` unless it is there already.
pub fn insert(set: &mut Vec<Value>, v: Value) {
    if !set.contains(&v) {
        set.push(v);
    }
}
