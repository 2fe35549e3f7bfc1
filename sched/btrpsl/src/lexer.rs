//! Tokens of a btrpsl script, with their positions.
//!
//! The token classes follow btrpsl's grammar: a name directly followed by `[` opens a range
//! (`VM[`, `@node-[`, `$T[`) and the `]` that closes it carries the suffix glued to it
//! (`].sophia.grid5000.fr`); a name directly followed by `(` is a constraint call (`spread(`), so
//! `spread (` is not one. Numbers are decimal, octal (`017`), hexadecimal (`0x1f`) or floats; `1..5`
//! is a number, a range operator and a number. Lexing never stops: a character that starts no
//! token is reported and skipped.

use crate::Pos;

/// One token.
#[derive(Debug, Clone, PartialEq)]
pub enum Tok {
    /// A name: a VM, a template, an option, a namespace (`a.b`, `a.*`), or a keyword.
    Ident(String),
    /// `NAME[`: the name of a range of VM names.
    LeftIdent(String),
    /// `@host.domain`, without the `@`.
    Node(String),
    /// `@prefix[`: the prefix of a range of node names, without the `@`.
    LeftNode(String),
    /// `$name` (or `$ns.name`), without the `$`.
    Var(String),
    /// `$name[`: the name of an indexed family of variables.
    LeftVar(String),
    /// `]` and the suffix glued to it.
    Right(String),
    /// `name(`: a constraint call.
    Call(String),
    /// A decimal, octal or hexadecimal integer; `text` keeps how it was written.
    Int {
        value: i64,
        text: String,
    },
    Float(f64),
    Str(String),
    /// `_`, the placeholder of multiple assignments.
    Blank,
    /// An operator or a punctuation mark.
    Sym(&'static str),
    Eof,
}

impl std::fmt::Display for Tok {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tok::Ident(s) => write!(f, "`{s}`"),
            Tok::LeftIdent(s) => write!(f, "`{s}[`"),
            Tok::Node(s) => write!(f, "`@{s}`"),
            Tok::LeftNode(s) => write!(f, "`@{s}[`"),
            Tok::Var(s) => write!(f, "`${s}`"),
            Tok::LeftVar(s) => write!(f, "`${s}[`"),
            Tok::Right(s) => write!(f, "`]{s}`"),
            Tok::Call(s) => write!(f, "`{s}(`"),
            Tok::Int { text, .. } => write!(f, "`{text}`"),
            Tok::Float(x) => write!(f, "`{x}`"),
            Tok::Str(s) => write!(f, "{s:?}"),
            Tok::Blank => write!(f, "`_`"),
            Tok::Sym(s) => write!(f, "`{s}`"),
            Tok::Eof => write!(f, "the end of the script"),
        }
    }
}

/// The operators and punctuation, longest first so that `>=` wins over `>`.
const SYMBOLS: &[&str] = &[
    "&&", "||", ">=", "<=", "==", "!=", "..", "+=", "-=", "*=", "/=", "%=", ">>", "=", "+", "-", "/", "%", "*", ":",
    "^", ">", "<", "!", "{", "}", "(", ")", ",", ";", "#",
];

/// Splits a script into tokens; lexical errors are appended to `errors`.
pub fn lex(text: &str, errors: &mut Vec<(Pos, String)>) -> Vec<(Tok, Pos)> {
    let mut lx = Lexer {
        s: text.as_bytes(),
        i: 0,
        line: 1,
        col: 1,
        out: Vec::new(),
    };
    lx.run(errors);
    lx.out
}

struct Lexer<'a> {
    s: &'a [u8],
    i: usize,
    line: u32,
    col: u32,
    out: Vec<(Tok, Pos)>,
}

fn letter(c: u8) -> bool {
    c.is_ascii_alphabetic()
}
fn alnum(c: u8) -> bool {
    c.is_ascii_alphanumeric()
}

