//! The syntax tree of a btrpsl script, as the parser builds it and the evaluator walks it.

use crate::Pos;

/// A whole script.
#[derive(Debug, Clone, Default)]
pub struct Script {
    pub namespace: Option<(String, Pos)>,
    pub imports: Vec<(String, Pos)>,
    pub body: Vec<Stmt>,
}

/// One statement.
#[derive(Debug, Clone)]
pub enum Stmt {
    /// `target op expr;` (`=`, `+=`, `-=`, `*=`, `/=`, `%=`).
    Assign {
        target: Expr,
        op: &'static str,
        value: Expr,
        pos: Pos,
    },
    /// `elements : template<options>;`
    Declare {
        elements: Expr,
        template: String,
        options: Vec<TemplateOption>,
        pos: Pos,
    },
    For {
        var: String,
        set: Expr,
        body: Vec<Stmt>,
        pos: Pos,
    },
    If {
        cond: Expr,
        then: Vec<Stmt>,
        otherwise: Vec<Stmt>,
        pos: Pos,
    },
    /// `name(args);`, continuous when prefixed by `>>`.
    Constraint {
        name: String,
        continuous: bool,
        args: Vec<Expr>,
        pos: Pos,
    },
    /// `export items to scopes;` where a scope is `*`, `a.b` or `a.*`.
    Export {
        items: Vec<Expr>,
        to: Vec<String>,
        pos: Pos,
    },
}

/// `name` or `name=value` in a template's options.
#[derive(Debug, Clone)]
pub struct TemplateOption {
    pub name: String,
    pub value: Option<OptionValue>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum OptionValue {
    Int(i64),
    Float(f64),
    Str(String),
}

/// What a range of names ranges over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RangeKind {
    /// `VM[1..3]`: VM names.
    Ident,
    /// `@n[1..3]`: node names.
    Node,
    /// `$T[1..3]`: variables.
    Var,
}

/// One item between the brackets of a range: `a` or `a..b`.
#[derive(Debug, Clone)]
pub struct RangeItem {
    pub from: Expr,
    pub to: Option<Expr>,
}

/// An expression.
#[derive(Debug, Clone)]
pub struct Expr {
    pub kind: ExprKind,
    pub pos: Pos,
}

#[derive(Debug, Clone)]
pub enum ExprKind {
    /// An integer and the base it was written in (10, 8 or 16), kept for the names of ranges.
    Int(i64, u32),
    Float(f64),
    Str(String),
    /// A VM named in this script's namespace (or fully qualified).
    Ident(String),
    Node(String),
    Var(String),
    Blank,
    /// `prefix[items]suffix`.
    Range {
        kind: RangeKind,
        prefix: String,
        items: Vec<RangeItem>,
        suffix: String,
    },
    /// `{a, b, c}`.
    Set(Vec<Expr>),
    Binary {
        op: &'static str,
        left: Box<Expr>,
        right: Box<Expr>,
    },
    /// `-x` or `!x`.
    Unary {
        op: &'static str,
        operand: Box<Expr>,
    },
    /// `#x`: the number of elements of a set.
    Cardinality(Box<Expr>),
}
