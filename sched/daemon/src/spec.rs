//! Job spec files (TOML), the vjob equivalent of a PBS or Slurm batch script: which VMs, how big,
//! what runs inside, in which queue, for how long.
//!
//! ```toml
//! name = "lowprio"
//! queue = "batch"          # optional: the default queue otherwise
//! priority = 0             # optional: order within the queue
//! walltime = "1h"          # optional
//!
//! [vm]
//! count = 2                # VMs in this vjob
//! vcpus = 4
//! memory = "4GiB"
//!
//! [run]
//! script = "echo hello from $VJOB_ID"
//! sim_runtime = "20s"      # simulated backend: running time of the job
//! ```
//!
//! Instead of `[vm]`, a `[placement]` table may declare the VMs in btrpsl, BtrPlace's
//! specification language, with the cluster's templates, and state where they may run:
//!
//! ```toml
//! [placement]
//! script = """
//! VM[1..3] : small;
//! spread($me);
//! """
//! # or: file = "app.btrp" (relative to the spec; vsub reads it)
//! ```
//!
//! Parsing is the daemon's job (one parser whatever the client), and every error names the file,
//! line and field. Whether the request could ever fit the cluster is checked by the daemon
//! against its nodes, not here.

use serde::{Deserialize, Serialize};
use toml::Spanned;

use crate::config::check_name;
use crate::tomlfile::{FileError, Source};
use vjob_api::units::{parse_duration_ms, parse_size};
use vjob_api::SpecFlags;

/// Memory of a VM whose spec gives none.
pub const DEFAULT_VM_MEMORY: u64 = 1 << 30;
/// Most VMs one vjob may ask for.
pub const MAX_VMS_PER_JOB: u32 = 4096;

/// A validated job spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct JobSpec {
    pub name: String,
    pub queue: Option<String>,
    pub priority: i32,
    pub walltime_ms: Option<u64>,
    pub vm: VmTemplate,
    pub run: RunSpec,
    /// The vjob's placement script, if it has one: it declares the VMs (then `vm` is derived
    /// from their template when the job is submitted).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub placement: Option<PlacementSpec>,
    /// What it waits for before it may start ([`crate::dependency`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dependency: Option<crate::dependency::Dependency>,
    /// Submitted as an array of these tasks (taken off the spec when the tasks are made:
    /// each task's record says its index).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub array: Option<vjob_api::ArraySpec>,
}

/// A vjob's placement script (btrpsl).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PlacementSpec {
    /// How to name it in errors: the script's file, or the spec's for an inline script.
    pub file: String,
    pub script: String,
    /// The spec's line the script's first line is on (0 for a file of its own): errors in an
    /// inline script name lines of the spec.
    pub line_offset: u32,
    /// The btrpsl name of each VM (`VM1`), by VM index, once the script was evaluated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
}

/// The VMs of a vjob: `count` VMs alike, or (from a placement script's templates) each with
/// its own shape.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct VmTemplate {
    pub count: u32,
    /// Of every VM, or of the first when they differ.
    pub vcpus: u32,
    pub memory: u64,
    pub image: Option<String>,
    /// The spec named no memory: the image's default may replace [`DEFAULT_VM_MEMORY`].
    #[serde(default)]
    pub default_memory: bool,
    /// When the VMs differ: each one's shape, in VM order (`count` of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub each: Vec<VmShape>,
}

/// What one VM is made of.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct VmShape {
    pub vcpus: u32,
    pub memory: u64,
    pub image: Option<String>,
}

impl VmTemplate {
    /// What a spec that says nothing of its VMs gets: one VM of 1 vcpu and the default memory.
    pub fn one_default() -> VmTemplate {
        VmTemplate {
            count: 1,
            vcpus: 1,
            memory: DEFAULT_VM_MEMORY,
            image: None,
            default_memory: true,
            each: Vec::new(),
        }
    }

