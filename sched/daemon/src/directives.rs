//! Shell scripts as jobs: the flags in a script's leading `#VJOB`, `#SBATCH` and `#PBS` comment
//! lines, read as sbatch reads them (until the first line that is neither a comment nor blank).
//!
//! ```sh
//! #!/bin/sh
//! #VJOB --vms 2 --vcpus 4 --mem 4GiB
//! #SBATCH -J render -p batch -t 1:30:00
//! #PBS -l walltime=01:30:00,mem=4gb
//! ./render --frames 1-100
//! ```
//!
//! `#VJOB` lines take `vsub`'s own flags ([`SpecFlag::ALL`]). `#SBATCH` and `#PBS` lines are
//! read for the flags that mean the same in vjob: a name, a queue (partition), a walltime, memory
//! and processors per VM, nodes as VMs, an output file. A flag that has no meaning in vjob is an
//! error naming its line (unless the submitter passes `--ignore-unknown-directives`: then it is
//! skipped and listed), never silently dropped. A flag that vjob reads but whose value is wrong
//! is always an error: skipping it would run another job than the one asked for.

use vjob_api::{SpecFlag, SpecFlags};

/// What a script's directives say: the flags, and the directives skipped (line, text) because
/// they have no meaning here and the submitter said to go on.
#[derive(Debug, Default, PartialEq)]
pub struct Directives {
    pub flags: SpecFlags,
    pub skipped: Vec<(usize, String)>,
}

/// Whether a spec's text is a shell script rather than TOML: its first line is `#!`.
pub fn is_script(text: &str) -> bool {
    text.starts_with("#!")
}

/// Reads the directives of script `file`. Errors name the file and line: `job.sh:3: ...`.
pub fn read(file: &str, text: &str, ignore_unknown: bool) -> Result<Directives, String> {
    let mut out = Directives::default();
    for (i, line) in text.lines().enumerate().skip(1) {
        let t = line.trim();
        if t.is_empty() {
            continue;
        }
        if !t.starts_with('#') {
            break;
        }
        let Some((dialect, rest)) = directive(t) else { continue };
        let at = |m: String| format!("{file}:{}: {t}: {m}", i + 1);
        let words = split_words(rest).map_err(at)?;
        let pairs = flag_pairs(&words).map_err(at)?;
        for (flag, value) in pairs {
            match apply(dialect, &flag, value.as_deref(), &mut out.flags) {
                Ok(()) => {}
                Err(Refusal::Unknown(m)) if ignore_unknown => out.skipped.push((i + 1, format!("{flag}: {m}"))),
                Err(Refusal::Unknown(m) | Refusal::Always(m)) => return Err(at(format!("{flag}: {m}"))),
            }
        }
    }
    Ok(out)
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Dialect {
    Vjob,
    Slurm,
    Pbs,
}

/// The dialect of a directive line and what follows its keyword; `None` for a plain comment.
fn directive(line: &str) -> Option<(Dialect, &str)> {
    [
        ("#VJOB", Dialect::Vjob),
        ("#SBATCH", Dialect::Slurm),
        ("#PBS", Dialect::Pbs),
    ]
    .into_iter()
    .find_map(|(key, d)| {
        let rest = line.strip_prefix(key)?;
        (rest.is_empty() || rest.starts_with(char::is_whitespace)).then_some((d, rest))
    })
}

/// Splits on blanks, with '...' and "..." quoting as the shell does; a `#` starting a word
/// begins a comment.
fn split_words(text: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut cur: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match (quote, c) {
            (Some(q), c) if c == q => quote = None,
            (Some(_), c) => cur.get_or_insert_with(String::new).push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                cur.get_or_insert_with(String::new);
            }
            (None, c) if c.is_whitespace() => words.extend(cur.take()),
            (None, '#') if cur.is_none() => break,
            (None, c) => cur.get_or_insert_with(String::new).push(c),
        }
    }
    if let Some(q) = quote {
        return Err(format!("a {q} quote is not closed"));
    }
    words.extend(cur);
    Ok(words)
}