impl Lexer<'_> {
    fn peek(&self, k: usize) -> u8 {
        self.s.get(self.i + k).copied().unwrap_or(0)
    }
    fn pos(&self) -> Pos {
        Pos {
            line: self.line,
            col: self.col,
        }
    }
    fn bump(&mut self, n: usize) {
        for _ in 0..n {
            if self.i >= self.s.len() {
                return;
            }
            if self.s[self.i] == b'\n' {
                self.line += 1;
                self.col = 1;
            } else if self.s[self.i] & 0xC0 != 0x80 {
                // Columns count characters, not the continuation bytes of UTF-8.
                self.col += 1;
            }
            self.i += 1;
        }
    }
    fn text(&self, from: usize) -> String {
        String::from_utf8_lossy(&self.s[from..self.i]).into_owned()
    }

    fn run(&mut self, errors: &mut Vec<(Pos, String)>) {
        while self.i < self.s.len() {
            let c = self.peek(0);
            let at = self.pos();
            if c.is_ascii_whitespace() {
                self.bump(1);
            } else if c == b'/' && self.peek(1) == b'/' {
                while self.i < self.s.len() && self.peek(0) != b'\n' {
                    self.bump(1);
                }
            } else if c == b'/' && self.peek(1) == b'*' {
                self.bump(2);
                while self.i < self.s.len() && !(self.peek(0) == b'*' && self.peek(1) == b'/') {
                    self.bump(1);
                }
                if self.i >= self.s.len() {
                    errors.push((at, "unterminated comment: `/*` without `*/`".into()));
                }
                self.bump(2);
            } else if let Some(t) = self.token(c, at, errors) {
                self.out.push((t, at));
            }
        }
        let end = self.pos();
        self.out.push((Tok::Eof, end));
    }

    /// The token starting at `c`, or `None` after reporting a character that starts none.
    fn token(&mut self, c: u8, at: Pos, errors: &mut Vec<(Pos, String)>) -> Option<Tok> {
        match c {
            b'"' => Some(self.string(at, errors)),
            b'@' => self.node(at, errors),
            b'$' => self.variable(at, errors),
            b']' => {
                self.bump(1);
                let from = self.i;
                loop {
                    let (c0, c1) = (self.peek(0), self.peek(1));
                    if alnum(c0) {
                        self.bump(1);
                    } else if matches!(c0, b'.' | b'_' | b'-') && alnum(c1) {
                        self.bump(2);
                    } else {
                        break;
                    }
                }
                Some(Tok::Right(self.text(from)))
            }
            b'_' if !alnum(self.peek(1)) && self.peek(1) != b'_' => {
                self.bump(1);
                Some(Tok::Blank)
            }
            b'0'..=b'9' => Some(self.number(at, errors)),
            _ if letter(c) => Some(self.name()),
            _ => {
                for s in SYMBOLS {
                    if self.s[self.i..].starts_with(s.as_bytes()) {
                        self.bump(s.len());
                        return Some(Tok::Sym(s));
                    }
                }
                let ch = std::str::from_utf8(&self.s[self.i..])
                    .ok()
                    .and_then(|s| s.chars().next())
                    .unwrap_or(char::REPLACEMENT_CHARACTER);
                errors.push((at, format!("unexpected character {ch:?}")));
                self.bump(ch.len_utf8().max(1));
                None
            }
        }
    }

    /// A name: `VM1`, `a.b`, `a.*`, `tiny_vm`; `NAME[` and `NAME(` when glued to a bracket.
    fn name(&mut self) -> Tok {
        let from = self.i;
        while alnum(self.peek(0)) || self.peek(0) == b'_' {
            self.bump(1);
        }
        match self.peek(0) {
            b'[' => {
                let t = self.text(from);
                self.bump(1);
                return Tok::LeftIdent(t);
            }
            b'(' => {
                let t = self.text(from);
                self.bump(1);
                return Tok::Call(t);
            }
            _ => {}
        }
        // Qualified names: `a.b.c`, `a.b.*`.
        while self.peek(0) == b'.' && (letter(self.peek(1)) || self.peek(1) == b'*') {
            self.bump(1);
            if self.peek(0) == b'*' {
                self.bump(1);
                break;
            }
            while alnum(self.peek(0)) || self.peek(0) == b'_' {
                self.bump(1);
            }
        }
        Tok::Ident(self.text(from))
    }

    fn node(&mut self, at: Pos, errors: &mut Vec<(Pos, String)>) -> Option<Tok> {
        self.bump(1);
        let from = self.i;
        while matches!(self.peek(0), b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'_' | b'-' | b'.') {
            self.bump(1);
        }
        if self.peek(0) == b'[' && self.i > from {
            let t = self.text(from);
            self.bump(1);
            return Some(Tok::LeftNode(t));
        }
        // A trailing `.` ends a sentence, not a host name.
        while self.i > from && matches!(self.s[self.i - 1], b'.' | b'-' | b'_') {
            self.i -= 1;
            self.col -= 1;
        }
        let name = self.text(from);
        if name.is_empty() || !valid_hostname(&name) {
            errors.push((
                at,
                format!("`@{name}` is not a node name (letters, digits, `-`, `_` and `.` between them)"),
            ));
            return None;
        }
        Some(Tok::Node(name))
    }

    fn variable(&mut self, at: Pos, errors: &mut Vec<(Pos, String)>) -> Option<Tok> {
        self.bump(1);
        let from = self.i;
        if !letter(self.peek(0)) {
            errors.push((at, "`$` must be followed by a variable name".into()));
            return None;
        }
        loop {
            let (c0, c1) = (self.peek(0), self.peek(1));
            if alnum(c0) {
                self.bump(1);
            } else if matches!(c0, b'_' | b'.') && alnum(c1) {
                self.bump(2);
            } else {
                break;
            }
        }
        if self.peek(0) == b'[' {
            let t = self.text(from);
            self.bump(1);
            return Some(Tok::LeftVar(t));
        }
        Some(Tok::Var(self.text(from)))
    }

    fn string(&mut self, at: Pos, errors: &mut Vec<(Pos, String)>) -> Tok {
        self.bump(1);
        let mut out = Vec::new();
        loop {
            match self.peek(0) {
                0 if self.i >= self.s.len() => {
                    errors.push((at, "unterminated string: `\"` without its closing `\"`".into()));
                    break;
                }
                b'"' => {
                    self.bump(1);
                    break;
                }
                b'\\' => {
                    let e = self.peek(1);
                    let c = match e {
                        b'b' => 8,
                        b't' => b'\t',
                        b'n' => b'\n',
                        b'f' => 12,
                        b'r' => b'\r',
                        b'"' | b'\'' | b'\\' => e,
                        _ => {
                            errors.push((self.pos(), format!("unknown escape `\\{}` in a string", e as char)));
                            e
                        }
                    };
                    out.push(c);
                    self.bump(2);
                }
                c => {
                    out.push(c);
                    self.bump(1);
                }
            }
        }
        Tok::Str(String::from_utf8_lossy(&out).into_owned())
    }

    fn number(&mut self, at: Pos, errors: &mut Vec<(Pos, String)>) -> Tok {
        let from = self.i;
        if self.peek(0) == b'0' && matches!(self.peek(1), b'x' | b'X') && self.peek(2).is_ascii_hexdigit() {
            self.bump(2);
            while self.peek(0).is_ascii_hexdigit() {
                self.bump(1);
            }
            let text = self.text(from);
            return int_token(i64::from_str_radix(&text[2..], 16), text, at, errors);
        }
        while self.peek(0).is_ascii_digit() {
            self.bump(1);
        }
        if self.peek(0) == b'.' && self.peek(1).is_ascii_digit() {
            self.bump(1);
            while self.peek(0).is_ascii_digit() {
                self.bump(1);
            }
            let text = self.text(from);
            return Tok::Float(text.parse().unwrap_or(0.0));
        }
        let text = self.text(from);
        if text.len() > 1 && text.starts_with('0') {
            if text.bytes().all(|b| (b'0'..=b'7').contains(&b)) {
                return int_token(i64::from_str_radix(&text[1..], 8), text, at, errors);
            }
            errors.push((at, format!("`{text}` is not an octal number (a leading 0 means octal)")));
            return Tok::Int { value: 0, text };
        }
        int_token(text.parse(), text, at, errors)
    }
}