    /// `count` VMs of these shapes (in VM order), said once when they are all alike.
    pub fn from_shapes(shapes: Vec<VmShape>) -> VmTemplate {
        let first = shapes.first().cloned().unwrap_or(VmShape {
            vcpus: 1,
            memory: DEFAULT_VM_MEMORY,
            image: None,
        });
        let alike = shapes.iter().all(|s| *s == first);
        VmTemplate {
            count: shapes.len() as u32,
            vcpus: first.vcpus,
            memory: first.memory,
            image: first.image,
            default_memory: false,
            each: if alike { Vec::new() } else { shapes },
        }
    }

    /// VM `i`'s shape.
    pub fn shape(&self, i: usize) -> VmShape {
        match self.each.get(i) {
            Some(s) => s.clone(),
            None => VmShape {
                vcpus: self.vcpus,
                memory: self.memory,
                image: self.image.clone(),
            },
        }
    }

    /// The distinct shapes of its VMs, with how many VMs have each, in order of first use.
    pub fn shapes(&self) -> Vec<(VmShape, u32)> {
        if self.each.is_empty() {
            return vec![(self.shape(0), self.count)];
        }
        let mut out: Vec<(VmShape, u32)> = Vec::new();
        for s in &self.each {
            match out.iter_mut().find(|(x, _)| x == s) {
                Some((_, n)) => *n += 1,
                None => out.push((s.clone(), 1)),
            }
        }
        out
    }

    /// What each VM needs of the decisions' resources.
    pub fn demands(&self) -> vjob_core::decision::Demands {
        let d = |s: &VmShape| vjob_core::resources::cpu_memory(s.vcpus as u64, s.memory);
        match self.each.is_empty() {
            true => d(&self.shape(0)).into(),
            false => vjob_core::decision::Demands::Each(self.each.iter().map(d).collect()),
        }
    }

    /// Processors and memory of all its VMs together.
    pub fn totals(&self) -> (u64, u64) {
        self.shapes().iter().fold((0, 0), |(c, m), (s, n)| {
            (c + s.vcpus as u64 * *n as u64, m + s.memory * *n as u64)
        })
    }
}

