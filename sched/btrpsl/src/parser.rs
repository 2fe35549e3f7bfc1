//! A recursive-descent parser for btrpsl, following the grammar's precedence: `&&`/`||` below
//! comparisons, below `+`/`-`, below `*`/`/`/`%`, below unary `-`, `!` and `#`, below `^`.
//!
//! A syntax error is recorded and the parser skips to the end of the statement (`;`, or the `}`
//! that closes the block), so that one script reports all its errors. It never panics: every
//! token it looks at exists (the token list ends with `Eof`, which is never consumed).

use crate::ast::*;
use crate::lexer::Tok;
use crate::Pos;

/// Parses tokens into a script; syntax errors are appended to `errors`.
pub fn parse(tokens: Vec<(Tok, Pos)>, errors: &mut Vec<(Pos, String)>) -> Script {
    let mut p = Parser {
        t: tokens,
        i: 0,
        errors,
    };
    p.script()
}

struct Parser<'e> {
    t: Vec<(Tok, Pos)>,
    i: usize,
    errors: &'e mut Vec<(Pos, String)>,
}

/// A syntax error, already recorded; the statement it is in is skipped.
struct Skip;

type P<T> = Result<T, Skip>;

const KEYWORDS: &[&str] = &["namespace", "import", "export", "to", "for", "in", "if", "else"];

