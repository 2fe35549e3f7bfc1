//! btrpsl, BtrPlace's specification language, for vjob: a datacenter's administrator describes
//! the infrastructure and its rules, each application's owner its VMs and their placement needs,
//! in scripts that BtrPlace users already write.
//!
//! [`lexer`] and [`parser`] turn a script into an [`ast::Script`]; [`eval`] runs it (imports,
//! variables, sets, loops, conditions, declarations, exports) into an [`Evaluated`] script whose
//! constraints ([`constraints`]) are BtrPlace JSON objects naming elements by their full names.
//! [`Library`] resolves imports (`import a.b;` reads `a/b.btrp` from the include directories,
//! `import a.*;` every script under `a/`) and evaluates each script once.
//!
//! Errors are [`Error`]s, `FILE:LINE:COL: message`, all of a script's errors and not only the
//! first; no input makes this crate panic (the fuzz test in `tests/` holds it to that).

pub mod ast;
pub mod constraints;
pub mod eval;
pub mod lexer;
pub mod parser;
pub mod value;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use eval::{Element, Evaluated, Options};
pub use value::Value;

/// A position in a script: line and column, both from 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct Pos {
    pub line: u32,
    pub col: u32,
}

/// One error of a script.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}:{line}:{col}: {message}")]
pub struct Error {
    pub file: String,
    pub line: u32,
    pub col: u32,
    pub message: String,
}

impl Error {
    pub fn at(file: &str, pos: Pos, message: impl Into<String>) -> Error {
        Error {
            file: file.to_string(),
            line: pos.line,
            col: pos.col,
            message: message.into(),
        }
    }
}

/// All the errors of a script (and of the scripts it imports), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Errors(pub Vec<Error>);

impl std::fmt::Display for Errors {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (i, e) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for Errors {}

/// What a script may name besides what it declares: the templates VMs may be declared with
/// (`None`: any name is accepted and recorded, as offline), and the nodes that exist (`None`: any
/// node name is accepted).
#[derive(Debug, Clone, Default)]
pub struct Context {
    pub templates: Option<Vec<String>>,
    pub nodes: Option<Vec<String>>,
    /// Variables every script sees, such as `$ALL_VMS` in the datacenter's scripts.
    pub globals: BTreeMap<String, Value>,
    /// The namespace of a script that declares none (a job spec's script: the job's name).
    pub default_namespace: Option<String>,
}

/// Scripts read from files, evaluated once each, with their imports resolved from include
/// directories.
#[derive(Debug, Default)]
pub struct Library {
    pub include: Vec<PathBuf>,
    pub context: Context,
    /// Evaluated scripts by namespace; `None` while one is being evaluated (an import cycle).
    done: BTreeMap<String, Option<std::rc::Rc<Evaluated>>>,
}

impl Library {
    pub fn new(include: Vec<PathBuf>, context: Context) -> Library {
        Library {
            include,
            context,
            done: BTreeMap::new(),
        }
    }

    /// Reads and evaluates the script in `path`, and the scripts it imports.
    pub fn load_file(&mut self, path: &Path) -> Result<std::rc::Rc<Evaluated>, Errors> {
        let file = path.display().to_string();
        let text = std::fs::read(path).map_err(|e| {
            Errors(vec![Error::at(
                &file,
                Pos { line: 1, col: 1 },
                format!("cannot read the script: {e}"),
            )])
        })?;
        let text = String::from_utf8_lossy(&text);
        eval::evaluate(self, &file, &text, true).map(std::rc::Rc::new)
    }

    /// Evaluates a script's text; `file` names it in errors.
    pub fn load_text(&mut self, file: &str, text: &str) -> Result<std::rc::Rc<Evaluated>, Errors> {
        eval::evaluate(self, file, text, false).map(std::rc::Rc::new)
    }

    /// The scripts that `import name;` means: `a.b` is `a/b.btrp`, `a.*` every script under
    /// `a/` (sorted by path), searched in each include directory in turn.
    pub fn resolve(&self, name: &str) -> Vec<PathBuf> {
        let parts: Vec<&str> = name.split('.').collect();
        for dir in &self.include {
            if parts.last() == Some(&"*") {
                let sub = parts[..parts.len() - 1].iter().fold(dir.clone(), |p, s| p.join(s));
                let mut found = Vec::new();
                collect_scripts(&sub, &mut found);
                if !found.is_empty() {
                    found.sort();
                    return found;
                }
            } else {
                let mut p = parts.iter().fold(dir.clone(), |p, s| p.join(s));
                p.set_extension("btrp");
                if p.is_file() {
                    return vec![p];
                }
            }
        }
        Vec::new()
    }

    /// The evaluated script of a namespace imported by `file`, reading it on first use.
    fn import(&mut self, path: &Path) -> Result<std::rc::Rc<Evaluated>, Errors> {
        let key = path.display().to_string();
        match self.done.get(&key) {
            Some(Some(e)) => return Ok(e.clone()),
            Some(None) => {
                return Err(Errors(vec![Error::at(
                    &key,
                    Pos { line: 1, col: 1 },
                    "import cycle: this script imports itself through the scripts it imports",
                )]))
            }
            None => {}
        }
        self.done.insert(key.clone(), None);
        let r = self.load_file(path);
        match &r {
            Ok(e) => {
                self.done.insert(key, Some(e.clone()));
            }
            Err(_) => {
                self.done.remove(&key);
            }
        }
        r
    }
}

fn collect_scripts(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            collect_scripts(&p, out);
        } else if p.extension().is_some_and(|x| x == "btrp") {
            out.push(p);
        }
    }
}