/// What runs inside each VM.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunSpec {
    pub script: String,
    pub output: Option<String>,
    pub sim_runtime_ms: Option<u64>,
    pub sim_exit_code: i32,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    name: Option<Spanned<String>>,
    queue: Option<Spanned<String>>,
    #[serde(default)]
    priority: i32,
    walltime: Option<Spanned<String>>,
    vm: Option<RawVm>,
    run: Spanned<RawRun>,
    placement: Option<Spanned<RawPlacement>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPlacement {
    script: Option<Spanned<String>>,
    file: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawVm {
    count: Option<Spanned<u32>>,
    vcpus: Option<Spanned<u32>>,
    memory: Option<Spanned<String>>,
    image: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    script: Option<String>,
    output: Option<String>,
    sim_runtime: Option<Spanned<String>>,
    #[serde(default)]
    sim_exit_code: i32,
}

impl JobSpec {
    /// Validates a spec's text. `file` names it in errors; `default_name` is used when the spec
    /// has no `name` (the file's stem, as PBS does).
    pub fn parse(file: &str, text: &str) -> Result<JobSpec, FileError> {
        JobSpec::parse_with(file, text, &Default::default())
    }

    /// As [`JobSpec::parse`], with the files the spec refers to (`[placement] file`), as the
    /// submitter read them: path as written in the spec -> text.
    pub fn parse_with(
        file: &str,
        text: &str,
        files: &std::collections::BTreeMap<String, String>,
    ) -> Result<JobSpec, FileError> {
        let src = Source { file, text };
        let raw: RawSpec = src.parse()?;
        let name = match &raw.name {
            Some(n) => {
                check_name(n.get_ref()).map_err(|m| src.at(n, "name", m))?;
                n.get_ref().clone()
            }
            None => default_name(file),
        };
        if let Some(q) = &raw.queue {
            check_name(q.get_ref()).map_err(|m| src.at(q, "queue", m))?;
        }
        let walltime_ms = match &raw.walltime {
            None => None,
            Some(w) => match parse_duration_ms(w.get_ref()) {
                Ok(0) => return Err(src.at(w, "walltime", "must be more than zero")),
                Ok(ms) => Some(ms),
                Err(m) => return Err(src.at(w, "walltime", m)),
            },
        };
        let vm = match &raw.vm {
            None => VmTemplate::one_default(),
            Some(v) => {
                let count = match &v.count {
                    None => 1,
                    Some(c) if *c.get_ref() == 0 => return Err(src.at(c, "vm.count", "a vjob needs at least one VM")),
                    Some(c) if *c.get_ref() > MAX_VMS_PER_JOB => {
                        return Err(src.at(c, "vm.count", format!("at most {MAX_VMS_PER_JOB} VMs per vjob")))
                    }
                    Some(c) => *c.get_ref(),
                };
                let vcpus = match &v.vcpus {
                    None => 1,
                    Some(c) if *c.get_ref() == 0 => return Err(src.at(c, "vm.vcpus", "a VM needs at least one vcpu")),
                    Some(c) => *c.get_ref(),
                };
                let memory = match &v.memory {
                    None => DEFAULT_VM_MEMORY,
                    Some(m) => match parse_size(m.get_ref()) {
                        Ok(b) if b < (1 << 20) => return Err(src.at(m, "vm.memory", "a VM needs at least 1MiB")),
                        Ok(b) => b,
                        Err(msg) => return Err(src.at(m, "vm.memory", msg)),
                    },
                };
                let image = match &v.image {
                    None => None,
                    Some(i) => {
                        check_name(i.get_ref()).map_err(|m| src.at(i, "vm.image", m))?;
                        Some(i.get_ref().clone())
                    }
                };
                VmTemplate {
                    count,
                    vcpus,
                    memory,
                    image,
                    default_memory: v.memory.is_none(),
                    each: Vec::new(),
                }
            }
        };
        let run_span = raw.run.span();
        let run = raw.run.into_inner();
        let script = run.script.unwrap_or_default();
        if script.trim().is_empty() {
            return Err(src.error(
                Some(run_span),
                "run.script",
                "the job has nothing to run: give [run] a script",
            ));
        }
        let sim_runtime_ms = match &run.sim_runtime {
            None => None,
            Some(r) => Some(parse_duration_ms(r.get_ref()).map_err(|m| src.at(r, "run.sim_runtime", m))?),
        };
        let placement = match &raw.placement {
            None => None,
            Some(p) => Some(placement(&src, p, files, raw.vm.is_some())?),
        };
        Ok(JobSpec {
            placement,
            dependency: None,
            array: None,
            name,
            queue: raw.queue.map(|q| q.into_inner()),
            priority: raw.priority,
            walltime_ms,
            vm,
            run: RunSpec {
                script,
                output: run.output,
                sim_runtime_ms,
                sim_exit_code: run.sim_exit_code,
            },
        })
    }
}

/// A submission's spec: a TOML spec or a shell script with directives ([`crate::directives`]),
/// then the command line's flags over it. Returns the spec and the directives skipped (line,
/// what) when `ignore_unknown`.
pub fn from_submission(
    file: &str,
    text: &str,
    files: &std::collections::BTreeMap<String, String>,
    cli: &SpecFlags,
    ignore_unknown: bool,
) -> Result<(JobSpec, Vec<(usize, String)>), String> {
    if !crate::directives::is_script(text) {
        let mut spec = JobSpec::parse_with(file, text, files).map_err(|e| e.to_string())?;
        apply_flags(&mut spec, cli, "")?;
        return Ok((spec, Vec::new()));
    }
    let d = crate::directives::read(file, text, ignore_unknown)?;
    let mut spec = JobSpec {
        name: default_name(file),
        queue: None,
        priority: 0,
        walltime_ms: None,
        vm: VmTemplate::one_default(),
        run: RunSpec {
            script: text.to_string(),
            output: None,
            sim_runtime_ms: None,
            sim_exit_code: 0,
        },
        placement: None,
        dependency: None,
        array: None,
    };
    apply_flags(&mut spec, &d.flags, &format!("{file}: a directive: "))?;
    apply_flags(&mut spec, cli, "")?;
    Ok((spec, d.skipped))
}

/// Sets what `flags` give on `spec`; errors start with `origin` and name the flag.
fn apply_flags(spec: &mut JobSpec, flags: &SpecFlags, origin: &str) -> Result<(), String> {
    let err = |flag: &str, m: String| format!("{origin}--{flag}: {m}");
    if spec.placement.is_some() && (flags.vms.is_some() || flags.vcpus.is_some() || flags.memory.is_some()) {
        return Err(err(
            "vms/--vcpus/--mem",
            "the spec's placement script declares its VMs: change them there".into(),
        ));
    }
    if let Some(n) = &flags.name {
        check_name(n).map_err(|m| err("name", m))?;
        spec.name = n.clone();
    }
    if let Some(q) = &flags.queue {
        check_name(q).map_err(|m| err("queue", m))?;
        spec.queue = Some(q.clone());
    }
    if let Some(p) = flags.priority {
        spec.priority = p;
    }
    if let Some(n) = flags.vms {
        if n == 0 || n > MAX_VMS_PER_JOB {
            return Err(err("vms", format!("from 1 to {MAX_VMS_PER_JOB} VMs per vjob")));
        }
        spec.vm.count = n;
    }
    if let Some(c) = flags.vcpus {
        if c == 0 {
            return Err(err("vcpus", "a VM needs at least one vcpu".into()));
        }
        spec.vm.vcpus = c;
    }
    if let Some(m) = flags.memory {
        if m < (1 << 20) {
            return Err(err("mem", "a VM needs at least 1MiB".into()));
        }
        spec.vm.memory = m;
        spec.vm.default_memory = false;
    }
    if let Some(w) = flags.walltime_ms {
        if w == 0 {
            return Err(err("walltime", "must be more than zero".into()));
        }
        spec.walltime_ms = Some(w);
    }
    if let Some(i) = &flags.image {
        check_name(i).map_err(|m| err("image", m))?;
        spec.vm.image = Some(i.clone());
    }
    if let Some(o) = &flags.output {
        spec.run.output = Some(o.clone());
    }
    if let Some(r) = flags.sim_runtime_ms {
        spec.run.sim_runtime_ms = Some(r);
    }
    if let Some(c) = flags.sim_exit_code {
        spec.run.sim_exit_code = c;
    }
    if let Some(d) = &flags.dependency {
        let kill = spec.dependency.as_ref().is_some_and(|d| d.kill_on_invalid);
        spec.dependency = Some(crate::dependency::Dependency::parse(d).map_err(|m| err("dependency", m))?);
        spec.dependency.as_mut().expect("set above").kill_on_invalid = kill;
    }
    if let Some(a) = &flags.array {
        spec.array = Some(a.clone());
    }
    if let Some(kill) = flags.kill_on_invalid_dep {
        if let Some(d) = spec.dependency.as_mut() {
            d.kill_on_invalid = kill;
        }
    }
    Ok(())
}

/// The `[placement]` table: an inline `script` or a `file` (sent along by the submitter).
fn placement(
    src: &Source<'_>,
    p: &Spanned<RawPlacement>,
    files: &std::collections::BTreeMap<String, String>,
    has_vm: bool,
) -> Result<PlacementSpec, FileError> {
    if has_vm {
        return Err(src.error(
            Some(p.span()),
            "placement",
            "with [placement] its script declares the VMs (`VM[1..3] : small;`): remove the [vm] table",
        ));
    }
    match (&p.get_ref().script, &p.get_ref().file) {
        (Some(s), None) => {
            // A multi-line string starts on the line after its opening quotes.
            let start = s.span().start;
            // Bytes: a one-quote string ending in a multi-byte character ends inside these four.
            let opening = &src.text.as_bytes()[start..src.text.len().min(start + 4)];
            let first = src.line_of(start) as u32 + u32::from(opening == b"\"\"\"\n" || opening == b"'''\n");
            Ok(PlacementSpec {
                file: src.file.to_string(),
                script: s.get_ref().clone(),
                line_offset: first - 1,
                names: Vec::new(),
            })
        }
        (None, Some(f)) => match files.get(f.get_ref()) {
            Some(text) => Ok(PlacementSpec {
                file: f.get_ref().clone(),
                script: text.clone(),
                line_offset: 0,
                names: Vec::new(),
            }),
            None => Err(src.at(
                f,
                "placement.file",
                format!(
                    "`{}` was not sent with the spec (vsub reads it, relative to the spec)",
                    f.get_ref()
                ),
            )),
        },
        _ => Err(src.error(
            Some(p.span()),
            "placement",
            "give the placement script inline (`script = ...`) or in a file (`file = \"app.btrp\"`), one of them",
        )),
    }
}

/// A job's name from its file's name: the stem, cut to a valid name.
fn default_name(file: &str) -> String {
    let stem = std::path::Path::new(file)
        .file_stem()
        .and_then(|s| s.to_str())
        .unwrap_or("job");
    let cleaned: String = stem
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if cleaned.is_empty() {
        "job".into()
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec of the foundation issue, which must be accepted as is.
    const LOWPRIO: &str = r#"name = "lowprio"
queue = "batch"          # optional: the default queue otherwise
priority = 0             # optional: order within the queue
walltime = "1h"          # optional

[vm]
count = 2                # VMs in this vjob
vcpus = 4
memory = "4GiB"

[run]
script = """
echo hello from $VJOB_ID
"""
sim_runtime = "20s"      # sim backend: how long the job runs once all its VMs run
"#;

    /// Found by fuzzing: a placement script of one quote whose last character is not ASCII
    /// ended inside the four bytes read to tell a multi-line string, and slicing there panicked.
    #[test]
    fn regression_a_short_placement_string_ending_in_a_multibyte_character_is_read() {
        let text = "[placement]\nscript = \"a€\"\n[run]\nscript = 'true'\n";
        let e = JobSpec::parse("job.toml", text).map(|s| s.placement.map(|p| p.script));
        assert_eq!(e.unwrap(), Some("a€".to_string()));
    }

    #[test]
    fn accepts_the_issue_spec() {
        let s = JobSpec::parse("lowprio.toml", LOWPRIO).unwrap();
        assert_eq!(s.name, "lowprio");
        assert_eq!(s.queue.as_deref(), Some("batch"));
        assert_eq!(s.walltime_ms, Some(3_600_000));
        assert_eq!(
            s.vm,
            VmTemplate {
                count: 2,
                vcpus: 4,
                memory: 4 << 30,
                image: None,
                default_memory: false,
                each: Vec::new(),
            }
        );
        assert_eq!(s.run.script.trim(), "echo hello from $VJOB_ID");
        assert_eq!(s.run.sim_runtime_ms, Some(20_000));
    }

    fn err(text: &str) -> String {
        JobSpec::parse("job.toml", text).unwrap_err().to_string()
    }

    #[test]
    fn malformed_specs_say_where() {
        let ok = "[vm]\ncount = 1\n[run]\nscript = 'true'\n";
        assert_eq!(JobSpec::parse("dir/my job.toml", ok).unwrap().name, "my_job");
        assert_eq!(
            err("[vm]\ncount = 'two'\n[run]\nscript = 'true'\n"),
            "job.toml: line 2: field vm.count: invalid type: string \"two\", expected u32"
        );
        assert_eq!(
            err("[vm]\ncount = 0\n[run]\nscript = 'true'\n"),
            "job.toml: line 2: field vm.count: a vjob needs at least one VM"
        );
        assert!(err("[vm]\nmemory = '4 bananas'\n[run]\nscript = 'true'\n")
            .starts_with("job.toml: line 2: field vm.memory:"));
        assert!(err("[vm]\ncolour = 1\n[run]\nscript = 'true'\n")
            .starts_with("job.toml: line 2: field vm.colour: unknown field `colour`"));
        assert!(err("walltime = 'forever'\n[run]\nscript = 'true'\n").starts_with("job.toml: line 1: field walltime:"));
        assert!(err("[vm]\ncount = 1\n").contains("missing field `run`"));
        assert!(err("[run]\nscript = ''\n").contains("line 1: field run.script: the job has nothing to run"));
        assert!(err("name = 'a b'\n[run]\nscript = 'x'\n").starts_with("job.toml: line 1: field name:"));
        assert!(err("[run\nscript = 'x'\n").starts_with("job.toml: line 1:"));
    }
}