impl Parser<'_> {
    fn peek(&self) -> &Tok {
        &self.t[self.i].0
    }
    fn pos(&self) -> Pos {
        self.t[self.i].1
    }
    fn next(&mut self) -> (Tok, Pos) {
        let t = self.t[self.i].clone();
        if !matches!(t.0, Tok::Eof) {
            self.i += 1;
        }
        t
    }
    fn is_sym(&self, s: &str) -> bool {
        matches!(self.peek(), Tok::Sym(x) if *x == s)
    }
    fn is_kw(&self, k: &str) -> bool {
        matches!(self.peek(), Tok::Ident(x) if x == k)
    }
    fn fail<T>(&mut self, expected: &str) -> P<T> {
        let pos = self.pos();
        let found = self.peek().to_string();
        self.errors.push((pos, format!("expected {expected}, found {found}")));
        Err(Skip)
    }
    fn expect_sym(&mut self, s: &str) -> P<Pos> {
        if self.is_sym(s) {
            Ok(self.next().1)
        } else {
            self.fail(&format!("`{s}`"))
        }
    }
    fn expect_ident(&mut self, what: &str) -> P<(String, Pos)> {
        match self.peek().clone() {
            Tok::Ident(s) if !KEYWORDS.contains(&s.as_str()) => {
                let pos = self.next().1;
                Ok((s, pos))
            }
            _ => self.fail(what),
        }
    }

    /// Skips past the end of the statement that failed: its `;`, or up to the `}` closing the
    /// current block (not consumed), whichever comes first at the same nesting.
    fn recover(&mut self) {
        let mut depth = 0i32;
        loop {
            match self.peek() {
                Tok::Eof => return,
                Tok::Sym(";") if depth <= 0 => {
                    self.next();
                    return;
                }
                Tok::Sym("{") => depth += 1,
                Tok::Sym("}") => {
                    if depth <= 0 {
                        return;
                    }
                    depth -= 1;
                    if depth == 0 {
                        self.next();
                        return;
                    }
                }
                _ => {}
            }
            self.next();
        }
    }

    fn script(&mut self) -> Script {
        let mut s = Script::default();
        if self.is_kw("namespace") {
            let at = self.next().1;
            match self
                .expect_ident("a namespace name")
                .and_then(|n| self.expect_sym(";").map(|_| n))
            {
                Ok((name, _)) => s.namespace = Some((name, at)),
                Err(Skip) => self.recover(),
            }
        }
        while self.is_kw("import") {
            let at = self.next().1;
            match self
                .expect_ident("the name of a script to import")
                .and_then(|n| self.expect_sym(";").map(|_| n))
            {
                Ok((name, _)) => s.imports.push((name, at)),
                Err(Skip) => self.recover(),
            }
        }
        s.body = self.block(true);
        s
    }

    /// Statements up to `}` (not consumed) or the end of the script.
    fn block(&mut self, top: bool) -> Vec<Stmt> {
        let mut out = Vec::new();
        loop {
            match self.peek() {
                Tok::Eof => return out,
                Tok::Sym("}") if !top => return out,
                Tok::Sym("}") => {
                    let pos = self.pos();
                    self.errors.push((pos, "`}` without a `{` to close".into()));
                    self.next();
                    continue;
                }
                _ => {}
            }
            let start = self.i;
            match self.statement() {
                Ok(s) => out.push(s),
                Err(Skip) => {
                    self.recover();
                    if self.i == start {
                        self.next();
                    }
                }
            }
        }
    }

    fn statement(&mut self) -> P<Stmt> {
        let pos = self.pos();
        if self.is_kw("for") {
            return self.for_statement();
        }
        if self.is_kw("if") {
            return self.if_statement();
        }
        if self.is_kw("export") {
            return self.export();
        }
        if self.is_kw("namespace") || self.is_kw("import") {
            return self.fail("a statement (`namespace` and `import` come first in a script)");
        }
        let continuous = self.is_sym(">>");
        if continuous {
            self.next();
        }
        if let Tok::Call(name) = self.peek().clone() {
            self.next();
            let mut args = vec![self.expression()?];
            while self.is_sym(",") {
                self.next();
                args.push(self.expression()?);
            }
            self.expect_sym(")")?;
            self.expect_sym(";")?;
            return Ok(Stmt::Constraint {
                name,
                continuous,
                args,
                pos,
            });
        }
        if continuous {
            return self.fail("a constraint after `>>`");
        }
        self.definition(pos)
    }

    fn definition(&mut self, pos: Pos) -> P<Stmt> {
        let target = match self.peek() {
            Tok::Var(_) | Tok::Ident(_) | Tok::Node(_) | Tok::LeftVar(_) | Tok::LeftIdent(_) | Tok::LeftNode(_) => {
                self.term()?
            }
            Tok::Sym("{") => self.term()?,
            _ => return self.fail("a statement"),
        };
        if self.is_sym(":") {
            self.next();
            let (template, _) = self.expect_ident("a template name")?;
            let options = self.template_options()?;
            self.expect_sym(";")?;
            return Ok(Stmt::Declare {
                elements: target,
                template,
                options,
                pos,
            });
        }
        let op = match self.peek() {
            Tok::Sym(s @ ("=" | "+=" | "-=" | "*=" | "/=" | "%=")) => *s,
            _ => return self.fail("`=` or `:` (an assignment or a declaration)"),
        };
        self.next();
        let value = self.expression()?;
        self.expect_sym(";")?;
        Ok(Stmt::Assign { target, op, value, pos })
    }

    fn template_options(&mut self) -> P<Vec<TemplateOption>> {
        let mut out = Vec::new();
        if !self.is_sym("<") {
            return Ok(out);
        }
        self.next();
        loop {
            let (name, _) = self.expect_ident("a template option")?;
            let mut value = None;
            if self.is_sym("=") {
                self.next();
                value = Some(match self.next() {
                    (Tok::Int { value, .. }, _) => OptionValue::Int(value),
                    (Tok::Float(x), _) => OptionValue::Float(x),
                    (Tok::Str(s), _) => OptionValue::Str(s),
                    _ => {
                        self.i -= 1;
                        return self.fail("a number or a string as the option's value");
                    }
                });
            }
            out.push(TemplateOption { name, value });
            if self.is_sym(",") {
                self.next();
                continue;
            }
            self.expect_sym(">")?;
            return Ok(out);
        }
    }

    fn for_statement(&mut self) -> P<Stmt> {
        let pos = self.next().1;
        let var = match self.next() {
            (Tok::Var(v), _) => v,
            _ => {
                self.i -= 1;
                return self.fail("a variable after `for`");
            }
        };
        if !self.is_kw("in") {
            return self.fail("`in`");
        }
        self.next();
        let set = self.expression()?;
        let body = self.braced_block()?;
        Ok(Stmt::For { var, set, body, pos })
    }

    fn braced_block(&mut self) -> P<Vec<Stmt>> {
        self.expect_sym("{")?;
        let body = self.block(false);
        self.expect_sym("}")?;
        Ok(body)
    }

    fn if_statement(&mut self) -> P<Stmt> {
        let pos = self.next().1;
        let cond = self.expression()?;
        let then = self.braced_block()?;
        let mut otherwise = Vec::new();
        if self.is_kw("else") {
            self.next();
            if self.is_kw("if") {
                otherwise.push(self.if_statement()?);
            } else {
                otherwise = self.braced_block()?;
            }
        }
        Ok(Stmt::If {
            cond,
            then,
            otherwise,
            pos,
        })
    }

    fn export(&mut self) -> P<Stmt> {
        let pos = self.next().1;
        let mut items = Vec::new();
        loop {
            match self.peek() {
                Tok::Var(_) | Tok::LeftVar(_) | Tok::LeftIdent(_) | Tok::LeftNode(_) | Tok::Sym("{") => {
                    items.push(self.term()?)
                }
                _ => return self.fail("a variable or a set to export"),
            }
            if !self.is_sym(",") {
                break;
            }
            self.next();
        }
        if !self.is_kw("to") {
            return self.fail("`to`");
        }
        self.next();
        let mut to = Vec::new();
        if self.is_sym("*") {
            self.next();
            to.push("*".to_string());
        } else {
            loop {
                to.push(self.expect_ident("`*` or a namespace")?.0);
                if !self.is_sym(",") {
                    break;
                }
                self.next();
            }
        }
        self.expect_sym(";")?;
        Ok(Stmt::Export { items, to, pos })
    }

    fn expression(&mut self) -> P<Expr> {
        self.binary_level(0)
    }

    /// Binary operators by precedence level, loosest first; `^` is the tightest and binds once.
    fn binary_level(&mut self, level: usize) -> P<Expr> {
        const LEVELS: &[&[&str]] = &[
            &["&&", "||"],
            &["==", "!=", "<", "<=", ">", ">="],
            &["+", "-"],
            &["*", "/", "%"],
        ];
        if level == LEVELS.len() {
            return self.unary();
        }
        let mut left = self.binary_level(level + 1)?;
        while let Tok::Sym(s) = self.peek() {
            let Some(op) = LEVELS[level].iter().find(|o| **o == *s) else {
                break;
            };
            let pos = self.next().1;
            let right = self.binary_level(level + 1)?;
            left = Expr {
                kind: ExprKind::Binary {
                    op,
                    left: Box::new(left),
                    right: Box::new(right),
                },
                pos,
            };
        }
        Ok(left)
    }

    fn unary(&mut self) -> P<Expr> {
        let pos = self.pos();
        for op in ["-", "!"] {
            if self.is_sym(op) {
                self.next();
                let operand = Box::new(self.unary()?);
                return Ok(Expr {
                    kind: ExprKind::Unary { op, operand },
                    pos,
                });
            }
        }
        if self.is_sym("#") {
            self.next();
            let operand = Box::new(self.powerable()?);
            return Ok(Expr {
                kind: ExprKind::Cardinality(operand),
                pos,
            });
        }
        self.powerable()
    }

    fn powerable(&mut self) -> P<Expr> {
        let base = self.term()?;
        if self.is_sym("^") {
            let pos = self.next().1;
            let exp = self.term()?;
            return Ok(Expr {
                kind: ExprKind::Binary {
                    op: "^",
                    left: Box::new(base),
                    right: Box::new(exp),
                },
                pos,
            });
        }
        Ok(base)
    }

    fn term(&mut self) -> P<Expr> {
        let (tok, pos) = self.next();
        let kind = match tok {
            Tok::Sym("(") => {
                let e = self.expression()?;
                self.expect_sym(")")?;
                return Ok(e);
            }
            Tok::Sym("{") => {
                let mut items = Vec::new();
                if !self.is_sym("}") {
                    loop {
                        if matches!(self.peek(), Tok::Blank) {
                            let p = self.next().1;
                            items.push(Expr {
                                kind: ExprKind::Blank,
                                pos: p,
                            });
                        } else {
                            items.push(self.expression()?);
                        }
                        if !self.is_sym(",") {
                            break;
                        }
                        self.next();
                    }
                }
                self.expect_sym("}")?;
                ExprKind::Set(items)
            }
            Tok::Ident(s) if !KEYWORDS.contains(&s.as_str()) => ExprKind::Ident(s),
            Tok::Node(s) => ExprKind::Node(s),
            Tok::Var(s) => ExprKind::Var(s),
            Tok::Int { value, text } => ExprKind::Int(value, base_of(&text)),
            Tok::Float(x) => ExprKind::Float(x),
            Tok::Str(s) => ExprKind::Str(s),
            Tok::LeftIdent(p) => self.range(RangeKind::Ident, p)?,
            Tok::LeftNode(p) => self.range(RangeKind::Node, p)?,
            Tok::LeftVar(p) => self.range(RangeKind::Var, p)?,
            _ => {
                self.i -= 1;
                return self.fail("a value (a number, a string, a name, a variable or a set)");
            }
        };
        Ok(Expr { kind, pos })
    }

    fn range(&mut self, kind: RangeKind, prefix: String) -> P<ExprKind> {
        let mut items = Vec::new();
        loop {
            let from = self.term()?;
            let to = if self.is_sym("..") {
                self.next();
                Some(self.term()?)
            } else {
                None
            };
            items.push(RangeItem { from, to });
            if !self.is_sym(",") {
                break;
            }
            self.next();
        }
        match self.next() {
            (Tok::Right(suffix), _) => Ok(ExprKind::Range {
                kind,
                prefix,
                items,
                suffix,
            }),
            _ => {
                self.i -= 1;
                self.fail("`]` closing the range")
            }
        }
    }
}