/// Words as (flag, value): `--long=v`, `--long v`, `-x v`, `-xv`. A flag followed by another
/// flag (or nothing) has no value.
fn flag_pairs(words: &[String]) -> Result<Vec<(String, Option<String>)>, String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < words.len() {
        let w = &words[i];
        let takes_next = |i: usize| {
            words
                .get(i + 1)
                .filter(|n| !n.starts_with('-') || n.parse::<i64>().is_ok())
        };
        if let Some(long) = w.strip_prefix("--") {
            match long.split_once('=') {
                Some((k, v)) => out.push((format!("--{k}"), Some(v.to_string()))),
                None => match takes_next(i) {
                    Some(v) => {
                        out.push((w.clone(), Some(v.clone())));
                        i += 1;
                    }
                    None => out.push((w.clone(), None)),
                },
            }
        } else if let Some(short) = w.strip_prefix('-').filter(|s| !s.is_empty()) {
            let (k, glued) = short.split_at(short.chars().next().map_or(0, char::len_utf8));
            if !glued.is_empty() {
                out.push((format!("-{k}"), Some(glued.to_string())));
            } else {
                match takes_next(i) {
                    Some(v) => {
                        out.push((w.clone(), Some(v.clone())));
                        i += 1;
                    }
                    None => out.push((w.clone(), None)),
                }
            }
        } else {
            return Err(format!("`{w}` is not a flag"));
        }
        i += 1;
    }
    Ok(out)
}

/// Why a directive's flag was not taken.
enum Refusal {
    /// It means nothing in vjob: skipped with `--ignore-unknown-directives`.
    Unknown(String),
    /// It means something vjob cannot do yet and skipping it would change the job: always an
    /// error.
    Always(String),
}

