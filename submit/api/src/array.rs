//! Job arrays as users write them: the index set of `--array` (`0-99`, `1,3,5-7`, `0-15:3`,
//! `0-99%5` with a throttle) and job references (`12`, `12[3]`, `12_3`) in every command.
//!
//! An array of N tasks takes N consecutive job ids; the first is the array's id. Task `i` is
//! named `ID[i]` everywhere (`12_3`, Slurm's spelling, is read too); the array's id alone means
//! all of its tasks, as `scancel 12` does.

use serde::{Deserialize, Serialize};

/// Most tasks in one array (Slurm's `MaxArraySize` is 1001 by default; sites raise it).
pub const MAX_ARRAY_TASKS: usize = 100_000;
/// Largest task index.
pub const MAX_ARRAY_INDEX: u32 = 4_000_000;

/// The tasks an array asks for, and how many may run at once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ArraySpec {
    /// Task indices, ascending, each once.
    pub indices: Vec<u32>,
    /// Most tasks running at once (`%N`); `None`: no limit.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub throttle: Option<u32>,
}

impl ArraySpec {
    /// Parses `0-99`, `1,3,5-7`, `0-15:3` (every third), each optionally followed by `%N`.
    pub fn parse(text: &str) -> Result<ArraySpec, String> {
        let t = text.trim();
        let (set, throttle) = match t.split_once('%') {
            Some((set, n)) => {
                let n: u32 = n
                    .trim()
                    .parse()
                    .map_err(|_| format!("`%{n}`: the throttle is a number of tasks (`0-99%5`)"))?;
                if n == 0 {
                    return Err("`%0`: the throttle must let at least one task run".into());
                }
                (set, Some(n))
            }
            None => (t, None),
        };
        if set.trim().is_empty() {
            return Err("give task indices: `0-99`, `1,3,5-7` or `0-15:3`".into());
        }
        let mut indices = Vec::new();
        for part in set.split(',') {
            range(part.trim(), &mut indices)?;
            if indices.len() > MAX_ARRAY_TASKS {
                return Err(format!("`{t}`: more than {MAX_ARRAY_TASKS} tasks in one array"));
            }
        }
        indices.sort_unstable();
        indices.dedup();
        Ok(ArraySpec { indices, throttle })
    }

    /// As users write it, ranges folded: `0-99%5`.
    pub fn to_text(&self) -> String {
        let mut s = fold_indices(&self.indices);
        if let Some(n) = self.throttle {
            s.push_str(&format!("%{n}"));
        }
        s
    }
}

/// Adds the indices of one comma-separated part (`5`, `5-7`, `0-15:3`).
fn range(part: &str, out: &mut Vec<u32>) -> Result<(), String> {
    let index = |s: &str| -> Result<u32, String> {
        let n: u32 = s
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not a task index (a whole number from 0)"))?;
        if n > MAX_ARRAY_INDEX {
            return Err(format!("task index {n} is above the largest, {MAX_ARRAY_INDEX}"));
        }
        Ok(n)
    };
    let (span, step) = match part.split_once(':') {
        Some((span, step)) => {
            let step: u32 = step
                .trim()
                .parse()
                .map_err(|_| format!("`:{step}`: the step is a whole number (`0-15:3`)"))?;
            if step == 0 {
                return Err(format!("`{part}`: the step must be at least 1"));
            }
            (span, step)
        }
        None => (part, 1),
    };
    match span.split_once('-') {
        Some((a, b)) => {
            let (a, b) = (index(a)?, index(b)?);
            if a > b {
                return Err(format!("`{part}`: the range runs backwards ({a} > {b})"));
            }
            if (b - a) as usize / step as usize >= MAX_ARRAY_TASKS {
                return Err(format!("`{part}`: more than {MAX_ARRAY_TASKS} tasks in one array"));
            }
            out.extend((a..=b).step_by(step as usize));
        }
        None if step != 1 => return Err(format!("`{part}`: a step needs a range (`0-15:3`)")),
        None => out.push(index(span)?),
    }
    Ok(())
}

/// Ascending indices as ranges: `0-4,7,9-10`.
pub fn fold_indices(indices: &[u32]) -> String {
    let mut parts = Vec::new();
    let mut i = 0;
    while i < indices.len() {
        let mut j = i;
        while j + 1 < indices.len() && indices[j + 1] == indices[j] + 1 {
            j += 1;
        }
        parts.push(match j > i {
            true => format!("{}-{}", indices[i], indices[j]),
            false => indices[i].to_string(),
        });
        i = j + 1;
    }
    parts.join(",")
}

/// A job as a command names it: `12` (a job, or every task of array 12) or `12[3]` (task 3 of
/// array 12). On the wire it is that text; a bare number is read too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct JobRef {
    pub id: u64,
    pub index: Option<u32>,
}

