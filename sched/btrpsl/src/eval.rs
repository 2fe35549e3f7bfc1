//! Runs a parsed script: imports, variables, sets and their operators, loops, conditions,
//! element declarations, constraints and exports, as btrpsl defines them.
//!
//! The rules that matter to users (the btrpsl project's tests pin them): `VM1` in namespace `a.b`
//! is the VM `a.b.VM1`; nodes are global; sets keep their order (`A + B` is A then what B adds);
//! `S / n` cuts S into parts of ceil(#S/n) elements, `S % n` into parts of n; `S * T` is the
//! pairs; numbers are integers or floats, integer division truncates; a condition holds when it
//! equals 1; variables first set inside a `for` or `if` body end with it. An imported script's
//! exports are seen fully qualified (`$datacenter.racks`, and its `$me` as `$datacenter`) and, as
//! older btrpsl did and Entropy's scripts expect, by their short name (`$racks`) unless two
//! imports export the same one; `import a.*;` also gives `$a`, the VMs its scripts export.
//!
//! Each error is recorded at the statement or expression it is in, and evaluation goes on, so a
//! script reports all its errors; a value that failed is "ignored" and adds no further error.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{json, Value as Json};

use crate::ast::*;
use crate::constraints::{self, Built};
use crate::value::{insert, Value};
use crate::{Error, Errors, Library, Pos};

/// A template's options: `migratable` (true), `boot=7`, `name="x"`.
pub type Options = BTreeMap<String, Json>;

/// A VM or node declared by a script.
#[derive(Debug, Clone, PartialEq)]
pub struct Element {
    /// Full name: `a.b.VM1` for a VM, `n1` (no `@`) for a node.
    pub name: String,
    pub template: Option<String>,
    pub options: Options,
    pub line: u32,
}

/// A variable a script exports, and to whom.
#[derive(Debug, Clone, PartialEq)]
pub struct Export {
    /// With its `$`; `$me` for the script's VMs.
    pub name: String,
    pub value: Value,
    /// `*`, a namespace (`a.b`) or namespaces under one (`a.*`).
    pub to: Vec<String>,
}

impl Export {
    /// Whether the script of namespace `ns` may see it.
    pub fn visible_to(&self, ns: &str) -> bool {
        self.to
            .iter()
            .any(|t| t == "*" || t == ns || t.strip_suffix(".*").is_some_and(|p| ns.starts_with(&format!("{p}."))))
    }
}

/// A script once evaluated.
#[derive(Debug, Clone, Default)]
pub struct Evaluated {
    pub file: String,
    pub namespace: String,
    pub vms: Vec<Element>,
    pub nodes: Vec<Element>,
    pub exports: Vec<Export>,
    pub constraints: Vec<Built>,
    /// The namespaces it imports, directly.
    pub imports: Vec<String>,
    /// The nodes it and its imports declared, so that importers can name them.
    pub known_nodes: Vec<String>,
}

impl Evaluated {
    /// `vplan script --json`'s object.
    pub fn to_json(&self) -> Json {
        let elements = |v: &[Element]| -> Vec<Json> {
            v.iter()
                .map(|e| json!({"name": e.name, "template": e.template, "options": e.options}))
                .collect()
        };
        let exports: serde_json::Map<String, Json> = self
            .exports
            .iter()
            .map(|e| (e.name.clone(), e.value.to_json()))
            .collect();
        json!({
            "namespace": self.namespace,
            "vms": elements(&self.vms),
            "nodes": elements(&self.nodes),
            "exports": exports,
            "constraints": self.constraints.iter().map(Built::to_json).collect::<Vec<_>>(),
        })
    }
}

/// The largest set a range or an operator may build: a typo such as `VM[1..1000000000]` is an
/// error, not an exhausted machine.
const MAX_SET: usize = 1_000_000;

/// Evaluates `text` (from `file`) with `lib` for its imports.
pub(crate) fn evaluate(lib: &mut Library, file: &str, text: &str, from_file: bool) -> Result<Evaluated, Errors> {
    let mut raw = Vec::new();
    let tokens = crate::lexer::lex(text, &mut raw);
    let script = crate::parser::parse(tokens, &mut raw);
    let mut ev = Eval::new(lib, file, text);
    for (pos, m) in raw {
        ev.err(pos, m);
    }
    ev.namespace(&script, from_file);
    for (name, pos) in &script.imports {
        ev.import(name, *pos);
    }
    ev.block(&script.body);
    let mut errors = std::mem::take(&mut ev.errors);
    if errors.is_empty() {
        Ok(ev.finish())
    } else {
        errors.sort_by_key(|e| (e.line, e.col));
        Err(Errors(errors))
    }
}