/// The base an integer was written in: `0x1f` 16, `017` 8, else 10.
fn base_of(text: &str) -> u32 {
    if text.starts_with("0x") || text.starts_with("0X") {
        16
    } else if text.len() > 1 && text.starts_with('0') {
        8
    } else {
        10
    }
}

#[cfg(test)]
fn parse_str(s: &str) -> (Script, Vec<(Pos, String)>) {
    let mut errors = Vec::new();
    let toks = crate::lexer::lex(s, &mut errors);
    let script = parse(toks, &mut errors);
    (script, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statements_of_every_kind_parse() {
        let (s, e) = parse_str(
            "namespace a.b; import c; import d.*;\n\
             VM[1..3] : tiny<migratable, boot=7>;\n\
             $x = 1 + 2 * 3 ^ 2 - #VM[1..3];\n\
             {$p, _} = VM[1..3] % 2;\n\
             for $v in $x { >>spread($v); }\n\
             if $x > 3 && !($x == 2) { ban(VM1, @n1); } else if 1 < 2 { } else { fence(VM2, @n-[1..4]); }\n\
             export $x, VM[1..2] to *;",
        );
        assert!(e.is_empty(), "{e:?}");
        assert_eq!(s.namespace.unwrap().0, "a.b");
        assert_eq!(s.imports.len(), 2);
        assert_eq!(s.body.len(), 6);
        assert!(
            matches!(&s.body[3], Stmt::For { body, .. } if matches!(&body[0], Stmt::Constraint { continuous: true, .. }))
        );
    }

    #[test]
    fn every_syntax_error_is_reported_with_its_line() {
        let (_, e) = parse_str("namespace a;\nVM1 : ;\nspread(VM1;\n$x = 3;\nfor x in y {}\n");
        let lines: Vec<u32> = e.iter().map(|(p, _)| p.line).collect();
        assert_eq!(lines, vec![2, 3, 5], "{e:?}");
    }

    #[test]
    fn unbalanced_input_never_panics() {
        for s in [
            "{",
            "}",
            "for $x in {",
            "if",
            "VM[",
            "$x = (((",
            ">>",
            "export",
            "a(",
            "]]]",
            "",
        ] {
            let _ = parse_str(s);
        }
    }
}