fn int_token(v: Result<i64, std::num::ParseIntError>, text: String, at: Pos, errors: &mut Vec<(Pos, String)>) -> Tok {
    match v {
        Ok(value) => Tok::Int { value, text },
        Err(_) => {
            errors.push((at, format!("`{text}` is too large a number")));
            Tok::Int { value: 0, text }
        }
    }
}

/// `Hostname ('.' Hostname)*` where a Hostname is letters and digits with single `-` or `_`
/// between them.
fn valid_hostname(name: &str) -> bool {
    name.split('.').all(|part| {
        let b = part.as_bytes();
        !b.is_empty() && alnum(b[0]) && alnum(b[b.len() - 1]) && !b.windows(2).any(|w| !alnum(w[0]) && !alnum(w[1]))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn toks(s: &str) -> Vec<Tok> {
        let mut e = Vec::new();
        let t = lex(s, &mut e);
        assert!(e.is_empty(), "{e:?}");
        t.into_iter().map(|(t, _)| t).collect()
    }

    #[test]
    fn ranges_calls_and_qualified_names_are_single_tokens() {
        assert_eq!(
            toks("VM[1..3] @srv-[0x1..0xff].a.b spread( a.b.* $T[1] $dc.racks _"),
            vec![
                Tok::LeftIdent("VM".into()),
                Tok::Int {
                    value: 1,
                    text: "1".into()
                },
                Tok::Sym(".."),
                Tok::Int {
                    value: 3,
                    text: "3".into()
                },
                Tok::Right("".into()),
                Tok::LeftNode("srv-".into()),
                Tok::Int {
                    value: 1,
                    text: "0x1".into()
                },
                Tok::Sym(".."),
                Tok::Int {
                    value: 255,
                    text: "0xff".into()
                },
                Tok::Right(".a.b".into()),
                Tok::Call("spread".into()),
                Tok::Ident("a.b.*".into()),
                Tok::LeftVar("T".into()),
                Tok::Int {
                    value: 1,
                    text: "1".into()
                },
                Tok::Right("".into()),
                Tok::Var("dc.racks".into()),
                Tok::Blank,
                Tok::Eof
            ]
        );
    }

    #[test]
    fn numbers_floats_octals_comments_and_positions() {
        let mut e = Vec::new();
        let t = lex("x = 0.7; // c\n/* a\n b */ y >= 017 >>", &mut e);
        assert!(e.is_empty());
        assert_eq!(t[2].0, Tok::Float(0.7));
        assert_eq!(t[4].0, Tok::Ident("y".into()));
        assert_eq!(t[4].1, Pos { line: 3, col: 7 });
        assert_eq!(
            t[6].0,
            Tok::Int {
                value: 15,
                text: "017".into()
            }
        );
        assert_eq!(t[7].0, Tok::Sym(">>"));
    }

    #[test]
    fn bad_characters_are_reported_and_skipped() {
        let mut e = Vec::new();
        let t = lex("a ? b \"open", &mut e);
        assert_eq!(e.len(), 2, "{e:?}");
        assert_eq!(e[0].0, Pos { line: 1, col: 3 });
        assert_eq!(t.len(), 4);
    }
}