struct Eval<'l> {
    lib: &'l mut Library,
    file: String,
    lines: Vec<String>,
    errors: Vec<Error>,
    out: Evaluated,
    vars: HashMap<String, Value>,
    /// Variables that may not be assigned: `$me`, imported ones, the context's globals.
    immutable: HashSet<String>,
    /// Variables whose value failed: reading them adds no error.
    ignored: HashSet<String>,
    /// Short names that two imports export: ambiguous.
    ambiguous: HashSet<String>,
    vms: HashSet<String>,
    nodes: HashSet<String>,
    declared_nodes: HashSet<String>,
    me: Vec<Value>,
    /// For loop variables bound to members named by variables: the member's variable name.
    loop_labels: HashMap<String, String>,
}

impl<'l> Eval<'l> {
    fn new(lib: &'l mut Library, file: &str, text: &str) -> Eval<'l> {
        let mut vars = HashMap::new();
        let mut immutable = HashSet::new();
        for (k, v) in &lib.context.globals {
            let k = k.trim_start_matches('$').to_string();
            vars.insert(k.clone(), v.clone());
            immutable.insert(k);
        }
        let nodes = lib.context.nodes.iter().flatten().cloned().collect();
        Eval {
            file: file.to_string(),
            lines: text.lines().map(str::to_string).collect(),
            errors: Vec::new(),
            out: Evaluated {
                file: file.to_string(),
                ..Evaluated::default()
            },
            vars,
            immutable,
            ignored: HashSet::new(),
            ambiguous: HashSet::new(),
            vms: HashSet::new(),
            nodes,
            declared_nodes: HashSet::new(),
            me: Vec::new(),
            loop_labels: HashMap::new(),
            lib,
        }
    }

    fn err(&mut self, pos: Pos, m: impl Into<String>) {
        self.errors.push(Error::at(&self.file, pos, m));
    }

    fn finish(mut self) -> Evaluated {
        let mut known: Vec<String> = self.declared_nodes.into_iter().collect();
        known.append(&mut self.out.known_nodes);
        known.sort();
        known.dedup();
        self.out.known_nodes = known;
        self.out
    }

    fn namespace(&mut self, script: &Script, from_file: bool) {
        let ns = match (&script.namespace, &self.lib.context.default_namespace) {
            (Some((ns, pos)), _) => {
                let local = ns.rsplit('.').next().unwrap_or(ns);
                let stem = std::path::Path::new(&self.file)
                    .file_stem()
                    .map(|s| s.to_string_lossy().to_string());
                if from_file && stem.as_deref() != Some(local) {
                    self.err(
                        *pos,
                        format!(
                            "namespace `{ns}` must be declared in a file named `{local}.btrp` (imports find scripts by their names)"
                        ),
                    );
                }
                if ns.ends_with(".*") {
                    self.err(
                        *pos,
                        format!("`{ns}` is not a namespace name: `.*` belongs in imports and exports"),
                    );
                }
                ns.clone()
            }
            (None, Some(d)) => d.clone(),
            (None, None) => {
                self.err(Pos { line: 1, col: 1 }, "a script starts with `namespace NAME;`");
                "unnamed".to_string()
            }
        };
        self.out.namespace = ns;
        self.vars.insert("me".into(), Value::Set(Vec::new()));
        self.immutable.insert("me".into());
    }

    fn import(&mut self, name: &str, pos: Pos) {
        let paths = self.lib.resolve(name);
        if paths.is_empty() {
            let dirs: Vec<String> = self.lib.include.iter().map(|d| d.display().to_string()).collect();
            self.err(
                pos,
                format!(
                    "cannot find the script `{name}` (looked for {} in {}; add a directory with --include)",
                    name.replace('.', "/")
                        .replace("/*", "/*.btrp")
                        .trim_end_matches('/')
                        .to_string()
                        + if name.ends_with(".*") { "" } else { ".btrp" },
                    if dirs.is_empty() {
                        "no directory".to_string()
                    } else {
                        dirs.join(", ")
                    }
                ),
            );
            return;
        }
        let wildcard = name.strip_suffix(".*");
        let mut aggregate = Vec::new();
        let mut short: HashMap<String, Value> = HashMap::new();
        for p in paths {
            let imported = match self.lib.import(&p) {
                Ok(e) => e,
                Err(Errors(errs)) => {
                    let first = errs.first().map(|e| e.to_string()).unwrap_or_default();
                    self.err(
                        pos,
                        format!(
                            "{} error(s) in the script `{name}` imports (first: {first})",
                            errs.len()
                        ),
                    );
                    continue;
                }
            };
            self.out.imports.push(imported.namespace.clone());
            self.out.known_nodes.extend(imported.known_nodes.iter().cloned());
            self.nodes.extend(imported.known_nodes.iter().cloned());
            let me = self.out.namespace.clone();
            for e in imported.exports.iter().filter(|e| e.visible_to(&me)) {
                let bare = e.name.trim_start_matches('$');
                let full = if bare == "me" {
                    imported.namespace.clone()
                } else {
                    format!("{}.{bare}", imported.namespace)
                };
                if bare == "me" && wildcard.is_some() {
                    for v in e.value.clone().into_set() {
                        insert(&mut aggregate, v);
                    }
                }
                self.define_imported(full, e.value.clone(), pos);
                if bare != "me" {
                    if short.contains_key(bare) || self.vars.contains_key(bare) {
                        self.ambiguous.insert(bare.to_string());
                    }
                    short.insert(bare.to_string(), e.value.clone());
                }
            }
        }
        for (k, v) in short {
            if !self.ambiguous.contains(&k) && !self.vars.contains_key(&k) {
                self.vars.insert(k.clone(), v);
                self.immutable.insert(k);
            } else if !self.immutable.contains(&k) || self.ambiguous.contains(&k) {
                self.vars.remove(&k);
            }
        }
        if let Some(prefix) = wildcard {
            if !aggregate.is_empty() && !self.vars.contains_key(prefix) {
                self.define_imported(prefix.to_string(), Value::Set(aggregate), pos);
            }
        }
    }

    fn define_imported(&mut self, name: String, v: Value, pos: Pos) {
        if self.vars.contains_key(&name) {
            self.err(
                pos,
                format!("cannot import `${name}`: a variable of that name exists already"),
            );
            return;
        }
        self.vars.insert(name.clone(), v);
        self.immutable.insert(name);
    }

    /// Runs statements; variables first set inside a nested block end with it.
    fn block(&mut self, body: &[Stmt]) {
        for s in body {
            self.statement(s);
        }
    }

    fn nested(&mut self, body: &[Stmt]) {
        let before: HashSet<String> = self.vars.keys().cloned().collect();
        self.block(body);
        self.vars.retain(|k, _| before.contains(k));
    }

    fn statement(&mut self, s: &Stmt) {
        match s {
            Stmt::Assign { target, op, value, pos } => self.assign(target, op, value, *pos),
            Stmt::Declare {
                elements,
                template,
                options,
                pos,
            } => self.declare(elements, template, options, *pos),
            Stmt::For { var, set, body, pos } => {
                let Some(v) = self.expr(set) else { return };
                let Value::Set(items) = v else {
                    return self.err(*pos, format!("`for` iterates over a set, not {}", v.kind()));
                };
                if self.vars.contains_key(var) {
                    return self.err(*pos, format!("the loop variable `${var}` is already a variable"));
                }
                let labels = self.labels(set);
                for (i, item) in items.into_iter().enumerate() {
                    self.vars.insert(var.clone(), item);
                    if let Some(l) = labels.as_ref().and_then(|l| l.get(i)) {
                        self.loop_labels.insert(var.clone(), l.clone());
                    }
                    self.nested(body);
                }
                self.vars.remove(var);
                self.loop_labels.remove(var);
            }
            Stmt::If {
                cond,
                then,
                otherwise,
                pos,
            } => {
                let Some(c) = self.expr(cond) else { return };
                let holds = match c {
                    Value::Int(i) => i == 1,
                    Value::Float(x) => x == 1.0,
                    Value::Bool(b) => b,
                    other => return self.err(*pos, format!("a condition is a number (1 holds), not {}", other.kind())),
                };
                self.nested(if holds { then } else { otherwise });
            }
            Stmt::Constraint {
                name,
                continuous,
                args,
                pos,
            } => self.constraint(name, *continuous, args, *pos),
            Stmt::Export { items, to, pos } => self.export(items, to, *pos),
        }
    }

    fn set_var(&mut self, name: &str, v: Option<Value>, pos: Pos) {
        if self.immutable.contains(name) {
            return self.err(
                pos,
                format!("`${name}` cannot be assigned (it is `$me`, imported or given)"),
            );
        }
        match v {
            Some(v) => {
                self.ignored.remove(name);
                self.vars.insert(name.to_string(), v);
            }
            None => {
                self.ignored.insert(name.to_string());
                self.vars.remove(name);
            }
        }
    }

    fn assign(&mut self, target: &Expr, op: &str, value: &Expr, pos: Pos) {
        let v = self.expr(value);
        match &target.kind {
            ExprKind::Var(name) if op == "=" => self.set_var(name, v, pos),
            ExprKind::Var(name) => {
                let Some(v) = v else {
                    return self.set_var(name, None, pos);
                };
                let Some(cur) = self.lookup(name, target.pos) else {
                    return;
                };
                let r = self.binary(&op[..1], cur, v, pos);
                self.set_var(name, r, pos);
            }
            ExprKind::Set(_)
            | ExprKind::Range {
                kind: RangeKind::Var, ..
            } if op == "=" => {
                let names: Vec<Option<String>> = match &target.kind {
                    ExprKind::Set(items) => {
                        let mut out = Vec::new();
                        for i in items {
                            match &i.kind {
                                ExprKind::Var(n) => out.push(Some(n.clone())),
                                ExprKind::Blank => out.push(None),
                                _ => return self.err(i.pos, "only variables and `_` can be assigned from a set"),
                            }
                        }
                        out
                    }
                    ExprKind::Range {
                        prefix, items, suffix, ..
                    } => match self.expand(prefix, items, suffix) {
                        Some(n) => n.into_iter().map(Some).collect(),
                        None => return,
                    },
                    _ => unreachable!("matched above"),
                };
                let Some(v) = v else {
                    for n in names.into_iter().flatten() {
                        self.set_var(&n, None, pos);
                    }
                    return;
                };
                let Value::Set(parts) = v else {
                    return self.err(pos, format!("a multiple assignment takes a set, not {}", v.kind()));
                };
                for (n, part) in names.into_iter().zip(parts) {
                    if let Some(n) = n {
                        self.set_var(&n, Some(part), pos);
                    }
                }
            }
            _ => self.err(
                target.pos,
                format!("only variables can be assigned with `{op}`; elements are declared with `NAME : template;`"),
            ),
        }
    }

    fn declare(&mut self, elements: &Expr, template: &str, options: &[TemplateOption], pos: Pos) {
        if let Some(known) = &self.lib.context.templates {
            if !known.iter().any(|t| t == template) {
                let list = if known.is_empty() {
                    "none".to_string()
                } else {
                    known.join(", ")
                };
                self.err(
                    pos,
                    format!("unknown template `{template}` (the cluster's templates: {list})"),
                );
            }
        }
        let mut opts = Options::new();
        for o in options {
            let v = match &o.value {
                None => json!(true),
                Some(OptionValue::Int(i)) => json!(i),
                Some(OptionValue::Float(x)) => json!(x),
                Some(OptionValue::Str(s)) => cast_option(s),
            };
            opts.insert(o.name.clone(), v);
        }
        let mut targets: Vec<(bool, String)> = Vec::new();
        let mut collect = |e: &Expr, ev: &mut Eval| match &e.kind {
            ExprKind::Ident(n) => targets.push((true, n.clone())),
            ExprKind::Node(n) => targets.push((false, n.clone())),
            ExprKind::Range {
                kind: k @ (RangeKind::Ident | RangeKind::Node),
                prefix,
                items,
                suffix,
            } => {
                for n in ev.expand(prefix, items, suffix).unwrap_or_default() {
                    targets.push((*k == RangeKind::Ident, n));
                }
            }
            _ => ev.err(
                e.pos,
                "only VMs (`VM1`, `VM[1..3]`) and nodes (`@n1`, `@n[1..3]`) are declared with a template",
            ),
        };
        match &elements.kind {
            ExprKind::Set(items) => items.iter().for_each(|i| collect(i, self)),
            _ => collect(elements, self),
        }
        for (is_vm, name) in targets {
            let e = Element {
                name: if is_vm {
                    format!("{}.{name}", self.out.namespace)
                } else {
                    name
                },
                template: Some(template.to_string()),
                options: opts.clone(),
                line: pos.line,
            };
            if is_vm {
                if !self.vms.insert(e.name.clone()) {
                    self.err(pos, format!("VM `{}` is declared twice", e.name));
                    continue;
                }
                self.me.push(Value::Vm(e.name.clone()));
                self.out.vms.push(e);
            } else {
                if !self.declared_nodes.insert(e.name.clone()) {
                    self.err(pos, format!("node `@{}` is declared twice", e.name));
                    continue;
                }
                self.nodes.insert(e.name.clone());
                self.out.nodes.push(e);
            }
        }
        self.vars.insert("me".into(), Value::Set(self.me.clone()));
    }

    fn constraint(&mut self, name: &str, discrete: bool, args: &[Expr], pos: Pos) {
        let values: Vec<Option<Value>> = args.iter().map(|a| self.expr(a)).collect();
        if values.iter().any(Option::is_none) {
            return;
        }
        let values: Vec<Value> = values.into_iter().flatten().collect();
        match constraints::build(name, discrete, &values) {
            Ok(built) => {
                let text = self
                    .lines
                    .get(pos.line as usize - 1)
                    .map(|l| l.trim().to_string())
                    .unwrap_or_default();
                for mut b in built {
                    b.file = self.file.clone();
                    b.line = pos.line;
                    b.text = text.clone();
                    self.out.constraints.push(b);
                }
            }
            Err(e) => self.err(pos, e),
        }
    }

    fn export(&mut self, items: &[Expr], to: &[String], pos: Pos) {
        let mut named: Vec<(String, Value)> = Vec::new();
        for item in items {
            match &item.kind {
                ExprKind::Var(n) => {
                    if let Some(v) = self.lookup(n, item.pos) {
                        // A loop variable is exported under the name of the variable it stands for.
                        named.push((self.loop_labels.get(n).unwrap_or(n).clone(), v));
                    }
                }
                ExprKind::Range {
                    kind: RangeKind::Var,
                    prefix,
                    items,
                    suffix,
                } => {
                    for n in self.expand(prefix, items, suffix).unwrap_or_default() {
                        if let Some(v) = self.lookup(&n, item.pos) {
                            named.push((n, v));
                        }
                    }
                }
                ExprKind::Set(members) => {
                    for m in members {
                        if let ExprKind::Var(n) = &m.kind {
                            if let Some(v) = self.lookup(n, m.pos) {
                                named.push((n.clone(), v));
                            }
                        } else {
                            self.err(m.pos, "only variables are exported");
                        }
                    }
                }
                _ => self.err(item.pos, "only variables are exported (`export $x, $T[1..3] to *;`)"),
            }
        }
        for (n, value) in named {
            let name = format!("${n}");
            self.out.exports.retain(|e| e.name != name);
            self.out.exports.push(Export {
                name,
                value,
                to: to.to_vec(),
            });
        }
        // `$me` grows with declarations after the export: exports keep the final one.
        let me = Value::Set(self.me.clone());
        for e in &mut self.out.exports {
            if e.name == "$me" {
                e.value = me.clone();
            }
        }
        let _ = pos;
    }

    /// The variable names a loop's members come from (`$R[1..3]`, `{$a, $b}`), if they do.
    fn labels(&mut self, set: &Expr) -> Option<Vec<String>> {
        match &set.kind {
            ExprKind::Range {
                kind: RangeKind::Var,
                prefix,
                items,
                suffix,
            } => self.expand(prefix, items, suffix),
            ExprKind::Set(items) => items
                .iter()
                .map(|i| match &i.kind {
                    ExprKind::Var(n) => Some(self.loop_labels.get(n).unwrap_or(n).clone()),
                    _ => None,
                })
                .collect(),
            _ => None,
        }
    }

    fn lookup(&mut self, name: &str, pos: Pos) -> Option<Value> {
        if let Some(v) = self.vars.get(name) {
            return Some(v.clone());
        }
        if self.ignored.contains(name) {
            return None;
        }
        if self.ambiguous.contains(name) {
            self.err(
                pos,
                format!("`${name}` is exported by several imported scripts: name it with its namespace (`$ns.{name}`)"),
            );
            return None;
        }
        self.err(pos, format!("unknown variable `${name}`"));
        None
    }

    fn vm(&mut self, name: &str, pos: Pos) -> Option<Value> {
        let full = format!("{}.{name}", self.out.namespace);
        if self.vms.contains(&full) {
            return Some(Value::Vm(full));
        }
        self.err(
            pos,
            format!("unknown VM `{name}` (declare it first: `{name} : TEMPLATE;`)"),
        );
        None
    }

    fn node(&mut self, name: &str, pos: Pos) -> Option<Value> {
        if self.lib.context.nodes.is_none() || self.nodes.contains(name) {
            return Some(Value::Node(name.to_string()));
        }
        self.err(pos, format!("unknown node `@{name}` (not a node of this cluster)"));
        None
    }

    /// The names a range stands for: `prefix`, each item, `suffix`.
    fn expand(&mut self, prefix: &str, items: &[RangeItem], suffix: &str) -> Option<Vec<String>> {
        let mut out = Vec::new();
        for it in items {
            match &it.to {
                None => {
                    let s = match &it.from.kind {
                        ExprKind::Ident(s) => s.clone(),
                        ExprKind::Int(i, base) => format_int(*i, *base),
                        _ => match self.expr(&it.from)? {
                            Value::Int(i) => i.to_string(),
                            Value::Float(x) => x.to_string(),
                            Value::Str(s) => s,
                            Value::Vm(n) | Value::Node(n) => n,
                            v @ (Value::Bool(_) | Value::Set(_)) => {
                                self.err(it.from.pos, format!("{} cannot be part of a name in a range", v.kind()));
                                return None;
                            }
                        },
                    };
                    out.push(format!("{prefix}{s}{suffix}"));
                }
                Some(to) => {
                    let base = match (&it.from.kind, &to.kind) {
                        (ExprKind::Int(_, a), ExprKind::Int(_, b)) if a != b => {
                            self.err(it.from.pos, "the bounds of a range must be written in the same base");
                            return None;
                        }
                        (ExprKind::Int(_, a), _) | (_, ExprKind::Int(_, a)) => *a,
                        _ => 10,
                    };
                    let (a, b) = (self.expr(&it.from)?, self.expr(to)?);
                    let (Value::Int(a), Value::Int(b)) = (&a, &b) else {
                        self.err(
                            it.from.pos,
                            format!("the bounds of a range are integers, not {} and {}", a.kind(), b.kind()),
                        );
                        return None;
                    };
                    let (lo, hi) = (*a.min(b), *a.max(b));
                    if (hi - lo) as u64 >= MAX_SET as u64 || out.len() + (hi - lo) as usize >= MAX_SET {
                        self.err(
                            it.from.pos,
                            format!("the range {lo}..{hi} is too large (at most {MAX_SET} names)"),
                        );
                        return None;
                    }
                    for i in lo..=hi {
                        out.push(format!("{prefix}{}{suffix}", format_int(i, base)));
                    }
                }
            }
        }
        Some(out)
    }

    fn expr(&mut self, e: &Expr) -> Option<Value> {
        match &e.kind {
            ExprKind::Int(i, _) => Some(Value::Int(*i)),
            ExprKind::Float(x) => Some(Value::Float(*x)),
            ExprKind::Str(s) => Some(Value::Str(s.clone())),
            ExprKind::Ident(n) => self.vm(n, e.pos),
            ExprKind::Node(n) => self.node(n, e.pos),
            ExprKind::Var(n) => self.lookup(n, e.pos),
            ExprKind::Blank => {
                self.err(e.pos, "`_` only stands for a skipped part in `{$a, _} = ...`");
                None
            }
            ExprKind::Range {
                kind,
                prefix,
                items,
                suffix,
            } => {
                let names = self.expand(prefix, items, suffix)?;
                let mut out = Vec::with_capacity(names.len());
                for n in names {
                    out.push(match kind {
                        RangeKind::Ident => self.vm(&n, e.pos)?,
                        RangeKind::Node => self.node(&n, e.pos)?,
                        RangeKind::Var => self.lookup(&n, e.pos)?,
                    });
                }
                Some(Value::Set(out))
            }
            ExprKind::Set(items) => self.exploded_set(items, e.pos),
            ExprKind::Binary { op, left, right } => {
                let l = self.expr(left);
                let r = self.expr(right);
                self.binary(op, l?, r?, e.pos)
            }
            ExprKind::Unary { op, operand } => match (self.expr(operand)?, *op) {
                (Value::Int(i), "-") => Some(Value::Int(i.wrapping_neg())),
                (Value::Float(x), "-") => Some(Value::Float(-x)),
                (Value::Int(i), "!") => Some(Value::Int((i == 0) as i64)),
                (Value::Float(x), "!") => Some(Value::Int((x == 0.0) as i64)),
                (v, op) => {
                    self.err(e.pos, format!("`{op}` applies to a number, not {}", v.kind()));
                    None
                }
            },
            ExprKind::Cardinality(x) => match self.expr(x)? {
                Value::Set(s) => Some(Value::Int(s.len() as i64)),
                v => {
                    self.err(e.pos, format!("`#` counts the elements of a set, not of {}", v.kind()));
                    None
                }
            },
        }
    }

    fn exploded_set(&mut self, items: &[Expr], pos: Pos) -> Option<Value> {
        if items.is_empty() {
            self.err(pos, "empty sets are not allowed");
            return None;
        }
        let mut out: Vec<Value> = Vec::with_capacity(items.len());
        let mut seen: HashSet<String> = HashSet::with_capacity(items.len());
        let mut failed = false;
        for i in items {
            let Some(v) = self.expr(i) else {
                failed = true;
                continue;
            };
            if let Some(first) = out.first() {
                if shape(first) != shape(&v) {
                    self.err(
                        i.pos,
                        format!("a set holds one kind of value: {} among {}", v.kind(), plural_of(first)),
                    );
                    return None;
                }
            }
            if !seen.insert(v.to_string()) {
                self.err(i.pos, format!("{v} is twice in the set"));
                return None;
            }
            out.push(v);
        }
        (!failed).then_some(Value::Set(out))
    }

    fn binary(&mut self, op: &str, l: Value, r: Value, pos: Pos) -> Option<Value> {
        let r = match (l, r) {
            (Value::Set(a), Value::Set(b)) => self.set_op(op, a, b, pos),
            (Value::Set(a), n @ (Value::Int(_) | Value::Float(_))) => self.split_op(op, a, n, pos),
            (a @ (Value::Int(_) | Value::Float(_)), b @ (Value::Int(_) | Value::Float(_))) => number_op(op, &a, &b),
            (Value::Str(a), b) if op == "+" && !matches!(b, Value::Set(_)) => {
                Ok(Value::Str(format!("{a}{}", printed(&b))))
            }
            (a, b) if op == "==" || op == "!=" => {
                let eq = a == b;
                Ok(Value::Int((eq == (op == "==")) as i64))
            }
            (a, b) => Err(format!("`{op}` does not apply to {} and {}", a.kind(), b.kind())),
        };
        match r {
            Ok(v) => Some(v),
            Err(m) => {
                self.err(pos, m);
                None
            }
        }
    }

    fn set_op(&mut self, op: &str, a: Vec<Value>, b: Vec<Value>, _pos: Pos) -> Result<Value, String> {
        let compatible = a.is_empty() || b.is_empty() || shape(&a[0]) == shape(&b[0]);
        match op {
            "+" | "-" | "*" if !compatible => Err(format!(
                "`{op}` needs sets of the same kind: {} and {}",
                Value::Set(a).kind(),
                Value::Set(b).kind()
            )),
            "+" => {
                let mut out = a;
                let seen: HashSet<String> = out.iter().map(|v| v.to_string()).collect();
                out.extend(b.into_iter().filter(|v| !seen.contains(&v.to_string())));
                Ok(Value::Set(out))
            }
            "-" => {
                let drop: HashSet<String> = b.iter().map(|v| v.to_string()).collect();
                Ok(Value::Set(
                    a.into_iter().filter(|v| !drop.contains(&v.to_string())).collect(),
                ))
            }
            "*" => product(&a, &b),
            "==" | "!=" => {
                let (sa, sb): (HashSet<String>, HashSet<String>) = (
                    a.iter().map(|v| v.to_string()).collect(),
                    b.iter().map(|v| v.to_string()).collect(),
                );
                Ok(Value::Int(((sa == sb) == (op == "==")) as i64))
            }
            _ => Err(format!(
                "`{op}` does not apply to two sets (`/` and `%` take a number of parts or a part size)"
            )),
        }
    }

    fn split_op(&mut self, op: &str, a: Vec<Value>, n: Value, _pos: Pos) -> Result<Value, String> {
        let Value::Int(n) = n else {
            return Err(format!("`{op}` on a set takes an integer"));
        };
        match op {
            "/" => {
                if n <= 0 {
                    return Err(format!("a set cannot be divided into {n} parts"));
                }
                if n as usize > a.len() {
                    return Err(format!("a set of {} cannot be divided into {n} parts", a.len()));
                }
                let size = a.len().div_ceil(n as usize);
                Ok(Value::Set(a.chunks(size).map(|c| Value::Set(c.to_vec())).collect()))
            }
            "%" => {
                if n <= 0 {
                    return Err(format!("a set cannot be cut into parts of {n}"));
                }
                if a.is_empty() {
                    return Ok(Value::Set(vec![Value::Set(Vec::new())]));
                }
                Ok(Value::Set(
                    a.chunks(n as usize).map(|c| Value::Set(c.to_vec())).collect(),
                ))
            }
            "^" if n == 2 => product(&a, &a),
            "^" => Err("a set's only power is 2 (`S ^ 2` is `S * S`)".into()),
            _ => Err(format!("`{op}` does not apply to a set and a number")),
        }
    }
}

/// The unordered pairs of distinct elements, one of each of `a` and `b`, each pair once.
fn product(a: &[Value], b: &[Value]) -> Result<Value, String> {
    if a.len().saturating_mul(b.len()) > MAX_SET {
        return Err(format!(
            "the product of sets of {} and {} is too large",
            a.len(),
            b.len()
        ));
    }
    let mut out = Vec::new();
    let mut seen: HashSet<(String, String)> = HashSet::new();
    for i in a {
        for j in b {
            if i == j {
                continue;
            }
            let (x, y) = (i.to_string(), j.to_string());
            let key = if x <= y { (x, y) } else { (y, x) };
            if seen.insert(key) {
                out.push(Value::Set(vec![i.clone(), j.clone()]));
            }
        }
    }
    Ok(Value::Set(out))
}

fn number_op(op: &str, a: &Value, b: &Value) -> Result<Value, String> {
    let f = |v: &Value| match v {
        Value::Int(i) => *i as f64,
        Value::Float(x) => *x,
        _ => 0.0,
    };
    let truthy = |v: &Value| f(v).trunc() != 0.0;
    let bool_ = |b: bool| Ok(Value::Int(b as i64));
    match op {
        "==" => return bool_(f(a) == f(b)),
        "!=" => return bool_(f(a) != f(b)),
        "<" => return bool_(f(a) < f(b)),
        "<=" => return bool_(f(a) <= f(b)),
        ">" => return bool_(f(a) > f(b)),
        ">=" => return bool_(f(a) >= f(b)),
        "&&" => return bool_(truthy(a) && truthy(b)),
        "||" => return bool_(truthy(a) || truthy(b)),
        _ => {}
    }
    if let (Value::Int(x), Value::Int(y)) = (a, b) {
        let (x, y) = (*x, *y);
        return match op {
            "+" => Ok(Value::Int(x.wrapping_add(y))),
            "-" => Ok(Value::Int(x.wrapping_sub(y))),
            "*" => Ok(Value::Int(x.wrapping_mul(y))),
            "/" | "%" if y == 0 => Err(format!("`{op}` by zero")),
            "/" => Ok(Value::Int(x.wrapping_div(y))),
            "%" => Ok(Value::Int(x.wrapping_rem(y))),
            "^" if y <= 0 => Err(format!("the exponent must be strictly positive, not {y}")),
            "^" => Ok(Value::Int(
                x.checked_pow(y.min(u32::MAX as i64) as u32)
                    .ok_or("the power is too large")?,
            )),
            _ => Err(format!("`{op}` does not apply to numbers")),
        };
    }
    let (x, y) = (f(a), f(b));
    match op {
        "+" => Ok(Value::Float(x + y)),
        "-" => Ok(Value::Float(x - y)),
        "*" => Ok(Value::Float(x * y)),
        "/" | "%" if y == 0.0 => Err(format!("`{op}` by zero")),
        "/" => Ok(Value::Float(x / y)),
        "%" => Ok(Value::Float(x % y)),
        "^" if y <= 0.0 => Err(format!("the exponent must be strictly positive, not {y}")),
        "^" => Ok(Value::Float(x.powf(y))),
        _ => Err(format!("`{op}` does not apply to numbers")),
    }
}

/// What sets must agree on: depth, and the kind of their innermost elements.
fn shape(v: &Value) -> (usize, &'static str) {
    let mut d = 0;
    let mut cur = v;
    while let Value::Set(s) = cur {
        d += 1;
        match s.first() {
            Some(x) => cur = x,
            None => return (d, "any"),
        }
    }
    let k = match cur {
        Value::Int(_) | Value::Float(_) => "number",
        Value::Bool(_) => "boolean",
        Value::Str(_) => "string",
        Value::Vm(_) => "VM",
        Value::Node(_) => "node",
        Value::Set(_) => unreachable!("loop above"),
    };
    (d, k)
}

fn plural_of(v: &Value) -> String {
    Value::Set(vec![v.clone()]).kind().replacen("a set of ", "", 1)
}

/// A value inside a string: elements by name, strings as they are.
fn printed(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        other => other.to_string(),
    }
}

fn format_int(i: i64, base: u32) -> String {
    match base {
        16 => format!("{i:x}"),
        8 => format!("{i:o}"),
        _ => i.to_string(),
    }
}

/// A quoted option value, as btrpsl reads it: `true`/`false`, an integer, a float, else text.
fn cast_option(s: &str) -> Json {
    match s {
        "true" => json!(true),
        "false" => json!(false),
        _ => s
            .parse::<i64>()
            .map(|i| json!(i))
            .or_else(|_| s.parse::<f64>().map(|x| json!(x)))
            .unwrap_or_else(|_| json!(s)),
    }
}