/// Applies one flag of a directive.
fn apply(dialect: Dialect, flag: &str, value: Option<&str>, flags: &mut SpecFlags) -> Result<(), Refusal> {
    let name = flag.trim_start_matches('-');
    let need = || value.ok_or_else(|| Refusal::Always("needs a value".into()));
    let set = |flags: &mut SpecFlags, f: SpecFlag, v: &str| flags.set(f, v).map_err(Refusal::Always);
    match (dialect, name) {
        (Dialect::Vjob, _) => match SpecFlag::named(name) {
            Some(SpecFlag::KillOnInvalidDep) => set(flags, SpecFlag::KillOnInvalidDep, value.unwrap_or("yes")),
            Some(f) => set(flags, f, need()?),
            None => Err(Refusal::Unknown(format!(
                "not a vsub flag (they are: {})",
                SpecFlag::ALL
                    .iter()
                    .map(|(_, l, _)| format!("--{l}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        },
        (Dialect::Slurm, "J" | "job-name") => set(flags, SpecFlag::Name, need()?),
        (Dialect::Slurm, "p" | "partition") => set(flags, SpecFlag::Queue, need()?),
        (Dialect::Slurm, "t" | "time") => {
            let ms = slurm_time_ms(need()?).map_err(Refusal::Always)?;
            flags.walltime_ms = Some(ms);
            Ok(())
        }
        (Dialect::Slurm, "mem") => {
            flags.memory = Some(batch_size(need()?).map_err(Refusal::Always)?);
            Ok(())
        }
        (Dialect::Slurm, "c" | "cpus-per-task") => set(flags, SpecFlag::Vcpus, need()?),
        (Dialect::Slurm, "N" | "nodes") => set(flags, SpecFlag::Vms, need()?),
        (Dialect::Slurm, "o" | "output") => set(flags, SpecFlag::Output, need()?),
        (Dialect::Slurm, "e" | "error") | (Dialect::Pbs, "e") => stderr_file(flags, need()?),
        (Dialect::Slurm, "a" | "array") | (Dialect::Pbs, "J" | "t") => set(flags, SpecFlag::Array, need()?),
        (Dialect::Slurm, "d" | "dependency") => set(flags, SpecFlag::Dependency, need()?),
        (Dialect::Slurm, "kill-on-invalid-dep") => set(flags, SpecFlag::KillOnInvalidDep, value.unwrap_or("yes")),
        (Dialect::Pbs, "N") => set(flags, SpecFlag::Name, need()?),
        (Dialect::Pbs, "q") => set(flags, SpecFlag::Queue, need()?),
        (Dialect::Pbs, "p") => set(flags, SpecFlag::Priority, need()?),
        (Dialect::Pbs, "o") => set(flags, SpecFlag::Output, need()?),
        (Dialect::Pbs, "l") => pbs_resources(need()?, flags),
        (Dialect::Pbs, "W") if need()?.starts_with("depend=") => {
            set(flags, SpecFlag::Dependency, need()?.trim_start_matches("depend="))
        }
        _ => Err(Refusal::Unknown("has no meaning in vjob".into())),
    }
}

/// `-e FILE`: a VM's console holds its standard output and error together, so an error file is
/// taken only as the output file itself.
fn stderr_file(flags: &mut SpecFlags, file: &str) -> Result<(), Refusal> {
    match &flags.output {
        Some(o) if o == file => Ok(()),
        Some(_) => Err(Refusal::Always(
            "a VM's console holds standard output and error together: give -o alone, or the same file to both".into(),
        )),
        None => {
            flags.output = Some(file.to_string());
            Ok(())
        }
    }
}

/// PBS's `-l` list: `walltime=`, `mem=`, `ncpus=`, `nodes=N[:ppn=C]`, `select=N[:ncpus=C][:mem=M]`.
fn pbs_resources(list: &str, flags: &mut SpecFlags) -> Result<(), Refusal> {
    for item in list.split(',') {
        let (k, v) = item
            .split_once('=')
            .ok_or_else(|| Refusal::Always(format!("`{item}` is not RESOURCE=VALUE")))?;
        let always = Refusal::Always;
        match k {
            "walltime" => flags.walltime_ms = Some(vjob_api::units::parse_duration_ms(v).map_err(always)?),
            "mem" | "vmem" => flags.memory = Some(batch_size(v).map_err(always)?),
            "ncpus" | "ppn" => flags.set(SpecFlag::Vcpus, v).map_err(always)?,
            "nodes" | "select" => {
                let mut parts = v.split(':');
                flags.set(SpecFlag::Vms, parts.next().unwrap_or("")).map_err(always)?;
                for p in parts {
                    match p.split_once('=') {
                        Some(("ppn" | "ncpus", c)) => flags.set(SpecFlag::Vcpus, c).map_err(always)?,
                        Some(("mem", m)) => flags.memory = Some(batch_size(m).map_err(always)?),
                        _ => return Err(Refusal::Unknown(format!("`{p}` in `{k}=` has no meaning in vjob"))),
                    }
                }
            }
            _ => return Err(Refusal::Unknown(format!("resource `{k}` has no meaning in vjob"))),
        }
    }
    Ok(())
}

/// Slurm's time: minutes, `MM:SS`, `HH:MM:SS`, `D-HH`, `D-HH:MM`, `D-HH:MM:SS`; or vjob's own
/// spelling (`1h30m`).
fn slurm_time_ms(text: &str) -> Result<u64, String> {
    let t = text.trim();
    let bad = || format!("`{text}` is not a time: write minutes, MM:SS, HH:MM:SS or D-HH:MM:SS");
    let too_long = || format!("`{text}` is too long a time");
    let ms = if let Ok(minutes) = t.parse::<u64>() {
        minutes.checked_mul(60_000).ok_or_else(too_long)?
    } else {
        match t.split_once('-') {
            Some((days, rest)) => {
                let days: u64 = days.parse().map_err(|_| bad())?;
                let mut hms = rest.split(':').map(|p| p.parse::<u64>().map_err(|_| bad()));
                let h = hms.next().ok_or_else(bad)??;
                let m = hms.next().transpose()?.unwrap_or(0);
                let s = hms.next().transpose()?.unwrap_or(0);
                if hms.next().is_some() {
                    return Err(bad());
                }
                days.checked_mul(24)
                    .and_then(|d| d.checked_add(h))
                    .and_then(|h| h.checked_mul(60))
                    .and_then(|hm| hm.checked_add(m))
                    .and_then(|m| m.checked_mul(60))
                    .and_then(|ms| ms.checked_add(s))
                    .and_then(|s| s.checked_mul(1000))
                    .ok_or_else(too_long)?
            }
            None => vjob_api::units::parse_duration_ms(t)?,
        }
    };
    match ms {
        0 => Err("the walltime must be more than zero".into()),
        ms => Ok(ms),
    }
}

/// Memory as Slurm and PBS write it: binary units, megabytes when none is given.
fn batch_size(text: &str) -> Result<u64, String> {
    let t = text.trim();
    match t.parse::<u64>() {
        Ok(mb) => mb.checked_mul(1 << 20).ok_or_else(|| format!("`{text}` is too large")),
        Err(_) => vjob_api::units::parse_size(t),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags(script: &str) -> SpecFlags {
        read("job.sh", script, false).unwrap().flags
    }

    #[test]
    fn vjob_slurm_and_pbs_directives_map_to_the_same_flags() {
        let f = flags("#!/bin/sh\n#VJOB --vms 2 --vcpus=4\n\n# a comment\n#SBATCH -J render --partition batch -t 1-02:30\n#PBS -l mem=4gb\necho hi\n#VJOB --vms 9\n");
        assert_eq!(f.vms, Some(2), "read until the first command only");
        assert_eq!(f.vcpus, Some(4));
        assert_eq!(f.name.as_deref(), Some("render"));
        assert_eq!(f.queue.as_deref(), Some("batch"));
        assert_eq!(f.walltime_ms, Some((26 * 60 + 30) * 60_000));
        assert_eq!(f.memory, Some(4 << 30));
        let f = flags("#!/bin/bash\n#PBS -N sim -q express -p 5\n#PBS -l walltime=01:00:00,select=3:ncpus=2:mem=512mb\n#SBATCH --mem=2048 -c2\ntrue\n");
        assert_eq!(
            (f.name.as_deref(), f.queue.as_deref(), f.priority),
            (Some("sim"), Some("express"), Some(5))
        );
        assert_eq!((f.vms, f.vcpus, f.walltime_ms), (Some(3), Some(2), Some(3_600_000)));
        assert_eq!(f.memory, Some(2048 << 20), "the later directive wins");
        assert_eq!(slurm_time_ms("90").unwrap(), 90 * 60_000);
        assert_eq!(slurm_time_ms("05:30").unwrap(), 330_000);
    }

    /// Found by the `spec` fuzz target: `-t 1-022429496729630` overflowed the milliseconds.
    #[test]
    fn regression_a_huge_slurm_time_or_memory_is_an_error_not_an_overflow() {
        for t in ["1-022429496729630", "307445734561825861", "213503982334601-0"] {
            assert!(slurm_time_ms(t).unwrap_err().contains("too long"), "{t}");
        }
        assert!(batch_size("18446744073709551").unwrap_err().contains("too large"));
    }

    #[test]
    fn a_directive_that_does_not_map_names_its_line_unless_told_to_go_on() {
        let script = "#!/bin/sh\n#SBATCH -J ok\n#SBATCH --gres=gpu:2\necho\n";
        let e = read("job.sh", script, false).unwrap_err();
        assert!(
            e.starts_with("job.sh:3: #SBATCH --gres=gpu:2: --gres: has no meaning in vjob"),
            "{e}"
        );
        let d = read("job.sh", script, true).unwrap();
        assert_eq!(d.flags.name.as_deref(), Some("ok"));
        assert_eq!(d.skipped, vec![(3, "--gres: has no meaning in vjob".to_string())]);
        // A bad array cannot be skipped: one job would run where many were asked for.
        let e = read("job.sh", "#!/bin/sh\n#SBATCH --array=9-0\n", true).unwrap_err();
        assert!(e.contains("job.sh:2:") && e.contains("backwards"), "{e}");
        let d = read("job.sh", "#!/bin/sh\n#SBATCH --array=0-9%2\n#PBS -J 1-5:2\n", false).unwrap();
        assert_eq!(d.flags.array.unwrap().indices, vec![1, 3, 5], "the last directive wins");
        let e = read("job.sh", "#!/bin/sh\n#VJOB --vcpus 0\n", false).unwrap_err();
        assert!(e.contains("job.sh:2:") && e.contains("vcpus must be at least 1"), "{e}");
        let e = read("job.sh", "#!/bin/sh\n#VJOB --name 'open\n", false).unwrap_err();
        assert!(e.contains("quote is not closed"), "{e}");
        let e = read("job.sh", "#!/bin/sh\n#SBATCH -o a.out -e b.err\n", false).unwrap_err();
        assert!(e.contains("standard output and error together"), "{e}");
    }
}