impl JobRef {
    pub fn job(id: u64) -> JobRef {
        JobRef { id, index: None }
    }
    pub fn task(id: u64, index: u32) -> JobRef {
        JobRef { id, index: Some(index) }
    }
}

impl From<u64> for JobRef {
    fn from(id: u64) -> JobRef {
        JobRef::job(id)
    }
}

impl std::fmt::Display for JobRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.index {
            Some(i) => write!(f, "{}[{i}]", self.id),
            None => write!(f, "{}", self.id),
        }
    }
}

impl std::str::FromStr for JobRef {
    type Err = String;

    /// `12`, `12[3]`, `12_3` (Slurm), `12.server` and `12[3].server` (PBS: the server is ignored).
    fn from_str(text: &str) -> Result<JobRef, String> {
        let t = text.trim();
        let bad = || format!("`{text}` is not a job id (`12`, or `12[3]` for task 3 of array 12)");
        let t = match t.find('.') {
            Some(dot) => &t[..dot],
            None => t,
        };
        let number = |s: &str| -> Result<u64, String> {
            match !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
                true => s.parse().map_err(|_| bad()),
                false => Err(bad()),
            }
        };
        if let Some(open) = t.find('[') {
            let inner = t[open + 1..].strip_suffix(']').ok_or_else(bad)?;
            let id = number(&t[..open])?;
            if inner.is_empty() {
                return Ok(JobRef::job(id));
            }
            return Ok(JobRef::task(id, number(inner)?.try_into().map_err(|_| bad())?));
        }
        if let Some((id, index)) = t.split_once('_') {
            return Ok(JobRef::task(number(id)?, number(index)?.try_into().map_err(|_| bad())?));
        }
        Ok(JobRef::job(number(t)?))
    }
}

impl Serialize for JobRef {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for JobRef {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<JobRef, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Wire {
            Number(u64),
            Text(String),
        }
        match Wire::deserialize(d)? {
            Wire::Number(id) => Ok(JobRef::job(id)),
            Wire::Text(t) => t.parse().map_err(serde::de::Error::custom),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn index_sets_parse_as_sbatch_writes_them() {
        let a = ArraySpec::parse("0-4").unwrap();
        assert_eq!((a.indices, a.throttle), (vec![0, 1, 2, 3, 4], None));
        let a = ArraySpec::parse("1,3,5-7").unwrap();
        assert_eq!(a.indices, vec![1, 3, 5, 6, 7]);
        let a = ArraySpec::parse("0-15:3%2").unwrap();
        assert_eq!((a.indices.clone(), a.throttle), (vec![0, 3, 6, 9, 12, 15], Some(2)));
        assert_eq!(a.to_text(), "0,3,6,9,12,15%2");
        assert_eq!(ArraySpec::parse("3,1-2,2").unwrap().to_text(), "1-3");
        assert_eq!(ArraySpec::parse("0-99%5").unwrap().to_text(), "0-99%5");
        for (bad, says) in [
            ("", "give task indices"),
            ("%3", "give task indices"),
            ("5-1", "backwards"),
            ("0-9%0", "at least one task"),
            ("0-9%x", "throttle"),
            ("a-3", "`a` is not a task index"),
            ("3:2", "a step needs a range"),
            ("0-9:0", "step must be at least 1"),
            ("0-4000001", "above the largest"),
            ("0-200000", "more than 100000 tasks"),
        ] {
            let e = ArraySpec::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
    }

    #[test]
    fn job_refs_read_every_spelling_and_travel_as_text() {
        assert_eq!("12".parse::<JobRef>().unwrap(), JobRef::job(12));
        assert_eq!("12[3]".parse::<JobRef>().unwrap(), JobRef::task(12, 3));
        assert_eq!("12_3".parse::<JobRef>().unwrap(), JobRef::task(12, 3));
        assert_eq!("12[]".parse::<JobRef>().unwrap(), JobRef::job(12));
        assert_eq!("12[3].server".parse::<JobRef>().unwrap(), JobRef::task(12, 3));
        for bad in ["", "x", "12[", "12[a]", "-3", "12[3]x", "1_"] {
            assert!(bad.parse::<JobRef>().is_err(), "{bad}");
        }
        assert_eq!(JobRef::task(12, 3).to_string(), "12[3]");
        assert_eq!(serde_json::to_string(&JobRef::task(12, 3)).unwrap(), "\"12[3]\"");
        assert_eq!(serde_json::from_str::<JobRef>("7").unwrap(), JobRef::job(7));
        assert_eq!(serde_json::from_str::<JobRef>("\"7[1]\"").unwrap(), JobRef::task(7, 1));
        assert!(serde_json::from_str::<JobRef>("\"7[x]\"").is_err());
    }
}
